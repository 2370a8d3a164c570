"""``SandboxEgressArgs``: every option of one session, validated up front.

The same dataclass drives the Pulumi component, the stack program, the
Automation API and the offline ``render`` command, so a session means the same
thing everywhere. It holds plain Python values, not ``pulumi.Input``: names,
labels and manifests are derived from them at preview time, and bad input must
fail there, with an error naming the field and the fix, before any resource of
the session exists.

Example:
    >>> from condukt_egress import SandboxEgressArgs, EgressPolicy, allow
    >>> args = SandboxEgressArgs(
    ...     session_id="42",
    ...     namespace="agents",
    ...     policy=EgressPolicy(rules=[allow("api.github.com")]),
    ... )
"""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, InitVar, dataclass, field
from functools import cached_property
from typing import Any, Final, Literal, get_args

from condukt_egress import checks, contract
from condukt_egress._quantity import parse_quantity
from condukt_egress._text import shown
from condukt_egress.checks import validate_image
from condukt_egress.dns import DNS_FILTER_MODES, DNS_IMAGE, DnsFilter, check_decide_hosts
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.naming import SessionNames, session_names, validate_session_id
from condukt_egress.options import check_fields, checked, option, switch
from condukt_egress.policy import DENY_ALL, EgressPolicy

__all__ = [
    "INPUT_FIELDS",
    "CaKeyAlgorithm",
    "SandboxEgressArgs",
    "SessionOptions",
    "TrustBundle",
    "UnproxiedEgress",
    "holds",
    "validate_image",
]

TrustBundle = Literal["session-ca", "public-roots"]
"""What the workspace trusts: the session CA alone, or certifi's roots plus it."""

CaKeyAlgorithm = Literal["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"]
"""Key type of the per-session CA."""

Protocol = Literal["TCP", "UDP", "SCTP"]

DEFAULT_DNS_POD_LABELS: Final = {"k8s-app": "kube-dns"}
DEFAULT_SIDECAR_RESOURCES: Final = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"cpu": "1", "memory": "256Mi"},
}
MAX_CA_VALIDITY_HOURS: Final = 24 * 365
_RESOURCES: Final = ("cpu", "memory", "ephemeral-storage")

UNSAFE_DESTINATION_RANGES: Final = (
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "192.0.0.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "100.100.100.200/32",
)
"""Never reachable unproxied without ``unsafe_unproxied_egress``: this host,
loopback, link-local (cloud metadata: 169.254.169.254, 169.254.170.2),
IETF protocol assignments, multicast, reserved, Alibaba's metadata address."""

METADATA_ADDRESSES: Final = ("169.254.169.254", "169.254.170.2", "100.100.100.200")
"""Cloud instance and task metadata services (AWS, GCP, Azure; ECS; Alibaba)."""

UNSAFE_UNPROXIED_PORTS: Final = (53, 443)
"""DNS to any resolver (tunnelling, around the cluster DNS rule) and 443 (UDP:
QUIC/HTTP 3, which the TCP-only redirect never sees)."""

_PRIVATE_DNS_RANGES: Final = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")

INPUT_FIELDS: Final = ("namespace", "sidecar_image", "policy", "trust_bundle")
""":class:`SandboxEgressArgs` fields that may be ``pulumi.Input`` values (an
Output of another resource, a StackReference output; ``policy`` also as a
document holding Outputs, e.g. ``{"rules": [{"allow": [db.host]}]}``). They
are validated when they resolve; every other field, and ``session_id`` above
all (names and labels derive from it at preview), must be a plain value."""

_UNPROXIED = re.compile(r"^(?P<cidr>[^:]+):(?P<ports>[^/]+)(?:/(?P<protocol>[^/]+))?$")


