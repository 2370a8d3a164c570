"""What a service says about one session, and what it gets back.

:class:`SessionSpec` carries the same options as the stack config the shared
program reads (``Pulumi.yaml``), so :func:`stack_config` is the exact config a
``pulumi up`` user would set. :class:`KubernetesSettings` becomes the default
Kubernetes provider's ``kubernetes:*`` config: the program needs no explicit
provider, and a CLI user sets the same keys with ``pulumi config set``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Final

from pulumi.automation import ConfigValue

from condukt_egress import contract
from condukt_egress.args import (
    DEFAULT_DNS_POD_LABELS,
    CaKeyAlgorithm,
    SandboxEgressArgs,
    TrustBundle,
    UnproxiedEgress,
    validate_image,
)
from condukt_egress.errors import ConfigError
from condukt_egress.manifests import DEFAULT_WORKSPACE_IMAGE
from condukt_egress.naming import session_names
from condukt_egress.policy import EgressPolicy

__all__ = [
    "KUBERNETES_CONFIG_KEYS",
    "PROJECT_NAME",
    "STACK_PREFIX",
    "KubernetesSettings",
    "SessionOutputs",
    "SessionSpec",
    "SessionSummary",
    "ca_certificate_urn",
    "stack_config",
    "stack_name",
]

PROJECT_NAME: Final = "condukt-egress"
"""The Pulumi project (and config namespace) of every session stack; as in ``Pulumi.yaml``."""

STACK_PREFIX: Final = "session-"
"""Every session stack's name starts with this; :func:`stack_name` adds the rest."""

KUBERNETES_CONFIG_KEYS: Final = (
    "kubernetes:kubeconfig",
    "kubernetes:context",
    "kubernetes:renderYamlToDirectory",
)
"""The default Kubernetes provider's config keys that :class:`KubernetesSettings` manages."""


def stack_name(session_id: str) -> str:
    """The stack name of a session: ``session-<readable prefix>-<hash of the full id>``.

    Valid for any id accepted by :func:`~condukt_egress.naming.validate_session_id`
    (letters, digits and ``-`` only, at most 49 characters) and distinct for
    distinct ids, because it embeds :attr:`SessionNames.base`.

    Raises:
        ConfigError: The id is empty, blank, too long or not a string.
    """
    return f"{STACK_PREFIX}{session_names(session_id).base}"


def ca_certificate_urn(session_id: str) -> str:
    """The URN of a session's CA certificate, for ``up(spec, replace=[...])``.

    Replacing it mints a new CA, which replaces the Secret and (through the
    CA fingerprint in the sidecar's env) the workspace Pod: the way to rotate
    a session's CA before it expires. The URN is the one
    :func:`~condukt_egress.program.session_program` declares.
    """
    from condukt_egress.component import TYPE_TOKEN  # noqa: PLC0415 - keeps this module light

    base = session_names(session_id).base
    chain = f"{TYPE_TOKEN}$tls:index/selfSignedCert:SelfSignedCert"
    return f"urn:pulumi:{stack_name(session_id)}::{PROJECT_NAME}::{chain}::egress-{base}-ca"


