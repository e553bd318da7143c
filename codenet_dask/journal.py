"""The run journal: a training run's fault ledger as JSON bytes, kept in the store with every checkpoint.

A resumed run continues the ledger of the run it resumes: every injected fault (ground truth from
the workers, collected at each checkpoint), every product report, scrub repair and rolled-back
operation up to the checkpoint. Faults injected after the last checkpoint of a killed run are
lost with it, but the resumed run redoes those steps with the same fault sites and attempts (the
injector is a pure function of seed, site and attempt), so it injects them again.

JSON, not pickle: a store is untrusted input. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from .checks import ProductReport
from .errors import StoreFormatError
from .faults import MODELS, InjectedFault, Site
from .ledger import FaultLedger

#: Bump when the journal's JSON changes.
JOURNAL_VERSION = 1


def _blocks(items: Any) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in item) for item in items]


def _fault(f: InjectedFault) -> list:
    model = {"name": f.model.name, **dataclasses.asdict(f.model)}
    return [f.site.step, f.site.layer, f.site.op, list(f.site.block), f.attempt, model, f.relative_magnitude, f.worker]


def _unfault(row: list) -> InjectedFault:
    step, layer, op, block, attempt, model, magnitude, worker = row
    params = {k: v for k, v in model.items() if k != "name"}
    return InjectedFault(
        Site(step, layer, int(op), tuple(block)),
        int(attempt),
        MODELS[model["name"]](**params),
        float(magnitude),
        worker,
    )


def _report(r: ProductReport) -> dict:
    return {
        "operation": r.operation,
        "layer": r.layer,
        "op": r.op,
        "blocks_checked": r.blocks_checked,
        "detected": [list(b) for b in r.detected],
        "corrected": [list(b) for b in r.corrected],
        "uncorrectable_codewords": list(r.uncorrectable_codewords),
        "recomputed": r.recomputed,
        "detected_by_attempt": [[a, [list(b) for b in blocks]] for a, blocks in r.detected_by_attempt.items()],
        "accepted_attempt": r.accepted_attempt,
        "repaired": [list(b) for b in r.repaired],
    }


def _unreport(d: dict) -> ProductReport:
    return ProductReport(
        d["operation"],
        d["layer"],
        op=int(d["op"]),
        blocks_checked=int(d["blocks_checked"]),
        detected=_blocks(d["detected"]),
        corrected=_blocks(d["corrected"]),
        uncorrectable_codewords=[int(j) for j in d["uncorrectable_codewords"]],
        recomputed=int(d["recomputed"]),
        detected_by_attempt={int(a): _blocks(blocks) for a, blocks in d["detected_by_attempt"]},
        accepted_attempt=None if d["accepted_attempt"] is None else int(d["accepted_attempt"]),
        repaired=_blocks(d["repaired"]),
    )


def dumps(ledger: FaultLedger) -> bytes:
    """The ledger as compact JSON bytes."""
    body = {
        "journal_version": JOURNAL_VERSION,
        "dtype": np.dtype(ledger.dtype).name,
        "injected": [_fault(f) for f in ledger.injected],
        "products": [_report(r) for r in ledger.products.values()],
        "repairs": {layer: [[op, list(block)] for op, block in rows] for layer, rows in ledger.repairs.items()},
        "rolled_back": sorted([layer, op] for layer, op in ledger.rolled_back),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def loads(data: bytes) -> FaultLedger:
    """The ledger :func:`dumps` wrote; a StoreFormatError if the bytes are not such a journal."""
    try:
        body = json.loads(data)
        if body.get("journal_version") != JOURNAL_VERSION:
            raise StoreFormatError(
                f"run journal version {body.get('journal_version')!r}; this codenet_dask reads version {JOURNAL_VERSION}"
            )
        ledger = FaultLedger(dtype=np.dtype(body["dtype"]))
        ledger.injected = [_unfault(row) for row in body["injected"]]
        for d in body["products"]:
            report = _unreport(d)
            ledger.products[(report.layer, report.op)] = report
        ledger.repairs = {
            layer: [(int(op), tuple(int(v) for v in block)) for op, block in rows]
            for layer, rows in body["repairs"].items()
        }
        ledger.rolled_back = {(layer, int(op)) for layer, op in body["rolled_back"]}
    except StoreFormatError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StoreFormatError(f"the run journal is not a fault ledger ({type(exc).__name__}: {exc})") from None
    return ledger
