"""Host patterns: what the sidecar's globs match, and which ones a policy accepts.

Allow and deny rules name hosts by pattern. This module mirrors the sidecar's
matcher exactly and validates patterns, so one the sidecar would never match
is refused with a :class:`~condukt_egress.errors.PolicyError` that says why and
what to write instead. It is pure; :mod:`condukt_egress.policy` builds its
rules on it and re-exports :func:`host_matches` and the limits.

Example:
    >>> host_matches("api-*.example.com", "API-eu.example.com")
    True
    >>> checked_pattern("https://api.github.com/repos", "allow[0]")
    Traceback (most recent call last):
    ...
    condukt_egress.errors.PolicyError: allow[0]: 'https://api.github.com/repos' is a URL; \
the sidecar compares bare host names, so it would never match; write the host name only: \
'api.github.com'

The sidecar's matcher (release 1.5.1 through 1.11.0):

* Matching is ASCII case-insensitive over the whole host name, compared exactly
  as the sidecar named it: a host with a port (``a.com:8080``) or a trailing dot
  never matches ``a.com``.
* ``*`` matches one or more characters up to the end of the current label (no
  dot). It may stand for a whole label (``*.openai.com``) or end a label
  (``api-*.example.com`` matches ``api-eu.example.com``). Because the sidecar's
  ``*`` always consumes the rest of its label, nothing can follow it inside the
  label: ``*-api.example.com`` would never match anything, so validation
  rejects it (use ``**-api.example.com``). The Elixir glue's regex matcher
  differs here; the sidecar is what enforces, so we follow the sidecar. A
  ``*`` or ``**`` at the very end also swallows a port: ``example.*`` matches
  the ``Host:`` header ``example.com:8080``.
* ``**`` matches one or more characters of any kind, dots included:
  ``**.openai.com`` matches ``a.openai.com`` and ``a.b.openai.com`` but not
  ``openai.com``. Three or more stars in a row are rejected as ambiguous.
* Everything else is literal.

Validation decisions (every failure is a :class:`~condukt_egress.errors.PolicyError`
naming the field and the fix):

* Patterns may use ``a-z``, ``0-9``, ``-``, ``_`` (seen in real SNI names),
  ``.`` and ``*``; upper case is accepted and stored lower-cased. Non-ASCII
  names must be written in IDNA (punycode) form; the error suggests it.
* Rejected: empty patterns, whitespace, URLs, paths, ports, ``@``, a leading,
  trailing or doubled dot, runs of three or more stars, ``*`` followed by
  anything but a dot, literal labels over 63 characters, patterns over 253
  characters.
* Bounds: at most :data:`MAX_PATTERN_LENGTH` characters a pattern, and
  :data:`MAX_HOST_PATTERNS` patterns over all the rules of a policy.
"""

from __future__ import annotations

import encodings.idna
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from condukt_egress._text import shown
from condukt_egress.errors import PolicyError

try:
    import idna
except ImportError:  # pragma: no cover - idna comes with requests (via kubernetes)
    idna = None  # type: ignore[assignment]

__all__ = [
    "MAX_HOST_PATTERNS",
    "MAX_LABEL_LENGTH",
    "MAX_PATTERN_LENGTH",
    "ascii_lower",
    "checked_pattern",
    "host_matches",
    "matches_any",
]

MAX_HOST_PATTERNS: Final = 10_000
"""Most host patterns, over all rules of a policy (the matcher caches twice as many)."""

MAX_PATTERN_LENGTH: Final = 253
"""Longest host pattern: the DNS limit for a full name."""

MAX_LABEL_LENGTH: Final = 63
"""Longest literal label (one without ``*``): the DNS limit."""


_QUOTED_CHARS: Final = 1024
"""Room for any real host name in a message, escapes included."""

_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_PATTERN_CHARS: Final = frozenset(string.ascii_lowercase + string.digits + "-_.*")
# UTS #46 deviation characters: IDNA 2003 (the stdlib codec) maps them to other
# names than IDNA 2008 does, so the stdlib cannot suggest a punycode for them.
_IDNA_DEVIATIONS: Final = frozenset("\u00df\u03c2\u200c\u200d")


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, as the sidecar's ``to_ascii_lowercase``."""
    return text.translate(_ASCII_LOWER)


# --------------------------------------------------------------------------
# Matching


@dataclass(frozen=True)
class _Glob:
    """A pattern split at its ``**`` into segments of literals and ``*``.

    Each segment matches deterministically (``*`` is possessive: it always
    takes the rest of its label, like the sidecar's), and a segment's end
    moves right when its start does. So the segments can be placed greedily,
    each at the leftmost position after the previous one plus the one
    character ``**`` needs: no backtracking, O(len(host) x len(pattern)).
    """

    head: re.Pattern[str]
    middle: tuple[re.Pattern[str], ...]
    tail: re.Pattern[str] | None

    def matches(self, host: str) -> bool:
        """Whether the (already lower-cased) ``host`` matches."""
        found = self.head.match(host)
        if found is None:
            return False
        if self.tail is None:
            return True
        position = found.end() + 1
        for segment in self.middle:
            if position > len(host):
                return False
            found = segment.search(host, position)
            if found is None:
                return False
            position = found.end() + 1
        return position <= len(host) and self.tail.search(host, position) is not None


