"""Where a session's engine time goes: one ``up`` cut into phases, on the real engine.

``bench_sessions.py`` says one session costs several times the ``render |
kubectl apply`` floor; this script says where that time is spent, so work on
speed starts at the largest phase. Needs the e2e tools and cluster
(``scripts/e2e-tools``, ``scripts/e2e-cluster start``, ``eval
"$(scripts/e2e-cluster env)"``); without them it says so and exits 2.

Sessions run one at a time in a service process (``SessionStacks``, as
``examples/service`` runs them). Two independent clocks, both read by the
service process's own observers, never by the code measured:

- every ``pulumi`` CLI process the Automation API spawns, through a shell
  wrapper given as ``pulumi_root`` that logs each subcommand's spawn and exit
  (the wrapper costs about 2 ms a call, counted in "other CLI calls");
- the engine's own events (``on_event``), stamped when the service receives
  them: the prelude, each resource's pre and outputs events, the summary.

The phases, per session, in order (medians over ``--sessions``):

1. ``service before the CLI``: ``up()`` called until ``pulumi up`` is spawned,
   minus the other CLI calls in that span (workspace, stack select, config);
2. ``other CLI calls``: every pulumi process that is not ``up`` itself;
3. ``CLI start to prelude``: the CLI loads the stack, its checkpoint, config;
4. ``program start``: prelude to the stack resource's first event (language
   host, interpreter, the SDK's and our imports, the program's first
   registration);
5. one row per resource type: pre to outputs of each (the provider's work,
   for the Pod including waiting for it to be Running);
6. ``engine after the last resource``: last outputs to the summary;
7. ``CLI exit``: summary to the ``up`` process's exit (checkpoint, plugins);
8. ``service after the CLI``: ``up`` exit until ``up()`` returns.

Prints one JSON document with the machine and the date::

    python benchmarks/bench_session_phases.py --sessions 7
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
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# The wrapper the Automation API runs as ``pulumi``: one log line per CLI process.
WRAPPER = """#!/usr/bin/env bash
start=$(date +%s.%N)
{real} "$@"
rc=$?
printf '%s %s %s\\n' "$start" "$(date +%s.%N)" "$*" >> {log}
exit $rc
"""

# The service process: sessions one at a time, their events and their timings.
CHILD = r"""
import json, os, sys, time
from pathlib import Path
from condukt_egress.automation import KubernetesSettings, SessionSpec, SessionStacks

state, root, namespace, count = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
stacks = SessionStacks(state, passphrase=os.environ["PULUMI_CONFIG_PASSPHRASE"],
                       kubernetes=KubernetesSettings(kubeconfig=os.environ["KUBECONFIG"]),
                       pulumi_root=root, install_plugins=False)
stacks.pulumi_version()
out = []
for i in range(count):
    sid = f"phases-{i}"
    events = []
    def on_event(_session, event, events=events):
        now = time.time()
        if event.prelude_event is not None:
            events.append((now, "prelude", None, None))
        elif event.resource_pre_event is not None:
            m = event.resource_pre_event.metadata
            events.append((now, "pre", m.type, m.urn))
        elif event.res_outputs_event is not None:
            m = event.res_outputs_event.metadata
            events.append((now, "outputs", m.type, m.urn))
        elif event.summary_event is not None:
            events.append((now, "summary", None, None))
    called = time.time()
    stacks.up(SessionSpec(sid, namespace=namespace), on_event=on_event)
    returned = time.time()
    while True:
        pod = stacks.status(sid).pod
        if pod is not None and pod.phase == "Running":
            break
        time.sleep(0.05)
    out.append({"called": called, "returned": returned, "running": time.time(),
                "events": events})
    stacks.destroy(sid)
print(json.dumps(out))
"""


def missing() -> list[str]:
    """What the benchmark needs and this environment lacks."""
    out = [tool for tool in ("pulumi", "kubectl") if shutil.which(tool) is None]
    out += [var for var in ("KUBECONFIG", "PULUMI_CONFIG_PASSPHRASE") if not os.environ.get(var)]
    return out


def command_name(argv: list[str]) -> str:
    """``stack select``, ``config set-all``, ``up``: a CLI call's (sub)command, no flags."""
    words = [word for word in argv if not word.startswith("-")]
    if words and words[0] in ("stack", "config") and len(words) > 1:
        return f"{words[0]} {words[1]}" if words[1] in GROUP_VERBS else words[0]
    return words[0] if words else ""


# The verbs of ``pulumi stack`` and ``pulumi config`` the Automation API uses.
GROUP_VERBS = {"select", "init", "rm", "output", "history", "ls", "set", "set-all", "get", "rm-all"}


def cli_calls(log: Path) -> list[tuple[float, float, str]]:
    """The wrapper's log: (spawn, exit, command) per CLI process, in spawn order."""
    calls = []
    for line in log.read_text().splitlines():
        start, end, *argv = line.split(" ")
        calls.append((float(start), float(end), command_name(argv)))
    return sorted(calls)


