"""A small model of the pod's IPv4 ``OUTPUT`` path: ``nat`` then ``filter``.

Enough of iptables to evaluate the sidecar's ``nat OUTPUT`` rules (upstream
``src/netfilter.rs:66-111``) followed by our ``filter OUTPUT`` guard rules on
one new TCP connection made inside the pod: the ``nat`` table is consulted
for the first packet (hook priority -100) and the ``filter`` table after it
(priority 0), so ``filter`` sees the redirected destination port, the output
interface after re-routing (``lo`` for anything local) and the conntrack
``DNAT`` state that a REDIRECT leaves.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"
POD_IP = "10.1.2.3"


@dataclass(frozen=True)
class Connection:
    """A new connection (TCP, or a UDP flow) opened by a process in the pod."""

    uid: int
    dst: str
    dport: int
    protocol: str = "tcp"

    @property
    def iface(self) -> str:
        return "lo" if self.dst in (LOOPBACK, POD_IP) else "eth0"


@dataclass(frozen=True)
class Outcome:
    verdict: str  # "ACCEPT" or "REJECT"
    dport: int  # after nat
    redirected: bool


def sidecar_nat_rules(proxy_port: int, sidecar_uid: int) -> list[list[str]]:
    """``netfilter-setup``'s rules in order (src/netfilter.rs:70-110), table stripped."""
    return [
        ["-A", "OUTPUT", "-o", "lo", "-j", "RETURN"],
        ["-A", "OUTPUT", "-m", "owner", "--uid-owner", str(sidecar_uid), "-j", "RETURN"],
        ["-A", "OUTPUT", "-p", "tcp", "--dport", "80", "-j", "REDIRECT", "--to-port",
         str(proxy_port)],
        ["-A", "OUTPUT", "-p", "tcp", "--dport", "443", "-j", "REDIRECT", "--to-port",
         str(proxy_port)],
    ]  # fmt: skip


def restore_rules(text: str, table: str) -> list[list[str]]:
    """The ``-A`` and ``-I`` lines of one table of an ``iptables-restore`` file, in order."""
    rules: list[list[str]] = []
    current = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif line == "COMMIT":
            current = None
        elif line.startswith(("-A ", "-I ")):
            if current == table:
                rules.append(shlex.split(line))
        elif line.strip() and not line.startswith("#"):
            raise AssertionError(f"unexpected line {line!r}")
    return rules


def installed(chain: list[list[str]], restored: list[list[str]]) -> list[list[str]]:
    """``chain`` after ``iptables-restore --noflush`` of ``restored`` (all one chain).

    ``-A`` appends; ``-I CHAIN N`` inserts at position N (1 when no N), written
    back as ``-A CHAIN ...`` so that every rule reads the same.
    """
    out = list(chain)
    for rule in restored:
        if rule[0] == "-A":
            out.append(rule)
            continue
        numbered = rule[2].isdigit()
        position = int(rule[2]) if numbered else 1
        out.insert(position - 1, ["-A", rule[1], *rule[3 if numbered else 2 :]])
    return out


def _matches(rule: Sequence[str], conn: Connection, dport: int, dnat: bool) -> bool:
    words = list(rule[2:])
    negate = False
    i = 0
    while i < len(words) and words[i] != "-j":
        word = words[i]
        if word == "!":
            negate = True
            i += 1
            continue
        if word in ("-m", "-i"):  # -i only in INPUT rules, not evaluated here
            i += 2
            continue
        value = words[i + 1]
        if word == "-p":
            ok = conn.protocol == value
        elif word == "-o":
            ok = conn.iface == value
        elif word == "--dport":
            ok = dport == int(value)
        elif word == "--uid-owner":
            ok = conn.uid == int(value)
        elif word == "--ctstate":
            assert value == "DNAT"
            ok = dnat
        else:
            raise AssertionError(f"match {word} not modelled")
        if ok == negate:
            return False
        negate = False
        i += 2
    return True


def evaluate(conn: Connection, nat: list[list[str]], filter_: list[list[str]]) -> Outcome:
    """Run ``conn``'s first packet through ``nat OUTPUT`` then ``filter OUTPUT``."""
    dport, redirected = conn.dport, False
    for rule in nat:
        if _matches(rule, conn, dport, False):
            target = rule[rule.index("-j") + 1]
            if target == "REDIRECT":
                flag = "--to-ports" if "--to-ports" in rule else "--to-port"
                dport, redirected = int(rule[rule.index(flag) + 1]), True
            break
    # REDIRECT rewrites the destination to the loopback address: re-routed via lo.
    after = Connection(conn.uid, LOOPBACK if redirected else conn.dst, dport, conn.protocol)
    for rule in filter_:
        if rule[1] == "OUTPUT" and _matches(rule, after, dport, redirected):
            target = rule[rule.index("-j") + 1]
            if target in ("REJECT", "DROP", "ACCEPT"):
                return Outcome("ACCEPT" if target == "ACCEPT" else "REJECT", dport, redirected)
    return Outcome("ACCEPT", dport, redirected)  # default policy ACCEPT