@dataclass(frozen=True)
class UnproxiedEgress:
    """An explicit, unproxied destination the session pod may reach directly.

    Traffic to it bypasses the egress proxy (no policy, no audit), except TCP
    80/443, which the init container redirects to the proxy regardless. Use it
    for in-cluster services a workspace must reach, e.g. a database.

    Attributes:
        cidr: IPv4 network, e.g. ``10.0.12.0/24`` or ``10.0.12.7/32``.
        ports: Destination ports (1-65535); at least one.
        protocol: ``TCP`` (default), ``UDP`` or ``SCTP``.
    """

    cidr: str
    ports: Sequence[int]
    protocol: Protocol = "TCP"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cidr", checks.ipv4_network("unproxied_egress.cidr", self.cidr))
        if isinstance(self.ports, str | bytes) or not self.ports:
            raise ConfigError(
                "unproxied_egress.ports",
                f"must be a non-empty list of ports, got {shown(self.ports)}; e.g. ports=[5432]",
            )
        object.__setattr__(
            self, "ports", tuple(checks.port("unproxied_egress.ports", p) for p in self.ports)
        )
        if self.protocol not in get_args(Protocol):
            raise ConfigError(
                "unproxied_egress.protocol",
                f"must be one of {', '.join(get_args(Protocol))}, got {shown(self.protocol)}",
            )

    @classmethod
    def from_value(cls, value: UnproxiedEgress | Mapping[str, Any]) -> UnproxiedEgress:
        """Accept an instance or its mapping form ``{"cidr", "ports", "protocol"}``."""
        if isinstance(value, UnproxiedEgress):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                "unproxied_egress",
                f"entries must be objects like {{'cidr': '10.0.0.5/32', 'ports': [5432]}}, "
                f"got {shown(value)}",
            )
        unknown = set(value) - {"cidr", "ports", "protocol"}
        if unknown:
            raise ConfigError(
                "unproxied_egress",
                f"unknown key(s) {sorted(unknown)}; accepted keys are cidr, ports, protocol",
            )
        if "cidr" not in value or "ports" not in value:
            raise ConfigError(
                "unproxied_egress", f"each entry needs 'cidr' and 'ports', got {shown(dict(value))}"
            )
        return cls(cidr=value["cidr"], ports=value["ports"], protocol=value.get("protocol", "TCP"))

    @classmethod
    def check(cls, name: str, value: object) -> UnproxiedEgress:
        """:meth:`from_value` as an option's check (entries of ``unproxied_egress``)."""
        return cls.from_value(value)  # type: ignore[arg-type]  # from_value checks the type

    @classmethod
    def parse(cls, text: str) -> UnproxiedEgress:
        """Read the text form ``CIDR:PORT[,PORT...][/PROTOCOL]`` (TCP when no protocol).

        Example:
            >>> UnproxiedEgress.parse("10.0.0.0/24:53,5353/UDP")
            UnproxiedEgress(cidr='10.0.0.0/24', ports=(53, 5353), protocol='UDP')
        """
        match = _UNPROXIED.match(text)
        ports = match["ports"].split(",") if match else []
        if match is None or not all(p.strip().isdigit() for p in ports):
            raise ConfigError(
                "unproxied_egress",
                f"must be CIDR:PORT[,PORT...][/PROTOCOL] like 10.0.12.7/32:5432 or "
                f"10.0.0.0/24:53,5353/UDP, got {shown(text)}",
            )
        protocol: Any = match["protocol"] or "TCP"
        return cls(cidr=match["cidr"], ports=[int(p) for p in ports], protocol=protocol)

    def to_dict(self) -> dict[str, Any]:
        """The document form ``{"cidr", "ports", "protocol"}`` that :meth:`from_value` reads."""
        return {"cidr": self.cidr, "ports": list(self.ports), "protocol": self.protocol}


def parse_label(text: str) -> tuple[str, str]:
    """Read one label in the text form ``KEY=VALUE`` (validated with the others).

    Example:
        >>> parse_label("k8s-app=kube-dns")
        ('k8s-app', 'kube-dns')
    """
    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(
            "dns_pod_labels", f"must be KEY=VALUE like k8s-app=kube-dns, got {shown(text)}"
        )
    return key, value


def _load_policy(path: str) -> EgressPolicy:
    return EgressPolicy.load(path)


