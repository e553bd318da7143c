"""Bounded stores (icechunk's expiry and garbage collection), durable commits, the training run's
record, and stores of format version 1 still read."""

from __future__ import annotations

import json

import icechunk
import numpy as np
import pytest
import zarr
from test_store_support import BLOCK, CODE, files, make_grid, same_block

from codenet_dask.cli import main
from codenet_dask.errors import StoreCorruptError, StoreError
from codenet_dask.store import FORMAT_VERSION, CodedStore, layout, scrub


def grid_bytes(code=CODE, block=BLOCK) -> int:
    rows, cols = code.coded_shape
    return rows * cols * int(np.prod(block)) * 8


def chunk_bytes(root) -> int:
    return sum(files(root, "chunks").values())


def checkpoint_many(store: CodedStore, steps: range, keep: int | None) -> None:
    """A new grid (every block changed) at every step, expired to ``keep`` after each checkpoint."""
    store.add_layer("fc1", CODE, BLOCK)
    for step in steps:
        store.write_layer("fc1", make_grid(seed=step))
        store.checkpoint(step)
        if keep:
            store.expire(keep)


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_expiry_bounds_the_store_and_keeps_the_newest_checkpoints(tmp_path, keep):
    with CodedStore.create(tmp_path / "model") as store:
        checkpoint_many(store, range(1, 9), keep)
        assert [c.step for c in store.checkpoints()] == list(range(8, 8 - keep, -1))
        # Chunk objects on disk: exactly the kept checkpoints' grids (values + bookkeeping), no more.
        assert grid_bytes() * keep <= chunk_bytes(store.root) <= 2 * grid_bytes() * keep
        for step in range(8, 8 - keep, -1):
            restored = store.restore(step)["fc1"]
            assert all(same_block(restored[k], b) for k, b in make_grid(seed=step).items())
    assert scrub(CodedStore.open(tmp_path / "model")).ok


def test_without_expiry_every_checkpoint_stays(tmp_path):
    with CodedStore.create(tmp_path / "model") as store:
        checkpoint_many(store, range(1, 9), keep=None)
        assert len(store.checkpoints()) == 8
        assert chunk_bytes(store.root) >= 8 * grid_bytes()


def test_expiry_refuses_uncommitted_writes_and_bad_counts(tmp_path):
    with CodedStore.create(tmp_path / "model") as store:
        checkpoint_many(store, range(1, 3), keep=None)
        store.write_layer("fc1", make_grid(seed=99))
        with pytest.raises(StoreError, match="uncommitted writes"):
            store.expire(1)
        store.discard()
        with pytest.raises(ValueError, match="keep must be an integer >= 1"):
            store.expire(0)


@pytest.mark.parametrize("durable", [True, False])
def test_durable_and_plain_commits_read_back_the_same(tmp_path, durable):
    with CodedStore.create(tmp_path / "model", durable=durable) as store:
        checkpoint_many(store, range(1, 4), keep=2)
        assert [c.step for c in store.checkpoints()] == [3, 2]
        if durable:
            assert store._sync.files_synced > 0  # every object of every commit
        else:
            assert store._sync is None
        store.rollback(2)
        assert store.checkpoints()[0].step == 2
    with CodedStore.open(tmp_path / "model") as again:
        assert all(same_block(again.restore()["fc1"][k], b) for k, b in make_grid(seed=2).items())


def test_run_record_round_trips_with_its_checkpoint(tmp_path):
    journal = json.dumps({"faults": list(range(5000))}).encode()
    with CodedStore.create(tmp_path / "model") as store:
        store.add_layer("fc1", CODE, BLOCK)
        store.write_layer("fc1", make_grid())
        assert store.read_run() is None  # nothing recorded yet
        store.write_run({"status": "running", "step": 1}, journal)
        store.checkpoint(1)
        store.write_run({"status": "completed", "step": 2}, b"{}")  # a record change alone is a checkpoint
        assert store.checkpoint(2).step == 2
        assert store.read_run(1) == ({"status": "running", "step": 1}, journal)
        assert store.read_run() == ({"status": "completed", "step": 2}, b"{}")
    # Plain Zarr readers see the record as attributes.
    group = zarr.open_group(CodedStore.open(tmp_path / "model").zarr_store(), mode="r")
    assert group["training"].attrs["codenet_dask"]["record"]["status"] == "completed"


def test_a_damaged_journal_is_reported(tmp_path):
    with CodedStore.create(tmp_path / "model") as store:
        store.add_layer("fc1", CODE, BLOCK)
        store.write_layer("fc1", make_grid())
        store.write_run({"status": "running"}, b"x" * 3000)
        store.checkpoint(1)
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(tmp_path / "model")))
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="training/journal", mode="r+")[:10] = 1
    session.commit("edited outside codenet_dask")
    with pytest.raises(StoreCorruptError, match="does not match its digest"):
        CodedStore.open(tmp_path / "model").read_run()


def _as_version_1(path) -> None:
    """Rewrite a store's attributes and commit metadata as format version 1 wrote them."""

    def v1(node) -> None:
        body = {k: v for k, v in node.attrs[layout.ATTR_KEY].items() if k != "digest"}
        node.update_attributes({layout.ATTR_KEY: layout._sealed({**body, "format_version": 1})})

    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(path)))
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="r+")
    for node in (root, root["fc1"], root["bookkeeping/fc1"]):
        v1(node)
    session.commit("checkpoint at step 1", metadata={"codenet_dask": 1, "step": 1})


def test_format_version_1_stores_stay_readable_and_writable(tmp_path):
    assert FORMAT_VERSION == 2
    path = tmp_path / "model"
    with CodedStore.create(path) as store:
        store.add_layer("fc1", CODE, BLOCK)
        store.write_layer("fc1", make_grid())
        store.checkpoint(1)
    _as_version_1(path)
    with CodedStore.open(path, "r+") as old:
        assert [c.step for c in old.checkpoints()] == [1, 1]
        assert old.read_run() is None
        assert all(same_block(old.restore()["fc1"][k], b) for k, b in make_grid().items())
        assert scrub(old).ok
        old.write_layer("fc1", make_grid(seed=1))
        old.checkpoint(2)  # writing upgrades the root and the rewritten layer to version 2
    assert main(["inspect", str(path)]) == 0


def test_gc_command_bounds_an_existing_store(tmp_path, capsys):
    with CodedStore.create(tmp_path / "model") as store:
        checkpoint_many(store, range(1, 7), keep=None)
    before = chunk_bytes(tmp_path / "model")
    assert main(["gc", str(tmp_path / "model"), "--keep", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checkpoints_before"] == 6 and report["checkpoints_after"] == 2
    assert report["bytes_after"] < report["bytes_before"]
    assert chunk_bytes(tmp_path / "model") <= before / 2
    assert [c.step for c in CodedStore.open(tmp_path / "model").checkpoints()] == [6, 5]
    assert main(["gc", str(tmp_path / "model"), "--keep", "0"]) == 2
    assert "--keep must be at least 1" in capsys.readouterr().err
