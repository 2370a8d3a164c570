"""The per-session stack program, shared by ``__main__.py`` and the Automation API.

One function declares a whole session from stack configuration, so a stack
created by ``pulumi up`` and one created by a Python service are the same.

Stack config (namespace ``condukt-egress``; see ``Pulumi.yaml``):
``sessionId`` (required), ``namespace``, ``policy`` (document form),
``workspaceImage``, ``sidecarImage``, ``allowPlainHttp``, ``trustBundle``,
``nativeSidecar``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from condukt_egress import manifests
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.component import SandboxEgress
from condukt_egress.errors import ConfigError
from condukt_egress.manifests import DEFAULT_WORKSPACE_IMAGE

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_WORKSPACE_IMAGE",
    "args_from_config",
    "session_program",
]


CONFIG_KEYS: Final = (
    "sessionId",
    "namespace",
    "policy",
    "workspaceImage",
    "sidecarImage",
    "allowPlainHttp",
    "trustBundle",
    "nativeSidecar",
)
"""Every stack config key the program reads, as declared in ``Pulumi.yaml``."""


def _typed(getter: Callable[[str], Any], key: str, kind: str) -> Any:
    try:
        return getter(key)
    except pulumi.ConfigTypeError as exc:
        raise ConfigError(
            f"config {key}", f"must be {kind}: {exc}. Set it with `pulumi config set {key} ...`"
        ) from None


def args_from_config(config: pulumi.Config) -> tuple[SandboxEgressArgs, str]:
    """Build the session's options and workspace image from stack config.

    Returns:
        The validated :class:`SandboxEgressArgs` and the workspace image.

    Raises:
        ConfigError: A key is missing or has the wrong type or value; the
            message names the key and the ``pulumi config set`` to fix it.
        PolicyError: The ``policy`` object is invalid.
    """
    session_id = config.get("sessionId")
    if not session_id:
        raise ConfigError(
            "config sessionId",
            "is required: run `pulumi config set sessionId <id>` (one stack per session)",
        )
    policy = _typed(config.get_object, "policy", "an object")
    if policy is not None and not isinstance(policy, Mapping):
        raise ConfigError(
            "config policy",
            "must be an object like {rules: [{allow: [api.github.com]}], default: deny}; "
            "set it with `pulumi config set --path` or in Pulumi.<stack>.yaml",
        )
    options: dict[str, Any] = {"session_id": session_id, "policy": policy}
    for key, field, getter, kind in (
        ("namespace", "namespace", config.get, "a string"),
        ("sidecarImage", "image", config.get, "a string"),
        ("allowPlainHttp", "allow_plain_http", config.get_bool, "true or false"),
        ("trustBundle", "trust_bundle", config.get, "a string"),
        ("nativeSidecar", "native_sidecar", config.get_bool, "true or false"),
    ):
        value = _typed(getter, key, kind)
        if value is not None:
            options[field] = value
    try:
        args = SandboxEgressArgs(**options)
    except ConfigError as exc:
        field = exc.field
        key = next((k for k, f in _FIELD_TO_KEY.items() if f == field), field)
        raise ConfigError(f"config {key}", str(exc).split(": ", 1)[-1]) from None
    image = config.get("workspaceImage") or DEFAULT_WORKSPACE_IMAGE
    return args, image


_FIELD_TO_KEY: Final = {
    "sessionId": "session_id",
    "namespace": "namespace",
    "sidecarImage": "image",
    "allowPlainHttp": "allow_plain_http",
    "trustBundle": "trust_bundle",
    "nativeSidecar": "native_sidecar",
}


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
