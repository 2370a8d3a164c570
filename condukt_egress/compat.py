"""The workspace's client compatibility profile: pure data and env merging.

Two faults of the sidecar (not ours to fix) stop today's TLS clients:

1. It reads the ClientHello from one 1,024-byte peek (upstream
   src/proxy/conn.rs:58-68). Post-quantum hybrid key shares (X25519MLKEM768,
   the default of OpenSSL >= 3.5, Go >= 1.24, recent Node and Java) make the
   hello 1.2-1.8 KB: no SNI is seen, the host becomes the IP, and the policy
   denies it. The profile limits key-share groups to classic curves: an
   OpenSSL config named by ``OPENSSL_CONF`` (sections ``openssl_conf`` and
   Node's ``nodejs_conf``), ``GODEBUG=tlsmlkem=0,tlskyber=0`` and the JVM's
   ``jdk.tls.namedGroups``.
2. Its leaves carry no Authority Key Identifier (rcgen 0.13,
   src/proxy/tls.rs:134-149), which Python 3.13's strict verification
   (``VERIFY_X509_STRICT``, set by ``create_default_context()``) rejects:
   "Missing Authority Key Identifier". A ``sitecustomize``
   (``_sitecustomize.py``, first on ``PYTHONPATH``) clears that one flag on
   contexts that trust the session CA, and on no others: such a context only
   ever sees the sidecar's leaves (port 443), and the sidecar verifies the
   real upstream certificate against the public roots. Every other check
   (chain, name, validity, key usage) stays on. It then runs the image's own
   ``sitecustomize``, if any; it needs the standard library only (Python
   3.8+) and loads nothing but ``ssl`` and ``weakref`` into the processes it
   runs in.

The JVM, third, reads neither the PEM bundle mounted over the system trust
stores nor the CA variables: only its own ``cacerts`` (Debian
``/etc/ssl/certs/java/cacerts``, Temurin ``$JAVA_HOME/lib/security/cacerts``),
so without help every Java HTTPS request through the sidecar fails
(``tls_client_rejected_ca``). The profile adds a password-less PKCS#12 trust
store holding the bundle's certificates (:func:`java_truststore`) and names
it in ``JAVA_TOOL_OPTIONS`` (``javax.net.ssl.trustStore``); the JVM loads it
with no password (checked with Java 17: HTTP 200 through the sidecar).

Nothing here reaches rustls-based clients (uv, cargo): they have no knob.
"""

from __future__ import annotations

import hashlib
import pkgutil
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final

__all__ = [
    "CLASSIC_GROUPS",
    "JAVA_GROUPS",
    "JAVA_TRUSTSTORE_FILE",
    "OPENSSL_CONF_FILE",
    "PYTHON_DIR",
    "SESSION_CA_ALIAS",
    "SITECUSTOMIZE_FILE",
    "SYSTEM_OPENSSL_CONF",
    "compat_env",
    "java_options",
    "java_truststore",
    "openssl_config",
    "sitecustomize_source",
]

OPENSSL_CONF_FILE: Final = "openssl.cnf"
"""Secret key and file name (in the trust volume) of the OpenSSL config."""
SITECUSTOMIZE_FILE: Final = "sitecustomize.py"
"""Secret key of the Python hook; delivered as ``python/sitecustomize.py``."""
PYTHON_DIR: Final = "python"
"""Directory of the trust volume put first on ``PYTHONPATH``."""
SYSTEM_OPENSSL_CONF: Final = "/etc/ssl/openssl.cnf"
"""The image's own config on Debian, Ubuntu and Alpine; included first."""
CLASSIC_GROUPS: Final = "X25519:P-256:P-384"
"""Key-share groups without post-quantum hybrids: ClientHellos stay near 300 bytes."""
JAVA_GROUPS: Final = "x25519,secp256r1,secp384r1"
JAVA_TRUSTSTORE_FILE: Final = "truststore.p12"
"""Secret key and file name (in the trust volume) of the JVM's PKCS#12 trust store."""
SESSION_CA_ALIAS: Final = "condukt-egress-session-ca"
"""The session CA's alias in the JVM trust store (``keytool -list`` shows it)."""
GODEBUG_SETTINGS: Final = ("tlsmlkem=0", "tlskyber=0")
"""Go >= 1.24 (X25519MLKEM768) and Go 1.23 (X25519Kyber768Draft00); Go ignores unknown keys."""


def openssl_config(system_config: str = SYSTEM_OPENSSL_CONF) -> str:
    """The ``OPENSSL_CONF`` file: the image's config, then classic key-share groups.

    ``.include`` keeps every section of the image's config (CLI defaults, OID
    sections, ``config_diagnostics``); OpenSSL skips an include that does not
    exist (checked on 3.0.19 and 4.0.0). The library init section is then
    ours: the last ``openssl_conf`` wins, so the image's own init section (on
    Debian: the default provider and ``SECLEVEL=2``, both OpenSSL's defaults
    there) no longer applies.
    """
    return (
        "# condukt-egress client compatibility profile: classic key-share groups keep\n"
        "# the ClientHello under the 1,024 bytes the egress sidecar reads for SNI.\n"
        f".include {system_config}\n"
        "[ default ]\n"
        "openssl_conf = condukt_egress_init\n"
        "nodejs_conf = condukt_egress_init\n"
        "[ condukt_egress_init ]\n"
        "ssl_conf = condukt_egress_ssl\n"
        "[ condukt_egress_ssl ]\n"
        "system_default = condukt_egress_tls\n"
        "[ condukt_egress_tls ]\n"
        f"Groups = {CLASSIC_GROUPS}\n"
    )


