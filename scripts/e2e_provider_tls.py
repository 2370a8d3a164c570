"""A stand-in for the pulumi-tls resource plugin (``pulumi-resource-tls``).

The Go module proxy serves no version of github.com/pulumi/pulumi-tls, so the
e2e harness installs this under that name, built on ``cryptography``. It
serves the two resources the project uses, ``tls:index/privateKey:PrivateKey``
and ``tls:index/selfSignedCert:SelfSignedCert``, with pulumi-tls's property
names, defaults and lifecycle: every input but ``earlyRenewalHours`` replaces
the resource; a certificate inside its early-renewal window is replaced on the
next update (``readyForRenewal``); a private key's id is the SHA-1 of its
public key PEM and a certificate's is its serial number. Its contract with the
engine (Check, Diff, Create, Update, Delete, Read) is the real one; what
happens inside it is a model of pulumi-tls, not pulumi-tls.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import secrets
import sys
from concurrent import futures
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import empty_pb2, struct_pb2
from google.protobuf.json_format import MessageToDict
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

VERSION = "5.6.2"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
CURVES = {"P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1, "P521": ec.SECP521R1}
# In the order Go's pkix.Name.ToRDNSequence writes them (crypto/x509/pkix), as
# pulumi-tls (a Go provider) does: C, ST, L, street, postal code, O, OU, CN, serial.
SUBJECT = {
    "country": NameOID.COUNTRY_NAME,
    "province": NameOID.STATE_OR_PROVINCE_NAME,
    "locality": NameOID.LOCALITY_NAME,
    "streetAddresses": NameOID.STREET_ADDRESS,
    "postalCode": NameOID.POSTAL_CODE,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "commonName": NameOID.COMMON_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
}
KEY_USAGES = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "encipher_only": "encipher_only",
    "decipher_only": "decipher_only",
}
EXT_KEY_USAGES = {
    "any_extended": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
}
# Outputs each resource computes (unknown in a preview).
COMPUTED = {
    PRIVATE_KEY: {
        "privateKeyPem",
        "privateKeyPemPkcs8",
        "publicKeyPem",
        "privateKeyOpenssh",
        "publicKeyOpenssh",
        "publicKeyFingerprintMd5",
        "publicKeyFingerprintSha256",
    },
    SELF_SIGNED_CERT: {
        "certPem",
        "validityStartTime",
        "validityEndTime",
        "keyAlgorithm",
        "readyForRenewal",
    },
}
# Inputs that change in place; every other input replaces the resource.
UPDATABLE = {SELF_SIGNED_CERT: {"earlyRenewalHours"}}


def _dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return MessageToDict(s) if s is not None else {}


def _struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def _type(urn: str) -> str:
    return urn.split("::")[-2].rsplit("$", maxsplit=1)[-1]


def _rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _defaults(kind: str, news: dict[str, Any]) -> dict[str, Any]:
    out = dict(news)
    if kind == PRIVATE_KEY:
        out.setdefault("ecdsaCurve", "P224")
        out.setdefault("rsaBits", 2048)
    elif kind == SELF_SIGNED_CERT:
        out.setdefault("earlyRenewalHours", 0)
        out.setdefault("isCaCertificate", False)
        out.setdefault("setSubjectKeyId", False)
        out.setdefault("setAuthorityKeyId", False)
    return out


def _key(inputs: dict[str, Any]) -> dict[str, Any]:
    algorithm = inputs["algorithm"]
    key: Any
    if algorithm == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs["rsaBits"]))
        legacy = serialization.PrivateFormat.TraditionalOpenSSL
    elif algorithm == "ECDSA":
        key = ec.generate_private_key(CURVES[inputs["ecdsaCurve"]]())
        legacy = serialization.PrivateFormat.TraditionalOpenSSL
    elif algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.generate()
        legacy = serialization.PrivateFormat.PKCS8
    else:
        raise ValueError(f"algorithm: unsupported {algorithm!r} (RSA, ECDSA or ED25519)")
    pem = serialization.Encoding.PEM
    none = serialization.NoEncryption()
    public = key.public_key()
    public_pem = public.public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    out = {
        **inputs,
        "privateKeyPem": key.private_bytes(pem, legacy, none).decode(),
        "privateKeyPemPkcs8": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, none
        ).decode(),
        "publicKeyPem": public_pem,
        "privateKeyOpenssh": "",
        "publicKeyOpenssh": "",
        "publicKeyFingerprintMd5": "",
        "publicKeyFingerprintSha256": "",
    }
    if not (algorithm == "ECDSA" and inputs["ecdsaCurve"] == "P224"):
        openssh = public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        blob = base64.b64decode(openssh.split()[1])
        md5 = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        out |= {
            "privateKeyOpenssh": key.private_bytes(
                pem, serialization.PrivateFormat.OpenSSH, none
            ).decode(),
            "publicKeyOpenssh": openssh.decode() + "\n",
            "publicKeyFingerprintMd5": ":".join(md5[i : i + 2] for i in range(0, 32, 2)),
            "publicKeyFingerprintSha256": "SHA256:"
            + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="),
        }
    return out


def _digest(key: Any) -> hashes.HashAlgorithm | None:
    """What Go's x509.CreateCertificate signs with (signingParamsForKey): by curve for ECDSA."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size, hashes.SHA256())
    return hashes.SHA256()