def _session_id(name: str, value: object) -> str:
    if _holds_input(value):
        raise ConfigError(
            name,
            "must be a plain string, not an Output: the Secret, NetworkPolicy and pod "
            "names and labels derive from it and must be known at preview",
        )
    validate_session_id(value)  # it checks the type too
    return value  # type: ignore[return-value]


def _policy(name: str, value: object) -> EgressPolicy:
    if value is None:
        return DENY_ALL
    if isinstance(value, EgressPolicy):
        return value
    if isinstance(value, Mapping):
        try:
            return EgressPolicy.from_dict(value)
        except PolicyError as exc:
            raise exc.under(name) from None
    raise ConfigError(
        name,
        f"must be an EgressPolicy or its document form (a mapping), got {type(value).__name__}; "
        "e.g. {'rules': [{'allow': ['api.github.com']}], 'default': 'deny'}",
    )


def _decide_hosts(name: str, value: object) -> tuple[str, ...]:
    """Strict mode's host patterns, checked like the policy's (``dns_decide_hosts[i]``)."""
    return check_decide_hosts(checks.sequence(name, value))


def _validity_hours(name: str, value: object) -> int:
    hours = checks.whole(value)
    if hours is None or not 1 <= hours <= MAX_CA_VALIDITY_HOURS:
        raise ConfigError(
            name,
            f"must be a whole number of hours from 1 to {MAX_CA_VALIDITY_HOURS}, got "
            f"{shown(value)}; the default 24 fits a session",
        )
    return hours


def holds(value: object, test: Callable[[object], bool]) -> bool:
    """Whether ``value`` passes ``test``, or is a list or mapping holding one that does."""
    if test(value):
        return True
    if isinstance(value, Mapping):
        return any(holds(v, test) for v in value.values())
    if isinstance(value, list | tuple):
        return any(holds(v, test) for v in value)
    return False


def _is_input(value: object) -> bool:
    """Whether ``value`` is a Pulumi Output or an awaitable.

    Pure: an Output exists only once the program imported ``pulumi``.
    """
    if inspect.isawaitable(value):
        return True
    pulumi = sys.modules.get("pulumi")
    return pulumi is not None and isinstance(value, pulumi.Output)


def _holds_input(value: object) -> bool:
    """Whether ``value`` is, or (a list or mapping) holds, a Pulumi Output or awaitable."""
    return holds(value, _is_input)


