"""SandboxEgress and the stack program under Pulumi's mocks."""

import base64
import json
import re
from typing import Any

import pulumi_kubernetes as k8s
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from condukt_egress import SandboxEgress, SandboxEgressArgs, manifests
from condukt_egress.component import TYPE_TOKEN
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.program import session_program
from tests.k8s_schema import assert_valid
from tests.pulumi_harness import Recorder, run
from tests.security_properties import (
    assert_network_policy,
    assert_session_secure,
    java_trusted,
    pem_certificates,
)
from tests.transform_monitor import EngineMonitor

SECRET = "kubernetes:core/v1:Secret"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
POD = "kubernetes:core/v1:Pod"
POLICY_DOC = {
    "rules": [{"deny": ["*.internal.example.com"]}, {"allow": ["api.github.com"]}],
    "default": "deny",
}


def as_object(reg: Any, api_version: str, kind: str) -> dict[str, Any]:
    obj = {k: v for k, v in reg.inputs.items() if k not in ("apiVersion", "kind")}
    return {"apiVersion": api_version, "kind": kind, **obj}


def declare(args: SandboxEgressArgs) -> Any:
    egress = SandboxEgress("s", args)
    pod = manifests.workspace_pod_manifest(args, "python:3.13-slim")
    k8s.core.v1.Pod(
        "ws", metadata=pod["metadata"], spec=pod["spec"], opts=egress.workload_options()
    )
    return egress.ca_cert_pem


@pytest.fixture(scope="module")
def recorded() -> Recorder:
    args = SandboxEgressArgs(session_id="Agent Run 42", namespace="agents", policy=POLICY_DOC)
    return run(lambda: declare(args))


def test_component_children_are_parented(recorded: Recorder) -> None:
    component = recorded.one(TYPE_TOKEN)
    children = [r for r in recorded.registrations if r.type not in (TYPE_TOKEN, POD)]
    assert {r.type for r in children} == {
        "tls:index/privateKey:PrivateKey",
        "tls:index/selfSignedCert:SelfSignedCert",
        SECRET,
        NETWORK_POLICY,
    }
    assert all(r.parent == component.urn for r in children)


def test_ca_profile(recorded: Recorder) -> None:
    key = recorded.one("tls:index/privateKey:PrivateKey").inputs
    assert (key["algorithm"], key["ecdsaCurve"]) == ("ECDSA", "P256")
    cert = recorded.one("tls:index/selfSignedCert:SelfSignedCert").inputs
    assert cert["isCaCertificate"] is True
    assert cert["setSubjectKeyId"] is True
    assert sorted(cert["allowedUses"]) == ["cert_signing", "crl_signing", "digital_signature"]
    assert cert["validityPeriodHours"] == 24
    assert cert["subject"]["organization"] == "condukt-egress"
    assert len(cert["subject"]["commonName"]) <= 64


def test_the_secret_is_named_after_its_content_and_the_pod_mounts_that_name() -> None:
    # A fixed name made pulumi-kubernetes replace the immutable Secret
    # delete-before-replace, under the running pod (tests/e2e/test_stack_program.py).
    args = SandboxEgressArgs(session_id="Agent Run 42", namespace="agents", policy=POLICY_DOC)
    recorded = run(lambda: declare(args), monitor_factory=EngineMonitor)  # runs the transform
    secret, pod = recorded.one(SECRET), recorded.one(POD)
    name = secret.inputs["metadata"]["name"]
    cert = secret.inputs["stringData"]["ca.pem"]
    assert name == manifests.secret_name(args, cert)
    volumes = pod.inputs["spec"]["volumes"]
    assert {v["secret"]["secretName"] for v in volumes if "secret" in v} == {name}
    # Derived without the CA key, so neither the name nor the pod spec is a Pulumi secret.
    assert "metadata" not in secret.secret_inputs
    assert "spec" not in pod.secret_inputs
    assert secret.urn in pod.dependencies


