"""Unit-test a Pulumi program that uses condukt-egress, without an engine or a cluster.

:func:`run` runs a program function under the SDK's mocks, made to behave
like the engine where it matters here: resource transforms are applied (the
SDK's mock monitor registers them but never calls them, so a workload
declared with :meth:`SandboxEgress.workload_options` would come back
uninjected), and pulumi-tls resources get real key material (the session's CA
and Secret are real). It returns what the program registered, each resource
with its ``type``, ``name`` and ``inputs`` in wire form (Kubernetes field
names, as in YAML) after the transforms::

    from condukt_egress.testing import run

    def program() -> None:
        egress = SandboxEgress("s", SandboxEgressArgs(session_id="42", namespace="agents"))
        k8s.apps.v1.Deployment("agent", spec=..., opts=egress.workload_options())

    resources = run(program)
    deployment = resources.one("kubernetes:apps/v1:Deployment")
    containers = deployment.inputs["spec"]["template"]["spec"]["containers"]

The machinery (:class:`EngineMocks`, :class:`RecordingMonitor`,
:class:`EngineMonitor`, :func:`record`) is this project's own test harness,
public so a program's tests can use what ours do. Pulumi itself must be
importable (it is a dependency); nothing here starts a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped]
import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.proto import callback_pb2, callback_pb2_grpc, resource_pb2

from condukt_egress.ca import key_usage, signature_digest, subject_name

__all__ = [
    "EngineMocks",
    "EngineMonitor",
    "Recorder",
    "RecordingMonitor",
    "Resource",
    "Resources",
    "TransformError",
    "record",
    "run",
    "unwrap",
]

SECRET_SIG = rpc._special_sig_key
SECRET_VALUE_SIG = rpc._special_secret_sig


@dataclass
class Resource:
    """One registered resource, as the engine received it (after transforms).

    Attributes:
        type: The type token, e.g. ``kubernetes:apps/v1:Deployment``.
        name: The resource name.
        urn: Its URN.
        parent: The parent's URN (empty for the stack).
        dependencies: URNs it depends on.
        inputs: Its inputs in wire form (Kubernetes field names, as in YAML),
            secrets unwrapped.
        secret_inputs: The top-level inputs that are secret.
        additional_secret_outputs: Outputs it asks to keep secret.
    """

    type: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]
    inputs: dict[str, Any]
    secret_inputs: set[str]
    additional_secret_outputs: list[str]


@dataclass
class Recorder:
    """Everything a program registered, in order."""

    registrations: list[Resource] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Registered outputs of components, by URN."""
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    """What the program exported with ``pulumi.export``, resolved."""

    def of_type(self, typ: str) -> list[Resource]:
        """The resources of type token ``typ``, in registration order."""
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str) -> Resource:
        """The one resource of type ``typ``; a LookupError when not exactly one."""
        found = self.of_type(typ)
        if len(found) != 1:
            raise LookupError(f"expected one {typ}, got {[r.name for r in found]}")
        return found[0]


def unwrap(value: Any) -> Any:
    """Strip the wire marker of secret values, recursively."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE_SIG:
            return unwrap(value["value"])
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def _curve(name: str | None) -> ec.EllipticCurve:
    return {"P256": ec.SECP256R1(), "P384": ec.SECP384R1(), "P224": ec.SECP224R1()}[name or "P224"]


class EngineMocks(pulumi.runtime.Mocks):
    """Mocks that answer like pulumi-tls and the Kubernetes provider.

    pulumi-tls resources get real key material minted with ``cryptography``
    (a PKCS#8 key, a self-signed CA certificate of the requested profile), so
    code that reads a CA or a Secret works as against the engine; Kubernetes
    objects get a name when they declare none, as the provider auto-names.
    """

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        """The new resource's id and outputs: its inputs, plus what the provider computes."""
        inputs = {k: unwrap(v) for k, v in args.inputs.items()}
        if args.typ == "tls:index/privateKey:PrivateKey":
            key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
            if inputs["algorithm"] == "ECDSA":
                key = ec.generate_private_key(_curve(inputs.get("ecdsaCurve")))
                legacy = serialization.PrivateFormat.TraditionalOpenSSL
            else:
                key = rsa.generate_private_key(65537, int(inputs.get("rsaBits", 2048)))
                legacy = serialization.PrivateFormat.TraditionalOpenSSL
            enc = serialization.NoEncryption()
            inputs["privateKeyPem"] = key.private_bytes(
                serialization.Encoding.PEM, legacy, enc
            ).decode()
            inputs["privateKeyPemPkcs8"] = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
            ).decode()
            return f"{args.name}-id", inputs
        if args.typ == "tls:index/selfSignedCert:SelfSignedCert":
            inputs["certPem"] = _self_signed(inputs)
            return f"{args.name}-id", inputs
        if args.typ.startswith("kubernetes:"):
            metadata = dict(inputs.get("metadata") or {})
            metadata.setdefault("name", f"{args.name}-auto")
            inputs["metadata"] = metadata
            return f"{metadata.get('namespace', 'default')}/{metadata['name']}", inputs
        return f"{args.name}-id", inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        """No function returns anything (none of ours calls one)."""
        return {}, []


