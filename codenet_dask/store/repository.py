"""The coded-weight store on disk: a Zarr v3 hierarchy kept in an icechunk repository.

Layout (see ``layout``): the root group is the model; each layer is one array holding every coded
block, one chunk per block, with a small bookkeeping array per layer under ``bookkeeping/``.
Chunks are stored raw with a CRC32C, and never inlined into manifests, so every block is its own
object on disk: damage to one object damages one block, and a block that fails to decode is a
known erasure.

Why icechunk: a checkpoint must either fully exist or not exist. icechunk writes chunk objects
under fresh names (never in place), then an immutable manifest and snapshot naming them, and only
then moves the branch reference to the new snapshot with a single atomic file replace. A process
killed at any point leaves the reference on the previous snapshot, whose objects are untouched, so
the previous checkpoint reads back bit-exactly; unreferenced objects of the interrupted write are
garbage, never data. Readers open a snapshot, so they never see half of a write either.

This is the only module of the package that touches disk. One writer at a time: a writable store
holds an exclusive ``flock`` on ``codenet.lock`` (released by the kernel if the process dies).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import icechunk
import numpy as np
import zarr
import zarr.api.asynchronous
from numpy.typing import DTypeLike
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
from zarr.core.sync import sync

from ..codes import ProductCode
from ..errors import (
    BlocksLostError,
    CheckpointNotFoundError,
    NonFiniteInputError,
    NotAStoreError,
    ShapeMismatchError,
    StoreCorruptError,
    StoreError,
    StoreFormatError,
    StoreLockedError,
    StoreReadOnlyError,
)
from ..kernels.blocks import CodedBlock
from ..kernels.grid import BlockKey, GridReport, check_grid
from . import bookkeeping, layout
from .durability import DiskSync
from .layout import (
    ATTR_KEY,
    BOOKKEEPING_GROUP,
    FORMAT_VERSION,
    JOURNAL_CHUNK,
    JOURNAL_PATH,
    READABLE_VERSIONS,
    TRAINING_GROUP,
    LayerSpec,
)

BRANCH = "main"
LOCK_NAME = "codenet.lock"
#: Bytes the CRC32C codec appends to every chunk object.
CRC_BYTES = 4
#: Chunk writes in flight at once.
WRITE_CONCURRENCY = 16
#: Top-level entries of an icechunk repository on local disk.
_REPO_PARTS = ("chunks", "manifests", "snapshots", "transactions", "refs", "config.yaml")

if "ICECHUNK_LOG" not in os.environ:
    # The local-filesystem backend warns that concurrent commits are unsafe on every open; this
    # store admits one writer at a time (the lock), so the warning is noise on every command.
    icechunk.set_logs_filter("icechunk::storage::object_store=error,warn")


@dataclass(frozen=True)
class Checkpoint:
    """One committed, immutable state of the model."""

    id: str
    step: int
    message: str
    written_at: str
    parent: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "step": self.step,
            "message": self.message,
            "written_at": self.written_at,
            "parent": self.parent,
        }


@dataclass(frozen=True)
class WriteStats:
    """What one write put on disk: chunk objects and payload bytes (incl. CRC, excl. metadata)."""

    blocks: int = 0
    values_written: int = 0
    records_written: int = 0
    bytes_written: int = 0

    def __add__(self, other: WriteStats) -> WriteStats:
        return WriteStats(
            self.blocks + other.blocks,
            self.values_written + other.values_written,
            self.records_written + other.records_written,
            self.bytes_written + other.bytes_written,
        )


@dataclass(frozen=True)
class ExpiryReport:
    """What one expiry and garbage collection removed (icechunk's own counts)."""

    kept: int
    snapshots_expired: int = 0
    snapshots_deleted: int = 0
    chunks_deleted: int = 0
    manifests_deleted: int = 0
    bytes_deleted: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LayerRead:
    """A layer as read from disk: each block, or None with the reason it could not be used."""

    spec: LayerSpec
    blocks: dict[BlockKey, CodedBlock | None]
    problems: dict[BlockKey, str] = field(default_factory=dict)


# -- small helpers -------------------------------------------------------------------------------
def _config() -> icechunk.RepositoryConfig:
    config = icechunk.RepositoryConfig.default()
    config.inline_chunk_threshold_bytes = 0  # every chunk its own object: one block per failure domain
    return config


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0].strip() if text else ''}"[:300]