def test_secret_has_a_pkcs8_key_a_real_ca_and_stays_secret(recorded: Recorder) -> None:
    reg = recorded.one(SECRET)
    assert "stringData" in reg.secret_inputs
    data = reg.inputs["stringData"]
    key = serialization.load_pem_private_key(data["ca-key.pem"].encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert data["ca-key.pem"].startswith("-----BEGIN PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate(data["ca.pem"].encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert "bundle.pem" not in data, "the workspace's bundle.pem is ca.pem itself"
    # The JVM trust store is binary, so base64 in ``data``; the key is never in it.
    assert "data" in reg.secret_inputs
    assert set(reg.inputs["data"]) == {"truststore.p12"}
    store = base64.b64decode(reg.inputs["data"]["truststore.p12"])
    assert java_trusted(store) == pem_certificates(data["ca.pem"].encode())
    assert reg.inputs["immutable"] is True
    assert_valid(as_object(reg, "v1", "Secret"))


def test_network_policy_is_the_builders(recorded: Recorder) -> None:
    reg = recorded.one(NETWORK_POLICY)
    obj = as_object(reg, "networking.k8s.io/v1", "NetworkPolicy")
    assert_valid(obj)
    args = SandboxEgressArgs(session_id="Agent Run 42", namespace="agents", policy=POLICY_DOC)
    assert obj == manifests.network_policy_manifest(args)
    assert_network_policy(obj, args.names.pod_labels, plain_http=False)


def test_workload_depends_on_secret_and_network_policy(recorded: Recorder) -> None:
    pod = recorded.one(POD)
    assert recorded.one(SECRET).urn in pod.dependencies
    assert recorded.one(NETWORK_POLICY).urn in pod.dependencies
    obj = as_object(pod, "v1", "Pod")
    assert_valid(obj)
    assert_session_secure(obj["spec"])


def test_exactly_one_network_policy_selects_the_session_pod(recorded: Recorder) -> None:
    pod_labels = recorded.one(POD).inputs["metadata"]["labels"]
    selecting = [
        r
        for r in recorded.of_type(NETWORK_POLICY)
        if r.inputs["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    ]
    assert len(selecting) == 1


@pytest.mark.parametrize(("algorithm", "expected"), [("ecdsa-p384", "P384"), ("rsa-3072", 3072)])
def test_ca_key_options(algorithm: str, expected: object) -> None:
    args = SandboxEgressArgs(session_id="1", ca_key_algorithm=algorithm)  # type: ignore[arg-type]
    rec = run(lambda: SandboxEgress("s", args).ca_cert_pem)
    key = rec.one("tls:index/privateKey:PrivateKey").inputs
    assert key.get("ecdsaCurve", key.get("rsaBits")) == expected
    pem = rec.one(SECRET).inputs["stringData"]["ca-key.pem"]
    loaded = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)


def test_two_sessions_in_one_program_do_not_collide() -> None:
    def program() -> None:
        for sid in ("x" * 60 + "a", "x" * 60 + "b"):
            SandboxEgress(f"s-{sid[-1]}", SandboxEgressArgs(session_id=sid))

    rec = run(program)
    names = [r.inputs["metadata"]["name"] for r in rec.of_type(SECRET)]
    assert len(set(names)) == 2


def test_component_rejects_untyped_args() -> None:
    with pytest.raises(TypeError) as caught:
        run(lambda: SandboxEgress("s", {"session_id": "1"}))  # type: ignore[arg-type]
    assert str(caught.value) == (
        "args must be SandboxEgressArgs, got dict; "
        "build it with SandboxEgressArgs(session_id=..., ...)"
    )


# --- the stack program (__main__.py) ----------------------------------------


def test_stack_program_with_config() -> None:
    rec = run(
        session_program,
        config={
            "sessionId": "sess-1",
            "namespace": "agents",
            "policy": POLICY_DOC,
            "allowPlainHttp": "true",
            "trustBundle": "public-roots",
            "nativeSidecar": "false",
            "workspaceImage": "node:22",
            "sidecarImage": "ghcr.io/tuist/condukt-egress:1.11.0",
        },
    )
    pod = rec.one(POD)
    obj = as_object(pod, "v1", "Pod")
    assert_valid(obj)
    assert_session_secure(obj["spec"])
    assert obj["metadata"]["namespace"] == "agents"
    assert obj["spec"]["containers"][0]["image"] == "node:22"
    sidecar = next(c for c in obj["spec"]["containers"] if c["name"] == "condukt-egress")
    assert sidecar["image"] == "ghcr.io/tuist/condukt-egress:1.11.0"
    assert rec.one(SECRET).urn in pod.dependencies
    netpol = as_object(rec.one(NETWORK_POLICY), "networking.k8s.io/v1", "NetworkPolicy")
    assert_network_policy(
        netpol, SandboxEgressArgs(session_id="sess-1").names.pod_labels, plain_http=True
    )
    assert netpol["spec"]["podSelector"]["matchLabels"].items() <= obj["metadata"]["labels"].items()
    bundle = rec.one(SECRET).inputs["stringData"]["bundle.pem"]
    assert bundle.count("BEGIN CERTIFICATE") > 100
    store = base64.b64decode(rec.one(SECRET).inputs["data"]["truststore.p12"])
    assert java_trusted(store) == pem_certificates(bundle.encode())  # the JVM's view of it


NETWORK_CONFIG = {
    "sessionId": "sess-net",
    "caKeyAlgorithm": "ecdsa-p384",
    "caValidityHours": "48",
    "clusterCidrs": ["203.0.113.0/24"],
    "nodeLocalDns": "169.254.20.10",
    "dnsNamespace": "dns",
    "dnsPodLabels": {"k8s-app": "coredns"},
    "unproxiedEgress": [{"cidr": "10.0.12.7/32", "ports": [5432, 5433], "protocol": "TCP"}],
}


def test_stack_program_network_and_ca_config() -> None:
    rec = run(session_program, config=NETWORK_CONFIG)
    netpol = as_object(rec.one(NETWORK_POLICY), "networking.k8s.io/v1", "NetworkPolicy")
    assert_valid(netpol)
    labels = SandboxEgressArgs(session_id="sess-net").names.pod_labels
    assert_network_policy(netpol, labels, plain_http=False, dns_labels={"k8s-app": "coredns"})
    dns_rule, web_rule, unproxied = netpol["spec"]["egress"]
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in dns_rule["to"]
    assert dns_rule["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "dns"
    }
    assert "203.0.113.0/24" in web_rule["to"][0]["ipBlock"]["except"]
    assert unproxied == {
        "to": [{"ipBlock": {"cidr": "10.0.12.7/32"}}],
        "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 5433}],
    }
    assert rec.one("tls:index/privateKey:PrivateKey").inputs["ecdsaCurve"] == "P384"
    assert rec.one("tls:index/selfSignedCert:SelfSignedCert").inputs["validityPeriodHours"] == 48


def test_stack_program_defaults_deny_everything() -> None:
    rec = run(session_program, config={"sessionId": "sess-2"})
    policy = json.loads(rec.one(SECRET).inputs["stringData"]["policy.json"])
    assert policy["rules"] == []
    assert policy["default"] == "deny"
    pod = as_object(rec.one(POD), "v1", "Pod")
    assert pod["metadata"]["namespace"] == "default"
    assert pod["spec"]["containers"][0]["image"] == "python:3.13-slim"


@pytest.mark.parametrize(
    ("config", "error", "needle"),
    [
        ({}, ConfigError, "config sessionId: is required: run `pulumi config set sessionId"),
        (
            {"sessionId": "1", "namespace": "Bad_NS"},
            ConfigError,
            "config namespace: must be a Kubernetes namespace",
        ),
        (
            {"sessionId": "1", "allowPlainHttp": "maybe"},
            ConfigError,
            "config allowPlainHttp: must be true or false",
        ),
        (
            {"sessionId": "1", "trustBundle": "mozilla"},
            ConfigError,
            "config trustBundle: must be one of",
        ),
        (
            {"sessionId": "1", "policy": {"rules": [{"allow": ["x.com:443"]}]}},
            PolicyError,
            "policy.rules[0]",
        ),
        ({"sessionId": "1", "policy": ["allow"]}, ConfigError, "config policy: must be an object"),
        (
            {"sessionId": "1", "caKeyAlgorithm": "ed25519"},
            ConfigError,
            "config caKeyAlgorithm: must be one of",
        ),
        (
            {"sessionId": "1", "caValidityHours": "a day"},
            ConfigError,
            "config caValidityHours: must be a whole number of hours",
        ),
        (
            {"sessionId": "1", "caValidityHours": "0"},
            ConfigError,
            "config caValidityHours: must be a whole number of hours from 1 to 8760",
        ),
        (
            {"sessionId": "1", "clusterCidrs": "100.64.0.0/10"},
            ConfigError,
            "config clusterCidrs: must be a list of IPv4 CIDRs",
        ),
        (
            {"sessionId": "1", "clusterCidrs": ["fd00::/8"]},
            ConfigError,
            "config clusterCidrs: must be IPv4",
        ),
        (
            {"sessionId": "1", "nodeLocalDns": "169.254.20"},
            ConfigError,
            "config nodeLocalDns: must be an IPv4 address like 169.254.20.10",
        ),
        (
            {"sessionId": "1", "dnsNamespace": "Kube_System"},
            ConfigError,
            "config dnsNamespace: must be a Kubernetes namespace",
        ),
        (
            {"sessionId": "1", "dnsPodLabels": "k8s-app=kube-dns"},
            ConfigError,
            "config dnsPodLabels: must be an object of label keys to values",
        ),
        (
            {"sessionId": "1", "dnsPodLabels": {}},
            ConfigError,
            "config dnsPodLabels: must be a non-empty mapping",
        ),
        (
            {"sessionId": "1", "dnsPodLabels": {"k8s-app": "kube dns"}},
            ConfigError,
            "config dnsPodLabels['k8s-app']: value 'kube dns' is not a valid label value",
        ),
        (
            {"sessionId": "1", "unproxiedEgress": {"cidr": "10.0.0.5/32", "ports": [5432]}},
            ConfigError,
            "config unproxiedEgress: must be a list",
        ),
        (
            {"sessionId": "1", "unproxiedEgress": [{"cidr": "10.0.0.5/32", "ports": [0]}]},
            ConfigError,
            "config unproxiedEgress.ports: must be a port number from 1 to 65535",
        ),
        (
            {"sessionId": "1", "unproxiedEgress": [{"cidr": "10.0.0.5/32", "port": 5432}]},
            ConfigError,
            "config unproxiedEgress: unknown key(s) ['port']",
        ),
    ],
)
def test_bad_stack_config_fails_before_any_resource(
    config: dict[str, Any], error: type[Exception], needle: str
) -> None:
    recorder = Recorder()
    with pytest.raises(error) as info:
        run(session_program, config=config, recorder=recorder)
    assert needle in str(info.value)
    key = re.split(r"[:\[.]", needle.removeprefix("config "), maxsplit=1)[0]
    if key not in ("sessionId", "policy", "policy.rules[0]"):
        assert "Set it with" in str(info.value), "the message must say how to fix it"
        assert key in str(info.value).split("Set it with", 1)[1]
    assert recorder.registrations == [], "a partial session was declared"


def test_outputs_are_exported() -> None:
    rec = run(session_program, config={"sessionId": "sess-3", "namespace": "agents"})
    outputs = rec.stack_outputs
    names = SandboxEgressArgs(session_id="sess-3").names
    assert outputs["sessionId"] == "sess-3"
    assert outputs["namespace"] == "agents"
    args = SandboxEgressArgs(session_id="sess-3", namespace="agents")
    assert outputs["secretName"] == manifests.secret_name(args, outputs["caCertPem"])
    assert outputs["networkPolicyName"] == names.network_policy
    assert outputs["podName"] == names.pod
    assert outputs["podLabels"] == names.pod_labels
    assert outputs["controlPort"] == 15002
    assert outputs["caCertPem"].startswith("-----BEGIN CERTIFICATE-----")


def test_inject_is_the_pure_injection_of_the_session() -> None:
    captured: list[dict[str, Any]] = []
    args = SandboxEgressArgs(session_id="inject-me", namespace="agents")
    spec = {"containers": [{"name": "workspace", "image": "python:3.13-slim"}]}

    def program() -> None:
        egress = SandboxEgress("s", args)
        captured.append(egress.inject(spec))
        captured.append(egress.inject(captured[0]))
        with pytest.raises(ConfigError, match=r"spec\.hostNetwork"):
            egress.inject({**spec, "hostNetwork": True})

    run(program)
    injected, twice = captured
    assert injected == manifests.inject(spec, args)
    assert twice == injected, "idempotent"
    assert spec == {"containers": [{"name": "workspace", "image": "python:3.13-slim"}]}
    assert_session_secure(injected)


def test_the_program_under_preview_declares_the_whole_session_in_order() -> None:
    rec = run(
        session_program, config={"sessionId": "preview-1", "namespace": "agents"}, preview=True
    )
    assert {r.type for r in rec.registrations} >= {SECRET, NETWORK_POLICY, POD}
    pod = rec.one(POD)
    assert rec.one(SECRET).urn in pod.dependencies
    assert rec.one(NETWORK_POLICY).urn in pod.dependencies
    assert_session_secure(as_object(pod, "v1", "Pod")["spec"])
