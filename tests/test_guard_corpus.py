"""Real-world workloads, injected, are admitted by the guard.

Reads the shared corpus of public manifests when it sits beside the checkout
(``../shared/k8s-corpus``); a fresh clone has none, and the test says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from condukt_egress import SandboxEgressArgs, manifests
from condukt_egress.errors import ConfigError
from condukt_egress.guard import GUARD_NAMESPACE_LABEL, SandboxGuardArgs, guard_manifests
from tests.cel_admission import admit, defaulted_pod, request
from tests.corpus import CORPUS, needs_corpus


def pod_specs(doc: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(doc, dict):
        return
    if doc.get("kind") == "List":
        for item in doc.get("items") or ():
            yield from pod_specs(item)
        return
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        yield spec
    elif isinstance(spec.get("template"), dict):
        yield (spec["template"].get("spec") or {})
    elif isinstance(spec.get("jobTemplate"), dict):
        yield ((spec["jobTemplate"].get("spec") or {}).get("template") or {}).get("spec") or {}


@needs_corpus
def test_injected_corpus_pods_are_admitted() -> None:
    assert CORPUS is not None
    guard = guard_manifests(SandboxGuardArgs())
    args = SandboxEgressArgs(session_id="corpus", namespace="agents")
    admitted = refused_by_inject = 0
    for path in sorted(CORPUS.glob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError:
            continue
        for doc in docs:
            for spec in pod_specs(doc):
                if not spec.get("containers"):
                    continue
                try:
                    injected = manifests.with_secret_name(
                        manifests.inject(spec, args), args.names.secret_name({})
                    )
                except ConfigError:
                    refused_by_inject += 1  # a bypass inject refuses: nothing to admit
                    continue
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": "p",
                        "namespace": "agents",
                        "labels": args.names.pod_labels,
                    },
                    "spec": injected,
                }
                refusals = admit(
                    guard, request("CREATE", defaulted_pod(pod)), {GUARD_NAMESPACE_LABEL: "enforce"}
                )
                assert refusals == [], f"{path.name}: {refusals}"
                admitted += 1
    assert admitted > 100, (admitted, refused_by_inject)