class _OldName:
    """A deprecated field name: an ``__init__`` argument, and an attribute that warns.

    Read on the class (as ``dataclass`` does for the argument's default) it is
    ``None``; read on an instance it is the new field's value, with a
    ``DeprecationWarning``, except for :func:`dataclasses.replace`, which
    copies every argument and must neither warn nor revive the old name.
    """

    def __init__(self, new: str) -> None:
        self.new = new
        self.old = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None or sys._getframe(1).f_globals.get("__name__") == "dataclasses":
            return None
        warnings.warn(
            f"{type(obj).__name__}.{self.old} is deprecated: use {self.new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(obj, self.new)


@dataclass(frozen=True)
class SessionOptions:
    """The options of a session that are stack config: declared once, here.

    Each field's metadata (see :mod:`condukt_egress.options`) gives its stack
    config key (camelCase), its ``render`` flag (kebab-case) and its help, so
    :class:`SandboxEgressArgs`, :class:`~condukt_egress.spec.SessionSpec`,
    the stack program and ``render`` share one list. Not built directly: use
    one of those two subclasses, which validate.
    """

    session_id: str = field(
        metadata=option(
            "The agent platform's id for the session; any string up to 1024 characters.",
            example="<id>",
            metavar="ID",
            check=_session_id,
        )
    )
    namespace: str = field(
        default="default",
        metadata=option(
            "Namespace of the Secret, the NetworkPolicy and the pods.",
            example="agents",
            short="-n",
            metavar="NS",
            check=checks.dns_label,
        ),
    )
    policy: EgressPolicy | Mapping[str, Any] | None = field(
        default=None,
        metadata=option(
            "The egress policy in document form (`render`: a .yaml or .json file).",
            example="{rules: [{allow: [api.github.com]}], default: deny}",
            kind="object",
            what="an object like {rules: [{allow: [api.github.com]}], default: deny}",
            metavar="FILE",
            parse=_load_policy,
            doc_default="deny every host",
            check=_policy,
        ),
    )
    sidecar_image: str = field(
        default=contract.DEFAULT_IMAGE,
        metadata=option(
            "The condukt-egress sidecar image (init container and proxy).",
            example="<image>",
            metavar="IMG",
            check=checks.image(contract.DEFAULT_IMAGE),
        ),
    )
    allow_plain_http: bool = switch(
        "Open TCP 80 (risky: one allowed name opens every public IP on port 80).",
        default=False,
    )
    trust_bundle: TrustBundle = field(
        default="session-ca",
        metadata=option(
            "What the workspace trusts: the session CA alone, or certifi's public roots "
            "and the session CA.",
            choices=get_args(TrustBundle),
        ),
    )
    native_sidecar: bool = switch(
        "Run the proxy as a native sidecar (Kubernetes 1.29+) or a plain container.",
        default=True,
    )
    ca_key_algorithm: CaKeyAlgorithm = field(
        default="ecdsa-p256",
        metadata=option("Key type of the session CA.", choices=get_args(CaKeyAlgorithm)),
    )
    ca_validity_hours: int = field(
        default=24,
        metadata=option(
            f"Lifetime of the session CA, 1 to {MAX_CA_VALIDITY_HOURS} hours.",
            what="a whole number of hours",
            metavar="HOURS",
            check=_validity_hours,
        ),
    )
    ca_early_renewal_hours: int = field(
        default=0,
        metadata=option(
            "Re-mint the session CA at a `pulumi up` this many hours or fewer before it expires "
            "(pulumi-tls early_renewal_hours); 0: only once expired. A new CA replaces the "
            "Secret and the pod (`render`: checked only, a rendered CA is never renewed).",
            what="a whole number of hours",
            metavar="HOURS",
        ),
    )
    cluster_cidrs: Sequence[str] = field(
        default=(),
        metadata=option(
            "Extra IPv4 ranges never reachable directly (pod and service CIDRs outside RFC 1918).",
            example="[100.64.0.0/10]",
            what="a list of IPv4 CIDRs",
            flag="--cluster-cidr",
            metavar="CIDR",
            parse=str,
            check=checks.list_of(checks.ipv4_network),
        ),
    )
    node_local_dns: str | None = field(
        default=None,
        metadata=option(
            "IPv4 address of NodeLocal DNSCache, which DNS may then also go to.",
            example="169.254.20.10",
            metavar="IP",
            doc_default="none",
            check=checks.optional(checks.ipv4_address),
        ),
    )
    dns_namespace: str = field(
        default="kube-system",
        metadata=option(
            "Namespace of the cluster DNS pods.",
            metavar="NS",
            check=checks.dns_label,
        ),
    )
    dns_pod_labels: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_DNS_POD_LABELS),
        metadata=option(
            "Labels selecting the cluster DNS pods.",
            what="an object of label keys to values",
            flag="--dns-pod-label",
            metavar="KEY=VALUE",
            parse=parse_label,
            check=checks.labels,
        ),
    )
    dns_filter: DnsFilter = field(
        default="policy",
        metadata=option(
            "The session's filtering resolver: policy (names the policy could allow resolve, "
            "the rest get NXDOMAIN and never leave the pod), strict (names reaching decide "
            "resolve only if listed in dnsDecideHosts) or off (no resolver: DNS tunnelling "
            "through the cluster resolver stays open).",
            choices=DNS_FILTER_MODES,
        ),
    )
    dns_image: str = field(
        default=DNS_IMAGE,
        metadata=option(
            "The CoreDNS image of the filtering resolver (a mirror of the default; pin digests).",
            example="<image>",
            metavar="IMG",
            doc_default=f"CoreDNS {DNS_IMAGE.split(':')[1].split('@')[0]}, pinned by digest",
            check=checks.image(DNS_IMAGE),
        ),
    )
    dns_decide_hosts: Sequence[str] = field(
        default=(),
        metadata=option(
            "With dnsFilter strict: host patterns that resolve although they reach the "
            "policy's decide rule (same globs as the policy).",
            example="[pypi.org]",
            what="a list of host patterns",
            flag="--dns-decide-host",
            metavar="PATTERN",
            parse=str,
            check=_decide_hosts,
        ),
    )
    unproxied_egress: Sequence[UnproxiedEgress | Mapping[str, Any]] = field(
        default=(),
        metadata=option(
            "Destinations reachable without the proxy (no policy, no audit); TCP 80/443 "
            "still go through it. Flag form: CIDR:PORT[,PORT...][/PROTOCOL].",
            example="[{cidr: 10.0.12.7/32, ports: [5432]}]",
            what="a list of {cidr, ports, protocol} objects",
            items="object",
            metavar="CIDR:PORT[,PORT...][/PROTOCOL]",
            parse=UnproxiedEgress.parse,
            check=checks.list_of(UnproxiedEgress.check),
        ),
    )
    client_compat: bool = switch(
        "Client compatibility profile in the workspace: classic TLS key shares "
        "(OpenSSL, Node, Go, Java) so the sidecar sees the SNI, Python's strict "
        "check that rejects the sidecar's leaf certificates relaxed for the session CA, "
        "and a Java trust store holding the session CA (the JVM reads no PEM bundle).",
        default=True,
    )
    allow_root_workspace: bool = switch(
        "Let workspace containers run as root (risky: root reaches the sidecar's "
        "control port, which the in-pod rules keep for the port-forward path).",
        default=False,
    )
    unsafe_unproxied_egress: bool = switch(
        "Accept unproxiedEgress and nodeLocalDns destinations that bypass the proxy "
        "dangerously: wider than a /8, cloud metadata and other special ranges, port 53 "
        "(DNS to any resolver) or 443 (QUIC), a public DNS address. Unsafe.",
        default=False,
    )
    unsafe_secondary_networks: bool = switch(
        "Accept workloads that attach secondary network interfaces (Multus annotations, "
        "spec.resourceClaims), which NetworkPolicy does not govern and the redirect does "
        "not cover. Unsafe.",
        default=False,
    )


