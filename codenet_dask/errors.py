"""Typed errors. Each names the problem and, where there is one, the fix."""

from __future__ import annotations


class CodeNetError(Exception):
    """Base class of every error this package raises on purpose."""


class ShapeMismatchError(CodeNetError, ValueError):
    """Operand shapes do not fit the product or the block grid."""


class UnsupportedDtypeError(CodeNetError, TypeError):
    """Only real floating point (float32, float64) can be coded and checked."""


class NonFiniteInputError(CodeNetError, ValueError):
    """User data holds NaN or Inf; that is bad input, not a soft error to correct."""


class CodeParameterError(CodeNetError, ValueError):
    """Code parameters the grid cannot hold (parity too large, grid finer than the matrix...)."""


class ModelParameterError(CodeNetError, ValueError):
    """Parameters of the completion-time model that describe no real run (negative cost, q > 1, k < 1...)."""


class IllConditionedCodeError(CodeParameterError):
    """A decoding submatrix would lose more digits than the safety limit allows."""


class UncorrectableError(CodeNetError, RuntimeError):
    """Errors were detected but exceed what the code can correct: recompute or roll back.

    Never raised for a clean result, and a result with such errors is never returned.
    """

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class GaveUpError(UncorrectableError):
    """Rollbacks beyond the limit: the fault rate is beyond what the code and checkpoints absorb.

    A run that raises it ends with status ``gave-up`` (its summary and ledger are still reported).
    """


class DivergedError(CodeNetError, ArithmeticError):
    """NaN/Inf reached the weights or the loss: training cannot go on from this state.

    Not a soft error to correct: an uncoded run hit by faults, or a learning rate too large. A run
    that raises it ends with status ``diverged``; its last finite checkpoint stays in the store.
    """


class FaultSpecError(CodeNetError, ValueError):
    """A ``--faults`` string (or a fault rule built in code) that does not describe a fault model.

    The message says what is wrong and lists the valid forms, so the CLI can print it as is.
    """


class DataError(CodeNetError, ValueError):
    """A dataset that cannot be loaded as asked (unknown name, missing or malformed files, bad split).

    The message names the problem and the fix in one line, so the CLI can print it as is.
    """


class StoreError(CodeNetError):
    """A coded-weight store cannot be used as asked (base of the store errors)."""


class NotResumableError(StoreError):
    """The store holds no checkpoint a run can continue from (the message says why)."""


class NotAStoreError(StoreError, FileNotFoundError):
    """The path holds no codenet_dask store (missing, a plain directory, or some other format)."""


class StoreFormatError(StoreError, ValueError):
    """The store's metadata is missing, malformed, tampered with, or inconsistent with its arrays."""


class StoreVersionError(StoreFormatError):
    """The store was written in a format version this code does not read."""


class StoreCorruptError(StoreError):
    """The store's own bookkeeping (refs, snapshots, manifests) cannot be read: nothing to check."""


class StoreReadOnlyError(StoreError, PermissionError):
    """Writing was asked of a store at a location this process cannot write."""


class StoreLockedError(StoreError):
    """Another process holds the store's writer lock; one writer at a time."""


class CheckpointNotFoundError(StoreError, KeyError):
    """No checkpoint with that id or step."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class BlocksLostError(StoreError):
    """Stored blocks are damaged beyond what the code can rebuild; ``lost`` names them exactly."""

    def __init__(self, message: str, lost: dict[str, list[tuple[int, int]]] | None = None) -> None:
        super().__init__(message)
        self.lost = lost or {}


class WorkerLostError(CodeNetError, RuntimeError):
    """A worker holding coded blocks left the cluster: its blocks must come back (restore or rebuild)."""


class StepTimeoutError(CodeNetError, RuntimeError):
    """A wait on the cluster passed its deadline (``codenet.deadline`` in dask config): the attempt
    failed; it is recomputed, and the run rolls back if that fails too. The message lists what was
    still pending."""


class ConfigValueError(CodeNetError, ValueError):
    """A ``codenet.*`` value in dask config (``codenet.yaml``, ``DASK_CODENET__...``) that cannot
    work; the CLI reports it as a usage error (exit 2)."""


class ClusterConfigError(CodeNetError, ValueError):
    """A cluster request that cannot work (unknown kind, bad walltime or memory, no ``sbatch``...).

    Raised before any batch job is submitted; the CLI reports it as a usage error (exit 2).
    """
