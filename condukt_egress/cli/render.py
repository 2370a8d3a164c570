r"""``condukt-egress render``: print a whole session, ready for ``kubectl apply``.

No Pulumi engine, no cluster: the session's Secret (with a fresh CA from
:func:`~condukt_egress.ca.generate_ca`), NetworkPolicy and workspace Pod, built
by the same functions the component uses, as a YAML stream or a JSON ``List``.
The flags are the stack config keys of ``Pulumi.yaml`` one-to-one
(``sessionId`` is ``--session-id``, ``allowPlainHttp`` is ``--allow-plain-http``,
...), plus the CA options of :class:`~condukt_egress.args.SandboxEgressArgs`.

Example:
    condukt-egress render --session-id run-42 --namespace agents \
        --policy examples/policy.yaml | kubectl apply -f -
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Final, get_args

import click

from condukt_egress.args import CaKeyAlgorithm, SandboxEgressArgs, TrustBundle
from condukt_egress.ca import generate_ca
from condukt_egress.cli import cli
from condukt_egress.errors import ConfigError
from condukt_egress.manifests import DEFAULT_WORKSPACE_IMAGE
from condukt_egress.policy import EgressPolicy
from condukt_egress.render import FORMATS, Format, render_session, serialise

__all__ = ["FIELD_FLAGS", "render"]

FIELD_FLAGS: Final = {
    "session_id": "--session-id",
    "namespace": "--namespace",
    "policy": "--policy",
    "image": "--sidecar-image",
    "allow_plain_http": "--allow-plain-http",
    "trust_bundle": "--trust-bundle",
    "native_sidecar": "--native-sidecar",
    "ca_key_algorithm": "--ca-key-algorithm",
    "ca_validity_hours": "--ca-validity-hours",
    "workspace_image": "--workspace-image",
}
"""The :class:`SandboxEgressArgs` field (or render input) behind each flag."""


def _default(name: str) -> Any:
    """The SandboxEgressArgs default of ``name``, for help texts (one source of defaults)."""
    return next(f.default for f in dataclasses.fields(SandboxEgressArgs) if f.name == name)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only: it holds a private key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        file.write(text)


@cli.command("render")
@click.option("--session-id", required=True, metavar="ID", help="The agent platform's session id.")
@click.option(
    "-n",
    "--namespace",
    metavar="NS",
    help=f"Namespace of every object [default: {_default('namespace')}].",
)
@click.option(
    "--policy",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Egress policy document (.yaml, .yml or .json) [default: deny every host].",
)
@click.option(
    "--workspace-image",
    default=DEFAULT_WORKSPACE_IMAGE,
    show_default=True,
    metavar="IMG",
    help="Image of the (untrusted) workspace container.",
)
@click.option(
    "--sidecar-image",
    metavar="IMG",
    help=f"The condukt-egress sidecar image [default: {_default('image')}].",
)
@click.option(
    "--allow-plain-http",
    is_flag=True,
    default=None,
    help="Open TCP 80 too. Risky: on port 80 the sidecar judges the Host header but "
    "dials the original IP, so one allowed name opens every public IP on port 80.",
)
@click.option(
    "--trust-bundle",
    type=click.Choice(get_args(TrustBundle)),
    help="What the workspace trusts: the session CA alone, or public roots plus it "
    f"(~250 KB more per Secret) [default: {_default('trust_bundle')}].",
)
@click.option(
    "--native-sidecar/--no-native-sidecar",
    default=None,
    help="Proxy as a native sidecar (Kubernetes 1.29+) or a plain container [default: native].",
)
@click.option(
    "--ca-key-algorithm",
    type=click.Choice(get_args(CaKeyAlgorithm)),
    help=f"Key type of the session CA [default: {_default('ca_key_algorithm')}].",
)
@click.option(
    "--ca-validity-hours",
    type=int,
    metavar="HOURS",
    help=f"Lifetime of the session CA [default: {_default('ca_validity_hours')}].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="yaml",
    show_default=True,
    help="A multi-document YAML stream or a JSON v1/List.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Write to FILE (created with mode 0600) instead of stdout.",
)
def render(
    *,
    session_id: str,
    namespace: str | None,
    policy: Path | None,
    workspace_image: str,
    sidecar_image: str | None,
    allow_plain_http: bool | None,
    trust_bundle: str | None,
    native_sidecar: bool | None,
    ca_key_algorithm: str | None,
    ca_validity_hours: int | None,
    fmt: Format,
    output: Path | None,
) -> None:
    """Print a session's Secret, NetworkPolicy and workspace Pod for kubectl apply.

    The output contains the session CA's private key: keep it secret.
    """
    options: dict[str, Any] = {
        "namespace": namespace,
        "policy": EgressPolicy.load(policy) if policy is not None else None,
        "image": sidecar_image,
        "allow_plain_http": allow_plain_http,
        "trust_bundle": trust_bundle,
        "native_sidecar": native_sidecar,
        "ca_key_algorithm": ca_key_algorithm,
        "ca_validity_hours": ca_validity_hours,
    }
    given = {k: v for k, v in options.items() if v is not None}
    try:
        args = SandboxEgressArgs(session_id=session_id, **given)
        objects = render_session(args, generate_ca(args), workspace_image)
    except ConfigError as exc:
        flag = FIELD_FLAGS.get(exc.field, exc.field)
        raise ConfigError(flag, str(exc).removeprefix(f"{exc.field}: ")) from None
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
    if policy is None:
        click.echo("note: no --policy given: the session denies every host.", err=True)
