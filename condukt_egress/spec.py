"""``SessionSpec``: one session as the stack config describes it, and its stack name.

:class:`SessionSpec` has exactly the options of the stack config the shared
program reads (``Pulumi.yaml``): the :class:`~condukt_egress.args.SessionOptions`
fields, declared once there, ``workspace_image`` and ``workload``. The stack program,
the Automation API and ``render`` all build one, so a session means the same
thing from ``pulumi up``, a Python service and the command line. Pure: no
Pulumi import.

Example:
    >>> spec = SessionSpec("run-42", namespace="agents",
    ...                    policy={"rules": [{"allow": ["api.github.com"]}]})
    >>> spec.program_config()["namespace"], spec.args.namespace
    ('agents', 'agents')
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from functools import cached_property
from typing import Any, Final

from condukt_egress.args import SandboxEgressArgs, SessionOptions, validate_image
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.manifests import DEFAULT_WORKSPACE_IMAGE
from condukt_egress.naming import session_names
from condukt_egress.options import Option, camel, document, option, options_of
from condukt_egress.workloads import WORKLOAD_KINDS, document_workload, inject_document

__all__ = [
    "ARGS_OPTIONS",
    "CONFIG_KEYS",
    "SESSION_OPTIONS",
    "STACK_PREFIX",
    "WORKLOAD_API_VERSIONS",
    "SessionSpec",
    "stack_name",
    "workload_manifest",
]

WORKLOAD_API_VERSIONS: Final = {
    "Pod": "v1",
    "ReplicationController": "v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
"""The API version a stack declares each workload kind in."""

STACK_PREFIX: Final = "session-"
"""Every session stack's name starts with this; :func:`stack_name` adds the rest."""


def stack_name(session_id: str) -> str:
    """The stack name of a session: ``session-<readable prefix>-<hash of the full id>``.

    Valid for any id accepted by :func:`~condukt_egress.naming.validate_session_id`
    (letters, digits and ``-`` only, at most 49 characters) and distinct for
    distinct ids, because it embeds :attr:`SessionNames.base`.

    Raises:
        ConfigError: The id is empty, blank, too long or not a string.
    """
    return f"{STACK_PREFIX}{session_names(session_id).base}"