def _resources(name: str, value: object) -> dict[str, dict[str, str]]:
    """Requests and limits of the sidecar containers, as the API server would accept them.

    Known resources, valid quantities, a memory limit (a CPU limit is
    optional), no request above its limit.
    """
    if not isinstance(value, Mapping):
        raise ConfigError(name, f"must be a mapping, got {shown(value)}")
    out: dict[str, dict[str, str]] = {}
    amounts: dict[tuple[str, str], Any] = {}
    for section, quantities in value.items():
        if section not in ("requests", "limits") or not isinstance(quantities, Mapping):
            raise ConfigError(
                name,
                f"accepts only 'requests' and 'limits' mappings, got {shown(section)}: "
                f"{shown(quantities)}",
            )
        out[section] = {}
        for resource, amount in quantities.items():
            plain = isinstance(resource, str) and re.fullmatch(r"[a-z0-9.-]{1,63}", resource)
            where = f"{name}.{section}.{resource if plain else shown(resource)}"
            if resource not in _RESOURCES:
                raise ConfigError(
                    where, f"is not a resource the sidecar uses; use {', '.join(_RESOURCES)}"
                )
            try:
                amounts[section, resource] = parse_quantity(amount)
            except (ValueError, ArithmeticError):  # decimal.Overflow is an ArithmeticError
                example = DEFAULT_SIDECAR_RESOURCES["limits"][
                    resource if resource in ("cpu", "memory") else "memory"
                ]
                raise ConfigError(
                    where,
                    f"{shown(amount)} is not a Kubernetes quantity (non-negative, e.g. "
                    f"{shown(example)})",
                ) from None
            out[section][resource] = str(amount)
    if ("limits", "memory") not in amounts:
        raise ConfigError(
            f"{name}.limits.memory",
            "is missing; the sidecar handles all of the workspace's traffic and must not take "
            "the node down with it: set a limit such as "
            f"{shown(DEFAULT_SIDECAR_RESOURCES['limits']['memory'])}",
        )
    for resource in _RESOURCES:
        limit = amounts.get(("limits", resource))
        request = amounts.get(("requests", resource))
        if limit is not None and request is not None and request > limit:
            raise ConfigError(
                f"{name}.requests.{resource}",
                f"{shown(out['requests'][resource])} is above the limit "
                f"{shown(out['limits'][resource])}, "
                "which the API server refuses; lower the request or raise the limit",
            )
    return out


