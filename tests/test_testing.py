"""``condukt_egress.testing``: the documented programs run under it as under the engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cryptography import x509

from condukt_egress.args import CaKeyAlgorithm
from condukt_egress.manifests import SIDECAR_CONTAINER
from condukt_egress.testing import RecordingMonitor, Resources, TransformError, record, run

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)


def readme_snippet() -> str:
    """The README's "A few lines of Python" example (wherever the docs keep it)."""
    blocks = [
        block
        for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        for block in python_blocks(page)
        if "egress.inject(" in block and "workload_options()" in block and "..." not in block
    ]
    assert blocks, "the README's Python example is gone"
    return blocks[0]


def as_program(source: str) -> Any:
    def program() -> None:
        exec(compile(source, "<snippet>", "exec"), {"__name__": "snippet"})  # noqa: S102

    return program


def containers(pod_spec: dict[str, Any]) -> list[str]:
    return [c["name"] for c in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]]


def test_the_readme_snippet_runs_and_its_pod_is_injected() -> None:
    resources = run(as_program(readme_snippet()))
    pod = resources.named("ws")
    assert pod.type == "kubernetes:core/v1:Pod"
    assert SIDECAR_CONTAINER in containers(pod.inputs["spec"])
    secret = resources.one("kubernetes:core/v1:Secret")
    x509.load_pem_x509_certificate(secret.inputs["stringData"]["ca.pem"].encode())
    policy = resources.one("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    # The workload waits for its Secret and NetworkPolicy (workload_options()).
    assert {secret.urn, policy.urn} <= set(pod.dependencies)


def test_a_deployment_is_injected_only_when_transforms_run() -> None:
    source = next(b for b in python_blocks(ROOT / "docs" / "unit-testing.md") if "def program" in b)
    namespace: dict[str, Any] = {}
    exec(compile(source, "docs/unit-testing.md", "exec"), namespace)  # noqa: S102
    # What plain set_mocks gives: the transform never runs, the Deployment stays bare.
    plain = record(namespace["program"], monitor_factory=RecordingMonitor)
    (bare,) = plain.of_type("kubernetes:apps/v1:Deployment")
    assert containers(bare.inputs["spec"]["template"]["spec"]) == ["agent"]
    # Under run, the documented test passes: the sidecar is there.
    namespace["test_the_agent_runs_behind_the_sidecar"]()


def test_config_preview_and_outputs_reach_the_program() -> None:
    seen: dict[str, Any] = {}

    def program() -> None:
        config = pulumi.Config()
        seen["dry_run"] = pulumi.runtime.is_dry_run()
        seen["policy"] = config.get_object("policy")
        pulumi.export("id", config.require("sessionId"))

    resources = run(program, config={"sessionId": "run-42", "policy": {"rules": []}}, preview=True)
    assert seen == {"dry_run": True, "policy": {"rules": []}}
    assert isinstance(resources, Resources)
    assert resources.stack_outputs == {"id": "run-42"}
    with pytest.raises(LookupError, match=r"expected one kubernetes:core/v1:Pod, got \[\]"):
        resources.one("kubernetes:core/v1:Pod")


def test_a_bypass_the_transform_refuses_is_raised() -> None:
    import pulumi_kubernetes as k8s  # noqa: PLC0415

    from condukt_egress import SandboxEgress, SandboxEgressArgs  # noqa: PLC0415

    def program() -> None:
        egress = SandboxEgress("s", SandboxEgressArgs(session_id="42", namespace="agents"))
        spec: Any = {"hostNetwork": True, "containers": [{"name": "a", "image": "b"}]}
        k8s.core.v1.Pod("ws", spec=spec, opts=egress.workload_options())

    with pytest.raises(TransformError) as info:
        run(program)
    assert info.value.resource == "ws"
    assert info.value.message.startswith("Pod 'ws' spec.hostNetwork: is true; a session pod")
    assert info.value.message.endswith("remove hostNetwork")


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ecdsa-p384", "rsa-2048"])
def test_the_pulumi_tls_mock_mints_the_ca_render_mints(algorithm: CaKeyAlgorithm) -> None:
    # The mock stands in for pulumi-tls, as generate_ca does offline: both follow
    # Go's x509 (subject O before CN, SHA-384 for a P-384 key), so a unit test
    # sees the certificate a real stack gets.
    from condukt_egress import SandboxEgress, SandboxEgressArgs  # noqa: PLC0415
    from condukt_egress.ca import generate_ca  # noqa: PLC0415

    args = SandboxEgressArgs(session_id="42", namespace="agents", ca_key_algorithm=algorithm)

    def program() -> None:
        SandboxEgress("s", args)

    secret = run(program).one("kubernetes:core/v1:Secret")
    mocked = x509.load_pem_x509_certificate(secret.inputs["stringData"]["ca.pem"].encode())
    offline = x509.load_pem_x509_certificate(generate_ca(args).cert_pem.encode())
    assert mocked.subject == offline.subject
    assert mocked.subject.rdns[0].rfc4514_string() == "O=condukt-egress"
    assert mocked.signature_hash_algorithm is not None
    assert offline.signature_hash_algorithm is not None
    assert mocked.signature_hash_algorithm.name == offline.signature_hash_algorithm.name
    assert mocked.signature_hash_algorithm.name == (
        "sha384" if algorithm == "ecdsa-p384" else "sha256"
    )

    # Same extensions, same values but the subject key identifier (another key).
    def profile(cert: x509.Certificate) -> list[tuple[Any, ...]]:
        ski = x509.SubjectKeyIdentifier.oid
        return [(e.oid, e.critical, None if e.oid == ski else e.value) for e in cert.extensions]

    assert profile(mocked) == profile(offline)
