"""The per-session CA profile, shared by pulumi-tls and the offline renderer.

Both ways of minting the session CA (pulumi-tls in the component, the
``cryptography`` package in ``render``) read their profile from here, so a
rendered CA and a deployed one differ only in key material and in one thing
pulumi-tls cannot do: :func:`generate_ca` back-dates ``NotBefore`` by
:data:`CA_CLOCK_SKEW`, so a node whose clock runs a little behind the machine
that rendered the session still accepts the CA.

Example:
    >>> from condukt_egress import SandboxEgressArgs
    >>> ca = generate_ca(SandboxEgressArgs(session_id="42"))
    >>> ca.key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    True
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from condukt_egress.args import CaKeyAlgorithm, SandboxEgressArgs

__all__ = [
    "CA_ALLOWED_USES",
    "CA_CLOCK_SKEW",
    "CA_ORGANIZATION",
    "CaMaterial",
    "KeySpec",
    "generate_ca",
    "key_spec",
    "key_usage",
    "signature_digest",
    "subject_name",
]

CA_ORGANIZATION: Final = "condukt-egress"
"""Subject O of every session CA."""

CA_ALLOWED_USES: Final = ("cert_signing", "crl_signing", "digital_signature")
"""pulumi-tls names of the CA's key usages (keyCertSign, cRLSign, digitalSignature)."""

CA_CLOCK_SKEW: Final = datetime.timedelta(minutes=5)
"""How far :func:`generate_ca` back-dates ``NotBefore`` (Kerberos' usual skew
tolerance); ``NotAfter`` stays ``ca_validity_hours`` from now, as in pulumi-tls."""

_KEY_USAGE_FLAGS: Final = {
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "digital_signature": "digital_signature",
}
"""pulumi-tls use name -> ``cryptography.x509.KeyUsage`` argument."""


@dataclass(frozen=True)
class KeySpec:
    """A CA key type in pulumi-tls terms.

    Attributes:
        algorithm: ``ECDSA`` or ``RSA``.
        ecdsa_curve: ``P256`` or ``P384`` for ECDSA, else None.
        rsa_bits: Modulus size for RSA, else None.
    """

    algorithm: str
    ecdsa_curve: str | None = None
    rsa_bits: int | None = None


_KEY_SPECS: Final[dict[str, KeySpec]] = {
    # Explicit curve: the provider's own default is P-224.
    "ecdsa-p256": KeySpec("ECDSA", ecdsa_curve="P256"),
    "ecdsa-p384": KeySpec("ECDSA", ecdsa_curve="P384"),
    "rsa-2048": KeySpec("RSA", rsa_bits=2048),
    "rsa-3072": KeySpec("RSA", rsa_bits=3072),
    "rsa-4096": KeySpec("RSA", rsa_bits=4096),
}


def key_usage(allowed_uses: Iterable[str]) -> x509.KeyUsage:
    """The key usage extension pulumi-tls writes for ``allowed_uses`` (its use names).

    Shared by :func:`generate_ca` and the pulumi-tls mock of
    :mod:`condukt_egress.testing`; uses other than those of
    :data:`CA_ALLOWED_USES` (``server_auth``, say) are ignored.
    """
    uses = set(allowed_uses)
    return x509.KeyUsage(
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
        **{flag: use in uses for use, flag in _KEY_USAGE_FLAGS.items()},
    )


def key_spec(algorithm: CaKeyAlgorithm) -> KeySpec:
    """Return the pulumi-tls key parameters of a :data:`CaKeyAlgorithm`."""
    return _KEY_SPECS[algorithm]


@dataclass(frozen=True)
class CaMaterial:
    """A session CA as the Secret carries it.

    Attributes:
        cert_pem: The self-signed CA certificate, PEM.
        key_pem: Its private key, PKCS#8 PEM (the only form the sidecar loads).
    """

    cert_pem: str
    key_pem: str


_CURVES: Final = {"P256": ec.SECP256R1, "P384": ec.SECP384R1}


def _private_key(spec: KeySpec) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if spec.algorithm == "ECDSA":
        return ec.generate_private_key(_CURVES[str(spec.ecdsa_curve)]())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(spec.rsa_bits or 0))


def signature_digest(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The digest Go's ``x509.CreateCertificate`` (so pulumi-tls) signs with for ``key``.

    SHA-384 for P-384 and SHA-512 for P-521 (Go's ``signingParamsForKey``),
    else SHA-256. Shared by :func:`generate_ca` and the pulumi-tls mock of
    :mod:`condukt_egress.testing`.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size == 384:
            return hashes.SHA384()
        if key.curve.key_size == 521:
            return hashes.SHA512()
    return hashes.SHA256()


def subject_name(common_name: str, organization: str) -> x509.Name:
    """A certificate subject as pulumi-tls writes it: Go's ``pkix.Name`` order, O before CN."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def generate_ca(args: SandboxEgressArgs, *, now: datetime.datetime | None = None) -> CaMaterial:
    """Mint a session CA with ``cryptography``, in the pulumi-tls profile.

    The profile: key from :func:`key_spec`; subject O :data:`CA_ORGANIZATION`
    and CN ``args.names.ca_common_name``; basic constraints CA:TRUE (critical,
    no path length); key usage :data:`CA_ALLOWED_USES` (critical); a subject
    key identifier; a random serial; valid for ``args.ca_validity_hours``
    from ``now``, with ``NotBefore`` back-dated by :data:`CA_CLOCK_SKEW`.

    Args:
        args: The session; its CA options are already validated.
        now: The issuing time (UTC); the current time by default.

    Returns:
        The certificate and its PKCS#8 key, both PEM.
    """
    issued = now or datetime.datetime.now(datetime.UTC)
    spec = key_spec(args.ca_key_algorithm)
    key = _private_key(spec)
    subject = subject_name(args.names.ca_common_name, CA_ORGANIZATION)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued - CA_CLOCK_SKEW)
        .not_valid_after(issued + datetime.timedelta(hours=args.ca_validity_hours))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(CA_ALLOWED_USES), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, signature_digest(key))
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CaMaterial(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        key_pem=key_pem.decode("ascii"),
    )