@dataclass(frozen=True)
class SessionSpec(SessionOptions):
    """One session, with the options of the stack config (see ``Pulumi.yaml``).

    Validated when constructed, so bad input fails before any stack exists;
    the fields hold the validated values (an :class:`EgressPolicy`, tuples,
    canonical CIDRs). Every field is a stack config key in camelCase and a
    ``render`` flag in kebab-case (see :data:`SESSION_OPTIONS`).

    Attributes:
        session_id: The agent platform's id (config ``sessionId``).
        workspace_image: Image of the demo workspace Pod's container (``workspaceImage``):
            the short form of ``workload``.
        workload: Your own workload (config ``workload``): a pod spec
            (``{containers: [...]}``), a pod template (``{metadata, spec}``) or
            a whole manifest of one of the eight workload kinds (``{apiVersion,
            kind, metadata, spec}``). It replaces the demo Pod and is injected
            as the component's transform injects it; it holds the manifest
            form once validated (``{}``: none, the demo Pod).

    The other attributes are those of :class:`SandboxEgressArgs` of the same
    name. Its options that are not stack config (ports, ids, resources,
    capabilities) are not here; use the component for those.
    """

    workspace_image: str = field(
        default=DEFAULT_WORKSPACE_IMAGE,
        metadata=option(
            "Image of the untrusted workspace container.", example="<image>", metavar="IMG"
        ),
    )

    workload: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=option(
            "Your workload instead of the demo Pod: a pod spec, a pod template or a whole "
            "manifest of a workload kind (Pod, Deployment, StatefulSet, DaemonSet, "
            "ReplicaSet, ReplicationController, Job, CronJob).",
            example="{containers: [{name: agent, image: python:3.13-slim}]}",
            kind="object",
            what="an object: a pod spec, a pod template or a workload manifest",
            flag="--filename",
            doc_default="the demo workspace Pod",
        ),
    )

    def __post_init__(self) -> None:
        validate_image("workspace_image", self.workspace_image, DEFAULT_WORKSPACE_IMAGE)
        args = self.args
        for name in ARGS_OPTIONS:
            object.__setattr__(self, name, getattr(args, name))
        if self.workload:
            if self.workspace_image != DEFAULT_WORKSPACE_IMAGE:
                raise ConfigError(
                    "workspace_image",
                    "sets the demo Pod's image, which workload replaces; set the image in "
                    "the workload's containers and leave workspace_image unset",
                )
            manifest = workload_manifest(self.workload, args.names.pod)
            try:
                inject_document(manifest, args)  # refuse a bypass before any stack exists
            except ConfigError as exc:
                raise exc.under("workload", sep=" ") from None
            object.__setattr__(self, "workload", manifest)

    @cached_property
    def args(self) -> SandboxEgressArgs:
        """The session's validated :class:`SandboxEgressArgs`, as the program builds them."""
        return SandboxEgressArgs(**{name: getattr(self, name) for name in ARGS_OPTIONS})

    @property
    def stack_name(self) -> str:
        """This session's stack name, see :func:`stack_name`."""
        return stack_name(self.session_id)

    def program_config(self) -> dict[str, str]:
        """The program's stack config as text, keyed like ``Pulumi.yaml`` (no namespace).

        Every key of :data:`CONFIG_KEYS` is set, so a stack never keeps a stale
        value from an earlier ``up``. Objects and lists are JSON text; no
        NodeLocal DNSCache is ``""``, the ``Pulumi.yaml`` default.
        """
        return {o.config: o.to_config(getattr(self, o.name)) for o in SESSION_OPTIONS}

    def to_config(self) -> dict[str, Any]:
        """The session as a stack config document: ``Pulumi.yaml``'s keys, JSON values.

        Lists and objects are values, not JSON text (``policy`` is an
        object), so the result is an HTTP body or a ``Pulumi.<stack>.yaml``
        ``config:`` block as it stands. :meth:`from_config` reads it back.
        """
        return {o.config: _document_value(o, getattr(self, o.name)) for o in SESSION_OPTIONS}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SessionSpec:
        """The session a stack config document describes (camelCase keys, as ``Pulumi.yaml``).

        Takes what :meth:`to_config` gives, or the text forms of
        :meth:`program_config` (``"true"``, ``"72"``, JSON text for lists and
        objects). Unset keys take their defaults; ``sessionId`` is required.

        Raises:
            ConfigError: An unknown key, a value of the wrong type or an
                invalid value; the field is the camelCase key (and its path).
            PolicyError: The ``policy`` object is invalid; the field is its path.
        """
        if not isinstance(config, Mapping):
            raise ConfigError(
                "config",
                f"must be an object of stack config keys (sessionId, namespace, ...), "
                f"got {type(config).__name__}",
            )
        by_key = {o.config: o for o in SESSION_OPTIONS}
        for key in config:
            if key not in by_key:
                raise ConfigError(str(key), _unknown_key(str(key), by_key))
        if config.get("sessionId") in (None, ""):
            raise ConfigError("sessionId", "is required: the agent platform's id of the session")
        values = {
            by_key[key].name: _from_document(by_key[key], value) for key, value in config.items()
        }
        try:
            return cls(**{name: v for name, v in values.items() if v is not None})
        except PolicyError:
            raise
        except ConfigError as exc:
            opt = _BY_NAME.get(exc.root)
            raise exc if opt is None else exc.renamed(opt.config) from None


SESSION_OPTIONS: Final[tuple[Option, ...]] = options_of(SessionSpec)
"""Every stack config option, in ``Pulumi.yaml`` order: the one list the surfaces read."""

_BY_NAME: Final = {o.name: o for o in SESSION_OPTIONS}
_TEXT_BOOLEANS: Final = {"true": True, "false": False}


