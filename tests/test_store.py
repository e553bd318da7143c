"""The store: layout, exact round trips, chunk-granular writes counted on disk, checkpoints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import xarray as xr
import zarr
from test_store_support import BLOCK, CODE, files, make_grid, new_files, same_block

from codenet_dask.codes import ProductCode
from codenet_dask.errors import NonFiniteInputError, ShapeMismatchError, StoreError, StoreReadOnlyError
from codenet_dask.kernels.blocks import CodedBlock
from codenet_dask.store import CodedStore, describe_store, scrub


@pytest.fixture
def store(tmp_path):
    s = CodedStore.create(tmp_path / "model")
    yield s
    s.close()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(store, dtype):
    code = ProductCode(3, 2, 1, 2)
    grid = make_grid(code, (5, 4), dtype)
    grid[(1, 1)] = replace(grid[(1, 1)], err=1.25e-7, updates=17, max_abs=grid[(1, 1)].max_abs * 3)
    store.add_layer("fc1", code, (5, 4), dtype, layer_shape=(14, 7))
    store.write_layer("fc1", grid)
    checkpoint = store.checkpoint(4)
    restored = CodedStore.open(store.root).restore(4)["fc1"]
    assert set(restored) == set(grid)
    assert all(same_block(restored[k], grid[k]) for k in grid)
    spec = store.layers()["fc1"]
    assert (spec.layer_shape, spec.block_shape, spec.dtype, spec.grid) == ((14, 7), (5, 4), np.dtype(dtype), (4, 4))
    assert checkpoint.step == 4 and store.layer_step("fc1") == 4


def test_layout_is_plain_zarr_with_named_dimensions(store):
    grid = make_grid()
    store.add_layer("fc1", CODE, BLOCK)
    store.write_layer("fc1", grid)
    store.checkpoint(1)
    group = zarr.open_group(store.zarr_store(), mode="r")
    weights = group["fc1"]
    assert weights.chunks == BLOCK and weights.shape == (16, 20)
    attrs = weights.attrs["codenet_dask"]
    assert attrs["format_version"] == 1 and attrs["code"]["parity"] == [2, 2] and attrs["block_grid"] == [4, 4]
    assert attrs["layer_shape"] == [8, 10] and attrs["dtype"] == "float64" and attrs["step"] == 1
    ds = xr.open_zarr(store.zarr_store(), consolidated=False)
    assert ds["fc1"].dims == ("fc1_row", "fc1_col")
    np.testing.assert_array_equal(ds["fc1"].values[4:8, 5:10], grid[(1, 1)].values)
    book = xr.open_zarr(store.zarr_store(), group="bookkeeping", consolidated=False)
    assert book["fc1"].dims == ("fc1_block_row", "fc1_block_col", "fc1_field")
    assert book["fc1"].values[1, 1, 3] == grid[(1, 1)].err


def test_update_touching_m_blocks_writes_exactly_m_chunk_objects(store):
    grid = frozen = make_grid()
    store.add_layer("fc1", CODE, BLOCK)
    store.add_layer("fc2", CODE, BLOCK)
    store.write_model({"fc1": grid, "fc2": frozen})
    store.checkpoint(1)
    values_size = BLOCK[0] * BLOCK[1] * 8 + 4
    rng = np.random.default_rng(5)
    keys = sorted(grid)
    for m in (0, 1, 3, 16):
        changed = {keys[i] for i in rng.choice(len(keys), m, replace=False)}
        new = {k: (CodedBlock.from_values(b.values + 1.0, b.err) if k in changed else b) for k, b in grid.items()}
        before = files(store.root)
        stats = store.write_model({"fc1": new, "fc2": frozen})  # fc2 frozen (fine-tuning)
        written = new_files(before, files(store.root))
        assert stats.values_written == m and stats.records_written == m
        assert all(name.startswith("chunks/") for name in written)
        sizes = sorted(written.values())
        assert sizes.count(values_size) == m and len(sizes) == 2 * m
        assert sum(sizes) == stats.bytes_written
        before = files(store.root, "chunks")
        store.checkpoint(1 + m)
        assert files(store.root, "chunks") == before  # committing writes no chunk objects
        grid = new


def test_checkpoint_of_unchanged_model_writes_only_metadata(store):
    grid = make_grid()
    store.add_layer("fc1", CODE, BLOCK)
    store.write_layer("fc1", grid)
    first = store.checkpoint(1)
    before = files(store.root)
    assert store.write_layer("fc1", grid).values_written == 0
    second = store.checkpoint(2)
    after = files(store.root)
    written = new_files(before, after)
    assert second.id != first.id and second.step == 2
    assert written and all(n.split("/")[0] in ("snapshots", "transactions") for n in written), written
    changed = {n for n in before if after.get(n) != before[n]}
    assert changed <= {"refs/branch.main/ref.json"}
    assert sum(written.values()) < 4096
    before = files(store.root)
    assert store.checkpoint(2).id == second.id  # same step, nothing changed: nothing at all
    assert files(store.root) == before


def test_bookkeeping_only_change_rewrites_only_the_record(store):
    grid = make_grid()
    store.add_layer("fc1", CODE, BLOCK)
    store.write_layer("fc1", grid)
    store.checkpoint(1)
    new = dict(grid)
    new[(0, 1)] = replace(grid[(0, 1)], err=grid[(0, 1)].err + 1e-12, updates=3)
    stats = store.write_layer("fc1", new)
    assert (stats.values_written, stats.records_written) == (0, 1)
    store.checkpoint(2)
    assert same_block(store.restore()["fc1"][(0, 1)], new[(0, 1)])


def test_all_zero_block_is_stored_and_missing_never_means_zero(store):
    code = ProductCode(2, 2, 1, 1)
    rng = np.random.default_rng(0)
    systematic = rng.standard_normal((2, 2, 3, 3))
    systematic[0] = 0.0  # block-row 0 all zeros: its column parity is zero too
    from codenet_dask.kernels.grid import encode_blocks

    grid = encode_blocks(code, systematic)
    assert not grid[(0, 2)].values.any()
    store.add_layer("z", code, (3, 3))
    before = files(store.root, "chunks")
    assert store.write_layer("z", grid).values_written == 9
    assert len(new_files(before, files(store.root, "chunks"))) == 18
    store.checkpoint(1)
    restored = store.restore()["z"]
    assert all(same_block(restored[k], grid[k]) for k in grid)


def test_write_only_what_the_store_lacks_after_rollback(store):
    """Diffing against stored digests, not the caller's memory: a rollback cannot strand a block."""
    v1, v2 = make_grid(seed=1), make_grid(seed=2)
    store.add_layer("fc1", CODE, BLOCK)
    store.write_layer("fc1", v1)
    store.checkpoint(1)
    store.write_layer("fc1", v2)
    store.checkpoint(2)
    restored = store.rollback(1)["fc1"]
    assert all(same_block(restored[k], v1[k]) for k in v1)
    assert [c.step for c in store.checkpoints()] == [1]
    stats = store.write_layer("fc1", v2)  # relative to what is stored (v1): every block changed
    assert stats.values_written == 16
    store.checkpoint(3)
    assert all(same_block(store.restore(3)["fc1"][k], v2[k]) for k in v2)
    assert all(same_block(store.restore(1)["fc1"][k], v1[k]) for k in v1)


