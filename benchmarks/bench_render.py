"""Benchmark ``render`` as users run it, and the bytes of each session's Secret.

Run: ``.venv/bin/python benchmarks/bench_render.py [--pairs N]``

* Speed: what a user waits for is a whole ``condukt-egress render`` process
  (interpreter start, imports, the CA, the objects, YAML, the file), with the
  package byte-compiled as an installed copy is. Its floor is a process that
  only mints a CA of the same profile with ``cryptography`` alone (same
  interpreter; none of our imports). The script runs the two as subprocesses
  in N pairs, alternating which goes first, times each from spawn to exit,
  and reports the medians and the median of the per-pair ratios. Target:
  ``render`` at most 2x the CA-only process.
* Size: the Secret's ``data`` as the API server stores it (keys plus base64
  values) with the default trust bundle and with ``public-roots``, against the
  original glue's design, which put the Mozilla bundle (its
  ``priv/ca-certificates/mozilla.pem``, 189,462 bytes) in every Secret.
  Target: at most 1/50 of the original with the default trust bundle.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import certifi
from _processes import byte_compile, timed_rounds

from condukt_egress.args import SandboxEgressArgs
from condukt_egress.ca import CaMaterial, generate_ca
from condukt_egress.manifests import bundle_pem
from condukt_egress.policy import EgressPolicy, allow, deny
from condukt_egress.render import render_session

ROOT = Path(__file__).resolve().parent.parent
CA_ONLY = """
import datetime
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
now = datetime.datetime.now(datetime.UTC)
cert = (
    x509.CertificateBuilder().subject_name(name).issuer_name(name)
    .public_key(key.public_key()).serial_number(x509.random_serial_number())
    .not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=24))
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .sign(key, hashes.SHA256())
)
cert.public_bytes(serialization.Encoding.PEM)
key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
"""
"""The floor: a process that only mints a session-like CA, with ``cryptography`` alone."""
ORIGINAL_MOZILLA_PEM_BYTES = 189_462
"""Size of the Mozilla bundle the original glue embedded in every session Secret."""
WORKSPACE_IMAGE = "python:3.13-slim"
POLICY = EgressPolicy(
    rules=[deny("**.internal.example.com"), allow("api.github.com", "pypi.org", "*.openai.com")]
)


def sessions(count: int, **options: Any) -> list[SandboxEgressArgs]:
    return [
        SandboxEgressArgs(session_id=f"bench-{i}", namespace="agents", policy=POLICY, **options)
        for i in range(count)
    ]


def stored_bytes(data: Mapping[str, str]) -> int:
    """Bytes of a Secret's ``data`` as stored: each key plus its base64 value."""
    return sum(len(k) + len(base64.b64encode(v.encode())) for k, v in data.items())


def secret_bytes(secret: Mapping[str, Any]) -> int:
    """Bytes a rendered Secret stores: its ``stringData`` encoded, its ``data`` as it is."""
    binary = secret.get("data") or {}
    return stored_bytes(secret["stringData"]) + sum(len(k) + len(v) for k, v in binary.items())


def original_bytes(ca: CaMaterial, policy_json: str) -> int:
    """The original design's Secret: policy, CA, key, and the Mozilla bundle plus the CA."""
    bundle = "x" * ORIGINAL_MOZILLA_PEM_BYTES + "\n" + ca.cert_pem
    return stored_bytes(
        {
            "policy.json": policy_json,
            "ca.pem": ca.cert_pem,
            "ca-key.pem": ca.key_pem,
            "bundle.pem": bundle,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=21)
    parser.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="checkout whose condukt_egress both processes import (e.g. another branch's); "
        "it is the processes' working directory, so `python -m` finds its package first",
    )
    options = parser.parse_args()
    args = sessions(1)
    byte_compile(options.tree.resolve())

    with tempfile.TemporaryDirectory() as tmp:
        render = [
            sys.executable, "-m", "condukt_egress", "render", "--session-id", "bench",
            "--namespace", "agents", "--policy", str(ROOT / "examples" / "policy.yaml"),
            "--output-file", str(Path(tmp) / "session.yaml"),
        ]  # fmt: skip
        times = timed_rounds(
            {"ca_only": [sys.executable, "-c", CA_ONLY], "render": render},
            options.pairs,
            options.tree.resolve(),
        )
        ca_only, whole = times["ca_only"], times["render"]
    ratios = [w / c for c, w in zip(ca_only, whole, strict=True)]
    floor, median = statistics.median(ca_only), statistics.median(whole)
    print(f"tree: {options.tree.resolve()}")
    print(f"{options.pairs} paired runs of whole processes (order alternating); medians:")
    print(f"{'process':<34}{'ms':>10}{'x CA-only':>12}")
    print(f"{'CA only (floor)':<34}{floor * 1e3:>10.1f}{1:>12.2f}")
    print(f"{'condukt-egress render':<34}{median * 1e3:>10.1f}{median / floor:>12.2f}")
    ratio = statistics.median(ratios)
    verdict = "MET" if ratio <= 2 else "MISSED"
    print(f"median of per-pair ratios: {ratio:.2f}x (target <= 2.00x: {verdict})")
    print()

    session = args[0]
    ca: CaMaterial = generate_ca(session)
    default = secret_bytes(render_session(session, ca, WORKSPACE_IMAGE)[0])
    public = sessions(1, trust_bundle="public-roots")[0]
    roots = secret_bytes(render_session(public, ca, WORKSPACE_IMAGE)[0])
    original = original_bytes(ca, session.egress_policy.to_json())
    print()
    print(f"{'Secret data stored per session':<34}{'bytes':>12}{'/ original':>12}")
    for label, size in (
        ("original design (Mozilla bundle)", original),
        ("trust_bundle=session-ca (default)", default),
        ("trust_bundle=public-roots", roots),
    ):
        print(f"{label:<34}{size:>12,}{size / original:>12.4f}")
    share = default / original
    verdict = "MET" if share <= 1 / 50 else "MISSED"
    print(f"target default <= 1/50 of original: 1/{original / default:.0f} {verdict}")
    certifi_bytes = len(certifi.contents().encode())
    roots_bytes = len(bundle_pem(public, ca.cert_pem).encode()) - len(ca.cert_pem.encode())
    print(
        f"public roots in bundle.pem: {roots_bytes:,} bytes (certifi's file: {certifi_bytes:,}; "
        f"the original's Mozilla bundle: {ORIGINAL_MOZILLA_PEM_BYTES:,})"
    )


if __name__ == "__main__":
    main()
