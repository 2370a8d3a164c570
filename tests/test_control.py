"""The control-channel client, driven end to end by the sidecar double."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from condukt_egress.control import (
    Backoff,
    ControlClient,
    DecisionCache,
    DecisionSent,
    LineSplitter,
    TcpTarget,
    decider_budget,
    decision_key,
)
from condukt_egress.errors import ConfigError, ControlChannelError
from condukt_egress.events import Decision, DecisionRequest, Event, Frame, UnknownFrame
from condukt_egress.naming import session_names
from condukt_egress.portforward import PortForwardTarget, find_sidecar, load_api_client
from tests.sidecar_double import (
    SidecarDouble,
    all_kinds,
    decision_request_frame,
    event_frame,
    line,
)

_T = TypeVar("_T")
FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(asyncio.wait_for(coro, 30))


class Harness:
    """A double, a client on it, and everything the client reported."""

    def __init__(self, double: SidecarDouble, client: ControlClient) -> None:
        self.double = double
        self.client = client
        self.notices: list[str] = []
        self.sent: list[DecisionSent] = []
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def _pump(self) -> None:
        try:
            async for frame in self.client.frames():
                self.frames.put_nowait(frame)
        except ControlChannelError as exc:
            self.error = exc

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump())

    async def take(self, n: int) -> list[Frame]:
        return [await asyncio.wait_for(self.frames.get(), 10) for _ in range(n)]

    async def events(self, n: int) -> list[Event]:
        frames = await self.take(n)
        assert all(isinstance(f, Event) for f in frames), frames
        return [f for f in frames if isinstance(f, Event)]

    async def finish(self) -> None:
        await self.client.aclose()
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)


@contextlib.asynccontextmanager
async def harness(**options: Any) -> AsyncIterator[Harness]:
    async with SidecarDouble() as double:
        h_notices: list[str] = []
        h_sent: list[DecisionSent] = []
        options.setdefault("backoff", FAST)
        client = ControlClient(
            TcpTarget("127.0.0.1", double.port),
            on_notice=h_notices.append,
            on_decision=h_sent.append,
            **options,
        )
        h = Harness(double, client)
        h.notices, h.sent = h_notices, h_sent
        h.start()
        await double.wait_for_peer()
        try:
            yield h
        finally:
            await h.finish()


# -- line splitting -----------------------------------------------------------------


def test_splitter_handles_partial_lines_crlf_and_blank_lines() -> None:
    s = LineSplitter(100)
    assert s.feed(b'{"a":1}\r\n\r\n  \n{"b"') == [b'{"a":1}']
    assert s.feed(b":2}") == []
    assert s.feed(b"\n\n{") == [b'{"b":2}']
    assert s.finish() == b"{"
    assert s.finish() == b""


def test_splitter_skips_over_long_lines_without_losing_neighbours() -> None:
    s = LineSplitter(10)
    out = s.feed(b"ok-1\n" + b"x" * 25 + b"\nok-2\n")
    assert out == [b"ok-1", b"ok-2"]
    # An over-long line arriving in pieces is dropped up to its newline, bounded.
    assert s.feed(b"y" * 8) == []
    assert s.feed(b"y" * 8) == []
    assert s.feed(b"y" * 1000) == []
    assert s.feed(b"yy\nok-3\n") == [b"ok-3"]
    assert s.oversized == 2


@given(
    st.lists(st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b), max_size=20),
    st.lists(st.integers(min_value=1, max_value=40), max_size=40),
    st.booleans(),
)
def test_any_split_of_a_stream_yields_the_same_lines(
    lines: list[bytes], cuts: list[int], crlf: bool
) -> None:
    ending = b"\r\n" if crlf else b"\n"
    stream = b"".join(part + ending for part in lines)
    s = LineSplitter(64)
    out: list[bytes] = []
    offset = 0
    for cut in cuts:
        out += s.feed(stream[offset : offset + cut])
        offset += cut
    out += s.feed(stream[offset:])
    # The splitter strips one trailing \r: the CR of a CRLF, or a stray one.
    kept = [part if crlf else part.removesuffix(b"\r") for part in lines]
    expected = [part for part in kept if part and not part.isspace()]
    assert out == expected
    assert s.finish() == b""


# -- small pieces ----------------------------------------------------------------------


def test_backoff_grows_and_is_capped() -> None:
    b = Backoff(initial=0.5, maximum=4.0, factor=2.0, jitter=0.0)
    assert [b.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittery = Backoff(initial=1.0, maximum=3.0, jitter=0.5)
    assert all(1.0 <= jittery.delay(0) <= 1.5 for _ in range(50))
    assert jittery.delay(1000) <= 3.0


def test_cache_expires_and_evicts_least_recently_used() -> None:
    cache = DecisionCache(ttl=10, max_entries=2)
    a, b, c = (("a", 443, "https"), ("b", 443, "https"), ("c", 443, "https"))
    cache.put(("a.example", 443, "https"), "allow", None, now=0)
    assert cache.get(("a.example", 443, "https"), now=5) == ("allow", None)
    assert cache.get(("a.example", 443, "https"), now=10) is None
    cache.put(a, "allow", None, now=0)
    cache.put(b, "deny", "r", now=0)
    cache.get(a, now=1)
    cache.put(c, "allow", None, now=1)
    assert cache.get(b, now=1) is None
    assert cache.get(a, now=1) == ("allow", None)
    assert len(cache) == 2
    hit = cache.get(a, now=1)
    assert hit is not None
    assert (hit.action, hit.reason) == ("allow", None)  # named, not read as hit[0]


def test_decoding_a_line_never_starts_the_decider() -> None:
    # Issue 25 item 7: _decode decoded and also scheduled the decider; reading
    # a line is now pure bookkeeping (no event loop needed), answering is the
    # reader's next step.
    client = ControlClient(TcpTarget("127.0.0.1", 1), decider=lambda r: "allow")
    frame = client._decode(line(decision_request_frame("a.example", request_id="d1")))
    assert isinstance(frame, DecisionRequest)
    assert client.stats.decision_requests == 1
    assert not client._tasks


def test_decision_key_is_host_port_and_scheme() -> None:
    request = DecisionRequest("1", None, "API.GitHub.com", 443, "HTTPS")
    assert decision_key(request) == ("api.github.com", 443, "https")
    assert decision_key(DecisionRequest("2", None, "api.github.com", 80, "http")) != (
        decision_key(request)
    )


def test_decider_budget_stays_below_the_sidecar_timeout() -> None:
    assert decider_budget(5000) == 4.0
    assert decider_budget(60000) == 59.0
    assert decider_budget(100) == pytest.approx(0.08)
    with pytest.raises(ValueError, match="decide_timeout_ms"):
        decider_budget(0)


def test_client_rejects_a_decider_timeout_at_or_above_the_sidecars() -> None:
    with pytest.raises(ValueError, match="below the sidecar's decide_timeout_ms"):
        ControlClient(TcpTarget("127.0.0.1", 1), decide_timeout_ms=1000, decider_timeout=1.0)
    with pytest.raises(ValueError, match="cache_ttl"):
        ControlClient(TcpTarget("127.0.0.1", 1), cache_ttl=-1)


# -- events through the client -----------------------------------------------------------


def test_a_frame_with_a_huge_integer_is_skipped_and_its_neighbours_kept() -> None:
    # Round 2: decode_frame raised a bare ValueError past Python's 4,300-digit limit;
    # the read loop died and the frame before it, in the same chunk, was lost.
    async def scenario() -> None:
        async with harness() as h:
            kinds = all_kinds()
            huge = b'{"type":"event","kind":"request_opened","n":' + b"9" * 5000 + b"}\n"
            await h.double.send(kinds[0], huge, kinds[1])
            frames = await h.take(2)
            assert [f.kind for f in frames if isinstance(f, Event)] == [
                kinds[0]["kind"],
                kinds[1]["kind"],
            ]
            assert h.client.stats.malformed_lines == 1
            assert any("4,300 digits" in n for n in h.notices)

    run(scenario())


def test_events_of_every_kind_arrive_in_order_between_junk() -> None:
    async def scenario() -> None:
        async with harness() as h:
            kinds = all_kinds()
            await h.double.send(
                kinds[0],
                b"not json at all\n",
                kinds[1],
                b"\xff\xfe\xfd\n",
                b"\r\n\n   \n",
                b"[1,2,3]\n",
                kinds[2],
                b'{"type":"event","kind":"request_opened"}\n',  # no request
                b'{"type":"heartbeat","n":1}\n',
                kinds[3],
                kinds[4],
            )
            frames = await h.take(6)
            assert isinstance(frames[3], UnknownFrame)
            events = [f for f in frames if isinstance(f, Event)]
            assert [e.kind for e in events] == [k["kind"] for k in kinds]
            assert h.client.stats.malformed_lines == 4
            assert h.client.stats.unknown_frames == 1
            assert h.client.stats.events == 5
            assert sum("skipped line" in n for n in h.notices) == 4
            # The notices never repeat the offending bytes.
            assert not any("not json at all" in n for n in h.notices)

    run(scenario())


def test_frames_split_across_writes_and_crlf_are_reassembled() -> None:
    async def scenario() -> None:
        async with harness() as h:
            frames = all_kinds()
            stream = b"".join(line(f).replace(b"\n", b"\r\n") for f in frames)
            sizes = [1, 2, 3, 50, 7, 130, 1, 1, 400]
            await h.double.send_split(stream, sizes)
            events = await h.events(5)
            assert [e.request.id for e in events] == [f["request"]["id"] for f in frames]
            assert h.client.stats.malformed_lines == 0

    run(scenario())


def test_over_long_lines_are_skipped_and_counted() -> None:
    async def scenario() -> None:
        async with harness(max_line_bytes=2048) as h:
            huge = event_frame("request_closed", headers={"x-pad": "p" * 5000})
            before, after = event_frame("request_opened"), event_frame("request_closed")
            await h.double.send(before, huge, after)
            events = await h.events(2)
            assert [e.request.id for e in events] == [
                before["request"]["id"],
                after["request"]["id"],
            ]
            assert h.client.stats.oversized_lines == 1

    run(scenario())


# -- decisions -------------------------------------------------------------------------


def test_decisions_reach_the_sidecar_with_the_right_id() -> None:
    async def decide(request: DecisionRequest) -> Any:
        return "allow" if request.host == "ok.example" else ("deny", "off-task")

    async def scenario() -> None:
        async with harness(decider=decide, cache_ttl=0) as h:
            allowed = decision_request_frame("ok.example", request_id="7b0c-1")
            denied = decision_request_frame("no.example", request_id="7b0c-2")
            answers = await asyncio.gather(h.double.ask(allowed), h.double.ask(denied))
            assert answers[0] == {"type": "decision", "id": "7b0c-1", "action": "allow"}
            assert answers[1] == {
                "type": "decision",
                "id": "7b0c-2",
                "action": "deny",
                "reason": "off-task",
            }
            requests = await h.take(2)
            assert {r.id for r in requests if isinstance(r, DecisionRequest)} == {
                "7b0c-1",
                "7b0c-2",
            }
            assert h.client.stats.decisions_sent == 2
            assert {(s.request.id, s.decided_by) for s in h.sent} == {
                ("7b0c-1", "decider"),
                ("7b0c-2", "decider"),
            }

    run(scenario())


async def _received(double: SidecarDouble, n: int) -> list[dict[str, Any]]:
    """What the double has read from the client, once it holds ``n`` frames."""
    for _ in range(500):
        if len(double.received) >= n:
            break
        await asyncio.sleep(0.01)
    return double.received


def test_closing_sends_the_decisions_under_way_first() -> None:
    async def slow(request: DecisionRequest) -> Any:
        await asyncio.sleep(0.2)
        return "allow"

    async def scenario() -> None:
        async with harness(decider=slow, cache_ttl=0) as h:
            await h.double.send(decision_request_frame("ok.example", request_id="7b0c-late"))
            await h.take(1)  # read, and handed to the decider
            await h.client.aclose()  # while the decider is still thinking
            received = await _received(h.double, 1)
            assert received == [{"type": "decision", "id": "7b0c-late", "action": "allow"}]

    run(scenario())


def test_a_sync_decider_runs_off_the_loop_and_is_answered() -> None:
    seen: list[str] = []

    def decide(request: DecisionRequest) -> Any:
        seen.append(threading.current_thread().name)
        return "deny"

    async def scenario() -> None:
        async with harness(decider=decide) as h:
            answer = await h.double.ask(decision_request_frame("x.example", request_id="s1"))
            assert answer == {"type": "decision", "id": "s1", "action": "deny"}
        assert seen == ["condukt-egress-decider"]

    run(scenario())


async def _raises_quoting_host(request: DecisionRequest) -> Any:
    raise RuntimeError(f"no route to {request.host}")


HOSTILE_HOST = "x.example\n2026-01-01 INFO forged line\x1b]0;pwned\x07\x85\u202e\u2028"


@pytest.mark.parametrize("default_notice", [False, True])
def test_a_failing_deciders_notice_escapes_the_host(
    default_notice: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Security round 3: the notice quoted the workspace-chosen host raw, twice
    # (the exception text repeats it), so it could forge log lines.
    async def scenario() -> list[str]:
        async with SidecarDouble() as double:
            notices: list[str] = []
            client = ControlClient(
                TcpTarget("127.0.0.1", double.port),
                decider=_raises_quoting_host,
                on_notice=None if default_notice else notices.append,
            )
            task = asyncio.create_task(client.run())
            await double.wait_for_peer()
            answer = await double.ask(decision_request_frame(HOSTILE_HOST, request_id="h1"))
            assert answer["action"] == "deny"
            await client.aclose()
            await asyncio.wait_for(task, 10)
            return notices

    with caplog.at_level(logging.INFO, logger="condukt_egress.control"):
        notices = run(scenario())
    if default_notice:
        notices = [r.getMessage() for r in caplog.records]
    (failed,) = [n for n in notices if "decider failed" in n]
    assert failed.isprintable(), failed
    assert failed.count("x.example\\n2026-01-01 INFO forged line\\x1b]0;pwned\\x07") == 2
    assert "\\x85\\u202e\\u2028" in failed


async def _raises(request: DecisionRequest) -> Any:
    raise RuntimeError("boom sk-live-123")


async def _hangs(request: DecisionRequest) -> Any:
    await asyncio.sleep(30)
    return "allow"


def _nonsense(request: DecisionRequest) -> Any:
    return "ALLOW"


def _allow_tuple(request: DecisionRequest) -> Any:
    return ("allow", "why not")


def _raises_timeout(request: DecisionRequest) -> Any:
    raise TimeoutError("the decider's own HTTP call timed out")


@pytest.mark.parametrize(
    ("decider", "failure", "reason"),
    [
        (_raises, "raised RuntimeError", "condukt-egress: decider failed"),
        (_hangs, "timed out after 160 ms", "condukt-egress: decider timed out"),
        (_nonsense, "returned 'ALLOW'", "condukt-egress: decider gave an invalid answer"),
        (
            _allow_tuple,
            "returned ('allow', 'why not')",
            "condukt-egress: decider gave an invalid answer",
        ),
        (_raises_timeout, "raised TimeoutError", "condukt-egress: decider failed"),
    ],
)
def test_a_failing_decider_denies_and_is_counted(
    decider: Callable[[DecisionRequest], Any], failure: str, reason: str
) -> None:
    async def scenario() -> None:
        async with harness(decider=decider, decide_timeout_ms=200) as h:
            answer = await h.double.ask(decision_request_frame("x.example", request_id="f1"))
            assert answer == {"type": "decision", "id": "f1", "action": "deny", "reason": reason}
            assert "sk-live" not in json.dumps(answer)
            assert h.client.stats.decider_failures == 1
            (sent,) = h.sent
            assert sent.decided_by == "fail_closed"
            assert sent.failure is not None
            assert sent.failure.startswith(failure)
            assert any("decider failed for x.example:443 (id f1)" in n for n in h.notices)
            # Failures are not cached: the next request asks the decider again.
            await h.double.ask(decision_request_frame("x.example", request_id="f2"))
            assert h.client.stats.decider_failures == 2

    run(scenario())


def test_answers_are_cached_per_host_and_concurrent_asks_share_one_call() -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def decide(request: DecisionRequest) -> Any:
        calls.append(request.host)
        await gate.wait()
        return "allow"

    async def scenario() -> None:
        async with harness(decider=decide, cache_ttl=60) as h:
            first = [
                asyncio.ensure_future(
                    h.double.ask(decision_request_frame("Same.example", request_id=f"c{i}"))
                )
                for i in range(5)
            ]
            while h.client.stats.decision_requests < 5:
                await asyncio.sleep(0.005)
            gate.set()
            answers = await asyncio.gather(*first)
            assert [a["id"] for a in answers] == [f"c{i}" for i in range(5)]
            assert all(a["action"] == "allow" for a in answers)
            later = await h.double.ask(decision_request_frame("same.EXAMPLE", request_id="c9"))
            assert later["action"] == "allow"
            assert calls == ["Same.example"]
            assert h.client.stats.cache_hits == 1
            assert [s.decided_by for s in h.sent][-1] == "cache"

    run(scenario())


def test_an_answer_is_reported_only_after_its_request_was_yielded() -> None:
    # A cached answer was reported (and `events` printed it) before its request.
    log: list[tuple[str, str]] = []

    async def decide(request: DecisionRequest) -> Any:
        return "allow"

    async def scenario() -> None:
        async with SidecarDouble() as double:
            client = ControlClient(
                TcpTarget("127.0.0.1", double.port),
                decider=decide,
                cache_ttl=60,
                backoff=FAST,
                on_decision=lambda s: log.append(("decision", s.request.id)),
            )

            async def consume() -> None:
                async for frame in client.frames():
                    if isinstance(frame, DecisionRequest):
                        log.append(("request", frame.id))
                        await asyncio.sleep(0.02)  # a consumer that awaits between frames

            task = asyncio.create_task(consume())
            await double.wait_for_peer()
            await double.ask(decision_request_frame("api.example.org", request_id="r1"))
            # Two cache hits in one read: each answered at once, reported in turn.
            await double.send(
                decision_request_frame("api.example.org", request_id="r2"),
                decision_request_frame("api.example.org", request_id="r3"),
            )
            while len(log) < 6 or len(double.decisions()) < 3:
                await asyncio.sleep(0.005)
            await client.aclose()
            await asyncio.wait_for(task, 10)
        assert log == [
            ("request", "r1"), ("decision", "r1"),
            ("request", "r2"), ("decision", "r2"),
            ("request", "r3"), ("decision", "r3"),
        ]  # fmt: skip
        assert client.stats.cache_hits == 2

    run(scenario())


def test_an_answer_for_one_port_and_scheme_is_not_replayed_for_another() -> None:
    # Round 2: an allow for api.github.com:443/https was replayed for :80/http.
    calls: list[tuple[str, int, str]] = []

    def decide(request: DecisionRequest) -> Any:
        calls.append((request.host, request.port, request.scheme))
        return "allow" if request.port == 443 else ("deny", "no plain http")

    async def scenario() -> None:
        async with harness(decider=decide, cache_ttl=60) as h:
            tls = await h.double.ask(decision_request_frame("api.github.com", port=443))
            plain = await h.double.ask(decision_request_frame("api.github.com", port=80))
            again = await h.double.ask(decision_request_frame("api.github.com", port=443))
            assert (tls["action"], plain["action"], again["action"]) == ("allow", "deny", "allow")
            assert calls == [("api.github.com", 443, "https"), ("api.github.com", 80, "http")]
            assert h.client.stats.cache_hits == 1

    run(scenario())


def test_concurrent_asks_for_other_ports_do_not_share_an_answer() -> None:
    gate = asyncio.Event()
    calls: list[int] = []

    async def decide(request: DecisionRequest) -> Any:
        calls.append(request.port)
        await gate.wait()
        return "allow" if request.port == 443 else "deny"

    async def scenario() -> None:
        async with harness(decider=decide, cache_ttl=60) as h:
            asks = [
                asyncio.ensure_future(h.double.ask(decision_request_frame("x.example", port=p)))
                for p in (443, 80)
            ]
            while h.client.stats.decision_requests < 2:
                await asyncio.sleep(0.005)
            gate.set()
            tls, plain = await asyncio.gather(*asks)
            assert (tls["action"], plain["action"]) == ("allow", "deny")
            assert sorted(calls) == [80, 443]

    run(scenario())


def test_without_a_decider_requests_are_yielded_and_answered_by_hand() -> None:
    async def scenario() -> None:
        async with harness() as h:
            ask = asyncio.ensure_future(
                h.double.ask(decision_request_frame("m.example", request_id="m1"))
            )
            (request,) = await h.take(1)
            assert isinstance(request, DecisionRequest)
            assert await h.client.send_decision(Decision.deny(request.id, "manual"))
            assert await ask == {
                "type": "decision",
                "id": "m1",
                "action": "deny",
                "reason": "manual",
            }

    run(scenario())


# -- connection life -----------------------------------------------------------------------


def test_reconnects_after_a_drop_and_does_not_glue_partial_lines() -> None:
    async def scenario() -> None:
        async with harness() as h:
            await h.double.send(event_frame("request_opened", request_id="before"))
            await h.double.send(b'{"type":"event","kind":"request_clo')  # cut by the drop
            await h.events(1)
            await h.double.drop_peer()
            await h.double.wait_for_peer()
            await h.double.send(event_frame("request_closed", request_id="after"))
            (after,) = await h.events(1)
            assert after.request.id == "after"
            assert h.client.stats.reconnects == 1
            assert h.client.stats.malformed_lines == 1  # the cut tail, alone
            assert any(
                n.startswith("control channel to 127.0.0.1:") and "dropped" in n for n in h.notices
            )
            assert any(n.startswith("reconnected to 127.0.0.1:") for n in h.notices)
            assert h.double.connections == 2

    run(scenario())


def test_a_decision_made_while_disconnected_is_sent_after_reconnecting() -> None:
    gate = asyncio.Event()

    async def decide(request: DecisionRequest) -> Any:
        await gate.wait()
        return "allow"

    async def scenario() -> None:
        async with harness(decider=decide, decide_timeout_ms=20000) as h:
            await h.double.send(decision_request_frame("late.example", request_id="late-1"))
            while h.client.stats.decision_requests < 1:
                await asyncio.sleep(0.005)
            await h.double.drop_peer()
            while h.client.connected:
                await asyncio.sleep(0.005)
            gate.set()
            while not h.sent:
                await asyncio.sleep(0.005)
            for _ in range(500):
                if h.double.decisions():
                    break
                await asyncio.sleep(0.01)
            assert h.double.decisions() == [{"type": "decision", "id": "late-1", "action": "allow"}]

    run(scenario())


def test_without_reconnect_the_iteration_ends_when_the_channel_drops() -> None:
    async def scenario() -> None:
        async with harness(reconnect=False) as h:
            await h.double.send(event_frame("request_opened"))
            await h.events(1)
            await h.double.drop_peer()
            assert h._task is not None
            await asyncio.wait_for(h._task, 10)
            assert h.error is None
            assert any("closed (closed by the sidecar)" in n for n in h.notices)

    run(scenario())


def test_the_first_connection_failing_is_an_error() -> None:
    async def scenario() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        client = ControlClient(TcpTarget("127.0.0.1", port), on_notice=lambda _m: None)
        with pytest.raises(ControlChannelError, match=rf"127\.0\.0\.1:{port}: .*refused"):
            async for _ in client.frames():
                pass
        await client.aclose()

    run(scenario())


def test_reconnecting_gives_up_after_the_configured_attempts() -> None:
    async def scenario() -> None:
        double = await SidecarDouble().start()
        client = ControlClient(
            TcpTarget("127.0.0.1", double.port),
            backoff=FAST,
            max_reconnect_attempts=2,
            on_notice=lambda _m: None,
        )
        frames = client.frames()
        first = asyncio.ensure_future(anext(frames))
        await double.send(event_frame("request_opened"))
        assert isinstance(await first, Event)
        await double.stop()
        with pytest.raises(ControlChannelError, match=r"gave up reconnecting .* after 2 attempts"):
            await anext(frames)
        await client.aclose()

    run(scenario())


def test_closing_the_client_ends_the_iteration() -> None:
    async def scenario() -> None:
        async with harness() as h:
            await h.client.aclose()
            assert h._task is not None
            await asyncio.wait_for(h._task, 10)
            assert h.error is None

    run(scenario())


# -- the port-forward path, against the kubernetes client's interface -------------------------


def _container(name: str, *ports: int) -> SimpleNamespace:
    return SimpleNamespace(
        name=name, ports=[SimpleNamespace(container_port=p) for p in ports] or None
    )


def _pod(
    name: str,
    *,
    containers: list[SimpleNamespace] | None = None,
    init: list[SimpleNamespace] | None = None,
    phase: str = "Running",
    deleting: bool = False,
) -> SimpleNamespace:
    return SimpleNamespace(
        metadata=SimpleNamespace(
            name=name, deletion_timestamp=datetime.now(UTC) if deleting else None
        ),
        spec=SimpleNamespace(
            containers=containers or [_container("workspace")],
            init_containers=init,
        ),
        status=SimpleNamespace(phase=phase),
    )


class FakeApiError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"({status}) Reason: {reason}")
        self.status = status
        self.reason = reason


class FakeCoreV1:
    """The three ``CoreV1Api`` methods the port-forward path calls."""

    def __init__(self, pods: list[SimpleNamespace]) -> None:
        self.pods = pods
        self.selectors: list[str] = []

    def read_namespaced_pod(self, name: str, namespace: str, **_: Any) -> SimpleNamespace:
        for pod in self.pods:
            if pod.metadata.name == name:
                return pod
        raise FakeApiError(404, "Not Found")

    def list_namespaced_pod(self, namespace: str, label_selector: str, **_: Any) -> Any:
        self.selectors.append(label_selector)
        return SimpleNamespace(items=self.pods)

    def connect_get_namespaced_pod_portforward(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("only called through kubernetes.stream.portforward")


class FakePortForward:
    """``kubernetes.stream.ws_client.PortForward``'s interface over a socket pair.

    The far end of the pair is bridged to the sidecar double over TCP, standing in
    for the API server's websocket.
    """

    def __init__(self, port: int, double_port: int, error: str | None = None) -> None:
        self.port = port
        self._mine, self._theirs = socket.socketpair()
        self._error = error
        self.closed = False
        if error is not None:
            self._theirs.close()  # the API server closes the data channel on error
            return
        upstream = socket.create_connection(("127.0.0.1", double_port))
        self._open = 2
        self._lock = threading.Lock()
        for src, dst in ((self._theirs, upstream), (upstream, self._theirs)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self._lock:
            self._open -= 1
            if self._open == 0:
                src.close()
                dst.close()

    def socket(self, port: int) -> socket.socket:
        assert port == self.port
        return self._mine

    def error(self, port: int) -> str | None:
        return self._error

    def close(self) -> None:
        self.closed = True
        self._mine.close()


def _target(
    core: FakeCoreV1, double_port: int, error: str | None = None, **kwargs: Any
) -> tuple[PortForwardTarget, list[tuple[str, str, str]], list[FakePortForward]]:
    calls: list[tuple[str, str, str]] = []
    forwards: list[FakePortForward] = []

    def portforward(method: Callable[..., Any], name: str, namespace: str, *, ports: str) -> Any:
        assert method == core.connect_get_namespaced_pod_portforward
        calls.append((name, namespace, ports))
        forward = FakePortForward(int(ports), double_port, error)
        forwards.append(forward)
        return forward

    kwargs.setdefault("pod", "session-pod")
    target = PortForwardTarget(
        namespace="agents", api_client=object(), portforward=portforward, **kwargs
    )
    target._core = core
    return target, calls, forwards


def test_find_sidecar_by_name_or_control_port() -> None:
    assert find_sidecar(_pod("p", init=[_container("condukt-egress")])) == "condukt-egress"
    assert find_sidecar(_pod("p", containers=[_container("proxy", 15002)])) == "proxy"
    assert find_sidecar(_pod("p", containers=[_container("proxy", 15002)]), port=9000) is None
    assert find_sidecar(_pod("p")) is None


def test_port_forward_streams_events_and_carries_decisions() -> None:
    sidecar = _container("condukt-egress", 15001, 15002)

    async def scenario() -> None:
        async with SidecarDouble() as double:
            core = FakeCoreV1([_pod("session-pod", init=[sidecar])])
            target, calls, forwards = _target(core, double.port)
            client = ControlClient(target, decider=lambda r: "allow", on_notice=lambda _m: None)
            seen: list[Frame] = []
            pump = asyncio.ensure_future(client.run(seen.append))
            await double.send(event_frame("request_opened", request_id="pf-1"))
            answer = await double.ask(decision_request_frame("a.example", request_id="pf-d"))
            assert answer == {"type": "decision", "id": "pf-d", "action": "allow"}
            await client.aclose()
            await pump
            assert isinstance(seen[0], Event)
            assert seen[0].request.id == "pf-1"
            assert isinstance(seen[1], DecisionRequest)
            assert calls == [("session-pod", "agents", "15002")]
            assert forwards[0].closed

    run(scenario())


def test_port_forward_selects_the_pod_by_session_label() -> None:
    sidecar = _container("condukt-egress")
    names = session_names("Run #42")
    pods = [
        _pod("old", init=[sidecar], deleting=True),
        _pod("new", init=[sidecar]),
        _pod("pending", init=[sidecar], phase="Pending"),
    ]
    core = FakeCoreV1(pods)
    target, _calls, _fw = _target(core, 1, pod=None, session_id="Run #42")
    assert target._resolve_pod() == "new"
    assert core.selectors == [f"{names.label_key}={names.label_value}"]


@pytest.mark.parametrize(
    ("pods", "kwargs", "message"),
    [
        ([], {"pod": "ghost"}, r"pod agents/ghost not found; check the name and namespace"),
        (
            [_pod("session-pod")],
            {},
            r"pod agents/session-pod has no condukt-egress sidecar",
        ),
        (
            [_pod("session-pod", init=[_container("condukt-egress")], phase="Pending")],
            {},
            r"pod agents/session-pod is Pending; wait until it is Running",
        ),
        ([], {"pod": None, "session_id": "s"}, r"no pod in namespace agents carries label"),
        (
            [
                _pod("a", init=[_container("condukt-egress")]),
                _pod("b", init=[_container("condukt-egress")]),
            ],
            {"pod": None, "session_id": "s"},
            r"2 pods of session 's' are running \(a, b\); pick one with --pod",
        ),
    ],
)
def test_port_forward_resolution_errors_are_one_clear_line(
    pods: list[SimpleNamespace], kwargs: dict[str, Any], message: str
) -> None:
    target, calls, _fw = _target(FakeCoreV1(pods), 1, **kwargs)
    with pytest.raises(ControlChannelError, match=message) as info:
        run(target.open())
    assert "\n" not in str(info.value)
    assert calls == []


def test_port_forward_refused_by_rbac_says_what_is_needed() -> None:
    class Forbidden(FakeCoreV1):
        def read_namespaced_pod(self, name: str, namespace: str, **_: Any) -> SimpleNamespace:
            raise FakeApiError(403, "Forbidden")

    target, _calls, _fw = _target(Forbidden([]), 1)
    with pytest.raises(ControlChannelError, match=r"HTTP 403.*pods/portforward"):
        run(target.open())


def test_port_forward_error_channel_fails_the_first_connection() -> None:
    core = FakeCoreV1([_pod("session-pod", init=[_container("condukt-egress")])])
    error = (
        "error forwarding port 15002 to pod abc: dial tcp4 127.0.0.1:15002: connect: "
        "connection refused"
    )
    target, _calls, forwards = _target(core, 1, error=error)

    async def scenario() -> None:
        client = ControlClient(target, on_notice=lambda _m: None)
        with pytest.raises(
            ControlChannelError, match=r"failed: error forwarding port 15002.*refused"
        ):
            async for _ in client.frames():
                pass
        await client.aclose()

    run(scenario())
    assert forwards[0].closed


def test_port_forward_target_validates_its_arguments() -> None:
    with pytest.raises(ConfigError, match="exactly one of pod and session_id"):
        PortForwardTarget(namespace="ns")
    with pytest.raises(ConfigError, match="exactly one of pod and session_id"):
        PortForwardTarget(namespace="ns", pod="p", session_id="s")
    with pytest.raises(ConfigError, match="namespace"):
        PortForwardTarget(namespace="", pod="p")
    with pytest.raises(ConfigError, match="not a TCP port"):
        PortForwardTarget(namespace="ns", pod="p", port=0)


def test_missing_credentials_are_reported_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ControlChannelError, match=r"no Kubernetes credentials.*--kubeconfig"):
        load_api_client()
    with pytest.raises(ControlChannelError, match="cannot load Kubernetes credentials"):
        load_api_client(kubeconfig=str(tmp_path / "absent"))


def test_the_public_import_path_exports_every_name_it_lists() -> None:
    from condukt_egress import control  # noqa: PLC0415

    missing = [name for name in control.__all__ if not hasattr(control, name)]
    assert not missing


def test_decision_outbox_keeps_the_newest_answers_and_counts_the_lost() -> None:
    async def main() -> ControlClient:
        client = ControlClient(TcpTarget("127.0.0.1", 1), on_notice=lambda _: None)
        for i in range(1030):
            client._keep(Decision(f"r{i}", "allow"))
        return client

    client = asyncio.run(main())
    assert len(client._outbox) == 1024
    assert client.stats.decisions_lost == 6
    assert client._outbox[0].decision.id == "r6", "the oldest answers go first"


def test_decision_outbox_drops_answers_past_the_sidecars_timeout() -> None:
    async def main() -> ControlClient:
        client = ControlClient(
            TcpTarget("127.0.0.1", 1), decide_timeout_ms=20, on_notice=lambda _: None
        )
        client._keep(Decision("late", "allow"))
        await asyncio.sleep(0.05)  # the sidecar has denied it by now
        client._keep(Decision("fresh", "allow"))
        client._flush_outbox()  # no connection: the fresh one stays queued
        return client

    client = asyncio.run(main())
    assert [p.decision.id for p in client._outbox] == ["fresh"]
    assert client.stats.decisions_lost == 1
    assert client.stats.decisions_sent == 0


def test_daemon_pool_serves_a_burst_of_instant_calls_with_few_threads() -> None:
    from condukt_egress._threads import DaemonPool  # noqa: PLC0415 - private, tested here

    async def main() -> tuple[list[object], int]:
        pool = DaemonPool(16)
        results = await asyncio.gather(*(pool.submit(int, i) for i in range(200)))
        threads = len(pool._threads)
        pool.shutdown()
        return list(results), threads

    results, threads = asyncio.run(main())
    assert results == list(range(200))
    assert threads <= 4, "instant calls must not wake the whole pool"


def test_daemon_pool_grows_for_blocking_calls() -> None:
    import time  # noqa: PLC0415

    from condukt_egress._threads import DaemonPool  # noqa: PLC0415 - private, tested here

    async def main() -> tuple[float, int]:
        pool = DaemonPool(8)
        start = time.perf_counter()
        await asyncio.gather(*(pool.submit(time.sleep, 0.2) for _ in range(8)))
        elapsed = time.perf_counter() - start
        threads = len(pool._threads)
        pool.shutdown()
        return elapsed, threads

    elapsed, threads = asyncio.run(main())
    assert threads == 8
    assert elapsed < 1.0, f"8 blocking calls of 0.2 s took {elapsed:.2f} s: not in parallel"


def test_daemon_pool_moves_calls_queued_behind_a_blocking_one_to_another_thread() -> None:
    import time  # noqa: PLC0415

    from condukt_egress._threads import DaemonPool  # noqa: PLC0415 - private, tested here

    async def main() -> tuple[float, object]:
        pool = DaemonPool(4)
        slow = pool.submit(time.sleep, 1.0)
        start = time.perf_counter()
        fast = await pool.submit(str, "fast")  # same loop iteration: same batch as slow
        elapsed = time.perf_counter() - start
        await slow
        pool.shutdown()
        return elapsed, fast

    elapsed, fast = asyncio.run(main())
    assert fast == "fast"
    assert elapsed < 0.5, f"an instant call waited {elapsed:.2f} s behind a blocking one"
