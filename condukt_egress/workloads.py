"""Pure workload surgery: find a workload's pod template, label it, inject it.

Nothing here knows Pulumi. :func:`workload_of` recognises the Kubernetes
workload types below in every API version pulumi-kubernetes ships;
:func:`inject_workload` takes one workload object in the wire form (Kubernetes
field names, as in YAML), sets or checks its namespace, adds the session label
to its pod template (never to a selector) and injects the sidecar with
:func:`condukt_egress.manifests.inject`. The Pulumi transform
(:mod:`condukt_egress.transform`) only lifts ``Output`` values around these.

=======================  =========================================
kind                     pod spec
=======================  =========================================
Pod                      ``spec`` (labels in ``metadata``)
Deployment, StatefulSet, ``spec.template.spec``
DaemonSet, ReplicaSet,
ReplicationController,
Job
CronJob                  ``spec.jobTemplate.spec.template.spec``
=======================  =========================================

``<Kind>List`` resources are injected item by item. ``<Kind>Patch`` resources
are server-side-apply patches of an object declared elsewhere: they are not
injected, since a partial spec cannot carry a whole sidecar, but every
container they add or touch is hardened, and anything that could bypass the
sidecar is refused (:func:`condukt_egress.manifests.harden_patch`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from condukt_egress import manifests
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.errors import ConfigError
from condukt_egress.manifests import CaBinding

__all__ = [
    "JOB_KINDS",
    "WORKLOAD_KINDS",
    "Workload",
    "document_workload",
    "inject_document",
    "inject_workload",
    "with_ca_binding",
    "workload_items",
    "workload_metadata",
    "workload_of",
    "workload_spec",
]

JSON = dict[str, Any]

WORKLOAD_KINDS: Final = {
    "Pod": (),
    "Deployment": ("template",),
    "StatefulSet": ("template",),
    "DaemonSet": ("template",),
    "ReplicaSet": ("template",),
    "ReplicationController": ("template",),
    "Job": ("template",),
    "CronJob": ("jobTemplate", "spec", "template"),
}
"""Workload kinds and the path from their ``spec`` to the pod template
(empty for a Pod, whose ``spec`` is the pod spec)."""

JOB_KINDS: Final = frozenset({"Job", "CronJob"})
"""Kinds whose pods must end: a plain (non-native) sidecar never exits."""

_API_VERSIONS: Final = frozenset(
    {
        "core/v1",
        "apps/v1",
        "apps/v1beta1",
        "apps/v1beta2",
        "extensions/v1beta1",
        "batch/v1",
        "batch/v1beta1",
        "batch/v2alpha1",
    }
)
_TYPE: Final = re.compile(
    r"^kubernetes:(?P<api>[a-z0-9.]+/[a-z0-9]+):(?P<kind>[A-Za-z]+?)(?P<variant>Patch|List)?$"
)


@dataclass(frozen=True)
class Workload:
    """A recognised workload resource type.

    Attributes:
        api: ``group/version`` of the Pulumi type token, e.g. ``apps/v1``.
        kind: The Kubernetes kind, e.g. ``Deployment``.
        variant: ``""``, ``"Patch"`` or ``"List"``.
    """

    api: str
    kind: str
    variant: str

    @property
    def template(self) -> tuple[str, ...]:
        """Path from ``spec`` to the pod template (empty for a Pod)."""
        return WORKLOAD_KINDS[self.kind]

    def describe(self, name: str) -> str:
        """How errors name a resource of this type: ``Deployment 'agent'``."""
        return f"{self.kind}{self.variant} {name!r}"

    @property
    def pod_spec_path(self) -> str:
        """Dotted path of the pod spec in the object, e.g. ``spec.template.spec``."""
        return ".".join(("spec", *self.template, "spec")) if self.template else "spec"


def workload_of(type_: str) -> Workload | None:
    """The workload a Pulumi type token declares, or None for any other resource.

    Example:
        >>> workload_of("kubernetes:batch/v1:CronJob").template
        ('jobTemplate', 'spec', 'template')
        >>> workload_of("kubernetes:core/v1:Service") is None
        True
    """
    match = _TYPE.match(type_)
    if match is None or match["api"] not in _API_VERSIONS or match["kind"] not in WORKLOAD_KINDS:
        return None
    return Workload(match["api"], match["kind"], match["variant"] or "")


def _relocated(exc: ConfigError, prefix: str, pod_spec_path: str) -> ConfigError:
    """Re-anchor an error of :func:`manifests.inject` (relative to ``spec``) in the workload."""
    relocated = exc.renamed(pod_spec_path) if exc.root == "spec" else exc
    return relocated.under(prefix, sep=" ")


def workload_metadata(
    metadata: Any, workload: Workload, name: str, args: SandboxEgressArgs
) -> JSON:
    """The workload's ``metadata`` with its namespace checked or set (and a Pod labelled).

    A ``Patch``'s metadata is returned unchanged, once a Pod patch's labels and
    annotations are checked (:func:`condukt_egress.manifests.check_pod_metadata`).
    """
    prefix = workload.describe(name)
    if workload.variant == "Patch":
        if not workload.template:
            _check_pod_metadata(metadata, prefix, args)
        return metadata  # type: ignore[no-any-return]
    meta: JSON = dict(metadata or {})
    namespace = meta.get("namespace")
    if namespace is None or namespace == "":
        meta["namespace"] = args.namespace
    elif namespace != args.namespace:
        raise ConfigError(
            f"{prefix} metadata.namespace",
            f"is {namespace!r} but the session's namespace is {args.namespace!r}: the pods "
            "mount the session Secret, which cannot cross namespaces, and the NetworkPolicy "
            f"selects pods of its own namespace only. Declare the workload in "
            f"{args.namespace!r} or give the session namespace={namespace!r}",
        )
    if not workload.template:
        _check_pod_metadata(meta, prefix, args)
        meta["labels"] = _labelled(meta.get("labels"), args)
    return meta


def _check_pod_metadata(meta: Any, prefix: str, args: SandboxEgressArgs, path: str = "") -> None:
    """:func:`manifests.check_pod_metadata` with the field at ``path`` in the workload."""
    if isinstance(meta, Mapping):
        try:
            manifests.check_pod_metadata(meta, args)
        except ConfigError as exc:
            raise (exc.under(path) if path else exc).under(prefix, sep=" ") from None


def _patch_spec(
    spec: Mapping[str, Any], workload: Workload, prefix: str, args: SandboxEgressArgs
) -> JSON:
    """A ``*Patch``'s spec with its pod spec hardened and pod metadata checked, if it has them."""

    def hardened(pod_spec: Mapping[str, Any]) -> JSON:
        try:
            return manifests.harden_patch(pod_spec, args)
        except ConfigError as exc:
            raise _relocated(exc, prefix, workload.pod_spec_path) from None

    if not workload.template:
        return hardened(spec)
    out: JSON = dict(spec)
    template = out
    for key in workload.template:
        node = template.get(key)
        if not isinstance(node, Mapping):
            return out  # the patch does not touch the pod template
        template[key] = dict(node)
        template = template[key]
    _check_pod_metadata(
        template.get("metadata"), prefix, args, f"spec.{'.'.join(workload.template)}"
    )
    if isinstance(template.get("spec"), Mapping):
        template["spec"] = hardened(template["spec"])
    return out


