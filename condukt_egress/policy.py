"""Egress policies: what the sidecar allows, denies or asks about, as Python values.

A policy is an ordered list of rules and a default. The sidecar walks the rules
top to bottom and the first rule that matches the host name decides; ``decide``
always matches and hands the request to the control-channel peer. When no rule
matches, ``default`` applies. This module is pure (no Pulumi, no I/O except
:meth:`EgressPolicy.load`): it validates a policy, serialises it to the
sidecar's ``policy.json`` and evaluates it exactly like the sidecar does.

Example:
    >>> policy = EgressPolicy(
    ...     rules=[
    ...         deny("*.internal.example.com"),
    ...         allow("api.github.com", "*.openai.com"),
    ...         decide(timeout_ms=5000),
    ...     ],
    ...     default="deny",
    ... )
    >>> policy.evaluate("API.openai.com").action
    'allow'
    >>> policy.evaluate("db.internal.example.com").reason
    'matched_deny_list'
    >>> policy.to_wire()["rules"][2]
    {'type': 'decide'}
    >>> EgressPolicy.from_dict(policy.to_dict()) == policy
    True

Host patterns (the sidecar's matcher, release 1.5.1 through 1.11.0):

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
* Duplicate patterns are kept as written (they cannot change a verdict) so the
  wire form mirrors the author's list.
* Bounds: at most :data:`MAX_RULES` rules and :data:`MAX_HOST_PATTERNS` host
  patterns in total; ``max_body_capture`` in 0..:data:`MAX_BODY_CAPTURE` bytes;
  a decide ``timeout_ms`` in 1..:data:`MAX_DECIDE_TIMEOUT_MS`; at most
  :data:`MAX_REDACT_ENTRIES` non-empty ``redact`` strings of at most
  :data:`MAX_REDACT_LENGTH` characters.
* Numbers may be integral floats (``5000.0``, as stack config delivers them);
  ``1.5``, booleans and strings are rejected.
* Rules after a ``decide`` can never run and are rejected, as is a second
  ``decide``.

The document form (YAML/JSON files, stack config) has one key per rule::

    rules:
      - deny: ["*.internal.example.com"]
      - allow: [api.github.com, "*.openai.com"]
      - decide: {timeout_ms: 5000}     # or `decide: {}` / `decide:` (null)
    default: deny                      # optional, deny when absent
    redact: []                         # optional
    max_body_capture: 4096             # optional

``allow``/``deny`` also accept a single string (``- allow: api.github.com``).
Unknown keys, duplicate keys in a file and rule mappings with more than one key
are errors, so a typo such as ``defualt`` never silently changes the policy.
"""

from __future__ import annotations

import difflib
import encodings.idna
import json
import os
import re
import string
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, cast

import yaml

from condukt_egress._text import shown
from condukt_egress.contract import (
    DEFAULT_ACTIONS,
    DEFAULT_DECIDE_TIMEOUT_MS,
    DEFAULT_MAX_BODY_CAPTURE,
    REASON_DEFAULT_DENY,
    REASON_MATCHED_DENY_LIST,
    RULE_TYPES,
)
from condukt_egress.errors import PolicyError

try:
    import idna
except ImportError:  # pragma: no cover - idna comes with requests (via kubernetes)
    idna = None  # type: ignore[assignment]

__all__ = [
    "DENY_ALL",
    "MAX_BODY_CAPTURE",
    "MAX_DECIDE_TIMEOUT_MS",
    "MAX_HOST_PATTERNS",
    "MAX_LABEL_LENGTH",
    "MAX_PATTERN_LENGTH",
    "MAX_POLICY_FILE_BYTES",
    "MAX_REDACT_ENTRIES",
    "MAX_REDACT_LENGTH",
    "MAX_RULES",
    "MIN_DECIDE_TIMEOUT_MS",
    "DefaultAction",
    "EgressPolicy",
    "Rule",
    "RuleKind",
    "Verdict",
    "VerdictAction",
    "allow",
    "decide",
    "deny",
    "host_matches",
    "yaml_problem",
]

RuleKind: TypeAlias = Literal["allow", "deny", "decide"]
"""A rule's ``type`` on the wire."""

DefaultAction: TypeAlias = Literal["allow", "deny"]
"""What applies when no rule matched."""

