r"""``condukt-egress render``: print a whole session, ready for ``kubectl apply``.

No Pulumi engine, no cluster: the session's Secret (with a fresh CA from
:func:`~condukt_egress.ca.generate_ca`) and NetworkPolicy, then the workloads,
built by the same functions the component uses, as a YAML stream or a JSON
``List`` (``-o yaml|json``). Without ``-f`` the workload is the demo
workspace Pod (``--workspace-image``); with ``-f FILE`` (any number, ``-``
for stdin) it is every document of those files in order: each workload of
the eight kinds injected and labelled as the Pulumi transform does it,
everything else unchanged. The flags are the stack config keys of
``Pulumi.yaml`` one-to-one (``sessionId`` is ``--session-id``,
``allowPlainHttp`` is ``--allow-plain-http``, ...); list and object keys
become repeatable flags named for one entry: ``clusterCidrs`` is
``--cluster-cidr CIDR``, ``dnsPodLabels`` is ``--dns-pod-label KEY=VALUE``
and ``unproxiedEgress`` is ``--unproxied-egress CIDR:PORT[,PORT...][/PROTOCOL]``
(e.g. ``10.0.12.7/32:5432`` or ``10.0.0.0/24:8125,5353/UDP``; TCP when no
protocol).

Example:
    condukt-egress render --session-id run-42 -n agents \
        --policy examples/policy.yaml | kubectl apply -f -
    helm template agent ./chart | condukt-egress render --session-id run-42 -n agents -f - \
        | kubectl apply -f -
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Final

import click

from condukt_egress.ca import generate_ca
from condukt_egress.cli import (
    cli,
    from_flags,
    note,
    option_flags,
    output_file_option,
    policy_warnings,
    quiet_option,
)
from condukt_egress.cli import write_output as write
from condukt_egress.cli._manifests import (
    manifest_files_option,
    manifest_format_option,
    read_documents,
)
from condukt_egress.manifests import ca_binding
from condukt_egress.render import (
    Format,
    prune_command,
    render_session,
    serialise,
    session_objects,
    teardown_commands,
)
from condukt_egress.spec import SESSION_OPTIONS, SessionSpec
from condukt_egress.workloads import inject_document

__all__ = ["FIELD_FLAGS", "render"]

FIELD_FLAGS: Final = {o.name: o.flag for o in SESSION_OPTIONS}
"""The :class:`~condukt_egress.spec.SessionSpec` field behind each flag."""

_FLAG_OPTIONS: Final = tuple(o for o in SESSION_OPTIONS if o.name != "workload")
"""Every option but ``workload``, which is ``-f/--filename`` (any number of documents)."""


@cli.command("render")
@option_flags(_FLAG_OPTIONS)
@manifest_files_option(
    "Your workloads: a manifest file, a directory-free YAML stream or - for stdin "
    "(repeatable); replaces the demo workspace Pod."
)
@manifest_format_option
@output_file_option("Write to FILE (created with mode 0600: it holds the CA key) not stdout.")
@quiet_option
def render(*, fmt: Format, output_file: Path | None, files: tuple[str, ...], **flags: Any) -> None:
    """Print a session's Secret, NetworkPolicy and workloads for kubectl apply.

    The output contains the session CA's private key: keep it secret.
    """
    spec = from_flags(SessionSpec, _FLAG_OPTIONS, flags)
    if files and flags.get("workspace_image") is not None:
        raise click.UsageError(
            "--workspace-image sets the demo Pod, which -f replaces; set the image in "
            "your manifests"
        )
    ca = generate_ca(spec.args)
    if files:
        binding = ca_binding(spec.args, ca.cert_pem)
        objects = [
            *session_objects(spec.args, ca),
            *(
                inject_document(d, spec.args, where=f"document {i + 1}", ca=binding)
                for i, d in enumerate(read_documents(files))
            ),
        ]
    else:
        objects = render_session(spec.args, ca, spec.workspace_image)
    policy_warnings(spec.policy, "--policy")
    write(output_file, serialise(objects, fmt), private=True)
    if flags.get("policy") is None:
        note("no --policy given: the session denies every host.")
    _notes(spec, objects, output_file, files)


def _notes(
    spec: SessionSpec, objects: list[dict[str, Any]], output: Path | None, files: tuple[str, ...]
) -> None:
    """The stderr notes: the key, then this session's next steps (apply, watch, tear down)."""
    where = "stdout" if output is None else str(output)
    secret = objects[0]["metadata"]
    note(  # first: the next steps end the output
        f"{where} holds the session CA's private key (Secret "
        f"{secret['namespace']}/{secret['name']}, key ca-key.pem): keep it secret; "
        "encrypt it (SOPS, Sealed Secrets) before committing it."
    )
    if files and len(objects) == 2:
        note("the manifests hold no objects: only the Secret and the NetworkPolicy were rendered.")
    namespace = shlex.quote(spec.namespace)
    # Server-side: client-side apply keeps a copy of each object in an annotation
    # limited to 256 KiB, which a public-roots Secret (two copies of the roots) exceeds.
    apply = (
        f"kubectl apply --server-side -f {shlex.quote(str(output))}"
        if output is not None
        else "pipe this command into `kubectl apply --server-side -f -`"
    )
    note(f"next: apply: {apply}")
    note(
        f"next: watch: condukt-egress events -n {namespace} "
        f"--session-id {shlex.quote(spec.session_id)}"
    )
    note(
        "next: a new rendering of this session (new policy or CA) adds a new Secret beside "
        "the old one; once its pods run on it, prune the older Secrets: "
        f"{prune_command(objects)}"
    )
    steps = " && ".join(teardown_commands(objects))
    note(
        f"next: tear down, pods first (`kubectl delete -f` alone deletes the NetworkPolicy "
        f"while a Pod still runs): {steps}"
    )
