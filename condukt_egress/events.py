r"""Typed frames of the sidecar's control channel, decoded from one NDJSON line.

The sidecar writes two frame types to its control peer, ``event`` and
``decision_request``; the peer answers with ``decision``. This module turns one
line into a frozen dataclass with the contract's exact field names, and a
:class:`Decision` back into a line. It is strict on the types the contract
fixes (a frame with a wrong type is a :class:`MalformedFrameError`) and lenient
on everything a newer sidecar may add: unknown keys are kept in ``extra``,
unknown event kinds are kept as strings, unknown frame types come back as an
:class:`UnknownFrame` for the caller to count and skip.

Example:
    >>> frame = decode_frame(
    ...     b'{"type":"decision_request","id":"d1","session_id":"s",'
    ...     b'"host":"example.org","port":443,"scheme":"https"}'
    ... )
    >>> frame.host, frame.port
    ('example.org', 443)
    >>> Decision.deny("d1", "not needed").to_line()
    b'{"type":"decision","id":"d1","action":"deny","reason":"not needed"}\n'
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, make_dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal, NoReturn, TypeAlias, TypeVar, get_type_hints

import orjson

from condukt_egress.contract import (
    EVENT_KINDS,
    FRAME_DECISION,
    FRAME_DECISION_REQUEST,
    FRAME_EVENT,
)
from condukt_egress.errors import ControlChannelError

__all__ = [
    "Decision",
    "DecisionAction",
    "DecisionRequest",
    "Event",
    "Frame",
    "MalformedFrameError",
    "MatchedRule",
    "Request",
    "UnknownFrame",
    "decode_frame",
    "decode_frame_exact",
    "parse_timestamp",
]

DecisionAction: TypeAlias = Literal["allow", "deny"]
"""What a peer may answer to a ``decision_request``."""

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


# RFC 3339 date-time, 0 to 9 fractional digits, ``Z`` or a numeric offset.
_TIMESTAMP: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)

# The C scanner behind json.loads, called directly: the wrappers around it
# cost as much as the scan of a short frame. Anything it does not consume
# whole goes through json.loads for the exact result or error.
_scan_once: Final[Callable[[str, int], tuple[Any, int]]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed types the argument as the class
)

_encode_compact: Final = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps(..., separators=(",", ":"))`` without building an encoder per call."""

_PARSED: Final[dict[str, datetime]] = {}
_PARSED_MAX: Final = 1024

_EVENT_KEYS: Final = frozenset({"type", "kind", "request", "reason", "matched_rule", "at"})

_F = TypeVar("_F")

_WIRE_DEFAULT: Final = "condukt_egress.wire_default"
"""Field metadata: the value of a key the sidecar may leave out (``bytes_in``: 0)."""
_NOT_SENT: Final = "condukt_egress.not_sent"
"""Field metadata: a field the decoder fills itself (``extra``, ``started_at_text``)."""


def _not_sent(default: Any = None, *, factory: Callable[[], Any] | None = None) -> Any:
    """A field that is not a wire key: kept out of ``repr`` and equality."""
    if factory is not None:
        return field(default_factory=factory, repr=False, compare=False, metadata={_NOT_SENT: 1})
    return field(default=default, repr=False, compare=False, metadata={_NOT_SENT: 1})


