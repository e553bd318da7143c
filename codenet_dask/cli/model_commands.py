"""``codenet-dask export STORE --out FILE`` and ``codenet-dask predict STORE [--data FILE]``: the trained model out.

``export`` writes the decoded, verified weights of the newest checkpoint (scrubbed first) as an
xarray Dataset; ``predict`` classifies samples with them in plain numpy. Exit codes: 0 done; 2
usage errors (a bad path, data that do not fit the network); 4 the store's blocks do not verify
(nothing written, the blocks named, as ``scrub`` reports them); 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import BlocksLostError, DataError
from .common import UsageError
from .store_commands import EXIT_LOST


def register(subparsers: argparse._SubParsersAction) -> None:
    e = subparsers.add_parser(
        "export",
        help="write a store's trained weights (decoded, verified) to .nc, .zarr or .npz",
        description="Scrub the newest checkpoint (or --checkpoint), decode its verified systematic weights and "
        "write them as an xarray Dataset: one variable per layer (outputs x inputs) with named dimensions "
        "input, hidden1, ..., output, and the training run's config, data and accuracy as attributes (in .npz: "
        "one array per layer and the attributes as JSON in 'attrs'). A store whose blocks do not verify is "
        "refused (exit 4).",
    )
    e.add_argument("store", metavar="STORE", help="path of the store")
    e.add_argument("--out", required=True, metavar="FILE", help="new file ending in .nc, .zarr or .npz")
    e.add_argument("--checkpoint", metavar="ID|STEP", help="export this checkpoint instead of the newest")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.set_defaults(run=run_export)

    p = subparsers.add_parser(
        "predict",
        help="classify samples with a store's (or an export's) trained weights",
        description="Classify samples in plain numpy with the verified weights of a store's newest checkpoint "
        "(or of an exported file). Without --data: the training run's own test split (its data loaded again and "
        "fingerprinted), so the accuracy is the one the run reported. With --data: every sample of that file, "
        "in order (labels optional; with them the accuracy is reported).",
    )
    p.add_argument("store", metavar="STORE", help="a store, or a .nc/.zarr/.npz file `export` wrote")
    p.add_argument("--data", metavar="FILE", help=".npz, NetCDF or Zarr data set with features X (samples, features)")
    p.add_argument("--x-var", default="X", help="name of the features variable in --data")
    p.add_argument("--y-var", default="y", help="name of the labels variable in --data (optional there)")
    p.add_argument(
        "--out", metavar="FILE", help="write the predictions to FILE.npz (predictions, probabilities) or FILE.csv"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=run_predict)


def _new_path(text: str, option: str, suffixes: tuple[str, ...]) -> Path:
    out = Path(text)
    if out.suffix.lstrip(".").lower() not in suffixes:
        raise UsageError(f"{option} must end in {' or '.join('.' + s for s in suffixes)}, got {text!r}")
    if out.exists():
        raise UsageError(f"{option} {text} already exists; give a new file name (nothing was written)")
    if not out.absolute().parent.is_dir():
        raise UsageError(f"{option} {text}: folder {out.absolute().parent} does not exist")
    return out


def run_export(args: argparse.Namespace) -> int:
    from ..store import CodedStore
    from ..store.export import SUFFIXES, read_weights, weights_dataset, write_weights
    from .store_commands import _checkpoint_arg

    out = _new_path(args.out, "--out", SUFFIXES)
    with CodedStore.open(args.store) as store:
        try:
            stored = read_weights(store, _checkpoint_arg(args.checkpoint))
        except BlocksLostError as exc:
            print(f"codenet-dask export: {exc}", file=sys.stderr)
            return EXIT_LOST
    for name, keys in stored.repaired_in_memory.items():
        print(
            f"export: layer {name} blocks {keys} were damaged and rebuilt from the code (run scrub --repair)",
            file=sys.stderr,
        )
    ds = weights_dataset(stored, str(store.root))
    path = write_weights(ds, out)
    result = {
        "out": str(path),
        "checkpoint": stored.checkpoint.id,
        "step": stored.checkpoint.step,
        "layers": {name: list(w.shape) for name, w in zip(stored.names, stored.weights)},
        "test_accuracy": None if np.isnan(ds.attrs["test_accuracy"]) else ds.attrs["test_accuracy"],
        "status": ds.attrs["status"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        shapes = ", ".join(f"{n} {r}x{c}" for n, (r, c) in result["layers"].items())
        print(
            f"{path}: {shapes} from checkpoint {result['checkpoint']} (step {result['step']}, run {result['status']}, "
            f"test accuracy {result['test_accuracy']})"
        )
    return 0


def _samples(args: argparse.Namespace, model):
    """``(name, pieces, labels)``: the samples to classify as (samples, features) pieces, in order."""
    from ..userdata import open_arrays, reload_data

    if args.data is None:
        record = model.record
        if not record.get("data"):
            raise UsageError(f"{args.store} records no training data; give the samples with --data FILE")
        try:
            data = reload_data(record["data"], str(model.weights[0].dtype))
        except DataError as exc:
            raise UsageError(str(exc)) from None
        pieces = list(data.test_batches())
        return (
            f"{record['data']['name']} (the run's test split)",
            [x.T for x, _ in pieces],
            np.concatenate([y for _, y in pieces]),
        )
    try:
        arrays = open_arrays(args.data, args.x_var, args.y_var, labels=False)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    x = arrays.x
    if x.shape[1] != model.layers[0]:
        raise UsageError(f"{args.data} has {x.shape[1]} features; the network takes {model.layers[0]}")
    if isinstance(x, np.ndarray):
        return args.data, [x], arrays.y
    rows = int(x.chunks[0])
    return args.data, (np.asarray(x[a : a + rows]) for a in range(0, x.shape[0], rows)), arrays.y


def run_predict(args: argparse.Namespace) -> int:
    from ..model import load_model

    out = _new_path(args.out, "--out", ("npz", "csv")) if args.out else None
    try:
        model = load_model(args.store)
    except BlocksLostError as exc:
        print(f"codenet-dask predict: {exc}", file=sys.stderr)
        return EXIT_LOST
    name, pieces, labels = _samples(args, model)
    probabilities = np.concatenate([model.predict_proba(x) for x in pieces])
    predictions = np.argmax(probabilities, axis=1)
    accuracy = float(np.mean(predictions == labels)) if labels is not None else None
    if out is not None:
        if out.suffix.lower() == ".npz":
            extra = {} if labels is None else {"labels": labels}
            np.savez(out, predictions=predictions, probabilities=probabilities, **extra)
        else:
            header = "sample,prediction" + ("" if labels is None else ",label")
            table = np.column_stack([np.arange(predictions.size), predictions, *([] if labels is None else [labels])])
            np.savetxt(out, table, fmt="%d", delimiter=",", header=header, comments="")
    result = {
        "model": args.store,
        "layers": model.layers,
        "data": name,
        "samples": int(predictions.size),
        "accuracy": accuracy,
        "class_counts": np.bincount(predictions, minlength=len(model.classes_)).tolist(),
        "out": str(out) if out else None,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['samples']} samples of {name} classified by {'-'.join(map(str, model.layers))}"
            + (f": accuracy {accuracy:.4f}" if accuracy is not None else "")
            + (f"; predictions in {out}" if out else "")
        )
    return 0
