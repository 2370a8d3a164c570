"""Benchmark ``render``: sessions per second against the CA floor, and bytes per session.

Run: ``.venv/bin/python benchmarks/bench_render.py [--sessions N] [--rounds R]``

* Speed: minting the session CA (:func:`generate_ca`) is the floor of any
  render. For each round the script times N sessions of: the CA alone; the CA
  plus the session objects (:func:`render_session`); and the same written as
  YAML and as JSON. Rounds interleave the variants and the best round of each
  is kept, so the ratios come from one run on one machine. Target: rendering
  the objects costs at most 2x the CA floor.
* Size: the Secret's ``data`` as the API server stores it (keys plus base64
  values) with the default trust bundle and with ``public-roots``, against the
  original glue's design, which put the Mozilla bundle (its
  ``priv/ca-certificates/mozilla.pem``, 189,462 bytes) in every Secret.
  Target: at most 1/50 of the original with the default trust bundle.
"""

from __future__ import annotations

import argparse
import base64
import time
from collections.abc import Callable, Mapping
from typing import Any

from condukt_egress.args import SandboxEgressArgs
from condukt_egress.ca import CaMaterial, generate_ca
from condukt_egress.policy import EgressPolicy, allow, deny
from condukt_egress.render import render_session, to_json, to_yaml

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


def best_seconds_per_session(
    variants: Mapping[str, Callable[[SandboxEgressArgs], object]],
    args: list[SandboxEgressArgs],
    rounds: int,
) -> dict[str, float]:
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, variant in variants.items():
            start = time.perf_counter()
            for session in args:
                variant(session)
            best[name] = min(best[name], (time.perf_counter() - start) / len(args))
    return best


def stored_bytes(data: Mapping[str, str]) -> int:
    """Bytes of a Secret's ``data`` as stored: each key plus its base64 value."""
    return sum(len(k) + len(base64.b64encode(v.encode())) for k, v in data.items())


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
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    args = sessions(options.sessions)

    def objects(session: SandboxEgressArgs) -> list[dict[str, Any]]:
        return render_session(session, generate_ca(session), WORKSPACE_IMAGE)

    best = best_seconds_per_session(
        {
            "ca": generate_ca,
            "objects": objects,
            "yaml": lambda s: to_yaml(objects(s)),
            "json": lambda s: to_json(objects(s)),
        },
        args,
        options.rounds,
    )
    floor = best["ca"]
    print(f"sessions per round: {options.sessions}, rounds: {options.rounds} (best round kept)")
    print(f"{'variant':<34}{'sessions/s':>12}{'ms/session':>12}{'x CA floor':>12}")
    labels = {
        "ca": "CA alone (floor)",
        "objects": "CA + objects (render_session)",
        "yaml": "CA + objects + YAML",
        "json": "CA + objects + JSON",
    }
    for name, seconds in best.items():
        print(
            f"{labels[name]:<34}{1 / seconds:>12.0f}{seconds * 1e3:>12.3f}{seconds / floor:>12.2f}"
        )
    ratio = best["objects"] / floor
    print(f"target objects <= 2.00x CA floor: {ratio:.2f}x {'MET' if ratio <= 2 else 'MISSED'}")

    session = args[0]
    ca = generate_ca(session)
    default = stored_bytes(render_session(session, ca, WORKSPACE_IMAGE)[0]["stringData"])
    public = sessions(1, trust_bundle="public-roots")[0]
    roots = stored_bytes(render_session(public, ca, WORKSPACE_IMAGE)[0]["stringData"])
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


if __name__ == "__main__":
    main()
