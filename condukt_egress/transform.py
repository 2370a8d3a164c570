"""The Pulumi resource transform that puts a session's sidecar into any workload.

A :class:`SandboxEgress` hands out :func:`workload_transform` bound to its
session; Pulumi runs it on every resource it is attached to (and, through a
component or chart, on its children). For a workload type (see
:mod:`condukt_egress.workloads`, which does the pure surgery) it injects the
pod template and makes the workload depend on the session's Secret and
NetworkPolicy. Anything else passes through.

What the engine hands a transform is the SDK's deserialised wire form
(Pulumi's ``runtime/_callbacks.py`` calls ``deserialize_properties``):
camelCase keys, numbers as floats (:func:`from_wire` makes integral ones ints
again), typed ``*Args`` already turned into dicts,
and every unknown or secret value a :class:`pulumi.Output` (possibly the whole
``spec``). This module only lifts such properties into ``Output.apply``, so
the result is correct once values are known, stays secret when the input
was, and is computed at ``pulumi up`` when a value is unknown at preview.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pulumi
from pulumi.output import Unknown
from pulumi.runtime import rpc

from condukt_egress._bail import stop
from condukt_egress._passthrough import passthrough_warning
from condukt_egress.args import SandboxEgressArgs, holds
from condukt_egress.errors import FieldError
from condukt_egress.session_objects import CaBinding
from condukt_egress.workloads import (
    Workload,
    with_ca_binding,
    workload_items,
    workload_metadata,
    workload_of,
    workload_spec,
)

__all__ = ["from_wire", "transform_props", "workload_transform"]

JSON = dict[str, Any]
T = TypeVar("T")


def _refusing(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, whose refusal (a :class:`FieldError`) ends a CLI run as one error line.

    A refusal raised in a transform reaches the CLI with the SDK's callback
    stack appended and then the program's traceback; :func:`~condukt_egress._bail.stop`
    prints it alone instead (and raises it outside the CLI's Python host).
    Wrapped at each check, so a refusal found only when an Output resolves
    (inside ``apply``) is treated the same.
    """

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except FieldError as error:
            stop(error)

    return checked


def from_wire(value: Any) -> Any:
    """A deserialised wire value as the program declared it: integral floats back to ints.

    The wire carries every number as a float, so a ``hostPort: 8001`` reaches
    the transform as ``8001.0``; a refusal would quote it so, and the injected
    result would hand the provider floats. No Kubernetes field of a workload
    is a float, so an integral float is always an integer that went through
    the wire. A secret the SDK left wrapped (a plain secret, not an output
    value) becomes a secret Output.
    """
    if rpc.is_rpc_secret(value):
        return pulumi.Output.secret(from_wire(rpc.unwrap_rpc_secret(value)))
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: from_wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [from_wire(item) for item in value]
    return value


def holds_output(value: Any) -> bool:
    """Whether ``value`` is, or (a list or mapping) holds, an Output or an unknown."""
    return holds(value, lambda v: isinstance(v, pulumi.Output | Unknown))


def lift(value: Any, fn: Callable[[Any], T]) -> T | pulumi.Output[T]:
    """``fn(value)``, through ``Output.apply`` when ``value`` holds Outputs or unknowns.

    What an Output resolves to comes off the wire too: :func:`from_wire` turns
    its integral floats back to ints before ``fn`` sees it.
    """
    if holds_output(value):
        return pulumi.Output.from_input(value).apply(lambda resolved: fn(from_wire(resolved)))
    return fn(value)


