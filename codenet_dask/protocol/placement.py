"""Which worker holds which coded block (plain functions of the worker list; no cluster needed).

Workers are failure domains: a bad or lost worker spoils every block it holds, so the placement
decides how many errors one worker can put into one codeword. :func:`spread_owners` holds each
row and each column of the coded grid on as many different workers as there are:

- with at least as many workers as blocks in a row and in a column (P >= kr+pr and P >= kc+pc),
  no worker holds two blocks of one codeword, so one bad worker is one error per codeword;
- with fewer, every worker holds ``ceil(n / P)`` or ``floor(n / P)`` blocks of a codeword of
  ``n`` blocks, the fewest any placement can give (:func:`most_per_codeword` says how many).

>>> owners = spread_owners(["0", "1"], (4, 4))
>>> [owners[(0, b)] for b in range(4)], [owners[(a, 0)] for a in range(4)]
(['0', '1', '0', '1'], ['0', '1', '0', '1'])
>>> most_per_codeword(owners, (4, 4))
2
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

Coord = tuple[int, int]


def _diagonal(workers: Sequence[str], coded_shape: tuple[int, int], stride: int) -> dict[Coord, str]:
    nr, nc = coded_shape
    return {(a, b): workers[(a * stride + b) % len(workers)] for a in range(nr) for b in range(nc)}


def spread_owners(workers: Sequence[str], coded_shape: tuple[int, int]) -> dict[Coord, str]:
    """Which worker holds each coded block: block ``(a, b)`` on worker ``(a*q + b) mod P``.

    Any stride ``q`` keeps a row on consecutive workers; ``q = 1`` (the diagonal) also spreads
    every column as evenly as possible. Of the strides, the one with the fewest blocks of a
    codeword on one worker, then the most workers used, then the lightest most-loaded worker is
    taken (ties: the one nearest the row-major round robin, ``q = kc + pc``).
    """
    if not workers:
        raise ValueError("the cluster has no workers; start some first")
    nc = coded_shape[1]

    def cost(q: int) -> tuple:
        owners = _diagonal(workers, coded_shape, q)
        load = Counter(owners.values())
        crowded = sum(most - -(-len(word) // len(workers)) for word, most in _crowding(owners, coded_shape))
        return crowded, -len(load), max(load.values()), abs(q - nc), q

    return _diagonal(workers, coded_shape, min(range(1, len(workers) + max(nc, 1) + 1), key=cost))


def most_per_codeword(owners: dict[Coord, str], coded_shape: tuple[int, int]) -> int:
    """The most blocks one worker holds in one row or column of the coded grid: how many errors in
    one codeword a single bad worker can cause."""
    return max(most for _, most in _crowding(owners, coded_shape))


def _crowding(owners: dict[Coord, str], coded_shape: tuple[int, int]) -> list[tuple[list[Coord], int]]:
    """Every row and column of the grid with the most blocks one worker holds in it."""
    nr, nc = coded_shape
    words = [[(a, b) for b in range(nc)] for a in range(nr)] + [[(a, b) for a in range(nr)] for b in range(nc)]
    return [(word, max(Counter(owners[c] for c in word).values())) for word in words]


def one_bad_worker(workers: int, grid: tuple[int, int], parity: tuple[int, int]) -> str | None:
    """What one always-wrong worker costs a coded layer on ``workers`` workers, in a sentence; None
    when no worker holds two blocks of a codeword (then a bad worker is one error per codeword,
    which every check corrects while it is being quarantined).

    >>> print(one_bad_worker(2, (2, 2), (2, 2)))
    one worker holds up to 2 blocks of a codeword of 4 with 2 parity: a bad worker's products are recomputed until it is quarantined, then its blocks are rebuilt from the code
    """
    shape = (grid[0] + parity[0], grid[1] + parity[1])
    most = most_per_codeword(spread_owners([str(w) for w in range(workers)], shape), shape)
    if most <= 1:
        return None
    p = min(parity)
    if 2 * most <= p:
        cost = "every product corrects a bad worker's errors until it is quarantined"
    elif most <= p:
        cost = (
            "a bad worker's products are recomputed until it is quarantined, then its blocks are rebuilt from the code"
        )
    else:
        cost = "a bad worker is quarantined and the run rolls back to the last checkpoint (the code cannot rebuild its blocks)"
    return f"one worker holds up to {most} blocks of a codeword of {max(shape)} with {p} parity: {cost}"
