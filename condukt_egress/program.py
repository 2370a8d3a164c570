"""The per-session stack program, shared by ``__main__.py`` and the Automation API.

One function declares a whole session from stack configuration, so a stack
created by ``pulumi up`` and one created by a Python service are the same.

Stack config (namespace ``condukt-egress``; see ``Pulumi.yaml``):
``sessionId`` (required), ``namespace``, ``policy`` (document form),
``workspaceImage``, ``sidecarImage``, ``allowPlainHttp``, ``trustBundle``,
``nativeSidecar``, ``caKeyAlgorithm``, ``caValidityHours``,
``caEarlyRenewalHours``, ``clusterCidrs``,
``nodeLocalDns``, ``dnsNamespace``, ``dnsPodLabels`` and ``unproxiedEgress``:
each the :class:`SandboxEgressArgs` field of the same name in snake_case
(``sidecarImage`` is ``image``), and the ``render`` flag in kebab-case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from condukt_egress import manifests
from condukt_egress.args import SandboxEgressArgs, validate_image
from condukt_egress.component import SandboxEgress
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.manifests import DEFAULT_WORKSPACE_IMAGE

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_WORKSPACE_IMAGE",
    "StackConfigError",
    "StackPolicyError",
    "args_from_config",
    "session_program",
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


_STACK_YAML: Final = "Pulumi.<stack>.yaml"

# (config key, SandboxEgressArgs field, getter, what the value must be, how to set it)
_OPTIONS: Final = (
    ("namespace", "namespace", "get", "a string", "`pulumi config set namespace agents`"),
    ("sidecarImage", "image", "get", "a string", "`pulumi config set sidecarImage <image>`"),
    (
        "allowPlainHttp",
        "allow_plain_http",
        "get_bool",
        "true or false",
        "`pulumi config set allowPlainHttp false`",
    ),
    (
        "trustBundle",
        "trust_bundle",
        "get",
        "a string",
        "`pulumi config set trustBundle session-ca`",
    ),
    (
        "nativeSidecar",
        "native_sidecar",
        "get_bool",
        "true or false",
        "`pulumi config set nativeSidecar true`",
    ),
    (
        "caKeyAlgorithm",
        "ca_key_algorithm",
        "get",
        "a string",
        "`pulumi config set caKeyAlgorithm ecdsa-p256`",
    ),
    (
        "caValidityHours",
        "ca_validity_hours",
        "get_int",
        "a whole number of hours",
        "`pulumi config set caValidityHours 24`",
    ),
    (
        "caEarlyRenewalHours",
        "ca_early_renewal_hours",
        "get_int",
        "a whole number of hours",
        "`pulumi config set caEarlyRenewalHours 0`",
    ),
    (
        "clusterCidrs",
        "cluster_cidrs",
        "get_object",
        "a list of IPv4 CIDRs",
        f"`condukt-egress:clusterCidrs: [100.64.0.0/10]` in {_STACK_YAML}",
    ),
    (
        "nodeLocalDns",
        "node_local_dns",
        "get",
        "a string",
        "`pulumi config set nodeLocalDns 169.254.20.10` (empty for none)",
    ),
    (
        "dnsNamespace",
        "dns_namespace",
        "get",
        "a string",
        "`pulumi config set dnsNamespace kube-system`",
    ),
    (
        "dnsPodLabels",
        "dns_pod_labels",
        "get_object",
        "an object of label keys to values",
        f"`condukt-egress:dnsPodLabels: {{k8s-app: kube-dns}}` in {_STACK_YAML}",
    ),
    (
        "unproxiedEgress",
        "unproxied_egress",
        "get_object",
        "a list of {cidr, ports, protocol} objects",
        f"`condukt-egress:unproxiedEgress: [{{cidr: 10.0.12.7/32, ports: [5432]}}]` "
        f"in {_STACK_YAML}",
    ),
)

CONFIG_KEYS: Final = (
    "sessionId",
    "namespace",
    "policy",
    "workspaceImage",
    "sidecarImage",
    "allowPlainHttp",
    "trustBundle",
    "nativeSidecar",
    "caKeyAlgorithm",
    "caValidityHours",
    "caEarlyRenewalHours",
    "clusterCidrs",
    "nodeLocalDns",
    "dnsNamespace",
    "dnsPodLabels",
    "unproxiedEgress",
)
"""Every stack config key the program reads, as declared in ``Pulumi.yaml``."""

_FIELD_TO_KEY: Final = {
    "session_id": "sessionId",
    "policy": "policy",
    **{field: key for key, field, *_ in _OPTIONS},
}
"""The config key behind each :class:`SandboxEgressArgs` field the program sets."""

_FIXES: Final = {key: fix for key, _, _, _, fix in _OPTIONS}


def _typed(config: pulumi.Config, getter: str, key: str, kind: str) -> Any:
    try:
        return getattr(config, getter)(key)
    except pulumi.ConfigTypeError as exc:
        raise StackConfigError(
            f"config {key}", f"must be {kind}: {exc}. Set it with {_FIXES[key]}"
        ) from None


def args_from_config(config: pulumi.Config) -> tuple[SandboxEgressArgs, str]:
    """Build the session's options and workspace image from stack config.

    Returns:
        The validated :class:`SandboxEgressArgs` and the workspace image.

    Raises:
        StackConfigError: A key is missing or has the wrong type or value; the
            message names the key and how to set it right.
        StackPolicyError: The ``policy`` object is invalid; the field is the
            key path to change, e.g. ``config policy.rules[2].allow[0]``.
    """
    session_id = config.get("sessionId")
    if not session_id:
        raise StackConfigError(
            "config sessionId",
            "is required: run `pulumi config set sessionId <id>` (one stack per session)",
        )
    try:
        policy = config.get_object("policy")
    except pulumi.ConfigTypeError as exc:
        raise StackConfigError(
            "config policy", f"must be an object: {exc}. Set it in {_STACK_YAML}"
        ) from None
    if policy is not None and not isinstance(policy, Mapping):
        raise StackConfigError(
            "config policy",
            "must be an object like {rules: [{allow: [api.github.com]}], default: deny}; "
            f"set it with `pulumi config set --path` or in {_STACK_YAML}",
        )
    options: dict[str, Any] = {"session_id": session_id, "policy": policy}
    for key, field, getter, kind, _ in _OPTIONS:
        value = _typed(config, getter, key, kind)
        if value is not None and not (key == "nodeLocalDns" and value == ""):
            options[field] = value
    try:
        args = SandboxEgressArgs(**options)
    except PolicyError as exc:
        raise _as_policy_error(exc) from None
    except ConfigError as exc:
        raise _as_config_error(exc) from None
    image = config.get("workspaceImage") or DEFAULT_WORKSPACE_IMAGE
    try:
        validate_image("workspaceImage", image, DEFAULT_WORKSPACE_IMAGE)
    except ConfigError as exc:
        raise StackConfigError(
            "config workspaceImage",
            f"{str(exc).removeprefix('workspaceImage: ')}. Set it with "
            "`pulumi config set workspaceImage python:3.13-slim`",
        ) from None
    return args, image


def _as_policy_error(exc: PolicyError) -> StackPolicyError:
    """``exc`` (about ``policy.<path>``) as an error naming the config key path to change."""
    message = str(exc).removeprefix(f"{exc.field}: ")
    return StackPolicyError(
        f"config {exc.field}",
        f"{message}. Change it with `pulumi config set --path '{exc.field}' <value>` "
        f"or in {_STACK_YAML}",
    )


def _as_config_error(exc: ConfigError) -> StackConfigError:
    """``exc`` (about a SandboxEgressArgs field) as an error about its config key."""
    root = re.split(r"[.\[]", exc.field, maxsplit=1)[0]
    key = _FIELD_TO_KEY.get(root, root)
    detail = exc.field[len(root) :].lstrip(".")
    message = str(exc).removeprefix(f"{exc.field}: ")
    if detail:
        message = f"{detail}: {message}"
    fix = _FIXES.get(key)
    return StackConfigError(f"config {key}", f"{message}. Set it with {fix}" if fix else message)


def session_program() -> None:
    """Declare one session: its ``SandboxEgress`` and a workspace Pod using it.

    Exports ``sessionId``, ``namespace``, ``secretName``, ``networkPolicyName``,
    ``podName``, ``podLabels``, ``controlPort`` and ``caCertPem``.
    """
    args, workspace_image = args_from_config(pulumi.Config())
    names = args.names
    egress = SandboxEgress(f"egress-{names.base}", args)
    pod = manifests.workspace_pod_manifest(args, workspace_image)
    workspace = k8s.core.v1.Pod(
        f"workspace-{names.base}",
        metadata=pod["metadata"],
        spec=pod["spec"],
        opts=egress.workload_options(),
    )
    pulumi.export("sessionId", args.session_id)
    pulumi.export("namespace", args.namespace)
    pulumi.export("secretName", egress.secret_name)
    pulumi.export("networkPolicyName", egress.network_policy_name)
    pulumi.export("podName", workspace.metadata.apply(lambda m: m["name"]))
    pulumi.export("podLabels", egress.pod_labels)
    pulumi.export("controlPort", args.control_port)
    pulumi.export("caCertPem", egress.ca_cert_pem)