VerdictAction: TypeAlias = Literal["allow", "deny", "decide"]
"""The outcome of :meth:`EgressPolicy.evaluate`; ``decide`` asks the peer."""

MAX_RULES: Final = 1_000
"""Most rules a policy may have."""

MAX_HOST_PATTERNS: Final = 10_000
"""Most host patterns, over all rules of a policy."""

MAX_PATTERN_LENGTH: Final = 253
"""Longest host pattern: the DNS limit for a full name."""

MAX_LABEL_LENGTH: Final = 63
"""Longest literal label (one without ``*``): the DNS limit."""

MAX_BODY_CAPTURE: Final = 16 * 1024 * 1024
"""Largest ``max_body_capture`` in bytes (16 MiB)."""

MIN_DECIDE_TIMEOUT_MS: Final = 1
"""Shortest decide timeout."""

MAX_DECIDE_TIMEOUT_MS: Final = 600_000
"""Longest a decide rule may hold a connection: 10 minutes."""

MAX_REDACT_ENTRIES: Final = 1_000
"""Most ``redact`` entries."""

MAX_REDACT_LENGTH: Final = 4_096
"""Longest ``redact`` entry, in characters."""

MAX_POLICY_FILE_BYTES: Final = 1024 * 1024
"""Largest policy file :meth:`EgressPolicy.load` reads (1 MiB; 10,000 patterns
of 100 characters fit in it)."""

_QUOTED_CHARS: Final = 1024

_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_PATTERN_CHARS: Final = frozenset(string.ascii_lowercase + string.digits + "-_.*")
_DOC_KEYS: Final = ("rules", "default", "redact", "max_body_capture")
_DECIDE_KEYS: Final = ("timeout_ms",)
# UTS #46 deviation characters: IDNA 2003 (the stdlib codec) maps them to other
# names than IDNA 2008 does, so the stdlib cannot suggest a punycode for them.
_IDNA_DEVIATIONS: Final = frozenset("\u00df\u03c2\u200c\u200d")


def _lower(text: str) -> str:
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
    text = _lower(pattern)
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
    return _compile(pattern).matches(_lower(host))


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
    return _lower(candidate.rstrip("."))


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
            labels.append(_lower(label))
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
    lowered = _lower(text)
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


def _normalise_pattern(value: object, field: str) -> str:
    """Validate one host pattern and return it lower-cased."""
    if not isinstance(value, str):
        raise PolicyError(
            field,
            f"expected a host name string, got {type(value).__name__} {_short(value)}; "
            "quote it if YAML read it as something else",
        )
    problem = _pattern_problem(value)
    if problem is not None:
        raise PolicyError(field, problem)
    return _lower(value)


# --------------------------------------------------------------------------
# Values