def transform_props(
    props: Mapping[str, Any],
    workload: Workload,
    name: str,
    args: SandboxEgressArgs,
    ca: CaBinding | None = None,
) -> JSON:
    """The transformed properties of one workload resource (wire form, Outputs lifted).

    ``ca`` (Outputs in the component) binds the pods to the session's CA:
    the sidecar's :data:`~condukt_egress.manifests.CA_FINGERPRINT_ENV` and
    the name of the Secret the volumes mount, so a new CA or policy changes
    the pod template. Only these values wait for the CA: everything else is
    checked and shown at preview as before.
    """
    wire: JSON = from_wire(dict(props))
    out = dict(wire)
    if workload.variant == "List":
        item_workload = Workload(workload.api, workload.kind, "")

        def items(values: Any) -> list[JSON]:
            return [
                _with_ca(item, item_workload, ca)
                for item in _refusing(workload_items)(values, workload, name, args)
            ]

        out["items"] = _settle(lift(wire.get("items"), items))
        return out
    if workload.variant != "Patch" or "metadata" in wire:
        out["metadata"] = lift(
            wire.get("metadata"), lambda m: _refusing(workload_metadata)(m, workload, name, args)
        )
    spec = lift(wire.get("spec"), lambda s: _refusing(workload_spec)(s, workload, name, args))
    if workload.variant == "Patch" or ca is None:
        out["spec"] = spec
    elif isinstance(spec, pulumi.Output):
        out["spec"] = _settle(spec.apply(lambda s: _with_ca({"spec": s}, workload, ca)["spec"]))
    else:
        out["spec"] = _with_ca({"spec": spec}, workload, ca)["spec"]
    return out


def _props_when_resolved(
    props: Mapping[str, Any],
    workload: Workload,
    name: str,
    resolved: pulumi.Output[SandboxEgressArgs],
    ca: CaBinding | None,
) -> JSON:
    """:func:`transform_props` once the session's Input-valued args resolve, per property."""
    source = dict(props)
    out: pulumi.Output[JSON] = resolved.apply(
        lambda args: pulumi.Output.from_input(transform_props(source, workload, name, args, ca))
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


def _with_ca(obj: JSON, workload: Workload, ca: CaBinding | None) -> JSON:
    """``obj`` (an injected workload) bound to the session's CA, when ``ca`` is given."""
    if ca is None:
        return obj
    return with_ca_binding(obj, workload, ca)


def _warn_passthrough(
    transform_args: pulumi.ResourceTransformArgs, warned: set[tuple[str, str]]
) -> None:
    """Name, once, a resource that may create or change pods out of the transform's sight."""
    key = (transform_args.type_, transform_args.name)
    if key in warned:
        return
    message = passthrough_warning(
        transform_args.type_, transform_args.name, custom=transform_args.custom
    )
    if message is not None:
        warned.add(key)
        pulumi.log.warn(message)


def workload_transform(
    args: SandboxEgressArgs,
    depends_on: Callable[[], Sequence[pulumi.Resource]],
    ca: CaBinding | None = None,
    resolved: pulumi.Output[SandboxEgressArgs] | None = None,
) -> pulumi.ResourceTransform:
    """A resource transform that injects ``args``' session into every workload.

    Args:
        args: The session.
        depends_on: Returns the resources every workload must depend on (the
            session's Secret and NetworkPolicy).
        ca: The session's CA binding (Outputs in the component): the
            fingerprint in the sidecar's env and the Secret the volumes
            mount, so a new CA or policy rolls the pods.
        resolved: ``args`` once its Input-valued fields resolved, when it has
            any (:attr:`SandboxEgressArgs.deferred`): the workload is then
            checked and injected when they resolve.

    Returns:
        A callable for ``ResourceOptions(transforms=[...])`` or
        ``pulumi.runtime.register_resource_transform``; it returns None (no
        change) for anything that is not a workload, and warns once (Pulumi's
        log) about a resource that may create or change pods out of its sight
        (:func:`condukt_egress._passthrough.passthrough_warning`).
    """
    warned: set[tuple[str, str]] = set()

    def transform(
        transform_args: pulumi.ResourceTransformArgs,
    ) -> pulumi.ResourceTransformResult | None:
        workload = workload_of(transform_args.type_)
        if workload is None:
            _warn_passthrough(transform_args, warned)
            return None
        if resolved is None:
            props = transform_props(transform_args.props, workload, transform_args.name, args, ca)
        else:
            props = _props_when_resolved(
                transform_args.props, workload, transform_args.name, resolved, ca
            )
        opts = pulumi.ResourceOptions.merge(
            transform_args.opts or pulumi.ResourceOptions(),
            pulumi.ResourceOptions(depends_on=list(depends_on())),
        )
        return pulumi.ResourceTransformResult(props=props, opts=opts)

    return transform
