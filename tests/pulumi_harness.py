"""Run Pulumi programs under the SDK's own mocks and record what they register.

The mocks mint real key material with ``cryptography`` for pulumi-tls
resources (so the Secret carries a real PKCS#8 key and CA certificate), and a
recording monitor keeps every registration request: type, name, parent,
dependencies and inputs, as the engine would receive them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

SECRET_SIG = rpc._special_sig_key
SECRET_VALUE_SIG = rpc._special_secret_sig


@dataclass
class Registration:
    """One RegisterResource request as the engine would see it."""

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

    registrations: list[Registration] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Registered outputs of components, by URN."""
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    """What the program exported with ``pulumi.export``, resolved."""

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str) -> Registration:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
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


class SessionMocks(pulumi.runtime.Mocks):
    """Mocks that behave like pulumi-tls and the Kubernetes provider, enough for our tests."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
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
        return {}, []


def _self_signed(inputs: Mapping[str, Any]) -> str:
    key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    subject = inputs.get("subject") or {}
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, subject["commonName"]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"]),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    uses = set(inputs.get("allowedUses") or ())
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
        .add_extension(
            x509.KeyUsage(
                digital_signature="digital_signature" in uses,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign="cert_signing" in uses,
                crl_sign="crl_signing" in uses,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if inputs.get("setSubjectKeyId"):
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
    cert = builder.sign(key, hashes.SHA256())
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
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        with contextlib.suppress(RuntimeError):  # no loop was needed on this thread
            self.loops.add(asyncio.get_event_loop_policy().get_event_loop())
        if request.type != "pulumi:pulumi:Stack":
            self.recorder.registrations.append(
                Registration(
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
        self.recorder.outputs[request.urn] = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def run(
    program: Callable[[], Any],
    *,
    config: Mapping[str, Any] | None = None,
    project: str = "condukt-egress",
    monitor_factory: Callable[[pulumi.runtime.Mocks, Recorder], Any] | None = None,
    recorder: Recorder | None = None,
    preview: bool = False,
) -> Recorder:
    """Run ``program`` under mocks (with stack ``config``) and return what it registered.

    Config keys without a namespace get the project's. ``preview=True`` runs
    it as ``pulumi preview`` does.
    """
    recorder = recorder if recorder is not None else Recorder()
    mocks = SessionMocks()
    factory = monitor_factory or RecordingMonitor
    monitor = factory(mocks, recorder)
    pulumi.runtime.set_mocks(mocks, project=project, stack="test", preview=preview, monitor=monitor)
    import json  # noqa: PLC0415

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