@dataclass(frozen=True)
class SandboxEgressArgs(SessionOptions):
    """The options of one sandbox session's egress control.

    Attributes:
        session_id: The agent platform's id for the session; any non-empty
            string up to 1024 characters. Names and labels are derived safely.
        namespace: Namespace of the Secret, the NetworkPolicy and the pods.
        policy: An :class:`EgressPolicy` or its document form; default denies
            every host.
        sidecar_image: The sidecar image (both modes). ``image=`` is its
            deprecated old name: it still works, with a ``DeprecationWarning``.
        allow_plain_http: Open TCP 80. Off by default: on port 80 the sidecar
            judges the ``Host:`` header but dials the original IP, so one
            allowed name opens every public IP on port 80.
        trust_bundle: ``session-ca`` (default) or ``public-roots``, which
            prepends certifi's Mozilla roots to ``bundle.pem``.
        native_sidecar: Run the proxy as a native sidecar (init container with
            ``restartPolicy: Always`` and a startup probe): it is up before any
            workspace container starts and does not keep Jobs alive. Needs
            Kubernetes 1.29+. ``False`` makes it a plain container.
        ca_key_algorithm: Key type of the per-session CA.
        ca_validity_hours: Lifetime of the per-session CA certificate.
        ca_early_renewal_hours: pulumi-tls ``early_renewal_hours``: an ``up``
            this many hours (or fewer) before the CA expires mints a new CA,
            which replaces the Secret and replaces or rolls the session pods.
            0 (default): only an expired CA is re-minted.
        cluster_cidrs: Extra IPv4 ranges the pod must never reach directly
            (pod and service CIDRs of clusters outside RFC 1918).
        node_local_dns: IPv4 address of NodeLocal DNSCache, if the cluster uses it.
        dns_namespace: Namespace of the cluster DNS pods.
        dns_pod_labels: Labels selecting the cluster DNS pods.
        dns_filter: ``policy`` (default): a filtering resolver in the pod
            resolves only names the policy could allow (see
            :mod:`condukt_egress.dns`); ``strict``: names reaching ``decide``
            only if listed in ``dns_decide_hosts``; ``off``: no resolver.
        dns_image: The resolver's CoreDNS image (default pinned by digest).
        dns_decide_hosts: Strict mode's list of host patterns that resolve
            although they reach ``decide``.
        unproxied_egress: Explicit destinations reachable without the proxy.
        unsafe_secondary_networks: Accept Multus annotations and
            ``spec.resourceClaims`` on workloads: secondary interfaces escape
            the NetworkPolicy and the redirect.
        unsafe_unproxied_egress: Accept unproxied destinations (and a
            ``node_local_dns`` address) that open a way around the proxy:
            CIDRs wider than a /8, special ranges (cloud metadata, loopback,
            multicast), ports 53 and 443, a public DNS address. Off by
            default: each is refused with an error naming the field.
        proxy_port: Port the redirected traffic lands on.
        control_port: Port of the sidecar's NDJSON control channel.
        sidecar_uid: The uid the redirect exempts; only the sidecar runs as it.
        sidecar_gid: The gid the sidecar runs as; no workspace may use it.
        sidecar_resources: Requests and limits of the sidecar containers.
        unsafe_allowed_capabilities: Capabilities workspace containers may add
            although they can defeat egress control; every entry is a risk the
            user accepts explicitly.
        client_compat: The client compatibility profile (on by default): an
            OpenSSL config limiting key shares to classic curves (``OPENSSL_CONF``),
            ``GODEBUG=tlsmlkem=0,tlskyber=0``, the JVM's named groups, a Python
            ``sitecustomize`` that accepts the sidecar's leaves (no AKI) under
            Python 3.13's strict checks, and a PKCS#12 trust store for the JVM
            (``javax.net.ssl.trustStore``); see :mod:`condukt_egress.compat`.
        allow_root_workspace: Let workspace containers run as root. Off by
            default: workspaces get ``runAsNonRoot: true`` (and uid/gid 65532
            when the spec names none), because root passes the in-pod rule
            that keeps the control port for the port-forward path; turning
            this on reopens ``127.0.0.1:<control_port>`` to the workspace
            (reading every event, answering its own ``decide`` requests,
            holding the single peer slot).

    The options of :class:`SessionOptions` are the stack config options; the
    rest exist in the Python API only.
    """

    proxy_port: int = field(
        default=contract.DEFAULT_PROXY_PORT, metadata=checked(checks.sidecar_port)
    )
    control_port: int = field(
        default=contract.DEFAULT_CONTROL_PORT, metadata=checked(checks.sidecar_port)
    )
    sidecar_uid: int = field(default=contract.DEFAULT_SIDECAR_UID, metadata=checked(checks.user_id))
    sidecar_gid: int = field(default=contract.DEFAULT_SIDECAR_UID, metadata=checked(checks.user_id))
    sidecar_resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_SIDECAR_RESOURCES.items()},
        metadata=checked(_resources),
    )
    unsafe_allowed_capabilities: Sequence[str] = field(
        default=(), metadata=checked(checks.list_of(checks.capability))
    )
    _: KW_ONLY
    image: InitVar[str | None] = _OldName("sidecar_image")
    """Deprecated: the old name of ``sidecar_image`` (warns; both given and different: an error)."""

    def __post_init__(self, image: str | None) -> None:
        if image is not None:
            self._take_old_image_name(image)
        # Input-valued fields are checked when they resolve (see resolved());
        # the rest is checked now, against the defaults standing in for them.
        deferred = {n: getattr(self, n) for n in INPUT_FIELDS if _holds_input(getattr(self, n))}
        for name in deferred:
            object.__setattr__(self, name, _FIELD_DEFAULTS[name])
        object.__setattr__(self, "_deferred", deferred)
        check_fields(self)
        self._check_across_fields()
        for name, value in deferred.items():
            object.__setattr__(self, name, value)

    def _check_across_fields(self) -> None:
        """The checks that span fields; each field's own check has passed."""
        if self.proxy_port == self.control_port:
            raise ConfigError(
                "control_port",
                f"equals proxy_port ({self.proxy_port}); give the control channel its own port",
            )
        early = checks.whole(self.ca_early_renewal_hours)
        if early is None or not 0 <= early < self.ca_validity_hours:
            raise ConfigError(
                "ca_early_renewal_hours",
                f"must be a whole number of hours from 0 to ca_validity_hours - 1 "
                f"({self.ca_validity_hours - 1}), got {self.ca_early_renewal_hours!r}; 0 renews "
                "only an expired CA",
            )
        object.__setattr__(self, "ca_early_renewal_hours", early)
        if not self.unsafe_unproxied_egress:
            _refuse_unsafe_destinations(self)
        if self.dns_decide_hosts and self.dns_filter != "strict":
            raise ConfigError(
                "dns_decide_hosts",
                f"is set but dns_filter is {self.dns_filter!r}; the list applies only in strict "
                "mode: set dns_filter to 'strict' (dnsFilter) or remove dns_decide_hosts",
            )

    def _take_old_image_name(self, image: str) -> None:
        warnings.warn(
            "SandboxEgressArgs(image=...) is deprecated: use sidecar_image=...",
            DeprecationWarning,
            stacklevel=4,  # __post_init__, __init__, the caller
        )
        if self.sidecar_image not in (contract.DEFAULT_IMAGE, image):
            raise ConfigError(
                "image",
                "is the deprecated name of sidecar_image and both are given, with different "
                "values: give sidecar_image only",
            )
        object.__setattr__(self, "sidecar_image", image)

    @property
    def deferred(self) -> Mapping[str, Any]:
        """The fields given as ``pulumi.Input`` values, not yet resolved or validated."""
        return dict(getattr(self, "_deferred", {}))

    def resolved(self, values: Mapping[str, Any]) -> SandboxEgressArgs:
        """These args with :attr:`deferred` fields replaced by their resolved ``values``.

        Validated like any args, so a bad resolved value raises the usual
        error naming the field (``namespace: must be a Kubernetes namespace
        name ...``, ``policy.rules[0].allow[0]: ...``).
        """
        return dataclasses.replace(self, **values)

    @property
    def egress_policy(self) -> EgressPolicy:
        """The policy as an :class:`EgressPolicy` (normalised in ``__post_init__``)."""
        assert isinstance(self.policy, EgressPolicy)  # noqa: S101 - set by __post_init__
        return self.policy

    @cached_property
    def names(self) -> SessionNames:
        """Names and labels derived from ``session_id``."""
        return session_names(self.session_id)


