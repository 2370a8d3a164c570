"""A new session CA reaches the pod: the sidecar's env carries the CA's fingerprint.

Before, the pod depended on the Secret only through ``depends_on`` and the
config digest left the CA out, so a re-minted CA (pulumi-tls re-creates an
expired certificate; ``pulumi up --replace``) replaced the Secret but left the
pod, and its sidecar, on the old CA. These tests run the program and the
transform the way the engine does (tests/transform_monitor.py) and check that
different CA material gives different pod inputs.
"""

from __future__ import annotations

import ssl
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import given
from hypothesis import strategies as st

from condukt_egress import SandboxEgress, SandboxEgressArgs, manifests, session_objects
from condukt_egress.errors import ConfigError
from condukt_egress.manifests import CA_FINGERPRINT_ENV, SIDECAR_CONTAINER
from condukt_egress.program import session_program
from tests.pulumi_harness import Recorder, run
from tests.security_properties import pod_template
from tests.test_transform import SEVEN, token, workload
from tests.test_transform_sdk import CLASSES, as_object
from tests.transform_monitor import EngineMonitor

POD = "kubernetes:core/v1:Pod"
SECRET = "kubernetes:core/v1:Secret"
CERT = "tls:index/selfSignedCert:SelfSignedCert"
ARGS = SandboxEgressArgs(session_id="rotate-1", namespace="agents")


