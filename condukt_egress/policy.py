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

Host patterns (``api.github.com``, ``*.openai.com``, ``**.pypi.org``) are
matched exactly as the sidecar matches them, and a pattern the sidecar would
never match is refused: :mod:`~condukt_egress.host_patterns` says how.
Policy files (YAML, JSON or stdin) are read by
:mod:`~condukt_egress.policy_files`. This module re-exports what they offer a
caller (:func:`host_matches`, :func:`yaml_problem` and their limits), so
``condukt_egress.policy`` stays the one public home of the policy.

Validation decisions (every failure is a :class:`~condukt_egress.errors.PolicyError`
naming the field and the fix):

* Each host pattern is validated and stored lower-cased (see
  :mod:`~condukt_egress.host_patterns`). Duplicate patterns are kept as
  written (they cannot change a verdict) so the wire form mirrors the
  author's list.
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
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, cast

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
from condukt_egress.host_patterns import (
    MAX_HOST_PATTERNS,
    MAX_LABEL_LENGTH,
    MAX_PATTERN_LENGTH,
    ascii_lower,
    checked_pattern,
    host_matches,
    matches_any,
)
from condukt_egress.policy_files import MAX_POLICY_FILE_BYTES, read_document, yaml_problem

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

_DOC_KEYS: Final = ("rules", "default", "redact", "max_body_capture")
_DECIDE_KEYS: Final = ("timeout_ms",)
_DOC_KEY_HINTS: Final = {
    "decide_timeout_ms": " (set it on the decide rule: {'decide': {'timeout_ms': ...}})"
}


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
            f"expected a whole number of {unit}, got {type(value).__name__} {shown(value)}; "
            f"write e.g. {default}",
        )
    if isinstance(value, float):
        if not value.is_integer():
            raise PolicyError(
                field,
                f"expected a whole number of {unit}, got {shown(value)}; write e.g. {default}",
            )
        value = int(value)
    if not low <= value <= high:
        raise PolicyError(
            field,
            f"{shown(value)} {unit} is out of range; use {low}..{high} (the default is {default})",
        )
    return value


