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
Answers are cached per host (configurable). Reading is incremental and
bounded: partial lines, CRLF, blank lines, invalid UTF-8 or JSON and over-long
lines are counted and skipped without losing the frames around them. When the
channel drops, the client reconnects with capped exponential backoff and says
so through ``on_notice``.

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
import os
import queue
import random
import socket
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeAlias

from condukt_egress.contract import DEFAULT_DECIDE_TIMEOUT_MS
from condukt_egress.errors import ControlChannelError
from condukt_egress.events import (
    Decision,
    DecisionAction,
    DecisionRequest,
    Event,
    Frame,
    MalformedFrameError,
    decode_frame,
)

__all__ = [
    "Backoff",
    "ChannelStats",
    "Connection",
    "ControlClient",
    "DecidedBy",
    "Decider",
    "DeciderResult",
    "DecisionCache",
    "DecisionSent",
    "LineSplitter",
    "Target",
    "TcpTarget",
    "decider_budget",
]

_log = logging.getLogger(__name__)

DeciderResult: TypeAlias = Literal["allow", "deny"] | tuple[Literal["deny"], str]
"""What a decider returns: ``"allow"``, ``"deny"`` or ``("deny", reason)``."""

Decider: TypeAlias = Callable[[DecisionRequest], DeciderResult | Awaitable[DeciderResult]]
"""A sync or async callable answering one :class:`DecisionRequest`."""

DecidedBy: TypeAlias = Literal["decider", "cache", "fail_closed"]
"""Where an answer came from; ``fail_closed`` means the decider failed."""

DEFAULT_MAX_LINE_BYTES: Final = 1 << 20
"""Longest accepted line; longer ones are skipped up to their newline."""

_READ_CHUNK: Final = 1 << 16
_MAX_REASON_CHARS: Final = 1024
_OUTBOX_LIMIT: Final = 1024
_SYNC_DECIDER_THREADS: Final = 16


class LineSplitter:
    r"""Split a byte stream into lines, incrementally and within a bound.

    Lines may arrive cut across reads. ``\\r\\n`` endings are accepted, blank
    lines dropped, and a line longer than ``max_line_bytes`` is skipped up to
    its newline (counted in :attr:`oversized`) without touching its neighbours.

    Args:
        max_line_bytes: The bound on one line, line ending excluded.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self.max_line_bytes = max_line_bytes
        self.oversized = 0
        self._partial = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the complete, non-blank lines it finished."""
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return []
            self._discarding = False
            data = data[newline + 1 :]
        newline = data.find(b"\n")
        if newline < 0:
            self._keep(data)
            return []
        if self._partial:
            self._partial += data[:newline]
            head = bytes(self._partial)
            self._partial.clear()
            lines = data[newline + 1 :].split(b"\n")
            lines.insert(0, head)
        else:
            lines = data.split(b"\n")
        self._keep(lines.pop())
        limit = self.max_line_bytes
        out = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]  # noqa: PLW2901
            if not line or line.isspace():
                continue
            if len(line) > limit:
                self.oversized += 1
                continue
            out.append(line)
        return out

    def finish(self) -> bytes:
        """Return (and forget) an unterminated tail left at end of stream."""
        tail = bytes(self._partial).rstrip(b"\r")
        self._partial.clear()
        self._discarding = False
        return b"" if tail.isspace() else tail

    def _keep(self, tail: bytes) -> None:
        if not tail:
            return
        self._partial += tail
        if len(self._partial) > self.max_line_bytes + 1:  # +1: a trailing \r
            self._partial.clear()
            self._discarding = True
            self.oversized += 1


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff between reconnection attempts.

    Attributes:
        initial: Delay before the first retry, in seconds.
        maximum: Cap on any delay, in seconds.
        factor: Growth per attempt.
        jitter: Random extra fraction (0.2 adds up to 20 %), so many clients
            do not retry in step.
    """

    initial: float = 0.5
    maximum: float = 15.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return min(self.maximum, base * (1.0 + self.jitter * random.random()))  # noqa: S311


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


@dataclass(frozen=True)
class DecisionSent:
    """What the client answered to one decision request (for display or audit).

    Attributes:
        request: The sidecar's request.
        decision: The frame written back.
        decided_by: ``decider``, ``cache`` or ``fail_closed``.
        failure: Why the decider failed (``fail_closed`` only), else ``None``.
        seconds: Time from reading the request to writing the answer.
    """

    request: DecisionRequest
    decision: Decision
    decided_by: DecidedBy
    failure: str | None
    seconds: float


@dataclass
class Connection:
    """An open byte stream to a sidecar's control port.

    Attributes:
        reader: The stream from the sidecar.
        writer: The stream to the sidecar.
        error_detail: Returns why the far end closed, when the transport knows
            (the port-forward error channel), else ``None``.
        on_close: Extra clean-up run after the writer is closed.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    error_detail: Callable[[], str | None] = lambda: None
    on_close: Callable[[], None] = lambda: None

    async def close(self) -> None:
        """Close the stream and release the transport; never raises."""
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        with contextlib.suppress(Exception):
            self.on_close()


