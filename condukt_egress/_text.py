"""User values in error messages: bounded in length and in work, and never failing.

Errors quote what the user wrote so they can find it, but a value can be a
megabyte string, a deeply nested list, or an integer past Python's
4,300-digit ``str`` limit (whose ``repr`` raises ``ValueError``). :func:`shown`
renders any of them in at most :data:`SHOWN_CHARS` characters, looking at
only a bounded part of the value.

Example:
    >>> shown("x" * 10_000)[-5:]
    'xx...'
    >>> shown(10**5000)
    '<an integer of 16610 bits>'
"""

from __future__ import annotations

import reprlib
from typing import Final

__all__ = ["SHOWN_CHARS", "shown"]

SHOWN_CHARS: Final = 80
"""Longest rendering of one value in a message."""


class _Bounded(reprlib.Repr):
    """``reprlib`` with small limits, and big integers described instead of printed."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 6
        self.maxdict = 4
        self.maxstring = SHOWN_CHARS
        self.maxlong = 40
        self.maxother = SHOWN_CHARS

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_BOUNDED: Final = _Bounded()


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (with ``...``)."""
    try:
        # A string's repr is never shorter than the string: cut first, bounded work.
        text = repr(value[:limit]) if type(value) is str else _BOUNDED.repr(value)
    except Exception:  # a hostile __repr__; the type still helps
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
