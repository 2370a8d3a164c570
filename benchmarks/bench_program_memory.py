"""Measure the memory the Python side of one session operation takes.

Run: ``.venv/bin/python benchmarks/bench_program_memory.py [--runs N]``

An Automation API ``up`` runs three kinds of processes: the ``pulumi`` CLI
(the engine), the kubernetes and tls resource plugins, and the Python
program. With an inline program (what :class:`SessionStacks` uses) the
program runs inside the service's own process, served to the engine over
gRPC, so its cost is the service's import of the SDKs plus what one run of
:func:`session_program` allocates. This script measures those in fresh
interpreters (peak RSS, ``ru_maxrss`` of each child): the program runs under
the SDK's mocks (tests/pulumi_harness.py), which do the same registrations and
serialisation as a real run minus the gRPC round trips. The CLI and the
plugins cannot run here; their share is an estimate docs/benchmarks.md labels as such.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEPS = {
    "interpreter alone": "pass",
    "service imports (condukt_egress.automation, pulumi_kubernetes, pulumi_tls)": (
        "import condukt_egress.automation, condukt_egress.program, pulumi_kubernetes, pulumi_tls"
    ),
    "imports + 1 program run": (
        "from tests.pulumi_harness import run\n"
        "from condukt_egress.program import session_program\n"
        "run(session_program, config={'sessionId': 'bench-0', 'namespace': 'agents'})"
    ),
    "imports + {n} program runs, one after another": (
        "from tests.pulumi_harness import run\n"
        "from condukt_egress.program import session_program\n"
        "for i in range({n}):\n"
        "    run(session_program, config={'sessionId': f'bench-{i}', 'namespace': 'agents'})"
    ),
}


def peak_rss_mib(code: str) -> float:
    """Peak resident set size of a fresh interpreter running ``code``, in MiB."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"measurement failed (exit {process.returncode}): {code!r}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="program runs in the last step")
    n = parser.parse_args().runs
    print("| step | peak RSS (MiB) |\n|---|---|")
    for label, code in STEPS.items():
        label_n, code_n = label.replace("{n}", str(n)), code.replace("{n}", str(n))
        print(f"| {label_n} | {peak_rss_mib(code_n):.1f} |", flush=True)


if __name__ == "__main__":
    main()
