"""Weights out: export (.nc, .zarr, .npz) gives the run's test accuracy in plain numpy; predict and
load_model agree with it; a store whose blocks do not verify is refused and nothing is written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr
from clirun import run_cli as cli

import codenet_dask
from codenet_dask.data import load_dataset
from codenet_dask.errors import BlocksLostError

RUN = [
    "--dataset",
    "digits",
    "--layers",
    "16",
    "--epochs",
    "2",
    "--batch-size",
    "128",
    "--lr",
    "0.5",
    "--grid",
    "2x2",
    "--workers",
    "2",
    "--seed",
    "4",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = tmp_path_factory.mktemp("run") / "store"
    done = cli("train", *RUN, "--store", str(store), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return store, json.loads(done.stdout)


def plain_numpy_accuracy(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """The network by hand: ReLU hidden layers, the last one linear; samples are columns of x."""
    h = x
    for w in weights[:-1]:
        h = np.maximum(w @ h, 0.0)
    return float(np.mean(np.argmax(weights[-1] @ h, axis=0) == y))


def test_exported_weights_give_the_runs_accuracy_in_plain_numpy(trained, tmp_path):
    store, summary = trained
    test = load_dataset("digits", seed=4)  # the run's data and seeded split
    for suffix in ("npz", "nc", "zarr"):
        out = tmp_path / f"weights.{suffix}"
        done = cli("export", str(store), "--out", str(out), "--json", timeout=120)
        assert done.returncode == 0, done.stderr
        if suffix == "npz":
            with np.load(out, allow_pickle=False) as npz:
                weights = [npz["dense0"], npz["dense1"]]
                attrs = json.loads(str(npz["attrs"]))
        else:
            ds = xr.open_zarr(out, consolidated=False) if suffix == "zarr" else xr.open_dataset(out)
            assert ds["dense0"].dims == ("hidden1", "input") and ds["dense1"].dims == ("output", "hidden1")
            assert ds.sizes == {"input": 64, "hidden1": 16, "output": 10}
            weights = [ds["dense0"].values, ds["dense1"].values]
            attrs = dict(ds.attrs)
        assert [w.shape for w in weights] == [(16, 64), (10, 16)]
        assert plain_numpy_accuracy(weights, test.x_test, test.y_test) == summary["test_accuracy"]
        assert attrs["test_accuracy"] == summary["test_accuracy"] and attrs["status"] == "completed"
        config = json.loads(attrs["config"])
        assert config["lr"] == 0.5 and config["hidden"] == [16] and config["seed"] == 4


def test_inspect_shows_the_training_run(trained):
    store, summary = trained
    info = json.loads(cli("inspect", str(store), "--json", timeout=60).stdout)
    assert info["run"]["status"] == "completed" and info["run"]["test_accuracy"] == summary["test_accuracy"]
    assert info["run"]["layers"] == [64, 16, 10] and info["run"]["data"] == "digits"


def test_predict_and_load_model_agree_with_the_run(trained, tmp_path):
    store, summary = trained
    done = cli("predict", str(store), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["accuracy"] == summary["test_accuracy"] and result["samples"] == 359
    test = load_dataset("digits", seed=4)
    model = codenet_dask.load_model(store)
    assert model.layers == [64, 16, 10] and model.record["status"] == "completed"
    x = test.x_test.T  # samples as rows, as scikit-learn takes them
    assert model.score(x, test.y_test) == summary["test_accuracy"]
    proba = model.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(np.argmax(proba, axis=1), model.predict(x))
    np.savez(tmp_path / "new.npz", X=x, y=test.y_test)
    done = cli("predict", str(store), "--data", str(tmp_path / "new.npz"), "--out", str(tmp_path / "p.csv"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accuracy"] == summary["test_accuracy"]
    table = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1, dtype=int)
    assert np.array_equal(table[:, 1], model.predict(x)) and np.array_equal(table[:, 2], test.y_test)
    np.savez(tmp_path / "unlabelled.npz", X=x[:5, :10])
    done = cli("predict", str(store), "--data", str(tmp_path / "unlabelled.npz"), timeout=60)
    assert done.returncode == 2 and "has 10 features; the network takes 64" in done.stderr


def _damage(store, count: int) -> None:
    """Overwrite ``count`` of the newest value chunk objects (each one coded block: 8x32 or 5x8
    float64 and a 4-byte CRC) with zeros."""
    chunks = sorted((store / "chunks").iterdir(), key=lambda p: p.stat().st_mtime)
    values = [p for p in chunks if p.stat().st_size in (8 * 32 * 8 + 4, 5 * 8 * 8 + 4)][-count:]
    for p in values:
        p.write_bytes(b"\0" * p.stat().st_size)


def test_damaged_stores_are_repaired_in_memory_or_refused(trained, tmp_path):
    store, _ = trained
    one = tmp_path / "one"
    shutil.copytree(store, one)
    _damage(one, 1)
    done = cli("export", str(one), "--out", str(tmp_path / "w.npz"), timeout=120)
    assert done.returncode == 0 and "rebuilt from the code" in done.stderr, done.stderr
    with np.load(tmp_path / "w.npz") as npz:
        exported = [npz["dense0"], npz["dense1"]]
    assert all(np.array_equal(a, b) for a, b in zip(exported, codenet_dask.load_model(store).weights))
    wrecked = tmp_path / "wrecked"
    shutil.copytree(store, wrecked)
    _damage(wrecked, 40)
    done = cli("export", str(wrecked), "--out", str(tmp_path / "x.nc"), timeout=120)
    assert done.returncode == 4 and "does not verify" in done.stderr and not (tmp_path / "x.nc").exists()
    with pytest.raises(BlocksLostError):
        codenet_dask.load_model(wrecked)


@pytest.mark.parametrize(
    "name,message", [("w.txt", "must end in .nc or .zarr or .npz"), ("exists.nc", "already exists")]
)
def test_bad_export_paths_exit_2(trained, tmp_path, name, message):
    store, _ = trained
    (tmp_path / "exists.nc").write_text("mine")
    done = cli("export", str(store), "--out", str(tmp_path / name), timeout=60)
    assert done.returncode == 2 and message in done.stderr
    assert (tmp_path / "exists.nc").read_text() == "mine"
