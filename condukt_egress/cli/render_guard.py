r"""``condukt-egress render-guard``: print the guard's admission policies for kubectl or GitOps.

The same objects as the :class:`~condukt_egress.guard_component.SandboxGuard`
component, built by :func:`~condukt_egress.guard.guard_manifests`: one
``ValidatingAdmissionPolicy`` and one binding per rule. The flags are the
:class:`~condukt_egress.guard.SandboxGuardArgs` options as they declare
themselves (:mod:`condukt_egress.options`): the field names in kebab-case, a
list or mapping as one repeatable flag per entry (``--namespace-label
KEY=VALUE``, ``--allowed-network-policy NAME``, ``--sidecar-image IMG``).

Example:
    condukt-egress render-guard --allowed-network-policy default-deny | kubectl apply -f -
    kubectl label namespace agents egress.condukt.dev/guard=enforce
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from condukt_egress.cli import (
    cli,
    from_flags,
    note,
    option_flags,
    output_file_option,
    quiet_option,
    write_output,
)
from condukt_egress.cli._manifests import manifest_format_option
from condukt_egress.guard import SandboxGuardArgs, guard_manifests
from condukt_egress.options import options_of
from condukt_egress.render import Format, to_json, yaml_stream

__all__ = ["FIELD_FLAGS", "GUARD_OPTIONS", "YAML_HEADER", "render_guard"]

YAML_HEADER: Final = (
    "# The condukt-egress guard: one ValidatingAdmissionPolicy and its binding per rule\n"
    "# (Kubernetes 1.30+). Delete it with `kubectl delete -f FILE`.\n"
)

GUARD_OPTIONS: Final = options_of(SandboxGuardArgs)
FIELD_FLAGS: Final = {o.name: o.flag for o in GUARD_OPTIONS}
"""The :class:`SandboxGuardArgs` field behind each flag."""


@cli.command("render-guard")
@option_flags(GUARD_OPTIONS)
@manifest_format_option
@output_file_option("Write to FILE instead of stdout.")
@quiet_option
def render_guard(*, fmt: Format, output_file: Path | None, **flags: Any) -> None:
    """Print the guard's admission policies and bindings for kubectl apply.

    Kubernetes 1.30+. Label the namespaces to protect with the namespace label.
    """
    args = from_flags(SandboxGuardArgs, GUARD_OPTIONS, flags)
    objects = guard_manifests(args)
    text = YAML_HEADER + yaml_stream(objects) if fmt == "yaml" else to_json(objects)
    write_output(output_file, text)
    selector = ",".join(f"{k}={v}" for k, v in args.namespace_labels.items())
    note(
        f"the guard applies in namespaces labelled {selector} "
        f"(kubectl label namespace NS {selector}); it needs Kubernetes 1.30+."
    )
