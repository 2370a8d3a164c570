"""The cryptography-minted session CA has the pulumi-tls profile, for every key type."""

import datetime
from typing import Any, get_args

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from condukt_egress import manifests
from condukt_egress.args import CaKeyAlgorithm, SandboxEgressArgs
from condukt_egress.ca import (
    CA_ALLOWED_USES,
    CA_CLOCK_SKEW,
    CA_ORGANIZATION,
    CaMaterial,
    generate_ca,
    key_spec,
)

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
ALGORITHMS: tuple[CaKeyAlgorithm, ...] = get_args(CaKeyAlgorithm)
# What each pulumi-tls use name means in the certificate.
USE_FLAGS = {
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "digital_signature": "digital_signature",
}


def mint(algorithm: CaKeyAlgorithm = "ecdsa-p256", **options: Any) -> CaMaterial:
    args = SandboxEgressArgs(session_id="Agent Run 42", ca_key_algorithm=algorithm, **options)
    return generate_ca(args, now=NOW)


@pytest.fixture(scope="module", params=ALGORITHMS)
def minted(request: pytest.FixtureRequest) -> tuple[CaKeyAlgorithm, CaMaterial]:
    algorithm: CaKeyAlgorithm = request.param
    return algorithm, mint(algorithm)


def test_key_is_pkcs8_of_the_requested_type(minted: tuple[CaKeyAlgorithm, CaMaterial]) -> None:
    algorithm, ca = minted
    assert ca.key_pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(ca.key_pem.encode(), None)
    spec = key_spec(algorithm)
    if spec.algorithm == "ECDSA":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == {"P256": "secp256r1", "P384": "secp384r1"}[str(spec.ecdsa_curve)]
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.key_size == spec.rsa_bits
    cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    assert cert.public_key() == key.public_key()
    # The Secret builder accepts it (it refuses anything but PKCS#8).
    data = manifests.secret_data(SandboxEgressArgs(session_id="1"), ca.cert_pem, ca.key_pem)
    assert data["ca-key.pem"] == ca.key_pem


def test_certificate_is_a_self_signed_ca_in_the_shared_profile(
    minted: tuple[CaKeyAlgorithm, CaMaterial],
) -> None:
    algorithm, ca = minted
    cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    names = SandboxEgressArgs(session_id="Agent Run 42").names
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        names.ca_common_name
    )
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        CA_ORGANIZATION
    )
    cert.verify_directly_issued_by(cert)  # the signature checks out with its own key

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True
    assert constraints.value.path_length is None

    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    expected = {USE_FLAGS[use] for use in CA_ALLOWED_USES}
    flags = {
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    }
    assert {flag for flag in flags if getattr(usage.value, flag)} == expected

    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    with pytest.raises(x509.ExtensionNotFound):  # no EKU: it would restrict the leaves
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    digest = hashes.SHA384 if algorithm == "ecdsa-p384" else hashes.SHA256
    assert isinstance(cert.signature_hash_algorithm, digest)


def test_validity_is_backdated_for_clock_skew_and_ends_after_the_option() -> None:
    cert = x509.load_pem_x509_certificate(mint(ca_validity_hours=48).cert_pem.encode())
    assert cert.not_valid_before_utc == NOW - CA_CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(hours=48)
    assert datetime.timedelta(0) < CA_CLOCK_SKEW <= datetime.timedelta(hours=1)


def test_every_ca_is_new() -> None:
    first, second = mint(), mint()
    assert first.key_pem != second.key_pem
    serials = {
        x509.load_pem_x509_certificate(ca.cert_pem.encode()).serial_number for ca in (first, second)
    }
    assert len(serials) == 2
