"""Trained weights out of a store: decoded, verified systematic weights as an xarray Dataset, written
to ``.nc``, ``.zarr`` or ``.npz``, and read back (for :func:`codenet_dask.load_model`).

The checkpoint is scrubbed first. Every layer is then read verified (``load_layer``: damaged blocks
rebuilt from the code in memory) and its systematic blocks are assembled into ``W`` (outputs x
inputs, padding dropped). A store whose blocks do not verify (lost beyond the code's capacity, or
that the code cannot vouch for) is refused with the blocks named. The Dataset has one variable per
layer with named dimensions (``input``, ``hidden1``..., ``output``: a layer's output dimension is
the next one's input) and the training run's record (config, data, accuracy, outcome) as attributes.

Files are written under a temporary name and renamed into place: never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import BlocksLostError, StoreFormatError
from .repository import Checkpoint, CodedStore
from .scrub import ScrubReport, scrub

SUFFIXES = ("nc", "zarr", "npz")
#: The key holding the attributes (as JSON) in an exported ``.npz``.
NPZ_ATTRS = "attrs"


@dataclass
class StoredWeights:
    """A checkpoint's decoded weights in layer order, with the training run's record (if any)."""

    names: list[str]
    weights: list[np.ndarray]
    checkpoint: Checkpoint
    record: dict[str, Any] | None
    scrub: ScrubReport
    repaired_in_memory: dict[str, list[tuple[int, int]]] = field(default_factory=dict)


def read_weights(store: CodedStore, checkpoint: str | int | None = None) -> StoredWeights:
    """Scrub the checkpoint, then its decoded systematic weights; BlocksLostError if they do not verify."""
    report = scrub(store, checkpoint=checkpoint)
    if report.checkpoint is None:
        raise StoreFormatError(f"{store.root} holds no checkpoint yet; nothing to export")
    sid = report.checkpoint.id
    lost = {}
    for layer in report.layers:
        code = store.layer(layer.name).code
        keys = set(layer.lost) | (set(layer.unverified) if code.pr or code.pc else set())
        if keys:
            lost[layer.name] = sorted(keys)
    if lost:
        raise BlocksLostError(
            f"{store.root}: checkpoint {sid} does not verify, blocks lost beyond repair: {lost}; nothing exported", lost
        )
    run = store.read_run(sid, journal=False)  # the fault ledger is for resuming, not needed here
    record = run[0] if run else None
    names = store.layer_names(sid)
    weights = []
    for name in names:
        blocks, _ = store.load_layer(name, sid)
        spec = store.layer(name)
        rows = [np.hstack([blocks[(i, j)].values for j in range(spec.code.kc)]) for i in range(spec.code.kr)]
        weights.append(np.ascontiguousarray(np.vstack(rows)[: spec.layer_shape[0], : spec.layer_shape[1]]))
    repaired = {name: list(keys) for name, keys in report.found.items()}
    return StoredWeights(names, weights, report.checkpoint, record, report, repaired)


def _dims(sizes: list[int]) -> list[str]:
    return ["input", *(f"hidden{i}" for i in range(1, len(sizes) - 1)), "output"]


def weights_dataset(stored: StoredWeights, source: str) -> xr.Dataset:
    """One variable per layer (``W``, outputs x inputs), named dimensions, the run's record as attributes."""
    sizes = [stored.weights[0].shape[1], *(w.shape[0] for w in stored.weights)]
    dims = _dims(sizes)
    variables = {
        name: xr.Variable(
            (dims[i + 1], dims[i]),
            w,
            attrs={
                "layer": i,
                "activation": "relu" if i < len(stored.weights) - 1 else "softmax",
                "computes": f"{dims[i + 1]} = {'relu' if i < len(stored.weights) - 1 else 'softmax'}({name} @ {dims[i]})",
            },
        )
        for i, (name, w) in enumerate(zip(stored.names, stored.weights))
    }
    record = stored.record or {}
    config = record.get("config", {})
    attrs = {
        "title": "codenet_dask trained weights (decoded, verified systematic blocks)",
        "source_store": source,
        "checkpoint": stored.checkpoint.id,
        "step": stored.checkpoint.step,
        "layers": sizes,
        "layer_names": json.dumps(stored.names),
        "status": record.get("status", "unknown"),
        "strategy": config.get("strategy", "unknown"),
        "dataset": record.get("data", {}).get("name", "unknown"),
        "test_accuracy": _float(record.get("test_accuracy")),
        "accuracy_by_epoch": [_float(a) for a in record.get("accuracy_by_epoch", [])] or "none",
        "config": json.dumps(config, sort_keys=True),
        "data": json.dumps(record.get("data", {}), sort_keys=True),
        "record": json.dumps(record, sort_keys=True),
    }
    return xr.Dataset(variables, attrs=attrs)


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def write_weights(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write the Dataset to ``path`` (by suffix: .nc, .zarr, .npz) atomically; returns the path."""
    out = Path(path).absolute()
    suffix = out.suffix.lstrip(".").lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"export file must end in .nc, .zarr or .npz, got {out.name}")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.writing-", dir=out.parent))
    try:
        tmp = staging / out.name
        if suffix == "nc":
            ds.to_netcdf(tmp)
        elif suffix == "zarr":
            ds.to_zarr(tmp, mode="w-", consolidated=False)
        else:
            arrays = {name: ds[name].values for name in json.loads(ds.attrs["layer_names"])}
            np.savez(tmp, **arrays, **{NPZ_ATTRS: np.array(json.dumps(_plain(ds)))})  # type: ignore[arg-type]  # mypy matches **{...} to savez's one bool keyword
        os.replace(tmp, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _plain(ds: xr.Dataset) -> dict[str, Any]:
    """Attributes and each variable's dims and attributes, as JSON data (for .npz)."""
    attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds.attrs.items()}
    attrs["variables"] = {name: {"dims": list(ds[name].dims), **ds[name].attrs} for name in ds.data_vars}
    return json.loads(json.dumps(attrs, default=float))


def read_exported(path: str | os.PathLike[str]) -> tuple[list[str], list[np.ndarray], dict[str, Any]]:
    """Layer names, weights and attributes of an exported file (``.nc``, ``.zarr`` or ``.npz``)."""
    p = Path(path)
    suffix = p.suffix.lstrip(".").lower()
    try:
        if suffix == "npz":
            with np.load(p) as npz:  # object arrays refused (numpy default)
                attrs = json.loads(str(npz[NPZ_ATTRS]))
                names = json.loads(attrs["layer_names"])
                return names, [np.asarray(npz[n]) for n in names], attrs
        opened = xr.open_zarr(p, consolidated=False) if suffix == "zarr" else xr.open_dataset(p)
        with opened as ds:
            names = json.loads(ds.attrs["layer_names"])
            return names, [np.asarray(ds[n].values) for n in names], dict(ds.attrs)
    except (OSError, ValueError, KeyError) as exc:
        raise StoreFormatError(f"{p} is not a codenet_dask weights export ({type(exc).__name__}: {exc})") from None
