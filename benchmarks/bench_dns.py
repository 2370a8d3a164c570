"""Benchmark the session resolver: start-up, memory, and added latency per query.

Everything runs in a network namespace of its own standing in for a session
pod: a stub "cluster DNS" on 10.96.0.10:53 (a single-threaded Python
responder, the same for every contender), the real CoreDNS with the Corefile
:func:`condukt_egress.dns.corefile` generates (uid 1053) and the redirect of
:func:`condukt_egress.dns.redirect_rules`. Clients are fresh processes that
send sequential UDP queries to 10.96.0.10:53 and time each answer:

* ``direct``: as the resolver's uid, which the redirect exempts: the cluster
  DNS as a pod reaches it today (the floor);
* ``filtered``: as a workspace uid, the same allowed name: redirected to the
  resolver, which forwards it to the stub;
* ``denied``: as a workspace uid, a name the policy denies: answered
  NXDOMAIN by the resolver, never forwarded.

Each round runs the three once, in rotating order; the figures are medians
over rounds of each process's p50 and p99, and the added latency is taken
within a round (filtered minus direct). Start-up is spawn to the first 200
of the ``ready`` endpoint (what the pod's startup probe waits for), and
memory the resolver's RSS then and its peak after the load, for policies of
growing size: anonymous memory (the Go heap and stacks, what the pod's
memory limit is really about) apart from file-backed pages (the binary's text,
shared and reclaimable).

Needs root, iproute2, iptables and a ``coredns`` binary (PATH or the
scripts/e2e-tools cache; see tests/test_dns_coredns.py for the build).

Run: ``sudo .venv/bin/python benchmarks/bench_dns.py [--rounds R] [--queries N]``
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from condukt_egress import dns as resolver  # noqa: E402
from condukt_egress.policy import EgressPolicy, allow, deny  # noqa: E402

NAMESPACE = f"condukt-bench-dns-{os.getpid()}"
CLUSTER_DNS = "10.96.0.10"
WORKSPACE_UID = 65532
ALLOWED = "api.github.com"
DENIED = "secret-123.attacker.example"
VERSION = resolver.DNS_IMAGE.split(":")[1].split("@")[0]


def coredns_binary() -> str:
    cache = Path.home() / ".cache/condukt-egress-e2e" / f"coredns-{VERSION}" / "bin/coredns"
    found = shutil.which("coredns") or (str(cache) if cache.exists() else None)
    if found is None:
        sys.exit(f"no coredns on PATH or at {cache}; see tests/test_dns_coredns.py to build it")
    return found


def policy_of(size: int) -> EgressPolicy:
    """A policy of ``size`` host patterns: one deny, the rest allow, the measured name last."""
    extra = [f"**.service-{i}.example.com" for i in range(max(size - 3, 0))]
    return EgressPolicy(rules=[deny("evil.github.com"), allow(*extra, "pypi.org", ALLOWED)])


# ------------------------------------------------------------------ inside the namespace


def stub(port: int = 53) -> None:
    """The stand-in cluster DNS: answers every query with one A record, one thread."""
    import dns.message  # noqa: PLC0415 - only the stub process needs dnspython
    import dns.rrset  # noqa: PLC0415

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((CLUSTER_DNS, port))
    while True:
        data, peer = sock.recvfrom(4096)
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        response.answer.append(dns.rrset.from_text(question.name, 30, "IN", "A", "192.0.2.1"))
        sock.sendto(response.to_wire(), peer)


def client(name: str, count: int) -> None:
    """Send ``count`` sequential A queries for ``name``; print each answer's microseconds."""
    import dns.message  # noqa: PLC0415

    wire = bytearray(dns.message.make_query(name, "A").to_wire())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    sock.connect((CLUSTER_DNS, 53))
    latencies = []
    for index in range(count + 50):  # the first 50 warm up
        wire[0:2] = (index & 0xFFFF).to_bytes(2, "big")
        start = time.perf_counter_ns()
        sock.send(wire)
        while sock.recv(4096)[0:2] != wire[0:2]:
            pass
        if index >= 50:
            latencies.append((time.perf_counter_ns() - start) / 1000)
    print(json.dumps(latencies))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def as_uid(uid: int, argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


def run_client(uid: int, name: str, count: int) -> tuple[float, float]:
    out = subprocess.run(  # noqa: S603 - our own interpreter and script
        as_uid(uid, [sys.executable, __file__, "--client", name, str(count)]),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    latencies = json.loads(out)
    return percentile(latencies, 0.5), percentile(latencies, 0.99)


def ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def start_resolver(binary: str, conf: Path) -> tuple[subprocess.Popen[bytes], float]:
    # The container's environment (GOMAXPROCS, GOMEMLIMIT), as in the pod.
    env = {e["name"]: e["value"] for e in resolver.resolver_container()["env"]}
    start = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - the coredns binary and its config
        as_uid(resolver.DNS_UID, [binary, "-conf", str(conf)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    while not ready(resolver.DNS_READY_PORT):
        if process.poll() is not None or time.perf_counter() - start > 60:
            sys.exit("coredns did not get ready")
        time.sleep(0.002)
    return process, time.perf_counter() - start


def resolver_pid(process: subprocess.Popen[bytes]) -> int:
    """The coredns process under setpriv (setpriv execs it: the same pid)."""
    return process.pid


def inside(rounds: int, queries: int, sizes: list[int], workdir: Path) -> None:
    binary = coredns_binary()
    stub_process = subprocess.Popen([sys.executable, __file__, "--stub"])  # noqa: S603
    time.sleep(0.5)
    try:
        print(f"\nStart-up and memory (median of 5 starts), CoreDNS {VERSION}:")
        print(
            f"{'patterns':>9} {'ready ms':>9} {'RSS MiB':>8} {'anon MiB':>9} {'file MiB':>9} "
            f"{'peak MiB':>9}"
        )
        for size in sizes:
            conf = workdir / f"Corefile-{size}"
            conf.write_text(resolver.corefile(policy_of(size)))
            starts, rss, anon, file, peak = [], [], [], [], []
            for _ in range(5):
                process, seconds = start_resolver(binary, conf)
                starts.append(seconds * 1000)
                rss.append(memory_kib(resolver_pid(process), "VmRSS") / 1024)
                run_client(WORKSPACE_UID, ALLOWED, 500)
                anon.append(memory_kib(resolver_pid(process), "RssAnon") / 1024)
                file.append(memory_kib(resolver_pid(process), "RssFile") / 1024)
                peak.append(memory_kib(resolver_pid(process), "VmHWM") / 1024)
                process.terminate()
                process.wait()
            print(
                f"{size:>9} {statistics.median(starts):>9.1f} {statistics.median(rss):>8.1f} "
                f"{statistics.median(anon):>9.1f} {statistics.median(file):>9.1f} "
                f"{statistics.median(peak):>9.1f}"
            )

        conf = workdir / "Corefile-latency"
        conf.write_text(resolver.corefile(policy_of(3)))
        process, _ = start_resolver(binary, conf)
        contenders = {
            "direct": (resolver.DNS_UID, ALLOWED),
            "filtered": (WORKSPACE_UID, ALLOWED),
            "denied": (WORKSPACE_UID, DENIED),
        }
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        try:
            for r in range(rounds):
                names = list(contenders)
                names = names[r % 3 :] + names[: r % 3]
                for name in names:
                    figures[name].append(run_client(*contenders[name], queries))
        finally:
            process.terminate()
            process.wait()
        print(f"\nLatency per query, {rounds} rounds x {queries} sequential UDP queries:")
        print(f"{'':>10} {'p50 us':>8} {'p99 us':>8}")
        for name, values in figures.items():
            p50 = statistics.median(v[0] for v in values)
            p99 = statistics.median(v[1] for v in values)
            print(f"{name:>10} {p50:>8.0f} {p99:>8.0f}")
        added50 = statistics.median(
            f[0] - d[0] for f, d in zip(figures["filtered"], figures["direct"], strict=True)
        )
        added99 = statistics.median(
            f[1] - d[1] for f, d in zip(figures["filtered"], figures["direct"], strict=True)
        )
        print(f"{'added':>10} {added50:>8.0f} {added99:>8.0f}   (filtered - direct, paired)")
    finally:
        stub_process.terminate()
        stub_process.wait()


# ------------------------------------------------------------------ outside


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True)  # noqa: S603, S607 - iproute2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--sizes", default="3,100,1000,10000", help="policy sizes (patterns)")
    parser.add_argument("--stub", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        stub()
        return
    if args.client:
        client(args.client[0], int(args.client[1]))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.inside:
        inside(args.rounds, args.queries, sizes, Path(args.inside))
        return
    if os.geteuid() != 0:
        sys.exit("needs root: it creates a network namespace and netfilter rules")
    coredns_binary()
    print(f"bench_dns {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"machine: {platform.node()}, {cpu}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    etc = Path("/etc/netns") / NAMESPACE
    with tempfile.TemporaryDirectory() as workdir:
        try:
            ip("netns", "add", NAMESPACE)
            ip("-n", NAMESPACE, "link", "set", "lo", "up")
            # The stand-in cluster DNS address is local to the namespace (on lo).
            ip("-n", NAMESPACE, "addr", "add", f"{CLUSTER_DNS}/32", "dev", "lo")
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(f"nameserver {CLUSTER_DNS}\n")
            subprocess.run(  # noqa: S603
                ["ip", "netns", "exec", NAMESPACE, "iptables-restore", "--noflush"],  # noqa: S607
                input=resolver.redirect_rules(),
                text=True,
                check=True,
            )
            os.chmod(workdir, 0o755)  # noqa: S103 - uid 1053 reads its Corefile
            subprocess.run(  # noqa: S603
                [  # noqa: S607
                    "ip",
                    "netns",
                    "exec",
                    NAMESPACE,
                    sys.executable,
                    __file__,
                    "--inside",
                    workdir,
                    "--rounds",
                    str(args.rounds),
                    "--queries",
                    str(args.queries),
                    "--sizes",
                    args.sizes,
                ],
                check=True,
            )
        finally:
            subprocess.run(["ip", "netns", "del", NAMESPACE], check=False)  # noqa: S603, S607
            shutil.rmtree(etc, ignore_errors=True)


if __name__ == "__main__":
    main()
