"""``codenet-dask`` command line. Each subcommand lives in its own module with a ``register``.

Usage errors exit 2 with a one-line reason on stderr; other failures exit 1 with a clear message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import ClusterConfigError, CodeNetError, ConfigValueError
from . import bench, compare, demo, model_commands, store_commands, taskgraph, train
from .common import UsageError

SUBCOMMANDS = (train, compare, bench, demo, store_commands, model_commands, taskgraph)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codenet-dask",
        description="Coded (CodeNet) matrix products and training on Dask workers with soft errors.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``codenet-dask`` command line in this process and return its exit code.

    ``argv`` are the arguments after the program name (default: ``sys.argv[1:]``), e.g.
    ``main(["bench", "--widths", "1024", "--json"])``. Usage errors return 2 with a one-line
    reason on stderr, other failures of the package 1, Ctrl-C 130.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except (UsageError, ClusterConfigError, ConfigValueError) as exc:
        print(f"codenet-dask {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"codenet-dask {args.command}: interrupted (any cluster it started was shut down)", file=sys.stderr)
        return 130
    except CodeNetError as exc:
        print(f"codenet-dask {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
