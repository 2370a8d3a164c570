"""The generated Corefile in the real CoreDNS, in front of a stub upstream on loopback.

Needs a ``coredns`` binary of the pinned version: on PATH, or where
``scripts/e2e-tools`` installs it (``~/.cache/condukt-egress-e2e/coredns-<version>/bin``),
built from the Go module::

    GOBIN=~/.cache/condukt-egress-e2e/coredns-v1.14.6/bin CGO_ENABLED=0 \\
        go install -trimpath -ldflags='-s -w' github.com/coredns/coredns@v1.14.6

Skips with that reason without one; fails instead under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from condukt_egress import dns as resolver
from condukt_egress.policy import DENY_ALL, EgressPolicy, allow, decide, deny
from tests import dns_stub

VERSION = resolver.DNS_IMAGE.split(":")[1].split("@")[0]
CACHE = Path.home() / ".cache" / "condukt-egress-e2e" / f"coredns-{VERSION}" / "bin" / "coredns"
POLICY = EgressPolicy(
    rules=[deny("evil.github.com"), allow("**.github.com", "pypi.org", "api-*.example.com")]
)


E2E_TOOLS = Path(__file__).resolve().parent.parent / "scripts" / "e2e-tools"


def _candidates() -> list[Path]:
    """Where a coredns binary may be: PATH, the e2e tools' bin dir, the cache above."""
    found = [Path(p) for p in [shutil.which("coredns")] if p]
    if E2E_TOOLS.exists():
        bin_dir = subprocess.run(
            [str(E2E_TOOLS), "--bin-dir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        found.append(Path(bin_dir) / "coredns")
    return [*found, CACHE]


def coredns_binary() -> str:
    found = next((str(p) for p in _candidates() if p.is_file()), None)
    if found is None:
        reason = (
            f"no coredns binary on PATH, in `scripts/e2e-tools --bin-dir` or at {CACHE}; "
            f"build it with `scripts/e2e-tools coredns` or `GOBIN={CACHE.parent} "
            "CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' "
            f"github.com/coredns/coredns@{VERSION}`"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    version = subprocess.run([found, "-version"], capture_output=True, text=True, check=True)
    assert f"CoreDNS-{VERSION.lstrip('v')}\n" in version.stdout, (
        f"{found} is {version.stdout.splitlines()[0]}, but the resolver image is CoreDNS "
        f"{VERSION}: build that release (scripts/e2e-versions COREDNS_VERSION={VERSION})"
    )
    return found


class Resolver:
    """A running CoreDNS with a generated Corefile; queries it over UDP or TCP."""

    def __init__(self, port: int, stub: dns_stub.Stub) -> None:
        self.port = port
        self.stub = stub

    def ask(self, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
        """One query; over UDP retried like every stub resolver does (a busy machine drops)."""
        query = dns.message.make_query(name, rdtype, use_edns=0)
        if tcp:
            return dns.query.tcp(query, "127.0.0.1", port=self.port, timeout=5)
        for _ in range(2):
            with contextlib.suppress(dns.exception.Timeout):
                return dns.query.udp(query, "127.0.0.1", port=self.port, timeout=3)
        return dns.query.udp(query, "127.0.0.1", port=self.port, timeout=3)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start(
    tmp_path: Path, stub: dns_stub.Stub, policy: EgressPolicy, **options: object
) -> Iterator[Resolver]:
    binary = coredns_binary()
    port = dns_stub._free_port("127.0.0.1")
    ready_port = dns_stub._free_port("127.0.0.1")
    conf = tmp_path / "Corefile"
    conf.write_text(
        resolver.corefile(
            policy,
            port=port,
            ready_port=ready_port,
            upstream=f"{stub.host}:{stub.port}",
            **options,  # type: ignore[arg-type]
        )
    )
    log = tmp_path / "coredns.log"
    with log.open("w") as output:
        process = subprocess.Popen([binary, "-conf", str(conf)], stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + 30
        while not ready(ready_port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"coredns did not get ready:\n{log.read_text()}\n{conf.read_text()}")
            time.sleep(0.05)
        yield Resolver(port, stub)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def stub() -> Iterator[dns_stub.Stub]:
    with dns_stub.running() as server:
        yield server


@pytest.fixture
def running(tmp_path: Path, stub: dns_stub.Stub) -> Iterator[Resolver]:
    yield from start(tmp_path, stub, POLICY)


def blocked(reply: dns.message.Message) -> bool:
    return reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize(
    "name", ["api.github.com", "A.B.GitHub.COM", "pypi.org", "api-eu.example.com"]
)
def test_allowed_names_are_forwarded(running: Resolver, name: str, tcp: bool) -> None:
    reply = running.ask(name, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for rrset in reply.answer for r in rrset] == [dns_stub.A_ANSWER]
    assert name.lower() in running.stub.seen()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("secret-123.attacker.example", "A"),
        ("secret-123.attacker.example", "TXT"),
        ("evil.github.com", "A"),
        ("github.com", "A"),
        ("api.github.com.agents.svc.cluster.local", "A"),
        ("4.3.2.1.in-addr.arpa", "PTR"),
        ("api-.example.com", "A"),
        ("a\\032b.github.com", "A"),  # a label with a space: not a host name
        ("x\\.evil.github.com", "A"),  # one label "x.evil": not a host name
    ],
)
def test_denied_names_get_nxdomain_and_never_leave(
    running: Resolver, name: str, rdtype: str, tcp: bool
) -> None:
    reply = running.ask(name, rdtype, tcp=tcp)
    assert blocked(reply), reply
    ede = [o for o in reply.options if isinstance(o, dns.edns.EDEOption)]
    assert [o.code for o in ede] == [dns.edns.EDECode.BLOCKED]
    assert running.stub.queries == []


def test_aaaa_of_an_allowed_name_is_empty_and_not_forwarded(running: Resolver) -> None:
    reply = running.ask("api.github.com", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer == []
    assert running.stub.queries == []


def test_a_second_question_cannot_ride_along(running: Resolver) -> None:
    query = dns.message.make_query("api.github.com", "A")
    query.question.append(dns.message.make_query("secret-123.attacker.example", "A").question[0])
    with contextlib.suppress(dns.exception.DNSException, OSError):  # refused or unanswered
        dns.query.udp(query, "127.0.0.1", port=running.port, timeout=3)
    assert "secret-123.attacker.example" not in running.stub.seen()


def test_a_policy_that_allows_nothing_forwards_nothing(tmp_path: Path, stub: dns_stub.Stub) -> None:
    for server in start(tmp_path, stub, DENY_ALL):
        for name in ("api.github.com", "secret-123.attacker.example", "."):
            assert blocked(server.ask(name))
    assert stub.queries == []


def test_strict_mode_resolves_decide_names_only_when_listed(
    tmp_path: Path, stub: dns_stub.Stub
) -> None:
    policy = EgressPolicy(rules=[allow("api.github.com"), decide()])
    for server in start(tmp_path, stub, policy, mode="strict", decide_hosts=["*.org"]):
        assert server.ask("api.github.com").answer
        assert server.ask("pypi.org").answer
        assert blocked(server.ask("secret-123.attacker.example"))
    assert stub.seen() == {"api.github.com", "pypi.org"}