class Target(Protocol):
    """Where a control channel lives; opens a fresh :class:`Connection`."""

    def describe(self) -> str:
        """Return a short human description, e.g. ``127.0.0.1:15002``."""
        ...

    async def open(self) -> Connection:
        """Connect; raise :class:`ControlChannelError` with a one-line reason."""
        ...


@dataclass(frozen=True)
class TcpTarget:
    """A control port reachable over plain TCP (a local port-forward, a test double).

    Attributes:
        host: Host name or IP address.
        port: TCP port.
        connect_timeout: Seconds before a connection attempt is abandoned.
    """

    host: str
    port: int
    connect_timeout: float = 10.0

    def describe(self) -> str:
        """Return ``host:port`` (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def open(self) -> Connection:
        """Open the TCP connection."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=_READ_CHUNK),
                self.connect_timeout,
            )
        except TimeoutError as exc:
            raise ControlChannelError(
                f"cannot connect to the control channel at {self.describe()}: "
                f"no answer within {self.connect_timeout:g} s"
            ) from exc
        except OSError as exc:
            raise ControlChannelError(
                f"cannot connect to the control channel at {self.describe()}: {_os_reason(exc)}"
            ) from exc
        return Connection(reader, writer)


def _os_reason(exc: OSError) -> str:
    """The readable part of an OS error (asyncio wraps ``ECONNREFUSED`` oddly)."""
    if isinstance(exc, socket.gaierror) or not exc.errno:
        return exc.strerror or str(exc) or type(exc).__name__
    return os.strerror(exc.errno)


class DecisionCache:
    """Answers per host, kept for ``ttl`` seconds, at most ``max_entries`` (LRU).

    Only answers the decider gave are cached; fail-closed denials are not, so a
    passing failure does not stick. Keys are lower-cased host names: the
    sidecar's policy is per host, and so is this cache.

    Args:
        ttl: Seconds an answer stays valid; must be positive.
        max_entries: Bound on the number of hosts remembered.
    """

    def __init__(self, ttl: float = 60.0, max_entries: int = 4096) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("ttl must be > 0 and max_entries >= 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, DecisionAction, str | None]] = OrderedDict()

    def get(self, host: str, now: float) -> tuple[DecisionAction, str | None] | None:
        """Return the cached ``(action, reason)`` for ``host``, or ``None``."""
        key = host.lower()
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1], entry[2]

    def put(self, host: str, action: DecisionAction, reason: str | None, now: float) -> None:
        """Remember an answer for ``host``."""
        key = host.lower()
        self._entries[key] = (now + self.ttl, action, reason)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def decider_budget(decide_timeout_ms: int) -> float:
    """Seconds a decider may take so the answer still beats the sidecar's timeout.

    Keeps a margin of a fifth of the sidecar's ``decide_timeout_ms``, at most
    one second, for the answer to travel back (a port-forward adds latency).

    Args:
        decide_timeout_ms: The policy's ``decide_timeout_ms``.
    """
    if decide_timeout_ms < 1:
        raise ValueError("decide_timeout_ms must be a positive number of milliseconds")
    return (decide_timeout_ms - min(1000, decide_timeout_ms / 5)) / 1000


_Answer: TypeAlias = tuple[DecisionAction, str | None, str | None]
"""``(action, reason, failure)``; ``failure`` is ``None`` when the decider answered."""


class _InvalidAnswerError(Exception):
    pass


def _interpret(result: object) -> tuple[DecisionAction, str | None]:
    """Map a decider's return value to an answer; refuse anything else."""
    if result == "allow" and isinstance(result, str):
        return "allow", None
    if result == "deny" and isinstance(result, str):
        return "deny", None
    if (
        isinstance(result, tuple)
        and len(result) == 2
        and result[0] == "deny"
        and isinstance(result[0], str)
        and isinstance(result[1], str)
    ):
        return "deny", result[1][:_MAX_REASON_CHARS] or None
    raise _InvalidAnswerError(f"returned {_describe(result)}")


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"a {type(value).__name__}"


