"""A data set read from a Zarr array batch by batch, never loaded whole (larger-than-memory data).

Shuffling a data set that does not fit in memory sample by sample would read a chunk for almost
every sample of every batch. Instead each epoch visits the chunks (of rows) in a random order, a
*group* of them at a time (as many as fit in ``buffer_bytes``), and shuffles the samples within a
group: every chunk is read once per epoch, at most two groups are in memory, and the order is a
pure function of ``(seed, epoch)``, so a rollback or a resumed run sees the same batches. The test
set (a seeded stratified split over all samples, like the in-memory data sets) is evaluated by
reading the chunks in order, a group at a time.

The labels (one integer per sample) are held in memory; the features stay on disk. Opening the
data reads every chunk once to check it (finite, numeric) and to fingerprint it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .data import describe, stratified_split
from .errors import DataError

#: Default memory for one group of chunks (two groups may be held at once).
DEFAULT_BUFFER_BYTES = 256 * 2**20


class StreamedDataset:
    """Samples (rows of ``x``, a Zarr array of shape samples x features) with labels ``y``.

    Offers what a training run uses of a data set (see :mod:`codenet_dask.data`); batches come
    as features x samples, like the in-memory :class:`~codenet_dask.data.Dataset`.
    """

    def __init__(
        self,
        x: Any,
        y: np.ndarray,
        *,
        test_fraction: float,
        seed: int,
        dtype: np.dtype | str,
        name: str,
        source: dict[str, Any] | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        samples, features = x.shape
        self.x, self.dtype, self.name, self.source = x, np.dtype(dtype), name, dict(source or {})
        self.y = np.asarray(y, dtype=np.int64)
        self.classes = int(self.y.max()) + 1
        self.rows_per_chunk = int(x.chunks[0])
        self.chunks = -(-samples // self.rows_per_chunk)
        row_bytes = features * max(self.dtype.itemsize, np.dtype(x.dtype).itemsize)
        self.chunks_per_group = max(1, int(buffer_bytes) // (self.rows_per_chunk * row_bytes))
        train, test = stratified_split(self.y, test_fraction, seed)
        self.is_train = np.zeros(samples, dtype=bool)
        self.is_train[train] = True
        self.y_train, self.y_test = self.y[np.sort(train)], self.y[np.sort(test)]
        self.fingerprint = self._check_and_fingerprint()

    @property
    def features(self) -> int:
        return int(self.x.shape[1])

    def _rows(self, chunk: int) -> tuple[int, int]:
        return chunk * self.rows_per_chunk, min(self.x.shape[0], (chunk + 1) * self.rows_per_chunk)

    def _read(self, chunks: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers (ascending) and values of some chunks, one read per chunk, in ``self.dtype``."""
        ordered = sorted(int(c) for c in chunks)
        spans = [self._rows(c) for c in ordered]
        values = np.concatenate([np.asarray(self.x[a:b], dtype=self.dtype) for a, b in spans])
        return np.concatenate([np.arange(a, b) for a, b in spans]), values

    def _check_and_fingerprint(self) -> str:
        """Read every chunk once: finite values, and a BLAKE2b of all of them (and the labels)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{np.dtype(self.x.dtype).str}{self.x.shape}".encode())
        for chunk in range(self.chunks):
            a, b = self._rows(chunk)
            raw = np.asarray(self.x[a:b])
            bad = ~np.isfinite(raw).all(axis=1)
            if bad.any():
                raise DataError(
                    f"{self.name}: features hold NaN or Inf (first in sample {a + int(np.argmax(bad))}); "
                    "clean or drop those samples"
                )
            h.update(np.ascontiguousarray(raw).tobytes())
        h.update(self.y.tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """Where the data came from and what it is (:func:`codenet_dask.data.describe`)."""
        return describe(self)

    def epoch_batches(self, batch_size: int, *, seed: int, epoch: int) -> Sequence[tuple[np.ndarray, np.ndarray]]:
        """One epoch's mini-batches, read from disk when first asked for (see the module docstring)."""
        return _EpochBatches(self, batch_size, seed, epoch)

    def test_batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The test samples, a group of chunks at a time, in order."""
        for first in range(0, self.chunks, self.chunks_per_group):
            rows, values = self._read(range(first, min(self.chunks, first + self.chunks_per_group)))
            test = ~self.is_train[rows]
            if test.any():
                yield np.ascontiguousarray(values[test].T), self.y[rows[test]]


class _EpochBatches(Sequence):
    """The batches of one epoch, indexable; at most two groups of chunks in memory."""

    def __init__(self, data: StreamedDataset, batch_size: int, seed: int, epoch: int) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.data, self.batch_size = data, batch_size
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(data.chunks)
        self.groups = [order[i : i + data.chunks_per_group] for i in range(0, data.chunks, data.chunks_per_group)]
        segments = []
        for group in self.groups:
            rows = np.concatenate([np.arange(*data._rows(int(c))) for c in group])
            segments.append(rng.permutation(rows[data.is_train[rows]]))
        self.order = np.concatenate(segments)
        self.group_of = np.repeat(np.arange(len(self.groups)), [s.size for s in segments])
        self._loaded: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return -(-self.order.size // self.batch_size)

    def _group(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        if g not in self._loaded:
            self._loaded[g] = self.data._read(self.groups[g])
            while len(self._loaded) > 2:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(g)
        return self._loaded[g]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of an epoch of {len(self)}")
        span = slice(index * self.batch_size, (index + 1) * self.batch_size)
        rows, groups = self.order[span], self.group_of[span]
        x = np.empty((rows.size, self.data.features), dtype=self.data.dtype)
        for g in np.unique(groups):
            held_rows, values = self._group(int(g))
            mine = groups == g
            x[mine] = values[np.searchsorted(held_rows, rows[mine])]
        return np.ascontiguousarray(x.T), self.data.y[rows]
