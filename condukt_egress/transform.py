"""The Pulumi resource transform that puts a session's sidecar into any workload.

A :class:`SandboxEgress` hands out :func:`workload_transform` bound to its
session; Pulumi runs it on every resource it is attached to (and, through a
component or chart, on its children). For a workload type (see
:mod:`condukt_egress.workloads`, which does the pure surgery) it injects the
pod template and makes the workload depend on the session's Secret and
NetworkPolicy. Anything else passes through.

What the engine hands a transform is the SDK's deserialised wire form
(Pulumi's ``runtime/_callbacks.py`` calls ``deserialize_properties``):
camelCase keys, numbers as floats, typed ``*Args`` already turned into dicts,
and every unknown or secret value a :class:`pulumi.Output` (possibly the whole
``spec``). This module only lifts such properties into ``Output.apply``, so
the result is correct once values are known, stays secret when the input
was, and is computed at ``pulumi up`` when a value is unknown at preview.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pulumi
from pulumi.output import Unknown
from pulumi.runtime import rpc

from condukt_egress._passthrough import passthrough_warning
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.workloads import (
    Workload,
    workload_items,
    workload_metadata,
    workload_of,
    workload_spec,
)

__all__ = ["transform_props", "workload_transform"]

JSON = dict[str, Any]


def _secrets_as_outputs(value: Any) -> Any:
    """A secret the SDK left wrapped (a plain secret, not an output value) as a secret Output."""
    if rpc.is_rpc_secret(value):
        return pulumi.Output.secret(_secrets_as_outputs(rpc.unwrap_rpc_secret(value)))
    if isinstance(value, Mapping):
        return {key: _secrets_as_outputs(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_secrets_as_outputs(item) for item in value]
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
    props: Mapping[str, Any], workload: Workload, name: str, args: SandboxEgressArgs
) -> JSON:
    """The transformed properties of one workload resource (wire form, Outputs lifted)."""
    wire: JSON = _secrets_as_outputs(dict(props))
    out = dict(wire)
    if workload.variant == "List":
        out["items"] = _lift(wire.get("items"), lambda i: workload_items(i, workload, name, args))
        return out
    if workload.variant != "Patch" or "metadata" in wire:
        out["metadata"] = _lift(
            wire.get("metadata"), lambda m: workload_metadata(m, workload, name, args)
        )
    out["spec"] = _lift(wire.get("spec"), lambda s: workload_spec(s, workload, name, args))
    return out


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
    args: SandboxEgressArgs, depends_on: Callable[[], Sequence[pulumi.Resource]]
) -> pulumi.ResourceTransform:
    """A resource transform that injects ``args``' session into every workload.

    Args:
        args: The session.
        depends_on: Returns the resources every workload must depend on (the
            session's Secret and NetworkPolicy).

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
        props = transform_props(transform_args.props, workload, transform_args.name, args)
        opts = pulumi.ResourceOptions.merge(
            transform_args.opts or pulumi.ResourceOptions(),
            pulumi.ResourceOptions(depends_on=list(depends_on())),
        )
        return pulumi.ResourceTransformResult(props=props, opts=opts)

    return transform
