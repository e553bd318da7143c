"""The store's self-describing metadata: what each attribute means, how it is built and checked.

A store is untrusted input. Everything read back is validated field by field, cross-checked with
the arrays it describes and with the code this version of the package builds from the stored
parameters, and covered by a digest so an attribute edited outside this package (a "tampered"
store) is reported instead of silently changing how blocks are decoded. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ..codes import ProductCode
from ..errors import CodeNetError, StoreFormatError, StoreVersionError
from .bookkeeping import FIELDS, record_length

#: Bump when the layout changes. Version 2 adds the optional ``training`` group (a training run's
#: record and journal, for resume and export); version 1 stores read the same without it.
FORMAT_VERSION = 2
#: Versions this code reads (it writes FORMAT_VERSION; a checkpoint of a version 1 store upgrades it).
READABLE_VERSIONS = (1, 2)
#: Every attribute this package writes lives under this key of a node's attributes.
ATTR_KEY = "codenet_dask"
#: Group holding one bookkeeping array per layer (norms, err, updates, content digest per block).
BOOKKEEPING_GROUP = "bookkeeping"
#: Group holding the training run's record (attributes) and journal (``training/journal``, bytes).
TRAINING_GROUP = "training"
JOURNAL_PATH = f"{TRAINING_GROUP}/journal"
#: Bytes per chunk of the journal array.
JOURNAL_CHUNK = 2**20
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
DTYPES = ("float32", "float64")
#: Stored generators must match the ones this version builds to this relative tolerance.
GENERATOR_RTOL = 1e-12


def check_layer_name(name: str) -> str:
    """The name, if it can be an array name in the store; a StoreFormatError otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name in (BOOKKEEPING_GROUP, TRAINING_GROUP):
        raise StoreFormatError(
            f"invalid layer name {name!r}: use a letter then up to 63 of [A-Za-z0-9_.-], "
            f"and not {BOOKKEEPING_GROUP!r} or {TRAINING_GROUP!r}"
        )
    return name


@dataclass(frozen=True)
class LayerSpec:
    """Everything needed to interpret one layer's arrays."""

    name: str
    code: ProductCode
    block_shape: tuple[int, int]
    layer_shape: tuple[int, int]
    dtype: np.dtype

    @property
    def grid(self) -> tuple[int, int]:
        """Coded block grid ``(kr + pr, kc + pc)``."""
        return self.code.coded_shape

    @property
    def array_shape(self) -> tuple[int, int]:
        """Shape of the weights array holding every coded block."""
        (nr, nc), (bh, bw) = self.grid, self.block_shape
        return (nr * bh, nc * bw)

    @property
    def record_length(self) -> int:
        return record_length(*self.block_shape)

    @property
    def weights_path(self) -> str:
        return self.name

    @property
    def bookkeeping_path(self) -> str:
        return f"{BOOKKEEPING_GROUP}/{self.name}"

    @property
    def dims(self) -> tuple[str, str]:
        return (f"{self.name}_row", f"{self.name}_col")

    @property
    def bookkeeping_dims(self) -> tuple[str, str, str]:
        return (f"{self.name}_block_row", f"{self.name}_block_col", f"{self.name}_field")

    @property
    def block_bytes(self) -> int:
        bh, bw = self.block_shape
        return bh * bw * self.dtype.itemsize

    def block_slices(self, a: int, b: int) -> tuple[slice, slice]:
        bh, bw = self.block_shape
        return (slice(a * bh, (a + 1) * bh), slice(b * bw, (b + 1) * bw))


