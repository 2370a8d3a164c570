"""Benchmark of the control-channel client and the ``events`` command.

The sidecar stand-ins run in their own process, as the sidecar does: in
this process their threads would share the interpreter lock with the client
and put Python's 5 ms switch interval inside every measurement.

1. Throughput: events decoded and dispatched per second by ``ControlClient``
   vs the floor of a bare ``readline`` + ``json.loads`` loop over the same
   loopback stream (both an asyncio ``StreamReader.readline`` floor and a
   plain blocking-socket ``readline`` floor). Target: >= 50 % of the floor.
   Also ``events --format json`` as the command runs it (decode, filter,
   redact, encode, write and flush each line to ``/dev/null``), against the
   same bare floor (target >= 40 %) and against a floor that also
   re-serialises and writes each line.
2. Decision round trip: the stand-in fires 100 concurrent
   ``decision_request`` frames per round and times each answer; the client
   answers with an instant decider (cache off, distinct hosts). The same is
   measured against a bare asyncio peer (readline, json.loads, json.dumps,
   write) so the client's own overhead is the difference. Targets: async
   decider p99 overhead <= 2 ms; sync decider p99 within 5 ms of async.

Run: ``.venv/bin/python benchmarks/bench_control.py [--events N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import statistics
import time
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any

from condukt_egress.cli.events import View
from condukt_egress.control import ControlClient, TcpTarget
from condukt_egress.events import DecisionRequest, Event
from condukt_egress.redaction import Redactor

_SPAWN = multiprocessing.get_context("spawn")

# -- a realistic stream ---------------------------------------------------------------


def _stream(n: int) -> bytes:
    headers = {
        "host": "api.openai.com",
        "authorization": "Bearer sk-live-0123456789abcdef",
        "user-agent": "python-httpx/0.27",
        "accept": "application/json",
        "content-type": "application/json",
    }
    kinds = ["request_opened", "request_allowed", "request_closed", "request_denied"]
    lines = []
    for i in range(n):
        kind = kinds[i % 4]
        request: dict[str, Any] = {
            "id": f"7b0c4e0e-1a51-4e5e-8f7e-{i:012d}",
            "session_id": "run-42",
            "host": "api.openai.com" if kind != "request_denied" else "evil.example",
            "port": 443,
            "remote_addr": "10.0.0.7:40312",
            "scheme": "https",
            "bytes_in": 1234 if kind == "request_closed" else 0,
            "bytes_out": 567 if kind == "request_closed" else 0,
            "started_at": f"2026-11-28T19:{i // 240000 % 60:02d}:{i // 4000 % 60:02d}."
            f"{i // 4:06d}000Z",  # shared by the 4 events of one request
            "finished_at": "2026-11-28T19:37:08.200000000Z" if kind == "request_closed" else None,
        }
        if kind == "request_closed":
            request.update(method="POST", path="/v1/chat/completions", request_headers=headers)
            request["response_status"] = 200
        frame: dict[str, Any] = {"type": "event", "kind": kind, "request": request}
        if kind == "request_denied":
            frame["reason"] = "matched_deny_list"
            frame["matched_rule"] = {"index": 0, "kind": "deny"}
        elif kind == "request_allowed":
            frame["matched_rule"] = {"index": 1, "kind": "allow"}
        frame["at"] = f"2026-11-28T20:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i:09d}Z"
        lines.append(json.dumps(frame, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def _serve_stream(n: int, conn: Connection) -> None:
    """Stand-in process: write the stream of ``n`` events to every connection."""
    payload = _stream(n)
    server = socket.create_server(("127.0.0.1", 0))
    conn.send(server.getsockname()[1])
    while True:
        peer, _ = server.accept()
        with peer, contextlib.suppress(OSError):
            peer.sendall(payload)
            peer.shutdown(socket.SHUT_WR)
            while peer.recv(65536):
                pass


class _Sender:
    """The stream stand-in, in its own process."""

    def __init__(self, n: int) -> None:
        parent, child = _SPAWN.Pipe()
        self.process = _SPAWN.Process(target=_serve_stream, args=(n, child), daemon=True)
        self.process.start()
        self.port: int = parent.recv()

    def close(self) -> None:
        self.process.terminate()
        self.process.join()


async def _floor_asyncio(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    count = 0
    loads = json.loads
    while line := await reader.readline():
        loads(line)
        count += 1
    writer.close()
    await writer.wait_closed()
    return count


def _floor_blocking(port: int) -> int:
    count = 0
    loads = json.loads
    with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as f:
        for line in f:
            loads(line)
            count += 1
    return count


async def _client(port: int) -> int:
    counts = {"event": 0, "other": 0}
    client = ControlClient(TcpTarget("127.0.0.1", port), reconnect=False, on_notice=_ignore)
    async for frame in client.frames():  # dispatch: what a consumer minimally does
        if isinstance(frame, Event):
            counts["event"] += 1
        else:
            counts["other"] += 1
    await client.aclose()
    return counts["event"] + counts["other"]


def _ignore(_message: str) -> None:
    pass


async def _floor_reserialise(port: int) -> int:
    """The floor plus what any JSON printer does: re-serialise and write each line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    count = 0
    loads, dumps = json.loads, json.dumps
    with open(os.devnull, "w", encoding="utf-8") as out:
        while line := await reader.readline():
            out.write(dumps(loads(line)) + "\n")
            out.flush()
            count += 1
    writer.close()
    await writer.wait_closed()
    return count


