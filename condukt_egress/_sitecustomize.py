"""condukt-egress client compatibility profile for Python, run as ``sitecustomize``.

Delivered in the workspace trust volume (``/etc/condukt/python``) and put
first on ``PYTHONPATH``. It does one thing: it clears ``VERIFY_X509_STRICT``
on SSL contexts that trust the session CA, and on no others.

Why: the sidecar mints the leaf certificate of every TLS connection the
workspace makes on port 443 (rcgen 0.13, upstream src/proxy/tls.rs:134-149),
with no Authority Key Identifier; Python 3.13's ``create_default_context()``
sets ``VERIFY_X509_STRICT``, which rejects such leaves ("Missing Authority Key
Identifier"). A context that trusts the session CA only ever sees those
leaves on port 443, and the sidecar itself verifies the real upstream
certificate against the public roots. Every other check (chain, name,
validity, key usage) stays on.

Then it runs the ``sitecustomize`` that was next on ``sys.path`` (the image's
own), if any. Standard library only (nothing ``site`` has not loaded but
``ssl`` and ``weakref``: every Python process of the workspace runs this),
Python 3.8+; does nothing without the CA.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import ssl
import sys
import weakref

_HERE = os.path.dirname(os.path.abspath(__file__))
_CA_FILE = os.path.join(os.path.dirname(_HERE), "ca.pem")
_STRICT = getattr(ssl, "VERIFY_X509_STRICT", 0)


def _ca_body() -> str | None:
    try:
        with open(_CA_FILE, encoding="ascii") as handle:
            text = handle.read()
    except (OSError, ValueError):
        return None
    body = "".join(line.strip() for line in text.splitlines() if not line.startswith("-----"))
    return body or None


def _file_trusts_ca(path: object, body: str) -> bool:
    if not isinstance(path, (str, bytes, os.PathLike)):  # tuples: Python 3.8+
        return False
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except OSError:
        return False
    return body in "".join(text.split())


def _data_trusts_ca(data: object, body: str) -> bool:
    if isinstance(data, str):
        return body in "".join(data.split())
    if isinstance(data, (bytes, bytearray)):  # tuples: Python 3.8+
        import base64  # noqa: PLC0415

        return base64.b64decode(body) in bytes(data)
    return False


def _install(body: str) -> None:
    trusting: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()
    flags = vars(ssl.SSLContext)["verify_flags"]  # the property object
    load_verify_locations = ssl.SSLContext.load_verify_locations
    set_default_verify_paths = ssl.SSLContext.set_default_verify_paths

    def _relax(context: ssl.SSLContext) -> None:
        trusting.add(context)
        flags.fset(context, flags.fget(context) & ~_STRICT)

    def _set_flags(self: ssl.SSLContext, value: int) -> None:
        if self in trusting:
            value &= ~_STRICT
        flags.fset(self, value)

    def _load_verify_locations(
        self: ssl.SSLContext, cafile: object = None, capath: object = None, cadata: object = None
    ) -> None:
        load_verify_locations(self, cafile, capath, cadata)  # type: ignore[arg-type]
        if _file_trusts_ca(cafile, body) or _data_trusts_ca(cadata, body):
            _relax(self)

    def _set_default_verify_paths(self: ssl.SSLContext) -> None:
        set_default_verify_paths(self)
        if _file_trusts_ca(ssl.get_default_verify_paths().cafile, body):
            _relax(self)

    ssl.SSLContext.verify_flags = property(flags.fget, _set_flags)  # type: ignore[assignment]
    ssl.SSLContext.load_verify_locations = _load_verify_locations  # type: ignore[method-assign]
    ssl.SSLContext.set_default_verify_paths = _set_default_verify_paths  # type: ignore[method-assign]


def _chain() -> None:
    """Run the next ``sitecustomize`` on ``sys.path``, as if this one were absent."""
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["_condukt_chained_sitecustomize"] = module
    spec.loader.exec_module(module)


_BODY = _ca_body()
if _BODY is not None and _STRICT:
    _install(_BODY)
_chain()
