"""Making coded blocks on their workers: systematic pieces, parity combinations, replicas, operand copies.

Each function passes its fresh output through the fault hook: encoding may be faulty too.
Pure numpy: these run inside worker tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import NonFiniteInputError
from ..faults.hook import CorruptionHook, Site
from .blocks import CodedBlock, encoding_error


def encode_parity(
    sources: Sequence[CodedBlock], coeffs: np.ndarray, hook: CorruptionHook, site: Site, attempt: int
) -> CodedBlock:
    """A parity block ``sum_i coeffs[i] * sources[i]`` with its encoding-error bound."""
    dtype = sources[0].dtype
    values = sum(dtype.type(c) * s.values for c, s in zip(coeffs, sources))
    abs_max = float(sum(abs(c) * s.max_abs for c, s in zip(coeffs, sources)))
    err = encoding_error(len(sources), abs_max, dtype) + float(sum(abs(c) * s.err for c, s in zip(coeffs, sources)))
    return CodedBlock.from_values(hook.apply(site, np.asarray(values), attempt), err)


def local_copy(values: np.ndarray) -> np.ndarray:
    """An operand kept on this worker under a key of its own (see ``CodedLayer.ship``)."""
    return values


def checked_input(values: np.ndarray) -> np.ndarray:
    """User data entering a coded product: NaN/Inf here is bad input, not a soft error."""
    if not np.all(np.isfinite(values)):
        raise NonFiniteInputError("an input chunk holds NaN or Inf; clean the data before multiplying")
    return values


def systematic_block(values: np.ndarray, hook: CorruptionHook, site: Site, attempt: int) -> CodedBlock:
    """A systematic block as stored on its worker (exact: no encoding error)."""
    values = np.array(checked_input(values), copy=True)
    return CodedBlock.from_values(hook.apply(site, values, attempt), 0.0)


def replicate_block(source: dict, label: tuple[int, int, int], layer: str, hook: CorruptionHook) -> CodedBlock:
    """Replica r of block (a, b), copied from the shard holding it (the copy itself may be hit)."""
    block = source[label[:2]]
    if label[2] == 0:
        return block
    site = Site("encode", layer, 0, label)
    return CodedBlock.from_values(hook.apply(site, block.values.copy(), 0), block.err, block.updates)
