"""The Pulumi resource transform that puts a session's sidecar into any workload.

A :class:`SandboxEgress` hands out :func:`workload_transform` bound to its
session; Pulumi runs it on every resource it is attached to (and, through a
component or chart, on its children). It recognises the Kubernetes workload
types below in every API version pulumi-kubernetes ships, finds the pod
template, adds the session label to it (never to a selector), injects the
sidecar with :func:`condukt_egress.manifests.inject` and makes the workload
depend on the session's Secret and NetworkPolicy. Anything else passes through.

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
are server-side-apply patches of an object declared elsewhere: they are
checked with :func:`condukt_egress.manifests.check` (a patch can never add a
bypass) but not injected, since a partial spec cannot carry a whole sidecar.

What the engine hands a transform is the wire form: camelCase keys, numbers
as floats, and every unknown or secret value as a :class:`pulumi.Output`
(possibly the whole ``spec``). The transform lifts each such property into
``Output.apply``, so the result is correct once values are known, stays
secret when the input was, and is computed at ``pulumi up`` when a value is
unknown at preview. Typed ``*Args`` objects (a direct call) are turned into
the wire form first, using pulumi-kubernetes' own type metadata.
"""

from __future__ import annotations

import functools
import importlib
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi
from pulumi import _types
from pulumi.output import Unknown
from pulumi.runtime import rpc

from condukt_egress import manifests
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.errors import ConfigError

