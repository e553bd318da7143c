"""Random soft-error models: what a fault does to one freshly computed block.

Each model is a frozen dataclass with ``corrupt(values, rng) -> new array``: pure numpy, float32 or
float64, never writes into ``values`` (the input may be a read-only buffer shared with other
tasks). All randomness comes from ``rng``, so the injector makes a fault reproducible by seeding it.

"Relative" scales are multiples of the block's largest finite magnitude ``M = max|values|`` (or 1
when the block is all zeros), because a detector's tolerance scales with the data, not with 1.

- :class:`BitFlip` — ``bits`` distinct bits of one random entry (a multi-bit upset in one word), at
  a given position or uniform over a field (mantissa, exponent, sign, or any bit).
- :class:`Noise` — additive error of relative size ``scale``, in one entry or in the whole block.
- :class:`NaN`, :class:`Inf` — one entry becomes NaN / +-Inf.
- :class:`Zero` — the whole block reads as zeros (a dead unit, a lost message).
- :class:`Stale` — the block as it was before the last update (see its docstring for the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from ..errors import UnsupportedDtypeError

_UINT: dict[np.dtype, type[np.unsignedinteger]] = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}

Field = Literal["any", "mantissa", "exponent", "sign"]
FIELDS: tuple[str, ...] = ("any", "mantissa", "exponent", "sign")


@runtime_checkable
class ErrorModel(Protocol):
    """One kind of soft error. ``name`` is its word in a fault spec (``bitflip``, ``nan``...)."""

    name: ClassVar[str]

    def corrupt(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...

    def options(self) -> dict[str, str]: ...


def field_bits(dtype: np.dtype | type, field: str) -> np.ndarray:
    """Bit positions (0 = lowest mantissa bit) of an IEEE field of float32/float64."""
    info = np.finfo(_require_float(np.dtype(dtype)))
    mant, width = info.nmant, info.bits
    ranges = {
        "any": (0, width),
        "mantissa": (0, mant),
        "exponent": (mant, width - 1),
        "sign": (width - 1, width),
    }
    lo, hi = ranges[field]
    return np.arange(lo, hi)


def block_scale(values: np.ndarray) -> float:
    """M = largest finite magnitude in the block, or 1.0 for a block of zeros / non-finite values."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max(initial=0.0)) or 1.0


def _require_float(dtype: np.dtype) -> np.dtype:
    if dtype not in _UINT:
        raise UnsupportedDtypeError(f"soft errors are modelled for float32/float64 blocks, got dtype {dtype}")
    return dtype


def _copy(values: np.ndarray) -> np.ndarray:
    """A fresh, writable, C-contiguous copy (the only array a model ever writes to)."""
    out = np.array(values, copy=True, order="C")
    _require_float(out.dtype)
    return out


def _random_entry(out: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.integers(out.size))


