"""A store is untrusted input: every way it can be wrong gives a clear, typed error."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import icechunk
import numpy as np
import pytest
import zarr
from test_store_support import BLOCK, CODE, make_grid

from codenet_dask.cli import main
from codenet_dask.errors import (
    NotAStoreError,
    StoreCorruptError,
    StoreError,
    StoreFormatError,
    StoreLockedError,
    StoreReadOnlyError,
    StoreVersionError,
)
from codenet_dask.store import CodedStore, layout

STORE_SOURCES = Path(__file__).parent.parent / "codenet_dask" / "store"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "model"
    with CodedStore.create(path) as store:
        store.add_layer("fc1", CODE, BLOCK)
        store.write_layer("fc1", make_grid())
        store.checkpoint(1)
    return path


@pytest.fixture
def copy(good, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(good, path)
    return path


def tamper(path: Path, change) -> None:
    """Edit the store's Zarr metadata directly, committing like any other writer would."""
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(path)))
    session = repo.writable_session("main")
    change(zarr.open_group(session.store, mode="r+"))
    session.commit("edited outside codenet_dask")


def payload(node) -> dict:
    return dict(node.attrs[layout.ATTR_KEY])


def resealed(body: dict, **changes) -> dict:
    """Attributes changed *and* re-digested: only cross-checks can catch these."""
    body = {k: v for k, v in body.items() if k != "digest"}
    body.update(changes)
    return {layout.ATTR_KEY: layout._sealed(body)}


def test_paths_that_are_not_stores(tmp_path):
    with pytest.raises(NotAStoreError, match="does not exist"):
        CodedStore.open(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotAStoreError, match="is a file"):
        CodedStore.open(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAStoreError, match="not a codenet_dask store"):
        CodedStore.open(tmp_path / "empty")
    zarr.create_group(str(tmp_path / "plain"))
    with pytest.raises(NotAStoreError, match="plain Zarr store"):
        CodedStore.open(tmp_path / "plain")
    icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "bare")))
    with pytest.raises(StoreFormatError, match="no readable root group"):
        CodedStore.open(tmp_path / "bare")
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "other")))
    session = repo.writable_session("main")
    zarr.create_group(session.store, attributes={"title": "someone else's data"})
    session.commit("x")
    with pytest.raises(StoreFormatError, match="'codenet_dask' is missing"):
        CodedStore.open(tmp_path / "other")


def test_wrong_format_version(copy):
    newer = layout.FORMAT_VERSION + 1
    tamper(copy, lambda g: g.update_attributes(resealed(payload(g), format_version=newer)))
    with pytest.raises(StoreVersionError, match=f"format version {newer}"):
        CodedStore.open(copy)


def test_missing_layer_attribute(copy):
    tamper(copy, lambda g: g["fc1"].update_attributes({layout.ATTR_KEY: {}}))
    with pytest.raises(StoreVersionError):
        CodedStore.open(copy)


def test_missing_attribute_key(copy):
    def drop(g):
        body = payload(g["fc1"])
        del body["block_shape"]
        g["fc1"].update_attributes(resealed(body))

    tamper(copy, drop)
    with pytest.raises(StoreFormatError, match="'block_shape' is missing"):
        CodedStore.open(copy)


def test_tampered_attribute_fails_its_digest(copy):
    def edit(g):
        body = payload(g["fc1"])
        body["code"]["parity"] = [1, 2]
        g["fc1"].update_attributes({layout.ATTR_KEY: body})

    tamper(copy, edit)
    with pytest.raises(StoreFormatError, match="digest mismatch"):
        CodedStore.open(copy)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"block_grid": [5, 4]}, "block grid"),
        ({"block_shape": [2, 5]}, "does not fit|array shape|chunk shape|bookkeeping"),
        ({"dtype": "float32"}, "dtype"),
        ({"layer_shape": [99, 1]}, "does not fit"),
        ({"dtype": "complex128"}, "dtype must be"),
    ],
)
def test_resealed_attributes_that_contradict_the_arrays(copy, change, message):
    tamper(copy, lambda g: g["fc1"].update_attributes(resealed(payload(g["fc1"]), **change)))
    with pytest.raises(StoreFormatError, match=message):
        CodedStore.open(copy)


def test_resealed_generator_that_is_not_the_code(copy):
    def edit(g):
        body = payload(g["fc1"])
        code = dict(body["code"])
        code["row_generator"] = (np.array(code["row_generator"]) * 1.001).tolist()
        g["fc1"].update_attributes(resealed(body, code=code))

    tamper(copy, edit)
    with pytest.raises(StoreFormatError, match="row_generator differs"):
        CodedStore.open(copy)


