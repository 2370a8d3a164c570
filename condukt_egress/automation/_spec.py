"""What a service says about one session, and what it gets back.

:class:`~condukt_egress.spec.SessionSpec` (re-exported here) carries the same
options as the stack config the shared program reads (``Pulumi.yaml``), so
:func:`stack_config` is the exact config a ``pulumi up`` user would set.
:class:`KubernetesSettings` becomes the default Kubernetes provider's
``kubernetes:*`` config: the program needs no explicit provider, and a CLI
user sets the same keys with ``pulumi config set``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from pulumi.automation import ConfigValue

from condukt_egress.errors import ConfigError
from condukt_egress.naming import session_names
from condukt_egress.spec import SESSION_OPTIONS, STACK_PREFIX, SessionSpec, stack_name

__all__ = [
    "KUBERNETES_CONFIG_KEYS",
    "PROJECT_NAME",
    "STACK_PREFIX",
    "KubernetesSettings",
    "SessionOutputs",
    "SessionSpec",
    "SessionSummary",
    "ca_certificate_urn",
    "secret_config",
    "stack_config",
    "stack_config_json",
    "stack_name",
]

PROJECT_NAME: Final = "condukt-egress"
"""The Pulumi project (and config namespace) of every session stack; as in ``Pulumi.yaml``."""

KUBERNETES_CONFIG_KEYS: Final = (
    "kubernetes:kubeconfig",
    "kubernetes:context",
    "kubernetes:renderYamlToDirectory",
)
"""The default Kubernetes provider's config keys that :class:`KubernetesSettings` manages."""


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


def secret_config(spec: SessionSpec, kubernetes: KubernetesSettings) -> dict[str, str]:
    """The secret entries of :func:`stack_config` (a kubeconfig), key to plain value.

    These never travel in a command line, where ``ps`` shows them to every
    local user: the manager pipes each to ``pulumi config set --secret KEY``
    on its standard input.
    """
    return {k: v.value for k, v in stack_config(spec, kubernetes).items() if v.secret}


def stack_config_json(
    spec: SessionSpec, kubernetes: KubernetesSettings, *, include_secrets: bool = False
) -> str:
    """:func:`stack_config` for ``pulumi config set-all --json``: lists and objects as such.

    ``Pulumi.yaml`` types ``policy``, ``dnsPodLabels``, ``clusterCidrs`` and
    ``unproxiedEgress`` as objects and arrays, and the CLI refuses a string
    there, so those are set as object values (``objectValue``), the way
    ``pulumi config set --path`` or a YAML value in ``Pulumi.<stack>.yaml``
    sets them.

    The text is an argument of the command line, so secret entries (see
    :func:`secret_config`) are left out unless ``include_secrets`` is true.
    """
    objects = {
        f"{PROJECT_NAME}:{o.config}" for o in SESSION_OPTIONS if o.kind in ("array", "object")
    }
    entries: dict[str, dict[str, Any]] = {}
    for key, value in stack_config(spec, kubernetes).items():
        if value.secret and not include_secrets:
            continue
        entry: dict[str, Any] = {"value": value.value, "secret": value.secret}
        if key in objects:
            entry["objectValue"] = json.loads(value.value)
        entries[key] = entry
    return json.dumps(entries, sort_keys=True)


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
