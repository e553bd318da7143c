"""The compare experiment at a tiny size: outputs readable, ledgers right, the CLI and its usage errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import xarray as xr

from codenet_dask.compare import PLOTS, Variant, fault_spec, run_comparison
from codenet_dask.data import load_dataset
from codenet_dask.training import TrainConfig

TINY = TrainConfig(hidden=(16,), epochs=1, batch_size=256)  # 5 steps
HIGH = 0.1  # exponent flips per task: several uncoded results go wrong within 5 steps
# Faults in checked products only: a wrong *stored* block left by a faulty update is another
# matter (repaired by scrubs; see the report on update faults), kept out of this check.
FAULTS = "bitflip:field=exponent:steps=block-forward+block-backward"


@pytest.fixture(scope="module")
def experiment(client, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    ds = run_comparison(
        client, load_dataset("digits"), ["uncoded", "codenet-2x2+2x2"], [0, HIGH], [0], TINY, out, fault_model=FAULTS
    )
    return ds, out


def test_outputs_are_written_and_readable(experiment):
    ds, out = experiment
    with (out / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert {
        "strategy",
        "fault_rate",
        "seed",
        "status",
        "final_accuracy",
        "wall_seconds",
        "injected",
        "corrected",
        "recomputed",
        "rollbacks",
        "benign",
        "undetected",
        "flop_ratio",
        "corrects",
        "detects",
    } <= set(rows[0])
    stored = xr.open_zarr(out / "results.zarr")
    assert dict(stored.sizes) == {"strategy": 2, "fault_rate": 2, "seed": 1, "step": ds.sizes["step"]}
    assert list(stored.strategy.values) == ["uncoded", "codenet-2x2+2x2"]
    assert list(stored.fault_rate.values) == [0, HIGH] and stored.step.values[0] == 0
    assert stored.accuracy.dims == ("strategy", "fault_rate", "seed", "step")
    assert np.isfinite(stored.accuracy.sel(fault_rate=0)).all()  # every point read in the fault-free runs
    assert np.all(np.diff(stored.elapsed.sel(fault_rate=0).values, axis=-1) > 0)
    assert stored.flop_ratio.sel(strategy="codenet-2x2+2x2") == pytest.approx(8 / 3)
    for name in PLOTS:
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100


def test_ledgers_codenet_catches_everything_uncoded_does_not(experiment):
    ds, _ = experiment
    hit = ds.sel(fault_rate=HIGH, seed=0)
    assert int(hit.injected.sel(strategy="codenet-2x2+2x2")) > 0
    assert int(hit.undetected.sel(strategy="codenet-2x2+2x2")) == 0
    assert int(hit.undetected.sel(strategy="uncoded")) > 0
    clean = ds.sel(fault_rate=0, seed=0)
    assert (clean.injected == 0).all() and (clean.status == "ok").all()
    # Same seed, same batches, no faults: the strategies train the same model.
    assert float(clean.final_accuracy.sel(strategy="uncoded")) == float(
        clean.final_accuracy.sel(strategy="codenet-2x2+2x2")
    )


def test_variants_and_fault_specs():
    assert Variant.parse("replication-3").flop_ratio == 3 and Variant.parse("replication-3").corrects == 1
    four = Variant.parse("codenet-4x4+2x2")
    assert (four.grid, four.parity, four.corrects, four.detects, four.flop_ratio) == (4, (2, 2), 1, 2, 1.75)
    assert fault_spec("bitflip", 0) == "none"
    assert (
        fault_spec("bitflip:field=exponent", 0.01)
        == "bitflip:0.01:field=exponent:steps=block-forward+block-backward+update"
    )
    assert fault_spec("nan:steps=update", 0.1) == "nan:0.1:steps=update"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codenet_dask", "compare", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "out"
    done = cli(
        "--out",
        str(out),
        "--dataset",
        "digits",
        "--layers",
        "16,16",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--strategies",
        "uncoded,replication-2",
        "--fault-rates",
        "0,0.02",
        "--seeds",
        "0",
        "--workers",
        "2",
        "--format",
        "netcdf",
        "--json",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert len(result["runs"]) == 4 and result["table"].startswith("| strategy")
    assert xr.open_dataset(out / "results.nc").attrs["layers"] == "16-16"  # equal widths may repeat
    assert xr.open_dataset(out / "results.nc").sizes["strategy"] == 2
    assert {p.name for p in out.iterdir()} == {"runs.csv", "results.nc", *PLOTS}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--strategies", "uncoded,triple"], "unknown strategy 'triple'"),
        (["--strategies", "uncoded,uncoded"], "no repeats"),
        (["--fault-rates", "0,-0.1"], "in [0, 1]"),
        (["--fault-rates", "0,x"], "comma-separated list of floats"),
        (["--seeds", "-1"], "--seeds must be >= 0"),
        (["--fault-model", "bogus"], "unknown fault model"),
        (["--strategies", "codenet-2x2+1x1", "--layers", "1"], "at least the finest grid 2"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, args, message):
    done = cli("--out", str(tmp_path / "out"), *args, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_non_empty_out_needs_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    done = cli("--out", str(tmp_path), timeout=60)
    assert done.returncode == 2 and "--overwrite" in done.stderr


def test_a_run_that_does_not_complete_is_recorded_with_its_status(client, tmp_path):
    """NaN results reach an uncoded run's outputs: the run is recorded as diverged, with the reason,
    NaN accuracy and its ledger so far, and the experiment goes on to write its outputs."""
    ds = run_comparison(
        client,
        load_dataset("digits"),
        ["uncoded", "codenet-2x2+2x2"],
        [0.2],
        [0],
        TINY,
        tmp_path,
        fault_model="nan:steps=block-forward",
    )
    hit = ds.sel(strategy="uncoded", fault_rate=0.2, seed=0)
    assert str(hit.status.values).startswith("diverged: ") and "NaN/Inf" in str(hit.status.values)
    assert np.isnan(float(hit.final_accuracy)) and int(hit.undetected) > 0
    assert str(ds.status.sel(strategy="codenet-2x2+2x2", fault_rate=0.2, seed=0).values) == "ok"
    assert (tmp_path / "runs.csv").exists()
