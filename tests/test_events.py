"""Decoding control-channel frames, and hiding credentials in them."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from condukt_egress.contract import EVENT_KINDS
from condukt_egress.events import (
    Decision,
    DecisionRequest,
    Event,
    MalformedFrameError,
    MatchedRule,
    Request,
    UnknownFrame,
    decode_frame,
    parse_timestamp,
)
from condukt_egress.redaction import REDACTED, Redactor
from tests.sidecar_double import all_kinds, decision_request_frame, event_frame, line


def _event(frame: dict[str, Any]) -> Event:
    decoded = decode_frame(line(frame))
    assert isinstance(decoded, Event)
    return decoded


# -- events -----------------------------------------------------------------------


def test_every_kind_decodes_with_the_contract_field_names() -> None:
    frames = [_event(f) for f in all_kinds()]
    assert [f.kind for f in frames] == [
        "request_opened",
        "request_allowed",
        "request_closed",
        "request_denied",
        "request_failed",
    ]
    assert {f.kind for f in frames} == set(EVENT_KINDS)
    assert all(f.known_kind for f in frames)

    closed = frames[2]
    assert closed.request.method == "GET"
    assert closed.request.path == "/v1/models"
    assert closed.request.response_status == 200
    assert closed.request.request_headers == {
        "authorization": "Bearer sk-live-123",
        "accept": "*/*",
    }
    assert closed.request.finished_at == datetime(2026, 11, 28, 19, 37, 8, tzinfo=UTC)
    assert closed.request.remote_addr == "10.0.0.7:40312"
    assert closed.request.session_id == "s-1"

    denied = frames[3]
    assert denied.reason == "matched_deny_list"
    assert denied.matched_rule == MatchedRule(0, "deny")
    assert denied.request.host == "evil.example"
    assert frames[0].matched_rule is None
    assert frames[0].reason is None
    assert frames[0].request.method is None


def test_exact_upstream_example_line_decodes() -> None:
    raw = (
        b'{"type":"event","kind":"request_denied","request":{"id":"7b0c4e0e-1a51-4e5e-8f7e-0d3a'
        b'b2f1c9a1","session_id":null,"host":"x.internal.example.com","port":443,'
        b'"remote_addr":null,"scheme":"https","bytes_in":0,"bytes_out":0,'
        b'"started_at":"2026-11-28T19:37:07Z","finished_at":null},"reason":"matched_deny_list",'
        b'"matched_rule":{"index":0,"kind":"deny"},"at":"2026-11-28T19:37:07.123456789Z"}'
    )
    event = decode_frame(raw)
    assert isinstance(event, Event)
    assert event.request.session_id is None
    assert event.request.remote_addr is None
    assert event.at_text == "2026-11-28T19:37:07.123456789Z"
    assert event.at == datetime(2026, 11, 28, 19, 37, 7, 123456, tzinfo=UTC)


def test_decoded_frames_are_ordinary_frozen_instances() -> None:
    frame = event_frame("request_closed", rule=(1, "allow"), finished_at="2026-11-28T19:37:08Z")
    event = _event(frame)
    assert type(event) is Event
    assert type(event.request) is Request
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.kind = "request_denied"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.request.host = "elsewhere.example"  # type: ignore[misc]
    rebuilt = Event(**{f.name: getattr(event, f.name) for f in dataclasses.fields(Event)})
    assert rebuilt == event
    assert repr(rebuilt) == repr(event)
    assert dataclasses.replace(event.request, port=8443).port == 8443
    assert _event(frame).matched_rule == MatchedRule(1, "allow")

    request = decode_frame(line(decision_request_frame("example.org")))
    assert type(request) is DecisionRequest
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.host = "elsewhere.example"  # type: ignore[misc]


@pytest.mark.parametrize("padded", [b"  %s", b"%s \t", b"\t%s  "])
def test_blanks_around_a_frame_are_tolerated(padded: bytes) -> None:
    decoded = decode_frame(padded % line(decision_request_frame("example.org")).strip())
    assert isinstance(decoded, DecisionRequest)


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("2026-11-28T19:37:07Z", 0),
        ("2026-11-28T19:37:07.1Z", 100000),
        ("2026-11-28T19:37:07.123Z", 123000),
        ("2026-11-28T19:37:07.12345Z", 123450),
        ("2026-11-28T19:37:07.123456Z", 123456),
        ("2026-11-28T19:37:07.1234567Z", 123456),
        ("2026-11-28T19:37:07.123456789Z", 123456),
        ("2026-11-28t19:37:07.5z", 500000),
    ],
)
def test_timestamps_accept_zero_to_nine_fraction_digits(text: str, micro: int) -> None:
    parsed = parse_timestamp(text)
    assert parsed == datetime(2026, 11, 28, 19, 37, 7, micro, tzinfo=UTC)


def test_timestamp_offsets_are_converted_to_utc() -> None:
    assert parse_timestamp("2026-11-28T21:37:07+02:00") == datetime(
        2026, 11, 28, 19, 37, 7, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T19:37:07.1234567891Z",  # ten digits
        "2026-11-28T19:37:07",  # no zone
        "2026-11-28 19:37:07Z",  # space
        "2026-11-28",
        "2026-13-28T19:37:07Z",  # month 13
        "2026-11-28T19:37:\u0660\u0667Z",  # Arabic-Indic digits
        "",
    ],
)
def test_bad_timestamps_are_malformed(text: str) -> None:
    with pytest.raises(MalformedFrameError):
        parse_timestamp(text)


def test_unknown_keys_are_kept_and_unknown_kinds_are_tolerated() -> None:
    frame = event_frame("request_upgraded", trace_id="abc")
    frame["request"]["tls_version"] = "1.3"
    event = _event(frame)
    assert event.kind == "request_upgraded"
    assert not event.known_kind
    assert event.extra == {"trace_id": "abc"}
    assert event.request.extra == {"tls_version": "1.3"}


def test_missing_byte_counters_default_to_zero() -> None:
    frame = event_frame("request_opened")
    del frame["request"]["bytes_in"], frame["request"]["bytes_out"]
    event = _event(frame)
    assert (event.request.bytes_in, event.request.bytes_out) == (0, 0)


def test_unknown_frame_types_come_back_as_unknown_frames() -> None:
    decoded = decode_frame(b'{"type":"heartbeat","seq":1}')
    assert decoded == UnknownFrame("heartbeat", {"type": "heartbeat", "seq": 1})
    untyped = decode_frame(b'{"kind":"request_opened"}')
    assert isinstance(untyped, UnknownFrame)
    assert untyped.type is None


# -- decision requests and decisions ---------------------------------------------


def test_decision_request_decodes() -> None:
    frame = decision_request_frame("example.org", request_id="7b0c", port=80)
    decoded = decode_frame(line(frame))
    assert decoded == DecisionRequest("7b0c", "s-1", "example.org", 80, "http")


def test_decisions_encode_as_the_sidecar_expects() -> None:
    assert json.loads(Decision.allow("7b0c").to_line()) == {
        "type": "decision",
        "id": "7b0c",
        "action": "allow",
    }
    denial = Decision.deny("7b0c", "not needed for this task").to_line()
    assert denial.endswith(b"\n")
    assert denial.count(b"\n") == 1
    assert json.loads(denial) == {
        "type": "decision",
        "id": "7b0c",
        "action": "deny",
        "reason": "not needed for this task",
    }
    assert "reason" not in json.loads(Decision.deny("x").to_line())
    # A reason with a newline cannot break the framing.
    assert Decision.deny("x", "a\nb").to_line().count(b"\n") == 1


# -- malformed lines ---------------------------------------------------------------


def _with(path: str, value: Any) -> bytes:
    frame: dict[str, Any] = event_frame("request_closed", method="GET", status=200)
    target = frame
    *parents, leaf = path.split(".")
    for parent in parents:
        target = target[parent]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return line(frame)


_DELETE: Any = object()


def _request_with(key: str, value: Any) -> bytes:
    """A valid ``decision_request`` line with ``key`` set to ``value`` (or deleted)."""
    frame = {"type": "decision_request", "id": "d", "session_id": "s", "host": "h", "port": 443}
    frame["scheme"] = "https"
    if value is _DELETE:
        del frame[key]
    else:
        frame[key] = value
    return json.dumps(frame).encode()


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b"not json", "JSON"),
        (b'{"type":"event"', "JSON"),
        (b"[1,2]", "object"),
        (b'"event"', "object"),
        (_with("kind", 3), "event.kind"),
        (_with("request", None), "event.request"),
        (_with("at", _DELETE), "event.at"),
        (_with("at", "yesterday"), "RFC 3339"),
        (_with("reason", 1), "event.reason"),
        (_with("matched_rule", {"index": "0", "kind": "deny"}), "matched_rule.index"),
        (_with("matched_rule", {"index": -1, "kind": "deny"}), "matched_rule.index"),
        (_with("matched_rule", [0, "deny"]), "matched_rule"),
        (_with("request.port", "443"), "event.request.port"),
        (_with("request.port", True), "event.request.port"),
        (_with("request.host", _DELETE), "event.request.host"),
        (_with("request.id", 7), "event.request.id"),
        (_with("request.response_status", 200.0), "response_status"),
        (_with("request.request_headers", {"a": 1}), "request_headers"),
        (_with("request.request_headers", ["a"]), "request_headers"),
        (_with("request.started_at", None), "started_at"),
        (_with("request.finished_at", 5), "finished_at"),
        (b'{"type":"decision_request","id":"d","host":"h","port":"443","scheme":"https"}', "port"),
        (b'{"type":"decision_request","host":"h","port":443,"scheme":"https"}', "id"),
        (_request_with("id", 7), r"decision_request\.id: must be a string$"),
        (_request_with("host", None), r"decision_request\.host: must be a string$"),
        (_request_with("port", True), r"decision_request\.port: must be an integer$"),
        (_request_with("port", 443.0), r"decision_request\.port: must be an integer$"),
        (_request_with("scheme", _DELETE), r"decision_request\.scheme: must be a string$"),
        (_request_with("session_id", 1), r"decision_request\.session_id: must be a string or"),
    ],
)
def test_malformed_lines_raise_an_error_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(MalformedFrameError, match=field) as info:
        decode_frame(raw)
    assert "sk-live" not in str(info.value)


_NOT_SENT = {"extra", "started_at_text", "finished_at_text"}
_SENT_REQUEST = [f.name for f in dataclasses.fields(Request) if f.name not in _NOT_SENT]
_SENT_DECISION_REQUEST = [f.name for f in dataclasses.fields(DecisionRequest) if f.name != "extra"]


@pytest.mark.parametrize("key", _SENT_REQUEST)
def test_every_request_field_is_read_and_checked_from_its_declaration(key: str) -> None:
    # The dataclass is the one declaration of the wire fields (issue 25 item 4):
    # a field added there is read, type-checked and named in errors with no other edit.
    with pytest.raises(MalformedFrameError, match=rf"^event\.request\.{key}: must "):
        decode_frame(_with(f"request.{key}", [1]))
    frame = event_frame("request_closed", method="GET", path="/", headers={"a": "b"}, status=200)
    frame["request"]["finished_at"] = "2026-11-28T19:37:08Z"
    decoded = _event(frame).request
    assert all(getattr(decoded, name) is not None for name in _SENT_REQUEST)


@pytest.mark.parametrize("key", _SENT_DECISION_REQUEST)
def test_every_decision_request_field_is_checked_from_its_declaration(key: str) -> None:
    with pytest.raises(MalformedFrameError, match=rf"^decision_request\.{key}: must "):
        decode_frame(_request_with(key, [1]))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"event","n":' + b"1" * 4301 + b"}",
        b'  {"type":"decision_request","id":"d","host":"h","port":' + b"4" * 9000 + b"}  ",
        b"-" + b"7" * 5000,
    ],
)
def test_integers_past_the_digit_limit_are_malformed_not_a_traceback(raw: bytes) -> None:
    with pytest.raises(MalformedFrameError, match="4,300 digits"):
        decode_frame(raw)


def test_errors_never_echo_the_line() -> None:
    with pytest.raises(MalformedFrameError) as info:
        decode_frame(b'{"type":"event","kind":"x","secret":"sk-live-123"')
    assert "sk-live-123" not in str(info.value)


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_malformed(raw: bytes) -> None:
    with contextlib.suppress(MalformedFrameError):
        decode_frame(raw)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=8), children, max_size=3)
        ),
        max_leaves=10,
    ),
    st.sampled_from(["event", "decision_request"]),
)
def test_any_json_object_decodes_or_raises_malformed(payload: Any, frame_type: str) -> None:
    frame = {"type": frame_type, "request": payload, "kind": payload, "at": payload}
    with contextlib.suppress(MalformedFrameError):
        decode_frame(json.dumps(frame))


# -- redaction -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "Proxy-Authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "x-amz-security-token",
        "x-auth-token",
        "openai-apikey",
    ],
)
def test_credential_headers_are_redacted_by_default(name: str) -> None:
    assert Redactor().headers({name: "s3cr3t"}) == {name: REDACTED}


# Round 2: each of these was shown in clear (header, then the path it rides in).
CREDENTIALS_SHOWN_BEFORE = [
    ("ocp-apim-subscription-key", None),  # Azure API Management
    ("x-functions-key", None),  # Azure Functions
    ("x-access-key", None),
    ("X-Api-Access-Key", None),
    ("x-client-private-key", None),
    (None, "/v1beta/models/gemini:generateContent?key=AIzaSyA"),  # Google / Gemini
    (None, "/container/blob.txt?sv=2022-11-02&se=2026-12-01&sp=r&sig=abc%2Bdef%3D"),  # SAS
    (None, "/oauth/callback?code=4%2F0AY0e-g7&state=xyz"),  # OAuth authorization code
    (None, "/x?access_key=AKIA123&page=2"),
    (None, "/x?subscription-key=abc"),
    (None, "/x?pwd=hunter2"),
    (None, "/x?id_jwt=eyJhbGciOi"),
]


@pytest.mark.parametrize(("header", "path"), CREDENTIALS_SHOWN_BEFORE)
def test_common_credentials_are_redacted_by_default(header: str | None, path: str | None) -> None:
    redactor = Redactor()
    if header is not None:
        assert redactor.headers({header: "s3cr3t", "accept": "*/*"}) == {
            header: REDACTED,
            "accept": "*/*",
        }
    if path is not None:
        shown = redactor.path(path)
        assert shown is not None
        secret_names = {"key", "sig", "code", "access_key", "subscription-key", "pwd", "id_jwt"}
        for pair in shown.partition("?")[2].split("&"):
            name, _, value = pair.partition("=")
            assert (value == REDACTED) == (name in secret_names), (name, shown)


@pytest.mark.parametrize(
    "name", ["accept", "content-type", "user-agent", "x-request-id", "page", "sv", "se", "state"]
)
def test_ordinary_names_stay_visible(name: str) -> None:
    assert not Redactor().is_sensitive(name)


def test_ordinary_headers_and_show_secrets_are_left_alone() -> None:
    headers = {"accept": "*/*", "user-agent": "curl/8", "authorization": "Bearer t"}
    assert Redactor().headers(headers) == {**headers, "authorization": REDACTED}
    assert Redactor(enabled=False).headers(headers) == headers
    assert Redactor().headers(None) is None


def test_policy_patterns_add_to_the_defaults_case_insensitively() -> None:
    redactor = Redactor(["X-Tenant-*", "x-ou?"])
    assert redactor.headers({"x-tenant-id": "a", "X-OUR": "b", "x-other": "c"}) == {
        "x-tenant-id": REDACTED,
        "X-OUR": REDACTED,
        "x-other": "c",
    }


def test_sensitive_query_parameters_are_redacted_in_paths() -> None:
    redactor = Redactor()
    assert (
        redactor.path("/v1/x?api_key=abc&page=2&access_token=t#frag")
        == f"/v1/x?api_key={REDACTED}&page=2&access_token={REDACTED}#frag"
    )
    assert redactor.path("/v1/x?api%5Fkey=abc") == f"/v1/x?api%5Fkey={REDACTED}"
    assert redactor.path("/plain/path") == "/plain/path"
    assert redactor.path(None) is None
    assert Redactor(enabled=False).path("/x?token=t") == "/x?token=t"


def test_request_timestamps_keep_their_text() -> None:
    line = (
        b'{"type":"event","kind":"request_closed","at":"2026-11-28T19:37:08.123456789Z",'
        b'"request":{"id":"r","host":"h","port":443,"scheme":"https","bytes_in":0,'
        b'"bytes_out":0,"started_at":"2026-11-28T19:37:07.987654321Z",'
        b'"finished_at":"2026-11-28T19:37:08.000000001Z"}}'
    )
    event = decode_frame(line)
    assert isinstance(event, Event)
    assert event.at_text == "2026-11-28T19:37:08.123456789Z"
    assert event.request.started_at_text == "2026-11-28T19:37:07.987654321Z"
    assert event.request.finished_at_text == "2026-11-28T19:37:08.000000001Z"
    assert event.request.started_at.microsecond == 987654