@dataclass(frozen=True)
class SessionSpec:
    """One session, with the options of the stack config (see ``Pulumi.yaml``).

    Validated when constructed, so bad input fails before any stack exists.

    Attributes:
        session_id: The agent platform's id (config ``sessionId``).
        namespace: Namespace of the session's objects (``namespace``).
        policy: An :class:`EgressPolicy` or its document form; None denies
            every host (``policy``). Stored as an :class:`EgressPolicy`.
        workspace_image: Image of the untrusted workspace container (``workspaceImage``).
        sidecar_image: The condukt-egress image (``sidecarImage``).
        allow_plain_http: Open TCP 80 (``allowPlainHttp``); see :class:`SandboxEgressArgs`.
        trust_bundle: ``session-ca`` or ``public-roots`` (``trustBundle``).
        native_sidecar: Run the proxy as a native sidecar (``nativeSidecar``).
        ca_key_algorithm: Key type of the session CA (``caKeyAlgorithm``).
        ca_validity_hours: Lifetime of the session CA (``caValidityHours``).
        ca_early_renewal_hours: Re-mint the CA at an ``up`` this close to its
            expiry (``caEarlyRenewalHours``).
        cluster_cidrs: Extra IPv4 ranges never reachable directly (``clusterCidrs``).
        node_local_dns: IPv4 address of NodeLocal DNSCache, if any (``nodeLocalDns``).
        dns_namespace: Namespace of the cluster DNS pods (``dnsNamespace``).
        dns_pod_labels: Labels selecting the cluster DNS pods (``dnsPodLabels``).
        unproxied_egress: Destinations reachable without the proxy, as
            :class:`UnproxiedEgress` or its mapping form (``unproxiedEgress``).

    The options of :class:`SandboxEgressArgs` alone (ports, ids, resources,
    capabilities) are not stack config; use the component for those.

    Example:
        >>> spec = SessionSpec("run-42", namespace="agents",
        ...                    policy={"rules": [{"allow": ["api.github.com"]}]})
    """

    session_id: str
    namespace: str = "default"
    policy: EgressPolicy | Mapping[str, Any] | None = None
    workspace_image: str = DEFAULT_WORKSPACE_IMAGE
    sidecar_image: str = contract.DEFAULT_IMAGE
    allow_plain_http: bool = False
    trust_bundle: TrustBundle = "session-ca"
    native_sidecar: bool = True
    ca_key_algorithm: CaKeyAlgorithm = "ecdsa-p256"
    ca_validity_hours: int = 24
    ca_early_renewal_hours: int = 0
    cluster_cidrs: Sequence[str] = ()
    node_local_dns: str | None = None
    dns_namespace: str = "kube-system"
    dns_pod_labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_DNS_POD_LABELS))
    unproxied_egress: Sequence[UnproxiedEgress | Mapping[str, Any]] = ()

    def __post_init__(self) -> None:
        validate_image("workspace_image", self.workspace_image, DEFAULT_WORKSPACE_IMAGE)
        args = self.args
        object.__setattr__(self, "policy", args.egress_policy)
        for name in _NORMALISED:
            object.__setattr__(self, name, getattr(args, name))

    @cached_property
    def args(self) -> SandboxEgressArgs:
        """The session's validated :class:`SandboxEgressArgs`, as the program builds them."""
        try:
            return SandboxEgressArgs(
                session_id=self.session_id,
                namespace=self.namespace,
                policy=self.policy,
                image=self.sidecar_image,
                allow_plain_http=self.allow_plain_http,
                trust_bundle=self.trust_bundle,
                native_sidecar=self.native_sidecar,
                ca_key_algorithm=self.ca_key_algorithm,
                ca_validity_hours=self.ca_validity_hours,
                ca_early_renewal_hours=self.ca_early_renewal_hours,
                cluster_cidrs=self.cluster_cidrs,
                node_local_dns=self.node_local_dns,
                dns_namespace=self.dns_namespace,
                dns_pod_labels=self.dns_pod_labels,
                unproxied_egress=self.unproxied_egress,
            )
        except ConfigError as exc:
            if exc.field != "image":
                raise
            raise ConfigError("sidecar_image", str(exc).split(": ", 1)[-1]) from None

    @property
    def stack_name(self) -> str:
        """This session's stack name, see :func:`stack_name`."""
        return stack_name(self.session_id)

    def program_config(self) -> dict[str, str]:
        """The program's stack config as text, keyed like ``Pulumi.yaml`` (no namespace).

        Every key of :data:`condukt_egress.program.CONFIG_KEYS` is set, so a
        stack never keeps a stale value from an earlier ``up``. Objects and
        lists are JSON text, as ``policy`` is; no NodeLocal DNSCache is ``""``,
        the ``Pulumi.yaml`` default.
        """
        args = self.args
        return {
            "sessionId": self.session_id,
            "namespace": args.namespace,
            "policy": json.dumps(args.egress_policy.to_dict(), sort_keys=True),
            "workspaceImage": self.workspace_image,
            "sidecarImage": args.image,
            "allowPlainHttp": _bool(args.allow_plain_http),
            "trustBundle": args.trust_bundle,
            "nativeSidecar": _bool(args.native_sidecar),
            "caKeyAlgorithm": args.ca_key_algorithm,
            "caValidityHours": str(args.ca_validity_hours),
            "caEarlyRenewalHours": str(args.ca_early_renewal_hours),
            "clusterCidrs": json.dumps(list(args.cluster_cidrs)),
            "nodeLocalDns": args.node_local_dns or "",
            "dnsNamespace": args.dns_namespace,
            "dnsPodLabels": json.dumps(dict(args.dns_pod_labels), sort_keys=True),
            "unproxiedEgress": json.dumps([_unproxied(u) for u in args.unproxied_egress]),
        }


_NORMALISED: Final = (
    "ca_validity_hours",
    "ca_early_renewal_hours",
    "cluster_cidrs",
    "node_local_dns",
    "dns_pod_labels",
    "unproxied_egress",
)
"""Fields whose validated form (tuples, canonical CIDRs) replaces the given value."""


def _unproxied(value: UnproxiedEgress | Mapping[str, Any]) -> dict[str, Any]:
    """The ``unproxiedEgress`` document form of one (validated) destination."""
    assert isinstance(value, UnproxiedEgress)  # noqa: S101 - normalised by SandboxEgressArgs
    return {"cidr": value.cidr, "ports": list(value.ports), "protocol": value.protocol}