def _document_value(opt: Option, value: Any) -> Any:
    """One option's value in a stack config document (``None`` strings as ``""``)."""
    if opt.kind in ("array", "object"):
        return document(value)
    if opt.kind == "string":
        return "" if value is None else str(value)
    return value


def _unknown_key(key: str, by_key: Mapping[str, Option]) -> str:
    """Why ``key`` is refused, with the key meant when it is close to one."""
    camel_key = camel(key)
    close = [camel_key] if camel_key in by_key else get_close_matches(key, by_key, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"is not a session config key; {hint}the keys are {', '.join(by_key)}"


def _from_document(opt: Option, value: Any) -> Any:
    """One option's value read from a config document; None means its default."""
    wrong = ConfigError(opt.config, f"must be {opt.what}, got {value!r} (e.g. {opt.example})")
    if value is None:
        return None
    if opt.kind == "string":
        if not isinstance(value, str):
            raise wrong
        return None if value == "" and opt.default is None else value
    if opt.kind == "boolean":
        value = _TEXT_BOOLEANS.get(value, value) if isinstance(value, str) else value
        if not isinstance(value, bool):
            raise wrong
        return value
    if opt.kind == "integer":
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise wrong from None
    if (opt.kind == "object" and not isinstance(value, Mapping)) or (
        opt.kind == "array" and not isinstance(value, list)
    ):
        raise wrong
    return value


ARGS_OPTIONS: Final = tuple(f.name for f in dataclasses.fields(SessionOptions))
"""The options that are :class:`SandboxEgressArgs` fields (all but ``workspace_image``
and ``workload``)."""

CONFIG_KEYS: Final = tuple(o.config for o in SESSION_OPTIONS)
"""Every stack config key the program reads, as declared in ``Pulumi.yaml``."""


def workload_manifest(value: Mapping[str, Any], default_name: str) -> dict[str, Any]:
    """A ``workload`` value as a whole manifest: ``{apiVersion, kind, metadata, spec}``.

    A pod spec (it has ``containers``) and a pod template (``metadata`` and
    ``spec``, no ``kind``) become a Pod; a manifest must be of one of the
    eight workload kinds, and is declared in :data:`WORKLOAD_API_VERSIONS`'s
    version of its kind. A workload without a name is named ``default_name``.

    Raises:
        ConfigError: The value is none of the three forms, or its kind is
            not a workload; the field is ``workload``.
    """
    if not isinstance(value, Mapping):
        raise ConfigError("workload", f"must be an object, got {type(value).__name__}")
    kinds = ", ".join(WORKLOAD_KINDS)
    if "kind" in value or "apiVersion" in value:
        workload = document_workload(value)
        if workload is None or workload.variant:
            raise ConfigError(
                "workload.kind",
                f"is {value.get('kind')!r} in {value.get('apiVersion')!r}, not a workload; "
                f"give one of {kinds} (or a pod spec or pod template)",
            )
        manifest = {**value, "apiVersion": WORKLOAD_API_VERSIONS[workload.kind]}
    elif "containers" in value:
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": dict(value)}
    elif "spec" in value:
        unknown = set(value) - {"metadata", "spec"}
        if unknown:
            raise ConfigError(
                f"workload.{sorted(unknown)[0]}",
                "is not a pod template key; a pod template has metadata and spec only",
            )
        manifest = {"apiVersion": "v1", "kind": "Pod", **value}
    else:
        raise ConfigError(
            "workload",
            "is none of a pod spec ({containers: [...]}), a pod template ({metadata, spec}) "
            f"or a workload manifest ({{apiVersion, kind, metadata, spec}} of {kinds})",
        )
    metadata = manifest.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise ConfigError("workload.metadata", f"must be an object, got {metadata!r}")
    if not metadata.get("name") and not metadata.get("generateName"):
        metadata = {**metadata, "name": default_name}
    manifest["metadata"] = dict(metadata)
    return manifest