def test_uncommitted_writes_are_invisible_and_discardable(store):
    v1, v2 = make_grid(seed=1), make_grid(seed=2)
    store.add_layer("fc1", CODE, BLOCK)
    store.write_layer("fc1", v1)
    store.checkpoint(1)
    store.write_layer("fc1", v2)
    assert store.has_uncommitted_changes()
    assert all(same_block(store.restore()["fc1"][k], v1[k]) for k in v1)
    store.discard()
    assert not store.has_uncommitted_changes()
    assert store.write_layer("fc1", v1).values_written == 0


def test_write_validation(store):
    grid = make_grid()
    store.add_layer("fc1", CODE, BLOCK)
    with pytest.raises(ShapeMismatchError):
        store.write_layer("fc1", {k: v for k, v in grid.items() if k != (0, 0)})
    with pytest.raises(ShapeMismatchError):
        store.write_blocks("fc1", {(0, 0): CodedBlock.from_values(np.zeros((3, 3)))})
    with pytest.raises(ShapeMismatchError):
        store.write_blocks("fc1", {(0, 0): CodedBlock.from_values(np.zeros(BLOCK, dtype=np.float32))})
    bad = grid[(0, 0)].values.copy()
    bad[0, 0] = np.nan
    with pytest.raises(NonFiniteInputError):
        store.write_blocks("fc1", {(0, 0): replace(grid[(0, 0)], values=bad)})
    with pytest.raises(StoreError, match="not fully written"):
        store.write_blocks("fc1", {(0, 0): grid[(0, 0)]})
        store.checkpoint(1)
    with pytest.raises(StoreError, match="already exists"):
        store.add_layer("fc1", CODE, BLOCK)
    with pytest.raises(StoreError, match="invalid layer name"):
        store.add_layer("bookkeeping", CODE, BLOCK)
    with pytest.raises(StoreError):
        store.layer("nope")


