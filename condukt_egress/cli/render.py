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
``10.0.12.7/32:5432`` or ``10.0.0.0/24:53,5353/UDP``; TCP when no protocol).

Example:
    condukt-egress render --session-id run-42 --namespace agents \
        --policy examples/policy.yaml | kubectl apply -f -
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, get_args

import click

from condukt_egress.args import CaKeyAlgorithm, SandboxEgressArgs, TrustBundle
from condukt_egress.ca import generate_ca
from condukt_egress.cli import cli, format_option
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
    "ca_early_renewal_hours": "--ca-early-renewal-hours",
    "cluster_cidrs": "--cluster-cidr",
    "node_local_dns": "--node-local-dns",
    "dns_namespace": "--dns-namespace",
    "dns_pod_labels": "--dns-pod-label",
    "unproxied_egress": "--unproxied-egress",
    "workspace_image": "--workspace-image",
}
"""The :class:`SandboxEgressArgs` field (or render input) behind each flag."""


def _default(name: str) -> Any:
    """The SandboxEgressArgs default of ``name``, for help texts (one source of defaults)."""
    return next(f.default for f in dataclasses.fields(SandboxEgressArgs) if f.name == name)


def _labels(values: Sequence[str]) -> dict[str, str] | None:
    """``--dns-pod-label KEY=VALUE`` flags as a mapping; None when none is given."""
    if not values:
        return None
    labels: dict[str, str] = {}
    for value in values:
        key, sep, label = value.partition("=")
        if not sep:
            raise ConfigError(
                "--dns-pod-label", f"must be KEY=VALUE like k8s-app=kube-dns, got {value!r}"
            )
        if key in labels:
            raise ConfigError(
                "--dns-pod-label", f"{key!r} is given twice; give each label key once"
            )
        labels[key] = label
    return labels


_UNPROXIED = re.compile(r"^(?P<cidr>[^:]+):(?P<ports>[^/]+)(?:/(?P<protocol>[^/]+))?$")


def _unproxied(values: Sequence[str]) -> list[dict[str, Any]] | None:
    """``--unproxied-egress CIDR:PORT[,PORT...][/PROTOCOL]`` flags in mapping form."""
    if not values:
        return None
    out: list[dict[str, Any]] = []
    for value in values:
        match = _UNPROXIED.match(value)
        ports = match["ports"].split(",") if match else []
        if match is None or not all(p.strip().isdigit() for p in ports):
            raise ConfigError(
                "--unproxied-egress",
                f"must be CIDR:PORT[,PORT...][/PROTOCOL] like 10.0.12.7/32:5432 or "
                f"10.0.0.0/24:53,5353/UDP, got {value!r}",
            )
        entry: dict[str, Any] = {"cidr": match["cidr"], "ports": [int(p) for p in ports]}
        if match["protocol"] is not None:
            entry["protocol"] = match["protocol"]
        out.append(entry)
    return out


def _flag_error(exc: ConfigError) -> ConfigError:
    """``exc`` (about a SandboxEgressArgs field) as an error about its flag."""
    root = re.split(r"[.\[]", exc.field, maxsplit=1)[0]
    detail = exc.field[len(root) :].lstrip(".")
    message = str(exc).removeprefix(f"{exc.field}: ")
    return ConfigError(FIELD_FLAGS.get(root, root), f"{detail}: {message}" if detail else message)


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
    "--ca-early-renewal-hours",
    type=int,
    metavar="HOURS",
    help="As the stack's caEarlyRenewalHours (checked against the validity); a rendered CA "
    f"is never renewed: render a new session instead [default: "
    f"{_default('ca_early_renewal_hours')}].",
)
@click.option(
    "--cluster-cidr",
    "cluster_cidrs",
    multiple=True,
    metavar="CIDR",
    help="Extra IPv4 range the pod must never reach directly, e.g. a pod or service CIDR "
    "outside RFC 1918 (repeatable).",
)
@click.option(
    "--node-local-dns",
    metavar="IP",
    help="IPv4 address of NodeLocal DNSCache, if the cluster uses it [default: none].",
)
@click.option(
    "--dns-namespace",
    metavar="NS",
    help=f"Namespace of the cluster DNS pods [default: {_default('dns_namespace')}].",
)
@click.option(
    "--dns-pod-label",
    "dns_pod_labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Label selecting the cluster DNS pods (repeatable; replaces the default "
    "k8s-app=kube-dns).",
)
@click.option(
    "--unproxied-egress",
    multiple=True,
    metavar="CIDR:PORT[,PORT...][/PROTOCOL]",
    help="Destination reachable without the proxy (no policy, no audit), e.g. "
    "10.0.12.7/32:5432 or 10.0.0.0/24:53,5353/UDP; protocol TCP (default), UDP or SCTP "
    "(repeatable).",
)
@format_option(FORMATS, "A multi-document YAML stream or a JSON v1/List.")
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
    ca_early_renewal_hours: int | None,
    cluster_cidrs: tuple[str, ...],
    node_local_dns: str | None,
    dns_namespace: str | None,
    dns_pod_labels: tuple[str, ...],
    unproxied_egress: tuple[str, ...],
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
        "ca_early_renewal_hours": ca_early_renewal_hours,
        "cluster_cidrs": cluster_cidrs or None,
        "node_local_dns": node_local_dns,
        "dns_namespace": dns_namespace,
        "dns_pod_labels": _labels(dns_pod_labels),
        "unproxied_egress": _unproxied(unproxied_egress),
    }
    given = {k: v for k, v in options.items() if v is not None}
    try:
        args = SandboxEgressArgs(session_id=session_id, **given)
        objects = render_session(args, generate_ca(args), workspace_image)
    except ConfigError as exc:
        raise _flag_error(exc) from None
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
