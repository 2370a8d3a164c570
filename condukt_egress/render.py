"""Offline rendering: one session as plain Kubernetes objects, ready for kubectl.

``render`` is the component without the Pulumi engine: the same builders of
:mod:`condukt_egress.manifests` produce the Secret, the NetworkPolicy and the
workspace Pod, and a CA minted by :func:`condukt_egress.ca.generate_ca` takes
the place of pulumi-tls. The objects come in apply order (Secret and
NetworkPolicy before the Pod, so the pod never runs unrestricted), as a
multi-document YAML stream or a JSON ``List``; ``kubectl apply -f -`` accepts
both.

The Secret is named after its content (:func:`~condukt_egress.manifests.secret_name`):
a new rendering of a session (a new policy, a new CA) brings a new Secret
beside the old one, which the running pods keep until they are replaced;
:func:`prune_command` then deletes the old ones by label.

Teardown is the other way round, and ``kubectl delete -f`` alone gets it
wrong: it deletes in file order, so the NetworkPolicy would go while the Pod
is still terminating, its egress wide open. :func:`teardown_commands` gives
the safe sequence (the Pod first, waiting until it is gone, then the rest);
the YAML stream's header and the command's note print it.

Example:
    >>> from condukt_egress import SandboxEgressArgs
    >>> from condukt_egress.ca import generate_ca
    >>> args = SandboxEgressArgs(session_id="42", namespace="agents")
    >>> objects = render_session(args, generate_ca(args), "python:3.13-slim")
    >>> [o["kind"] for o in objects]
    ['Secret', 'NetworkPolicy', 'Pod']
    >>> text = serialise(objects, "yaml")
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import yaml

from condukt_egress import manifests
from condukt_egress._text import shown
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.errors import ConfigError
from condukt_egress.policy import yaml_problem
from condukt_egress.workloads import WORKLOAD_KINDS

if TYPE_CHECKING:  # the CA code (cryptography) is for render, not for inject
    from condukt_egress.ca import CaMaterial

try:
    from yaml import CSafeDumper as _BaseDumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = [
    "FORMATS",
    "Format",
    "prune_command",
    "read_manifests",
    "render_session",
    "serialise",
    "session_objects",
    "teardown_commands",
    "to_json",
    "to_yaml",
    "yaml_stream",
]

JSON = dict[str, Any]

Format = Literal["yaml", "json"]
"""Output formats: a multi-document YAML stream or a JSON ``v1/List``."""
FORMATS: Final = get_args(Format)

YAML_HEADER: Final = (
    "# A condukt-egress session: Secret, NetworkPolicy, workspace Pod, in apply order.\n"
    "# The Secret holds the session CA's PRIVATE KEY: keep this file secret.\n"
)


def teardown_commands(objects: Sequence[JSON]) -> list[str]:
    """The kubectl commands that delete a rendered session without opening its pods.

    ``kubectl delete -f`` deletes in file order and does not wait in between:
    the NetworkPolicy would be gone while a Pod still runs out its grace
    period. So the workloads and their pods go first, and kubectl waits until
    they are gone; only then the NetworkPolicy and the Secret. Every delete
    works by name or by the session label, so no rendered file is needed
    (the session may well have been piped into ``kubectl apply -f -``).

    Args:
        objects: What :func:`render_session` returned, or
            :func:`session_objects` followed by the user's documents.
    """
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    namespace = policy["metadata"]["namespace"]
    labels = policy["spec"]["podSelector"]["matchLabels"]
    selector = ",".join(f"{key}={value}" for key, value in labels.items())
    owners = [
        f"{o['kind'].lower()}/{o['metadata']['name']}"
        for o in objects
        if o.get("kind") in WORKLOAD_KINDS
        and o["kind"] != "Pod"
        and isinstance(o.get("metadata"), dict)
        and o["metadata"].get("name")
    ]
    commands = []
    if owners:
        commands.append(f"kubectl delete --namespace {namespace} {' '.join(owners)} --wait=true")
    commands.append(f"kubectl delete pod --namespace {namespace} -l {selector} --wait=true")
    commands.append(
        f"kubectl delete networkpolicy,secret --namespace {namespace} -l {selector} "
        "--ignore-not-found"
    )
    return commands


def prune_command(objects: Sequence[JSON]) -> str:
    """The kubectl command that deletes the session's Secrets other than the rendered one.

    The Secret is named after its content, so applying a new rendering (a
    new policy or CA) adds a Secret beside the old one, which the running
    pods still mount; once they moved to the new one, this prunes the old
    by the session label, keeping the rendered Secret.

    Args:
        objects: What :func:`render_session` or :func:`session_objects` returned.
    """
    secret = next(o for o in objects if o["kind"] == "Secret")["metadata"]
    selector = ",".join(f"{key}={value}" for key, value in secret["labels"].items())
    return (
        f"kubectl delete secret --namespace {secret['namespace']} -l {selector} "
        f"--field-selector metadata.name!={secret['name']}"
    )


class _ManifestLoader(_Loader):
    """A safe loader that keeps timestamps as text, as kubectl does.

    PyYAML turns ``creationTimestamp: 2018-12-02T08:09:25Z`` into a datetime,
    which would come back out in another format (or not at all, as JSON).
    """


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}


def session_objects(args: SandboxEgressArgs, ca: CaMaterial) -> list[JSON]:
    """The session's Secret and NetworkPolicy, in apply order: what workloads need first."""
    data = manifests.secret_data(args, ca.cert_pem, ca.key_pem)
    binary = manifests.secret_binary_data(args, ca.cert_pem)
    name = manifests.secret_name(args, ca.cert_pem)
    return [
        manifests.secret_manifest(args, data, binary, name=name),
        manifests.network_policy_manifest(args),
    ]