class MalformedFrameError(ControlChannelError, ValueError):
    """A control-channel line is not a frame the contract allows.

    Raised for invalid UTF-8, invalid JSON, a JSON value that is not an object,
    or a known frame whose fields have the wrong type. The message names the
    field at fault; it never repeats the line (which may carry credentials).
    """


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with 0 to 9 fractional digits into UTC.

    The sidecar writes ``Z`` and 0, 3, 6 or 9 digits; Python keeps
    microseconds, so digits past the sixth are truncated (the exact text stays
    available on the frame).

    Args:
        text: e.g. ``2026-11-28T19:37:07.123456789Z``.

    Raises:
        MalformedFrameError: The text is not an RFC 3339 date-time.
    """
    cached = _PARSED.get(text)
    if cached is not None:
        return cached
    parsed = _parse_timestamp(text)
    if len(_PARSED) >= _PARSED_MAX:  # a request's events repeat its started_at
        _PARSED.clear()
    _PARSED[text] = parsed
    return parsed


def _parse_timestamp(text: str) -> datetime:
    """:func:`parse_timestamp` without the cache (for ``at``: unique per event)."""
    if not _TIMESTAMP.fullmatch(text):
        raise MalformedFrameError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:  # lower-case ``t`` and ``z`` are RFC 3339 but not ISO to Python
            parsed = datetime.fromisoformat(text.upper())
        except ValueError as exc:  # e.g. month 13
            raise MalformedFrameError(f"not a valid date-time: {text[:40]!r}") from exc
    if parsed.tzinfo is not UTC:
        parsed = parsed.astimezone(UTC)
    return parsed


@dataclass(frozen=True, slots=True)
class MatchedRule:
    """The policy rule that decided a request.

    Attributes:
        index: Position of the rule in the policy's ``rules``.
        kind: ``allow``, ``deny`` or ``decide`` (kept as sent if newer).
    """

    index: int
    kind: str


@dataclass(frozen=True, slots=True)
class Request:
    """One intercepted connection, as the sidecar saw it.

    The fields are the one declaration of the wire object: the decoder reads,
    checks and converts each from its type (see :func:`_decoder`); the
    ``_text`` fields and ``extra`` are filled by the decoder, not sent.

    Attributes:
        id: UUID of the request; shared by all its events.
        session_id: The sidecar's ``--session-id``, or ``None``.
        host: SNI name, ``Host:`` header, or destination IP as text.
        port: Original destination port.
        remote_addr: The workspace's address, or ``None``.
        scheme: ``https`` for port 443, else ``http``.
        bytes_in: Bytes received from the upstream so far.
        bytes_out: Bytes sent to the upstream so far.
        started_at: When the connection was accepted (UTC).
        finished_at: When it closed, ``None`` until then.
        method: HTTP method, when known.
        path: Request path (with query), when known.
        request_headers: Lower-cased header name to value, credentials
            included, when known; redact before showing.
        response_status: Upstream status code, when known.
        extra: Keys this version does not know, kept as sent.
        started_at_text: ``started_at`` exactly as sent, nanoseconds included.
        finished_at_text: ``finished_at`` exactly as sent, or ``None``.
    """

    id: str
    session_id: str | None
    host: str
    port: int
    remote_addr: str | None
    scheme: str
    bytes_in: int = field(metadata={_WIRE_DEFAULT: 0})
    bytes_out: int = field(metadata={_WIRE_DEFAULT: 0})
    started_at: datetime
    finished_at: datetime | None
    method: str | None = None
    path: str | None = None
    request_headers: Mapping[str, str] | None = None
    response_status: int | None = None
    extra: Mapping[str, Any] = _not_sent(factory=_empty)
    started_at_text: str = _not_sent("")
    finished_at_text: str | None = _not_sent(None)


@dataclass(frozen=True, slots=True)
class Event:
    """A step in a request's life: ``request_opened`` … ``request_closed``.

    Attributes:
        kind: One of :data:`~condukt_egress.contract.EVENT_KINDS`, or a newer
            kind kept as sent (see :attr:`known_kind`).
        request: The request the event is about.
        reason: Denial or failure reason, e.g. ``matched_deny_list``.
        matched_rule: The rule that decided, ``None`` when the default did.
        at: When the sidecar emitted the event (UTC, microseconds).
        at_text: ``at`` exactly as sent, nanoseconds included.
        extra: Keys this version does not know, kept as sent.
    """

    kind: str
    request: Request
    reason: str | None
    matched_rule: MatchedRule | None
    at: datetime
    at_text: str
    extra: Mapping[str, Any] = field(default_factory=_empty, repr=False, compare=False)

    @property
    def known_kind(self) -> bool:
        """Whether :attr:`kind` is one the contract names."""
        return self.kind in EVENT_KINDS


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """The sidecar asks its peer whether to let a request through.

    The sidecar holds the connection until a :class:`Decision` with the same
    ``id`` arrives or its ``decide_timeout_ms`` passes (then it denies).

    Attributes:
        id: Echo it in the :class:`Decision`.
        session_id: The sidecar's ``--session-id``, or ``None``.
        host: The host name the policy evaluated.
        port: Original destination port.
        scheme: ``https`` or ``http``.
        extra: Keys this version does not know, kept as sent.
    """

    id: str
    session_id: str | None
    host: str
    port: int
    scheme: str
    extra: Mapping[str, Any] = _not_sent(factory=_empty)


@dataclass(frozen=True, slots=True)
class Decision:
    """The peer's answer to a :class:`DecisionRequest` (peer to sidecar).

    Attributes:
        id: The ``id`` of the decision request being answered.
        action: ``allow`` or ``deny``.
        reason: Optional; a denial with a reason surfaces in the sidecar's
            events as ``decider: <reason>``, without one as ``decider_deny``.
    """

    id: str
    action: DecisionAction
    reason: str | None = None

    @classmethod
    def allow(cls, request_id: str) -> Decision:
        """Build an ``allow`` answer."""
        return cls(request_id, "allow")

    @classmethod
    def deny(cls, request_id: str, reason: str | None = None) -> Decision:
        """Build a ``deny`` answer, optionally with a reason."""
        return cls(request_id, "deny", reason)

    def to_wire(self) -> dict[str, str]:
        """Return the frame as the JSON object the sidecar expects."""
        wire = {"type": FRAME_DECISION, "id": self.id, "action": self.action}
        if self.reason is not None:
            wire["reason"] = self.reason
        return wire

    def to_line(self) -> bytes:
        """Return the frame as one NDJSON line, newline included."""
        return _encode_compact(self.to_wire()).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A frame whose ``type`` this version does not know; safe to skip.

    Attributes:
        type: The frame's ``type`` as sent (``None`` when absent or not a string).
        raw: The whole decoded JSON object.
    """

    type: str | None
    raw: Mapping[str, Any]


