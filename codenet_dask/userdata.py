"""Your own data: a ``.npz`` file, a NetCDF or Zarr data set (xarray's, or a plain Zarr group), or
a folder of MNIST IDX files.

A data set holds ``X``, shape (samples, features), any real numbers, and ``y``, one non-negative
integer label per sample (other names with ``x_var``/``y_var``). ``.npz`` and NetCDF files are
read into memory and split by a seeded stratified shuffle (``test_fraction``); a Zarr data set is
streamed from disk batch by batch (:class:`~codenet_dask.streaming.StreamedDataset`) with the same
kind of split. Features are used as they are (no scaling); IDX images are scaled to [0, 1] and
keep their own train/test split.

Every problem is a :class:`~codenet_dask.errors.DataError` whose one-line message names it and
the fix: mismatched lengths, labels that are not non-negative integers, NaN/Inf features, empty
data, a missing variable (the ones there are listed).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from .data import Dataset, _check_fraction, _float_dtype, load_dataset, load_idx, stratified_split
from .errors import DataError
from .streaming import DEFAULT_BUFFER_BYTES, StreamedDataset

#: What ``--data`` accepts, by kind.
KINDS = ("npz", "netcdf", "zarr", "idx")
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zattrs")


def data_kind(path: str | os.PathLike[str]) -> str:
    """``npz``, ``netcdf``, ``zarr`` or ``idx``, from the path (a DataError if it is none of them)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data {p} does not exist; give a .npz or .nc file, a Zarr data set or a folder of IDX files")
    if p.is_dir():
        return "zarr" if p.suffix == ".zarr" or any((p / m).exists() for m in _ZARR_MARKERS) else "idx"
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in (".nc", ".nc4", ".netcdf"):
        return "netcdf"
    raise DataError(f"data {p}: unknown kind {suffix or '(no suffix)'!r}; use .npz, .nc, a Zarr folder or IDX files")


@dataclass
class Arrays:
    """Features (rows = samples; numpy in memory, or a Zarr array on disk) and labels (or None)."""

    x: Any
    y: np.ndarray | None
    name: str


def open_arrays(path: str | os.PathLike[str], x_var: str = "X", y_var: str = "y", *, labels: bool = True) -> Arrays:
    """The arrays of a ``.npz``/NetCDF/Zarr data set, checked; Zarr features are not read yet.

    With ``labels=False`` a data set without ``y_var`` is fine (for predictions).
    """
    p = Path(path).expanduser()
    kind = data_kind(p)
    if kind == "idx":
        raise DataError(f"{p} is a folder of IDX files; open it with load_data")
    if kind == "npz":
        x, y = _read_npz(p, x_var, y_var, labels)
    elif kind == "netcdf":
        x, y = _read_netcdf(p, x_var, y_var, labels)
    else:
        x, y = _open_zarr(p, x_var, y_var, labels)
    where = p.name
    check_features(x, where)
    if y is not None:
        check_labels(y, x.shape[0], where)
    elif labels:
        raise DataError(f"{where} has no labels {y_var!r}")
    if isinstance(x, np.ndarray):
        check_finite(x, where)
    return Arrays(x, y, p.stem)


def load_data(
    path: str | os.PathLike[str],
    *,
    x_var: str = "X",
    y_var: str = "y",
    test_fraction: float = 0.2,
    seed: int = 0,
    dtype: str | np.dtype = "float64",
    buffer_bytes: int = DEFAULT_BUFFER_BYTES,
) -> Dataset | StreamedDataset:
    """A training data set from ``path`` (see the module docstring), split into train and test."""
    dtype = _float_dtype(dtype)
    p = Path(path).expanduser().absolute()
    if data_kind(p) == "idx":
        return load_idx(p, dtype)
    test_fraction = _check_fraction(test_fraction)
    arrays = open_arrays(p, x_var, y_var)
    assert arrays.y is not None  # open_arrays raises without labels
    source = {
        "kind": data_kind(p),
        "path": str(p),
        "x_var": x_var,
        "y_var": y_var,
        "test_fraction": test_fraction,
        "seed": seed,
    }
    if not isinstance(arrays.x, np.ndarray):
        return StreamedDataset(
            arrays.x,
            arrays.y,
            test_fraction=test_fraction,
            seed=seed,
            dtype=dtype,
            name=arrays.name,
            source=source,
            buffer_bytes=buffer_bytes,
        )
    y = arrays.y.astype(np.int64)
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset(
        x_train=np.ascontiguousarray(np.asarray(arrays.x[train], dtype=dtype).T),
        y_train=y[train],
        x_test=np.ascontiguousarray(np.asarray(arrays.x[test], dtype=dtype).T),
        y_test=y[test],
        classes=int(y.max()) + 1,
        name=arrays.name,
        source=source,
    )


