"""Your own data: .npz / NetCDF / Zarr in, every bad file refused in one line, Zarr streamed batch by
batch (chunk reads counted through a real Zarr store wrapper), and training reaching the accuracy
the data set is known to allow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from zarr.storage import LocalStore, WrapperStore

from codenet_dask.data import stratified_split
from codenet_dask.errors import DataError
from codenet_dask.streaming import StreamedDataset
from codenet_dask.training import TrainConfig, Trainer
from codenet_dask.userdata import load_data, reload_data

NET = ["--layers", "16", "--batch-size", "100", "--lr", "0.3", "--grid", "2x2", "--workers", "2"]


def blobs() -> tuple[np.ndarray, np.ndarray]:
    """3 classes in 10 standardised features; a linear model classifies 99% of the held-out quarter."""
    x, y = make_blobs(n_samples=1200, n_features=10, centers=3, cluster_std=4.0, random_state=7)
    return (x - x.mean(axis=0)) / x.std(axis=0), y


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codenet_dask", *args], capture_output=True, text=True, timeout=timeout
    )


def test_train_on_an_npz_file_reaches_the_known_accuracy(tmp_path):
    x, y = blobs()
    np.savez(tmp_path / "blobs.npz", X=x, y=y)
    train, test = stratified_split(y, 0.25, 0)
    known = LogisticRegression(max_iter=1000).fit(x[train], y[train]).score(x[test], y[test])
    assert known >= 0.99
    done = cli("train", "--data", str(tmp_path / "blobs.npz"), "--test-fraction", "0.25", *NET, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["dataset"] == "blobs" and summary["layers"] == [10, 16, 3]
    assert summary["faults"]["injected"] > 0 and summary["faults"]["undetected"] == 0
    assert summary["test_accuracy"] >= known - 0.02


def _write(tmp_path, name: str, **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    "arrays,extra,message",
    [
        ({"X": np.ones((10, 4)), "y": np.arange(9) % 2}, [], "X has 10 samples but y has 9 labels"),
        ({"X": np.ones((10, 4)), "y": np.arange(10) / 2}, [], "labels must be integers"),
        ({"X": np.ones((10, 4)), "y": np.arange(10) - 1}, [], "labels must be non-negative class numbers, found -1"),
        ({"X": np.where(np.eye(10, 4), np.nan, 1.0), "y": np.arange(10) % 2}, [], "features hold NaN or Inf"),
        ({"X": np.full((10, 4), np.inf), "y": np.arange(10) % 2}, [], "features hold NaN or Inf"),
        ({"X": np.ones((0, 4)), "y": np.zeros(0, dtype=int)}, [], "X is empty"),
        ({"X": np.ones((10, 4)), "y": np.zeros(10, dtype=int)}, [], "needs at least 2 classes"),
        ({"X": np.ones(10), "y": np.arange(10) % 2}, [], "X must be 2-D (samples, features)"),
        ({"X": np.ones((10, 4)), "labels": np.arange(10) % 2}, [], "has no array 'y' (it has: X, labels)"),
        ({"X": np.ones((10, 4)), "y": np.arange(10) % 2}, ["--layers", "784,16,2"], "does not start with its 4"),
        ({"X": np.ones((10, 4)), "y": np.arange(10) % 2}, ["--dataset", "digits"], "--dataset names a bundled"),
    ],
)
def test_bad_data_exits_2_in_one_line_and_writes_nothing(tmp_path, arrays, extra, message):
    path = _write(tmp_path, "bad.npz", **arrays)
    store = tmp_path / "store"
    done = cli("train", "--data", path, "--store", str(store), *extra, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""
    assert not store.exists()


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.npz", None, "does not exist"),
        ("table.csv", b"1,2,3\n", "unknown kind '.csv'"),
        ("broken.npz", b"not a zip file", "cannot read"),
    ],
)
def test_unreadable_data_files_are_named(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    done = cli("train", "--data", str(tmp_path / name), timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_npz_netcdf_and_zarr_give_the_same_split(tmp_path):
    x, y = blobs()
    np.savez(tmp_path / "d.npz", X=x, y=y)
    ds = xr.Dataset({"X": (("sample", "feature"), x), "y": ("sample", y.astype(np.int32))})
    ds.to_netcdf(tmp_path / "d.nc")
    ds.chunk({"sample": 100}).to_zarr(tmp_path / "d.zarr")
    memory = load_data(tmp_path / "d.npz", test_fraction=0.25, seed=1)
    netcdf = load_data(tmp_path / "d.nc", test_fraction=0.25, seed=1)
    streamed = load_data(tmp_path / "d.zarr", test_fraction=0.25, seed=1)
    assert isinstance(streamed, StreamedDataset) and streamed.rows_per_chunk == 100
    assert memory.features == netcdf.features == streamed.features == 10
    assert memory.classes == netcdf.classes == streamed.classes == 3
    np.testing.assert_array_equal(memory.x_train, netcdf.x_train)
    # The same samples held out: the streamed test set, read chunk by chunk, is the in-memory one.
    got = np.hstack([xb for xb, _ in streamed.test_batches()])
    order = np.lexsort(memory.x_test)
    np.testing.assert_array_equal(np.sort(memory.y_test), np.sort(streamed.y_test))
    np.testing.assert_array_equal(memory.x_test[:, order], got[:, np.lexsort(got)])
    assert reload_data(streamed.describe(), "float64").fingerprint == streamed.fingerprint


def test_reload_refuses_changed_data(tmp_path):
    x, y = blobs()
    np.savez(tmp_path / "d.npz", X=x, y=y)
    description = load_data(tmp_path / "d.npz").describe()
    np.savez(tmp_path / "d.npz", X=x + 1, y=y)
    with pytest.raises(DataError, match="not the ones the run started with"):
        reload_data(description, "float64")


class RecordingStore(WrapperStore):
    """A real Zarr store that records the key of every read."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.reads: list[str] = []

    async def get(self, key, prototype, byte_range=None):
        self.reads.append(key)
        return await self._store.get(key, prototype, byte_range)