def _self_signed(inputs: Mapping[str, Any]) -> str:
    key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError(f"pulumi-tls keys are ECDSA or RSA, got {type(key).__name__}")
    subject = inputs.get("subject") or {}
    name = subject_name(subject["commonName"], subject["organization"])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=int(inputs["validityPeriodHours"])))
        .add_extension(
            x509.BasicConstraints(ca=bool(inputs.get("isCaCertificate")), path_length=None),
            critical=True,
        )
        .add_extension(key_usage(inputs.get("allowedUses") or ()), critical=True)
    )
    if inputs.get("setSubjectKeyId"):
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
    cert = builder.sign(key, signature_digest(key))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _secret_keys(struct: Any) -> set[str]:
    out: set[str] = set()
    for key, value in struct.fields.items():
        if value.HasField("struct_value"):
            sig = value.struct_value.fields.get(SECRET_SIG)
            if sig is not None and sig.string_value == SECRET_VALUE_SIG:
                out.add(key)
    return out


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A mock monitor that also records each registration request."""

    def __init__(self, mocks: pulumi.runtime.Mocks, recorder: Recorder) -> None:
        super().__init__(mocks)
        self.recorder = recorder
        self.loops: set[asyncio.AbstractEventLoop] = set()
        """Event loops the SDK created on the executor threads that registered resources."""

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        """Register as the SDK's mock monitor does, and record the request."""
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        with contextlib.suppress(RuntimeError):  # no loop was needed on this thread
            self.loops.add(asyncio.get_event_loop_policy().get_event_loop())
        if request.type != "pulumi:pulumi:Stack":
            self.recorder.registrations.append(
                Resource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    inputs=unwrap(rpc.deserialize_properties(request.object)),
                    secret_inputs=_secret_keys(request.object),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                )
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        """Record a component's registered outputs."""
        self.recorder.outputs[request.urn] = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


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


class TransformError(Exception):
    """A resource transform raised while :func:`run` registered a resource.

    The engine prints the transform's message and fails the update; here it
    is raised instead. The SDK's callback server passes the message as text
    only, so the original type (a ``ConfigError`` from the workload
    transform, say) is not kept; the message is the transform's own, e.g.
    ``Pod 'ws' spec.hostNetwork: is true; ...``.

    Attributes:
        resource: The name of the resource being registered.
        message: The transform's error message.
    """

    def __init__(self, resource: str, message: str) -> None:
        super().__init__(message)
        self.resource = resource
        self.message = message


def _transform_failure(error: Any, resource: str) -> TransformError:
    """The transform's message out of the callback server's gRPC error text."""
    details = str(error.details()) if hasattr(error, "details") else str(error)
    _, sep, rest = details.partition(" error: ")
    message = (rest if sep else details).split(":\n  File ", 1)[0].strip()
    return TransformError(resource, message)


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
        """Keep a stack transform, to apply to every resource registered after it."""
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
            try:
                reply = callback_pb2_grpc.CallbacksStub(channel).Invoke(
                    callback_pb2.CallbackInvokeRequest(
                        token=callback.token, request=transform_request.SerializeToString()
                    )
                )
            except grpc.RpcError as exc:  # the transform raised
                raise _transform_failure(exc, request.name) from None
        self.invoked.append((request.name, callback.token))
        response = resource_pb2.TransformResponse.FromString(reply.response)
        request.object.CopyFrom(response.properties)
        if response.HasField("options"):
            del request.dependencies[:]
            request.dependencies.extend(sorted(set(response.options.depends_on)))
        return request

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        """Run the resource's transforms, its parents' and the stack's, then register it."""
        if request.type != "pulumi:pulumi:Stack":
            own = list(request.transforms)
            for callback in self._chain(request):
                request = self._invoke(callback, request)
            self.wire[request.name] = json_format.MessageToDict(request.object)
            response = super().RegisterResource(request)
            self.own_callbacks[response.urn] = own
            return response
        return super().RegisterResource(request)