def _as_list(value: object, field: str, what: str) -> Sequence[object]:
    """Accept a list or tuple (ordered, unlike a set), else explain."""
    if isinstance(value, list | tuple):
        return cast("Sequence[object]", value)
    raise PolicyError(
        field, f"expected a list of {what}, got {type(value).__name__} {shown(value)}"
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
                f"unknown rule kind {shown(kind)}; use 'allow', 'deny' or 'decide'"
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
                f"hosts must be a list of patterns, not one string {shown(hosts)}; "
                f"write [{shown(hosts)}]",
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
                checked_pattern(pattern, f"{self.kind}[{index}]")
                for index, pattern in enumerate(patterns)
            ),
        )

    def matches(self, host: str) -> bool:
        """Whether this rule decides for ``host`` (a decide rule always does)."""
        if self.kind == "decide":
            return True
        return matches_any(self.hosts, ascii_lower(host))

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
    """Allow requests to any of ``hosts`` (globs: see :mod:`~condukt_egress.host_patterns`).

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
        object.__setattr__(self, "rules", _checked_rules(self.rules))
        default: object = self.default
        if default not in DEFAULT_ACTIONS:
            hint = _did_you_mean(default, DEFAULT_ACTIONS)
            if isinstance(default, bool):
                hint = " (YAML reads unquoted yes/no/on/off as booleans; write deny)"
            raise PolicyError("default", f"expected 'allow' or 'deny', got {shown(default)}{hint}")
        object.__setattr__(self, "redact", _checked_redact(self.redact))
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
        lowered = ascii_lower(host)
        for index, rule in enumerate(self.rules):
            if rule.kind == "decide":
                return Verdict("decide", index, "decide", None)
            if matches_any(rule.hosts, lowered):
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
        document = _closed_mapping(
            doc,
            "policy",
            f"a mapping with keys {', '.join(_DOC_KEYS)}",
            _DOC_KEYS,
            hints=_DOC_KEY_HINTS,
        )
        raw_rules = _as_list(document.get("rules", []), "rules", "rules")
        if len(raw_rules) > MAX_RULES:
            raise _too_many_rules(len(raw_rules))
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
        name, document = read_document(path)
        try:
            return cls.from_dict(document)
        except PolicyError as error:
            raise error.under(name, sep=": ") from None


def _checked_rules(value: object) -> tuple[Rule, ...]:
    """A policy's rules as a tuple: Rules, within the limits, none after a decide rule."""
    rules = _as_list(value, "rules", "rules (allow(...), deny(...), decide(...))")
    if len(rules) > MAX_RULES:
        raise _too_many_rules(len(rules))
    decide_index: int | None = None
    total = 0
    for index, rule in enumerate(rules):
        if not isinstance(rule, Rule):
            raise PolicyError(
                f"rules[{index}]",
                f"expected a Rule, got {type(rule).__name__} {shown(rule)}; "
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
    return tuple(cast("Sequence[Rule]", rules))


def _checked_redact(value: object) -> tuple[str, ...]:
    """A policy's ``redact`` strings as a tuple: non-empty, well-formed, within the limits."""
    if isinstance(value, str | bytes):
        raise PolicyError("redact", f"expected a list of strings; write [{shown(value)}]")
    entries = _as_list(value, "redact", "strings")
    if len(entries) > MAX_REDACT_ENTRIES:
        raise PolicyError("redact", f"{len(entries)} entries; the limit is {MAX_REDACT_ENTRIES}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, str) or not entry:
            raise PolicyError(
                f"redact[{index}]",
                f"expected a non-empty string, got {type(entry).__name__} {shown(entry)}; "
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
    return tuple(cast("Sequence[str]", entries))


def _too_many_rules(count: int) -> PolicyError:
    """The error for a policy of ``count`` rules, past :data:`MAX_RULES`."""
    return PolicyError("rules", f"{count} rules; the limit is {MAX_RULES}; merge host lists")


def _closed_mapping(
    value: object,
    field: str,
    expected: str,
    keys: Sequence[str],
    *,
    key_prefix: str = "",
    hints: Mapping[str, str] | None = None,
) -> Mapping[object, object]:
    """``value`` as a document mapping whose keys are all among ``keys``, else explain.

    Args:
        value: The document or its part, as parsed.
        field: The field an error names when ``value`` is no mapping.
        expected: What to write instead, e.g. ``a mapping such as {...}``.
        keys: The accepted keys, in the order the error lists them.
        key_prefix: Put before an unknown key's name to make its field.
        hints: A fix for an unknown key, by key, in place of "did you mean".
    """
    if not isinstance(value, Mapping):
        raise PolicyError(field, f"expected {expected}, got {type(value).__name__} {shown(value)}")
    mapping = cast("Mapping[object, object]", value)
    for key in mapping:
        if key not in keys:
            hint = (hints or {}).get(key) if isinstance(key, str) else None
            raise PolicyError(
                f"{key_prefix}{_key_name(key)}",
                f"unknown key; accepted keys: {', '.join(keys)}{hint or _did_you_mean(key, keys)}",
            )
    return mapping


def _key_name(key: object) -> str:
    """A document key as a field name: plain when it reads as one, else its repr."""
    return key if isinstance(key, str) and key.isidentifier() else shown(key)


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
            f"{shown(entry)}{hint}",
        )
    mapping = cast("Mapping[object, object]", entry)
    ((kind, value),) = mapping.items()
    if kind not in RULE_TYPES:
        raise PolicyError(
            field,
            f"unknown rule kind {shown(kind)}; use allow, deny or decide"
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
    options = _closed_mapping(
        value,
        "decide",
        "a mapping such as {'timeout_ms': 5000} (or {})",
        _DECIDE_KEYS,
        key_prefix="decide.",
    )
    return Rule("decide", (), cast("int | None", options.get("timeout_ms")))


DENY_ALL: Final = EgressPolicy()
"""No rules, default deny: every host is refused with ``default_deny``."""