def sidecar_env(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    for container in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        if container["name"] == SIDECAR_CONTAINER:
            return list(container["env"])
    raise AssertionError("no sidecar")


def fingerprints(pod_spec: dict[str, Any]) -> list[Any]:
    return [e["value"] for e in sidecar_env(pod_spec) if e["name"] == CA_FINGERPRINT_ENV]


def engine_run(program: Any, config: dict[str, Any] | None = None) -> Recorder:
    return run(program, config=config, monitor_factory=EngineMonitor)


def test_two_runs_with_different_ca_material_give_different_pod_inputs() -> None:
    config = {"sessionId": "rotate-1", "namespace": "agents"}
    first, second = engine_run(session_program, config), engine_run(session_program, config)
    pods = [rec.one(POD).inputs for rec in (first, second)]
    cas = [rec.stack_outputs["caCertPem"] for rec in (first, second)]
    assert cas[0] != cas[1], "the mocks mint a new key per run"
    for pod, ca in zip(pods, cas, strict=True):
        assert fingerprints(pod["spec"]) == [manifests.ca_fingerprint(ca)]
    assert pods[0] != pods[1], "a new CA must change the pod, so up replaces it"
    secrets = [rec.one(SECRET).inputs["metadata"]["name"] for rec in (first, second)]
    assert secrets[0] != secrets[1], "a new CA is a new Secret, created before the new pod"
    for pod, secret in zip(pods, secrets, strict=True):
        assert {v["secret"]["secretName"] for v in pod["spec"]["volumes"]} == {secret}
    # The CA is the only difference: nothing else rolls the pod.
    unbound = manifests.CaBinding("x", "y")
    masked = [{**pod, "spec": manifests.with_ca_binding(pod["spec"], unbound)} for pod in pods]
    assert masked[0] == masked[1]


def test_same_ca_gives_the_same_pod_inputs() -> None:
    pem = engine_run(session_program, {"sessionId": "rotate-1"}).stack_outputs["caCertPem"]
    one = manifests.workspace_pod_manifest(ARGS, "python:3.13-slim", ca_cert_pem=pem)
    two = manifests.workspace_pod_manifest(ARGS, "python:3.13-slim", ca_cert_pem=pem)
    assert one == two
    assert fingerprints(one["spec"]) == [manifests.ca_fingerprint(pem)]


def test_fingerprint_is_the_sha256_openssl_prints() -> None:
    pem = engine_run(session_program, {"sessionId": "fp"}).stack_outputs["caCertPem"]
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert manifests.ca_fingerprint(pem) == cert.fingerprint(hashes.SHA256()).hex()
    with pytest.raises(ConfigError, match=r"^ca_cert_pem: is not a PEM certificate"):
        manifests.ca_fingerprint("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


@pytest.mark.parametrize("kind", SEVEN)
def test_every_workload_kind_carries_the_ca_once(kind: str) -> None:
    """Resource transform and stack transform together still leave one entry."""
    seen: dict[str, Any] = {}

    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        egress.register_stack_transform()
        CLASSES[kind](kind.lower(), **workload(kind), opts=egress.workload_options())
        egress.ca_cert_pem.apply(lambda pem: seen.setdefault("pem", pem))

    rec = engine_run(program)
    obj = as_object(rec.one(token(kind)), kind)
    assert fingerprints(pod_template(obj)["spec"]) == [manifests.ca_fingerprint(seen["pem"])]


def test_a_secret_or_unknown_pod_spec_still_gets_the_ca() -> None:
    """A spec the transform must lift into ``apply`` gets the fingerprint there too."""
    seen: dict[str, Any] = {}

    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        token_value = pulumi.Output.secret("s3cr3t")
        k8s.core.v1.Pod(
            "ws",
            metadata={"namespace": "agents"},
            spec={
                "containers": [
                    {"name": "w", "image": "busybox", "env": [{"name": "T", "value": token_value}]}
                ]
            },
            opts=egress.workload_options(),
        )
        egress.ca_cert_pem.apply(lambda pem: seen.setdefault("pem", pem))

    rec = engine_run(program)
    pod = rec.one(POD)
    assert fingerprints(pod.inputs["spec"]) == [manifests.ca_fingerprint(seen["pem"])]


def test_inject_keeps_the_fingerprint_and_stays_idempotent() -> None:
    spec = {"containers": [{"name": "w", "image": "busybox"}]}
    once = manifests.with_ca_fingerprint(manifests.inject(spec, ARGS), "ab" * 32)
    assert manifests.inject(once, ARGS) == once
    again = manifests.with_ca_fingerprint(once, "cd" * 32)
    assert fingerprints(again) == ["cd" * 32]
    assert fingerprints(once) == ["ab" * 32], "the input is not modified"
    with pytest.raises(ConfigError, match="has no 'condukt-egress' container; inject"):
        manifests.with_ca_fingerprint(spec, "ab")


def test_early_renewal_reaches_pulumi_tls_and_is_validated() -> None:
    rec = run(session_program, config={"sessionId": "1", "caEarlyRenewalHours": 4})
    assert rec.one(CERT).inputs["earlyRenewalHours"] == 4
    rec = run(session_program, config={"sessionId": "1"})
    assert rec.one(CERT).inputs["earlyRenewalHours"] == 0
    with pytest.raises(ConfigError, match=r"from 0 to ca_validity_hours - 1 \(23\), got 24"):
        SandboxEgressArgs(session_id="1", ca_early_renewal_hours=24)
    config = {"sessionId": "1", "caValidityHours": 2, "caEarlyRenewalHours": 2}
    with pytest.raises(ConfigError, match=r"^config caEarlyRenewalHours: .*Set it with `pulumi"):
        run(session_program, config=config)


@given(
    st.sampled_from(["", " ", "\n", "\t\n"]),
    st.text(alphabet="ABCDEFabcdef0123456789+/= \n-é", max_size=60),
    st.sampled_from(["-----BEGIN CERTIFICATE-----", "-----BEGIN PRIVATE KEY-----", ""]),
    st.sampled_from(["-----END CERTIFICATE-----", "-----END CERTIFICATE-----\n\n", "x"]),
)
def test_the_der_of_a_pem_is_what_the_ssl_module_reads(
    lead: str, body: str, header: str, footer: str
) -> None:
    pem = f"{lead}{header}\n{body}\n{footer}"
    try:
        expected: bytes | None = ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")
    except ValueError:
        expected = None
    try:
        got: bytes | None = session_objects._pem_to_der(pem.strip() + "\n")
    except ValueError:
        got = None
    assert got == expected
