"""The per-session stack program, shared by ``__main__.py`` and the Automation API.

One function declares a whole session from stack configuration, so a stack
created by ``pulumi up`` and one created by a Python service are the same.

Stack config (namespace ``condukt-egress``; see ``Pulumi.yaml``): one key per
option of :data:`condukt_egress.spec.SESSION_OPTIONS` (``sessionId``,
``namespace``, ``policy``, ...), each the :class:`~condukt_egress.spec.SessionSpec`
field of the same name in snake_case and the ``render`` flag in kebab-case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from condukt_egress import manifests
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.component import SandboxEgress
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.options import STACK_YAML, Option
from condukt_egress.spec import CONFIG_KEYS, SESSION_OPTIONS, SessionSpec

__all__ = [
    "CONFIG_KEYS",
    "StackConfigError",
    "StackPolicyError",
    "args_from_config",
    "session_program",
    "spec_from_config",
]


class StackConfigError(ConfigError, pulumi.RunError):
    """A stack config value is wrong; ``pulumi up`` prints it as one line.

    A :class:`pulumi.RunError` ends the program with ``error: <message>`` and
    no traceback (the Python language host and the Automation API's inline
    server both treat it so). :attr:`field` is the config key, e.g.
    ``config caValidityHours``; the message ends with the command that fixes it.
    """


class StackPolicyError(PolicyError, pulumi.RunError):
    """The ``policy`` config value is wrong; one line naming the key path to change.

    :attr:`field` is the path ``pulumi config set --path`` takes, e.g.
    ``config policy.rules[2].allow[0]``.
    """


_GETTERS = {
    "string": "get",
    "boolean": "get_bool",
    "integer": "get_int",
    "array": "get_object",
    "object": "get_object",
}
_BY_NAME = {o.name: o for o in SESSION_OPTIONS}


def _read(config: pulumi.Config, opt: Option) -> Any:
    """One option's value from stack config; None when unset (the default applies)."""
    try:
        value = getattr(config, _GETTERS[opt.kind])(opt.config)
    except pulumi.ConfigTypeError as exc:
        raise StackConfigError(
            f"config {opt.config}", f"must be {opt.what}: {exc}. Set it with {opt.config_fix}"
        ) from None
    if value is None or (value == "" and opt.kind == "string" and opt.default is None):
        return None
    wrong_shape = (opt.kind == "object" and not isinstance(value, Mapping)) or (
        opt.kind == "array" and not isinstance(value, list)
    )
    if wrong_shape:
        raise StackConfigError(
            f"config {opt.config}",
            f"must be {opt.what}, got {value!r}. Set it with {opt.config_fix}",
        )
    return value


def spec_from_config(config: pulumi.Config) -> SessionSpec:
    """Build the session from stack config, each key read as its option declares.

    Raises:
        StackConfigError: A key is missing or has the wrong type or value; the
            message names the key and how to set it right.
        StackPolicyError: The ``policy`` object is invalid; the field is the
            key path to change, e.g. ``config policy.rules[2].allow[0]``.
    """
    if not config.get("sessionId"):
        raise StackConfigError(
            "config sessionId",
            "is required: run `pulumi config set sessionId <id>` (one stack per session)",
        )
    values = {opt.name: _read(config, opt) for opt in SESSION_OPTIONS}
    try:
        return SessionSpec(**{name: v for name, v in values.items() if v is not None})
    except PolicyError as exc:
        # exc.field is policy.<path>: the path `pulumi config set --path` takes.
        raise StackPolicyError(
            f"config {exc.field}",
            f"{exc.message}. Change it with `pulumi config set --path '{exc.field}' <value>` "
            f"or in {STACK_YAML}",
        ) from None
    except ConfigError as exc:
        opt = _BY_NAME.get(exc.root)
        if opt is None:
            raise
        error = exc.renamed(f"config {opt.config}")
        raise StackConfigError(
            error.field, f"{error.message}. Set it with {opt.config_fix}"
        ) from None


def args_from_config(config: pulumi.Config) -> tuple[SandboxEgressArgs, str]:
    """The session's validated :class:`SandboxEgressArgs` and workspace image from stack config.

    Raises:
        StackConfigError: As :func:`spec_from_config`.
        StackPolicyError: As :func:`spec_from_config`.
    """
    spec = spec_from_config(config)
    return spec.args, spec.workspace_image


_RESOURCES: Final[Mapping[str, Callable[..., Any]]] = {
    "Pod": k8s.core.v1.Pod,
    "ReplicationController": k8s.core.v1.ReplicationController,
    "Deployment": k8s.apps.v1.Deployment,
    "StatefulSet": k8s.apps.v1.StatefulSet,
    "DaemonSet": k8s.apps.v1.DaemonSet,
    "ReplicaSet": k8s.apps.v1.ReplicaSet,
    "Job": k8s.batch.v1.Job,
    "CronJob": k8s.batch.v1.CronJob,
}
"""The pulumi-kubernetes resource of each workload kind (versions: ``WORKLOAD_API_VERSIONS``)."""


def session_program() -> None:
    """Declare one session: its ``SandboxEgress`` and the workload using it.

    The workload is the ``workload`` config value when set (any of the eight
    kinds, injected by the component's transform), else the demo workspace
    Pod running ``workspaceImage``. Exports ``sessionId``, ``namespace``,
    ``secretName``, ``networkPolicyName``, ``podName`` (the workload's name),
    ``workloadKind``, ``podLabels``, ``controlPort`` and ``caCertPem``.
    """
    spec = spec_from_config(pulumi.Config())
    args = spec.args
    names = args.names
    egress = SandboxEgress(f"egress-{names.base}", args)
    if spec.workload:
        kind = spec.workload["kind"]
        declared = spec.workload
    else:
        kind = "Pod"
        declared = manifests.workspace_pod_manifest(args, spec.workspace_image)
    workspace = _RESOURCES[kind](
        f"workspace-{names.base}",
        metadata=declared.get("metadata"),
        spec=declared.get("spec"),
        opts=egress.workload_options(),
    )
    pulumi.export("sessionId", args.session_id)
    pulumi.export("namespace", args.namespace)
    pulumi.export("secretName", egress.secret_name)
    pulumi.export("networkPolicyName", egress.network_policy_name)
    pulumi.export("podName", workspace.metadata.apply(lambda m: m["name"]))
    pulumi.export("workloadKind", kind)
    pulumi.export("podLabels", egress.pod_labels)
    pulumi.export("controlPort", args.control_port)
    pulumi.export("caCertPem", egress.ca_cert_pem)
