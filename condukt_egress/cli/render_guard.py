r"""``condukt-egress render-guard``: print the guard's admission policies for kubectl or GitOps.

The same objects as the :class:`~condukt_egress.guard_component.SandboxGuard`
component, built by :func:`~condukt_egress.guard.guard_manifests`: one
``ValidatingAdmissionPolicy`` and one binding per rule. The flags are the
:class:`~condukt_egress.guard.SandboxGuardArgs` fields in kebab-case; a list or
mapping is one repeatable flag per entry (``--namespace-label KEY=VALUE``,
``--allowed-network-policy NAME``, ``--sidecar-image IMG``).

Example:
    condukt-egress render-guard --allowed-network-policy default-deny | kubectl apply -f -
    kubectl label namespace agents egress.condukt.dev/guard=enforce
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, get_args

import click

from condukt_egress.cli import cli, format_option
from condukt_egress.errors import ConfigError
from condukt_egress.guard import GUARD_NAMESPACE_LABEL, GuardMode, SandboxGuardArgs, guard_manifests
from condukt_egress.render import FORMATS, Format, serialise

__all__ = ["FIELD_FLAGS", "render_guard"]

FIELD_FLAGS: Final = {
    "namespace_labels": "--namespace-label",
    "session_pods": "--session-pods",
    "ephemeral_containers": "--ephemeral-containers",
    "network_policies": "--network-policies",
    "only_session_pods": "--only-session-pods",
    "allowed_network_policies": "--allowed-network-policy",
    "images": "--sidecar-image",
    "proxy_port": "--proxy-port",
    "control_port": "--control-port",
    "sidecar_uid": "--sidecar-uid",
    "unsafe_allowed_capabilities": "--unsafe-allowed-capability",
    "mode": "--mode",
}
"""The :class:`SandboxGuardArgs` field behind each flag."""


def _labels(values: Sequence[str]) -> dict[str, str] | None:
    """``--namespace-label KEY=VALUE`` flags as a mapping; None when none is given."""
    if not values:
        return None
    labels: dict[str, str] = {}
    for value in values:
        key, sep, label = value.partition("=")
        if not sep:
            raise ConfigError(
                "--namespace-label",
                f"must be KEY=VALUE like {GUARD_NAMESPACE_LABEL}=enforce, got {value!r}",
            )
        if key in labels:
            raise ConfigError("--namespace-label", f"{key!r} is given twice; give each key once")
        labels[key] = label
    return labels


def _flag_error(exc: ConfigError) -> ConfigError:
    """``exc`` (about a SandboxGuardArgs field) as an error about its flag."""
    root = exc.field.split("[", 1)[0]
    message = str(exc).removeprefix(f"{exc.field}: ")
    detail = exc.field[len(root) :]
    return ConfigError(FIELD_FLAGS.get(root, root), f"{detail} {message}" if detail else message)


def _rule_flag(name: str, default: bool, help_text: str) -> Callable[[Any], Any]:
    return click.option(
        f"--{name}/--no-{name}",
        default=None,
        help=f"{help_text} [default: {'on' if default else 'off'}].",
    )


@cli.command("render-guard")
@click.option(
    "--namespace-label",
    "namespace_labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Label a namespace must carry for the guard to apply there (repeatable; all must "
    f"match) [default: {GUARD_NAMESPACE_LABEL}=enforce].",
)
@_rule_flag(
    "session-pods", True, "Refuse session-labelled pods not injected and hardened by condukt-egress"
)
@_rule_flag("ephemeral-containers", True, "Refuse `kubectl debug` containers on session pods")
@_rule_flag("network-policies", True, "Refuse NetworkPolicies condukt-egress did not generate")
@_rule_flag("only-session-pods", False, "Refuse every pod without a session label")
@click.option(
    "--allowed-network-policy",
    "allowed_network_policies",
    multiple=True,
    metavar="NAME",
    help="A NetworkPolicy of yours to accept although it may widen session egress (repeatable).",
)
@click.option(
    "--sidecar-image",
    "images",
    multiple=True,
    metavar="IMG",
    help="A sidecar image session pods may run (repeatable) [default: the pinned image].",
)
@click.option("--proxy-port", type=int, metavar="PORT", help="The sessions' proxy_port.")
@click.option("--control-port", type=int, metavar="PORT", help="The sessions' control_port.")
@click.option("--sidecar-uid", type=int, metavar="UID", help="The sessions' sidecar_uid.")
@click.option(
    "--unsafe-allowed-capability",
    "unsafe_allowed_capabilities",
    multiple=True,
    metavar="CAP",
    help="A capability the sessions let workspaces add (repeatable; a risk you accept).",
)
@click.option(
    "--mode",
    type=click.Choice(get_args(GuardMode)),
    help="deny refuses; warn admits with a warning and an audit annotation [default: deny].",
)
@format_option(FORMATS, "A multi-document YAML stream or a JSON v1/List.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Write to FILE instead of stdout.",
)
def render_guard(
    *,
    namespace_labels: tuple[str, ...],
    session_pods: bool | None,
    ephemeral_containers: bool | None,
    network_policies: bool | None,
    only_session_pods: bool | None,
    allowed_network_policies: tuple[str, ...],
    images: tuple[str, ...],
    proxy_port: int | None,
    control_port: int | None,
    sidecar_uid: int | None,
    unsafe_allowed_capabilities: tuple[str, ...],
    mode: str | None,
    fmt: Format,
    output: Path | None,
) -> None:
    """Print the guard's admission policies and bindings for kubectl apply.

    Kubernetes 1.30+. Label the namespaces to protect with the namespace label.
    """
    options: dict[str, Any] = {
        "namespace_labels": _labels(namespace_labels),
        "session_pods": session_pods,
        "ephemeral_containers": ephemeral_containers,
        "network_policies": network_policies,
        "only_session_pods": only_session_pods,
        "allowed_network_policies": allowed_network_policies or None,
        "images": images or None,
        "proxy_port": proxy_port,
        "control_port": control_port,
        "sidecar_uid": sidecar_uid,
        "unsafe_allowed_capabilities": unsafe_allowed_capabilities or None,
        "mode": mode,
    }
    try:
        args = SandboxGuardArgs(**{k: v for k, v in options.items() if v is not None})
    except ConfigError as exc:
        raise _flag_error(exc) from None
    text = serialise(guard_manifests(args), fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
    selector = ",".join(f"{k}={v}" for k, v in args.namespace_labels.items())
    click.echo(
        f"note: the guard applies in namespaces labelled {selector} "
        f"(kubectl label namespace NS {selector}); it needs Kubernetes 1.30+.",
        err=True,
    )
