"""``decode_frame``'s orjson fast path agrees with the standard library on every line.

The fast path trusts orjson only for known frames that pass every check and
carry no unknown key; everything else goes to :func:`decode_frame_exact`
(json.loads). These tests generate frames the sidecar writes and frames no
sidecar writes (wrong types, integers past 64 bits, lone surrogates, NaN,
unknown keys, 4,301-digit integers, blanks) and require the same frame,
``extra`` and exact timestamp text included, or the same error.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from condukt_egress import events
from condukt_egress.events import (
    DecisionRequest,
    MalformedFrameError,
    decode_frame,
    decode_frame_exact,
)
from tests.sidecar_double import all_kinds, decision_request_frame, event_frame, line


def _snapshot(value: Any) -> Any:
    """Every field of a frame, nested frames and mappings included, as plain data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            tuple((f.name, _snapshot(getattr(value, f.name))) for f in dataclasses.fields(value)),
        )
    if hasattr(value, "items"):
        return tuple((k, _snapshot(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_snapshot(v) for v in value)
    return (type(value).__name__, repr(value))  # NaN == NaN, 1 != 1.0, True != 1


def _outcome(decode: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "frame", _snapshot(decode(raw))
    except MalformedFrameError as exc:
        return "error", str(exc)


def assert_same(raw: bytes) -> None:
    assert _outcome(decode_frame, raw) == _outcome(decode_frame_exact, raw), raw[:300]


# -- frames as the sidecar writes them, and as nobody should --------------------------

_HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**63) - 1, -(2**80)]),
    st.floats(allow_nan=False),
    st.text(max_size=6),  # lone surrogates included
    st.sampled_from(["\ud800", "a\udfffb", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3) | st.integers(), max_size=2),
)
_EVENT_PATHS = [
    "kind",
    "reason",
    "at",
    "matched_rule",
    "matched_rule.index",
    "matched_rule.kind",
    "matched_rule.extra_key",
    "extra_key",
    *(f"request.{key}" for key in sorted(events._REQUEST_KEYS)),
    "request.extra_key",
    "request.request_headers.x-k",
]
_REQUEST_PATHS = [*sorted(events._DECISION_REQUEST_KEYS - {"type"}), "extra_key"]


def _base_frames() -> st.SearchStrategy[dict[str, Any]]:
    sidecar = [*all_kinds(), decision_request_frame("api.example.org")]
    closed = event_frame(
        "request_closed", method="POST", path="/v1?q=1", headers={"a": "b"}, status=200,
        rule=(1, "allow"), finished_at="2026-11-28T19:37:08.5Z", at="2026-11-28T19:37:08.123Z",
    )  # fmt: skip
    return st.sampled_from([*sidecar, closed]).map(lambda f: json.loads(json.dumps(f)))


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    frame = draw(_base_frames())
    paths = _EVENT_PATHS if frame["type"] == "event" else _REQUEST_PATHS
    for path in draw(st.lists(st.sampled_from(paths), max_size=3)):
        *parents, leaf = path.split(".")
        target: Any = frame
        for parent in parents:
            if not isinstance(target, dict) or not isinstance(target.get(parent), dict):
                target = None
                break
            target = target[parent]
        if target is None:
            continue
        if draw(st.booleans()) and leaf in target:
            del target[leaf]
        else:
            target[leaf] = draw(_HOSTILE)
    if draw(st.integers(0, 9)) == 0:
        frame["type"] = draw(st.sampled_from(["decision", "Event", "", None, 1]))
    return frame


@st.composite
def _lines(draw: st.DrawFn) -> bytes:
    text = json.dumps(draw(_mutated()), ensure_ascii=draw(st.booleans()))
    blanks = st.sampled_from(["", " ", "\t", "\r", "  \n"])
    text = draw(blanks) + text + draw(blanks)
    # A lone surrogate in a str becomes bytes that are not UTF-8, as on the wire.
    return text.encode("utf-8", "surrogatepass")


@given(_lines())
def test_the_fast_path_and_the_standard_parser_agree_on_any_frame(raw: bytes) -> None:
    assert_same(raw)


def _event_with(member: bytes) -> bytes:
    """A valid event line with one more member (a later one replaces an earlier)."""
    head = line(event_frame("request_denied", rule=(0, "deny"))).rstrip(b"}\n")
    return head + b"," + member + b"}"


@pytest.mark.parametrize(
    "raw",
    [
        *(line(frame) for frame in all_kinds()),
        line(decision_request_frame("h.example")),
        b'{"type":"event","kind":"request_opened","request":{"id":"r","host":"h","port":443,'
        b'"scheme":"https","started_at":"2026-11-28T19:37:07Z","bytes_in":18446744073709551616},'
        b'"at":"2026-11-28T19:37:07Z"}',
        b'{"type":"decision_request","id":"d","host":"h","port":443,"scheme":"https",'
        b'"next":123456789012345678901234567890}',
        b'{"type":"decision_request","id":"d","host":"h","port":443,"scheme":"https","n":NaN}',
        b'{"type":"decision_request","id":"\\ud800","host":"h","port":443,"scheme":"https"}',
        b'{"type":"event","kind":"request_denied","matched_rule":{"index":0,"kind":"deny","x":'
        + b"1" * 4301
        + b'},"request":{"id":"r","host":"h","port":443,"scheme":"https",'
        b'"started_at":"2026-11-28T19:37:07Z"},"at":"2026-11-28T19:37:07Z"}',
        b'{"type":"decision_request","id":"d","id":"e","host":"h","port":443,"scheme":"https"}',
        _event_with(b'"next":123456789012345678901234567890'),
        _event_with(
            b'"request":{"id":"r","host":"h","port":443,"scheme":"https",'
            b'"started_at":"2026-11-28T19:37:07Z","next":18446744073709551616}'
        ),
        # Nested deeper than json.loads allows (about 1,000) but not orjson (1,024).
        _event_with(
            b'"matched_rule":{"index":0,"kind":"deny","x":' + b"[" * 1010 + b"]" * 1010 + b"}"
        ),
        _event_with(b'"next":' + b"[" * 1010 + b"]" * 1010),
        b'{"type":"later","payload":{"n":18446744073709551616}}',
        b"\xef\xbb\xbf{}",
        b"[" * 2000 + b"]" * 2000,
    ],
    ids=lambda raw: raw[:40].decode("utf-8", "replace"),
)
def test_the_two_paths_agree_where_orjson_and_json_loads_differ(raw: bytes) -> None:
    assert_same(raw)


def test_what_orjson_reads_differently_is_decoded_by_json_loads() -> None:
    big = b'{"type":"decision_request","id":"d","host":"h","port":443,"scheme":"https","n":%d}'
    frame = decode_frame(big % 2**70)
    assert isinstance(frame, DecisionRequest)
    assert frame.extra == {"n": 2**70}  # an int, as json.loads reads it; orjson gives a float
