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

Nothing here reaches rustls-based clients (uv, cargo): they have no knob.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

__all__ = [
    "CLASSIC_GROUPS",
    "JAVA_GROUPS",
    "OPENSSL_CONF_FILE",
    "PYTHON_DIR",
    "SITECUSTOMIZE_FILE",
    "SYSTEM_OPENSSL_CONF",
    "compat_env",
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
    the same setting). Entries taken from ``valueFrom`` are left alone.
    Idempotent.
    """
    env = [dict(e) for e in existing]
    by_name = {e.get("name"): e for e in env}
    python_dir = f"{trust_dir}/{PYTHON_DIR}"
    wanted: dict[str, Callable[[str], str]] = {
        "OPENSSL_CONF": lambda v: v or f"{trust_dir}/{OPENSSL_CONF_FILE}",
        "GODEBUG": _godebug,
        "JAVA_TOOL_OPTIONS": lambda v: _merged(
            v, f"-Djdk.tls.namedGroups={JAVA_GROUPS}", "jdk.tls.namedGroups", " "
        ),
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