def _did_you_mean(value: object, options: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss among ``options``, else ``""``."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value.lower(), options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _as_int(value: object, field: str, *, low: int, high: int, unit: str, default: int) -> int:
    """Accept an int or an integral float within ``low..high``; else explain."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(
            field,
            f"expected a whole number of {unit}, got {type(value).__name__} {_short(value)}; "
            f"write e.g. {default}",
        )
    if isinstance(value, float):
        if not value.is_integer():
            raise PolicyError(
                field,
                f"expected a whole number of {unit}, got {_short(value)}; write e.g. {default}",
            )
        value = int(value)
    if not low <= value <= high:
        raise PolicyError(
            field,
            f"{_short(value)} {unit} is out of range; use {low}..{high} (the default is {default})",
        )
    return value


def _as_list(value: object, field: str, what: str) -> Sequence[object]:
    """Accept a list or tuple (ordered, unlike a set), else explain."""
    if isinstance(value, list | tuple):
        return cast("Sequence[object]", value)
    raise PolicyError(
        field, f"expected a list of {what}, got {type(value).__name__} {_short(value)}"
    )


@dataclass(frozen=True)
class Rule:
    """One step of the policy: ``allow``/``deny`` a host list, or ``decide``.

    Build rules with :func:`allow`, :func:`deny` and :func:`decide`. Patterns
    are validated and lower-cased on construction, so a ``Rule`` is always
    valid. Errors name the field relative to the rule (``allow[0]``); inside a
    document they are prefixed with the rule's index (``rules[2].allow[0]``).

    Attributes:
        kind: ``allow``, ``deny`` or ``decide``.
        hosts: Host patterns of an allow/deny rule, as a tuple; empty for decide.
        timeout_ms: How long the sidecar waits for the peer's decision (decide
            only; the policy's ``decide_timeout_ms`` on the wire); None otherwise.
    """

    kind: RuleKind
    hosts: Sequence[str] = ()
    timeout_ms: int | None = None

    def __post_init__(self) -> None:
        kind: object = self.kind
        if kind not in RULE_TYPES:
            raise PolicyError(
                "kind",
                f"unknown rule kind {_short(kind)}; use 'allow', 'deny' or 'decide'"
                f"{_did_you_mean(kind, RULE_TYPES)}",
            )
        if self.kind == "decide":
            if self.hosts:
                raise PolicyError(
                    "decide.hosts",
                    "a decide rule takes no hosts (it always matches); put the hosts "
                    "in an allow or deny rule before it",
                )
            timeout: object = self.timeout_ms
            object.__setattr__(self, "hosts", ())
            object.__setattr__(
                self,
                "timeout_ms",
                DEFAULT_DECIDE_TIMEOUT_MS
                if timeout is None
                else _as_int(
                    timeout,
                    "decide.timeout_ms",
                    low=MIN_DECIDE_TIMEOUT_MS,
                    high=MAX_DECIDE_TIMEOUT_MS,
                    unit="milliseconds",
                    default=DEFAULT_DECIDE_TIMEOUT_MS,
                ),
            )
            return
        if self.timeout_ms is not None:
            raise PolicyError(
                f"{self.kind}.timeout_ms",
                "only a decide rule has a timeout; remove it or use decide(timeout_ms=...)",
            )
        hosts: object = self.hosts
        if isinstance(hosts, str | bytes):
            raise PolicyError(
                self.kind,
                f"hosts must be a list of patterns, not one string {_short(hosts)}; "
                f"write [{_short(hosts)}]",
            )
        patterns = _as_list(hosts, self.kind, "host patterns")
        if not patterns:
            raise PolicyError(
                self.kind,
                f"an {self.kind} rule needs at least one host pattern, e.g. "
                f"{self.kind}('api.example.com'); remove the rule if it has none",
            )
        if len(patterns) > MAX_HOST_PATTERNS:
            raise PolicyError(
                self.kind,
                f"{len(patterns)} host patterns; the limit is {MAX_HOST_PATTERNS}; "
                "use '*' or '**' to cover many names",
            )
        object.__setattr__(
            self,
            "hosts",
            tuple(
                _normalise_pattern(pattern, f"{self.kind}[{index}]")
                for index, pattern in enumerate(patterns)
            ),
        )

    def matches(self, host: str) -> bool:
        """Whether this rule decides for ``host`` (a decide rule always does)."""
        if self.kind == "decide":
            return True
        lowered = _lower(host)
        return any(_compile(pattern).matches(lowered) for pattern in self.hosts)

    def to_wire(self) -> dict[str, Any]:
        """The rule as the sidecar reads it (``timeout_ms`` lives at the top level)."""
        if self.kind == "decide":
            return {"type": "decide"}
        return {"type": self.kind, "hosts": list(self.hosts)}

    def to_dict(self) -> dict[str, Any]:
        """The rule in the document form: one key, the kind."""
        if self.kind == "decide":
            return {"decide": {"timeout_ms": self.timeout_ms}}
        return {self.kind: list(self.hosts)}


def allow(*hosts: str) -> Rule:
    """Allow requests to any of ``hosts`` (glob patterns, see the module doc).

    Example:
        >>> allow("api.github.com", "*.openai.com").hosts
        ('api.github.com', '*.openai.com')
    """
    return Rule("allow", hosts)


def deny(*hosts: str) -> Rule:
    """Deny requests to any of ``hosts``; the sidecar reports ``matched_deny_list``.

    Example:
        >>> deny("*.internal.example.com").kind
        'deny'
    """
    return Rule("deny", hosts)


def decide(timeout_ms: int = DEFAULT_DECIDE_TIMEOUT_MS) -> Rule:
    """Ask the control-channel peer; matches every host, so it comes last.

    Args:
        timeout_ms: How long the sidecar waits for a decision before denying
            with ``decider_timeout`` (1..600000).

    Example:
        >>> decide(timeout_ms=2000).timeout_ms
        2000
    """
    return Rule("decide", (), timeout_ms)


@dataclass(frozen=True)
class Verdict:
    """What the sidecar would do with a host, and why.

    Attributes:
        action: ``allow``, ``deny``, or ``decide`` (the peer is asked).
        rule_index: Position of the rule that matched; None when the default applied.
        rule_kind: Kind of that rule; None when the default applied.
        reason: The sidecar's label: ``matched_deny_list`` for a deny rule,
            ``default_deny`` for the default deny, None otherwise.
    """

    action: VerdictAction
    rule_index: int | None
    rule_kind: RuleKind | None
    reason: str | None


@dataclass(frozen=True)
class EgressPolicy:
    """A validated egress policy; an invalid one cannot be constructed.

    Attributes:
        rules: Ordered rules, stored as a tuple; the first match decides.
        default: ``allow`` or ``deny``, applied when no rule matched.
        redact: Strings the sidecar is told to redact (unused by 1.5.1), a tuple.
        max_body_capture: Body bytes per event (unused by 1.5.1), 0..16 MiB.

    Example:
        >>> EgressPolicy(rules=[allow("**.pypi.org")]).evaluate("pypi.org").reason
        'default_deny'
    """

    rules: Sequence[Rule] = ()
    default: DefaultAction = "deny"
    redact: Sequence[str] = ()
    max_body_capture: int = DEFAULT_MAX_BODY_CAPTURE

    def __post_init__(self) -> None:
        rules = _as_list(self.rules, "rules", "rules (allow(...), deny(...), decide(...))")
        if len(rules) > MAX_RULES:
            raise PolicyError(
                "rules", f"{len(rules)} rules; the limit is {MAX_RULES}; merge host lists"
            )
        decide_index: int | None = None
        total = 0
        for index, rule in enumerate(rules):
            if not isinstance(rule, Rule):
                raise PolicyError(
                    f"rules[{index}]",
                    f"expected a Rule, got {type(rule).__name__} {_short(rule)}; "
                    "build it with allow(...), deny(...) or decide(...)",
                )
            if decide_index is not None:
                what = "a second decide rule" if rule.kind == "decide" else "this rule"
                raise PolicyError(
                    f"rules[{index}]",
                    f"{what} can never run: rules[{decide_index}] is a decide rule, "
                    f"which matches every host; move it before rules[{decide_index}] "
                    "or remove it",
                )
            if rule.kind == "decide":
                decide_index = index
            total += len(rule.hosts)
        if total > MAX_HOST_PATTERNS:
            raise PolicyError(
                "rules",
                f"{total} host patterns in total; the limit is {MAX_HOST_PATTERNS}; "
                "use '*' or '**' to cover many names",
            )
        object.__setattr__(self, "rules", tuple(cast("Sequence[Rule]", rules)))

        default: object = self.default
        if default not in DEFAULT_ACTIONS:
            hint = _did_you_mean(default, DEFAULT_ACTIONS)
            if isinstance(default, bool):
                hint = " (YAML reads unquoted yes/no/on/off as booleans; write deny)"
            raise PolicyError("default", f"expected 'allow' or 'deny', got {_short(default)}{hint}")

        redact: object = self.redact
        if isinstance(redact, str | bytes):
            raise PolicyError("redact", f"expected a list of strings; write [{_short(redact)}]")
        entries = _as_list(redact, "redact", "strings")
        if len(entries) > MAX_REDACT_ENTRIES:
            raise PolicyError(
                "redact", f"{len(entries)} entries; the limit is {MAX_REDACT_ENTRIES}"
            )
        for index, entry in enumerate(entries):
            if not isinstance(entry, str) or not entry:
                raise PolicyError(
                    f"redact[{index}]",
                    f"expected a non-empty string, got {type(entry).__name__} {_short(entry)}; "
                    "remove it or quote it",
                )
            try:
                entry.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise PolicyError(
                    f"redact[{index}]",
                    f"contains {entry[exc.start]!r}, an unpaired surrogate that is not valid "
                    "Unicode text; the sidecar's JSON parser rejects it and the proxy exits: "
                    "write well-formed text (a surrogate pair or the character itself)",
                ) from None
            if len(entry) > MAX_REDACT_LENGTH:
                raise PolicyError(
                    f"redact[{index}]",
                    f"{len(entry)} characters; the limit is {MAX_REDACT_LENGTH}; shorten it",
                )
        object.__setattr__(self, "redact", tuple(cast("Sequence[str]", entries)))

        object.__setattr__(
            self,
            "max_body_capture",
            _as_int(
                self.max_body_capture,
                "max_body_capture",
                low=0,
                high=MAX_BODY_CAPTURE,
                unit="bytes",
                default=DEFAULT_MAX_BODY_CAPTURE,
            ),
        )

    @property
    def decide_timeout_ms(self) -> int:
        """The decide rule's timeout, or the sidecar's default when there is none."""
        for rule in self.rules:
            if rule.kind == "decide" and rule.timeout_ms is not None:
                return rule.timeout_ms
        return DEFAULT_DECIDE_TIMEOUT_MS

    def evaluate(self, host: str) -> Verdict:
        """Return what the sidecar would do with a connection to ``host``.

        Mirrors the sidecar: the first matching rule wins, ``decide`` always
        matches, otherwise ``default``. Never raises for a ``str``.

        Args:
            host: The host name as the sidecar names it (SNI, ``Host:`` or IP).

        Example:
            >>> DENY_ALL.evaluate("example.com")
            Verdict(action='deny', rule_index=None, rule_kind=None, reason='default_deny')
        """
        lowered = _lower(host)
        for index, rule in enumerate(self.rules):
            if rule.kind == "decide":
                return Verdict("decide", index, "decide", None)
            if any(_compile(pattern).matches(lowered) for pattern in rule.hosts):
                if rule.kind == "deny":
                    return Verdict("deny", index, "deny", REASON_MATCHED_DENY_LIST)
                return Verdict("allow", index, "allow", None)
        if self.default == "allow":
            return Verdict("allow", None, None, None)
        return Verdict("deny", None, None, REASON_DEFAULT_DENY)

    def to_wire(self) -> dict[str, Any]:
        """The sidecar's ``policy.json`` as a dict, every key explicit."""
        return {
            "rules": [rule.to_wire() for rule in self.rules],
            "default": self.default,
            "max_body_capture": self.max_body_capture,
            "redact": list(self.redact),
            "decide_timeout_ms": self.decide_timeout_ms,
        }

    def to_json(self) -> str:
        """``policy.json`` as compact, key-sorted ASCII JSON: same policy, same bytes."""
        return json.dumps(self.to_wire(), separators=(",", ":"), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        """The document form (one key per rule); ``from_dict`` reads it back."""
        return {
            "rules": [rule.to_dict() for rule in self.rules],
            "default": self.default,
            "redact": list(self.redact),
            "max_body_capture": self.max_body_capture,
        }

    @classmethod
    def from_dict(cls, doc: object) -> EgressPolicy:
        """Build a policy from its document form (see the module doc).

        Args:
            doc: A mapping as parsed from YAML, JSON or stack config.

        Raises:
            PolicyError: Naming the field (``rules[2].allow[0]``) and the fix.
        """
        if not isinstance(doc, Mapping):
            raise PolicyError(
                "policy",
                f"expected a mapping with keys {', '.join(_DOC_KEYS)}, got "
                f"{type(doc).__name__} {_short(doc)}",
            )
        document = cast("Mapping[object, object]", doc)
        for key in document:
            if key not in _DOC_KEYS:
                hint = _did_you_mean(key, _DOC_KEYS)
                if key == "decide_timeout_ms":
                    hint = " (set it on the decide rule: {'decide': {'timeout_ms': ...}})"
                raise PolicyError(
                    _key_name(key),
                    f"unknown key; accepted keys: {', '.join(_DOC_KEYS)}{hint}",
                )
        raw_rules = _as_list(document.get("rules", []), "rules", "rules")
        if len(raw_rules) > MAX_RULES:
            raise PolicyError(
                "rules", f"{len(raw_rules)} rules; the limit is {MAX_RULES}; merge host lists"
            )
        rules = [_rule_from_dict(entry, f"rules[{index}]") for index, entry in enumerate(raw_rules)]
        return cls(
            rules=rules,
            default=cast("DefaultAction", document.get("default", "deny")),
            redact=cast("Sequence[str]", document.get("redact", ())),
            max_body_capture=cast(
                "int", document.get("max_body_capture", DEFAULT_MAX_BODY_CAPTURE)
            ),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EgressPolicy:
        """Read a policy document from a ``.yaml``, ``.yml`` or ``.json`` file, or stdin.

        Args:
            path: The file; its suffix picks the parser. ``-`` reads stdin as
                YAML (which reads JSON too), as kubectl's ``-f -`` does.

        Raises:
            PolicyError: The suffix is not accepted, the file cannot be read or
                parsed (with line and column when the parser gives them), or
                the document is invalid (the field is prefixed with the path).
        """
        file = Path(path)
        suffix = file.suffix.lower()
        if str(path) == "-":
            import sys  # noqa: PLC0415

            file, suffix = Path("stdin"), ".yaml"
            raw = sys.stdin.buffer.read(MAX_POLICY_FILE_BYTES + 1)
            return cls._from_bytes(raw, file, suffix)
        if suffix not in (".yaml", ".yml", ".json"):
            raise PolicyError(
                str(file),
                f"unsupported suffix {file.suffix!r}; use .yaml, .yml or .json",
            )
        try:
            with file.open("rb") as stream:
                raw = stream.read(MAX_POLICY_FILE_BYTES + 1)
        except (OSError, ValueError) as error:  # ValueError: a NUL in the name
            reason = getattr(error, "strerror", None) or error
            raise PolicyError(str(file), f"cannot read the file: {reason}") from error
        return cls._from_bytes(raw, file, suffix)

    @classmethod
    def _from_bytes(cls, raw: bytes, file: Path, suffix: str) -> EgressPolicy:
        """The policy in ``raw``, read from ``file`` (named so in errors)."""
        try:
            if len(raw) > MAX_POLICY_FILE_BYTES:
                raise PolicyError(
                    str(file),
                    f"is larger than {MAX_POLICY_FILE_BYTES // 1024} KiB, far beyond any real "
                    "policy; use '*' or '**' patterns to cover many names",
                )
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise PolicyError(
                str(file), f"not UTF-8 text (byte {error.start}); save it as UTF-8"
            ) from error
        document = _parse_json(text, file) if suffix == ".json" else _parse_yaml(text, file)
        if document is None:
            raise PolicyError(
                str(file),
                "the document is empty; write a policy such as "
                '{"rules": [{"allow": ["api.github.com"]}], "default": "deny"}',
            )
        try:
            return cls.from_dict(document)
        except PolicyError as error:
            raise error.under(str(file), sep=": ") from None


def _short(value: object) -> str:
    """``repr`` for messages, bounded in length and work (a file's value may be huge)."""
    return shown(value)


def _quoted(text: object) -> str:
    """A host pattern for messages: room for any real host name, escapes included."""
    return shown(text, _QUOTED_CHARS)


def _key_name(key: object) -> str:
    """A document key as a field name: plain when it reads as one, else its repr."""
    return key if isinstance(key, str) and key.isidentifier() else _short(key)


def _rule_from_dict(entry: object, field: str) -> Rule:
    """Read one document rule, ``{"allow": [...]}``, ``{"decide": {...}}`` and so on."""
    if not isinstance(entry, Mapping) or len(entry) != 1:
        if isinstance(entry, Mapping) and "type" in entry:
            hint = "; this is the sidecar's wire form, write {'allow': [...]} instead"
        else:
            hint = ", e.g. {'allow': ['api.github.com']} or {'decide': {}}"
        keys = f"{len(entry)} keys" if isinstance(entry, Mapping) else type(entry).__name__
        raise PolicyError(
            field,
            f"expected a mapping with exactly one key (allow, deny or decide), got {keys} "
            f"{_short(entry)}{hint}",
        )
    mapping = cast("Mapping[object, object]", entry)
    ((kind, value),) = mapping.items()
    if kind not in RULE_TYPES:
        raise PolicyError(
            field,
            f"unknown rule kind {_short(kind)}; use allow, deny or decide"
            f"{_did_you_mean(kind, RULE_TYPES)}",
        )
    try:
        if kind == "decide":
            return _decide_from_dict(value)
        hosts = [value] if isinstance(value, str) else value
        return Rule(kind, cast("Sequence[str]", hosts))
    except PolicyError as error:
        raise error.under(field) from None


def _decide_from_dict(value: object) -> Rule:
    """Read a decide rule's options: None, ``{}`` or ``{"timeout_ms": n}``."""
    if value is None:
        return Rule("decide")
    if not isinstance(value, Mapping):
        raise PolicyError(
            "decide",
            f"expected a mapping such as {{'timeout_ms': 5000}} (or {{}}), got "
            f"{type(value).__name__} {_short(value)}",
        )
    options = cast("Mapping[object, object]", value)
    for key in options:
        if key not in _DECIDE_KEYS:
            raise PolicyError(
                f"decide.{_key_name(key)}",
                f"unknown key; accepted keys: {', '.join(_DECIDE_KEYS)}"
                f"{_did_you_mean(key, _DECIDE_KEYS)}",
            )
    return Rule("decide", (), cast("int | None", options.get("timeout_ms")))


# --------------------------------------------------------------------------
# Files


class _DuplicateKeyError(Exception):
    """A JSON object repeats a key (the stdlib would keep the last silently)."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses repeated keys."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _parse_json(text: str, file: Path) -> object:
    """Parse JSON, refusing duplicate keys; errors carry line and column."""
    try:
        return cast("object", json.loads(text, object_pairs_hook=_unique_pairs))
    except json.JSONDecodeError as error:
        raise PolicyError(
            str(file),
            f"not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
        ) from None
    except _DuplicateKeyError as error:
        raise PolicyError(
            str(file),
            f"duplicate key {_short(error.args[0])}; each key may appear once per object, "
            "merge the two entries",
        ) from None
    except RecursionError:
        raise PolicyError(str(file), "nested too deeply to be a policy") from None
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        raise PolicyError(str(file), _TOO_MANY_DIGITS) from None


_TOO_MANY_DIGITS: Final = (
    "an integer of more than 4,300 digits; "
    "no policy value is that large: write a number within its documented range"
)


class _PolicyLoader(yaml.SafeLoader):
    """A safe YAML loader for policy files: no aliases, no duplicate keys, bounded integers.

    Aliases (``*name``) are refused where the document is composed, before
    anything is built: a few hundred bytes of nested aliases expand to
    gigabytes (billion laughs) and every message quoting a value would walk
    them. A policy never needs one.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                f"found an alias (*{event.anchor}); aliases are not accepted in a policy, "
                "write the value out in full",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # past Python's 4,300-digit limit: ours, not a traceback
            raise yaml.constructor.ConstructorError(
                None, None, _TOO_MANY_DIGITS, node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: {...}` merges (of inline mappings: aliases are refused)
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"found duplicate key {_short(key)}; merge the two entries",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_PolicyLoader.add_constructor("tag:yaml.org,2002:int", _PolicyLoader.construct_yaml_int)


def yaml_problem(error: yaml.MarkedYAMLError, text: str = "") -> str:
    """What a YAML parse error says, with its line and column; a tab gets the fix.

    PyYAML reports a tab as a character "that cannot start any token"
    (libyaml without saying which); a person needs to hear that YAML does
    not allow tabs. ``text`` is the parsed text, where the mark points.
    """
    mark = error.problem_mark or error.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = error.problem or error.context or "unreadable"
    lines = text.split("\n")
    before = lines[mark.line][: mark.column + 1] if mark and mark.line < len(lines) else ""
    if "\\t" in problem or "\t" in problem or "\t" in before:
        return f"YAML does not allow tabs; indent with spaces (a tab{where})"
    return f"not valid YAML{where}: {problem}"


def _parse_yaml(text: str, file: Path) -> object:
    """Parse YAML safely, refusing duplicate keys; errors carry line and column."""
    try:
        return cast("object", yaml.load(text, Loader=_PolicyLoader))  # noqa: S506
    except yaml.MarkedYAMLError as error:
        raise PolicyError(str(file), yaml_problem(error, text)) from None
    except yaml.YAMLError as error:
        raise PolicyError(str(file), f"not valid YAML: {error}") from None
    except RecursionError:
        raise PolicyError(str(file), "nested too deeply to be a policy") from None


DENY_ALL: Final = EgressPolicy()
"""No rules, default deny: every host is refused with ``default_deny``."""
