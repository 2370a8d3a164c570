"""The per-session CA profile, shared by pulumi-tls and the offline renderer.

Both ways of minting the session CA (pulumi-tls in the component, the
``cryptography`` package in ``render``) read their profile from here, so a
rendered CA and a deployed one differ only in key material.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from condukt_egress.args import CaKeyAlgorithm

__all__ = [
    "CA_ALLOWED_USES",
    "CA_ORGANIZATION",
    "KeySpec",
    "key_spec",
]

CA_ORGANIZATION: Final = "condukt-egress"
"""Subject O of every session CA."""

CA_ALLOWED_USES: Final = ("cert_signing", "crl_signing", "digital_signature")
"""pulumi-tls names of the CA's key usages (keyCertSign, cRLSign, digitalSignature)."""


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


def key_spec(algorithm: CaKeyAlgorithm) -> KeySpec:
    """Return the pulumi-tls key parameters of a :data:`CaKeyAlgorithm`."""
    return _KEY_SPECS[algorithm]