@lru_cache(maxsize=2 * MAX_HOST_PATTERNS)
def _compile(pattern: str) -> _Glob:
    """Compile any pattern string the way the sidecar tokenises it.

    A run of stars becomes as many ``**`` as fit, then one ``*`` if one is
    left (``***`` is ``**`` then ``*``), exactly like the sidecar.
    """
    text = ascii_lower(pattern)
    segments: list[list[str]] = [[]]
    index = 0
    while index < len(text):
        if text.startswith("**", index):
            segments.append([])
            index += 2
        elif text[index] == "*":
            segments[-1].append(r"[^.]++")
            index += 1
        else:
            end = text.find("*", index)
            end = len(text) if end < 0 else end
            segments[-1].append(re.escape(text[index:end]))
            index = end
    regexes = ["".join(segment) for segment in segments]
    if len(regexes) == 1:
        return _Glob(re.compile(regexes[0] + r"\Z"), (), None)
    return _Glob(
        re.compile(regexes[0]),
        tuple(re.compile(regex) for regex in regexes[1:-1]),
        re.compile(regexes[-1] + r"\Z"),
    )


def host_matches(pattern: str, host: str) -> bool:
    """Return whether the sidecar would match ``host`` against ``pattern``.

    Works on any strings, valid patterns or not, and mirrors the sidecar byte
    for byte: ASCII case-insensitive, whole name, ``*`` one label (or the rest
    of one), ``**`` one or more characters across labels. Linear-ish in the
    host length; compiled patterns are cached.

    Args:
        pattern: A host glob such as ``*.openai.com``.
        host: The host name as the sidecar sees it (SNI or ``Host:`` header).

    Example:
        >>> host_matches("**.openai.com", "a.b.OpenAI.com")
        True
        >>> host_matches("*.openai.com", "openai.com")
        False
    """
    return _compile(pattern).matches(ascii_lower(host))


def matches_any(patterns: Iterable[str], lowered_host: str) -> bool:
    """Whether any of ``patterns`` matches ``lowered_host``, already :func:`ascii_lower`-ed.

    Evaluation lower-cases a host once and tries it against many rules.
    """
    return any(_compile(pattern).matches(lowered_host) for pattern in patterns)


# --------------------------------------------------------------------------
# Pattern validation


def _host_part(text: str) -> str:
    """Best-effort host name inside a URL, ``host:port`` or ``host/path``."""
    candidate = text.strip()
    if "://" in candidate:
        candidate = candidate.split("://", 1)[1]
    candidate = re.split(r"[/?#]", candidate, maxsplit=1)[0]
    candidate = candidate.rsplit("@", 1)[-1]
    port = re.fullmatch(r"(.*):\d*", candidate)
    if port is not None:
        candidate = port.group(1)
    return ascii_lower(candidate.rstrip("."))


def _suggest(text: str) -> str:
    """``write 'x'`` when the cleaned-up host is a valid pattern, else a hint."""
    candidate = _host_part(text)
    if candidate and _pattern_problem(candidate, suggest=False) is None:
        return f"write the host name only: {_quoted(candidate)}"
    return "write the host name only, e.g. 'api.example.com'"


def _to_ascii_label(label: str) -> str | None:
    """The IDNA (punycode) form of one label, or None when there is none."""
    if idna is not None:
        try:
            return idna.encode(label, uts46=True, transitional=False).decode("ascii")
        except UnicodeError:
            return None
    if _IDNA_DEVIATIONS.intersection(label):  # pragma: no cover - no idna
        return None
    try:  # pragma: no cover - no idna
        return encodings.idna.ToASCII(label).decode("ascii")
    except UnicodeError:  # pragma: no cover - no idna
        return None


def _punycode(text: str) -> str | None:
    """The IDNA form of a pattern with non-ASCII labels, when one exists."""
    labels: list[str] = []
    for label in text.split("."):
        if label.isascii():
            labels.append(ascii_lower(label))
            continue
        if "*" in label:
            return None
        ascii_label = _to_ascii_label(label)
        if ascii_label is None:
            return None
        labels.append(ascii_label)
    candidate = ".".join(labels)
    return candidate if _pattern_problem(candidate, suggest=False) is None else None


def _pattern_problem(text: str, *, suggest: bool = True) -> str | None:
    """Say what is wrong with a host pattern and how to fix it, or None.

    ``suggest`` is False when checking a suggestion itself, which keeps the
    suggestion helpers from recursing.
    """
    return _not_a_host_name(text, suggest=suggest) or _glob_problem(text)