def phases(
    session: dict[str, Any], calls: list[tuple[float, float, str]]
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """One session's additive phases, its other CLI calls and its resources, in seconds.

    The phases add up to ``up()``'s wall time; each resource row is its pre to
    outputs span, and these overlap (the engine runs independent ones at once,
    and a component's span covers its children's).
    """
    called, returned = session["called"], session["returned"]
    mine = [c for c in calls if called <= c[0] <= returned]
    ups = [c for c in mine if c[2] == "up"]
    if len(ups) != 1:
        raise SystemExit(f"expected one `pulumi up` per session, saw {len(ups)}")
    up_start, up_end, _ = ups[0]
    other: dict[str, float] = defaultdict(float)
    for start, end, name in mine:
        if name != "up":
            other[name] += end - start
    before = sum(end - start for start, end, name in mine if name != "up" and end <= up_start)
    events = session["events"]
    prelude = next(t for t, kind, _, _ in events if kind == "prelude")
    summary = next(t for t, kind, _, _ in events if kind == "summary")
    stack = next(t for t, _, typ, _ in events if typ == "pulumi:pulumi:Stack")
    pre: dict[str, float] = {}
    resources: dict[str, float] = defaultdict(float)
    last = stack
    for t, kind, typ, urn in events:
        if kind == "pre":
            pre[urn] = t
        elif kind == "outputs" and urn in pre and typ != "pulumi:pulumi:Stack":
            resources[typ] += t - pre[urn]
            last = max(last, t)
    additive = {
        "service before the CLI": up_start - called - before,
        "other CLI calls": sum(other.values()),
        "CLI start to prelude": prelude - up_start,
        "program start": stack - prelude,
        "resources": last - stack,
        "engine after the last resource": summary - last,
        "CLI exit": up_end - summary,
        "service after the CLI": returned - up_end - (sum(other.values()) - before),
    }
    additive["up() total"] = returned - called
    additive["up() return to Pod Running"] = session["running"] - returned
    return additive, dict(other), dict(resources)


def medians(rows: list[dict[str, float]]) -> dict[str, float]:
    """The median of each key over ``rows`` (a key a row lacks counts as 0)."""
    keys = dict.fromkeys(key for row in rows for key in row)
    return {k: round(statistics.median(row.get(k, 0.0) for row in rows), 3) for k in keys}


def run(
    namespace: str, count: int, tree: Path
) -> list[tuple[dict[str, float], dict[str, float], dict[str, float]]]:
    """``count`` sessions, one at a time, in a service process; their phases."""
    real = shutil.which("pulumi")
    assert real is not None
    with tempfile.TemporaryDirectory(prefix="bench-phases-") as tmp:
        root = Path(tmp, "root")
        (root / "bin").mkdir(parents=True)
        log = Path(tmp, "cli.log")
        wrapper = root / "bin" / "pulumi"
        wrapper.write_text(WRAPPER.format(real=real, log=log))
        wrapper.chmod(0o755)
        child = subprocess.run(  # noqa: S603 - our interpreter, our script
            [
                sys.executable,
                "-c",
                CHILD,
                str(Path(tmp, "state")),
                str(root),
                namespace,
                str(count),
            ],
            cwd=tree,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        sessions = json.loads(child.stdout.strip().splitlines()[-1])
        calls = cli_calls(log)
    return [phases(s, calls) for s in sessions]


def main() -> int:
    """Run the sessions and print the median of each phase as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=7)
    parser.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="the checkout whose condukt_egress the service imports (default: this one)",
    )
    args = parser.parse_args()
    lacking = missing()
    if lacking:
        print(
            f"bench_session_phases: needs the e2e tools and cluster (missing "
            f"{', '.join(lacking)}); run scripts/e2e-tools, scripts/e2e-cluster start, "
            'eval "$(scripts/e2e-cluster env)"',
            file=sys.stderr,
        )
        return 2
    namespace = f"phases-{uuid.uuid4().hex[:8]}"
    subprocess.run(  # noqa: S603
        ["kubectl", "create", "namespace", namespace],  # noqa: S607
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        per_session = run(namespace, args.sessions, args.tree.resolve())
    finally:
        subprocess.run(  # noqa: S603
            ["kubectl", "delete", "namespace", namespace, "--wait=false"],  # noqa: S607
            check=False,
            capture_output=True,
        )
    phase_rows, call_rows, resource_rows = zip(*per_session, strict=True)
    phase = medians(list(phase_rows))
    total = phase["up() total"]
    report = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "sessions": args.sessions,
        "tree": str(args.tree.resolve()),
        "phases_median_seconds": phase,
        "phases_share_of_up": {
            name: round(value / total, 3)
            for name, value in phase.items()
            if name not in ("up() total", "up() return to Pod Running")
        },
        "other_cli_calls_median_seconds": medians(list(call_rows)),
        "resources_median_seconds_overlapping": medians(list(resource_rows)),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