_FIELD_DEFAULTS: Final = {
    f.name: f.default for f in dataclasses.fields(SandboxEgressArgs) if f.name in INPUT_FIELDS
}


def _refuse_unsafe_destinations(args: SandboxEgressArgs) -> None:
    """Refuse unproxied destinations and a DNS address that open a way around the proxy.

    Unproxied traffic has no policy and no audit; these make it a bypass:
    a CIDR wider than a /8 (most of the internet), a special range (cloud
    metadata and the like), port 53 (DNS to any resolver: tunnelling) or
    443 (UDP: QUIC, which the TCP-only redirect never sees). A NodeLocal DNS
    address must be private or link-local (and not a metadata service).
    """
    unsafe = [ipaddress.ip_network(r) for r in UNSAFE_DESTINATION_RANGES]
    fix = (
        "narrow it to the service you need, or accept the risk with "
        "unsafe_unproxied_egress=True (stack config unsafeUnproxiedEgress: true)"
    )
    for index, dest in enumerate(args.unproxied_egress):
        assert not isinstance(dest, Mapping)  # noqa: S101 - normalised before
        net = ipaddress.ip_network(dest.cidr)
        where = f"unproxied_egress[{index}]"
        if net.prefixlen < 8:
            raise ConfigError(
                f"{where}.cidr",
                f"{dest.cidr} spans {net.num_addresses:,} addresses, most of the internet, "
                f"reachable with no policy and no audit: {fix}",
            )
        hit = next((r for r in unsafe if net.overlaps(r)), None)
        if hit is not None:
            raise ConfigError(
                f"{where}.cidr",
                f"{dest.cidr} overlaps {hit}, a special range (cloud metadata, loopback, "
                f"multicast or reserved) a workspace must never reach directly: {fix}",
            )
        port = next((p for p in dest.ports if p in UNSAFE_UNPROXIED_PORTS), None)
        if port is not None:
            why = (
                "DNS to a resolver of the workspace's choosing (tunnelling past the cluster DNS "
                "rule)"
                if port == 53
                else "UDP 443 is QUIC (HTTP/3), which the TCP redirect never sends to the proxy"
            )
            raise ConfigError(
                f"{where}.ports",
                f"contains {port}: {why}; TCP 443 always goes through the proxy anyway. "
                f"Remove it, or {fix.split(', or ', 1)[1]}",
            )
    dns = args.node_local_dns
    if dns is not None:
        address = ipaddress.ip_address(dns)
        private = any(address in ipaddress.ip_network(r) for r in _PRIVATE_DNS_RANGES)
        if dns in METADATA_ADDRESSES or not private:
            what = "a cloud metadata service" if private else "not a private or link-local address"
            raise ConfigError(
                "node_local_dns",
                f"{dns} is {what}: "
                "NodeLocal DNSCache listens on a node-local address such as 169.254.20.10; "
                "DNS to anything else lets the workspace pick its resolver (tunnelling). Use "
                "the cache's address, or accept the risk with unsafe_unproxied_egress=True",
            )
