"""A mock monitor that runs resource transforms the way the Pulumi engine does.

Under ``pulumi.runtime.set_mocks`` the SDK registers transforms with its
callback server but the mock monitor never calls them. :class:`EngineMonitor`
does what the engine does on ``RegisterResource``: for the resource's own
transforms, then those inherited from its parents, then the stack transforms
registered so far, it sends a ``TransformRequest`` over ``CallbacksStub.Invoke``
to the SDK's callback server and replaces the properties and options with the
``TransformResponse``. Like the engine it presents every secret and unknown
value as an output value (so the transform sees ``pulumi.Output``s), and
takes the returned ``depends_on`` as the resource's dependencies.
"""

from __future__ import annotations

from typing import Any

import grpc  # type: ignore[import-untyped]
import pulumi
from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime import rpc
from pulumi.runtime.proto import callback_pb2, callback_pb2_grpc, resource_pb2

from tests.pulumi_harness import Recorder, RecordingMonitor

# The wire markers the engine uses too.
_SIG = rpc._special_sig_key
_SECRET = rpc._special_secret_sig
_OUTPUT = rpc._special_output_value_sig


def _as_output_values(value: Any) -> Any:
    """What the engine sends a transform: secrets and unknowns as output values."""
    if isinstance(value, dict):
        if value.get(_SIG) == _SECRET:
            inner = _as_output_values(value["value"])
            if isinstance(inner, dict) and inner.get(_SIG) == _OUTPUT:
                return {**inner, "secret": True}
            return {_SIG: _OUTPUT, "value": inner, "secret": True}
        return {k: _as_output_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_output_values(v) for v in value]
    if value == rpc.UNKNOWN:
        return {_SIG: _OUTPUT}
    return value


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(value, struct)
    return struct


class EngineMonitor(RecordingMonitor):
    """A recording mock monitor that invokes registered transforms like the engine.

    Attributes:
        invoked: ``(resource name, callback token)`` of every transform call, in order.
        wire: The properties each resource was registered with, after its
            transforms, in wire form (unknowns as the engine's sentinel), by name.
    """

    def __init__(self, mocks: pulumi.runtime.Mocks, recorder: Recorder) -> None:
        super().__init__(mocks, recorder)
        self.stack_callbacks: list[callback_pb2.Callback] = []
        self.own_callbacks: dict[str, list[callback_pb2.Callback]] = {}
        self.invoked: list[tuple[str, str]] = []
        self.wire: dict[str, dict[str, Any]] = {}

    def RegisterStackTransform(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self.stack_callbacks.append(request)
        return super().RegisterStackTransform(request)  # type: ignore[no-untyped-call]

    def _chain(self, request: Any) -> list[callback_pb2.Callback]:
        chain = list(request.transforms)
        parent = request.parent
        while parent:
            chain += self.own_callbacks.get(parent, [])
            parent = self._parents.get(parent, "")
        return chain + self.stack_callbacks

    @property
    def _parents(self) -> dict[str, str]:
        return {r.urn: r.parent for r in self.recorder.registrations}

    def _invoke(self, callback: Any, request: Any) -> Any:
        properties = json_format.MessageToDict(request.object)
        options = resource_pb2.TransformResourceOptions(
            depends_on=list(request.dependencies),
            additional_secret_outputs=list(request.additionalSecretOutputs),
            ignore_changes=list(request.ignoreChanges),
        )
        if request.provider:
            options.provider = request.provider
        transform_request = resource_pb2.TransformRequest(
            type=request.type,
            name=request.name,
            custom=request.custom,
            parent=request.parent,
            properties=_struct(_as_output_values(properties)),
            options=options,
        )
        with grpc.insecure_channel(callback.target) as channel:
            reply = callback_pb2_grpc.CallbacksStub(channel).Invoke(
                callback_pb2.CallbackInvokeRequest(
                    token=callback.token, request=transform_request.SerializeToString()
                )
            )
        self.invoked.append((request.name, callback.token))
        response = resource_pb2.TransformResponse.FromString(reply.response)
        request.object.CopyFrom(response.properties)
        if response.HasField("options"):
            del request.dependencies[:]
            request.dependencies.extend(sorted(set(response.options.depends_on)))
        return request

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        if request.type != "pulumi:pulumi:Stack":
            own = list(request.transforms)
            for callback in self._chain(request):
                request = self._invoke(callback, request)
            self.wire[request.name] = json_format.MessageToDict(request.object)
            response = super().RegisterResource(request)
            self.own_callbacks[response.urn] = own
            return response
        return super().RegisterResource(request)