def _not_a_host_name(text: str, *, suggest: bool) -> str | None:
    """Why ``text`` is no bare ASCII host name (a URL, a port, a path...), or None."""
    if not text.strip():
        return (
            f"{_quoted(text)} is an empty host pattern; write a host name such as "
            "'api.example.com' or remove it"
        )
    if "://" in text:
        hint = _suggest(text) if suggest else "write the host name only"
        return (
            f"{_quoted(text)} is a URL; the sidecar compares bare host names, so it would "
            f"never match; {hint}"
        )
    if any(char.isspace() for char in text):
        stripped = text.strip()
        if not any(char.isspace() for char in stripped):
            return f"{_quoted(text)} has leading or trailing whitespace; write {_quoted(stripped)}"
        return (
            f"{_quoted(text)} contains whitespace; a pattern is one host name, "
            "give several names as separate patterns"
        )
    if any(char in text for char in "/?#"):
        hint = _suggest(text) if suggest else "write the host name only"
        return f"{_quoted(text)} has a path; the sidecar matches only the host name; {hint}"
    if "@" in text:
        hint = _suggest(text) if suggest else "write the host name only"
        return f"{_quoted(text)} has a user part ('@'), which is never part of a host name; {hint}"
    if ":" in text:
        if suggest and re.fullmatch(r"[^:]+:\d+", text):
            return (
                f"{_quoted(text)} has a port; the sidecar matches the host name without it "
                f"(the NetworkPolicy decides the ports); {_suggest(text)}"
            )
        return (
            f"{_quoted(text)} contains ':'; ports cannot be matched and IPv6 literals are "
            "never seen (the sidecar intercepts IPv4 only); write a host name"
        )
    if not text.isascii():
        puny = _punycode(text) if suggest else None
        fix = f"write {_quoted(puny)}" if puny else "write the name in its IDNA (punycode) form"
        return (
            f"{_quoted(text)} has non-ASCII characters; the sidecar sees IDNA names "
            f"(xn--...), so it would never match; {fix}"
        )
    return None


def _glob_problem(text: str) -> str | None:
    """Why the ASCII host name ``text`` is no pattern the sidecar could match, or None.

    Checks the characters, the length, the dots, the stars and the labels.
    """
    lowered = ascii_lower(text)
    for char in lowered:
        if char not in _PATTERN_CHARS:
            return (
                f"{_quoted(text)} has {_quoted(char)}, which cannot appear in a host name; "
                "use only a-z, 0-9, '-', '_', '.' and '*'"
            )
    if len(lowered) > MAX_PATTERN_LENGTH:
        return (
            f"{_quoted(text[:40])}... is {len(lowered)} characters long; host names are "
            f"at most {MAX_PATTERN_LENGTH}; shorten it, e.g. with '**'"
        )
    if lowered.endswith("."):
        fixed = lowered.rstrip(".")
        fix = f"write {_quoted(fixed)}" if fixed else "write a host name"
        return (
            f"{_quoted(text)} has a trailing dot; the sidecar compares names exactly and "
            f"would not match the usual form without it; {fix}"
        )
    if lowered.startswith("."):
        bare = lowered.lstrip(".")
        return (
            f"{_quoted(text)} starts with a dot, which is not a wildcard here; write "
            f"{_quoted(bare)} for the name itself and/or {_quoted('**.' + bare)} for its subdomains"
        )
    if ".." in lowered:
        fixed = re.sub(r"\.{2,}", ".", lowered)
        return f"{_quoted(text)} has an empty label ('..'); write {_quoted(fixed)}"
    if "***" in lowered:
        return (
            f"{_quoted(text)} has three or more '*' in a row, which is ambiguous; use '*' "
            "for exactly one label or '**' for one or more labels"
        )
    for found in re.finditer(r"(?<!\*)\*(?!\*)(?=[^.])", lowered):
        label_start = lowered.rfind(".", 0, found.start()) + 1
        label_end = lowered.find(".", found.start())
        label = lowered[label_start : label_end if label_end >= 0 else len(lowered)]
        return (
            f"{_quoted(text)} never matches: in the sidecar '*' takes the rest of its "
            f"label, so nothing may follow it in {_quoted(label)}; put '*' at the end of a "
            "label (e.g. 'api-*.example.com') or use '**' (e.g. '**-api.example.com')"
        )
    for label in lowered.split("."):
        if "*" not in label and len(label) > MAX_LABEL_LENGTH:
            return (
                f"{_quoted(text)} has a label of {len(label)} characters; DNS labels are at "
                f"most {MAX_LABEL_LENGTH}, so it would never match; shorten it"
            )
    return None


def checked_pattern(value: object, field: str) -> str:
    """Validate one host pattern and return it lower-cased, as a rule stores it.

    Raises:
        PolicyError: ``field`` names the pattern; the message says what to write.
    """
    if not isinstance(value, str):
        raise PolicyError(
            field,
            f"expected a host name string, got {type(value).__name__} {shown(value)}; "
            "quote it if YAML read it as something else",
        )
    problem = _pattern_problem(value)
    if problem is not None:
        raise PolicyError(field, problem)
    return ascii_lower(value)


def _quoted(text: object) -> str:
    """A host pattern for messages: room for any real host name, escapes included."""
    return shown(text, _QUOTED_CHARS)