def _cert(inputs: dict[str, Any]) -> dict[str, Any]:
    key: Any = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
    public = key.public_key()
    subject = inputs.get("subject") or {}
    names = []
    for field, oid in SUBJECT.items():
        values = subject.get(field)
        for value in values if isinstance(values, list) else [values] if values else []:
            names.append(x509.NameAttribute(oid, value))
    name = x509.Name(names)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    end = now + datetime.timedelta(hours=int(inputs["validityPeriodHours"]))
    serial = secrets.randbits(128)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(end)
        .add_extension(
            x509.BasicConstraints(ca=bool(inputs["isCaCertificate"]), path_length=None), True
        )
    )
    uses = inputs.get("allowedUses") or []
    flags = dict.fromkeys(KEY_USAGES.values(), False)
    for use in uses:
        if use in KEY_USAGES:
            flags[KEY_USAGES[use]] = True
    if any(flags.values()):
        builder = builder.add_extension(x509.KeyUsage(**flags), True)
    ext = [EXT_KEY_USAGES[u] for u in uses if u in EXT_KEY_USAGES]
    if ext:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ext), False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in inputs.get("dnsNames") or []]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    if inputs["setSubjectKeyId"]:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
    cert = builder.sign(key, _digest(key))
    kind = {rsa.RSAPrivateKey: "RSA", ec.EllipticCurvePrivateKey: "ECDSA"}
    key_algorithm = next((v for k, v in kind.items() if isinstance(key, k)), "ED25519")
    return {
        **inputs,
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "validityStartTime": _rfc3339(now),
        "validityEndTime": _rfc3339(end),
        "keyAlgorithm": key_algorithm,
        "readyForRenewal": False,
        "_serial": str(serial),
    }


def _ready_for_renewal(outputs: dict[str, Any]) -> bool:
    end = outputs.get("validityEndTime")
    if not end:
        return False
    end_time = datetime.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    early = datetime.timedelta(hours=int(outputs.get("earlyRenewalHours") or 0))
    return datetime.datetime.now(datetime.UTC) >= end_time - early


class TlsProvider(provider_pb2_grpc.ResourceProviderServicer):
    """The ResourceProvider calls the engine makes for the two tls resources."""

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=VERSION)

    def Handshake(self, request: Any, context: Any) -> Any:
        return provider_pb2.ProviderHandshakeResponse(accept_secrets=False, accept_resources=True)

    def GetSchema(self, request: Any, context: Any) -> Any:
        return provider_pb2.GetSchemaResponse(
            schema=json.dumps({"name": "tls", "version": VERSION})
        )

    def CheckConfig(self, request: Any, context: Any) -> Any:
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request: Any, context: Any) -> Any:
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    def Configure(self, request: Any, context: Any) -> Any:
        return provider_pb2.ConfigureResponse(acceptSecrets=False, supportsPreview=True)

    def Check(self, request: Any, context: Any) -> Any:
        kind = _type(request.urn)
        news = _defaults(kind, _dict(request.news))
        failures = []
        if kind == PRIVATE_KEY and news.get("algorithm") not in (
            "RSA",
            "ECDSA",
            "ED25519",
            UNKNOWN,
        ):
            failures.append(
                provider_pb2.CheckFailure(
                    property="algorithm", reason="expected one of RSA, ECDSA, ED25519"
                )
            )
        return provider_pb2.CheckResponse(inputs=_struct(news), failures=failures)

    def Diff(self, request: Any, context: Any) -> Any:
        kind = _type(request.urn)
        olds, news = _dict(request.olds), _dict(request.news)
        keys = sorted(k for k in set(olds) | set(news) if not k.startswith("_") and k in news)
        outputs_only = COMPUTED.get(kind, set())
        diffs = [k for k in keys if k not in outputs_only and olds.get(k) != news.get(k)]
        replaces = [k for k in diffs if k not in UPDATABLE.get(kind, set())]
        if kind == SELF_SIGNED_CERT and _ready_for_renewal({**olds, **news}):
            diffs.append("readyForRenewal")
            replaces.append("readyForRenewal")
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME
            if diffs
            else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=diffs,
            replaces=replaces,
            deleteBeforeReplace=False,
        )

    def Create(self, request: Any, context: Any) -> Any:
        kind = _type(request.urn)
        inputs = _dict(request.properties)
        if request.preview:
            # What a preview shows of a new key or certificate: unknown outputs.
            computed = COMPUTED[kind] - set(inputs)
            return provider_pb2.CreateResponse(
                properties=_struct({**inputs, **dict.fromkeys(computed, UNKNOWN)})
            )
        try:
            if kind == PRIVATE_KEY:
                out = _key(inputs)
                rid = hashlib.sha1(out["publicKeyPem"].encode(), usedforsecurity=False).hexdigest()
            elif kind == SELF_SIGNED_CERT:
                out = _cert(inputs)
                rid = out.pop("_serial")
            else:
                context.abort(grpc.StatusCode.UNIMPLEMENTED, f"unknown resource type {kind}")
        except (ValueError, KeyError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return provider_pb2.CreateResponse(id=rid, properties=_struct(out))

    def Read(self, request: Any, context: Any) -> Any:
        return provider_pb2.ReadResponse(
            id=request.id, properties=request.properties, inputs=request.inputs
        )

    def Update(self, request: Any, context: Any) -> Any:
        olds, news = _dict(request.olds), _dict(request.news)
        return provider_pb2.UpdateResponse(properties=_struct({**olds, **news}))

    def Delete(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    def Cancel(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()


def main() -> None:
    """Serve on a free loopback port and print it, as the engine expects of a plugin."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)],
    )
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(TlsProvider(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # The engine ends its plugins with SIGINT: stop quietly, as real plugins do.
    with contextlib.suppress(KeyboardInterrupt):
        server.wait_for_termination()
    server.stop(0)


if __name__ == "__main__":
    del sys.argv[1:]
    main()