__all__ = [
    "JOB_KINDS",
    "WORKLOAD_KINDS",
    "Workload",
    "inject_workload",
    "transform_props",
    "workload_of",
    "workload_transform",
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

    @property
    def pod_spec_path(self) -> str:
        """Dotted path of the pod spec in the object, e.g. ``spec.template.spec``."""
        return ".".join(("spec", *self.template, "spec")) if self.template else "spec"

    @property
    def labels_path(self) -> str:
        """Dotted path of the pod template's labels, e.g. ``spec.template.metadata.labels``."""
        return ".".join(("spec", *self.template, "metadata", "labels"))


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


# --- the pure, plain-value transformation ------------------------------------


def _relocated(exc: ConfigError, prefix: str, pod_spec_path: str) -> ConfigError:
    """Re-anchor an error of :func:`manifests.inject` (relative to ``spec``) in the workload."""
    relocated = exc.renamed(pod_spec_path) if exc.root == "spec" else exc
    return relocated.under(prefix, sep=" ")


def _metadata(metadata: Any, workload: Workload, prefix: str, args: SandboxEgressArgs) -> JSON:
    """Check or set the namespace; label a Pod."""
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
        meta["labels"] = _labelled(meta.get("labels"), f"{prefix} metadata.labels", args)
    return meta


def _labelled(labels: Any, where: str, args: SandboxEgressArgs) -> JSON:
    out: JSON = dict(labels or {})
    key, value = args.names.label_key, args.names.label_value
    if out.get(key, value) != value:
        raise ConfigError(
            f"{where}[{key!r}]",
            f"is {out[key]!r}, but the workload is injected for session "
            f"{args.session_id!r} ({value!r}); a pod belongs to one session: remove the label "
            "or use that session's SandboxEgress",
        )
    out[key] = value
    return out


def _dig(value: Any, path: Sequence[str], where: str) -> JSON:
    node: Any = value
    walked = where
    for key in path:
        walked += f".{key}"
        node = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            raise ConfigError(walked, "is missing; a workload needs a pod template to protect")
    return dict(node)


def _spec(spec: Any, workload: Workload, prefix: str, args: SandboxEgressArgs) -> JSON:
    """Inject the pod template of ``spec`` (or check it, for a patch)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{prefix} spec", "is missing; declare the workload's spec")
    if workload.variant == "Patch":
        pod_spec: Mapping[str, Any] = spec
        for key in (*workload.template, "spec") if workload.template else ():
            pod_spec = pod_spec.get(key) or {}
        try:
            manifests.check(pod_spec, args)
        except ConfigError as exc:
            raise _relocated(exc, prefix, workload.pod_spec_path) from None
        return dict(spec)
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
    template["metadata"]["labels"] = _labelled(
        template["metadata"].get("labels"), f"{prefix} {workload.labels_path}", args
    )
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
        injected (a ``Patch`` is only checked). Idempotent.

    Raises:
        ConfigError: The workload could bypass the sidecar, clashes with what
            condukt-egress injects, or is in another namespace. The field
            names the kind, the resource and the path, e.g.
            ``Deployment 'agent' spec.template.spec.containers[0] ...``.
    """
    prefix = f"{workload.kind}{workload.variant} {name!r}"
    out = dict(obj)
    if workload.variant != "Patch":
        out["metadata"] = _metadata(obj.get("metadata"), workload, prefix, args)
    out["spec"] = _spec(obj.get("spec"), workload, prefix, args)
    return out


# --- wire form and Outputs ---------------------------------------------------


def _resource_args_type(workload: Workload) -> type | None:
    group, version = workload.api.split("/")
    try:
        module = importlib.import_module(f"pulumi_kubernetes.{group}.{version}")
    except ImportError:  # pragma: no cover - every listed API ships with pulumi-kubernetes
        return None
    found = getattr(module, f"{workload.kind}{workload.variant}Args", None)
    return found if isinstance(found, type) and _types.is_input_type(found) else None


def _element_type(typ: Any, index: int) -> Any:
    args = typing.get_args(typ)
    return args[index] if len(args) > index else None


def _to_wire(value: Any, typ: Any = None) -> Any:
    """Turn typed ``*Args`` objects and Python names into the wire form, keeping Outputs.

    ``typ`` is the pulumi-kubernetes input type expected at this position (None
    when unknown): dict keys are translated with its metadata, as the SDK's
    own serializer does, so a ``security_context`` key cannot hide a setting.
    """
    if typ is not None:
        typ = _types.unwrap_type(typ)
    if isinstance(value, pulumi.Output):
        return value.apply(lambda v: _to_wire(v, typ))
    if rpc.is_rpc_secret(value):
        return pulumi.Output.secret(_to_wire(rpc.unwrap_rpc_secret(value), typ))
    if _types.is_input_type(type(value)):
        typ = type(value)
        value = _types.input_type_to_dict(value)
    if isinstance(value, Mapping):
        if isinstance(typ, type) and _types.is_input_type(typ):
            names = _types.input_type_py_to_pulumi_names(typ)
            types = _types.input_type_types(typ)
            out = {}
            for key, item in value.items():
                wire = names.get(key) or key
                out[wire] = _to_wire(item, types.get(wire))
            return out
        element = _element_type(typ, 1)
        return {key: _to_wire(item, element) for key, item in value.items()}
    if isinstance(value, list | tuple):
        element = _element_type(typ, 0)
        return [_to_wire(item, element) for item in value]
    return value


def _has_output(value: Any) -> bool:
    if isinstance(value, pulumi.Output | Unknown):
        return True
    if isinstance(value, Mapping):
        return any(_has_output(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_output(v) for v in value)
    return False


def _lift(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn(value)``, through ``Output.apply`` when ``value`` holds Outputs or unknowns."""
    if _has_output(value):
        return pulumi.Output.from_input(value).apply(fn)
    return fn(value)


def transform_props(
    props: Mapping[str, Any],
    workload: Workload,
    name: str,
    args: SandboxEgressArgs,
    ca_fingerprint: Any = None,
) -> JSON:
    """The transformed properties of one workload resource (wire form, Outputs lifted).

    ``ca_fingerprint`` (an Output in the component) becomes the sidecar's
    :data:`~condukt_egress.manifests.CA_FINGERPRINT_ENV`, so a new CA changes
    the pod template. Only that value waits for the CA: everything else is
    checked and shown at preview as before.
    """
    wire: JSON = _to_wire(dict(props), _resource_args_type(workload))
    out = dict(wire)
    if workload.variant == "List":

        def items(values: Any) -> list[JSON]:
            return [
                _with_ca(
                    inject_workload(item, workload_item, f"{name}.items[{index}]", args),
                    workload_item,
                    ca_fingerprint,
                )
                for index, item in enumerate(values or ())
            ]

        workload_item = Workload(workload.api, workload.kind, "")
        out["items"] = _settle(_lift(wire.get("items"), items))
        return out
    prefix = f"{workload.kind}{workload.variant} {name!r}"
    if workload.variant != "Patch":
        out["metadata"] = _lift(
            wire.get("metadata"), lambda m: _metadata(m, workload, prefix, args)
        )
    spec = _lift(wire.get("spec"), lambda s: _spec(s, workload, prefix, args))
    if workload.variant == "Patch" or ca_fingerprint is None:
        out["spec"] = spec
    elif isinstance(spec, pulumi.Output):
        out["spec"] = _settle(
            spec.apply(lambda s: _with_ca({"spec": s}, workload, ca_fingerprint)["spec"])
        )
    else:
        out["spec"] = _with_ca({"spec": spec}, workload, ca_fingerprint)["spec"]
    return out


def _props_when_resolved(
    props: Mapping[str, Any],
    workload: Workload,
    name: str,
    resolved: pulumi.Output[SandboxEgressArgs],
    ca_fingerprint: Any,
) -> JSON:
    """:func:`transform_props` once the session's Input-valued args resolve, per property."""
    source = dict(props)
    out: pulumi.Output[JSON] = resolved.apply(
        lambda args: pulumi.Output.from_input(
            transform_props(source, workload, name, args, ca_fingerprint)
        )
    )
    keys = set(source) | (
        {"items"}
        if workload.variant == "List"
        else {"spec"} | ({"metadata"} if workload.variant != "Patch" else set())
    )
    return {key: out.apply(functools.partial(_get, key=key)) for key in sorted(keys)}


def _get(props: JSON, key: str) -> Any:
    return props.get(key)


def _settle(value: Any) -> Any:
    """An Output whose value may hold Outputs, as one Output of plain values."""
    if isinstance(value, pulumi.Output):
        return value.apply(pulumi.Output.from_input)
    return value


def _with_ca(obj: JSON, workload: Workload, ca_fingerprint: Any) -> JSON:
    """``obj`` (an injected workload) with the CA fingerprint in its sidecar's env."""
    if ca_fingerprint is None:
        return obj
    out = dict(obj)
    parent = out
    for key in ("spec", *workload.template):
        parent[key] = dict(parent[key])
        parent = parent[key]
    if workload.template:
        parent["spec"] = manifests.with_ca_fingerprint(parent["spec"], ca_fingerprint)
    else:
        out["spec"] = manifests.with_ca_fingerprint(out["spec"], ca_fingerprint)
    return out


def workload_transform(
    args: SandboxEgressArgs,
    depends_on: Callable[[], Sequence[pulumi.Resource]],
    ca_fingerprint: pulumi.Input[str] | None = None,
    resolved: pulumi.Output[SandboxEgressArgs] | None = None,
) -> Callable[[pulumi.ResourceTransformArgs], pulumi.ResourceTransformResult | None]:
    """A resource transform that injects ``args``' session into every workload.

    Args:
        args: The session.
        depends_on: Returns the resources every workload must depend on (the
            session's Secret and NetworkPolicy).
        ca_fingerprint: The session CA's fingerprint (an Output in the
            component); set in the sidecar's env so a new CA rolls the pods.
        resolved: ``args`` once its Input-valued fields resolved, when it has
            any (:attr:`SandboxEgressArgs.deferred`): the workload is then
            checked and injected when they resolve.

    Returns:
        A callable for ``ResourceOptions(transforms=[...])`` or
        ``pulumi.runtime.register_resource_transform``; it returns None (no
        change) for anything that is not a workload.
    """

    def transform(
        transform_args: pulumi.ResourceTransformArgs,
    ) -> pulumi.ResourceTransformResult | None:
        workload = workload_of(transform_args.type_)
        if workload is None:
            return None
        if resolved is None:
            props = transform_props(
                transform_args.props, workload, transform_args.name, args, ca_fingerprint
            )
        else:
            props = _props_when_resolved(
                transform_args.props, workload, transform_args.name, resolved, ca_fingerprint
            )
        opts = pulumi.ResourceOptions.merge(
            transform_args.opts or pulumi.ResourceOptions(),
            pulumi.ResourceOptions(depends_on=list(depends_on())),
        )
        return pulumi.ResourceTransformResult(props=props, opts=opts)

    return transform