async def _events_json(port: int) -> int:
    """``condukt-egress events --format json``'s path: the client and the command's view."""
    with open(os.devnull, "w", encoding="utf-8") as out:
        view = View(
            fmt="json", redactor=Redactor(), kinds=frozenset(), hosts=(), count=None, out=out
        )
        client = ControlClient(TcpTarget("127.0.0.1", port), reconnect=False, on_notice=_ignore)
        async for frame in client.frames():
            view.frame(frame)
        await client.aclose()
    return view.shown


def _rate(n: int, run: Callable[[], int]) -> float:
    start = time.perf_counter()
    got = run()
    elapsed = time.perf_counter() - start
    assert got == n, (got, n)
    return n / elapsed


def throughput(n: int, repeats: int) -> dict[str, float]:
    """Best rate of each reader; the three take turns so machine noise hits all alike."""
    sender = _Sender(n)
    runs: dict[str, Callable[[], int]] = {
        "floor_asyncio_readline": lambda: asyncio.run(_floor_asyncio(sender.port)),
        "floor_blocking_readline": lambda: _floor_blocking(sender.port),
        "client": lambda: asyncio.run(_client(sender.port)),
        "floor_reserialise_write": lambda: asyncio.run(_floor_reserialise(sender.port)),
        "events_json": lambda: asyncio.run(_events_json(sender.port)),
    }
    rates = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name] = max(rates[name], _rate(n, run))
    sender.close()
    return rates


# -- decision round trip -------------------------------------------------------------------


def _ask(rounds: int, burst: int, conn: Connection) -> None:
    """Stand-in process: fire bursts of decision requests, time each answer, send the times."""
    server = socket.create_server(("127.0.0.1", 0))
    conn.send(server.getsockname()[1])
    peer, _ = server.accept()
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples: list[float] = []
    reader = peer.makefile("rb")
    for r in range(rounds):
        lines = [
            json.dumps(
                {
                    "type": "decision_request",
                    "id": f"r{r}-{i}",
                    "session_id": "run-42",
                    "host": f"h{i}.example.com",
                    "port": 443,
                    "scheme": "https",
                }
            ).encode()
            + b"\n"
            for i in range(burst)
        ]
        pending = {f"r{r}-{i}" for i in range(burst)}
        start = time.perf_counter()
        peer.sendall(b"".join(lines))
        for _ in range(burst):
            answer = json.loads(reader.readline())
            samples.append(time.perf_counter() - start)
            pending.remove(answer["id"])
        time.sleep(0.005)  # let the peer go idle between bursts
    peer.close()
    server.close()
    conn.send(samples)


async def _instant(request: DecisionRequest) -> str:
    return "allow"


def _instant_sync(request: DecisionRequest) -> str:
    return "allow"


async def _client_answers(port: int, decider: Any) -> None:
    client = ControlClient(
        TcpTarget("127.0.0.1", port), decider=decider, cache_ttl=0, reconnect=False,
        on_notice=_ignore,
    )  # fmt: skip
    await client.run()
    await client.aclose()


async def _bare_answers(port: int, decider: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while line := await reader.readline():
        frame = json.loads(line)
        answer = {"type": "decision", "id": frame["id"], "action": "allow"}
        writer.write(json.dumps(answer).encode() + b"\n")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def round_trip(
    peer: Callable[[int, Any], Coroutine[Any, Any, None]],
    decider: Any,
    rounds: int,
    burst: int,
) -> list[float]:
    parent, child = _SPAWN.Pipe()
    asker = _SPAWN.Process(target=_ask, args=(rounds, burst, child), daemon=True)
    asker.start()
    asyncio.run(peer(parent.recv(), decider))
    samples: list[float] = parent.recv()
    asker.join()
    return samples


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--burst", type=int, default=100)
    args = parser.parse_args()

    rates = throughput(args.events, args.repeats)
    print(f"throughput, {args.events} events, best of {args.repeats}:")
    for name, rate in rates.items():
        print(f"  {name:<26} {rate:>12,.0f} events/s")
    for floor in ("floor_asyncio_readline", "floor_blocking_readline"):
        print(f"  client / {floor:<26} {rates['client'] / rates[floor]:6.1%}  (target >= 50%)")
    floor_rate = rates["floor_asyncio_readline"]
    print(
        f"  events --format json / floor_asyncio_readline  "
        f"{rates['events_json'] / floor_rate:6.1%}  (target >= 40%)"
    )
    print(
        f"  floor_reserialise_write / floor_asyncio_readline  "
        f"{rates['floor_reserialise_write'] / floor_rate:6.1%}"
    )

    print(f"\ndecision round trip, {args.rounds} rounds x {args.burst} concurrent requests:")
    bare = round_trip(_bare_answers, None, args.rounds, args.burst)
    results = {
        "bare asyncio peer": bare,
        "client, async instant decider": round_trip(
            _client_answers, _instant, args.rounds, args.burst
        ),
        "client, sync instant decider": round_trip(
            _client_answers, _instant_sync, args.rounds, args.burst
        ),
    }
    for name, samples in results.items():
        print(
            f"  {name:<31} p50 {_pct(samples, 50):6.3f} ms   p99 {_pct(samples, 99):6.3f} ms"
            f"   mean {statistics.fmean(samples) * 1000:6.3f} ms"
        )
    for name, samples in list(results.items())[1:]:
        print(
            f"  overhead vs bare, {name[8:]:<22} p50 {_pct(samples, 50) - _pct(bare, 50):6.3f} ms"
            f"   p99 {_pct(samples, 99) - _pct(bare, 99):6.3f} ms  (target p99 <= 2 ms)"
        )
    sync_gap = _pct(results["client, sync instant decider"], 99) - _pct(
        results["client, async instant decider"], 99
    )
    print(f"  sync decider p99 - async decider p99: {sync_gap:6.3f} ms  (target <= 5 ms)")


if __name__ == "__main__":
    main()
