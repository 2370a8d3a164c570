"""Benchmark ``condukt-egress inject`` against ``istioctl kube-inject`` on real workloads.

Run: ``.venv/bin/python benchmarks/bench_inject.py [--pairs N] [--istioctl PATH]``

The stream: every workload of the shared corpus (``../shared/k8s-corpus``, 351
documents of the eight kinds) that both tools accept, as one multi-document
YAML file, namespaces dropped (the session's applies). ``inject`` refuses the
corpus' bypasses by design (host network, privileged containers, host paths,
added capabilities: 30 of 351) and ``istioctl`` refuses documents that are
invalid for its Go types (a port given as a string: 2 more); the script says
which and leaves them out, so both tools do the same work.

istioctl runs offline, as in a CI job: ``--injectConfigFile``,
``--meshConfigFile`` and ``--valuesFile`` are taken from its own
``istioctl manifest generate`` (the default profile) at run time, and
``--revision default`` keeps it from looking for a cluster (without it the
command waits for an API server). Build istioctl from its Go module, e.g.
``GOBIN=/tmp/istioctl go install istio.io/istio/istioctl/cmd/istioctl@<version>``,
or use the e2e tools' copy; nothing of istio's is committed here.

Both run as whole processes, spawn to exit, with ``-f STREAM`` and stdout to
/dev/null, in N rounds alternating which goes first (benchmarks/_processes.py),
our package byte-compiled as an installed copy is. Reported: the medians and
the median of the per-round ratios, and each one's peak resident memory
(one more run each). Target: ``inject`` no slower than
``istioctl kube-inject`` (ratio <= 1).
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from _processes import byte_compile, timed_rounds

from condukt_egress.args import SandboxEgressArgs
from condukt_egress.errors import ConfigError
from condukt_egress.render import read_manifests, yaml_stream
from condukt_egress.workloads import document_workload, inject_document

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.corpus import CORPUS  # noqa: E402

ARGS = SandboxEgressArgs(session_id="bench", namespace="agents")
SESSION = [
    "--session-id",
    "bench",
    "-n",
    "agents",
    # inject names the session's Secret as render or the stack made it; any name
    # of this session's does for timing.
    "--secret-name",
    ARGS.names.secret_name({}),
]


def find_istioctl(given: str | None) -> str:
    """The istioctl to run: the flag, $ISTIOCTL, PATH, or the e2e tools' cache."""
    cached = sorted(glob.glob(os.path.expanduser("~/.cache/condukt-egress-e2e/*/bin/istioctl")))
    for candidate in (given, os.environ.get("ISTIOCTL"), shutil.which("istioctl"), *cached):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    sys.exit(
        "no istioctl: give --istioctl PATH, or build one from its Go module: "
        "GOBIN=/tmp/istioctl go install istio.io/istio/istioctl/cmd/istioctl@<version>"
    )


def istio_files(istioctl: str, into: Path) -> list[str]:
    """The offline injection flags, from istioctl's own default-profile manifest."""
    generated = subprocess.run(  # noqa: S603 - the tool under test
        [istioctl, "manifest", "generate"], capture_output=True, text=True, check=True
    ).stdout
    files: dict[str, str] = {}
    for doc in yaml.safe_load_all(generated):
        if not isinstance(doc, dict) or doc.get("kind") != "ConfigMap":
            continue
        name, data = doc["metadata"]["name"], doc.get("data") or {}
        if name == "istio" and "mesh" in data:
            files["--meshConfigFile"] = data["mesh"]
        elif name == "istio-sidecar-injector" and "config" in data:
            files["--injectConfigFile"] = data["config"]
            files["--valuesFile"] = data["values"]
    flags = ["--revision", "default"]
    for flag, text in sorted(files.items()):
        path = into / flag.strip("-")
        path.write_text(text)
        flags += [flag, str(path)]
    return flags


def corpus_workloads() -> list[dict[str, Any]]:
    """Every workload of the corpus, its namespace dropped (the session's applies)."""
    if CORPUS is None:
        sys.exit("no ../shared/k8s-corpus beside this checkout")
    out = []
    for path in sorted(CORPUS.glob("*.y*ml")):
        for doc in read_manifests(path.read_text(encoding="utf-8"), path.name):
            if document_workload(doc) is not None:
                if isinstance(doc.get("metadata"), dict):
                    doc["metadata"].pop("namespace", None)
                out.append(doc)
    return out


