"""The run journal: a training run's fault ledger as JSON bytes, kept in the store with every checkpoint.

A resumed run continues the ledger of the run it resumes: every injected fault (ground truth from
the workers, collected at each checkpoint), every product report, scrub repair and rolled-back
operation up to the checkpoint. Faults injected after the last checkpoint of a killed run are
lost with it, but the resumed run redoes those steps with the same fault sites and attempts (the
injector is a pure function of seed, site and attempt), so it injects them again.

JSON, not pickle: a store is untrusted input. Pure: no I/O.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from typing import Any

import numpy as np

from .errors import StoreFormatError
from .faults import MODELS, InjectedFault, Site
from .judge import Judge, Verdict
from .ledger import FaultLedger
from .protocol.reports import ProductReport

#: Bump when the journal's JSON changes.
JOURNAL_VERSION = 2


def _blocks(items: Any) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in item) for item in items]


def _fault(f: InjectedFault) -> list:
    model = {"name": f.model.name, **dataclasses.asdict(f.model)}  # type: ignore[call-overload]  # the models are dataclasses
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
        "timeouts": r.timeouts,
        "ambiguous": r.ambiguous,
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
        timeouts=int(d["timeouts"]),
        ambiguous=int(d["ambiguous"]),
        detected_by_attempt={int(a): _blocks(blocks) for a, blocks in d["detected_by_attempt"]},
        accepted_attempt=None if d["accepted_attempt"] is None else int(d["accepted_attempt"]),
        repaired=_blocks(d["repaired"]),
    )


def _array(a: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, a, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode()


def _unarray(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


def _judge(judge: Judge) -> dict:
    """The judge's verdicts and its shadow and twin weights as of the last checkpoint."""
    return {
        "products": [[layer, op, v.correct, v.ratio] for (layer, op), v in judge.products.items()],
        "checks": {
            layer: [[op, kept, [list(b) for b in sorted(wrong)]] for op, kept, wrong in rows]
            for layer, rows in judge.checks.items()
        },
        "weights": {
            name: {
                "shadow": _array(w.shadow),
                "twin": _array(w.twin),
                "blocks": list(w.blocks),
                "block_shape": list(w.block_shape),
            }
            for name, w in judge.saved_weights().items()
        },
    }


def _unjudge(body: dict) -> Judge:
    judge = Judge()
    judge.products = {(layer, int(op)): Verdict(bool(ok), float(ratio)) for layer, op, ok, ratio in body["products"]}
    judge.checks = {
        layer: [(int(op), bool(kept), frozenset(tuple(int(v) for v in b) for b in wrong)) for op, kept, wrong in rows]
        for layer, rows in body["checks"].items()
    }
    for name, w in body["weights"].items():
        judge.follow(name, _unarray(w["shadow"]), _unarray(w["twin"]), tuple(w["blocks"]), tuple(w["block_shape"]))
    return judge


def dumps(ledger: FaultLedger) -> bytes:
    """The ledger as compact JSON bytes."""
    body = {
        "journal_version": JOURNAL_VERSION,
        "dtype": np.dtype(ledger.dtype).name,
        "injected": [_fault(f) for f in ledger.injected],
        "products": [_report(r) for r in ledger.products.values()],
        "repairs": {layer: [[op, list(block)] for op, block in rows] for layer, rows in ledger.repairs.items()},
        "rolled_back": sorted([layer, op] for layer, op in ledger.rolled_back),
        "reencoded": dict(ledger.reencoded),
        "discarded": sorted([layer, op] for layer, op in ledger.discarded),
        "judge": None if ledger.judge is None else _judge(ledger.judge),
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
        ledger.reencoded = {
            layer: int(a) for layer, a in body.get("reencoded", {}).items()
        }  # absent before quarantines
        ledger.discarded = {
            (layer, int(op)) for layer, op in body.get("discarded", [])
        }  # absent before one-graph steps
        ledger.judge = None if body["judge"] is None else _unjudge(body["judge"])
    except StoreFormatError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StoreFormatError(f"the run journal is not a fault ledger ({type(exc).__name__}: {exc})") from None
    return ledger
