r"""``condukt-egress inject``: a session's sidecar into your manifests, stream in, stream out.

What ``istioctl kube-inject`` does for a mesh: every document of ``-f FILE``
(any number; ``-`` or no ``-f`` at all reads stdin) comes out in its order,
each workload of the eight kinds injected and labelled exactly as the Pulumi
transform does it, everything else unchanged. The session's own objects (the
Secret with its CA, the NetworkPolicy) are not printed: create them first
with ``condukt-egress render`` (without ``-f``) or the stack, with the same
session flags. A workload that could bypass the sidecar is refused, naming
the workload and the field, with exit status 1 and nothing on stdout.

It reads stdin and writes stdout, so it is a Helm 3 post-renderer as it is:

    helm install agent ./chart --post-renderer condukt-egress \
        --post-renderer-args inject --post-renderer-args=--session-id=run-42 \
        --post-renderer-args=-n --post-renderer-args=agents

Example:
    kubectl create deployment agent --image=python:3.13-slim --dry-run=client -o yaml \
        | condukt-egress inject --session-id run-42 -n agents | kubectl apply -f -
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import click

from condukt_egress.args import SandboxEgressArgs
from condukt_egress.cli import (
    cli,
    from_flags,
    option_flags,
    output_file_option,
    policy_warnings,
    quiet_option,
    write_output,
)
from condukt_egress.cli._manifests import (
    manifest_files_option,
    manifest_format_option,
    read_documents,
)
from condukt_egress.render import Format, to_json, yaml_stream
from condukt_egress.spec import SESSION_OPTIONS
from condukt_egress.workloads import inject_document

__all__ = ["INJECT_OPTIONS", "inject"]

INJECT_OPTIONS: Final = tuple(
    o for o in SESSION_OPTIONS if o.name not in ("workload", "workspace_image")
)
"""The session flags of ``render`` that shape a workload (no demo Pod image)."""


@cli.command("inject")
@option_flags(INJECT_OPTIONS)
@manifest_files_option("Manifests to inject: a file or - for stdin (repeatable) [default: -].")
@manifest_format_option
@output_file_option("Write to FILE instead of stdout.")
@quiet_option
def inject(*, fmt: Format, output_file: Path | None, files: tuple[str, ...], **flags: Any) -> None:
    """Inject the session's sidecar into every workload of your manifests (a filter).

    Create the session's Secret and NetworkPolicy first (render without -f, or
    the stack), with the same session flags.
    """
    if not files:
        if sys.stdin.isatty():
            raise click.UsageError("give the manifests: -f FILE, or pipe them in (-f -)")
        files = ("-",)
    args = from_flags(SandboxEgressArgs, INJECT_OPTIONS, flags)
    out = [
        inject_document(d, args, where=f"document {i + 1}")
        for i, d in enumerate(read_documents(files))
    ]
    policy_warnings(args.policy, "--policy")
    write_output(output_file, yaml_stream(out) if fmt == "yaml" else to_json(out))