def test_array_shape_mismatch_and_missing_arrays(copy, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(copy, other)
    tamper(copy, lambda g: g["fc1"].resize((16, 25)))
    with pytest.raises(StoreFormatError, match="array shape"):
        CodedStore.open(copy)
    tamper(other, lambda g: g.update_attributes(resealed(payload(g), layers=["fc1", "fc9"])))
    with pytest.raises(StoreFormatError, match=r"'fc9'.*missing"):
        CodedStore.open(other)


def test_damaged_repository_metadata(copy, tmp_path):
    snap = tmp_path / "snap"
    shutil.copytree(copy, snap)
    tip = CodedStore.open(snap).resolve()
    (snap / "snapshots" / tip).write_bytes(b"garbage" * 10)
    with pytest.raises(StoreCorruptError, match="snapshot unreadable"):
        CodedStore.open(snap)
    (copy / "refs" / "branch.main" / "ref.json").write_text("{not json")
    with pytest.raises(StoreCorruptError):
        CodedStore.open(copy)
    shutil.rmtree(copy / "refs")
    with pytest.raises(StoreCorruptError, match="branch reference"):
        CodedStore.open(copy)


def test_one_writer_at_a_time(copy):
    with CodedStore.open(copy, "r+"):
        with pytest.raises(StoreLockedError):
            CodedStore.open(copy, "r+")
        assert CodedStore.open(copy, "r").restore()  # readers are never blocked
    CodedStore.open(copy, "r+").close()


def test_create_refuses_to_clobber(copy, tmp_path):
    with pytest.raises(StoreError, match="already exists"):
        CodedStore.create(copy)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("keep me")
    with pytest.raises(NotAStoreError):
        CodedStore.create(tmp_path / "data", overwrite=True)
    assert (tmp_path / "data" / "precious.txt").read_text() == "keep me"
    with CodedStore.create(copy, overwrite=True) as fresh:
        assert fresh.layers() == {} and fresh.checkpoints() == []


@pytest.fixture
def read_only_copy(good, tmp_path):
    """A copy of the store at a location this process cannot write.

    Root ignores permission bits, so as root the copy is bind-mounted read-only instead.
    """
    source = tmp_path / "source"
    shutil.copytree(good, source / "model")
    (source / "model" / "codenet.lock").unlink(missing_ok=True)
    if os.geteuid() != 0:
        for p in [source, *source.rglob("*")]:
            os.chmod(p, 0o555 if p.is_dir() else 0o444)
        yield source / "model"
        for p in [source, *source.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        return
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"running as root without mount privileges: cannot make a read-only location ({done.stderr!r})")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True, capture_output=True)
        yield mount / "model"
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_read_only_location(read_only_copy):
    with pytest.raises(OSError):
        (read_only_copy / "probe").write_text("x")  # the location really is read-only
    reader = CodedStore.open(read_only_copy, "r")
    assert sorted(reader.restore()["fc1"]) == [(a, b) for a in range(4) for b in range(4)]
    with pytest.raises(StoreReadOnlyError, match="not writable"):
        CodedStore.open(read_only_copy, "r+")
    with pytest.raises(StoreReadOnlyError, match="cannot create"):
        CodedStore.create(read_only_copy.parent / "new")
    assert main(["scrub", str(read_only_copy)]) == 0  # scrubbing without repair needs no writes
    assert main(["scrub", str(read_only_copy), "--repair"]) == 1


def test_no_pickle_anywhere(good):
    for source in STORE_SOURCES.glob("*.py"):
        assert "pickle" not in source.read_text(), source
    group = zarr.open_group(CodedStore.open(good).zarr_store(), mode="r")
    for array in (group["fc1"], group["bookkeeping/fc1"]):
        codecs = [c["name"] for c in array.metadata.to_dict()["codecs"]]
        assert codecs == ["bytes", "crc32c"] and array.dtype.kind == "f"


def test_cli_errors(good, tmp_path, capsys):
    assert main(["scrub", str(tmp_path / "nowhere")]) == 1
    assert "NotAStoreError" in capsys.readouterr().err
    assert main(["scrub", str(good), "--repair", "--checkpoint", "1"]) == 2
    assert "--repair" in capsys.readouterr().err
    assert main(["inspect", str(good)]) == 0
    out = capsys.readouterr().out
    assert "layer fc1: 8x10 float64, 2x2 blocks + 2x2 parity" in out and "step 1" in out