@dataclass(frozen=True)
class BitFlip:
    """Flip ``bits`` distinct bits of one uniformly random entry.

    ``bit`` pins the position (then ``bits`` must be 1); otherwise the positions are drawn uniformly,
    without replacement, from ``field`` (``any`` = all 32/64 bits). Flips of one word model an upset
    in a register or cache line; flips in different entries would be several faults.
    """

    bits: int = 1
    field: Field = "any"
    bit: int | None = None
    name: ClassVar[str] = "bitflip"

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 64:
            raise ValueError(f"bitflip bits must be an integer in [1, 64], got {self.bits!r}")
        if self.field not in FIELDS:
            raise ValueError(f"bitflip field must be one of {', '.join(FIELDS)}, got {self.field!r}")
        if self.bit is not None:
            if not isinstance(self.bit, int) or not 0 <= self.bit < 64:
                raise ValueError(f"bitflip bit must be an integer in [0, 64), got {self.bit!r}")
            if self.bits != 1 or self.field != "any":
                raise ValueError("bitflip bit= pins one position: do not combine it with bits= or field=")
        widest = {"any": 64, "mantissa": 52, "exponent": 11, "sign": 1}[self.field]
        if self.bits > widest:
            raise ValueError(f"bitflip cannot flip {self.bits} distinct bits in the {self.field} field")

    def corrupt(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = _copy(values)
        if out.size == 0:
            return out
        uint = _UINT[out.dtype]
        width = out.dtype.itemsize * 8
        if self.bit is not None:
            if self.bit >= width:
                raise ValueError(f"bit {self.bit} does not exist in {out.dtype} (bits 0..{width - 1})")
            positions = np.array([self.bit])
        else:
            choices = field_bits(out.dtype, self.field)
            if self.bits > choices.size:
                raise ValueError(
                    f"cannot flip {self.bits} distinct bits in the {self.field} field of {out.dtype} "
                    f"({choices.size} bits)"
                )
            positions = rng.choice(choices, size=self.bits, replace=False)
        mask = uint(0)
        for p in positions:
            mask |= uint(1) << uint(int(p))
        entry = _random_entry(out, rng)
        raw = out.reshape(-1).view(uint)
        raw[entry] ^= mask
        return out

    def options(self) -> dict[str, str]:
        opts: dict[str, str] = {}
        if self.bits != 1:
            opts["bits"] = str(self.bits)
        if self.field != "any":
            opts["field"] = self.field
        if self.bit is not None:
            opts["bit"] = str(self.bit)
        return opts


Where = Literal["entry", "block"]


@dataclass(frozen=True)
class Noise:
    """Additive error of relative size ``scale`` (a multiple of the block's largest magnitude M).

    ``where="entry"``: one random entry gets exactly ``+-scale*M`` (random sign), so ``scale`` is the
    error's size, not just its spread. ``where="block"``: every entry gets i.i.d. ``scale*M*N(0, 1)``
    (RMS ``scale*M``), like a drifting analogue or a wrong scaling of a whole result.
    """

    scale: float = 1e-3
    where: Where = "entry"
    name: ClassVar[str] = "noise"

    def __post_init__(self) -> None:
        if not (isinstance(self.scale, (int, float)) and np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"noise scale must be a finite number > 0, got {self.scale!r}")
        if self.where not in ("entry", "block"):
            raise ValueError(f"noise where must be entry or block, got {self.where!r}")

    def corrupt(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = _copy(values)
        if out.size == 0:
            return out
        size = self.scale * block_scale(out)
        flat = out.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            if self.where == "entry":
                sign = 1.0 if rng.random() < 0.5 else -1.0
                entry = _random_entry(out, rng)
                flat[entry] = flat[entry] + out.dtype.type(sign * size)
            else:
                flat += (size * rng.standard_normal(flat.size)).astype(out.dtype)
        return out

    def options(self) -> dict[str, str]:
        opts = {"scale": format_number(self.scale)}  # always shown: the size is the point of noise
        if self.where != "entry":
            opts["where"] = self.where
        return opts


@dataclass(frozen=True)
class NaN:
    """One random entry becomes NaN (an invalid operation, a garbage read)."""

    name: ClassVar[str] = "nan"

    def corrupt(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = _copy(values)
        if out.size:
            out.reshape(-1)[_random_entry(out, rng)] = np.nan
        return out

    def options(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class Inf:
    """One random entry becomes ``sign * Inf``; ``sign=0`` draws + or - with equal probability."""

    sign: Literal[-1, 0, 1] = 0
    name: ClassVar[str] = "inf"

    def __post_init__(self) -> None:
        if self.sign not in (-1, 0, 1):
            raise ValueError(f"inf sign must be -1, 0 (random) or 1, got {self.sign!r}")

    def corrupt(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = _copy(values)
        if out.size:
            sign = self.sign or (1 if rng.random() < 0.5 else -1)
            out.reshape(-1)[_random_entry(out, rng)] = sign * np.inf
        return out

    def options(self) -> dict[str, str]:
        return {"sign": "+" if self.sign > 0 else "-"} if self.sign else {}


@dataclass(frozen=True)
class Zero:
    """The whole block reads as zeros (a dead unit, a dropped message). A no-op on a zero block."""

    name: ClassVar[str] = "zero"

    def corrupt(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.zeros_like(_copy(values))

    def options(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class Stale:
    """The block as if computed before the last update: ``values - scale*M*u vᵀ`` (max-normalised).

    The hook is stateless (a task's result must depend only on seed, site and attempt), so the real
    earlier value is not available on the worker. What *is* known is its shape of difference: an
    update adds the rank-B term ``-η Δ Xᵀ`` to W, and every product of W differs from its stale
    version by that low-rank term times fresh data — still low rank. So a stale block is modelled
    as the fresh one minus a random rank-one "missed update" whose largest entry is ``scale*M``
    (u, v standard normal; the block is viewed as ``shape[0] x rest``). This is a whole-block,
    structured error, unlike :class:`Noise`; its magnitude is a parameter, not a measurement.
    """

    scale: float = 1e-2
    name: ClassVar[str] = "stale"

    def __post_init__(self) -> None:
        if not (isinstance(self.scale, (int, float)) and np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"stale scale must be a finite number > 0, got {self.scale!r}")

    def corrupt(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = _copy(values)
        if out.size == 0:
            return out
        rows = out.shape[0] if out.ndim else 1
        matrix = out.reshape(rows, -1)
        missed = np.outer(rng.standard_normal(rows), rng.standard_normal(matrix.shape[1]))
        peak = float(np.abs(missed).max())
        if peak == 0.0:  # probability zero, but never divide by it
            missed[...] = 1.0
            peak = 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            matrix -= (missed * (self.scale * block_scale(out) / peak)).astype(out.dtype)
        return out

    def options(self) -> dict[str, str]:
        return {"scale": format_number(self.scale)}


MODELS: dict[str, type] = {m.name: m for m in (BitFlip, Noise, NaN, Inf, Zero, Stale)}


def format_number(x: float) -> str:
    """Shortest text that reads back as the same float: ``0.001``, ``1e-5``, ``0.25``."""
    text = repr(float(x))
    if "e" in text:
        mantissa, exponent = text.split("e")
        mantissa = mantissa[:-2] if mantissa.endswith(".0") else mantissa
        text = f"{mantissa}e{int(exponent)}"
    elif text.endswith(".0"):
        text = text[:-2]
    return text


def relative_change(clean: np.ndarray, corrupted: np.ndarray) -> float:
    """max|corrupted - clean| / M(clean): the fault's size as a detector sees it (inf if non-finite).

    0.0 means the fault changed nothing numerically (e.g. a zero block stuck at zero, +0 -> -0).
    """
    if clean.size == 0:
        return 0.0
    clean64 = np.asarray(clean, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(np.asarray(corrupted, dtype=np.float64) - clean64)
    both_nan = np.isnan(clean64) & np.isnan(np.asarray(corrupted, dtype=np.float64))
    diff[both_nan] = 0.0
    same_inf = np.isinf(clean64) & (clean64 == np.asarray(corrupted, dtype=np.float64))
    diff[same_inf] = 0.0
    if not np.all(np.isfinite(diff)):
        return float("inf")
    return float(diff.max()) / block_scale(clean)
