"""Shared pieces of the subcommands: the usage error and option parsers."""

from __future__ import annotations

import argparse
from pathlib import Path


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option help, the description and the epilog as written."""


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit code 2."""


def parse_pair(text: str, option: str) -> tuple[int, int]:
    """``"4x4"`` -> (4, 4); a UsageError naming the option and the expected form otherwise."""
    parts = text.lower().split("x")
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"{option} expects two integers like 4x4, got {text!r}") from None
    if a < 0 or b < 0:
        raise UsageError(f"{option} values must be non-negative, got {text!r}")
    return a, b


def check_output(path: str, option: str, suffixes: tuple[str, ...]) -> Path:
    """A writable new-file path with one of ``suffixes``, or a UsageError saying what is wrong."""
    out = Path(path)
    if out.suffix.lstrip(".").lower() not in suffixes:
        raise UsageError(f"{option} must end in {' or '.join('.' + s for s in suffixes)}, got {path!r}")
    if out.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name")
    if not out.parent.is_dir():
        raise UsageError(f"{option} {path}: folder {out.parent} does not exist")
    return out


class GivenFalse(argparse.Action):
    """A ``--no-X`` flag: sets ``dest`` to False and, like :class:`Given`, remembers it was typed
    (until then ``dest`` is absent: read it with ``getattr(args, dest, True)``)."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, False)
        namespace.given = frozenset(getattr(namespace, "given", frozenset()) | {self.dest})


class Given(argparse.Action):
    """Store an option's value and remember that it was typed (``namespace.given``), so that a
    command can tell an explicit value from a default (``train --resume`` refuses changed settings)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.given = frozenset(getattr(namespace, "given", frozenset()) | {self.dest})
