"""Test bench for one codeword of coded block products, run through the real kernels.

Builds a coded column of blocks, multiplies it, corrupts chosen results with the same
elementary corruptions the fault hook uses, and decodes every target the way a consumer task does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from codenet_dask.codes import mds_code
from codenet_dask.faults.hook import Corruption
from codenet_dask.kernels import checks
from codenet_dask.kernels.blocks import CodedBlock


@dataclass
class Codeword:
    code: object
    results: list
    clean: list
    v: np.ndarray


def make_codeword(k: int, p: int, rows: int, inner: int, batch: int, dtype, seed: int, scale: float = 1.0) -> Codeword:
    rng = np.random.default_rng(seed)
    code = mds_code(k, p)
    message = (rng.standard_normal((k, rows, inner)) * scale).astype(dtype)
    parity = code.parity(message)
    err = float(np.max(np.abs(code.parity_matrix) @ np.abs(message).reshape(k, -1))) * 4 * np.finfo(dtype).eps
    blocks = [CodedBlock.from_values(message[i]) for i in range(k)]
    blocks += [CodedBlock.from_values(parity[q], err) for q in range(p)]
    x = (rng.standard_normal((inner, batch)) * scale).astype(dtype)
    results = [checks.block_product(b, x, False) for b in blocks]
    return Codeword(code, list(results), list(results), checks.projection_matrix(batch, seed))


def corrupt(word: Codeword, position: int, corruption: Corruption) -> None:
    r = word.results[position]
    word.results[position] = replace(r, values=corruption.corrupt(r.values))


def decode_all(word: Codeword):
    """(verdict, decoded systematic blocks or None) as the consumer tasks compute them."""
    out = []
    verdict = None
    for target in range(word.code.k):
        decoded = checks.decode_chunk(word.code, [word.results], target, word.v)
        verdict = decoded.checks[0]
        out.append(decoded.values)
    return verdict, (None if verdict.status == "uncorrectable" else out)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))) / np.max(np.abs(want)))