def _labelled(labels: Any, args: SandboxEgressArgs) -> JSON:
    """``labels`` with the session label set.

    Another session's value was refused before, by
    :func:`condukt_egress.manifests.check_pod_metadata`.
    """
    return {**(labels or {}), args.names.label_key: args.names.label_value}


def _dig(value: Any, path: Sequence[str], where: str) -> JSON:
    node: Any = value
    walked = where
    for key in path:
        walked += f".{key}"
        node = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            raise ConfigError(walked, "is missing; a workload needs a pod template to protect")
    return dict(node)


def workload_spec(spec: Any, workload: Workload, name: str, args: SandboxEgressArgs) -> JSON:
    """The workload's ``spec`` with its pod template injected (a patch's hardened)."""
    prefix = workload.describe(name)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{prefix} spec", "is missing; declare the workload's spec")
    if workload.variant == "Patch":
        return _patch_spec(spec, workload, prefix, args)
    if workload.kind in JOB_KINDS and not args.native_sidecar:
        raise ConfigError(
            f"{prefix}",
            "is a Job, whose pods must end, but the plain sidecar container never exits: "
            "use the default native_sidecar=True (Kubernetes 1.29+)",
        )
    out: JSON = dict(spec)
    if not workload.template:
        try:
            return manifests.inject(out, args)
        except ConfigError as exc:
            raise _relocated(exc, prefix, workload.pod_spec_path) from None
    # Copy the path down to the template so nothing of the user's is shared or lost.
    parent, where = out, f"{prefix} spec"
    for key in workload.template[:-1]:
        parent[key] = _dig(parent, (key,), where)
        parent, where = parent[key], f"{where}.{key}"
    last = workload.template[-1]
    template = _dig(parent, (last,), where)
    template["metadata"] = dict(template.get("metadata") or {})
    _check_pod_metadata(template["metadata"], prefix, args, f"spec.{'.'.join(workload.template)}")
    template["metadata"]["labels"] = _labelled(template["metadata"].get("labels"), args)
    try:
        template["spec"] = manifests.inject(
            _dig(template, ("spec",), f"{prefix} {workload.pod_spec_path[: -len('.spec')]}"),
            args,
        )
    except ConfigError as exc:
        raise _relocated(exc, prefix, workload.pod_spec_path) from None
    parent[last] = template
    return out