def test_read_only_handle_refuses_writes(store):
    store.add_layer("fc1", CODE, BLOCK)
    store.write_layer("fc1", make_grid())
    store.checkpoint(1)
    reader = CodedStore.open(store.root, "r")
    with pytest.raises(StoreReadOnlyError):
        reader.write_layer("fc1", make_grid())
    with pytest.raises(StoreReadOnlyError):
        reader.checkpoint(2)


def test_inspect_describes_the_store_from_itself(store):
    store.add_layer("fc1", CODE, BLOCK, layer_shape=(7, 9))
    store.write_layer("fc1", make_grid())
    store.checkpoint(3)
    info = describe_store(CodedStore.open(store.root))
    assert info["step"] == 3 and [c["step"] for c in info["checkpoints"]] == [3]
    (layer,) = info["layers"]
    assert layer["layer_shape"] == [7, 9] and layer["code"]["parity"] == [2, 2] and layer["blocks"] == 16
    assert info["disk"]["chunks"]["objects"] == 32


def test_scrub_of_a_clean_store_is_clean(store):
    store.add_layer("fc1", CODE, BLOCK)
    store.write_layer("fc1", make_grid())
    store.checkpoint(1)
    report = scrub(store)
    assert report.ok and not report.found and not report.lost


def test_coded_layer_saves_and_restores_onto_the_cluster_without_re_encoding(client, tmp_path):
    from codenet_dask import CodedLayer
    from codenet_dask.store import CodedStore

    rng = np.random.default_rng(11)
    w = rng.standard_normal((48, 40))
    layer = CodedLayer.encode(client, w, grid=(3, 2), parity=(2, 1), name="saved")
    x = rng.standard_normal((40, 5))
    layer.update(rng.standard_normal((48, 5)), x, lr=0.1)
    trained = layer.gather_weights()
    with CodedStore.create(tmp_path / "model") as store:
        layer.save(store)
        store.checkpoint(step=1)
    with CodedStore.open(tmp_path / "model") as store:
        restored = CodedLayer.from_store(client, store, "saved")
    assert restored.encode_count == 0  # taken as stored, never re-encoded
    assert np.array_equal(restored.gather_weights(), trained)
    blocks, again = layer.gather_blocks(), restored.gather_blocks()
    assert all(np.array_equal(blocks[c].values, again[c].values) for c in blocks)
    for worker, shard in restored.shards.items():  # every block back in its owner's shard
        assert set(shard.result()) == {c for c, w in restored.owners.items() if w == worker}
    np.testing.assert_allclose(restored.forward(x).to_numpy(), trained @ x, rtol=1e-12, atol=1e-12)
