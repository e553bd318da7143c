"""Soft errors: elementary corruptions, random error models, the ``--faults`` spec, and the hooks
that apply them inside worker tasks (targeted :class:`CorruptionPlan`, seeded :class:`RandomFaults`)."""

from .hook import STEPS, Corruption, CorruptionHook, CorruptionPlan, NoFaults, Site
from .injector import RandomFaults, current_worker
from .log import collect_injected
from .models import MODELS, BitFlip, ErrorModel, Inf, NaN, Noise, Stale, Zero, relative_change
from .records import FaultDecision, InjectedFault
from .spec import FaultRule, FaultSpec, parse_fault_spec

__all__ = [
    "MODELS",
    "STEPS",
    "BitFlip",
    "Corruption",
    "CorruptionHook",
    "CorruptionPlan",
    "ErrorModel",
    "FaultDecision",
    "FaultRule",
    "FaultSpec",
    "Inf",
    "InjectedFault",
    "NaN",
    "NoFaults",
    "Noise",
    "RandomFaults",
    "Site",
    "Stale",
    "Zero",
    "collect_injected",
    "current_worker",
    "parse_fault_spec",
    "relative_change",
]
