"""What ``inspect`` shows: a store described from its own metadata, as plain data."""

from __future__ import annotations

from typing import Any

from .repository import CodedStore


def describe_store(store: CodedStore) -> dict[str, Any]:
    """Everything ``inspect`` shows, as plain data."""
    layers = []
    for name, spec in store.layers().items():
        nr, nc = spec.grid
        code = spec.code
        layers.append(
            {
                "name": name,
                "layer_shape": list(spec.layer_shape),
                "block_shape": list(spec.block_shape),
                "block_grid": [nr, nc],
                "dtype": spec.dtype.name,
                "code": {
                    "family": "product-mds",
                    "construction": code.construction,
                    "grid": [code.kr, code.kc],
                    "parity": [code.pr, code.pc],
                    "worst_condition": [code.row_code.worst_condition, code.col_code.worst_condition],
                },
                "step": store.layer_step(name),
                "blocks": nr * nc,
                "coded_bytes": nr * nc * spec.block_bytes,
                "uncoded_bytes": spec.layer_shape[0] * spec.layer_shape[1] * spec.dtype.itemsize,
            }
        )
    run = store.read_run(journal=False)
    record = run[0] if run else None
    return {
        "store": str(store.root),
        "model": store.model,
        "step": store.step,
        "run": None
        if record is None
        else {
            "status": record["status"],
            "step": record["step"],
            "checkpoint_step": record["position"],
            "layers": record["layers"],
            "strategy": record["config"].get("strategy"),
            "data": record["data"].get("name"),
            "test_accuracy": record.get("test_accuracy"),
            "resumed_from_step": record["resumed_from_step"],
        },
        "layers": layers,
        "checkpoints": [c.to_dict() for c in store.checkpoints()],
        "disk": store.disk_usage(),
    }