def _is_read_only_error(exc: OSError) -> bool:
    return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


class _WriterLock:
    """Exclusive advisory lock on the store; also proves the location is writable."""

    def __init__(self, root: Path) -> None:
        try:
            self._fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if _is_read_only_error(exc):
                raise StoreReadOnlyError(
                    f"{root} is not writable ({exc.strerror}); open it with mode='r' to read or scrub without repair"
                ) from None
            raise
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise StoreLockedError(f"{root} is open for writing by another process; one writer at a time") from None

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


def _open_repository(root: Path) -> icechunk.Repository:
    """The icechunk repository at ``root`` or a typed error saying what is there instead."""
    if not root.exists():
        raise NotAStoreError(f"no store at {root}: the path does not exist")
    if not root.is_dir():
        raise NotAStoreError(f"{root} is a file, not a store directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise StoreReadOnlyError(f"{root} cannot be read by this process")
    storage = icechunk.local_filesystem_storage(str(root))
    try:
        exists = icechunk.Repository.exists(storage)
    except icechunk.IcechunkError as exc:
        raise StoreCorruptError(f"{root}: repository metadata unreadable ({_brief(exc)})") from None
    if not exists:
        if (root / "config.yaml").exists() or (root / "snapshots").is_dir():
            raise StoreCorruptError(f"{root}: icechunk repository without a readable branch reference (refs/ damaged)")
        if (root / "zarr.json").exists():
            raise NotAStoreError(
                f"{root} is a plain Zarr store, not a codenet_dask store (which keeps its Zarr "
                f"hierarchy in an icechunk repository for atomic checkpoints)"
            )
        raise NotAStoreError(f"{root} is not a codenet_dask store (no icechunk repository there)")
    try:
        return icechunk.Repository.open(storage, config=_config())
    except icechunk.IcechunkError as exc:
        raise StoreCorruptError(f"{root}: repository cannot be opened ({_brief(exc)})") from None


# -- the store -----------------------------------------------------------------------------------
class CodedStore:
    """A model's coded weights on disk, with checkpoints; open with :meth:`open` or :meth:`create`.

    Writes go into an uncommitted session and become part of the model (visible to readers,
    surviving a crash) only at :meth:`checkpoint`. Reads take a checkpoint (snapshot id or
    training step; default: latest).
    """

    def __init__(self, root: Path, repo: icechunk.Repository, lock: _WriterLock | None, durable: bool = True) -> None:
        self.root = root
        self._repo = repo
        self._lock = lock
        #: Fsyncs each commit's objects before its reference moves (see ``durability``); None: crash-safe only.
        self._sync = DiskSync(root) if lock and durable else None
        try:
            repo.lookup_snapshot(repo.lookup_branch(BRANCH))  # the latest snapshot must decode
            self._session: icechunk.Session | None = repo.writable_session(BRANCH) if lock else None
        except icechunk.IcechunkError as exc:
            raise StoreCorruptError(f"{root}: latest snapshot unreadable ({_brief(exc)})") from None
        self._dirty: set[str] = set()
        self._new_layers: dict[str, set[BlockKey]] = {}
        self.model, self.step, self._specs = self._load_metadata(self._head_store())

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: str = "r", *, durable: bool = True) -> CodedStore:
        """Open and validate a store; ``mode`` is ``"r"`` (read-only) or ``"r+"`` (read-write).

        ``durable`` (writers): every checkpoint is fsynced before it becomes the latest, so it
        survives a power cut, not only a crashed process (``durability``; costs some throughput).
        """
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
        root = Path(path).absolute()
        repo = _open_repository(root)
        lock = _WriterLock(root) if mode == "r+" else None
        try:
            return cls(root, repo, lock, durable)
        except BaseException:
            if lock:
                lock.release()
            raise

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], *, model: str = "model", overwrite: bool = False, durable: bool = True
    ) -> CodedStore:
        """A new, empty store at ``path``, open for writing.

        The store is built in a temporary sibling directory and renamed into place, so a crash
        during creation never leaves a half-made store at ``path``. ``overwrite`` replaces an
        existing codenet_dask store (or an empty directory), never anything else.
        """
        root = Path(path).absolute()
        if root.exists():
            if not root.is_dir():
                raise StoreError(f"{root} exists and is a file")
            if any(root.iterdir()):
                if not overwrite:
                    raise StoreError(f"{root} already exists; pass overwrite=True to replace the store there")
                cls.open(root, "r").close()  # refuses anything that is not our store
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.creating-", dir=root.parent))
        except OSError as exc:
            if _is_read_only_error(exc):
                raise StoreReadOnlyError(f"cannot create a store under {root.parent}: {exc.strerror}") from None
            raise
        try:
            repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(staging)), config=_config())
            session = repo.writable_session(BRANCH)
            group = zarr.create_group(session.store, attributes={ATTR_KEY: layout.model_attrs(model, -1, [])})
            group.create_group(BOOKKEEPING_GROUP)
            session.commit("create codenet_dask store", metadata={"codenet_dask": FORMAT_VERSION, "step": -1})
            if durable:
                DiskSync(staging).sync_tree()
            if root.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{root.name}.replaced-", dir=root.parent))
                os.rename(root, trash / "old")
                os.rename(staging, root)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.rename(staging, root)
            if durable:
                DiskSync(root).sync_tree()  # the rename itself (the parent folder's entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls.open(root, "r+", durable=durable)

    def close(self) -> None:
        """Release the writer lock; uncommitted writes are dropped (they were never a checkpoint)."""
        if self._lock:
            self._lock.release()
            self._lock = None
        self._session = None

    def __enter__(self) -> CodedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def writable(self) -> bool:
        return self._session is not None

    # -- metadata ------------------------------------------------------------------------------
    def _load_metadata(self, store: Any) -> tuple[str, int, dict[str, LayerSpec]]:
        try:
            root = zarr.open_group(store, mode="r")
            attrs = dict(root.attrs)
        except icechunk.IcechunkError as exc:
            raise StoreCorruptError(f"{self.root}: snapshot unreadable ({_brief(exc)})") from None
        except (FileNotFoundError, KeyError, ValueError, TypeError) as exc:
            raise StoreFormatError(f"{self.root}: no readable root group ({_brief(exc)})") from None
        model, step, names = layout.parse_model_attrs(attrs)
        specs = {}
        for name in names:
            specs[name] = self._load_layer_spec(root, name)
        return model, step, specs

    def _load_layer_spec(self, root: zarr.Group, name: str) -> LayerSpec:
        try:
            weights = root[name]
            book = root[f"{BOOKKEEPING_GROUP}/{name}"]
        except KeyError:
            raise StoreFormatError(f"layer {name!r} is listed in the store root but its arrays are missing") from None
        if not isinstance(weights, zarr.Array) or not isinstance(book, zarr.Array):
            raise StoreFormatError(f"layer {name!r}: expected arrays, found groups")
        spec, _ = layout.parse_layer_attrs(name, dict(weights.attrs))
        layout.check_weights_array(
            spec,
            weights.shape,
            weights.chunks,
            weights.dtype,
            weights.metadata.dimension_names,  # type: ignore[union-attr]  # icechunk stores are zarr v3
            weights.fill_value,
        )
        layout.check_bookkeeping_array(spec, dict(book.attrs), book.shape, book.chunks, book.dtype)
        return spec

    def layers(self) -> dict[str, LayerSpec]:
        """The layers of the model as of the latest checkpoint plus this handle's additions."""
        return dict(self._specs)

    def layer(self, name: str) -> LayerSpec:
        if name not in self._specs:
            raise StoreError(f"no layer {name!r} in the store; layers: {sorted(self._specs) or 'none'}")
        return self._specs[name]

    def layer_step(self, name: str, checkpoint: str | int | None = None) -> int:
        """Training step at which the layer was last written (as of ``checkpoint``)."""
        root = zarr.open_group(self._read_store(checkpoint), mode="r")
        return layout.parse_layer_attrs(name, dict(root[name].attrs))[1]

    # -- sessions ------------------------------------------------------------------------------
    def _head_store(self) -> Any:
        return self._session.store if self._session else self._repo.readonly_session(branch=BRANCH).store

    def _require_writable(self) -> icechunk.Session:
        if self._session is None:
            raise StoreReadOnlyError(f"{self.root} is open read-only; open it with mode='r+' to write")
        return self._session

    def has_uncommitted_changes(self) -> bool:
        """Writes since the last checkpoint that a crash would drop."""
        return bool(self._session and self._session.has_uncommitted_changes)

    def layer_names(self, checkpoint: str | int | None = None) -> list[str]:
        """Layers of a checkpoint (default: latest), validated."""
        return list(self._load_metadata(self._read_store(checkpoint))[2])

    def resolve(self, checkpoint: str | int | None = None) -> str:
        """Snapshot id of a checkpoint given by id, by training step (newest with it), or latest."""
        return self._resolve(checkpoint)

    def _resolve(self, checkpoint: str | int | None) -> str:
        if checkpoint is None:
            try:
                return self._repo.lookup_branch(BRANCH)
            except icechunk.IcechunkError as exc:
                raise StoreCorruptError(f"{self.root}: branch {BRANCH!r} unreadable ({_brief(exc)})") from None
        if isinstance(checkpoint, int) and not isinstance(checkpoint, bool):
            for info in self.checkpoints():
                if info.step == checkpoint:
                    return info.id
            raise CheckpointNotFoundError(f"no checkpoint at step {checkpoint} in {self.root}")
        if isinstance(checkpoint, str):
            if checkpoint in {c.id for c in self.checkpoints()}:
                return checkpoint
            raise CheckpointNotFoundError(f"no checkpoint {checkpoint!r} in the history of {self.root}")
        raise TypeError(f"checkpoint must be a snapshot id, a step or None, got {checkpoint!r}")

    def _read_store(self, checkpoint: str | int | None) -> Any:
        sid = self._resolve(checkpoint)
        try:
            return self._repo.readonly_session(snapshot_id=sid).store
        except icechunk.IcechunkError as exc:
            raise StoreCorruptError(f"{self.root}: checkpoint {sid} unreadable ({_brief(exc)})") from None

    def zarr_store(self, checkpoint: str | int | None = None) -> Any:
        """A read-only Zarr store of a checkpoint, for ``zarr.open_group`` or ``xarray.open_zarr``."""
        return self._read_store(checkpoint)

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoints(self) -> list[Checkpoint]:
        """Committed checkpoints on the main branch, newest first."""
        out = []
        try:
            for info in self._repo.ancestry(branch=BRANCH):
                meta = info.metadata or {}
                step = meta.get("step")
                if meta.get("codenet_dask") not in READABLE_VERSIONS or not isinstance(step, int) or step < 0:
                    continue
                out.append(Checkpoint(info.id, step, info.message, info.written_at.isoformat(), info.parent_id))
        except icechunk.IcechunkError as exc:
            raise StoreCorruptError(f"{self.root}: history unreadable ({_brief(exc)})") from None
        return out

    def checkpoint(self, step: int, message: str = "") -> Checkpoint | None:
        """Make everything written since the last checkpoint one atomic checkpoint at ``step``.

        Returns the new checkpoint, or the latest one if nothing changed and the step is the same
        (then nothing is written). A new step with unchanged blocks writes only metadata.
        """
        session = self._require_writable()
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        incomplete = {
            n: len(keys)
            for n, keys in self._new_layers.items()
            if len(keys) < self._specs[n].grid[0] * self._specs[n].grid[1]
        }
        if incomplete:
            raise StoreError(
                f"new layers {sorted(incomplete)} were added but not fully written; write every block first"
            )
        group = zarr.open_group(session.store, mode="r+")
        if step != self.step or self._dirty:
            group.update_attributes({ATTR_KEY: layout.model_attrs(self.model, step, list(self._specs))})
            for name in sorted(self._dirty):
                group[name].update_attributes({ATTR_KEY: layout.layer_attrs(self._specs[name], step)})
        if not session.has_uncommitted_changes:
            latest = self.checkpoints()
            return latest[0] if latest else None
        metadata = {"codenet_dask": FORMAT_VERSION, "step": step, "layers_written": sorted(self._dirty)}
        sid = self._commit(session, message or f"checkpoint at step {step}", metadata)
        self._session = self._repo.writable_session(BRANCH)
        self.step = step
        self._dirty.clear()
        self._new_layers.clear()
        return self._info(sid)

    def _commit(self, session: icechunk.Session, message: str, metadata: dict[str, Any]) -> str:
        """Commit the session; if durable, with its objects fsynced before the reference moves."""
        moved = f"{self.root} was changed by another writer since this handle opened it"
        if self._sync is None:
            try:
                return session.commit(message, metadata=metadata)
            except icechunk.ConflictError:
                raise StoreLockedError(moved) from None
        base = session.snapshot_id
        sid = session.flush(message, metadata=metadata)
        self._sync.sync()
        try:
            self._repo.reset_branch(BRANCH, sid, from_snapshot_id=base)
        except icechunk.IcechunkError:
            if self._repo.lookup_branch(BRANCH) != base:
                raise StoreLockedError(moved) from None
            raise
        self._sync.sync_refs()
        return sid

    def expire(self, keep: int) -> ExpiryReport:
        """Keep only the newest ``keep`` checkpoints: older snapshots are expired and every object
        only they used is deleted, with icechunk's own ``expire_snapshots`` and ``garbage_collect``.

        The latest checkpoint (the one a rollback or resume restores) is always kept. Garbage
        collection would also delete uncommitted writes, so checkpoint or discard them first.
        """
        self._require_writable()
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1 (the latest checkpoint stays), got {keep!r}")
        if self.has_uncommitted_changes():
            raise StoreError("the store has uncommitted writes; checkpoint or discard them before expiring checkpoints")
        history = self.checkpoints()
        if len(history) <= keep:
            return ExpiryReport(kept=len(history))
        try:
            expired = self._repo.expire_snapshots(datetime.fromisoformat(history[keep - 1].written_at))
            if self._sync is not None:
                self._sync.sync()  # expiry rewrote the oldest kept snapshot (its new parent)
            collected = self._repo.garbage_collect(datetime.now(UTC))
        except icechunk.IcechunkError as exc:
            raise StoreCorruptError(f"{self.root}: expiring old checkpoints failed ({_brief(exc)})") from None
        self._session = self._repo.writable_session(BRANCH)
        return ExpiryReport(
            kept=keep,
            snapshots_expired=len(expired),
            snapshots_deleted=collected.snapshots_deleted,
            chunks_deleted=collected.chunks_deleted,
            manifests_deleted=collected.manifests_deleted,
            bytes_deleted=collected.bytes_deleted,
        )

    # -- the training run's record --------------------------------------------------------------
    def write_run(self, record: Mapping[str, Any], journal: bytes) -> None:
        """Store a training run's ``record`` (plain JSON data, readable as attributes) and its
        ``journal`` (opaque bytes, e.g. the fault ledger) with the next checkpoint."""
        session = self._require_writable()
        group = zarr.open_group(session.store, mode="r+")
        if TRAINING_GROUP not in group:
            group.create_group(TRAINING_GROUP).create_array(
                "journal",
                shape=(0,),
                chunks=(JOURNAL_CHUNK,),
                dtype=np.uint8,
                fill_value=0,
                serializer=BytesCodec(),
                compressors=[ZstdCodec(level=3), Crc32cCodec()],
                dimension_names=("journal_byte",),
                config={"write_empty_chunks": True},
            )
        array = cast(zarr.Array, group[JOURNAL_PATH])
        array.resize((len(journal),))
        if journal:
            array[:] = np.frombuffer(journal, dtype=np.uint8)
        digest = hashlib.sha256(journal).hexdigest()
        group[TRAINING_GROUP].update_attributes({ATTR_KEY: layout.training_attrs(record, len(journal), digest)})

    def read_run(
        self, checkpoint: str | int | None = None, *, journal: bool = True
    ) -> tuple[dict[str, Any], bytes] | None:
        """The training run's record and journal as of a checkpoint (``journal=False``: the record
        only, with empty bytes); None if the store has none (written by the Python API, or by a
        version before format 2)."""
        root = zarr.open_group(self._read_store(checkpoint), mode="r")
        if TRAINING_GROUP not in root:
            return None
        record, size, digest = layout.parse_training_attrs(dict(root[TRAINING_GROUP].attrs))
        if not journal:
            return record, b""
        try:
            data = np.asarray(cast(zarr.Array, root[JOURNAL_PATH])[:], dtype=np.uint8).tobytes()
        except Exception as exc:  # untrusted bytes: any failure to fetch or decode
            raise StoreCorruptError(f"{self.root}: the training journal is unreadable ({_brief(exc)})") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise StoreCorruptError(f"{self.root}: the training journal does not match its digest (damaged)")
        return record, data

    def _info(self, sid: str) -> Checkpoint:
        info = self._repo.lookup_snapshot(sid)
        return Checkpoint(
            info.id,
            int((info.metadata or {}).get("step", -1)),
            info.message,
            info.written_at.isoformat(),
            info.parent_id,
        )

    def discard(self) -> None:
        """Drop every write since the last checkpoint."""
        session = self._require_writable()
        session.discard_changes()
        self._session = self._repo.writable_session(BRANCH)
        self.model, self.step, self._specs = self._load_metadata(self._session.store)
        self._dirty.clear()
        self._new_layers.clear()

    def rollback(self, checkpoint: str | int) -> dict[str, dict[BlockKey, CodedBlock]]:
        """Make ``checkpoint`` the latest again (later checkpoints leave the history) and return
        its verified model. Uncommitted writes are dropped. Nothing moves if the checkpoint is lost."""
        self._require_writable()
        sid = self._resolve(checkpoint)
        model = self.restore(sid)
        self._session.discard_changes()  # type: ignore[union-attr]
        self._repo.reset_branch(BRANCH, sid)
        if self._sync is not None:
            self._sync.sync_refs()
        self._session = self._repo.writable_session(BRANCH)
        self.model, self.step, self._specs = self._load_metadata(self._session.store)
        self._dirty.clear()
        self._new_layers.clear()
        return model

    # -- writing -------------------------------------------------------------------------------
    def add_layer(
        self,
        name: str,
        code: ProductCode,
        block_shape: tuple[int, int],
        dtype: DTypeLike = np.float64,
        layer_shape: tuple[int, int] | None = None,
    ) -> LayerSpec:
        """Define a layer (its arrays exist from now on; write all its blocks before checkpointing)."""
        session = self._require_writable()
        if name in self._specs:
            raise StoreError(f"layer {name!r} already exists")
        spec = layout.make_spec(name, code, block_shape, dtype, layer_shape)
        group = zarr.open_group(session.store, mode="r+")
        nr, nc = spec.grid
        group.create_array(
            name,
            shape=spec.array_shape,
            chunks=spec.block_shape,
            dtype=spec.dtype,
            fill_value=np.nan,
            serializer=BytesCodec(),
            compressors=[Crc32cCodec()],
            dimension_names=spec.dims,
            attributes={ATTR_KEY: layout.layer_attrs(spec, self.step)},
            config={"write_empty_chunks": True},
        )
        group.create_array(
            spec.bookkeeping_path,
            shape=(nr, nc, spec.record_length),
            chunks=(1, 1, spec.record_length),
            dtype=np.float64,
            fill_value=np.nan,
            serializer=BytesCodec(),
            compressors=[Crc32cCodec()],
            dimension_names=spec.bookkeeping_dims,
            attributes={ATTR_KEY: layout.bookkeeping_attrs(spec)},
            config={"write_empty_chunks": True},
        )
        self._specs[name] = spec
        self._new_layers[name] = set()
        self._dirty.add(name)
        group.update_attributes({ATTR_KEY: layout.model_attrs(self.model, self.step, list(self._specs))})
        return spec

    def write_layer(self, name: str, blocks: Mapping[BlockKey, CodedBlock]) -> WriteStats:
        """Store a layer's full coded grid, writing only the blocks whose content changed.

        "Changed" is decided against what the store holds (each block's stored digest and
        bookkeeping), not against what the caller last wrote, so a stale idea of the previous
        grid (after a rollback or a crash) can never leave a block unwritten.
        """
        spec = self.layer(name)
        nr, nc = spec.grid
        missing = [(a, b) for a in range(nr) for b in range(nc) if (a, b) not in blocks]
        if missing:
            raise ShapeMismatchError(f"layer {name!r}: grid lacks blocks {missing[:4]}; use write_blocks for a subset")
        return self.write_blocks(name, blocks)

    def write_blocks(self, name: str, blocks: Mapping[BlockKey, CodedBlock], *, force: bool = False) -> WriteStats:
        """Store some blocks of a layer; unchanged ones are skipped unless ``force``."""
        session = self._require_writable()
        spec = self.layer(name)
        self._validate_blocks(spec, blocks)
        book = cast(zarr.Array, zarr.open_group(session.store, mode="r")[spec.bookkeeping_path])
        stored = self._stored_records(spec, book, list(blocks))
        writes: list[tuple[str, Any, np.ndarray]] = []
        values_written = records_written = nbytes = 0
        for key in sorted(blocks):
            block, old = blocks[key], stored.get(key)
            record = bookkeeping.pack(block)
            if force or old is None or bookkeeping.record_digest(old) != bookkeeping.record_digest(record):
                writes.append((spec.weights_path, spec.block_slices(*key), block.values))
                values_written += 1
                nbytes += spec.block_bytes + CRC_BYTES
            if force or old is None or not np.array_equal(old, record):
                writes.append((spec.bookkeeping_path, (key[0], key[1], slice(None)), record))
                records_written += 1
                nbytes += record.nbytes + CRC_BYTES
        if writes:
            sync(_set_many(session.store, writes))
        if name in self._new_layers:
            self._new_layers[name].update(blocks)
        if values_written or records_written:
            self._dirty.add(name)
        return WriteStats(len(blocks), values_written, records_written, nbytes)

    def write_model(self, model: Mapping[str, Mapping[BlockKey, CodedBlock]]) -> WriteStats:
        """:meth:`write_layer` for every layer of ``model``."""
        total = WriteStats()
        for name in model:
            total = total + self.write_layer(name, model[name])
        return total

    def _validate_blocks(self, spec: LayerSpec, blocks: Mapping[BlockKey, CodedBlock]) -> None:
        nr, nc = spec.grid
        for key, block in blocks.items():
            if not (isinstance(key, tuple) and len(key) == 2 and 0 <= key[0] < nr and 0 <= key[1] < nc):
                raise ShapeMismatchError(f"layer {spec.name!r}: block key {key!r} outside the {nr}x{nc} grid")
            if not isinstance(block, CodedBlock):
                raise TypeError(f"layer {spec.name!r}: block {key} is a {type(block).__name__}, not a CodedBlock")
            if block.shape != spec.block_shape or block.dtype != spec.dtype:
                raise ShapeMismatchError(
                    f"layer {spec.name!r}: block {key} is {block.shape} {block.dtype}, the layer stores "
                    f"{spec.block_shape} {spec.dtype}"
                )
            if not np.isfinite(block.values).all() or not np.isfinite(block.err):
                raise NonFiniteInputError(
                    f"layer {spec.name!r}: block {key} holds NaN/Inf; a store must never hold a known-bad block"
                )

    def _stored_records(
        self, spec: LayerSpec, book: zarr.Array, keys: list[BlockKey]
    ) -> dict[BlockKey, np.ndarray | None]:
        """Stored bookkeeping of ``keys`` in the writable session; None where absent or unreadable."""
        try:
            whole = np.asarray(book[:])
            return {k: (None if np.isnan(whole[k]).all() else whole[k]) for k in keys}
        except Exception:  # one damaged record: fall back to reading them one by one
            out: dict[BlockKey, np.ndarray | None] = {}
            for k in keys:
                try:
                    rec = np.asarray(book[k[0], k[1], :])
                    out[k] = None if np.isnan(rec).all() else rec
                except Exception:
                    out[k] = None
            return out

    # -- reading -------------------------------------------------------------------------------
    def read_layer(self, name: str, checkpoint: str | int | None = None) -> LayerRead:
        """Every block of a layer as stored, unverified; damaged blocks are None with a reason.

        A chunk that is missing, fails its CRC, cannot be fetched, or does not match its digest,
        and a block whose bookkeeping is damaged, are all erasures.
        """
        root = zarr.open_group(self._read_store(checkpoint), mode="r")
        _, _, names = layout.parse_model_attrs(dict(root.attrs))
        if name not in names:
            raise StoreError(f"no layer {name!r} in that checkpoint of {self.root}; layers: {names or 'none'}")
        spec = self._load_layer_spec(root, name)
        weights, book = cast(zarr.Array, root[spec.weights_path]), cast(zarr.Array, root[spec.bookkeeping_path])
        values_of = self._read_chunks(weights, spec.grid, lambda a, b: spec.block_slices(a, b))
        records_of = self._read_chunks(book, spec.grid, lambda a, b: (a, b, slice(None)))
        blocks: dict[BlockKey, CodedBlock | None] = {}
        problems: dict[BlockKey, str] = {}
        for key in sorted(values_of):
            values, record = values_of[key], records_of[key]
            reason = None
            if isinstance(values, str):
                reason = f"values chunk unreadable ({values})"
            elif np.isnan(values).all():
                reason = "values chunk missing"
            elif not np.isfinite(values).all():
                reason = "values hold NaN/Inf"
            elif isinstance(record, str):
                reason = f"bookkeeping chunk unreadable ({record})"
            elif np.isnan(record).all():
                reason = "bookkeeping chunk missing"
            if reason is None:
                try:
                    blocks[key] = bookkeeping.unpack(values, record)  # type: ignore[arg-type]
                    continue
                except ValueError as exc:
                    reason = str(exc)
            blocks[key] = None
            problems[key] = reason
        return LayerRead(spec, blocks, problems)

    @staticmethod
    def _read_chunks(array: zarr.Array, grid: tuple[int, int], selection: Any) -> dict[BlockKey, np.ndarray | str]:
        """Each block's chunk, or a short reason string where it cannot be read.

        One bulk read when every chunk decodes; chunk by chunk otherwise, so one damaged object
        costs one block.
        """
        nr, nc = grid
        try:
            whole = np.asarray(array[:])
            return {(a, b): np.ascontiguousarray(whole[selection(a, b)]) for a in range(nr) for b in range(nc)}
        except Exception:  # untrusted bytes: any failure to fetch or decode is an erasure
            pass
        out: dict[BlockKey, np.ndarray | str] = {}
        for a in range(nr):
            for b in range(nc):
                try:
                    out[(a, b)] = np.ascontiguousarray(array[selection(a, b)])
                except Exception as exc:
                    out[(a, b)] = _brief(exc)
        return out

    def load_layer(
        self, name: str, checkpoint: str | int | None = None, *, seed: int = 0
    ) -> tuple[dict[BlockKey, CodedBlock], GridReport]:
        """A layer's blocks, verified against the code and rebuilt in memory where damaged.

        Raises :class:`BlocksLostError` naming the blocks if any cannot be rebuilt or verified.
        """
        read = self.read_layer(name, checkpoint)
        result = check_grid(read.spec.code, read.blocks, seed=seed)
        # Without parity (uncoded or replicated layers) the code can vouch for nothing: the per-block
        # digests and CRCs checked on read are all there is, so only missing blocks are lost.
        uncoded = read.spec.code.pr == read.spec.code.pc == 0
        lost = sorted(set(result.report.unrepairable) | (set() if uncoded else set(result.report.unverified)))
        if lost:
            raise BlocksLostError(
                f"layer {name!r}: blocks {lost} are damaged beyond what the code can rebuild", {name: lost}
            )
        return {k: b for k, b in result.blocks.items() if b is not None}, result.report

    def restore(self, checkpoint: str | int | None = None) -> dict[str, dict[BlockKey, CodedBlock]]:
        """The whole model at a checkpoint (default latest), verified; bit-exact where undamaged."""
        sid = self._resolve(checkpoint)
        root = zarr.open_group(self._read_store(sid), mode="r")
        _, _, names = layout.parse_model_attrs(dict(root.attrs))
        model, lost = {}, {}
        for name in names:
            try:
                model[name], _ = self.load_layer(name, sid)
            except BlocksLostError as exc:
                lost.update(exc.lost)
        if lost:
            raise BlocksLostError(f"checkpoint {sid}: blocks lost beyond repair: {lost}", lost)
        return model

    # -- sizes ---------------------------------------------------------------------------------
    def disk_usage(self) -> dict[str, dict[str, int]]:
        """Objects and bytes on disk per part of the repository (chunks, manifests, snapshots...)."""
        usage: dict[str, dict[str, int]] = {}
        for part in _REPO_PARTS:
            files = list(_files(self.root / part))
            usage[part] = {"objects": len(files), "bytes": sum(size for _, size in files)}
        return usage


async def _set_many(store: Any, writes: list[tuple[str, Any, np.ndarray]]) -> None:
    """Write many chunks concurrently (each write covers exactly one chunk of its array).

    One round trip into Zarr's event loop instead of one per chunk: ~1.6x faster than a loop of
    ``array[...] = ...`` here; the semaphore keeps memory and open files bounded.
    """
    arrays = {}
    for path in {path for path, _, _ in writes}:
        array = await zarr.api.asynchronous.open_array(store=store, path=path, mode="r+")
        arrays[path] = array.with_config({"write_empty_chunks": True})
    gate = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def one(path: str, selection: Any, values: np.ndarray) -> None:
        async with gate:
            await arrays[path].setitem(selection, values)

    await asyncio.gather(*(one(*w) for w in writes))


def _files(path: Path) -> Iterator[tuple[Path, int]]:
    if path.is_file():
        yield path, path.stat().st_size
        return
    for dirpath, _, names in os.walk(path):
        for name in names:
            full = Path(dirpath) / name
            try:
                yield full, full.stat().st_size
            except FileNotFoundError:
                continue
