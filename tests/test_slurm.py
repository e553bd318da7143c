"""HPC clusters through dask-jobqueue, against a real single-node SLURM (set up by ``.ci/slurm.sh``).

Worker jobs are submitted with the real ``sbatch`` (nothing of Dask or SLURM is mocked): training
runs on them, the CLI runs on them, and after success, failure, Ctrl-C or SIGTERM ``squeue`` lists
none of the jobs. Bad configuration is refused with exit code 2 before anything is submitted (those
tests need no SLURM: a spy ``sbatch`` on PATH records any call).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import codenet_dask
from codenet_dask.cli import main
from codenet_dask.cluster import ClusterSpec, connect, walltime_seconds
from codenet_dask.errors import ClusterConfigError

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--dataset", "digits", "--layers", "16", "--batch-size", "128", "--lr", "0.5", "--grid", "2x2"]
#: Two single-core worker jobs fit the 2-CPU test node; 2 GiB each fits any CI machine.
ON_SLURM = ["--cluster", "slurm", "--workers", "2", "--memory", "2GiB", "--cluster-timeout", "60"]
SUBMITTED = re.compile(r"submitted worker jobs ([\d, ]+) with sbatch")


def slurm_unavailable() -> str | None:
    """Why the SLURM tests cannot run here, or None when the node is up and idle."""
    missing = [c for c in ("sbatch", "sinfo", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        return f"SLURM not installed ({', '.join(missing)} not on PATH); run .ci/slurm.sh as root to set it up"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s: slurmctld is not running (run .ci/slurm.sh)"
    if states.returncode != 0:
        return f"sinfo failed: {' '.join(states.stderr.split())[:200]} (run .ci/slurm.sh)"
    if "idle" not in states.stdout.split() and "mixed" not in states.stdout.split():
        return f"no idle SLURM node (sinfo says {states.stdout.split() or 'nothing'}); run .ci/slurm.sh"
    return None


REASON = slurm_unavailable()
needs_slurm = pytest.mark.skipif(REASON is not None, reason=f"real SLURM needed: {REASON}")


def queued_jobs() -> set[str]:
    """Every job id ``squeue`` lists (all states it shows: pending, running, completing...)."""
    done = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def assert_left_no_jobs(ids: list[str]) -> None:
    assert ids, "no sbatch job ids were reported"
    assert not set(ids) & queued_jobs(), f"jobs {ids} still in squeue"


def run_cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codenet_dask", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def job_ids_in(stderr: str) -> list[str]:
    match = SUBMITTED.search(stderr)
    return [j.strip() for j in match[1].split(",")] if match else []


# -- against a real SLURM ---------------------------------------------------------------------------
@needs_slurm
def test_training_runs_on_workers_started_by_sbatch(capsys):
    from codenet_dask.cluster import hpc
    from codenet_dask.data import load_dataset
    from codenet_dask.training import TrainConfig, Trainer

    data = load_dataset("digits", seed=0)
    config = TrainConfig(
        hidden=(16,),
        epochs=2,
        batch_size=128,
        lr=0.5,
        grid=2,
        parity=(2, 2),
        seed=0,
        faults="bitflip:0.02:field=exponent:steps=block-forward+block-backward",
    )
    spec = ClusterSpec.from_config(kind="slurm", workers=2, memory="2GiB", wait_timeout=60)
    lines: list[str] = []
    with connect(spec=spec, notify=lines.append) as client:
        ids = hpc.job_ids(client)
        workers = client.run(
            lambda: (
                os.environ.get("SLURM_JOB_ID"),
                codenet_dask.__file__,
                os.environ.get("OPENBLAS_NUM_THREADS"),
                os.environ.get("MALLOC_MMAP_THRESHOLD_"),
            )
        )
        nthreads = client.nthreads()
        summary = Trainer(client, data, config).run()
    with capsys.disabled():
        print(
            f"\n[slurm] sbatch jobs {', '.join(ids)}; workers (SLURM_JOB_ID, codenet_dask): "
            f"{sorted(workers.values())}; accuracy {summary.test_accuracy:.3f}, faults {summary.faults}"
        )
    assert len(ids) == 2 and len(workers) == 2
    # Each worker runs inside one of the submitted jobs, single-threaded, on this checkout's code.
    assert sorted(w[0] for w in workers.values()) == sorted(ids)
    assert all(Path(w[1]).resolve() == ROOT / "codenet_dask" / "__init__.py" for w in workers.values())
    assert all(w[2:] == ("1", str(32 * 2**20)) for w in workers.values())  # the worker environment
    assert all(w[2] == "1" for w in workers.values()) and set(nthreads.values()) == {1}
    assert any("registered" in line for line in lines)
    assert summary.workers == 2 and summary.iterations == 2 * 12
    assert summary.faults["injected"] > 0 and summary.faults["undetected"] == 0
    assert summary.test_accuracy > 0.6
    assert_left_no_jobs(ids)


@needs_slurm
def test_cli_train_on_slurm_prints_json_and_cancels_its_jobs():
    done = run_cli(
        "train",
        *SMALL,
        "--epochs",
        "2",
        *ON_SLURM,
        "--json",
        "--faults",
        "bitflip:0.02:field=exponent:steps=block-forward+block-backward",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # exactly one JSON object on stdout; job ids on stderr
    ids = job_ids_in(done.stderr)
    print(f"sbatch jobs {ids}: {done.stderr.strip().splitlines()[-1]}")
    assert len(ids) == 2 and "2 workers registered" in done.stderr
    assert summary["workers"] == 2 and summary["faults"]["undetected"] == 0 and summary["test_accuracy"] > 0.6
    assert_left_no_jobs(ids)


@needs_slurm
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_leaves_no_jobs(sig, code):
    """Ctrl-C (SIGINT) or SIGTERM mid-training: the run stops, and every worker job is cancelled."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "codenet_dask", "train", *SMALL, "--epochs", "50", *ON_SLURM],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while not any(line.startswith("epoch 1/") for line in seen) and time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert proc.poll() is None, "".join(seen)
        ids = job_ids_in("".join(seen))
        assert len(ids) == 2, "".join(seen)
        assert set(ids) <= queued_jobs()  # the jobs are there while it trains
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_left_no_jobs(ids)


