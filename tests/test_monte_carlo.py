"""Monte Carlo over >= 10,000 injected faults: the ledger accounts for every one, none escapes.

Runs the real product plan (``protocol.plans.product_plan``: block products, projections,
per-consumer decodes, independent verifies, each through the seeded injector) on the in-process
reference executor, so that ten thousand faults fit in well under a minute, with the same recompute
loop as ``CodedLayer`` (a new attempt, new keys, independent fault draws, at most 3 attempts).
"""

from __future__ import annotations

import numpy as np

from codenet_dask.codes import ProductCode
from codenet_dask.executors import LocalExecutor
from codenet_dask.faults import RandomFaults, collect_injected
from codenet_dask.kernels.blocks import CodedBlock
from codenet_dask.kernels.checks import Rejected, projection_matrix
from codenet_dask.layer import MAX_ATTEMPTS
from codenet_dask.ledger import OUTCOMES, FaultLedger
from codenet_dask.protocol.plans import ProductSpec, product_plan
from codenet_dask.protocol.reports import ProductReport
from codenet_dask.protocol.types import Plan

EXECUTOR = LocalExecutor(1)

SPEC = (
    "bitflip:0.02:steps=block-forward+project+decode+verify,"
    "nan:0.004:steps=block-forward+project+decode+verify,"
    "noise:0.01:scale=1e-4:steps=block-forward+project+decode+verify"
)


def coded_columns(code: ProductCode, rng) -> dict:
    blocks = code.row_code.encode(rng.standard_normal((code.kr, code.kc, 4, 6)))
    err = 8 * np.finfo(np.float64).eps * float(np.max(np.abs(blocks)))
    return {
        (a, j): CodedBlock.from_values(blocks[a, j], err if a >= code.kr else 0.0)
        for a in range(code.row_code.n)
        for j in range(code.kc)
    }


def run_product(code, blocks, x_pieces, hook, op: int, ledger: FaultLedger, reference: list[np.ndarray]) -> None:
    v = projection_matrix(x_pieces[0].shape[1], op)
    report = ProductReport("forward", "mc", op=op)
    for attempt in range(MAX_ATTEMPTS):
        spec = ProductSpec(
            "forward",
            "mc",
            op,
            attempt,
            code.row_code,
            code.kc,
            False,
            coord=lambda a, j: (a, j),
            block=lambda a, j: blocks[(a, j)],
            owner=lambda a, j: None,
            raise_on_reject=False,
        )
        plan = product_plan(spec, x_pieces, v, hook, Plan())
        results = EXECUTOR.gather(EXECUTOR.run(plan.plan, plan.outputs + plan.reports), "mc")
        chunks, verdicts = results[: len(plan.outputs)], results[len(plan.outputs) :]
        report.merge_verdicts(attempt, verdicts, lambda t, j, a: (a, j))
        if not any(isinstance(c, Rejected) for c in chunks):
            report.accepted_attempt = attempt
            for got, want in zip(chunks, reference):  # accepted means right
                assert np.max(np.abs(got - want)) <= 1e-9 * np.max(np.abs(want)), (op, attempt)
            break
        report.recomputed += 1
    ledger.add_product(report)


def test_ten_thousand_faults_none_undetected():
    rng = np.random.default_rng(2026)
    code = ProductCode(4, 3, 4, 0)
    hook = RandomFaults.from_string(SPEC, seed=7)
    ledger = FaultLedger()
    collect_injected()
    op = 0
    while len(ledger.injected) < 10_000:
        blocks = coded_columns(code, rng)
        for _ in range(50):
            op += 1
            x_pieces = [rng.standard_normal((6, 3)) for _ in range(code.kc)]
            reference = [sum(blocks[(t, j)].values @ x_pieces[j] for j in range(code.kc)) for t in range(code.kr)]
            run_product(code, blocks, x_pieces, hook, op, ledger, reference)
        ledger.add_injected(collect_injected())
    summary = ledger.summary()
    assert summary["injected"] >= 10_000
    assert summary["undetected"] == 0, [(f, o) for f, o in ledger.outcomes() if o == "undetected"][:5]
    assert sum(summary[k] for k in OUTCOMES) == summary["injected"]
    # Every class that should occur at these rates does occur.
    assert summary["corrected"] > 1000 and summary["recomputed"] > 100 and summary["benign"] > 1000


def test_no_false_alarm_in_2000_clean_products_per_dtype():
    """Clean forward and backward products through the real graph, float32 and float64: nothing flagged."""
    from codenet_dask.faults import NoFaults

    code = ProductCode(2, 2, 2, 2)
    for dtype in (np.float64, np.float32):
        executor = LocalExecutor(1)  # the trials' keys repeat across dtypes
        rng = np.random.default_rng(11)
        for trial in range(1000):
            scale = 10.0 ** rng.uniform(-6, 6)
            grid = code.encode_grid((rng.standard_normal((2, 2, 5, 7)) * scale).astype(dtype))
            err = 8 * float(np.finfo(dtype).eps) * float(np.max(np.abs(grid)))
            blocks = {
                (a, b): CodedBlock.from_values(grid[a, b], 0.0 if a < 2 and b < 2 else err)
                for a in range(4)
                for b in range(4)
            }
            for step, transpose, inner, codewords, sub in (
                ("forward", False, 7, 2, code.row_code),
                ("backward", True, 5, 2, code.col_code),
            ):

                def coord(a, j, forward=not transpose):
                    return (a, j) if forward else (j, a)

                spec = ProductSpec(
                    step,
                    "clean",
                    trial,
                    0,
                    sub,
                    codewords,
                    transpose,
                    coord=coord,
                    block=lambda a, j, coord=coord, blocks=blocks: blocks[coord(a, j)],
                    owner=lambda a, j: None,
                    raise_on_reject=False,
                )
                pieces = [(rng.standard_normal((inner, 4)) * scale).astype(dtype) for _ in range(codewords)]
                plan = product_plan(spec, pieces, projection_matrix(4, trial), NoFaults(), Plan())
                results = executor.gather(executor.run(plan.plan, plan.outputs + plan.reports), "clean")
                assert not any(isinstance(c, Rejected) for c in results[: len(plan.outputs)])
                assert all(check.status == "clean" for verdicts in results[len(plan.outputs) :] for check in verdicts)
