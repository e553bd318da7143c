"""Damage stored chunk objects on disk, then scrub and repair through the command line.

Ground truth (which object holds which block) comes from writing the store block by block; the
capacity oracle is the boolean peeling decoder of the grid tests.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_grid_check import global_oracle, peel
from test_store_support import CODE, build_mapped_store, make_grid

from codenet_dask.cli import main
from codenet_dask.store import CodedStore

V1, V2 = make_grid(seed=1), make_grid(seed=2)
NR, NC = CODE.coded_shape


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("pristine") / "model"
    old, current = build_mapped_store(path, [V1, V2])
    return path, old, current


def damage(path: Path, rng: np.random.Generator, kind: str, others: list[Path]) -> None:
    data = bytearray(path.read_bytes())
    if kind == "bitflip":
        for _ in range(rng.integers(1, 4)):
            bit = int(rng.integers(len(data) * 8))
            data[bit // 8] ^= 1 << (bit % 8)
    elif kind == "overwrite":
        start = int(rng.integers(len(data)))
        span = min(len(data) - start, int(rng.integers(1, 17)))
        data[start : start + span] = bytes((b + 1 + int(rng.integers(255))) % 256 for b in data[start : start + span])
    elif kind == "truncate":
        data = data[: int(rng.integers(len(data)))]
    elif kind == "swap":  # another block's valid object: decodes fine, wrong content
        data = bytearray(others[int(rng.integers(len(others)))].read_bytes())
    if kind == "delete":
        path.unlink()
    else:
        path.write_bytes(bytes(data))


def run_cli(capsys, *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


def keys_of(listed) -> set[tuple[int, int]]:
    return {tuple(k) for k in listed}


def assert_repaired_within_tolerance(path: Path, keys: set) -> None:
    read = CodedStore.open(path).read_layer("fc1")
    assert not read.problems.keys() & keys
    for key in keys:
        got, want = read.blocks[key], V2[key]
        assert np.abs(got.values - want.values).max() <= got.err + want.err + 1e-15, key


KINDS = ("bitflip", "overwrite", "truncate", "delete", "swap")


@pytest.mark.parametrize("trial", range(24))
def test_random_chunk_damage_is_found_and_repaired_within_capacity(pristine, tmp_path, capsys, trial):
    source, _, current = pristine
    path = tmp_path / "model"
    shutil.copytree(source, path)
    rng = np.random.default_rng(100 + trial)
    objects = sorted(current)
    beyond = trial >= 16
    if beyond:  # a 3x3 sub-grid of damaged blocks (more than 2 per row and column) plus a few more
        rows, cols = rng.choice(NR, 3, replace=False), rng.choice(NC, 3, replace=False)
        square = {(int(a), int(b)) for a in rows for b in cols}
        chosen = [rng.choice([o for o in objects if current[o][1] == key]) for key in sorted(square)]
        chosen += [objects[i] for i in rng.choice(len(objects), 2, replace=False) if objects[i] not in chosen]
    else:
        chosen = [objects[i] for i in rng.choice(len(objects), int(rng.integers(1, 7)), replace=False)]
    truth = set()
    for name in chosen:
        kind = KINDS[int(rng.integers(len(KINDS)))]
        same_kind = [source / o for o, (k, _) in current.items() if k == current[name][0] and o != name]
        damage(path / name, rng, kind, same_kind)
        truth.add(current[name][1])
    stuck = peel(truth, NR, NC, CODE.pr, CODE.pc)
    free, recoverable = global_oracle(CODE, truth)
    repairable = recoverable - stuck
    lost = truth - repairable
    assert bool(lost) == beyond

    code, report = run_cli(capsys, "scrub", str(path), "--json")
    assert keys_of(report["found"].get("fc1", [])) == truth  # every damaged block, nothing else
    assert keys_of(report["unverified"].get("fc1", [])) == free
    assert code == (4 if lost or free else 3)

    code, report = run_cli(capsys, "scrub", str(path), "--repair", "--json")
    assert keys_of(report["lost"].get("fc1", [])) == lost
    assert code == (4 if lost or free else 0)
    assert report["verified_after_repair"] is (True if repairable else None)
    assert_repaired_within_tolerance(path, repairable)

    code, report = run_cli(capsys, "scrub", str(path), "--json")  # what is left on disk
    assert keys_of(report["found"].get("fc1", [])) == lost and code == (4 if lost else 0)
    if not lost:
        restored = CodedStore.open(path).restore()["fc1"]
        assert set(restored) == set(V2)


def test_stale_but_self_consistent_blocks_are_located_by_the_code(pristine, tmp_path, capsys):
    """Both objects of a block replaced by its previous version: CRC and digest pass, the code does not."""
    source, old, current = pristine
    path = tmp_path / "model"
    shutil.copytree(source, path)
    old_of = {v: k for k, v in old.items()}
    stale = {(0, 0), (0, 1), (3, 2)}  # three unknown errors: within a 2+2 product code's reach
    for name, (kind, key) in current.items():
        if key in stale:
            shutil.copyfile(path / old_of[(kind, key)], path / name)
    code, report = run_cli(capsys, "scrub", str(path), "--json")
    layer = report["layers"][0]
    assert keys_of(layer["located"]) == stale and not layer["erased"] and code == 3
    assert all("inconsistent" in layer["reasons"][f"{a},{b}"] for a, b in stale)
    code, report = run_cli(capsys, "scrub", str(path), "--repair", "--json")
    assert code == 0 and not report["lost"]
    assert_repaired_within_tolerance(path, stale)


def test_stale_square_beyond_capacity_is_named_not_accepted(pristine, tmp_path, capsys):
    source, old, current = pristine
    path = tmp_path / "model"
    shutil.copytree(source, path)
    old_of = {v: k for k, v in old.items()}
    square = {(1, 1), (1, 3), (2, 1), (2, 3)}
    for name, (kind, key) in current.items():
        if key in square:
            shutil.copyfile(path / old_of[(kind, key)], path / name)
    code, report = run_cli(capsys, "scrub", str(path), "--repair", "--json")
    assert code == 4 and keys_of(report["unverified"]["fc1"]) == square and not report["lost"]
    assert report["repaired_checkpoint"] is None
    text_code = main(["scrub", str(path)])
    out = capsys.readouterr().out
    assert text_code == 4 and "UNVERIFIED (the code cannot vouch for them): fc1 (1,1) (1,3) (2,1) (2,3)" in out
    with pytest.raises(Exception, match=r"\(1, 1\)"):
        CodedStore.open(path).restore()


def test_a_repair_is_a_new_checkpoint_and_history_keeps_the_old_one(pristine, tmp_path, capsys):
    source, _, current = pristine
    path = tmp_path / "model"
    shutil.copytree(source, path)
    target = next(n for n, (kind, key) in current.items() if key == (1, 2) and kind == "values")
    os.remove(path / target)
    before = [c.id for c in CodedStore.open(path).checkpoints()]
    code, report = run_cli(capsys, "scrub", str(path), "--repair", "--json")
    assert code == 0 and keys_of(report["layers"][0]["repaired"]) == {(1, 2)}
    after = CodedStore.open(path).checkpoints()
    assert [c.id for c in after[1:]] == before and after[0].step == 2 and "scrub repair" in after[0].message
    code, report = run_cli(capsys, "scrub", str(path), "--checkpoint", before[0], "--json")
    assert code == 3 and keys_of(report["found"]["fc1"]) == {(1, 2)}  # the old snapshot still names the lost object