Frame: TypeAlias = Event | DecisionRequest | UnknownFrame
"""Anything :func:`decode_frame` returns."""


def _twin(cls: type) -> Any:
    """A mutable class with ``cls``'s slots, to build decoded frames fast.

    A frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__`` (about 0.15 us a field); the decoder instead fills
    this twin with plain slot stores and then sets ``__class__`` to ``cls``
    (allowed: same slots, same layout). The result is an ordinary frozen
    instance of ``cls``; every value has been validated before.
    """
    names = [f.name for f in fields(cls)]
    twin = make_dataclass(
        f"_{cls.__name__}Builder", names, slots=True, eq=False, repr=False, match_args=False
    )
    probe = twin(*([None] * len(names)))
    probe.__class__ = cls  # fails at import if the layouts ever diverge
    return twin


_RequestBuilder: Final = _twin(Request)
_EventBuilder: Final = _twin(Event)
_DecisionRequestBuilder: Final = _twin(DecisionRequest)

_RULES_MAX: Final = 256
_RULES: Final[dict[tuple[int, str], MatchedRule]] = {}
"""Interned rules: a policy has few, and every decided event names one."""


def decode_frame(line: bytes | str) -> Frame:
    """Decode one control-channel line (without or with its line ending).

    Args:
        line: One NDJSON line as bytes (must be UTF-8) or text.

    Returns:
        An :class:`Event`, a :class:`DecisionRequest`, or an
        :class:`UnknownFrame` for a frame type this version does not know.

    Raises:
        MalformedFrameError: The line is not UTF-8 JSON, not an object, or a
            known frame has a missing or wrongly typed field.
    """
    # Fast path: orjson parses a frame about 3x faster than the standard
    # library. It is trusted only for what it reads exactly as json.loads
    # does: a known frame that passes every check and has no key beyond the
    # contract's. Anything else (a parse error, a failed check, an unknown
    # key or frame type, where orjson differs: integers past 64 bits become
    # floats, lone surrogates and NaN are refused) is decoded again by
    # json.loads, so the result or the error is the standard one.
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return decode_frame_exact(line)
    if type(obj) is dict:
        frame_type = obj.get("type")
        try:
            if frame_type == FRAME_EVENT:
                rule = obj.get("matched_rule")
                if rule is None or (type(rule) is dict and len(rule) == 2):
                    event = _decode_event(obj)
                    if event.extra is _EMPTY and event.request.extra is _EMPTY:
                        return event
            elif frame_type == FRAME_DECISION_REQUEST:
                request = _decode_decision_request(obj)
                if request.extra is _EMPTY:
                    return request
        except MalformedFrameError:
            pass
    return decode_frame_exact(line)


