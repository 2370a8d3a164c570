"""Leaf certificates minted the way the sidecar mints them, for TLS tests.

Upstream ``native/condukt_egress/src/proxy/tls.rs:134-149`` (tag 1.5.1),
rcgen 0.13 defaults: CN and one DNS SAN = the SNI name; no basic constraints
(``IsCa::NoCa``); key usage digitalSignature + keyEncipherment; **no
Authority Key Identifier** (``use_authority_key_identifier_extension`` left
false); validity 1975-4096; a fresh P-256 key (``KeyPair::generate``).
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def mint_leaf(
    ca_pem: str, ca_key_pem: str, host: str, *, with_aki: bool = False
) -> tuple[str, str]:
    """A leaf for ``host`` signed by the CA, as the sidecar mints it; PEM cert and key.

    ``with_aki`` adds the Authority Key Identifier the sidecar leaves out, to
    show what strict verifiers would accept.
    """
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(1975, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(4096, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if with_aki:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    is_p384 = isinstance(ca_key, ec.EllipticCurvePrivateKey) and ca_key.curve.key_size == 384
    cert = builder.sign(ca_key, hashes.SHA384() if is_p384 else hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()
