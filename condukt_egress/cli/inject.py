r"""``condukt-egress inject``: a session's sidecar into your manifests, stream in, stream out.

What ``istioctl kube-inject`` does for a mesh: every document of ``-f FILE``
(any number; ``-`` or no ``-f`` at all reads stdin) comes out in its order,
each workload of the eight kinds injected and labelled exactly as the Pulumi
transform does it, everything else unchanged. The session's own objects (the
Secret with its CA, the NetworkPolicy) are not printed: create them first
with ``condukt-egress render`` (without ``-f``) or the stack, with the same
session flags, and name that Secret with ``--secret-name``: its name ends
with a hash of its content (CA and policy), which only they know. A
workload that could bypass the sidecar is refused, naming the workload and
the field, with exit status 1 and nothing on stdout.

It reads stdin and writes stdout, so it is a Helm 3 post-renderer as it is:

    helm install agent ./chart --post-renderer condukt-egress \
        --post-renderer-args inject --post-renderer-args=--session-id=run-42 \
        --post-renderer-args=-n --post-renderer-args=agents \
        --post-renderer-args=--secret-name=condukt-egress-run-42-...

Example:
    kubectl create deployment agent --image=python:3.13-slim --dry-run=client -o yaml \
        | condukt-egress inject --session-id run-42 -n agents \
            --secret-name condukt-egress-run-42-... | kubectl apply -f -
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
from condukt_egress.errors import ConfigError
from condukt_egress.manifests import CaBinding
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
@click.option(
    "--secret-name",
    metavar="NAME",
    help="The session Secret the pods mount, as render's note or the stack's "
    "secretName output names it (condukt-egress-<session>-<content hash>).",
)
@manifest_files_option("Manifests to inject: a file or - for stdin (repeatable) [default: -].")
@manifest_format_option
@output_file_option("Write to FILE instead of stdout.")
@quiet_option
def inject(
    *,
    fmt: Format,
    output_file: Path | None,
    files: tuple[str, ...],
    secret_name: str | None,
    **flags: Any,
) -> None:
    """Inject the session's sidecar into every workload of your manifests (a filter).

    Create the session's Secret and NetworkPolicy first (render without -f, or
    the stack), with the same session flags, and pass the Secret's name.
    """
    if not files:
        if sys.stdin.isatty():
            raise click.UsageError("give the manifests: -f FILE, or pipe them in (-f -)")
        files = ("-",)
    args = from_flags(SandboxEgressArgs, INJECT_OPTIONS, flags)
    documents = read_documents(files)
    ca = CaBinding(None, _checked_secret_name(secret_name, args))
    out = [
        inject_document(d, args, where=f"document {i + 1}", ca=ca) for i, d in enumerate(documents)
    ]
    policy_warnings(args.policy, "--policy")
    write_output(output_file, yaml_stream(out) if fmt == "yaml" else to_json(out))


def _checked_secret_name(name: str | None, args: SandboxEgressArgs) -> str:
    """``name`` if it is one of the session's Secret names, else a ConfigError saying where to look.

    The name ends with a hash of the Secret's content (the CA and the policy),
    so only the ``render`` or the stack that created the Secret knows it.
    """
    prefix = args.names.secret_prefix
    where = (
        "take it from render's note ('Secret <namespace>/<name>') or the stack output "
        f"secretName, or list them: kubectl get secret -l "
        f"{args.names.label_key}={args.names.label_value}"
    )
    if name is None:
        raise ConfigError(
            "--secret-name",
            f"is required: the session Secret is named {prefix}<hash of its content>; {where}",
        )
    if not args.names.owns_secret(name):
        raise ConfigError(
            "--secret-name",
            f"is {name!r}, not a Secret of session {args.session_id!r} (those are named "
            f"{prefix}<26-character hash>); {where}, with the same --session-id",
        )
    return name
