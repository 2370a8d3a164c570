r"""User values in error messages: bounded in length and in work, and never failing.

Errors quote what the user wrote so they can find it, but a value can be a
megabyte string, a deeply nested list, or an integer past Python's
4,300-digit ``str`` limit (whose ``repr`` raises ``ValueError``). :func:`shown`
renders any of them in at most :data:`SHOWN_CHARS` characters, looking at
only a bounded part of the value.

Values from traffic (host names, paths, exception texts) reach terminals and
logs too, where a control character, a bidi override or a line separator
would forge or hide output: :func:`printable` and :func:`json_printable`
escape every character Python deems non-printable.

Example:
    >>> print(printable("evil\u202e.example\x1b[2J"))
    evil\u202e.example\x1b[2J
    >>> print(json_printable('{"host":"a\u2028b"}'))
    {"host":"a\u2028b"}
    >>> shown("x" * 10_000)[-5:]
    'xx...'
    >>> shown(10**5000)
    '<an integer of 16610 bits>'
"""

from __future__ import annotations

import reprlib
from typing import Final

__all__ = ["SHOWN_CHARS", "json_printable", "printable", "shown"]

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


def printable(text: str) -> str:
    r"""``text`` with every non-printable character backslash-escaped (``\x85``, ``\u202e``).

    Non-printable is :meth:`str.isprintable`'s sense: C0 and C1 controls,
    DEL, format characters (bidi overrides and marks), line and paragraph
    separators, and every space but U+0020. For a log line or a terminal.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def json_printable(text: str) -> str:
    r"""JSON text with every non-printable character inside its strings ``\u``-escaped.

    JSON lets C1 controls, DEL, bidi overrides and U+2028/2029 stand raw in
    a string, and encoders (orjson, ``json.dumps(ensure_ascii=False)``) keep
    them so; a terminal showing the stream (``| jq``, ``tail -f``) would
    execute them. The value after decoding is unchanged. Only strings can
    hold such characters, since JSON's structure is printable ASCII.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _json_escape(c) for c in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a surrogate pair, as JSON spells characters past the BMP
    return f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}"