def inject_workload(
    obj: Mapping[str, Any], workload: Workload, name: str, args: SandboxEgressArgs
) -> JSON:
    """Inject one plain workload object (``metadata`` and ``spec``; wire names).

    Args:
        obj: The object's properties, e.g. ``{"metadata": {...}, "spec": {...}}``.
        workload: Its type, from :func:`workload_of`.
        name: How to name it in errors (the Pulumi resource name).
        args: The session.

    Returns:
        A new dict: namespace set or checked, pod template labelled and
        injected (a ``Patch`` has what it carries hardened or refused:
        :func:`condukt_egress.manifests.harden_patch`). Idempotent.

    Raises:
        ConfigError: The workload could bypass the sidecar, clashes with what
            condukt-egress injects, or is in another namespace. The field
            names the kind, the resource and the path, e.g.
            ``Deployment 'agent' spec.template.spec.containers[0] ...``.
    """
    out = dict(obj)
    if workload.variant != "Patch" or "metadata" in obj:
        out["metadata"] = workload_metadata(obj.get("metadata"), workload, name, args)
    out["spec"] = workload_spec(obj.get("spec"), workload, name, args)
    return out


def workload_items(
    items: Any, workload: Workload, name: str, args: SandboxEgressArgs
) -> list[JSON]:
    """The ``items`` of a ``<Kind>List``, each injected as a ``<Kind>`` named ``name.items[i]``."""
    item_type = Workload(workload.api, workload.kind, "")
    return [
        inject_workload(item, item_type, f"{name}.items[{index}]", args)
        for index, item in enumerate(items or ())
    ]


def document_workload(document: Mapping[str, Any]) -> Workload | None:
    """The workload a manifest document declares (by ``apiVersion`` and ``kind``), or None.

    Example:
        >>> document_workload({"apiVersion": "v1", "kind": "Pod"}).pod_spec_path
        'spec'
        >>> document_workload({"apiVersion": "v1", "kind": "Service"}) is None
        True
    """
    api, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api, str) or not isinstance(kind, str) or kind.endswith("Patch"):
        return None
    return workload_of(f"kubernetes:{api if '/' in api else 'core/' + api}:{kind}")


def with_ca_binding(obj: Mapping[str, Any], workload: Workload, binding: CaBinding) -> JSON:
    """An injected workload bound to its session's CA (a :class:`~manifests.CaBinding`).

    The fingerprint in its sidecar's env and the Secret its volumes mount
    both change with the CA (and the Secret's name with the policy), so a new
    CA or policy rolls the workload's pods onto a Secret created before them.
    """
    out = dict(obj)
    parent = out
    for key in ("spec", *workload.template):
        parent[key] = dict(parent[key])
        parent = parent[key]
    if workload.template:
        parent["spec"] = manifests.with_ca_binding(parent["spec"], binding)
    else:
        out["spec"] = manifests.with_ca_binding(out["spec"], binding)
    return out


def inject_document(
    document: Mapping[str, Any],
    args: SandboxEgressArgs,
    *,
    where: str = "document",
    ca: CaBinding | None = None,
) -> JSON:
    """One manifest as kubectl reads it, its workload injected; any other kind unchanged.

    A workload of the kinds in :data:`WORKLOAD_KINDS` (or a ``<Kind>List``,
    or a ``v1/List`` of anything) is injected and labelled exactly as the
    Pulumi transform does it (:func:`inject_workload`); Services, ConfigMaps
    and the rest come back as they are (the same dict, not a copy).

    Args:
        document: One parsed YAML or JSON document.
        args: The session.
        where: How errors name a document without ``metadata.name``.
        ca: The session's CA binding, when the CA is known (``render``) or
            the Secret's name is (``inject --secret-name``): the Secret the
            volumes mount and the fingerprint in the sidecar's env.

    Raises:
        ConfigError: The workload could bypass the sidecar, clashes with what
            is injected or is in another namespace; the field names the kind,
            the workload's name and the path, e.g.
            ``Deployment 'agent' spec.template.spec.hostNetwork``.
    """
    if document.get("kind") == "List" and isinstance(document.get("items"), list):
        items = [
            inject_document(item, args, where=f"{where}.items[{i}]", ca=ca)
            if isinstance(item, Mapping)
            else item
            for i, item in enumerate(document["items"])
        ]
        return {**document, "items": items}
    workload = document_workload(document)
    if workload is None:
        return document if isinstance(document, dict) else dict(document)
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    name = name if isinstance(name, str) and name else where
    if workload.variant == "List":
        item_type = Workload(workload.api, workload.kind, "")
        injected = workload_items(document.get("items"), workload, name, args)
        if ca is not None:
            injected = [with_ca_binding(i, item_type, ca) for i in injected]
        return {**document, "items": injected}
    out = inject_workload(document, workload, name, args)
    return out if ca is None else with_ca_binding(out, workload, ca)
