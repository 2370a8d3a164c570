"""A test double of the sidecar's control side, written from the contract.

It listens on loopback, serves one peer at a time (a second peer waits, as
with the real sidecar), writes whatever frames or raw bytes a test asks for
(whole, split into pieces, or mixed with junk), reads the peer's ``decision``
frames, and resolves the matching decision requests by ``id``.

:class:`SidecarDouble` is asyncio (library tests); :class:`ThreadedDouble`
runs one on a background loop for tests that drive the command in a
subprocess. The module also holds deciders the command imports by
``sidecar_double:<name>`` in those tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, Literal, TypeVar

from condukt_egress.events import DecisionRequest

_T = TypeVar("_T")
_ids = itertools.count(1)

AT = "2026-11-28T19:37:07.123456789Z"


def event_frame(
    kind: str,
    *,
    host: str = "api.example.com",
    port: int = 443,
    request_id: str | None = None,
    session_id: str | None = "s-1",
    reason: str | None = None,
    rule: tuple[int, str] | None = None,
    method: str | None = None,
    path: str | None = None,
    headers: Mapping[str, str] | None = None,
    status: int | None = None,
    at: str = AT,
    finished_at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build an ``event`` frame shaped exactly as the sidecar serialises it."""
    request: dict[str, Any] = {
        "id": request_id or f"00000000-0000-4000-8000-{next(_ids):012d}",
        "session_id": session_id,
        "host": host,
        "port": port,
        "remote_addr": "10.0.0.7:40312",
        "scheme": "https" if port == 443 else "http",
        "bytes_in": 0,
        "bytes_out": 0,
        "started_at": "2026-11-28T19:37:07.100Z",
        "finished_at": finished_at,
    }
    # Optional request keys are omitted when unknown, as the sidecar does.
    for key, value in (
        ("method", method),
        ("path", path),
        ("request_headers", headers),
        ("response_status", status),
    ):
        if value is not None:
            request[key] = dict(value) if isinstance(value, Mapping) else value
    frame: dict[str, Any] = {"type": "event", "kind": kind, "request": request}
    if reason is not None:
        frame["reason"] = reason
    if rule is not None:
        frame["matched_rule"] = {"index": rule[0], "kind": rule[1]}
    frame["at"] = at
    frame.update(extra)
    return frame


def decision_request_frame(
    host: str,
    *,
    request_id: str | None = None,
    port: int = 443,
    session_id: str | None = "s-1",
) -> dict[str, Any]:
    """Build a ``decision_request`` frame."""
    return {
        "type": "decision_request",
        "id": request_id or f"d-{next(_ids)}",
        "session_id": session_id,
        "host": host,
        "port": port,
        "scheme": "https" if port == 443 else "http",
    }


def line(frame: Mapping[str, Any]) -> bytes:
    """Serialise a frame as the sidecar does: compact JSON and ``\\n``."""
    return json.dumps(frame, separators=(",", ":")).encode() + b"\n"


def all_kinds(host: str = "api.example.com") -> list[dict[str, Any]]:
    """One event of every kind the contract names, as a request's life would go."""
    rid = f"00000000-0000-4000-8000-{next(_ids):012d}"
    return [
        event_frame("request_opened", host=host, request_id=rid),
        event_frame("request_allowed", host=host, request_id=rid, rule=(1, "allow")),
        event_frame(
            "request_closed",
            host=host,
            request_id=rid,
            method="GET",
            path="/v1/models",
            status=200,
            headers={"authorization": "Bearer sk-live-123", "accept": "*/*"},
            finished_at="2026-11-28T19:37:08Z",
        ),
        event_frame(
            "request_denied", host="evil.example", reason="matched_deny_list", rule=(0, "deny")
        ),
        event_frame("request_failed", host=host, reason="tls_client_rejected_ca"),
    ]


class SidecarDouble:
    """The control side of a sidecar on ``127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self.received: list[dict[str, Any]] = []
        self.junk_received = 0
        self._server: asyncio.Server | None = None
        self._serving = asyncio.Lock()  # one peer at a time, like the sidecar
        self._writer: asyncio.StreamWriter | None = None
        self._peer = asyncio.Event()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> SidecarDouble:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop_peer()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> SidecarDouble:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for_peer(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._peer.wait(), timeout)

    async def send(self, *items: Mapping[str, Any] | bytes) -> None:
        """Write frames (dicts) or raw bytes to the connected peer, in order."""
        await self.wait_for_peer()
        data = b"".join(item if isinstance(item, bytes) else line(item) for item in items)
        await self._write(data)

    async def send_split(self, data: bytes, sizes: Iterable[int]) -> None:
        """Write ``data`` in pieces of the given sizes (the rest last), flushing each."""
        await self.wait_for_peer()
        offset = 0
        for size in sizes:
            await self._write(data[offset : offset + size])
            offset += size
            await asyncio.sleep(0.002)  # let each piece reach the peer on its own
        if offset < len(data):
            await self._write(data[offset:])

    async def ask(self, frame: Mapping[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a decision request and return the peer's ``decision`` frame for it."""
        future = asyncio.get_running_loop().create_future()
        self._pending[str(frame["id"])] = future
        await self.send(frame)
        return await asyncio.wait_for(future, timeout)

    async def drop_peer(self) -> None:
        """Close the current peer's connection (the pod restarting, a network cut)."""
        writer, self._writer = self._writer, None
        self._peer.clear()
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def decisions(self) -> list[dict[str, Any]]:
        return [frame for frame in self.received if frame.get("type") == "decision"]

    async def _write(self, data: bytes) -> None:
        writer = self._writer
        assert writer is not None, "no peer connected"
        writer.write(data)
        await writer.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            async with self._serving:
                self.connections += 1
                self._writer = writer
                self._peer.set()
                await self._read(reader)
        finally:
            self._handlers.discard(task)
            if self._writer is writer:
                self._writer = None
                self._peer.clear()
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            async for raw in reader:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    self.junk_received += 1
                    continue
                self.received.append(frame)
                if frame.get("type") == "decision":
                    future = self._pending.pop(str(frame.get("id")), None)
                    if future is not None and not future.done():
                        future.set_result(frame)


class ThreadedDouble:
    """A :class:`SidecarDouble` on a background event loop, driven synchronously."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.double = self.run(self._make())

    async def _make(self) -> SidecarDouble:
        return await SidecarDouble().start()

    @property
    def port(self) -> int:
        return self.double.port

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 20.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        self.run(self.double.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


# -- deciders the command imports as ``sidecar_double:<name>`` -----------------


def allow_example_org(request: DecisionRequest) -> Literal["allow"] | tuple[Literal["deny"], str]:
    """Allow ``*.example.org``; deny the rest with a reason."""
    if request.host == "example.org" or request.host.endswith(".example.org"):
        return "allow"
    return ("deny", f"{request.host} is off-task")


async def deny_async(request: DecisionRequest) -> Literal["deny"]:
    """An async decider that always denies."""
    await asyncio.sleep(0)
    return "deny"


def broken(request: DecisionRequest) -> str:
    """A decider that raises: the client must deny."""
    raise RuntimeError("decider bug with a secret sk-live-123 in its message")


not_callable = 42
