"""``codenet-dask scrub STORE [--repair]``, ``inspect STORE`` and ``gc STORE [--keep N]``: the store at rest.

Exit codes of ``scrub``: 0 the model is intact (clean, or repaired and re-verified on disk);
3 damage was found that the code can repair (rerun with ``--repair``); 4 blocks are lost beyond
the code's capacity, or blocks the code can no longer vouch for (both are named). Errors opening the store exit 1, usage errors 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..store import CodedStore, ScrubReport, describe_store, scrub
from .common import UsageError

EXIT_INTACT = 0
EXIT_REPAIRABLE = 3
EXIT_LOST = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "scrub",
        help="verify every stored coded block; optionally repair",
        description="Verify every coded block of the latest checkpoint against the code; with "
        "--repair, rebuild damaged blocks and commit them as a new checkpoint. "
        "Exit 0 intact, 3 repairable damage found (not repaired), 4 blocks lost.",
    )
    p.add_argument("store", metavar="STORE", help="path of the store")
    p.add_argument("--repair", action="store_true", help="rebuild damaged blocks and write them back")
    p.add_argument("--checkpoint", metavar="ID|STEP", help="scrub this checkpoint instead of the latest (no --repair)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=run_scrub)

    q = subparsers.add_parser(
        "inspect",
        help="layers, code parameters, checkpoints and sizes of a store",
        description="Describe a store from its own metadata: layers, code parameters, checkpoints, sizes.",
    )
    q.add_argument("store", metavar="STORE", help="path of the store")
    q.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    q.set_defaults(run=run_inspect)

    g = subparsers.add_parser(
        "gc",
        help="keep the newest N checkpoints of a store and delete everything only older ones used",
        description="Expire every checkpoint but the newest N and delete the objects only they used "
        "(icechunk's expire_snapshots and garbage_collect). The latest checkpoint always stays. "
        "`train --keep-checkpoints N` does this after every checkpoint.",
    )
    g.add_argument("store", metavar="STORE", help="path of the store")
    g.add_argument("--keep", type=int, default=3, help="checkpoints to keep (default 3, at least 1)")
    g.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    g.set_defaults(run=run_gc)


def _checkpoint_arg(text: str | None) -> str | int | None:
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def run_scrub(args: argparse.Namespace) -> int:
    if args.repair and args.checkpoint is not None:
        raise UsageError("--repair works on the latest checkpoint only; drop --checkpoint")
    with CodedStore.open(args.store, "r+" if args.repair else "r") as store:
        report = scrub(store, repair=args.repair, checkpoint=_checkpoint_arg(args.checkpoint))
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        _print_scrub(report)
    if report.lost or report.unverified:
        return EXIT_LOST
    return EXIT_INTACT if report.ok else EXIT_REPAIRABLE


def _listing(blocks: dict) -> str:
    return "; ".join(f"{name} " + " ".join(f"({a},{b})" for a, b in keys) for name, keys in blocks.items())


def _print_scrub(report: ScrubReport) -> None:
    out = sys.stdout
    if report.checkpoint is None:
        print(f"{report.store}: no checkpoint yet, nothing to scrub", file=out)
        return
    cp = report.checkpoint
    print(f"store {report.store}  checkpoint {cp.id} (step {cp.step})", file=out)
    for layer in report.layers:
        rep = layer.report
        print(
            f"layer {layer.name}: {len(rep.checked)} blocks checked, {len(rep.bad)} damaged, "
            f"{len(rep.repaired)} rebuildable, {len(layer.lost)} lost",
            file=out,
        )
        for key in sorted(set(rep.bad) | set(rep.unverified)):
            state = (
                "lost"
                if key in layer.lost
                else "unverified"
                if key in layer.unverified
                else "repaired"
                if report.repaired_checkpoint
                else "repairable"
            )
            print(f"  block {key[0]},{key[1]}: {state}: {layer.reasons.get(key, '')}", file=out)
    if report.lost:
        print(f"LOST beyond repair: {_listing(report.lost)}", file=out)
    if report.unverified:
        print(f"UNVERIFIED (the code cannot vouch for them): {_listing(report.unverified)}", file=out)
    if report.lost or report.unverified:
        return
    if report.ok and report.repaired_checkpoint:
        print(f"repaired and re-verified: new checkpoint {report.repaired_checkpoint.id}", file=out)
    elif report.ok:
        print("intact: every block verified", file=out)
    else:
        print("damaged but repairable: rerun with --repair", file=out)


def run_inspect(args: argparse.Namespace) -> int:
    with CodedStore.open(args.store, "r") as store:
        info = describe_store(store)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"store {info['store']}  model {info['model']!r}  step {info['step']}")
    if info["run"]:
        run = info["run"]
        print(
            f"training run: {'-'.join(map(str, run['layers']))} on {run['data']}, {run['strategy']}; {run['status']} "
            f"(step {run['step']}, checkpoint at step {run['checkpoint_step']}, test accuracy {run['test_accuracy']})"
        )
    for layer in info["layers"]:
        code = layer["code"]
        print(
            f"layer {layer['name']}: {layer['layer_shape'][0]}x{layer['layer_shape'][1]} {layer['dtype']}, "
            f"{code['grid'][0]}x{code['grid'][1]} blocks + {code['parity'][0]}x{code['parity'][1]} parity "
            f"({code['construction']}, worst condition {max(code['worst_condition']):.3g}), "
            f"blocks of {layer['block_shape'][0]}x{layer['block_shape'][1]}, "
            f"{layer['coded_bytes']} bytes coded, last written at step {layer['step']}"
        )
    print(f"checkpoints ({len(info['checkpoints'])}, newest first):")
    for cp in info["checkpoints"]:
        print(f"  {cp['id']}  step {cp['step']}  {cp['written_at']}  {cp['message']}")
    total = sum(part["bytes"] for part in info["disk"].values())
    parts = ", ".join(f"{name} {part['objects']} objects / {part['bytes']} B" for name, part in info["disk"].items())
    print(f"on disk: {total} bytes ({parts})")
    return 0


def _disk_bytes(store: CodedStore) -> int:
    return sum(part["bytes"] for part in store.disk_usage().values())


def run_gc(args: argparse.Namespace) -> int:
    if args.keep < 1:
        raise UsageError(f"--keep must be at least 1 (the latest checkpoint always stays), got {args.keep}")
    with CodedStore.open(args.store, "r+") as store:
        before, bytes_before = len(store.checkpoints()), _disk_bytes(store)
        report = store.expire(args.keep)
        after, bytes_after = len(store.checkpoints()), _disk_bytes(store)
    result = {
        "store": str(store.root),
        "keep": args.keep,
        "checkpoints_before": before,
        "checkpoints_after": after,
        "bytes_before": bytes_before,
        "bytes_after": bytes_after,
        "collected": report.to_dict(),
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"{result['store']}: kept {after} of {before} checkpoints; {bytes_before} -> {bytes_after} bytes on disk "
            f"({report.chunks_deleted} chunk objects, {report.snapshots_deleted} snapshots deleted)"
        )
    return 0
