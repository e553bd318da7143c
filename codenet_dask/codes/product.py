"""The product code on a block grid: CodeNet's layout of one layer's weight matrix.

W is cut into ``kr x kc`` blocks. A row code ``[kr + pr, kr]`` adds ``pr`` parity block-rows and a
column code ``[kc + pc, kc]`` adds ``pc`` parity block-columns, giving a ``(kr + pr) x (kc + pc)``
coded grid in which every block-column is a codeword of the row code and every block-row a
codeword of the column code. Feedforward checks the block-columns, backprop the block-rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import CodeParameterError
from .mds import Construction, SystematicMDSCode


@lru_cache(maxsize=64)
def mds_code(k: int, p: int, construction: Construction = "chebyshev", seed: int = 0) -> SystematicMDSCode:
    """A certified code, built once per process (certification inverts every k-subset)."""
    return SystematicMDSCode(k=k, p=p, construction=construction, seed=seed)


@dataclass(frozen=True)
class ProductCode:
    """Row code x column code on a ``kr x kc`` block grid; see the module docstring."""

    kr: int
    kc: int
    pr: int
    pc: int
    construction: Construction = "chebyshev"

    def __post_init__(self) -> None:
        for name in ("kr", "kc"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise CodeParameterError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("pr", "pc"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise CodeParameterError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        # Build (and certify) both codes now so bad parameters fail at construction.
        self.row_code, self.col_code  # noqa: B018

    @property
    def row_code(self) -> SystematicMDSCode:
        """Code down each block-column (adds ``pr`` parity block-rows)."""
        return mds_code(self.kr, self.pr, self.construction)

    @property
    def col_code(self) -> SystematicMDSCode:
        """Code along each block-row (adds ``pc`` parity block-columns)."""
        return mds_code(self.kc, self.pc, self.construction)

    @property
    def coded_shape(self) -> tuple[int, int]:
        """Blocks in the coded grid: ``(kr + pr, kc + pc)``."""
        return (self.kr + self.pr, self.kc + self.pc)

    @property
    def flop_ratio(self) -> float:
        """Redundancy of a full training step (forward + backward + update) vs uncoded."""
        nr, nc = self.coded_shape
        forward = nr / self.kr
        backward = nc / self.kc
        update = nr * nc / (self.kr * self.kc)
        return (forward + backward + update) / 3

    def describe(self) -> dict[str, object]:
        """Plain-data parameters (for store attributes and reports)."""
        return {
            "family": "product-mds",
            "construction": self.construction,
            "grid": [self.kr, self.kc],
            "parity": [self.pr, self.pc],
            "row_generator": self.row_code.generator.tolist(),
            "col_generator": self.col_code.generator.tolist(),
            "worst_condition": [self.row_code.worst_condition, self.col_code.worst_condition],
        }

    def encode_grid(self, systematic: np.ndarray) -> np.ndarray:
        """Coded grid from systematic blocks.

        ``systematic`` has shape ``(kr, kc, bh, bw)``; the result ``(kr+pr, kc+pc, bh, bw)``.
        Encodes rows then columns (the corner parity is the same either way, up to roundoff).
        """
        if systematic.shape[:2] != (self.kr, self.kc):
            raise CodeParameterError(f"expected a {self.kr}x{self.kc} grid of blocks, got {systematic.shape[:2]}")
        rows_done = self.row_code.encode(systematic)  # (nr, kc, bh, bw)
        return np.moveaxis(self.col_code.encode(np.moveaxis(rows_done, 1, 0)), 0, 1)
