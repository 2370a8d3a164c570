"""The event view: what `condukt-egress events` shows, filtered, redacted, formatted, counted."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from condukt_egress.control import ChannelStats
from condukt_egress.events import decode_frame
from condukt_egress.eventview import EventView, to_json
from condukt_egress.redaction import Redactor
from tests.sidecar_double import event_frame, line

# -- filters and formats -----------------------------------------------------------------


def test_filters_redaction_text_lines_and_the_count_are_the_library_s() -> None:
    # Issue 25 item 7: the CLI's View is now library code a service can use.
    out = io.StringIO()
    view = EventView(
        fmt="text",
        redactor=Redactor(),
        kinds=frozenset({"request_closed"}),
        hosts=("*.example.com",),
        count=1,
        out=out,
    )
    other_kind = event_frame("request_opened", host="api.example.com")
    other_host = event_frame("request_closed", host="api.example.org")
    shown = event_frame(
        "request_closed", host="api.example.com", path="/v1?api_key=sk-live-1", status=200
    )
    assert [view.frame(decode_frame(line(f))) for f in (other_kind, other_host)] == [False, False]
    assert view.frame(decode_frame(line(shown))) is True
    assert view.finished.is_set()
    assert view.frame(decode_frame(line(shown))) is False  # the count is reached
    (row,) = out.getvalue().splitlines()
    assert "request_closed" in row
    assert "api.example.com:443 /v1?api_key=[REDACTED]" in row
    assert "sk-live" not in row


# -- the summary ------------------------------------------------------------------------


def test_per_host_counts_stay_bounded_when_every_request_names_a_new_host() -> None:
    # Round 2: the per-host summary grew ~270 bytes per distinct host, forever.
    summary = io.StringIO()
    view = EventView(fmt="json", redactor=Redactor(), out=io.StringIO(), err=summary)
    frequent = event_frame("request_allowed", host="Api.Example.com")
    for i in range(5000):
        view.frame(decode_frame(line(frequent)))
        view.frame(decode_frame(line(event_frame("request_denied", host=f"h{i}." + "x" * 300))))
    assert len(view.by_host.counts) <= 1024
    assert all(len(host) <= 253 for host in view.by_host.counts)
    top, others = view.by_host.top(20)
    assert top.most_common(1) == [("api.example.com", 5000)]
    assert top.total() + others == 10000
    view.summary(ChannelStats(), 1.0)
    err = summary.getvalue()
    assert "by host: api.example.com 5000, " in err
    assert f", others {others}" in err


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.text(),  # lone surrogates included: a JSON escape can carry one
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _JSON_VALUES, max_size=8))
def test_every_record_is_written_as_utf8_json_that_parses_back_to_it(
    record: dict[str, Any],
) -> None:
    text = to_json(record)
    text.encode("utf-8")  # strict: what a UTF-8 stdout does
    assert "\n" not in text  # one record, one line
    assert text.isprintable()  # nothing a terminal would act on (security round 3)
    assert json.loads(text) == record


def test_json_escapes_characters_past_the_bmp_as_surrogate_pairs() -> None:
    text = to_json({"host": "tag\U000e0041.example"})  # a tag character (format, invisible)
    assert text == '{"host":"tag\\udb40\\udc41.example"}'
    assert json.loads(text) == {"host": "tag\U000e0041.example"}