def reload_data(description: dict[str, Any], dtype: str | np.dtype) -> Dataset | StreamedDataset:
    """The data set a training run recorded (``describe()``), loaded again and checked to be the same."""
    kind = description.get("kind")
    if kind == "builtin":
        data: Dataset | StreamedDataset = load_dataset(
            description["dataset"], dtype=dtype, test_fraction=description["test_fraction"], seed=description["seed"]
        )
    elif kind in KINDS:
        data = load_data(
            description["path"],
            x_var=description.get("x_var", "X"),
            y_var=description.get("y_var", "y"),
            test_fraction=description.get("test_fraction", 0.2),
            seed=description.get("seed", 0),
            dtype=dtype,
        )
    else:
        raise DataError(
            "the run's data were arrays given in Python, not a file; resume it from Python "
            "(Trainer(client, data, config, store).restore(...))"
        )
    if data.fingerprint != description.get("fingerprint"):
        where = description.get("path") or description.get("dataset")
        raise DataError(
            f"the data at {where} are not the ones the run started with (their fingerprint differs); "
            "a resumed run must see the same data"
        )
    return data


# -- checks ---------------------------------------------------------------------------------------
def check_features(x: Any, where: str) -> None:
    shape, dtype = tuple(x.shape), np.dtype(x.dtype)
    if len(shape) != 2:
        raise DataError(f"{where}: X must be 2-D (samples, features), got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise DataError(f"{where}: X is empty (shape {shape}); give at least one sample with at least one feature")
    if dtype.kind not in "iuf":
        raise DataError(f"{where}: X must hold real numbers, got dtype {dtype}; convert it, e.g. X.astype('float64')")


def check_labels(y: np.ndarray, samples: int, where: str) -> None:
    if y.ndim != 1:
        raise DataError(f"{where}: y must be 1-D (one label per sample), got shape {y.shape}")
    if y.shape[0] != samples:
        raise DataError(f"{where}: X has {samples} samples but y has {y.shape[0]} labels; give one label per sample")
    if y.dtype.kind not in "iu":
        raise DataError(
            f"{where}: labels must be integers (class numbers 0, 1, ...), got dtype {y.dtype}; "
            "map classes to integers, e.g. np.unique(y, return_inverse=True)[1]"
        )
    if y.min() < 0:
        raise DataError(f"{where}: labels must be non-negative class numbers, found {int(y.min())}")
    if y.max() < 1:
        raise DataError(f"{where}: every label is {int(y.max())}; training needs at least 2 classes")


def check_finite(x: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise DataError(
            f"{where}: features hold NaN or Inf ({int(bad.sum())} samples, the first is sample "
            f"{int(np.argmax(bad))}); clean or drop those samples"
        )


# -- readers --------------------------------------------------------------------------------------
def _pick(names: list[str], var: str, where: str, needed: bool) -> bool:
    if var in names:
        return True
    if needed:
        raise DataError(
            f"{where} has no array {var!r} (it has: {', '.join(names) or 'none'}); name it with --x-var/--y-var"
        )
    return False


def _read_npz(path: Path, x_var: str, y_var: str, labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            _pick(names, x_var, path.name, True)
            y = npz[y_var] if _pick(names, y_var, path.name, labels) else None
            return npz[x_var], y
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read {path} as .npz ({exc}); write it with np.savez(path, X=X, y=y)") from None


def _read_netcdf(path: Path, x_var: str, y_var: str, labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    import xarray as xr

    try:
        with xr.open_dataset(path) as ds:
            names = [str(name) for name in (*ds.data_vars, *ds.coords)]  # NetCDF names are strings
            _pick(names, x_var, path.name, True)
            y = ds[y_var].values if _pick(names, y_var, path.name, labels) else None
            return ds[x_var].values, y
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as NetCDF ({str(exc).splitlines()[0]})") from None


def _open_zarr(path: Path, x_var: str, y_var: str, labels: bool) -> tuple[Any, np.ndarray | None]:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        names = sorted(name for name, _ in group.arrays())
    except Exception as exc:  # untrusted files: any failure to open is a data error
        raise DataError(f"cannot open {path} as a Zarr group ({type(exc).__name__}: {exc})") from None
    _pick(names, x_var, path.name, True)
    y = np.asarray(cast(zarr.Array, group[y_var])[:]) if _pick(names, y_var, path.name, labels) else None
    return group[x_var], y