def _blocks(store: Path) -> dict:
    from codenet_dask.store import CodedStore

    with CodedStore.open(store) as opened:
        model = opened.restore()
    return {
        (name, key): (b.values.tobytes(), b.err, b.updates) for name, grid in model.items() for key, b in grid.items()
    }


def _release_if_held(job: str, released: set[str]) -> None:
    """Start a requeued job soon: SLURM holds one for about two minutes (reason BeginTime) before it
    may run again. Only the wait is shortened; walltime, signal and requeue are SLURM's own. Not to
    *now*: a job started within the second its previous attempt's credential was revoked is killed
    ("Job credential revoked", credentials have 1-second resolution), so it starts 3 s later, once
    per attempt (``released`` holds the restart counts already moved)."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=30)
    fields = dict(item.split("=", 1) for item in shown.stdout.split() if "=" in item)
    restarts = fields.get("Restarts", "")
    if fields.get("JobState") == "PENDING" and fields.get("Reason") == "BeginTime" and restarts not in released:
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now+3"], capture_output=True, timeout=30)
        released.add(restarts)


@needs_slurm
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_job_that_hits_its_walltime_requeues_itself_and_resumes_bit_identical(tmp_path, capsys):
    """workflows/slurm_requeue.sbatch (the README's job script) with a 2-minute walltime and USR1 40 s
    before it (SLURM checks once a minute, so it comes 20..80 s into an attempt: with a 1-minute
    walltime it can come within seconds of every start, and no attempt gets to train): every
    attempt is stopped by the signal, the job
    requeues itself, each attempt resumes the store, and the run ends with the model and ledger of
    an uninterrupted run."""
    args = [
        *SMALL,
        "--epochs",
        "24",  # longer than one attempt, so the walltime is hit
        "--checkpoint-every",
        "2",
        "--seed",
        "3",
        "--faults",
        "bitflip:0.02:steps=block-forward+update",
    ]
    reference = run_cli("train", *args, "--workers", "2", "--store", str(tmp_path / "reference"), "--json", timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]
    store, log = tmp_path / "store", tmp_path / "job.log"
    env = dict(
        os.environ,
        STORE=str(store),
        TRAIN_ARGS=" ".join(args),
        CODENET=f"{sys.executable} -m codenet_dask",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--time=2",
            "--signal=B:USR1@40",
            f"--output={log}",
            str(ROOT / "workflows" / "slurm_requeue.sbatch"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    try:
        deadline, released = time.monotonic() + 12 * 60, set()
        while job in queued_jobs():
            assert time.monotonic() < deadline, f"job {job} still queued after 12 minutes:\n{log.read_text()[-2000:]}"
            _release_if_held(job, released)
            time.sleep(3)
    finally:
        subprocess.run(["scancel", job], timeout=60)
    text = log.read_text()
    with capsys.disabled():
        print(f"\n[slurm] job {job}: {text.count(' attempt ')} attempts, {text.count('resume: ')} resumed")
    assert "walltime near: stopping the training and requeueing" in text and "attempt 2" in text, text[-3000:]
    assert "resume: " in text and "training ended with exit code 0" in text, text[-3000:]
    summary, expected = json.loads(Path(f"{store}.json").read_text()), json.loads(reference.stdout)
    assert summary["status"] == "completed" and summary["resumed_from_step"] > 0
    assert summary["faults"] == expected["faults"] and summary["accuracy_by_epoch"] == expected["accuracy_by_epoch"]
    assert _blocks(store) == _blocks(tmp_path / "reference")


@needs_slurm
def test_workers_that_never_start_fail_clearly_and_are_cancelled():
    """Three single-core jobs on a 2-CPU node: one stays pending, the wait times out, all are cancelled."""
    done = run_cli(
        "train",
        *SMALL,
        "--epochs",
        "1",
        "--cluster",
        "slurm",
        "--workers",
        "3",
        "--memory",
        "2GiB",
        "--cluster-timeout",
        "5",
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert re.search(r"only \d of 3 workers registered within 5 s \(jobs: .*PENDING", done.stderr), done.stderr
    assert_left_no_jobs(job_ids_in(done.stderr))


@needs_slurm
def test_job_slurm_refuses_is_a_usage_error_and_nothing_is_submitted():
    done = run_cli("train", *SMALL, "--cluster", "slurm", "--queue", "no-such-partition", timeout=60)
    assert done.returncode == 2
    assert "invalid partition" in done.stderr and "nothing was submitted" in done.stderr
    assert not SUBMITTED.search(done.stderr) and done.stdout == ""


# -- bad configuration: refused before any job (no SLURM needed) ------------------------------------
@pytest.fixture()
def spy_sbatch(tmp_path, monkeypatch):
    """An ``sbatch`` (and ``qsub``) first on PATH that only records that it was called."""
    bin_dir, log = tmp_path / "bin", tmp_path / "submitted.log"
    bin_dir.mkdir()
    for name in ("sbatch", "qsub"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexit 1\n')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize(
    "args,message",
    [
        (["--cluster", "lsf"], "unknown cluster kind 'lsf'; use --cluster local, slurm or pbs"),
        (["--cluster", "slurm", "--walltime", "90min"], "walltime '90min' is not HH:MM:SS or D-HH:MM:SS"),
        (["--cluster", "slurm", "--walltime", "1-24:00:00"], "is not HH:MM:SS or D-HH:MM:SS"),
        (["--cluster", "pbs", "--walltime", "00:61:00"], "is not HH:MM:SS or D-HH:MM:SS"),
        (["--cluster", "slurm", "--memory", "lots"], "memory 'lots' is not a size"),
        (["--cluster", "slurm", "--memory", "0"], "must be more than 0 bytes"),
        (["--cluster", "slurm", "--cores", "0"], "cores per job must be a positive integer"),
        (["--cluster", "slurm", "--scheduler", "tcp://127.0.0.1:8786"], "--scheduler and --cluster slurm exclude"),
        (["--walltime", "01:00:00"], "--walltime only applies to --cluster slurm or pbs"),
    ],
)
def test_bad_cluster_configuration_exits_2_before_submitting(spy_sbatch, capsys, command, args, message):
    extra = ["--out", "unused-out"] if command == "compare" else []
    assert main([command, *extra, "--dataset", "digits", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not spy_sbatch.exists()  # sbatch/qsub never called


@pytest.mark.parametrize("kind,command", [("slurm", "sbatch"), ("pbs", "qsub")])
def test_submit_command_missing_from_path_exits_2(tmp_path, kind, command):
    env = dict(os.environ, PATH=str(tmp_path))  # python is started by absolute path
    done = run_cli("train", "--dataset", "digits", "--cluster", kind, env=env, timeout=60)
    assert done.returncode == 2
    assert f"{command} not found on PATH: --cluster {kind} submits worker jobs with {command}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


def test_environment_variables_override_the_packaged_defaults(spy_sbatch):
    env = dict(os.environ, DASK_CODENET__CLUSTER__KIND="slurm", DASK_CODENET__CLUSTER__WALLTIME="tomorrow")
    done = run_cli("train", "--dataset", "digits", env=env, timeout=60)
    assert done.returncode == 2 and "walltime 'tomorrow' is not HH:MM:SS" in done.stderr
    assert not spy_sbatch.exists()


def test_config_defaults_then_user_config_then_arguments():
    import dask.config

    packaged = ClusterSpec.from_config()
    assert (packaged.kind, packaged.cores, packaged.memory, packaged.walltime) == ("local", 1, "4GiB", "01:00:00")
    with dask.config.set(
        {
            "codenet.cluster.walltime": "2-00:00:00",
            "codenet.cluster.queue": "gpu",
            "codenet.cluster.job-extra": ["--qos=low"],
        }
    ):
        spec = ClusterSpec.from_config(kind="pbs", queue="cpu")
    assert (spec.walltime, spec.queue, spec.job_extra) == ("2-00:00:00", "cpu", ("--qos=low",))
    assert walltime_seconds("2-00:00:00") == 48 * 3600 and walltime_seconds("100:00:00") == 100 * 3600
    with pytest.raises(ClusterConfigError, match="not HH:MM:SS"):
        walltime_seconds("12:00")


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_worker_job_script_is_single_threaded_and_imports_this_checkout(kind):
    """The script dask-jobqueue would submit (built, not submitted): directives from the options, one
    single-threaded worker process per core, BLAS at one thread, this checkout first on PYTHONPATH."""
    from codenet_dask.cluster import hpc

    spec = ClusterSpec.from_config(
        kind=kind,
        cores=2,
        memory="6GiB",
        walltime="1-12:00:00",
        queue="short",
        account="proj7",
        job_extra=("--qos=debug",),
    ).validated(check_path=False)
    cluster = hpc._cluster_class(kind)(**hpc.job_kwargs(spec, "codenet-test00"))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    prefix = "#SBATCH" if kind == "slurm" else "#PBS"
    expected = {
        "slurm": [
            "#SBATCH -J codenet-test00",
            "#SBATCH -p short",
            "#SBATCH -A proj7",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem=6G",
            "#SBATCH -t 36:00:00",
            "#SBATCH --qos=debug",
        ],
        "pbs": [
            "#PBS -N codenet-test00",
            "#PBS -q short",
            "#PBS -A proj7",
            "#PBS -l select=1:ncpus=2:mem=6144MB",
            "#PBS -l walltime=36:00:00",
            "#PBS --qos=debug",
        ],
    }[kind]
    for line in expected:
        assert line in script.splitlines(), (line, script)
    assert script.count(prefix) >= len(expected)
    assert "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=33554432" in script
    assert f"export PYTHONPATH={ROOT}" in script
    assert f"{sys.executable} -m distributed.cli.dask_worker" in script
    worker = next(line for line in script.splitlines() if "dask_worker" in line)
    for option in ("--nthreads 1", "--nworkers 2", "--memory-limit 3.00GiB", "--nanny"):
        assert option in worker, (option, worker)