def make_spec(
    name: str,
    code: ProductCode,
    block_shape: tuple[int, int],
    dtype: DTypeLike,
    layer_shape: tuple[int, int] | None = None,
) -> LayerSpec:
    """A validated LayerSpec for a new layer."""
    check_layer_name(name)
    dtype = np.dtype(dtype)
    if dtype.name not in DTYPES:
        raise StoreFormatError(f"layer {name!r}: dtype must be float32 or float64, got {dtype}")
    bh, bw = _positive_pair(block_shape, f"layer {name!r}: block_shape")
    if layer_shape is None:
        layer_shape = (code.kr * bh, code.kc * bw)
    rows, cols = _positive_pair(layer_shape, f"layer {name!r}: layer_shape")
    if rows > code.kr * bh or cols > code.kc * bw:
        raise StoreFormatError(
            f"layer {name!r}: layer shape {rows}x{cols} does not fit {code.kr}x{code.kc} blocks of {bh}x{bw}"
        )
    return LayerSpec(name, code, (bh, bw), (rows, cols), dtype)


# -- building attributes -------------------------------------------------------------------------
def _digest(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _sealed(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "digest": _digest(payload)}


def code_attrs(code: ProductCode) -> dict[str, Any]:
    """Code parameters plus the generators, so the store alone says how blocks relate."""
    described = code.describe()
    return {
        key: described[key]
        for key in ("family", "construction", "grid", "parity", "row_generator", "col_generator", "worst_condition")
    }


def layer_attrs(spec: LayerSpec, step: int) -> dict[str, Any]:
    """The weights array's attributes."""
    return _sealed(
        {
            "format_version": FORMAT_VERSION,
            "kind": "coded-layer",
            "layer": spec.name,
            "layer_shape": list(spec.layer_shape),
            "block_shape": list(spec.block_shape),
            "block_grid": list(spec.grid),
            "dtype": spec.dtype.name,
            "code": code_attrs(spec.code),
            "step": int(step),
            "bookkeeping": {"path": spec.bookkeeping_path, "fields": list(FIELDS), "record_length": spec.record_length},
        }
    )


def model_attrs(model: str, step: int, layers: list[str]) -> dict[str, Any]:
    """The root group's attributes."""
    return _sealed(
        {
            "format_version": FORMAT_VERSION,
            "kind": "coded-model",
            "model": model,
            "step": int(step),
            "layers": list(layers),
        }
    )


def bookkeeping_attrs(spec: LayerSpec) -> dict[str, Any]:
    return _sealed(
        {
            "format_version": FORMAT_VERSION,
            "kind": "coded-layer-bookkeeping",
            "layer": spec.name,
            "fields": list(FIELDS),
            "row_norms": [len(FIELDS), len(FIELDS) + spec.block_shape[0]],
            "col_norms": [len(FIELDS) + spec.block_shape[0], spec.record_length],
        }
    )


# -- reading attributes back ---------------------------------------------------------------------
def _payload(attrs: Mapping[str, Any], where: str, kind: str) -> dict[str, Any]:
    """The validated, digest-checked payload under ATTR_KEY."""
    if ATTR_KEY not in attrs:
        raise StoreFormatError(f"{where}: attribute {ATTR_KEY!r} is missing; not written by codenet_dask")
    payload = attrs[ATTR_KEY]
    if not isinstance(payload, dict):
        raise StoreFormatError(f"{where}: attribute {ATTR_KEY!r} must be an object, got {type(payload).__name__}")
    version = payload.get("format_version")
    if version not in READABLE_VERSIONS:
        raise StoreVersionError(
            f"{where}: store format version {version!r}, this codenet_dask reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    if payload.get("kind") != kind:
        raise StoreFormatError(f"{where}: expected kind {kind!r}, got {payload.get('kind')!r}")
    digest = payload.get("digest")
    body = {k: v for k, v in payload.items() if k != "digest"}
    try:
        expected = _digest(body)
    except (TypeError, ValueError) as exc:
        raise StoreFormatError(f"{where}: attributes are not plain JSON data ({exc})") from None
    if digest != expected:
        raise StoreFormatError(
            f"{where}: attribute digest mismatch: the attributes were changed outside codenet_dask "
            f"(or the digest is missing); refusing to trust them"
        )
    return body


def _require(body: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in body:
        raise StoreFormatError(f"{where}: required attribute {key!r} is missing")
    return body[key]


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StoreFormatError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _positive_pair(value: Any, what: str) -> tuple[int, int]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise StoreFormatError(f"{what} must be a pair of positive integers, got {value!r}")
    return (_int(value[0], what, 1), _int(value[1], what, 1))


def parse_model_attrs(attrs: Mapping[str, Any]) -> tuple[str, int, list[str]]:
    """``(model name, step, layer names)`` from the root group's attributes."""
    where = "store root"
    body = _payload(attrs, where, "coded-model")
    model = _require(body, "model", where)
    if not isinstance(model, str):
        raise StoreFormatError(f"{where}: 'model' must be a string, got {model!r}")
    step = _int(_require(body, "step", where), f"{where}: 'step'", minimum=-1)
    layers = _require(body, "layers", where)
    if not isinstance(layers, list) or len(set(map(str, layers))) != len(layers):
        raise StoreFormatError(f"{where}: 'layers' must be a list of distinct names, got {layers!r}")
    for name in layers:
        check_layer_name(name)
    return model, step, list(layers)


def parse_layer_attrs(name: str, attrs: Mapping[str, Any]) -> tuple[LayerSpec, int]:
    """``(spec, step)`` from a weights array's attributes, cross-checked against the code."""
    where = f"layer {name!r}"
    body = _payload(attrs, where, "coded-layer")
    if _require(body, "layer", where) != name:
        raise StoreFormatError(f"{where}: attributes name layer {body['layer']!r}")
    code_body = _require(body, "code", where)
    if not isinstance(code_body, dict):
        raise StoreFormatError(f"{where}: 'code' must be an object")
    code = _parse_code(code_body, where)
    block_shape = _positive_pair(_require(body, "block_shape", where), f"{where}: 'block_shape'")
    layer_shape = _positive_pair(_require(body, "layer_shape", where), f"{where}: 'layer_shape'")
    grid = _positive_pair(_require(body, "block_grid", where), f"{where}: 'block_grid'")
    if grid != code.coded_shape:
        raise StoreFormatError(f"{where}: block grid {grid} does not match the code's coded grid {code.coded_shape}")
    dtype = _require(body, "dtype", where)
    if dtype not in DTYPES:
        raise StoreFormatError(f"{where}: dtype must be one of {DTYPES}, got {dtype!r}")
    step = _int(_require(body, "step", where), f"{where}: 'step'", minimum=-1)
    spec = make_spec(name, code, block_shape, dtype, layer_shape)
    book = _require(body, "bookkeeping", where)
    expected_book = {"path": spec.bookkeeping_path, "fields": list(FIELDS), "record_length": spec.record_length}
    if book != expected_book:
        raise StoreFormatError(f"{where}: bookkeeping description {book!r} != expected {expected_book!r}")
    return spec, step


def _parse_code(body: Mapping[str, Any], where: str) -> ProductCode:
    family = body.get("family")
    if family != "product-mds":
        raise StoreFormatError(f"{where}: unknown code family {family!r}; this version reads 'product-mds'")
    construction = body.get("construction")
    if construction not in ("chebyshev", "orthogonal"):
        raise StoreFormatError(f"{where}: unknown code construction {construction!r}")
    kr, kc = _positive_pair(body.get("grid"), f"{where}: code 'grid'")
    parity = body.get("parity")
    if not (isinstance(parity, list) and len(parity) == 2):
        raise StoreFormatError(f"{where}: code 'parity' must be a pair of integers, got {parity!r}")
    pr, pc = (_int(p, f"{where}: code 'parity'") for p in parity)
    try:
        code = ProductCode(kr, kc, pr, pc, construction)
    except CodeNetError as exc:
        raise StoreFormatError(f"{where}: stored code parameters are unusable: {exc}") from None
    for key, built in (("row_generator", code.row_code.generator), ("col_generator", code.col_code.generator)):
        stored = body.get(key)
        try:
            stored_arr = np.array(stored, dtype=np.float64)
        except (TypeError, ValueError):
            raise StoreFormatError(f"{where}: code {key!r} is not a numeric matrix") from None
        if stored_arr.shape != built.shape or not np.allclose(
            stored_arr, built, rtol=GENERATOR_RTOL, atol=GENERATOR_RTOL
        ):
            raise StoreFormatError(
                f"{where}: stored {key} differs from the one this version builds for "
                f"{code.describe()['family']} {kr}x{kc}+{pr}x{pc} ({construction}); blocks would decode wrongly"
            )
    return code


def check_weights_array(
    spec: LayerSpec,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: np.dtype,
    dims: tuple[str | None, ...] | None,
    fill_value: Any,
) -> None:
    """The weights array's metadata agrees with the layer's attributes."""
    where = f"layer {spec.name!r}"
    if tuple(shape) != spec.array_shape:
        raise StoreFormatError(f"{where}: array shape {tuple(shape)} != {spec.array_shape} from the attributes")
    if tuple(chunks) != spec.block_shape:
        raise StoreFormatError(f"{where}: chunk shape {tuple(chunks)} != block shape {spec.block_shape}")
    if np.dtype(dtype) != spec.dtype:
        raise StoreFormatError(f"{where}: array dtype {dtype} != attribute dtype {spec.dtype}")
    if tuple(dims or ()) != spec.dims:
        raise StoreFormatError(f"{where}: dimension names {dims} != {spec.dims}")
    if not (isinstance(fill_value, (float, np.floating)) and math.isnan(fill_value)):
        raise StoreFormatError(f"{where}: fill value must be NaN (so a lost chunk reads as lost), got {fill_value!r}")


def check_bookkeeping_array(
    spec: LayerSpec, attrs: Mapping[str, Any], shape: tuple[int, ...], chunks: tuple[int, ...], dtype: np.dtype
) -> None:
    where = f"bookkeeping of layer {spec.name!r}"
    body = _payload(attrs, where, "coded-layer-bookkeeping")
    expected = {k: v for k, v in bookkeeping_attrs(spec).items() if k != "digest"}
    expected["format_version"] = body["format_version"]  # written once, with the layer: any readable version
    if body != expected:
        raise StoreFormatError(f"{where}: attributes {body!r} do not describe this layer")
    nr, nc = spec.grid
    if tuple(shape) != (nr, nc, spec.record_length) or tuple(chunks) != (1, 1, spec.record_length):
        raise StoreFormatError(
            f"{where}: shape {tuple(shape)} / chunks {tuple(chunks)} != ({nr}, {nc}, {spec.record_length}) / (1, 1, {spec.record_length})"
        )
    if np.dtype(dtype) != np.float64:
        raise StoreFormatError(f"{where}: dtype must be float64, got {dtype}")


# -- the training run ----------------------------------------------------------------------------
def training_attrs(record: Mapping[str, Any], journal_bytes: int, journal_sha256: str) -> dict[str, Any]:
    """The training group's attributes: the run's record (plain JSON data) and its journal's digest."""
    return _sealed(
        {
            "format_version": FORMAT_VERSION,
            "kind": "training-run",
            "record": dict(record),
            "journal": {"path": JOURNAL_PATH, "bytes": int(journal_bytes), "sha256": journal_sha256},
        }
    )


def parse_training_attrs(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], int, str]:
    """``(record, journal bytes, journal sha256)`` from the training group's attributes."""
    where = f"group {TRAINING_GROUP!r}"
    body = _payload(attrs, where, "training-run")
    record = _require(body, "record", where)
    journal = _require(body, "journal", where)
    if not isinstance(record, dict):
        raise StoreFormatError(f"{where}: 'record' must be an object")
    if not (
        isinstance(journal, dict) and journal.get("path") == JOURNAL_PATH and isinstance(journal.get("sha256"), str)
    ):
        raise StoreFormatError(f"{where}: 'journal' must describe {JOURNAL_PATH!r} with its sha256, got {journal!r}")
    return record, _int(journal.get("bytes"), f"{where}: journal 'bytes'"), journal["sha256"]
