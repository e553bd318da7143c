"""Task keys that read well in the Dask dashboard and are never reused.

Dask assumes one key is one value, computed once: a key planned again (a second scrub within one
operation, say) can make a task wait on itself. Every key stem therefore carries a serial number
drawn from its layer's :class:`KeyMaker`, besides the step, the layer's name in words, the operation
and the attempt.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def alphabetic(name: str) -> str:
    """``name`` as dash-separated letter words (``dense0`` -> ``dense-zero``).

    The dashboard's task prefix keeps only the leading alphabetic words of a key, so a layer name
    spelled this way stays in the prefix: ``block-forward-dense-zero``.
    """
    words, word = [], ""
    for ch in name:
        if ch.isalpha():
            word += ch.lower()
        else:
            if word:
                words.append(word)
            word = ""
            if ch.isdigit():
                words.append(_DIGITS[int(ch)])
    if word:
        words.append(word)
    return "-".join(words) or "layer"


def step_word(step: str) -> str:
    """The step as spelled in keys: Dask's task-prefix rule drops an 8-letter word that starts like
    a hex token, so ``backward`` would vanish from the dashboard; ``backwards`` stays."""
    return "backwards" if step == "backward" else step


@dataclass
class KeyMaker:
    """Key stems of one layer instance: its name in words, a random token (two runs on one cluster
    never share a key) and a serial number per stem (one run never reuses one)."""

    name: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _serial: itertools.count = field(default_factory=itertools.count, repr=False)

    @property
    def layer(self) -> str:
        """``<name in words>-<token>``: the part every key of this layer shares."""
        return f"{alphabetic(self.name)}-{self.token}"

    def stem(self, *parts: object) -> str:
        """``<layer>-<parts...>-<serial>``, unique within this layer instance."""
        return "-".join([self.layer, *map(str, parts), str(next(self._serial))])
