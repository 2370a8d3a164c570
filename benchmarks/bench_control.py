"""Benchmark the control channel as users run it: whole processes, paired runs, medians.

Every measured reader or answerer is a fresh process (its package
byte-compiled, as an installed copy is), spawned and timed like a user's
(``condukt-egress events`` itself, or a service's ``ControlClient``), and
the sidecar stand-ins run in processes of their own, as the sidecar does:
in one process their threads would share the interpreter lock with the
client and put Python's 5 ms switch interval inside every measurement.
Each pair (round) runs every contender once, in rotating order, so machine
noise hits all alike; the figures are medians over rounds, ratios are taken
within a round.

1. Throughput: a stand-in writes N events to every connection. Contenders:
   a bare asyncio ``readline`` + ``json.loads`` process (the floor), a floor
   that also re-serialises and writes each line, a ``ControlClient`` process
   that decodes and dispatches, and ``condukt-egress events --format json
   --no-reconnect`` (decode, filter, redact, encode, write, flush; output to
   /dev/null), each timed from spawn to exit. Targets: client >= 50 % and
   ``events --format json`` >= 40 % of the floor's rate.
2. Decision round trip: a stand-in fires bursts of 100 concurrent
   ``decision_request`` frames and times each answer. Answerers: a bare
   asyncio peer (readline, json.loads, json.dumps, write) and ``ControlClient``
   processes with an instant async or sync decider (cache off, distinct
   hosts). Targets: the async decider's p99 at most 2 ms over the bare
   peer's; the sync decider's p99 within 5 ms of the async one's.

Run: ``.venv/bin/python benchmarks/bench_control.py [--events N] [--rounds R] [--pairs P]``
(``--gc-freeze`` makes the client processes call ``gc.collect()`` and
``gc.freeze()`` first, as ``condukt-egress events`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _processes import byte_compile, rotated, timed_rounds

ROOT = Path(__file__).resolve().parent.parent
TREE = [ROOT]
"""The checkout whose ``condukt_egress`` the measured processes import (``--tree``)."""
_SPAWN = multiprocessing.get_context("spawn")

# -- the processes measured ------------------------------------------------------------

FLOOR = """
import asyncio, json, sys
async def main(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    loads = json.loads
    while line := await reader.readline():
        loads(line)
    writer.close()
asyncio.run(main(int(sys.argv[1])))
"""
"""The bare floor: asyncio ``readline`` and ``json.loads``, nothing else."""

FLOOR_RESERIALISE = """
import asyncio, json, sys
async def main(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    loads, dumps, out = json.loads, json.dumps, sys.stdout
    while line := await reader.readline():
        out.write(dumps(loads(line)) + "\\n")
        out.flush()
    writer.close()
asyncio.run(main(int(sys.argv[1])))
"""
"""The floor plus what any JSON printer does: re-serialise and write each line."""

CLIENT = """
import asyncio, gc, sys
from condukt_egress.control import ControlClient, TcpTarget
from condukt_egress.events import Event
if sys.argv[2] == "freeze":
    gc.collect()
    gc.freeze()
async def main(port):
    counts = {"event": 0, "other": 0}
    client = ControlClient(TcpTarget("127.0.0.1", port), reconnect=False, on_notice=print)
    async for frame in client.frames():  # dispatch: what a consumer minimally does
        counts["event" if isinstance(frame, Event) else "other"] += 1
    await client.aclose()
asyncio.run(main(int(sys.argv[1])))
"""
"""A service reading frames with ``ControlClient`` and dispatching on their type."""

BARE_ANSWERS = """
import asyncio, json, sys
async def main(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while line := await reader.readline():
        frame = json.loads(line)
        answer = {"type": "decision", "id": frame["id"], "action": "allow"}
        writer.write(json.dumps(answer).encode() + b"\\n")
    writer.close()
asyncio.run(main(int(sys.argv[1])))
"""
"""The bare answerer: what any asyncio peer must do per decision request."""

CLIENT_ANSWERS = """
import asyncio, gc, sys
from condukt_egress.control import ControlClient, TcpTarget
async def instant_async(request):
    return "allow"
def instant_sync(request):
    return "allow"
decider = instant_async if sys.argv[2] == "async" else instant_sync
if sys.argv[3] == "freeze":
    gc.collect()
    gc.freeze()
async def main(port):
    client = ControlClient(
        TcpTarget("127.0.0.1", port), decider=decider, cache_ttl=0, reconnect=False,
        on_notice=lambda message: None,
    )
    await client.run()
    await client.aclose()
asyncio.run(main(int(sys.argv[1])))
"""
"""A service answering with an instant decider (argv: port, async|sync, freeze|no-freeze)."""


# -- throughput ------------------------------------------------------------------------


def _stream(n: int) -> bytes:
    """``n`` events as the sidecar writes them: 4 per request, a credential in headers."""
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


def throughput(n: int, pairs: int, freeze: str) -> dict[str, list[float]]:
    """Per round, each reader's rate in events/s; the stream stand-in runs throughout."""
    parent, child = _SPAWN.Pipe()
    sender = _SPAWN.Process(target=_serve_stream, args=(n, child), daemon=True)
    sender.start()
    port = str(parent.recv())
    py = sys.executable
    events = ["events", "--connect", f"127.0.0.1:{port}", "--format", "json", "--no-reconnect"]
    readers: dict[str, list[str]] = {
        "floor": [py, "-c", FLOOR, port],
        "floor, re-serialise + write": [py, "-c", FLOOR_RESERIALISE, port],
        "ControlClient, dispatch": [py, "-c", CLIENT, port, freeze],
        "events --format json": [py, "-m", "condukt_egress", *events],
    }
    try:
        times = timed_rounds(readers, pairs, TREE[0])
    finally:
        sender.terminate()
        sender.join()
    return {name: [n / t for t in series] for name, series in times.items()}


# -- decision round trip ---------------------------------------------------------------


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


def answer_times(argv: Callable[[str], list[str]], rounds: int, burst: int) -> list[float]:
    """Seconds to each answer of an answerer process ``argv(port)``, from the asker's side."""
    parent, child = _SPAWN.Pipe()
    asker = _SPAWN.Process(target=_ask, args=(rounds, burst, child), daemon=True)
    asker.start()
    port = str(parent.recv())
    subprocess.run(argv(port), check=True, cwd=TREE[0])  # noqa: S603 - our own interpreter
    samples: list[float] = parent.recv()
    asker.join()
    return samples


def pct(samples: list[float], q: float) -> float:
    """The ``q`` percentile of ``samples``, in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


def round_trips(rounds: int, burst: int, pairs: int, freeze: str) -> dict[str, list[list[float]]]:
    """Per pair, the answer times of the bare peer and of the async and sync deciders."""
    py = sys.executable
    answerers: dict[str, Callable[[str], list[str]]] = {
        "bare asyncio peer": lambda port: [py, "-c", BARE_ANSWERS, port],
        "async decider": lambda port: [py, "-c", CLIENT_ANSWERS, port, "async", freeze],
        "sync decider": lambda port: [py, "-c", CLIENT_ANSWERS, port, "sync", freeze],
    }
    runs: dict[str, list[list[float]]] = {name: [] for name in answerers}
    for r in range(pairs):
        for name in rotated(list(answerers), r):
            runs[name].append(answer_times(answerers[name], rounds, burst))
    return runs


# -- report ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=100_000, help="events per stream")
    parser.add_argument("--rounds", type=int, default=100, help="bursts per round-trip run")
    parser.add_argument("--burst", type=int, default=100, help="concurrent requests per burst")
    parser.add_argument("--pairs", type=int, default=7, help="rounds of every contender")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-round-trip", action="store_true")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="client processes call gc.collect() + gc.freeze() first, as `events` does",
    )
    parser.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="checkout whose condukt_egress the processes import (e.g. an older commit's); "
        "it is their working directory, so `python -m` and `-c` find its package first",
    )
    args = parser.parse_args()
    TREE[0] = args.tree.resolve()
    byte_compile(TREE[0])
    freeze = "freeze" if args.gc_freeze else "no-freeze"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"tree: {TREE[0]}")

    if not args.skip_throughput:
        rates = throughput(args.events, args.pairs, freeze)
        floor = rates["floor"]
        print(f"\nthroughput: {args.events:,} events, {args.pairs} rounds of whole processes")
        print(f"  {'reader':<30}{'events/s (median)':>20}{'/ floor (median of rounds)':>30}")
        targets = {"ControlClient, dispatch": 0.5, "events --format json": 0.4}
        for name, series in rates.items():
            ratio = statistics.median(x / f for x, f in zip(series, floor, strict=True))
            target = f"  (target >= {targets[name]:.0%})" if name in targets else ""
            rate = statistics.median(series)
            print(f"  {name:<30}{rate:>20,.0f}{ratio:>29.1%}{target}")

    if not args.skip_round_trip:
        runs = round_trips(args.rounds, args.burst, args.pairs, freeze)
        print(
            f"\ndecision round trip: {args.pairs} rounds of whole processes, each "
            f"{args.rounds} bursts x {args.burst} concurrent requests ({freeze}); medians"
        )
        for name, samples in runs.items():
            p50 = statistics.median(pct(s, 50) for s in samples)
            p99s = [pct(s, 99) for s in samples]
            print(
                f"  {name:<20} p50 {p50:7.3f} ms   p99 {statistics.median(p99s):7.3f} ms"
                f"   (p99 per round: {', '.join(f'{p:.1f}' for p in p99s)})"
            )
        for name, base, limit in (
            ("async decider", "bare asyncio peer", 2.0),
            ("sync decider", "async decider", 5.0),
        ):
            gaps = [pct(a, 99) - pct(b, 99) for a, b in zip(runs[name], runs[base], strict=True)]
            print(
                f"  p99 {name} - {base}: median {statistics.median(gaps):6.2f} ms "
                f"(target <= {limit:g} ms; per round: {', '.join(f'{g:.1f}' for g in gaps)})"
            )


if __name__ == "__main__":
    main()
