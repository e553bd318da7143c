"""Making coded blocks on their workers: systematic pieces, parity combinations, replicas, operand copies.

Each function passes its fresh output through the fault hook: encoding may be faulty too. A block's
bookkeeping (norms, largest magnitude) is measured from the values as computed, before the hook:
a soft error hits the stored values, and a wrong value must stand out against bounds it did not
make (``stored``). Pure numpy: these run inside worker tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..errors import NonFiniteInputError
from ..faults.hook import CorruptionHook, Site
from .blocks import CodedBlock, encoding_error


def encode_parity(
    sources: Sequence[np.ndarray], coeffs: np.ndarray, hook: CorruptionHook, site: Site, attempt: int
) -> CodedBlock:
    """A parity block ``sum_i coeffs[i] * sources[i]`` of the user's weight pieces, with its
    encoding-error bound. From the pieces themselves, not from the stored systematic blocks: a
    fault in encoding a systematic block then spoils that block alone, which the code exposes (a
    parity made from it would agree with it)."""
    pieces = [checked_input(s) for s in sources]
    dtype = pieces[0].dtype
    values = sum(dtype.type(c) * s for c, s in zip(coeffs, pieces))
    abs_max = float(sum(abs(c) * float(np.max(np.abs(s), initial=0.0)) for c, s in zip(coeffs, pieces)))
    return stored(
        CodedBlock.from_values(np.asarray(values), encoding_error(len(pieces), abs_max, dtype)), hook, site, attempt
    )


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
    return stored(CodedBlock.from_values(values, 0.0), hook, site, attempt)


def replicate_block(source: dict, label: tuple[int, int, int], layer: str, hook: CorruptionHook) -> CodedBlock:
    """Replica r of block (a, b), copied from the shard holding it (the copy itself may be hit)."""
    block = source[label[:2]]
    if label[2] == 0:
        return block
    site = Site("encode", layer, 0, label)
    return stored(CodedBlock.from_values(block.values.copy(), block.err, block.updates), hook, site, 0)


def stored(block: CodedBlock, hook: CorruptionHook, site: Site, attempt: int) -> CodedBlock:
    """``block`` as written to memory: its values through the fault hook, its bookkeeping as measured."""
    return replace(block, values=hook.apply(site, block.values, attempt))