def _is_async_callable(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


class _DaemonPool:
    """Daemon worker threads for sync deciders; a stuck one never blocks exit."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._threads: list[threading.Thread] = []
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], object], asyncio.Future[object], asyncio.AbstractEventLoop] | None
        ] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], object]) -> asyncio.Future[object]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name="condukt-egress-decider", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._jobs.put((fn, future, loop))
        return future

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            if job is None:
                return
            fn, future, loop = job
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting task
                _resolve(loop, future, None, exc)
            else:
                _resolve(loop, future, result, None)


def _resolve(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[object],
    result: object,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # loop already closed
        loop.call_soon_threadsafe(settle)


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
        cache_ttl: Seconds a decider's answer is reused for the same host;
            ``0`` asks the decider every time.
        cache_size: Hosts remembered at most.
        reconnect: Reconnect when the channel drops (the first connection
            failing is always an error).
        max_reconnect_attempts: Consecutive failed attempts before giving up
            (``None``: keep trying).
        backoff: Delays between attempts.
        max_line_bytes: Bound on one line; longer lines are skipped.
        on_notice: Receives one-line status messages (connected, dropped,
            reconnecting, skipped lines); default: the ``logging`` module.
        on_decision: Called with a :class:`DecisionSent` after each answer.
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
    ) -> None:
        budget = decider_budget(decide_timeout_ms)
        if decider_timeout is not None:
            if not 0 < decider_timeout < decide_timeout_ms / 1000:
                raise ValueError(
                    f"decider_timeout must be above 0 and below the sidecar's "
                    f"decide_timeout_ms ({decide_timeout_ms} ms), got {decider_timeout} s"
                )
            budget = decider_timeout
        if cache_ttl < 0:
            raise ValueError("cache_ttl must be 0 (no cache) or a positive number of seconds")
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self.target = target
        self.stats = ChannelStats()
        self.decider_timeout = budget
        self._decider = decider
        self._decider_is_async = _is_async_callable(decider)
        self._decide_timeout = decide_timeout_ms / 1000
        self._cache = DecisionCache(cache_ttl, cache_size) if cache_ttl > 0 else None
        self._inflight: dict[str, asyncio.Future[_Answer]] = {}
        self._reconnect = reconnect
        self._max_attempts = max_reconnect_attempts
        self._backoff = backoff or Backoff()
        self._max_line = max_line_bytes
        self._notice = on_notice or _log.info
        self._on_decision = on_decision
        self._conn: Connection | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._outbox: deque[_Pending] = deque()
        self._wbuf: list[Decision] = []
        self._pool: _DaemonPool | None = None
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
        """Stop: cancel pending decisions, close the connection; idempotent."""
        self._closed.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._conn is not None:
            conn, self._conn = self._conn, None
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
                while data := await read(_READ_CHUNK):
                    self._got_bytes = True
                    for frame in self._frames_of(splitter, data):
                        yield frame
                for frame in self._frames_of(splitter, None):
                    yield frame
            except (ConnectionError, OSError) as exc:
                read_error = _os_reason(exc)
            finally:
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
        if splitter.oversized != oversized:
            self.stats.oversized_lines += splitter.oversized - oversized
            self._notice(f"skipped a line longer than {self._max_line} bytes")
        return frames

    def _decode(self, line: bytes, *, truncated: bool = False) -> Frame | None:
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
            if self._decider is not None:
                self._answer(frame)
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
            hit = self._cache.get(request.host, now)
            if hit is not None:
                self.stats.cache_hits += 1
                self._finish(request, (*hit, None), "cache", now)
                return
            key = request.host.lower()
            running = self._inflight.get(key)
            if running is not None:  # one decider call per host at a time
                running.add_done_callback(done)
                return
            task = loop.create_task(self._ask(request))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(done)

    def _answered(
        self, request: DecisionRequest, started: float, task: asyncio.Future[_Answer]
    ) -> None:
        if task.cancelled():  # the client is closing
            return
        answer = task.result()
        if answer[2] is None and self._cache is not None:
            self._cache.put(request.host, answer[0], answer[1], started)
        self._finish(request, answer, "decider" if answer[2] is None else "fail_closed", started)

    async def _ask(self, request: DecisionRequest) -> _Answer:
        """Run the decider under its budget; return ``(action, reason, failure)``."""
        decider = self._decider
        assert decider is not None  # noqa: S101  (only scheduled with a decider)
        budget = self.decider_timeout
        timeout = asyncio.timeout(budget)
        try:
            async with timeout:
                if self._decider_is_async:
                    result = await decider(request)  # type: ignore[misc]
                else:
                    result = await self._call_sync(decider, request)
            action, reason = _interpret(result)
        except TimeoutError:
            if not timeout.expired():
                return self._failed(request, "raised TimeoutError", "decider failed")
            return self._failed(
                request, f"timed out after {budget * 1000:.0f} ms", "decider timed out"
            )
        except _InvalidAnswerError as exc:
            return self._failed(request, str(exc), "decider gave an invalid answer")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._failed(request, f"raised {type(exc).__name__}: {exc}", "decider failed")
        return action, reason, None

    async def _call_sync(self, decider: Decider, request: DecisionRequest) -> object:
        if self._pool is None:
            self._pool = _DaemonPool(_SYNC_DECIDER_THREADS)
        result: Any = await self._pool.submit(lambda: decider(request))
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            result = await result
        return result

    def _failed(self, request: DecisionRequest, failure: str, wire_reason: str) -> _Answer:
        self.stats.decider_failures += 1
        self._notice(
            f"decider failed for {request.host}:{request.port} (id {request.id}): {failure}; denied"
        )
        # The wire reason is fixed text: exception messages may carry secrets.
        return "deny", f"condukt-egress: {wire_reason}", failure

    def _finish(
        self, request: DecisionRequest, answer: _Answer, by: DecidedBy, started: float
    ) -> None:
        action, reason, failure = answer
        decision = Decision(request.id, action, reason)
        self._queue_write(decision)
        if self._on_decision is not None:
            elapsed = asyncio.get_running_loop().time() - started
            self._on_decision(DecisionSent(request, decision, by, failure, elapsed))

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
