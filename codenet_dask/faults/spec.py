"""The ``--faults`` string: which soft errors hit which tasks, how often.

Grammar (whitespace around ``,`` ``:`` ``=`` ``+`` is ignored; model and option names are
case-insensitive)::

    SPEC   := "none" | TERM ("," TERM)*
    TERM   := MODEL ":" RATE (":" OPTION)*
    OPTION := NAME "=" VALUE

``RATE`` is the probability in [0, 1] that one task (one site, one attempt) gets this fault.
At most one fault hits a task: the terms that apply to a site share one uniform draw, in spec
order, so their rates at any (step, worker) must sum to at most 1, and each term's rate is exact.

Models and their options (defaults in brackets):

- ``bitflip`` — ``bits=K`` [1] distinct bits of one entry; ``field=any|mantissa|exponent|sign``
  [any]; or ``bit=N`` to pin the position (0 = lowest mantissa bit, 31/63 = sign).
- ``noise`` — ``scale=X`` [1e-3], error size relative to the block's largest magnitude;
  ``where=entry|block`` [entry].
- ``nan``, ``zero`` — no options. ``inf`` — ``sign=+|-`` [random].
- ``stale`` — ``scale=X`` [1e-2], size of the missed low-rank update (see ``models.Stale``).

Options every model takes:

- ``steps=STEP+STEP...`` — only these step kinds (encode, activation, block-forward, block-backward,
  project, decode, verify, update, scrub) [all].
- ``workers=NAME+NAME...`` — only tasks running on these workers (Dask worker names; LocalCluster
  names them 0, 1, ...) are hit: "these workers are unreliable, the rest are fine".
- ``boost=X`` (with ``workers``) — instead, every worker is hit at RATE and the listed ones at
  ``min(1, RATE*X)``.

A model may appear twice only for disjoint steps or workers (per-step rates), never twice for the
same site. Examples::

    none
    bitflip:1e-3
    noise:1e-2:scale=1e-3,nan:1e-4
    bitflip:1e-3:bits=2
    bitflip:1e-3:field=exponent:steps=block-forward+update
    bitflip:1e-4:steps=block-forward,bitflip:1e-2:steps=update
    zero:0.05:workers=2
    bitflip:1e-4:workers=1+3:boost=100

``str(parse_fault_spec(text))`` is the canonical form of ``text`` (shortest exact numbers, default
options dropped except ``scale``, steps in pipeline order, workers sorted), and
``parse_fault_spec(str(spec)) == spec``. Errors are :class:`~codenet_dask.errors.FaultSpecError`
(a ValueError) whose message gives the reason and then the valid forms.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import FaultSpecError
from .hook import STEPS
from .models import FIELDS, MODELS, BitFlip, ErrorModel, Inf, NaN, Noise, Stale, Zero, format_number

FORMS = (
    "valid forms: 'none', or MODEL:RATE[:OPTION=VALUE...] terms joined by commas, e.g. "
    "'bitflip:1e-3', 'noise:1e-2:scale=1e-3,nan:1e-4', 'bitflip:1e-3:bits=2:steps=block-forward+update', "
    "'zero:0.01:workers=2'; MODEL is one of " + ", ".join(MODELS) + "; RATE is a per-task probability in [0, 1]"
)

MODEL_OPTIONS: dict[str, str] = {
    "bitflip": "bits=K (1-64), field=any|mantissa|exponent|sign, bit=N (0-63)",
    "noise": "scale=X (> 0), where=entry|block",
    "nan": "no model options",
    "inf": "sign=+|-",
    "zero": "no model options",
    "stale": "scale=X (> 0)",
}
COMMON_OPTIONS = "steps=STEP+STEP..., workers=NAME+NAME..., boost=X"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _error(reason: str) -> FaultSpecError:
    return FaultSpecError(f"{reason}; {FORMS}")


def _real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@dataclass(frozen=True)
class FaultRule:
    """One term: a model, its per-task rate, and where it may strike."""

    model: ErrorModel
    rate: float
    steps: frozenset[str] | None = None
    workers: frozenset[str] | None = None
    boost: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, tuple(MODELS.values())):
            raise _error(f"{self.model!r} is not a fault model")
        if not _real(self.rate) or not 0 <= self.rate <= 1:
            raise _error(f"rate of {self.model.name} must be a probability in [0, 1], got {self.rate!r}")
        object.__setattr__(self, "rate", float(self.rate))
        if self.steps is not None:
            unknown = sorted(set(self.steps) - set(STEPS))
            if unknown or not self.steps:
                given = ", ".join(unknown) or "(none given)"
                raise _error(f"unknown step {given}; steps are {'+'.join(STEPS)}")
            object.__setattr__(self, "steps", frozenset(self.steps))
        if self.workers is not None:
            names = frozenset(str(w) for w in self.workers)
            bad = sorted(w for w in names if not _NAME.fullmatch(w))
            if bad or not names:
                given = ", ".join(bad) or "(none given)"
                raise _error(f"bad worker name {given}: use names like 0, 2, gpu-1")
            object.__setattr__(self, "workers", names)
        if self.boost is not None:
            if self.workers is None:
                raise _error(f"boost= on {self.model.name} needs workers= (which workers are boosted)")
            if not _real(self.boost) or not (math.isfinite(self.boost) and self.boost >= 0):
                raise _error(f"boost must be a finite number >= 0, got {self.boost!r}")
            object.__setattr__(self, "boost", float(self.boost))

    def rate_at(self, step: str, worker: str | int | None) -> float:
        """Probability that this term hits a task of kind ``step`` on ``worker`` (None: not a worker)."""
        if self.steps is not None and step not in self.steps:
            return 0.0
        if self.workers is None:
            return float(self.rate)
        listed = worker is not None and str(worker) in self.workers
        if self.boost is None:
            return float(self.rate) if listed else 0.0
        return min(1.0, self.rate * self.boost) if listed else float(self.rate)

    def _covers_all_workers(self) -> bool:
        return self.workers is None or self.boost is not None

    def overlaps(self, other: FaultRule) -> bool:
        """Could both terms hit the same (step, worker)?"""
        steps = self.steps is None or other.steps is None or bool(self.steps & other.steps)
        workers = (
            self._covers_all_workers() or other._covers_all_workers() or bool(self.workers & other.workers)  # type: ignore[operator]
        )
        return steps and workers

    def __str__(self) -> str:
        parts = [self.model.name, format_number(self.rate)]
        parts += [f"{k}={v}" for k, v in self.model.options().items()]
        if self.steps is not None:
            parts.append("steps=" + "+".join(s for s in STEPS if s in self.steps))
        if self.workers is not None:
            parts.append("workers=" + "+".join(sorted(self.workers, key=_worker_order)))
        if self.boost is not None:
            parts.append(f"boost={format_number(self.boost)}")
        return ":".join(parts)


def _worker_order(name: str) -> tuple[int, int, str]:
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


@dataclass(frozen=True)
class FaultSpec:
    """A whole ``--faults`` value: an ordered tuple of rules (empty = ``none``)."""

    rules: tuple[FaultRule, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        for i, a in enumerate(self.rules):
            for b in self.rules[:i]:
                if a.model.name == b.model.name and a.overlaps(b):
                    raise _error(
                        f"duplicate model {a.model.name}: give each model once per step/worker "
                        f"(split it with disjoint steps= or workers=)"
                    )
        named = sorted({w for r in self.rules for w in (r.workers or ())})
        for step in STEPS:
            for worker in [*named, None]:
                total = sum(r.rate_at(step, worker) for r in self.rules)
                if total > 1 + 1e-12:
                    where = f" on worker {worker}" if worker is not None else ""
                    raise _error(
                        f"rates at step {step}{where} sum to {total:g} > 1; at most one fault hits a task, "
                        f"so the rates that apply to one site must sum to at most 1"
                    )

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        return parse_fault_spec(text)

    @property
    def enabled(self) -> bool:
        """False for ``none`` and for specs whose every rate is zero."""
        return any(r.rate > 0 for r in self.rules)

    @property
    def uses_workers(self) -> bool:
        """True if some rule depends on which worker runs the task."""
        return any(r.workers is not None for r in self.rules)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.rules) or "none"


def parse_fault_spec(text: str) -> FaultSpec:
    """Parse a ``--faults`` string (grammar in the module docstring); FaultSpecError if malformed."""
    if not isinstance(text, str):
        raise _error(f"a fault spec is a string, got {type(text).__name__}")
    stripped = text.strip()
    if stripped.lower() == "none":
        return FaultSpec()
    if not stripped:
        raise _error("empty fault spec (write 'none' for no faults)")
    terms = [t.strip() for t in stripped.split(",")]
    if any(t.lower() == "none" for t in terms):
        raise _error("'none' cannot be combined with other terms")
    return FaultSpec(tuple(_parse_term(t) for t in terms))


def _parse_term(term: str) -> FaultRule:
    if not term:
        raise _error("empty term (a stray comma?)")
    parts = [p.strip() for p in term.split(":")]
    name = parts[0].lower()
    if name not in MODELS:
        raise _error(f"unknown fault model {parts[0]!r} in {term!r}")
    if len(parts) < 2 or not parts[1]:
        raise _error(f"{term!r} has no rate: write {name}:RATE, e.g. {name}:1e-3")
    rate = _number(parts[1], f"rate of {name}")
    if not 0 <= rate <= 1:
        raise _error(f"rate of {name} must be a probability in [0, 1], got {parts[1]}")
    options: dict[str, str] = {}
    for option in parts[2:]:
        key, eq, value = (s.strip() for s in option.partition("="))
        key = key.lower()
        if not eq or not key or not value:
            raise _error(f"malformed option {option!r} in {term!r}: options are NAME=VALUE")
        if key in options:
            raise _error(f"option {key} given twice in {term!r}")
        options[key] = value
    steps = _steps(options.pop("steps")) if "steps" in options else None
    workers = _workers(options.pop("workers")) if "workers" in options else None
    boost = _number(options.pop("boost"), "boost") if "boost" in options else None
    try:
        model = _BUILDERS[name](options)
    except FaultSpecError:
        raise
    except ValueError as exc:
        raise _error(f"{exc} in {term!r}") from None
    if options:
        unknown = ", ".join(sorted(options))
        raise _error(
            f"unknown option {unknown} for {name} in {term!r}; {name} takes {MODEL_OPTIONS[name]}, "
            f"and every model takes {COMMON_OPTIONS}"
        )
    return FaultRule(model, rate, steps, workers, boost)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _error(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise _error(f"{what} must be finite, got {text!r}")
    return value


def _integer(text: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]+", text):
        raise _error(f"{what} must be a non-negative integer, got {text!r}")
    return int(text)


def _plus_list(text: str, what: str) -> list[str]:
    items = [s.strip() for s in text.split("+")]
    if not all(items):
        raise _error(f"malformed {what} list {text!r}: join names with '+'")
    return items


def _steps(text: str) -> frozenset[str]:
    steps = [s.lower() for s in _plus_list(text, "steps")]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise _error(f"unknown step {', '.join(unknown)}; steps are {'+'.join(STEPS)}")
    return frozenset(steps)


def _workers(text: str) -> frozenset[str]:
    return frozenset(_plus_list(text, "workers"))


def _opt_int(options: dict[str, str], key: str, default: int | None) -> int | None:
    return _integer(options.pop(key), key) if key in options else default


def _opt_number(options: dict[str, str], key: str, default: float) -> float:
    return _number(options.pop(key), key) if key in options else default


def _opt_choice(options: dict[str, str], key: str, allowed: tuple[str, ...], default: str) -> str:
    if key not in options:
        return default
    text = options.pop(key)
    if text.lower() not in allowed:
        raise _error(f"{key} must be one of {', '.join(allowed)}, got {text!r}")
    return text.lower()


def _bitflip(options: dict[str, str]) -> BitFlip:
    bits = _opt_int(options, "bits", 1)
    field = _opt_choice(options, "field", FIELDS, "any")
    return BitFlip(bits=bits, field=field, bit=_opt_int(options, "bit", None))  # type: ignore[arg-type]


def _noise(options: dict[str, str]) -> Noise:
    scale = _opt_number(options, "scale", 1e-3)
    where = _opt_choice(options, "where", ("entry", "block"), "entry")
    return Noise(scale=scale, where=where)  # type: ignore[arg-type]


def _inf(options: dict[str, str]) -> Inf:
    sign = _opt_choice(options, "sign", ("+", "-"), "")
    return Inf(sign={"+": 1, "-": -1, "": 0}[sign])  # type: ignore[arg-type]


def _stale(options: dict[str, str]) -> Stale:
    return Stale(scale=_opt_number(options, "scale", 1e-2))


_BUILDERS: dict[str, Callable[[dict[str, str]], ErrorModel]] = {
    "bitflip": _bitflip,
    "noise": _noise,
    "nan": lambda options: NaN(),
    "inf": _inf,
    "zero": lambda options: Zero(),
    "stale": _stale,
}
