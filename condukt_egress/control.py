"""An asyncio client for one sidecar's control channel.

The sidecar streams NDJSON frames to one peer at a time and waits for a
``decision`` whenever a policy's ``decide`` rule fires. :class:`ControlClient`
connects to it (directly over TCP with :class:`TcpTarget`, or through the
Kubernetes port-forward API with
:class:`~condukt_egress.portforward.PortForwardTarget`), yields typed frames,
and answers decision requests with a Python *decider*.

Deciding fails closed: a decider that raises, times out (the budget stays
below the sidecar's ``decide_timeout_ms``) or returns anything but ``"allow"``,
``"deny"`` or ``("deny", reason)`` produces a ``deny`` and is counted.
Answers are cached per host, port and scheme (configurable). Reading is incremental and
bounded: partial lines, CRLF, blank lines, invalid UTF-8 or JSON and over-long
lines are counted and skipped without losing the frames around them. When the
channel drops, the client reconnects with capped exponential backoff and says
so through ``on_notice``.

This module is the public import path; the pieces live in private modules:
``_lines`` (:class:`LineSplitter`), ``_backoff`` (:class:`Backoff`),
``_transport`` (:class:`Target`, :class:`TcpTarget`, :class:`Connection`) and
``_decisions`` (decider types, :class:`DecisionCache`, :func:`decider_budget`,
the fail-closed checks and the sync-decider threads). They keep no ``__all__``
of their own: this module's lists their public names, once.

Example:
    >>> async def watch() -> None:  # doctest: +SKIP
    ...     async def decide(request: DecisionRequest) -> DeciderResult:
    ...         return "allow" if request.host.endswith(".github.com") else ("deny", "off-task")
    ...     async with ControlClient(TcpTarget("127.0.0.1", 15002), decider=decide) as client:
    ...         async for frame in client.frames():
    ...             if isinstance(frame, Event):
    ...                 print(frame.kind, frame.request.host)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from condukt_egress._backoff import Backoff
from condukt_egress._decisions import (
    SYNC_DECIDER_THREADS,
    Answer,
    DecidedBy,
    Decider,
    DeciderResult,
    DecisionCache,
    DecisionKey,
    DecisionSent,
    InvalidAnswerError,
    decider_budget,
    decision_key,
    interpret,
    is_async_callable,
)
from condukt_egress._lines import DEFAULT_MAX_LINE_BYTES, LineSplitter
from condukt_egress._text import printable
from condukt_egress._threads import DaemonPool
from condukt_egress._transport import READ_CHUNK, Connection, Target, TcpTarget, os_reason
from condukt_egress.contract import DEFAULT_DECIDE_TIMEOUT_MS
from condukt_egress.errors import ConfigError, ControlChannelError
from condukt_egress.events import (
    Decision,
    DecisionRequest,
    Event,
    Frame,
    MalformedFrameError,
    decode_frame,
)

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "Backoff",
    "ChannelStats",
    "Connection",
    "ControlClient",
    "DecidedBy",
    "Decider",
    "DeciderResult",
    "DecisionCache",
    "DecisionKey",
    "DecisionSent",
    "LineSplitter",
    "Target",
    "TcpTarget",
    "decider_budget",
    "decision_key",
]

_log = logging.getLogger(__name__)

_OUTBOX_LIMIT: Final = 1024


def _log_notice(message: str) -> None:
    """The default ``on_notice``: one log record, control characters escaped."""
    _log.info("%s", printable(message))


@dataclass
class ChannelStats:
    """Counters a :class:`ControlClient` keeps; read them at any time.

    Attributes:
        lines: Non-blank lines read.
        events: ``event`` frames decoded.
        decision_requests: ``decision_request`` frames decoded.
        unknown_frames: Frames of a type this version does not know (skipped).
        malformed_lines: Lines that were not a valid frame (skipped).
        oversized_lines: Lines over the length bound (skipped).
        decisions_sent: Decisions written to the sidecar.
        cache_hits: Decisions answered from the per-host cache.
        decider_failures: Decider raised, timed out or answered nonsense (denied).
        decisions_lost: Decisions that could not be delivered before the
            sidecar's own timeout.
        connects: Successful connections, the first included.
        reconnects: Successful connections after a drop.
    """

    lines: int = 0
    events: int = 0
    decision_requests: int = 0
    unknown_frames: int = 0
    malformed_lines: int = 0
    oversized_lines: int = 0
    decisions_sent: int = 0
    cache_hits: int = 0
    decider_failures: int = 0
    decisions_lost: int = 0
    connects: int = 0
    reconnects: int = 0


@dataclass
class _Pending:
    deadline: float
    decision: Decision = field(compare=False)


class ControlClient:
    """Read frames from one sidecar and answer its decision requests.

    Args:
        target: Where the control port is (:class:`TcpTarget`, a port-forward).
        decider: Answers decision requests; ``None`` leaves them to the caller
            (:meth:`send_decision`) or to the sidecar's timeout. A sync decider
            runs on a worker thread so it neither stalls reading nor escapes
            the timeout.
        decide_timeout_ms: The sidecar's ``decide_timeout_ms`` (policy value).
        decider_timeout: Seconds the decider may take; default
            :func:`decider_budget` of ``decide_timeout_ms``; must be below it.
        cache_ttl: Seconds a decider's answer is reused for the same host,
            port and scheme;
            ``0`` asks the decider every time.
        cache_size: Destinations (host, port, scheme) remembered at most.
        reconnect: Reconnect when the channel drops (the first connection
            failing is always an error).
        max_reconnect_attempts: Consecutive failed attempts before giving up
            (``None``: keep trying).
        backoff: Delays between attempts.
        max_line_bytes: Bound on one line; longer lines are skipped.
        on_notice: Receives one-line status messages (connected, dropped,
            reconnecting, skipped lines); default: the ``logging`` module.
        on_decision: Called with a :class:`DecisionSent` after each answer,
            and never before :meth:`frames` has yielded its request (a cached
            answer is written at once, but reported once the request is out).
        on_reconnect: Called with the reconnect count each time the channel is
            connected again after a drop. Frames may be missing around it:
            the sidecar notices a dropped peer only when a write to it fails,
            so 1-2 frames are written to the dead peer, and a new peer hears
            nothing until that happens (upstream src/proxy/control.rs:111-156:
            one peer at a time, left only when ``write_all`` fails).
    """

    def __init__(
        self,
        target: Target,
        *,
        decider: Decider | None = None,
        decide_timeout_ms: int = DEFAULT_DECIDE_TIMEOUT_MS,
        decider_timeout: float | None = None,
        cache_ttl: float = 60.0,
        cache_size: int = 4096,
        reconnect: bool = True,
        max_reconnect_attempts: int | None = None,
        backoff: Backoff | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        on_notice: Callable[[str], None] | None = None,
        on_decision: Callable[[DecisionSent], None] | None = None,
        on_reconnect: Callable[[int], None] | None = None,
    ) -> None:
        budget = decider_budget(decide_timeout_ms)
        if decider_timeout is not None:
            if not 0 < decider_timeout < decide_timeout_ms / 1000:
                raise ConfigError(
                    "decider_timeout",
                    f"must be above 0 and below the sidecar's decide_timeout_ms "
                    f"({decide_timeout_ms} ms), got {decider_timeout} s; leave it unset to "
                    "keep the default margin",
                )
            budget = decider_timeout
        if cache_ttl < 0:
            raise ConfigError(
                "cache_ttl",
                f"must be 0 (no cache) or a positive number of seconds, got {cache_ttl}",
            )
        if max_line_bytes < 1:
            raise ConfigError("max_line_bytes", f"must be at least 1, got {max_line_bytes}")
        self.target = target
        self.stats = ChannelStats()
        self.decider_timeout = budget
        self._decider = decider
        self._decider_is_async = is_async_callable(decider)
        self._decide_timeout = decide_timeout_ms / 1000
        self._cache = DecisionCache(cache_ttl, cache_size) if cache_ttl > 0 else None
        self._inflight: dict[DecisionKey, asyncio.Future[Answer]] = {}
        self._reconnect = reconnect
        self._max_attempts = max_reconnect_attempts
        self._backoff = backoff or Backoff()
        self._max_line = max_line_bytes
        self._notice = on_notice or _log_notice
        self._on_decision = on_decision
        self._on_reconnect = on_reconnect
        self._conn: Connection | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._outbox: deque[_Pending] = deque()
        self._wbuf: list[Decision] = []
        # Answers start as a request is read, before it is yielded; their
        # reports wait here (by id() of the request) until it has been.
        self._unyielded: set[int] = set()
        self._held: dict[int, DecisionSent] = {}
        self._pool: DaemonPool | None = None
        self._closed = asyncio.Event()
        self._got_bytes = False

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._conn is not None

    async def aclose(self) -> None:
        """Stop: finish and send the decisions under way, then close; idempotent.

        Decisions already asked of the decider get their budget to finish
        (anything later is cancelled), and every answer made is written
        before the connection closes: an answer lost here would hold the
        workspace's connection until the sidecar's own timeout denies it.
        """
        self._closed.set()
        tasks = list(self._tasks)
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=self.decider_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._wbuf:
            self._flush_writes()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(conn.writer.drain(), 2.0)
            await conn.close()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    async def frames(self) -> AsyncGenerator[Frame, None]:
        """Yield every frame the sidecar sends, reconnecting as configured.

        Decision requests are yielded *and* handed to the decider (if any) as
        soon as they are read. Reading is pulled by the iteration: keep
        iterating (or use :meth:`run`) or no decision request is seen.
        Unknown frame types are yielded as
        :class:`~condukt_egress.events.UnknownFrame` (and counted); malformed
        lines are counted, reported through ``on_notice`` and skipped.

        The iteration ends when the client is closed, or when the channel
        drops and ``reconnect`` is off.

        Raises:
            ControlChannelError: The first connection failed (unreachable,
                refused, or the port-forward reported an error before any
                byte), or reconnecting gave up.
        """
        describe = self.target.describe()
        failures = 0  # consecutive failed attempts since the last useful connection
        ever_connected = False
        while not self._closed.is_set():
            try:
                conn = await self.target.open()
            except ControlChannelError as exc:
                if not ever_connected or not self._reconnect:
                    raise
                failures += 1
                if self._max_attempts is not None and failures > self._max_attempts:
                    raise ControlChannelError(
                        f"gave up reconnecting to {describe} after {self._max_attempts} "
                        f"attempts: {exc}"
                    ) from exc
                await self._pause(f"reconnect to {describe} failed ({exc})", failures - 1)
                continue
            started = self._connected(conn, describe, again=ever_connected)
            read_error: str | None = None
            splitter = LineSplitter(self._max_line)
            try:
                read = conn.reader.read
                while data := await read(READ_CHUNK):
                    self._got_bytes = True
                    for frame in self._frames_of(splitter, data):
                        yield frame
                        self._yielded(frame)
                for frame in self._frames_of(splitter, None):
                    yield frame
                    self._yielded(frame)
            except (ConnectionError, OSError) as exc:
                read_error = os_reason(exc)
            finally:
                self._release_reports()
                if self._conn is conn:
                    self._conn = None
                await conn.close()
            detail = conn.error_detail() or read_error
            if not ever_connected and not self._got_bytes and detail:
                raise ControlChannelError(f"control channel at {describe} failed: {detail}")
            ever_connected = True
            if self._closed.is_set():
                return
            why = detail or "closed by the sidecar"
            if not self._reconnect:
                self._notice(f"control channel to {describe} closed ({why})")
                return
            lasted = asyncio.get_running_loop().time() - started
            if self._got_bytes or lasted >= self._backoff.maximum:
                failures = 0
            await self._pause(f"control channel to {describe} dropped ({why})", failures)
            failures += 1

    def _connected(self, conn: Connection, describe: str, *, again: bool) -> float:
        """Adopt a fresh connection, say so, flush kept decisions; return the time."""
        self._conn = conn
        self._got_bytes = False
        self.stats.connects += 1
        if again:
            self.stats.reconnects += 1
            self._notice(f"reconnected to {describe}")
            if self._on_reconnect is not None:
                self._on_reconnect(self.stats.reconnects)
        else:
            self._notice(f"connected to {describe}")
        self._flush_outbox()
        return asyncio.get_running_loop().time()

    async def _pause(self, what: str, attempt: int) -> None:
        delay = self._backoff.delay(attempt)
        self._notice(f"{what}; reconnecting in {delay:.1f} s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), delay)

    async def run(self, on_frame: Callable[[Frame], object] | None = None) -> None:
        """Consume :meth:`frames` until the client is closed or the channel ends.

        For a service that only answers decisions (or handles each frame in a
        callback): frames are read, and decision requests answered, only while
        someone iterates.

        Args:
            on_frame: Called with every frame, in order.
        """
        async with contextlib.aclosing(self.frames()) as frames:
            async for frame in frames:
                if on_frame is not None:
                    on_frame(frame)

    async def send_decision(self, decision: Decision) -> bool:
        """Write ``decision`` to the sidecar.

        When no connection is open (or the write fails), the decision is kept
        and sent after reconnecting, as long as the sidecar may still be
        waiting for it.

        Returns:
            ``True`` when written now, ``False`` when kept for later.
        """
        if self._write(decision):
            conn = self._conn
            if conn is not None:
                try:
                    await conn.writer.drain()
                except (ConnectionError, OSError):
                    self._keep(decision)
                    return False
            return True
        self._keep(decision)
        return False

    # -- reading -------------------------------------------------------------

    def _frames_of(self, splitter: LineSplitter, data: bytes | None) -> list[Frame]:
        """Decode the lines ``data`` completes (``None``: the unterminated tail at EOF)."""
        oversized = splitter.oversized
        if data is None:
            tail = splitter.finish()
            lines, truncated = ([tail] if tail else []), True
        else:
            lines, truncated = splitter.feed(data), False
        frames = []
        for line in lines:
            frame = self._decode(line, truncated=truncated)
            if frame is not None:
                frames.append(frame)
                if self._decider is not None and type(frame) is DecisionRequest:
                    self._unyielded.add(id(frame))
                    self._answer(frame)  # at once: the sidecar holds the connection
        if splitter.oversized != oversized:
            self.stats.oversized_lines += splitter.oversized - oversized
            self._notice(f"skipped a line longer than {self._max_line} bytes")
        return frames

    def _yielded(self, frame: Frame) -> None:
        """``frame`` is out: report its answer if that came first (a cache hit)."""
        key = id(frame)
        if key in self._unyielded:
            self._unyielded.discard(key)
            sent = self._held.pop(key, None)
            if sent is not None and self._on_decision is not None:
                self._on_decision(sent)

    def _release_reports(self) -> None:
        """The iteration stopped or the connection ended: report every held answer."""
        held = list(self._held.values())
        self._unyielded.clear()
        self._held.clear()
        if self._on_decision is not None:
            for sent in held:
                self._on_decision(sent)

    def _decode(self, line: bytes, *, truncated: bool = False) -> Frame | None:
        """Decode and count one line; ``None`` (and a notice) when it is malformed."""
        stats = self.stats
        stats.lines += 1
        try:
            frame = decode_frame(line)
        except MalformedFrameError as exc:
            stats.malformed_lines += 1
            where = "an unterminated last line" if truncated else f"line {stats.lines}"
            self._notice(f"skipped {where} ({len(line)} bytes): {exc}")
            return None
        if isinstance(frame, Event):
            stats.events += 1
        elif isinstance(frame, DecisionRequest):
            stats.decision_requests += 1
        else:
            stats.unknown_frames += 1
            if stats.unknown_frames == 1:
                self._notice(f"ignoring frames of unknown type {frame.type!r} (newer sidecar?)")
        return frame

    # -- deciding ------------------------------------------------------------

    def _answer(self, request: DecisionRequest) -> None:
        """Start answering ``request``: from the cache, a running ask, or the decider."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        done = functools.partial(self._answered, request, now)
        if self._cache is None:
            task = loop.create_task(self._ask(request))
        else:
            key = decision_key(request)
            hit = self._cache.get(key, now)
            if hit is not None:
                self.stats.cache_hits += 1
                self._finish(request, Answer(hit.action, hit.reason), "cache", now)
                return
            running = self._inflight.get(key)
            if running is not None:  # one decider call per destination at a time
                running.add_done_callback(done)
                return
            task = loop.create_task(self._ask(request))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(done)

    def _answered(
        self, request: DecisionRequest, started: float, task: asyncio.Future[Answer]
    ) -> None:
        if task.cancelled():  # the client is closing
            return
        answer = task.result()
        if answer.cacheable and self._cache is not None:
            self._cache.put(decision_key(request), answer.action, answer.reason, started)
        self._finish(request, answer, "decider" if answer.cacheable else "fail_closed", started)

    async def _ask(self, request: DecisionRequest) -> Answer:
        """Run the decider under its budget; a failure is a fail-closed deny saying why."""
        decider = self._decider
        assert decider is not None  # noqa: S101  (only scheduled with a decider)
        budget = self.decider_timeout
        timeout = asyncio.timeout(budget)
        try:
            async with timeout:
                if self._decider_is_async:
                    result = await decider(request)  # type: ignore[misc]
                else:
                    if self._pool is None:
                        self._pool = DaemonPool(SYNC_DECIDER_THREADS)
                    result = await self._pool.submit(decider, request)
                    if inspect.isawaitable(result):  # a sync callable that returned a coroutine
                        result = await result
            answer = interpret(result)
        except TimeoutError:
            if not timeout.expired():
                return self._failed(request, "raised TimeoutError", "decider failed")
            return self._failed(
                request, f"timed out after {budget * 1000:.0f} ms", "decider timed out"
            )
        except InvalidAnswerError as exc:
            return self._failed(request, str(exc), "decider gave an invalid answer")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._failed(request, f"raised {type(exc).__name__}: {exc}", "decider failed")
        return answer

    def _failed(self, request: DecisionRequest, failure: str, wire_reason: str) -> Answer:
        self.stats.decider_failures += 1
        # The host and id are the workspace's choice, the failure may quote them:
        # escaped, they cannot forge log lines or drive the terminal showing them.
        self._notice(
            printable(
                f"decider failed for {request.host}:{request.port} (id {request.id}): "
                f"{failure}; denied"
            )
        )
        # The wire reason is fixed text: exception messages may carry secrets.
        return Answer("deny", f"condukt-egress: {wire_reason}", failure)

    def _finish(
        self, request: DecisionRequest, answer: Answer, by: DecidedBy, started: float
    ) -> None:
        decision = Decision(request.id, answer.action, answer.reason)
        self._queue_write(decision)
        if self._on_decision is not None:
            elapsed = asyncio.get_running_loop().time() - started
            sent = DecisionSent(request, decision, by, answer.failure, elapsed)
            if id(request) in self._unyielded:  # its request is not out yet
                self._held[id(request)] = sent
            else:
                self._on_decision(sent)

    # -- writing -------------------------------------------------------------

    def _write(self, decision: Decision) -> bool:
        conn = self._conn
        if conn is None or conn.writer.is_closing():
            return False
        conn.writer.write(decision.to_line())
        self.stats.decisions_sent += 1
        return True

    def _queue_write(self, decision: Decision) -> None:
        """Write soon, with the other answers of this loop iteration (one syscall)."""
        self._wbuf.append(decision)
        if len(self._wbuf) == 1:
            asyncio.get_running_loop().call_soon(self._flush_writes)

    def _flush_writes(self) -> None:
        batch, self._wbuf = self._wbuf, []
        conn = self._conn
        if conn is None or conn.writer.is_closing():
            for decision in batch:
                self._keep(decision)
            return
        conn.writer.write(b"".join(decision.to_line() for decision in batch))
        self.stats.decisions_sent += len(batch)

    def _keep(self, decision: Decision) -> None:
        deadline = asyncio.get_running_loop().time() + self._decide_timeout
        self._outbox.append(_Pending(deadline, decision))
        while len(self._outbox) > _OUTBOX_LIMIT:
            self._outbox.popleft()
            self.stats.decisions_lost += 1

    def _flush_outbox(self) -> None:
        now = asyncio.get_running_loop().time()
        while self._outbox:
            pending = self._outbox.popleft()
            if pending.deadline <= now:
                self.stats.decisions_lost += 1
            elif not self._write(pending.decision):
                self._outbox.appendleft(pending)
                return
