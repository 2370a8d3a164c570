# condukt-egress: Python's part of the client compatibility profile; the why is in
# condukt_egress/compat.py. Clears VERIFY_X509_STRICT on SSL contexts that trust
# the session CA (../ca.pem), on no others, then runs the image's sitecustomize.
# Kept short: it is stored in every session's Secret.
from __future__ import annotations

import os
import ssl
import sys
import weakref
from importlib import machinery, util

HERE = os.path.dirname(os.path.abspath(__file__))
STRICT = getattr(ssl, "VERIFY_X509_STRICT", 0)


def squeeze(text: str) -> str:
    return "".join(text.split())


def trusts_ca(cafile: object, cadata: object, ca: str) -> bool:
    if isinstance(cafile, (str, bytes, os.PathLike)):
        try:
            with open(cafile, "rb") as f:
                if ca in squeeze(f.read().decode("ascii", "replace")):
                    return True
        except OSError:
            pass
    if isinstance(cadata, str):
        return ca in squeeze(cadata)
    if isinstance(cadata, (bytes, bytearray)):
        import base64  # noqa: PLC0415  (rare: kept off every process's start-up)

        return base64.b64decode(ca) in cadata
    return False


def install(ca: str) -> None:
    trusting: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()
    flags = vars(ssl.SSLContext)["verify_flags"]
    load, default = ssl.SSLContext.load_verify_locations, ssl.SSLContext.set_default_verify_paths

    def relax(ctx: ssl.SSLContext) -> None:
        trusting.add(ctx)
        flags.fset(ctx, flags.fget(ctx) & ~STRICT)

    def set_flags(ctx: ssl.SSLContext, value: int) -> None:
        flags.fset(ctx, value & ~STRICT if ctx in trusting else value)

    def load_verify_locations(
        ctx: ssl.SSLContext, cafile: object = None, capath: object = None, cadata: object = None
    ) -> None:
        load(ctx, cafile, capath, cadata)  # type: ignore[arg-type]
        if trusts_ca(cafile, cadata, ca):
            relax(ctx)

    def set_default_verify_paths(ctx: ssl.SSLContext) -> None:
        default(ctx)
        if trusts_ca(ssl.get_default_verify_paths().cafile, None, ca):
            relax(ctx)

    ssl.SSLContext.verify_flags = property(flags.fget, set_flags)  # type: ignore[assignment]
    ssl.SSLContext.load_verify_locations = load_verify_locations  # type: ignore[method-assign,assignment]
    ssl.SSLContext.set_default_verify_paths = set_default_verify_paths  # type: ignore[method-assign,assignment]


try:
    with open(os.path.join(os.path.dirname(HERE), "ca.pem"), encoding="ascii") as f:
        CA = squeeze("".join(x for x in f.read().splitlines() if not x.startswith("-----")))
except (OSError, ValueError):
    CA = ""
if CA and STRICT:
    install(CA)
# The next sitecustomize on sys.path (the image's), as if this one were absent.
spec = machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
)
if spec and spec.loader:
    module = util.module_from_spec(spec)
    sys.modules["_condukt_chained_sitecustomize"] = module
    spec.loader.exec_module(module)
