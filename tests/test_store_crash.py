"""SIGKILL a writer in the middle of a checkpoint; the previous checkpoint must restore bit-exactly.

The child writes a new version of two layers block by block, then commits. It is killed after a
given progress marker (optionally after a short delay, to land inside the commit itself). After
every kill the store must open for writing again (the lock died with the process), its latest
checkpoint must be entirely the old or entirely the new model, never a mix, and the old
checkpoint must always restore bit-exactly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_store_support import BLOCK, CODE, make_grid, same_block

from codenet_dask.store import CodedStore, scrub

OLD = {"fc1": make_grid(seed=10), "fc2": make_grid(seed=11)}
NEW = {"fc1": make_grid(seed=20), "fc2": make_grid(seed=21)}

CHILD = """
import sys, time
from codenet_dask.store import CodedStore
from test_store_support import make_grid
new = {"fc1": make_grid(seed=20), "fc2": make_grid(seed=21)}
store = CodedStore.open(sys.argv[1], "r+")
print("opened", flush=True)
for i, key in enumerate(sorted(new["fc1"])):
    store.write_blocks("fc1", {key: new["fc1"][key]})
    print(f"wrote {i}", flush=True)
store.write_layer("fc2", new["fc2"])
print("committing", flush=True)
store.checkpoint(2)
print("committed", flush=True)
time.sleep(60)
"""

TESTS = Path(__file__).parent
# (marker to wait for, delay after it in seconds, which checkpoint must be the latest: 1, 2 or None = either)
KILL_POINTS = [
    ("opened", 0.0, 1),
    ("wrote 0", 0.0, 1),
    ("wrote 9", 0.0, 1),
    ("committing", 0.0, None),
    ("committing", 0.004, None),  # on a 2-core box the commit's own writes start ~6 ms after
    ("committing", 0.007, None),  # the marker and the reference moves at ~10 ms: these delays
    ("committing", 0.009, None),  # land before, inside and after (the invariant holds for all)
    ("committing", 0.011, None),
    ("committed", 0.0, 2),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("crash") / "model"
    store = CodedStore.create(path)
    for name, grid in OLD.items():
        store.add_layer(name, CODE, BLOCK)
        store.write_layer(name, grid)
    store.checkpoint(1)
    store.close()
    return path


def kill_at(path: Path, marker: str, delay: float) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        for line in child.stdout:  # type: ignore[union-attr]
            if line.strip() == marker:
                if delay:
                    time.sleep(delay)
                child.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail(f"child ended before printing {marker!r} (exit {child.wait()})")
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL


def model_equals(model: dict, expected: dict) -> bool:
    return set(model) == set(expected) and all(
        set(model[n]) == set(expected[n]) and all(same_block(model[n][k], expected[n][k]) for k in expected[n])
        for n in expected
    )


@pytest.mark.parametrize("marker,delay,latest", KILL_POINTS)
def test_sigkill_mid_checkpoint_leaves_previous_checkpoint_restorable(pristine, tmp_path, marker, delay, latest):
    path = tmp_path / "model"
    shutil.copytree(pristine, path)
    kill_at(path, marker, delay)
    with CodedStore.open(path, "r+") as store:  # the dead writer's lock is gone
        steps = [c.step for c in store.checkpoints()]
        assert steps in ([1], [2, 1]), steps
        if latest is not None:
            assert steps[0] == latest
        tip = store.restore()
        assert model_equals(tip, OLD if steps[0] == 1 else NEW)  # never a mix of two steps
        assert model_equals(store.restore(1), OLD)
        assert scrub(store).ok
        # and the store keeps working: the interrupted update can simply be written again
        store.write_model(NEW)
        store.checkpoint(3)
        assert model_equals(store.restore(3), NEW) and model_equals(store.restore(1), OLD)


def test_every_intermediate_disk_state_of_a_checkpoint_is_safe(pristine, tmp_path):
    """Deterministic complement of the kill tests: replay a real checkpoint's object writes in
    the order they hit the disk and open the store after each prefix (a crash between any two
    object writes), including 'snapshot written, reference not yet moved'."""
    done = tmp_path / "done"
    shutil.copytree(pristine, done)
    before = {p.relative_to(done): p.stat().st_mtime_ns for p in done.rglob("*") if p.is_file()}
    with CodedStore.open(done, "r+") as store:
        store.write_model(NEW)
        store.checkpoint(2)
    written = sorted(
        (p.stat().st_mtime_ns, p.relative_to(done))
        for p in done.rglob("*")
        if p.is_file() and before.get(p.relative_to(done)) != p.stat().st_mtime_ns
    )
    order = [rel for _, rel in written]
    ref = Path("refs/branch.main/ref.json")
    assert order[-1] == ref  # the reference moves last: that is the commit point
    assert {"manifests", "snapshots", "transactions"} <= {rel.parts[0] for rel in order[:-1]}
    kinds = [rel.parts[0] for rel in order]
    chunk_end = max(i for i, k in enumerate(kinds) if k == "chunks") + 1
    prefixes = sorted({0, 1, chunk_end // 2, chunk_end, *range(chunk_end + 1, len(order) + 1)})
    for n in prefixes:
        state = tmp_path / f"state{n}"
        shutil.copytree(pristine, state)
        for rel in order[:n]:
            shutil.copyfile(done / rel, state / rel)
        with CodedStore.open(state, "r+") as store:
            steps = [c.step for c in store.checkpoints()]
            assert steps == ([2, 1] if n == len(order) else [1]), (n, order[:n])
            assert model_equals(store.restore(), NEW if n == len(order) else OLD)
            assert model_equals(store.restore(1), OLD)
