r"""``condukt-egress render``: print a whole session, ready for ``kubectl apply``.

No Pulumi engine, no cluster: the session's Secret (with a fresh CA from
:func:`~condukt_egress.ca.generate_ca`), NetworkPolicy and workspace Pod, built
by the same functions the component uses, as a YAML stream or a JSON ``List``.
The flags are the stack config keys of ``Pulumi.yaml`` one-to-one
(``sessionId`` is ``--session-id``, ``allowPlainHttp`` is ``--allow-plain-http``,
...); list and object keys become repeatable flags named for one entry:
``clusterCidrs`` is ``--cluster-cidr CIDR``, ``dnsPodLabels`` is
``--dns-pod-label KEY=VALUE`` and ``unproxiedEgress`` is
``--unproxied-egress CIDR:PORT[,PORT...][/PROTOCOL]`` (e.g.
``10.0.12.7/32:5432`` or ``10.0.0.0/24:8125,5353/UDP``; TCP when no protocol).

Example:
    condukt-egress render --session-id run-42 --namespace agents \
        --policy examples/policy.yaml | kubectl apply -f -
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import click

from condukt_egress.ca import generate_ca
from condukt_egress.cli import cli, format_option, from_flags, option_flags
from condukt_egress.errors import ConfigError
from condukt_egress.render import (
    FORMATS,
    Format,
    render_session,
    serialise,
    teardown_commands,
)
from condukt_egress.spec import SESSION_OPTIONS, SessionSpec

__all__ = ["FIELD_FLAGS", "render"]

FIELD_FLAGS: Final = {o.name: o.flag for o in SESSION_OPTIONS}
"""The :class:`~condukt_egress.spec.SessionSpec` field behind each flag."""


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only: it holds a private key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        file.write(text)


@cli.command("render")
@option_flags(SESSION_OPTIONS)
@format_option(FORMATS, "A multi-document YAML stream or a JSON v1/List.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Write to FILE (created with mode 0600) instead of stdout.",
)
def render(*, fmt: Format, output: Path | None, **flags: Any) -> None:
    """Print a session's Secret, NetworkPolicy and workspace Pod for kubectl apply.

    The output contains the session CA's private key: keep it secret.
    """
    try:
        spec = from_flags(SessionSpec, SESSION_OPTIONS, flags)
        objects = render_session(spec.args, generate_ca(spec.args), spec.workspace_image)
    except ConfigError as exc:
        flag = FIELD_FLAGS.get(exc.root)
        raise (exc if flag is None else exc.renamed(flag)) from None
    text = serialise(objects, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        _write_private(output, text)
    where = "stdout" if output is None else str(output)
    secret = objects[0]["metadata"]
    click.echo(
        f"note: {where} holds the session CA's private key (Secret "
        f"{secret['namespace']}/{secret['name']}, key ca-key.pem): keep it secret; "
        "encrypt it (SOPS, Sealed Secrets) before committing it.",
        err=True,
    )
    steps = " && ".join(teardown_commands(objects, str(output) if output else "FILE"))
    click.echo(
        f"note: tear down with `{steps}`: the Pod first; `kubectl delete -f` alone deletes "
        "the NetworkPolicy while the Pod still runs.",
        err=True,
    )
    if flags.get("policy") is None:
        click.echo("note: no --policy given: the session denies every host.", err=True)