def streamed_blobs(tmp_path, buffer_chunks: int) -> tuple[StreamedDataset, RecordingStore, int]:
    x, y = blobs()
    group = zarr.open_group(str(tmp_path / "blobs.zarr"), mode="w")
    group.create_array("X", shape=x.shape, chunks=(50, 10), dtype="f8")[:] = x
    group.create_array("y", shape=y.shape, chunks=(1200,), dtype="i8")[:] = y
    recording = RecordingStore(LocalStore(str(tmp_path / "blobs.zarr"), read_only=True))
    array = zarr.open_group(recording, mode="r")["X"]
    data = StreamedDataset(
        array, y, test_fraction=0.25, seed=0, dtype="float64", name="blobs", buffer_bytes=buffer_chunks * 50 * 10 * 8
    )
    return data, recording, 1200 // 50


def test_streamed_epochs_cover_every_training_sample_once_in_a_seeded_order(tmp_path):
    data, _, _ = streamed_blobs(tmp_path, buffer_chunks=3)
    epoch = data.epoch_batches(64, seed=5, epoch=0)
    labels = np.concatenate([epoch[i][1] for i in range(len(epoch))])
    assert labels.size == data.y_train.size and np.array_equal(np.sort(labels), np.sort(data.y_train))
    again = data.epoch_batches(64, seed=5, epoch=0)
    assert all(np.array_equal(epoch[i][0], again[i][0]) for i in (0, 7, len(epoch) - 1))
    other = data.epoch_batches(64, seed=5, epoch=1)
    assert not np.array_equal(epoch[0][0], other[0][0])


def chunk_reads(recording: RecordingStore) -> list[str]:
    return [k for k in recording.reads if k.startswith("X/c/")]


def test_streamed_training_reads_batch_by_batch_never_the_whole_array(client, tmp_path):
    data, recording, chunks = streamed_blobs(tmp_path, buffer_chunks=3)
    assert len(set(chunk_reads(recording))) == chunks  # opening checks every chunk once
    recording.reads.clear()
    per_step: list[int] = []
    config = TrainConfig(
        hidden=(16,), epochs=2, batch_size=100, lr=0.3, grid=2, faults="none", checkpoint_every=100, seed=0
    )
    trainer = Trainer(client, data, config, tmp_path / "store")
    seen = [0]

    def count(row: dict) -> None:
        per_step.append(len(chunk_reads(recording)) - seen[0])
        seen[0] = len(chunk_reads(recording))

    summary = trainer.run(count)
    assert summary.status == "completed" and summary.test_accuracy > 0.97
    # Between two steps at most two groups of 3 chunks are read (an evaluation reads every chunk
    # once, a group at a time): never the whole array for one batch, and every chunk read once per
    # epoch for training and once per evaluation.
    assert max(per_step) <= chunks + 2 * 3 and sorted(per_step)[-3] <= 2 * 3
    assert len(chunk_reads(recording)) <= config.epochs * (chunks + chunks) + 2 * 3


def test_train_on_an_xarray_zarr_data_set_with_named_variables(tmp_path):
    x, y = blobs()
    xr.Dataset({"pixels": (("sample", "feature"), x), "digit": ("sample", y)}).chunk({"sample": 200}).to_zarr(
        tmp_path / "blobs.zarr"
    )
    args = ["--data", str(tmp_path / "blobs.zarr"), *NET, "--epochs", "2", "--faults", "none", "--json"]
    done = cli("train", *args, timeout=60)
    assert done.returncode == 2 and "has no array 'X' (it has: digit, pixels)" in done.stderr
    done = cli("train", *args, "--x-var", "pixels", "--y-var", "digit")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["layers"] == [10, 16, 3] and summary["test_accuracy"] > 0.9
