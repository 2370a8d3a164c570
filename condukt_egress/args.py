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

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal, get_args

from condukt_egress import contract
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.naming import SessionNames, session_names, validate_session_id
from condukt_egress.policy import DENY_ALL, EgressPolicy

__all__ = [
    "CaKeyAlgorithm",
    "SandboxEgressArgs",
    "TrustBundle",
    "UnproxiedEgress",
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

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CAPABILITY = re.compile(r"^[A-Z][A-Z0-9_]*$")


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
        object.__setattr__(self, "cidr", _ipv4_network("unproxied_egress.cidr", self.cidr))
        if isinstance(self.ports, str | bytes) or not self.ports:
            raise ConfigError(
                "unproxied_egress.ports",
                f"must be a non-empty list of ports, got {self.ports!r}; e.g. ports=[5432]",
            )
        object.__setattr__(
            self, "ports", tuple(_port("unproxied_egress.ports", p) for p in self.ports)
        )
        if self.protocol not in get_args(Protocol):
            raise ConfigError(
                "unproxied_egress.protocol",
                f"must be one of {', '.join(get_args(Protocol))}, got {self.protocol!r}",
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
                f"got {value!r}",
            )
        unknown = set(value) - {"cidr", "ports", "protocol"}
        if unknown:
            raise ConfigError(
                "unproxied_egress",
                f"unknown key(s) {sorted(unknown)}; accepted keys are cidr, ports, protocol",
            )
        if "cidr" not in value or "ports" not in value:
            raise ConfigError(
                "unproxied_egress", f"each entry needs 'cidr' and 'ports', got {dict(value)!r}"
            )
        return cls(cidr=value["cidr"], ports=value["ports"], protocol=value.get("protocol", "TCP"))


@dataclass(frozen=True)
class SandboxEgressArgs:
    """The options of one sandbox session's egress control.

    Attributes:
        session_id: The agent platform's id for the session; any non-empty
            string up to 1024 characters. Names and labels are derived safely.
        namespace: Namespace of the Secret, the NetworkPolicy and the pods.
        policy: An :class:`EgressPolicy` or its document form; default denies
            every host.
        image: The sidecar image (both modes).
        allow_plain_http: Open TCP 80. Off by default: on port 80 the sidecar
            judges the ``Host:`` header but dials the original IP, so one
            allowed name opens every public IP on port 80.
        trust_bundle: ``session-ca`` (default) or ``public-roots``, which
            prepends certifi's Mozilla roots to ``bundle.pem``.
        native_sidecar: Run the proxy as a native sidecar (init container with
            ``restartPolicy: Always`` and a startup probe): it is up before any
            workspace container starts and does not keep Jobs alive. Needs
            Kubernetes 1.29+. ``False`` makes it a plain container.
        proxy_port: Port the redirected traffic lands on.
        control_port: Port of the sidecar's NDJSON control channel.
        sidecar_uid: The uid the redirect exempts; only the sidecar runs as it.
        sidecar_gid: The gid the sidecar runs as; no workspace may use it.
        dns_namespace: Namespace of the cluster DNS pods.
        dns_pod_labels: Labels selecting the cluster DNS pods.
        node_local_dns: IPv4 address of NodeLocal DNSCache, if the cluster uses it.
        cluster_cidrs: Extra IPv4 ranges the pod must never reach directly
            (pod and service CIDRs of clusters outside RFC 1918).
        unproxied_egress: Explicit destinations reachable without the proxy.
        ca_key_algorithm: Key type of the per-session CA.
        ca_validity_hours: Lifetime of the per-session CA certificate.
        ca_early_renewal_hours: pulumi-tls ``early_renewal_hours``: an ``up``
            this many hours (or less) before the CA expires mints a new CA,
            which replaces the Secret and replaces or rolls the session pods.
            0 (default): only an expired CA is re-minted.
        sidecar_resources: Resource requests/limits of the sidecar containers.
        unsafe_allowed_capabilities: Capabilities workspace containers may add
            although they can defeat egress control. Empty by default; every
            entry is a risk the user accepts explicitly.
    """

    session_id: str
    namespace: str = "default"
    policy: EgressPolicy | Mapping[str, Any] | None = None
    image: str = contract.DEFAULT_IMAGE
    allow_plain_http: bool = False
    trust_bundle: TrustBundle = "session-ca"
    native_sidecar: bool = True
    proxy_port: int = contract.DEFAULT_PROXY_PORT
    control_port: int = contract.DEFAULT_CONTROL_PORT
    sidecar_uid: int = contract.DEFAULT_SIDECAR_UID
    sidecar_gid: int = contract.DEFAULT_SIDECAR_UID
    dns_namespace: str = "kube-system"
    dns_pod_labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_DNS_POD_LABELS))
    node_local_dns: str | None = None
    cluster_cidrs: Sequence[str] = ()
    unproxied_egress: Sequence[UnproxiedEgress | Mapping[str, Any]] = ()
    ca_key_algorithm: CaKeyAlgorithm = "ecdsa-p256"
    ca_validity_hours: int = 24
    ca_early_renewal_hours: int = 0
    sidecar_resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_SIDECAR_RESOURCES.items()}
    )
    unsafe_allowed_capabilities: Sequence[str] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        validate_session_id(self.session_id)
        set_(self, "namespace", _dns_label("namespace", self.namespace))
        set_(self, "policy", _policy(self.policy))
        set_(self, "image", validate_image("image", self.image, contract.DEFAULT_IMAGE))
        for name in ("allow_plain_http", "native_sidecar"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"must be true or false, got {getattr(self, name)!r}")
        _choice("trust_bundle", self.trust_bundle, get_args(TrustBundle))
        _choice("ca_key_algorithm", self.ca_key_algorithm, get_args(CaKeyAlgorithm))
        set_(self, "proxy_port", _port("proxy_port", self.proxy_port))
        set_(self, "control_port", _port("control_port", self.control_port))
        if self.proxy_port == self.control_port:
            raise ConfigError(
                "control_port",
                f"equals proxy_port ({self.proxy_port}); give the control channel its own port",
            )
        for name in ("proxy_port", "control_port"):
            if getattr(self, name) in contract.REDIRECTED_PORTS:
                raise ConfigError(
                    name,
                    f"must not be {getattr(self, name)}: TCP 80 and 443 are redirected to the "
                    "proxy; use the defaults 15001/15002 or another free port",
                )
        set_(self, "sidecar_uid", _id("sidecar_uid", self.sidecar_uid))
        set_(self, "sidecar_gid", _id("sidecar_gid", self.sidecar_gid))
        set_(self, "dns_namespace", _dns_label("dns_namespace", self.dns_namespace))
        set_(self, "dns_pod_labels", _labels("dns_pod_labels", self.dns_pod_labels))
        if self.node_local_dns is not None:
            set_(self, "node_local_dns", _ipv4_address("node_local_dns", self.node_local_dns))
        set_(
            self,
            "cluster_cidrs",
            tuple(
                _ipv4_network("cluster_cidrs", c) for c in _seq("cluster_cidrs", self.cluster_cidrs)
            ),
        )
        set_(
            self,
            "unproxied_egress",
            tuple(
                UnproxiedEgress.from_value(u)
                for u in _seq("unproxied_egress", self.unproxied_egress)
            ),
        )
        hours = self.ca_validity_hours
        whole_hours = _whole(hours)
        if whole_hours is None or not 1 <= whole_hours <= MAX_CA_VALIDITY_HOURS:
            raise ConfigError(
                "ca_validity_hours",
                f"must be a whole number of hours from 1 to {MAX_CA_VALIDITY_HOURS}, got "
                f"{hours!r}; the default 24 fits a session",
            )
        set_(self, "ca_validity_hours", whole_hours)
        early = _whole(self.ca_early_renewal_hours)
        if early is None or not 0 <= early < whole_hours:
            raise ConfigError(
                "ca_early_renewal_hours",
                f"must be a whole number of hours from 0 to ca_validity_hours - 1 "
                f"({whole_hours - 1}), got {self.ca_early_renewal_hours!r}; 0 renews only an "
                "expired CA",
            )
        set_(self, "ca_early_renewal_hours", early)
        set_(self, "sidecar_resources", _resources(self.sidecar_resources))
        set_(
            self,
            "unsafe_allowed_capabilities",
            tuple(
                _capability(c)
                for c in _seq("unsafe_allowed_capabilities", self.unsafe_allowed_capabilities)
            ),
        )

    @property
    def egress_policy(self) -> EgressPolicy:
        """The policy as an :class:`EgressPolicy` (normalised in ``__post_init__``)."""
        assert isinstance(self.policy, EgressPolicy)  # noqa: S101 - set by __post_init__
        return self.policy

    @cached_property
    def names(self) -> SessionNames:
        """Names and labels derived from ``session_id``."""
        return session_names(self.session_id)