def _bool(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True)
class KubernetesSettings:
    """How session stacks reach Kubernetes: the default provider's ``kubernetes:*`` config.

    All unset means the provider's own defaults (``$KUBECONFIG`` or
    ``~/.kube/config`` and its current context, as seen by the ``pulumi`` process).

    Attributes:
        kubeconfig: A kubeconfig path or its contents (``kubernetes:kubeconfig``,
            stored as a secret). An existing relative path is made absolute.
        context: The kubeconfig context to use (``kubernetes:context``).
        render_yaml_to_directory: Absolute directory to render manifests into
            instead of applying them (``kubernetes:renderYamlToDirectory``; for
            tests and GitOps; no cluster needed). The rendered Secret holds the
            session CA key in plain text: protect the directory.
    """

    kubeconfig: str | None = None
    context: str | None = None
    render_yaml_to_directory: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        for name in ("kubeconfig", "context"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(name, f"must be a non-empty string or None, got {value!r}")
        if self.kubeconfig is not None and "\n" not in self.kubeconfig:
            path = Path(self.kubeconfig).expanduser()
            if path.exists():
                object.__setattr__(self, "kubeconfig", str(path.resolve()))
        render = self.render_yaml_to_directory
        if render is None:
            return
        if not isinstance(render, str | os.PathLike) or not os.fspath(render).strip():
            raise ConfigError(
                "render_yaml_to_directory", f"must be a directory path, got {render!r}"
            )
        if not Path(render).is_absolute():
            raise ConfigError(
                "render_yaml_to_directory",
                f"must be an absolute path, got {os.fspath(render)!r}: the engine runs in the "
                "session's workspace directory; pass Path(...).resolve()",
            )
        if self.kubeconfig is not None or self.context is not None:
            raise ConfigError(
                "render_yaml_to_directory",
                "cannot be combined with kubeconfig or context (the Kubernetes provider refuses "
                "it); set either render_yaml_to_directory or kubeconfig/context",
            )
        object.__setattr__(self, "render_yaml_to_directory", os.fspath(render))

    def provider_config(self) -> dict[str, ConfigValue]:
        """The ``kubernetes:*`` stack config; only the keys that are set."""
        config: dict[str, ConfigValue] = {}
        if self.kubeconfig is not None:
            config["kubernetes:kubeconfig"] = ConfigValue(self.kubeconfig, secret=True)
        if self.context is not None:
            config["kubernetes:context"] = ConfigValue(self.context)
        if self.render_yaml_to_directory is not None:
            config["kubernetes:renderYamlToDirectory"] = ConfigValue(
                os.fspath(self.render_yaml_to_directory)
            )
        return config


def stack_config(spec: SessionSpec, kubernetes: KubernetesSettings) -> dict[str, ConfigValue]:
    """The full stack config of a session, as the manager sets it (namespaced keys)."""
    config = {f"{PROJECT_NAME}:{k}": ConfigValue(v) for k, v in spec.program_config().items()}
    config.update(kubernetes.provider_config())
    return config


@dataclass(frozen=True)
class SessionOutputs:
    """What a session stack exports (see :func:`condukt_egress.program.session_program`).

    Attributes:
        session_id: The raw session id.
        stack_name: The session's stack.
        namespace: Namespace of the session's objects.
        secret_name: The Secret with the CA, its key and the policy.
        network_policy_name: The NetworkPolicy selecting the session pod.
        pod_name: The workspace Pod.
        pod_labels: Labels that make a pod part of the session.
        control_port: The sidecar's control-channel port.
        ca_cert_pem: The session CA certificate (PEM), to trust in clients.
    """

    session_id: str
    stack_name: str
    namespace: str
    secret_name: str
    network_policy_name: str
    pod_name: str
    pod_labels: Mapping[str, str]
    control_port: int
    ca_cert_pem: str

    @classmethod
    def from_stack_outputs(
        cls, stack_name: str, outputs: Mapping[str, Any]
    ) -> SessionOutputs | None:
        """Read the program's exports; None when the stack holds no (complete) session."""
        try:
            return cls(
                session_id=str(outputs["sessionId"]),
                stack_name=stack_name,
                namespace=str(outputs["namespace"]),
                secret_name=str(outputs["secretName"]),
                network_policy_name=str(outputs["networkPolicyName"]),
                pod_name=str(outputs["podName"]),
                pod_labels={str(k): str(v) for k, v in dict(outputs["podLabels"]).items()},
                control_port=int(outputs["controlPort"]),
                ca_cert_pem=str(outputs["caCertPem"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class SessionSummary:
    """One session stack in the backend, as :meth:`SessionStacks.list` reports it.

    Attributes:
        session_id: The raw id, read from the stack's config in this state
            directory; None when the config is not here (stack made elsewhere).
        stack_name: The stack.
        resource_count: Resources in the stack, if the backend says.
        update_in_progress: Whether an update is running, if the backend says.
        last_update: When the last update ended, if any.
    """

    session_id: str | None
    stack_name: str
    resource_count: int | None
    update_in_progress: bool | None
    last_update: datetime | None