def both_accept(docs: list[dict[str, Any]], istioctl: list[str]) -> list[dict[str, Any]]:
    """The documents both tools inject, saying why each other one is left out."""
    ours = []
    for doc in docs:
        try:
            inject_document(doc, ARGS)
            ours.append(doc)
        except ConfigError as exc:
            print(f"  refused by inject (a bypass): {str(exc)[:110]}")

    def istio_ok(doc: dict[str, Any]) -> tuple[bool, str]:
        done = subprocess.run(  # noqa: S603 - the tool under test
            [*istioctl, "-f", "-"],
            input=yaml_stream([doc]),
            capture_output=True,
            text=True,
            check=False,
        )
        return done.returncode == 0, done.stderr.strip()[-110:]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        verdicts = list(pool.map(istio_ok, ours))
    kept = []
    for doc, (ok, why) in zip(ours, verdicts, strict=True):
        if ok:
            kept.append(doc)
        else:
            print(f"  refused by istioctl: {doc['kind']} {doc['metadata'].get('name')}: {why!s}")
    print(f"corpus: {len(docs)} workloads; inject accepts {len(ours)}; both: {len(kept)}")
    return kept


def peak_rss_mb(argv: list[str]) -> float:
    """The peak resident memory of one run of ``argv``, in MB (output dropped)."""
    process = subprocess.Popen(  # noqa: S603 - the tools under test
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def injected(argv: list[str], marker: str) -> int:
    """How many sidecars ``argv`` wrote (``marker`` is the sidecar container's name line)."""
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout  # noqa: S603
    return out.count(marker)


def module_version(binary: str) -> str:
    """The istio.io/istio module version ``binary`` was built from, if go can tell."""
    go = shutil.which("go")
    if go is None:
        return "version unknown"
    info = subprocess.run(  # noqa: S603 - go reading the binary's build info
        [go, "version", "-m", binary], capture_output=True, text=True, check=False
    ).stdout
    for line in info.splitlines():
        fields = line.split()
        if fields[:2] == ["mod", "istio.io/istio"] and len(fields) > 2:
            return f"istio.io/istio {fields[2]}"
    return "version unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=11)
    parser.add_argument("--istioctl", help="istioctl binary [default: $ISTIOCTL, PATH, e2e cache]")
    options = parser.parse_args()
    byte_compile(ROOT)
    istioctl = find_istioctl(options.istioctl)
    with tempfile.TemporaryDirectory() as tmp:
        base = [istioctl, "kube-inject", *istio_files(istioctl, Path(tmp))]
        docs = both_accept(corpus_workloads(), base)
        stream = Path(tmp) / "stream.yaml"
        stream.write_text(yaml_stream(docs))
        size = stream.stat().st_size
        commands = {
            "istioctl kube-inject": [*base, "-f", str(stream)],
            "condukt-egress inject": [
                sys.executable,
                "-m",
                "condukt_egress",
                "inject",
                *SESSION,
                "-f",
                str(stream),
            ],
        }
        counts = {
            "istioctl kube-inject": injected(commands["istioctl kube-inject"], "name: istio-proxy"),
            "condukt-egress inject": injected(
                commands["condukt-egress inject"], "name: condukt-egress\n"
            ),
        }
        times = timed_rounds(commands, options.pairs, ROOT)
        memory = {name: peak_rss_mb(argv) for name, argv in commands.items()}
    peer, ours = times["istioctl kube-inject"], times["condukt-egress inject"]
    ratios = [o / p for p, o in zip(peer, ours, strict=True)]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"istioctl: {istioctl} ({module_version(istioctl)})")
    print(f"stream: {len(docs)} workloads, {size:,} bytes")
    print(f"{options.pairs} paired runs of whole processes (order alternating); medians:")
    print(f"{'process':<26}{'sidecars':>10}{'ms':>10}{'peak MB':>10}")
    for name, values in times.items():
        median = statistics.median(values) * 1e3
        print(f"{name:<26}{counts[name]:>10}{median:>10.0f}{memory[name]:>10.0f}")
    ratio = statistics.median(ratios)
    verdict = "MET" if ratio <= 1 else "MISSED"
    print(f"median of per-pair ratios inject / istioctl: {ratio:.2f}x (target <= 1.00x: {verdict})")


if __name__ == "__main__":
    main()