def _seq(name: str, value: object) -> Sequence[Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ConfigError(name, f"must be a list, got {value!r}")
    return value


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = ""
        if isinstance(value, str) and value.lower().replace("_", "-") in choices:
            hint = f" (did you mean {value.lower().replace('_', '-')!r}?)"
        raise ConfigError(
            name, f"must be one of {', '.join(map(repr, choices))}, got {value!r}{hint}"
        )


def _policy(value: object) -> EgressPolicy:
    if value is None:
        return DENY_ALL
    if isinstance(value, EgressPolicy):
        return value
    if isinstance(value, Mapping):
        try:
            return EgressPolicy.from_dict(value)
        except PolicyError as exc:
            raise PolicyError(f"policy.{exc.field}", str(exc).split(": ", 1)[-1]) from None
    raise ConfigError(
        "policy",
        f"must be an EgressPolicy or its document form (a mapping), got {type(value).__name__}; "
        "e.g. {'rules': [{'allow': ['api.github.com']}], 'default': 'deny'}",
    )


def _dns_label(name: str, value: object) -> str:
    if not isinstance(value, str) or not _DNS_LABEL.match(value) or len(value) > 63:
        raise ConfigError(
            name,
            f"must be a Kubernetes namespace name (lower-case letters, digits and '-', "
            f"at most 63 characters, starting and ending alphanumeric), got {value!r}",
        )
    return value


def validate_image(field_name: str, value: object, default: str) -> str:
    """Return ``value`` if it can be a container image reference, else raise.

    Image references are printable ASCII without spaces (OCI distribution
    spec); anything else would only fail later, at pull time.

    Raises:
        ConfigError: Naming ``field_name`` and the default to fall back on.
    """
    if (
        not isinstance(value, str)
        or not value
        or not value.isascii()
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise ConfigError(
            field_name,
            f"must be a container image reference (printable ASCII without spaces), "
            f"got {value!r}; default is {default!r}",
        )
    return value


def _whole(value: object) -> int | None:
    """``value`` as an int if it is a whole number (stack config gives floats), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value)


def _port(name: str, value: object) -> int:
    port = _whole(value)
    if port is None or not 1 <= port <= 65535:
        raise ConfigError(name, f"must be a port number from 1 to 65535, got {value!r}")
    return port


def _id(name: str, value: object) -> int:
    id_ = _whole(value)
    if id_ is None or not 1 <= id_ <= 2**31 - 1:
        raise ConfigError(
            name,
            f"must be a non-root id from 1 to 2147483647, got {value!r}; the image's "
            f"default is {contract.DEFAULT_SIDECAR_UID}",
        )
    return id_


def _labels(name: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            name, f"must be a non-empty mapping of label keys to values, got {value!r}"
        )
    out: dict[str, str] = {}
    for key, val in value.items():
        key_name = key.rsplit("/", 1)[-1] if isinstance(key, str) else ""
        if not key_name or len(key_name) > 63 or not _LABEL_KEY_NAME.match(key_name):
            raise ConfigError(f"{name}[{key!r}]", "is not a valid Kubernetes label key")
        if not isinstance(val, str) or len(val) > 63 or not _LABEL_VALUE.match(val):
            raise ConfigError(f"{name}[{key!r}]", f"value {val!r} is not a valid label value")
        out[key] = val
    return out


def _ipv4_address(name: str, value: object) -> str:
    try:
        addr = ipaddress.ip_address(value)  # type: ignore[arg-type]
    except ValueError:
        raise ConfigError(
            name, f"must be an IPv4 address like 169.254.20.10, got {value!r}"
        ) from None
    if addr.version != 4:
        raise ConfigError(
            name, f"must be IPv4, got {value!r}: the NetworkPolicy allows no IPv6 at all"
        )
    return str(addr)


def _ipv4_network(name: str, value: object) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            name, f"must be an IPv4 CIDR like 10.96.0.0/12, got {value!r} ({exc})"
        ) from None
    if net.version != 4:
        raise ConfigError(
            name,
            f"must be IPv4, got {value!r}: the NetworkPolicy allows no IPv6 at all, "
            "so IPv6 ranges need no entry",
        )
    return str(net)


def _resources(value: object) -> dict[str, dict[str, str]]:
    if not isinstance(value, Mapping):
        raise ConfigError("sidecar_resources", f"must be a mapping, got {value!r}")
    out: dict[str, dict[str, str]] = {}
    for section, quantities in value.items():
        if section not in ("requests", "limits") or not isinstance(quantities, Mapping):
            raise ConfigError(
                "sidecar_resources",
                f"accepts only 'requests' and 'limits' mappings, got {section!r}: {quantities!r}",
            )
        out[section] = {str(k): str(v) for k, v in quantities.items()}
    return out


def _capability(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError("unsafe_allowed_capabilities", f"entries must be strings, got {value!r}")
    cap = value.upper().removeprefix("CAP_")
    if not _CAPABILITY.match(cap):
        raise ConfigError(
            "unsafe_allowed_capabilities", f"{value!r} is not a Linux capability name like NET_RAW"
        )
    return cap
