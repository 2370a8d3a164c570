"""Sessions on the real engine: time to a Running Pod, throughput, and memory.

Needs the e2e tools and cluster (``scripts/e2e-tools``, ``scripts/e2e-cluster
start``, ``eval "$(scripts/e2e-cluster env)"``); without them it says so and
exits 2. Each measurement is a whole process, as a service would run it:

- **time to Running**: from ``up()`` to the session Pod's phase ``Running``,
  p50 and p95 over ``--sessions`` sessions, against the floor of the same
  sessions as ``condukt-egress render | kubectl apply -f -`` plus waiting for
  ``Running`` (``kubectl wait``) on the same cluster;
- **sessions per minute** at each ``--max-operations`` (default 1, 2, 4): all
  sessions started at once, the wall time until every Pod is Running;
- **peak RSS**: the process tree (the service process, every ``pulumi`` CLI
  and plugin) sampled every 100 ms; its peak, and the peak divided by the
  operations running at once.

Prints one JSON document with the machine and the date. Usage::

    python benchmarks/bench_sessions.py --sessions 20 --max-operations 1,2,4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from condukt_egress.naming import LABEL_SESSION

ROOT = Path(__file__).resolve().parents[1]

# The child process: up N sessions at once under max_operations, time each to Running.
CHILD = r"""
import json, os, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from condukt_egress.automation import KubernetesSettings, SessionSpec, SessionStacks

state, namespace, count, slots = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
stacks = SessionStacks(state, passphrase=os.environ["PULUMI_CONFIG_PASSPHRASE"],
                       kubernetes=KubernetesSettings(kubeconfig=os.environ["KUBECONFIG"]),
                       max_operations=slots, install_plugins=False)
stacks.pulumi_version()

def one(i):
    sid = f"bench-{slots}-{i}"
    start = time.perf_counter()
    stacks.up(SessionSpec(sid, namespace=namespace))
    while True:
        pod = stacks.status(sid).pod
        if pod is not None and pod.phase == "Running":
            return time.perf_counter() - start
        time.sleep(0.1)

wall = time.perf_counter()
with ThreadPoolExecutor(count) as pool:
    seconds = list(pool.map(one, range(count)))
wall = time.perf_counter() - wall
with ThreadPoolExecutor(count) as pool:
    list(pool.map(stacks.destroy, [f"bench-{slots}-{i}" for i in range(count)]))
print(json.dumps({"seconds": seconds, "wall": wall}))
"""


def missing() -> list[str]:
    """What the benchmark needs and this environment lacks."""
    out = [tool for tool in ("pulumi", "kubectl") if shutil.which(tool) is None]
    out += [var for var in ("KUBECONFIG", "PULUMI_CONFIG_PASSPHRASE") if not os.environ.get(var)]
    return out


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo.extend(children.get(current, []))
    return total


def run_child(namespace: str, count: int, slots: int) -> dict[str, Any]:
    """One service process: ``count`` sessions at once; its timings and peak tree RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as state:
        child = subprocess.Popen(  # noqa: S603 - our interpreter, our script
            [sys.executable, "-c", CHILD, state, namespace, str(count), str(slots)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        peak = 0
        while child.poll() is None:
            peak = max(peak, tree_rss(child.pid))
            time.sleep(0.1)
        out, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"the session process failed (exit {child.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mib"] = round(peak / 2**20, 1)
    result["peak_rss_per_operation_mib"] = round(peak / 2**20 / min(slots, count), 1)
    return result


def floor(namespace: str, count: int) -> list[float]:
    """Seconds from ``render | kubectl apply`` to a Running Pod, one session at a time."""
    seconds = []
    for i in range(count):
        sid = f"floor-{i}"
        start = time.perf_counter()
        rendered = subprocess.run(  # noqa: S603 - our CLI
            [
                sys.executable,
                "-m",
                "condukt_egress",
                "render",
                "--session-id",
                sid,
                "-n",
                namespace,
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(
            ["kubectl", "apply", "-f", "-"],  # noqa: S607
            input=rendered,
            check=True,
            capture_output=True,
        )
        subprocess.run(  # noqa: S603
            [  # noqa: S607
                "kubectl",
                "wait",
                "-n",
                namespace,
                "pod",
                "-l",
                LABEL_SESSION,
                "--for=jsonpath={.status.phase}=Running",
                "--timeout=120s",
            ],
            check=True,
            capture_output=True,
        )
        seconds.append(time.perf_counter() - start)
        subprocess.run(
            ["kubectl", "delete", "-f", "-", "--wait=true"],  # noqa: S607
            input=rendered,
            check=True,
            capture_output=True,
        )
    return seconds


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p95 of ``values`` in seconds."""
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return {"p50": round(statistics.median(values), 2), "p95": round(cuts[18], 2)}


def main() -> int:
    """Run the measurements and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--max-operations", default="1,2,4")
    args = parser.parse_args()
    lacking = missing()
    if lacking:
        print(
            f"bench_sessions: needs the e2e tools and cluster (missing {', '.join(lacking)}); "
            'run scripts/e2e-tools, scripts/e2e-cluster start, eval "$(scripts/e2e-cluster env)"',
            file=sys.stderr,
        )
        return 2
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["kubectl", "create", "namespace", namespace], check=True)  # noqa: S603,S607
    try:
        report: dict[str, Any] = {
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "pulumi": subprocess.run(
                ["pulumi", "version"],  # noqa: S607
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip(),
            "sessions": args.sessions,
        }
        floor_seconds = floor(namespace, args.sessions)
        report["floor_render_apply_to_running"] = percentiles(floor_seconds)
        runs = {}
        for slots in (int(s) for s in args.max_operations.split(",")):
            result = run_child(namespace, args.sessions, slots)
            runs[str(slots)] = {
                "up_to_running": percentiles(result["seconds"]),
                "sessions_per_minute": round(args.sessions / result["wall"] * 60, 1),
                "peak_rss_mib": result["peak_rss_mib"],
                "peak_rss_per_operation_mib": result["peak_rss_per_operation_mib"],
            }
        report["max_operations"] = runs
        p50 = report["floor_render_apply_to_running"]["p50"]
        report["ratio_p50_vs_floor"] = {
            k: round(v["up_to_running"]["p50"] / p50, 1) for k, v in runs.items()
        }
    finally:
        subprocess.run(  # noqa: S603
            ["kubectl", "delete", "namespace", namespace, "--wait=false"],  # noqa: S607
            check=False,
            capture_output=True,
        )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