def decode_frame_exact(line: bytes | str) -> Frame:
    """:func:`decode_frame` with the standard library's parser alone.

    The reference that :func:`decode_frame` agrees with on every line (same
    frame, ``extra`` included, or same error). Slower: it decodes the lines
    the fast path hands over, and tests compare the two.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedFrameError(f"invalid UTF-8 at byte {exc.start}") from exc
    try:
        obj, end = _scan_once(line, 0)
    except (StopIteration, ValueError, RecursionError):
        end = -1
    if end != len(line):  # leading or trailing blanks, or not JSON: ask json.loads
        obj = _loads(line)
    if not isinstance(obj, dict):
        raise MalformedFrameError(f"a frame must be a JSON object, got {type(obj).__name__}")
    frame_type = obj.get("type")
    if frame_type == FRAME_EVENT:
        return _decode_event(obj)
    if frame_type == FRAME_DECISION_REQUEST:
        return _decode_decision_request(obj)
    return UnknownFrame(frame_type if isinstance(frame_type, str) else None, obj)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedFrameError(f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
    except RecursionError as exc:
        raise MalformedFrameError("invalid JSON (nested too deeply)") from exc
    except ValueError as exc:  # an integer past Python's 4,300-digit conversion limit
        raise MalformedFrameError("invalid JSON (an integer of more than 4,300 digits)") from exc


def _decode_event(obj: dict[str, Any]) -> Event:
    get = obj.get
    kind, request, reason, rule, at_text = (
        get("kind"),
        get("request"),
        get("reason"),
        get("matched_rule"),
        get("at"),
    )
    if type(kind) is not str:
        raise MalformedFrameError("event.kind: must be a string")
    if type(request) is not dict:
        raise MalformedFrameError("event.request: must be an object")
    if type(at_text) is not str:
        raise MalformedFrameError("event.at: must be a string")
    if reason is not None and type(reason) is not str:
        raise MalformedFrameError("event.reason: must be a string or null")
    event = _EventBuilder(
        kind,
        _decode_request(request),
        reason,
        None if rule is None else _decode_rule(rule),
        _parse_timestamp(at_text),
        at_text,
        _extra(obj, _EVENT_KEYS),
    )
    event.__class__ = Event
    decoded: Event = event
    return decoded


def _decode_rule(rule: object) -> MatchedRule:
    if not isinstance(rule, dict):
        raise MalformedFrameError("event.matched_rule: must be an object or null")
    index = rule.get("index")
    kind = rule.get("kind")
    if type(index) is not int or index < 0:
        raise MalformedFrameError("event.matched_rule.index: must be a non-negative integer")
    if not isinstance(kind, str):
        raise MalformedFrameError("event.matched_rule.kind: must be a string")
    key = (index, kind)
    interned = _RULES.get(key)
    if interned is None:
        if len(_RULES) >= _RULES_MAX:  # a hostile peer may send endless distinct rules
            _RULES.clear()
        interned = _RULES[key] = MatchedRule(index, kind)
    return interned


@dataclass(frozen=True)
class _WireField:
    """How one wire key of a frame is checked and converted, derived from its field's type.

    Attributes:
        key: The wire key, which is the field name.
        check: A Python expression over ``v``, true when the value has the right type.
        problem: The error message's end when it has not (``must be a string``).
        convert: A Python expression over ``v`` for the field's value.
        default: What a missing key reads as.
        keeps_text: The field is a timestamp whose text ``<key>_text`` keeps.
    """

    key: str
    check: str
    problem: str
    convert: str = "v"
    default: Any = None
    keeps_text: bool = False


_WIRE_TYPES: Final[Mapping[Any, tuple[str, str, str]]] = {
    str: ("type(v) is str", "must be a string", "v"),
    int: ("type(v) is int", "must be an integer", "v"),  # bool is an int subclass; refused
    str | None: ("(v is None or type(v) is str)", "must be a string or null", "v"),
    int | None: ("(v is None or type(v) is int)", "must be an integer or null", "v"),
    datetime: ("type(v) is str", "must be a string", "parse_timestamp(v)"),
    datetime | None: (
        "(v is None or type(v) is str)",
        "must be a string or null",
        "None if v is None else parse_timestamp(v)",
    ),
    Mapping[str, str] | None: (
        "(v is None or (type(v) is dict and all(type(x) is str for x in v.values())))",
        "must map names to strings",
        "v",
    ),
}
"""Field type -> (type check, problem, conversion), each over the wire value ``v``."""


def _wire_fields(cls: type) -> tuple[_WireField, ...]:
    """The wire keys of the frame dataclass ``cls``: its fields, less those not sent."""
    hints = get_type_hints(cls)
    out = []
    for f in fields(cls):
        if _NOT_SENT in f.metadata:
            continue
        check, problem, convert = _WIRE_TYPES[hints[f.name]]
        out.append(
            _WireField(
                f.name,
                check,
                problem,
                convert,
                f.metadata.get(_WIRE_DEFAULT),
                keeps_text=hints[f.name] in (datetime, datetime | None),
            )
        )
    return tuple(out)


def _wire_keys(cls: type) -> frozenset[str]:
    """The keys the frame dataclass ``cls`` reads from the wire."""
    return frozenset(w.key for w in _wire_fields(cls))


def _decoder(
    cls: type[_F], builder: type, where: str, *, typed: bool
) -> Callable[[dict[str, Any]], _F]:
    """Compile the decoder of the frame dataclass ``cls`` from its fields.

    The function reads every wire key with ``obj.get``, runs one combined
    type check (the hot path: about as fast as the hand-written code it
    replaces, because it is that code), then fills ``builder`` positionally
    in field order and sets its class to ``cls``. On a failed check it
    raises the precise error, naming the first field at fault in field
    order. ``typed``: the object is a whole frame, whose ``type`` key is known.
    """
    wire = _wire_fields(cls)
    sent = {w.key for w in wire}
    names = {w.key: f"v_{w.key}" for w in wire}

    def expr(template: str, key: str) -> str:
        return re.sub(r"\bv\b", names[key], template)

    reads = [
        f"    {names[w.key]} = get({w.key!r}{'' if w.default is None else f', {w.default!r}'})"
        for w in wire
    ]
    check = " and ".join(expr(w.check, w.key) for w in wire)
    args = []
    for f in fields(cls):  # type: ignore[arg-type]  # a frame dataclass
        if f.name in sent:
            args.append(expr(next(w.convert for w in wire if w.key == f.name), f.name))
        elif f.name == "extra":
            args.append("_extra(obj, keys)")
        elif f.name.endswith("_text") and f.name.removesuffix("_text") in sent:
            args.append(names[f.name.removesuffix("_text")])
        else:  # a field the table cannot fill: fail at import, not on a frame
            raise TypeError(f"{cls.__name__}.{f.name}: no wire key fills it")
    source = "\n".join(
        [
            "def decode(obj):",
            "    get = obj.get",
            *reads,
            f"    if not ({check}):",
            "        error(obj)",
            f"    decoded = builder({', '.join(args)})",
            "    decoded.__class__ = cls",
            "    return decoded",
        ]
    )
    checks = "\n".join(f"    (lambda v: {w.check}), " for w in wire)
    namespace: dict[str, Any] = {
        "builder": builder,
        "cls": cls,
        "keys": frozenset(sent | {"type"}) if typed else frozenset(sent),
        "parse_timestamp": parse_timestamp,
        "_extra": _extra,
    }
    # The source is built from the fields' types alone (the table above), never from input.
    code = compile(f"{source}\nchecks = (\n{checks}\n)", f"<{cls.__name__} decoder>", "exec")
    exec(code, namespace)  # noqa: S102
    per_field = tuple(zip(wire, namespace["checks"], strict=True))

    def error(obj: dict[str, Any]) -> NoReturn:
        """Raise the precise error for an object that failed the combined check."""
        for w, ok in per_field:
            if not ok(obj.get(w.key, w.default)):
                raise MalformedFrameError(f"{where}.{w.key}: {w.problem}")
        raise AssertionError(f"{where}: the combined check and the per-field checks disagree")

    namespace["error"] = error
    decode: Callable[[dict[str, Any]], _F] = namespace["decode"]
    return decode


def _extra(obj: dict[str, Any], known: frozenset[str]) -> Mapping[str, Any]:
    if len(obj) <= len(known) and obj.keys() <= known:
        return _EMPTY
    return MappingProxyType({key: value for key, value in obj.items() if key not in known})


_decode_request: Final = _decoder(Request, _RequestBuilder, "event.request", typed=False)
_decode_decision_request: Final = _decoder(
    DecisionRequest, _DecisionRequestBuilder, FRAME_DECISION_REQUEST, typed=True
)
_REQUEST_KEYS: Final = _wire_keys(Request)
_DECISION_REQUEST_KEYS: Final = _wire_keys(DecisionRequest) | {"type"}
