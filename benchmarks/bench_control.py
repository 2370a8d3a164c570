"""Benchmark of the control-channel client (issue 4).

1. Throughput: events decoded and dispatched per second by ``ControlClient``
   vs the floor of a bare ``readline`` + ``json.loads`` loop over the same
   loopback stream (both an asyncio ``StreamReader.readline`` floor and a
   plain blocking-socket ``readline`` floor). Target: >= 50 % of the floor.
2. Decision round trip: a sidecar stand-in on another thread fires 100
   concurrent ``decision_request`` frames per round and times each answer;
   the client answers with an instant decider (cache off, distinct hosts).
   The same is measured against a bare asyncio peer (readline, json.loads,
   json.dumps, write) so the client's own overhead is the difference.
   Target: p99 overhead <= 2 ms.

Run: ``.venv/bin/python benchmarks/bench_control.py [--events N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from condukt_egress.control import ControlClient, TcpTarget
from condukt_egress.events import DecisionRequest, Event

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


class _Sender:
    """Accepts connections and writes ``payload`` to each, then closes it."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.sendall(self.payload)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass


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


def _rate(n: int, run: Callable[[], int]) -> float:
    start = time.perf_counter()
    got = run()
    elapsed = time.perf_counter() - start
    assert got == n, (got, n)
    return n / elapsed


def throughput(n: int, repeats: int) -> dict[str, float]:
    """Best rate of each reader; the three take turns so machine noise hits all alike."""
    sender = _Sender(_stream(n))
    runs: dict[str, Callable[[], int]] = {
        "floor_asyncio_readline": lambda: asyncio.run(_floor_asyncio(sender.port)),
        "floor_blocking_readline": lambda: _floor_blocking(sender.port),
        "client": lambda: asyncio.run(_client(sender.port)),
    }
    rates = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name] = max(rates[name], _rate(n, run))
    sender.sock.close()
    return rates


# -- decision round trip -------------------------------------------------------------------


class _Asker:
    """The sidecar's side: fires a burst of decision requests, times each answer."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]

    def run(self, rounds: int, burst: int) -> list[float]:
        conn, _ = self.server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples: list[float] = []
        reader = conn.makefile("rb")
        for r in range(rounds):
            sent: dict[str, float] = {}
            lines = []
            for i in range(burst):
                rid = f"r{r}-{i}"
                lines.append(
                    json.dumps(
                        {
                            "type": "decision_request",
                            "id": rid,
                            "session_id": "run-42",
                            "host": f"h{i}.example.com",
                            "port": 443,
                            "scheme": "https",
                        }
                    ).encode()
                    + b"\n"
                )
            start = time.perf_counter()
            for i in range(burst):
                sent[f"r{r}-{i}"] = start
            conn.sendall(b"".join(lines))
            for _ in range(burst):
                answer = json.loads(reader.readline())
                samples.append(time.perf_counter() - sent.pop(answer["id"]))
            assert not sent
        conn.close()
        self.server.close()
        return samples


async def _instant(request: DecisionRequest) -> str:
    return "allow"


def _instant_sync(request: DecisionRequest) -> str:
    return "allow"


async def _client_answers(port: int, decider: Any, stop: threading.Event) -> None:
    client = ControlClient(
        TcpTarget("127.0.0.1", port), decider=decider, cache_ttl=0, reconnect=False,
        on_notice=_ignore,
    )  # fmt: skip
    await client.run()
    await client.aclose()


async def _bare_answers(port: int, decider: Any, stop: threading.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while line := await reader.readline():
        frame = json.loads(line)
        answer = {"type": "decision", "id": frame["id"], "action": "allow"}
        writer.write(json.dumps(answer).encode() + b"\n")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def round_trip(
    peer: Callable[[int, Any, threading.Event], Coroutine[Any, Any, None]],
    decider: Any,
    rounds: int,
    burst: int,
) -> list[float]:
    asker = _Asker()
    result: list[float] = []
    thread = threading.Thread(target=lambda: result.extend(asker.run(rounds, burst)))
    thread.start()
    asyncio.run(peer(asker.port, decider, threading.Event()))
    thread.join()
    return result


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


if __name__ == "__main__":
    main()