def record(
    program: Callable[[], Any],
    *,
    config: Mapping[str, Any] | None = None,
    project: str = "condukt-egress",
    monitor_factory: Callable[[pulumi.runtime.Mocks, Recorder], Any] | None = None,
    recorder: Recorder | None = None,
    preview: bool = False,
) -> Recorder:
    """:func:`run` with every knob: which monitor, which recorder, which project.

    ``monitor_factory`` defaults to :class:`RecordingMonitor` (transforms are
    not applied, as under plain ``set_mocks``); :func:`run` passes
    :class:`EngineMonitor`.
    """
    recorder = recorder if recorder is not None else Recorder()
    mocks = EngineMocks()
    factory = monitor_factory or RecordingMonitor
    monitor = factory(mocks, recorder)
    pulumi_settings.ROOT.set(None)  # a new stack resource: no exports of an earlier run
    asyncio.set_event_loop(asyncio.new_event_loop())  # which it is created on (closed below)
    pulumi.runtime.set_mocks(mocks, project=project, stack="test", preview=preview, monitor=monitor)
    values = {
        (k if ":" in k else f"{project}:{k}"): (v if isinstance(v, str) else json.dumps(v))
        for k, v in (config or {}).items()
    }
    pulumi.runtime.set_all_config(values)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def _run() -> Any:
        result = program()
        root = pulumi.runtime.get_root_resource()
        exports = pulumi.Output.from_input(dict(getattr(root, "outputs", {})))
        return pulumi.Output.all(result, exports).apply(
            lambda values: recorder.stack_outputs.update(unwrap(values[1]))
        )

    try:
        _run()
    finally:
        pulumi.runtime.set_all_config({})
        _close_sdk_loops(getattr(monitor, "loops", set()))
    return recorder


def _close_sdk_loops(worker_loops: set[asyncio.AbstractEventLoop]) -> None:
    """Close the event loops the SDK opened for this run and never closes.

    Left open, they are collected at a random later moment and their
    ResourceWarning (an error under our warning filter) fails whichever test
    happens to be running then.
    """
    try:
        main: asyncio.AbstractEventLoop | None = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        main = None
    for loop in [*worker_loops, *([main] if main is not None else [])]:
        if not loop.is_running() and not loop.is_closed():
            loop.close()
    worker_loops.clear()
    if main is not None:
        asyncio.set_event_loop(None)


class Resources(list[Resource]):
    """The resources a program registered, in order, and what it exported.

    Attributes:
        stack_outputs: What the program exported with ``pulumi.export``, resolved.
    """

    def __init__(self, resources: list[Resource], stack_outputs: dict[str, Any]) -> None:
        super().__init__(resources)
        self.stack_outputs = stack_outputs

    def of_type(self, typ: str) -> list[Resource]:
        """The resources of type token ``typ``, in registration order."""
        return [r for r in self if r.type == typ]

    def one(self, typ: str) -> Resource:
        """The one resource of type ``typ``.

        Raises:
            LookupError: There is none, or more than one, naming those found.
        """
        found = self.of_type(typ)
        if len(found) != 1:
            raise LookupError(f"expected one {typ}, got {[r.name for r in found]}")
        return found[0]

    def named(self, name: str) -> Resource:
        """The resource called ``name``.

        Raises:
            LookupError: No resource has that name.
        """
        for resource in self:
            if resource.name == name:
                return resource
        raise LookupError(f"no resource named {name!r}; registered: {[r.name for r in self]}")


def run(
    program: Callable[[], Any],
    *,
    config: Mapping[str, Any] | None = None,
    preview: bool = False,
    project: str = "test",
) -> Resources:
    """Run ``program`` as the engine would, under mocks, and return what it registered.

    Args:
        program: The Pulumi program: a function declaring resources.
        config: Stack config; a key without a ``namespace:`` gets the
            project's, a value that is not text is passed as JSON (an object
            read with ``Config.get_object``).
        preview: Run as ``pulumi preview`` does (``pulumi.runtime.is_dry_run()``).
        project: The project name (``pulumi.get_project()``, config's namespace).

    Returns:
        Every resource registered, after resource transforms ran as the
        engine runs them, with its inputs in wire form; and the stack outputs.

    Raises:
        TransformError: A resource transform raised (e.g. the workload
            transform refusing a bypass); its message is the transform's.
        Exception: Whatever the program itself raised (e.g. a ``ConfigError``).
    """
    recorder = record(
        program, config=config, project=project, monitor_factory=EngineMonitor, preview=preview
    )
    return Resources(recorder.registrations, recorder.stack_outputs)