def read_manifests(text: str, source: str) -> list[JSON]:
    """The documents of a YAML stream or a JSON document, as ``kubectl apply -f`` reads them.

    Empty documents are dropped.

    Args:
        text: The stream.
        source: How errors name it (a file name, or ``stdin``).

    Raises:
        ConfigError: The text is not YAML (a tab says so plainly) or a
            document is not an object; the field is ``source``.
    """
    try:
        documents = list(yaml.load_all(text, Loader=_ManifestLoader))
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(source, yaml_problem(exc, text)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"not valid YAML: {exc}") from None
    out: list[JSON] = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ConfigError(
                f"{source} document {index + 1}",
                f"is {shown(document)}, not a Kubernetes "
                "object; each document must be a mapping with apiVersion and kind",
            )
        out.append(document)
    return out


def render_session(args: SandboxEgressArgs, ca: CaMaterial, workspace_image: str) -> list[JSON]:
    """Every object of one session, as the component and the stack program declare it.

    Args:
        args: The session.
        ca: Its CA (certificate and PKCS#8 key).
        workspace_image: Image of the workspace container.

    Returns:
        The Secret, the NetworkPolicy and the workspace Pod, in that (apply) order.

    Raises:
        ConfigError: The key is not PKCS#8 or the workspace image is not an
            image reference.
    """
    return [
        *session_objects(args, ca),
        manifests.workspace_pod_manifest(args, workspace_image, ca_cert_pem=ca.cert_pem),
    ]


class _KubeDumper(_BaseDumper):
    """A safe dumper whose output kubectl's YAML 1.1 parser reads back unchanged.

    Go's YAML 1.1 reads a bare ``y``/``n`` as a boolean, which PyYAML does not,
    so they are declared booleans here: the emitter then quotes such strings
    (a namespace ``y`` or a session id ``n`` stays a string). Multi-line text
    (the PEMs) is written as a literal block, to be read by a person.
    """


def _represent_str(dumper: _KubeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_KubeDumper.add_representer(str, _represent_str)
_KubeDumper.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN")
)


def yaml_stream(objects: Sequence[JSON]) -> str:
    """Any objects as a multi-document YAML stream kubectl reads back unchanged, no header."""
    return yaml.dump_all(
        objects,
        Dumper=_KubeDumper,
        explicit_start=True,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1 << 20,
    )


def to_yaml(objects: Sequence[JSON]) -> str:
    """A session as a multi-document YAML stream (one ``---`` document per object).

    Its header comment says how to tear the session down (:func:`teardown_commands`).
    """
    body = yaml_stream(objects)
    teardown = "".join(f"#   {c}\n" for c in teardown_commands(objects))
    return (
        YAML_HEADER
        + "# Tear down the pods first, never with `kubectl delete -f` alone (file order\n"
        + "# would delete the NetworkPolicy while a Pod still runs):\n"
        + teardown
        + body
    )


def to_json(objects: Sequence[JSON]) -> str:
    """A ``v1/List`` holding the objects, indented, with a final newline."""
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def serialise(objects: Sequence[JSON], fmt: Format) -> str:
    """Write the objects in ``fmt`` (``yaml`` or ``json``).

    Raises:
        ConfigError: ``fmt`` is neither, naming the accepted values.
    """
    if fmt == "yaml":
        return to_yaml(objects)
    if fmt == "json":
        return to_json(objects)
    raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