def sitecustomize_source() -> str:
    """The Python hook's source (``condukt_egress/_sitecustomize.py``).

    Read through the package's loader with ``pkgutil`` (1.7 ms to import
    here) rather than ``importlib.resources`` (10 ms, on every ``render``).
    """
    data = pkgutil.get_data("condukt_egress", "_sitecustomize.py")
    if data is None:  # a loader that cannot read package data
        raise FileNotFoundError("condukt_egress/_sitecustomize.py is missing from the package")
    return data.decode("utf-8")


def java_truststore(ca_cert_pem: str, roots_pem: str = "") -> bytes:
    """The JVM trust store: a password-less PKCS#12 file trusting exactly these certificates.

    The session CA (alias :data:`SESSION_CA_ALIAS`), after the public roots
    of ``roots_pem`` (aliases ``public-root-<sha256 prefix>``) when given, as
    in the PEM bundle. Certificates are stored unencrypted and the optional
    MAC is dropped, so the JVM loads the file with no password and the bytes
    depend on the certificates alone: the Secret is immutable, and anything
    random (``cryptography`` salts the MAC) would replace it, and the pod, on
    every ``pulumi up``.

    Raises:
        ValueError: A PEM block is not a certificate.
    """
    from cryptography import x509  # noqa: PLC0415 - only compat Secrets need these
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        Encoding,
        NoEncryption,
        pkcs12,
    )
    from cryptography.utils import CryptographyDeprecationWarning  # noqa: PLC0415

    with warnings.catch_warnings():
        # certifi still ships a root with a negative serial number; the JVM takes it.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        roots = x509.load_pem_x509_certificates(roots_pem.encode()) if roots_pem else []
        ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    entries = [
        pkcs12.PKCS12Certificate(cert, _root_alias(cert.public_bytes(Encoding.DER)))
        for cert in roots
    ]
    entries.append(pkcs12.PKCS12Certificate(ca, SESSION_CA_ALIAS.encode()))
    return _without_mac(pkcs12.serialize_java_truststore(entries, NoEncryption()))


def _without_mac(pfx_der: bytes) -> bytes:
    """A PKCS#12 ``PFX`` without its optional ``macData``, whose salt is random.

    Only the outer SEQUENCE (RFC 7292 section 4) is parsed with asn1crypto's
    core types, and ``version`` and ``authSafe`` are copied byte for byte:
    ``asn1crypto.pkcs12.Pfx`` gives the same bytes (tested) but its schema
    takes 15-25 ms to import, on every ``render``.
    """
    from asn1crypto import core  # noqa: PLC0415

    class Pfx(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
        _fields: ClassVar = [
            ("version", core.Integer),
            ("auth_safe", core.Any),
            ("mac_data", core.Any, {"optional": True}),
        ]

    pfx = Pfx.load(pfx_der)
    pfx["mac_data"] = None
    return bytes(pfx.dump(force=True))


def _root_alias(der: bytes) -> bytes:
    return f"public-root-{hashlib.sha256(der).hexdigest()[:16]}".encode()


def java_options(trust_dir: str) -> str:
    """The ``JAVA_TOOL_OPTIONS`` settings that make the JVM use :func:`java_truststore`."""
    return (
        f"-Djavax.net.ssl.trustStore={trust_dir}/{JAVA_TRUSTSTORE_FILE} "
        "-Djavax.net.ssl.trustStoreType=PKCS12"
    )


def _java_tool_options(value: str, trust_dir: str) -> str:
    value = _merged(value, f"-Djdk.tls.namedGroups={JAVA_GROUPS}", "jdk.tls.namedGroups", " ")
    # A user's own trust store (or type) wins: both our settings stay out.
    return _merged(value, java_options(trust_dir), "javax.net.ssl.trustStore", " ")


def _merged(value: str, setting: str, marker: str, separator: str) -> str:
    if marker in value:
        return value  # the user chose a value for this setting: theirs wins
    return f"{value}{separator}{setting}" if value else setting


def _godebug(value: str) -> str:
    for setting in GODEBUG_SETTINGS:
        value = _merged(value, setting, setting.split("=")[0] + "=", ",")
    return value


def compat_env(existing: Iterable[Mapping[str, Any]], trust_dir: str) -> list[dict[str, Any]]:
    """Return ``existing`` env entries with the profile's variables merged in.

    A user's ``OPENSSL_CONF`` wins; ``GODEBUG``, ``JAVA_TOOL_OPTIONS`` and
    ``PYTHONPATH`` keep the user's value and gain ours (unless the user set
    the same setting: a ``javax.net.ssl.trustStore*`` of theirs keeps both of
    our trust store settings out). Entries taken from ``valueFrom`` are left alone.
    Idempotent.
    """
    env = [dict(e) for e in existing]
    by_name = {e.get("name"): e for e in env}
    python_dir = f"{trust_dir}/{PYTHON_DIR}"
    wanted: dict[str, Callable[[str], str]] = {
        "OPENSSL_CONF": lambda v: v or f"{trust_dir}/{OPENSSL_CONF_FILE}",
        "GODEBUG": _godebug,
        "JAVA_TOOL_OPTIONS": lambda v: _java_tool_options(v, trust_dir),
        "PYTHONPATH": lambda v: (
            v if python_dir in v.split(":") else ":".join(p for p in (python_dir, v) if p)
        ),
    }
    for name, merge in wanted.items():
        entry = by_name.get(name)
        if entry is None:
            env.append({"name": name, "value": merge("")})
        elif "valueFrom" not in entry:
            entry["value"] = merge(str(entry.get("value") or ""))
    return env
