import copy
import json
import re
from typing import Any

import certifi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condukt_egress import contract, manifests
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.ca import CaMaterial, generate_ca
from condukt_egress.errors import ConfigError
from condukt_egress.naming import ANNOTATION_SESSION_ID, DNS_CONTAINER, OUR_VOLUMES
from condukt_egress.policy import EgressPolicy, allow, decide, deny
from condukt_egress.render import render_session
from tests.k8s_schema import assert_valid
from tests.security_properties import (
    assert_network_policy,
    assert_patch_hardened,
    assert_session_secure,
)
from tests.strategies import user_containers

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY_PEM = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n"
SECRET_NAME = SandboxEgressArgs(session_id="Agent Run 42").names.secret_name({})
POLICY = EgressPolicy(
    rules=[deny("*.internal.example.com"), allow("api.github.com", "*.openai.com"), decide()],
)


def session(**options: Any) -> SandboxEgressArgs:
    return SandboxEgressArgs(
        session_id="Agent Run 42", namespace="agents", policy=POLICY, **options
    )


def workspace_spec() -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "workspace",
                "image": "python:3.13-slim",
                "env": [{"name": "HOME", "value": "/work"}],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }
        ],
        "volumes": [{"name": "work", "emptyDir": {}}],
    }


# --- Secret -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_pair() -> tuple[CaMaterial, CaMaterial]:
    return generate_ca(session()), generate_ca(session())


def test_the_secret_name_is_a_hash_of_its_content_and_only_of_it(
    ca_pair: tuple[CaMaterial, CaMaterial],
) -> None:
    ca, other_ca = ca_pair
    args = session()
    name = manifests.secret_name(args, ca.cert_pem)
    # Deterministic: the same inputs, the same name (an unchanged stack shows no diff).
    assert name == manifests.secret_name(session(), ca.cert_pem)
    assert render_session(args, ca, "python:3.13-slim") == render_session(
        args, ca, "python:3.13-slim"
    )
    assert args.names.owns_secret(name)
    assert len(name) <= 253
    # A new CA, a new policy, a new option that changes the files: a new Secret.
    assert manifests.secret_name(args, other_ca.cert_pem) != name
    changed = SandboxEgressArgs(session_id="Agent Run 42", namespace="agents", policy=None)
    assert manifests.secret_name(changed, ca.cert_pem) != name
    assert manifests.secret_name(session(control_port=15003), ca.cert_pem) != name
    # What the config digest leaves out still renames it: the filter rules follow the ports.
    assert manifests.config_digest(session(control_port=15003)) == manifests.config_digest(args)
    # Every file but the key is hashed: the key is pinned by the certificate.
    files = {
        **manifests.secret_data(args, ca.cert_pem, ca.key_pem),
        **manifests.secret_binary_data(args, ca.cert_pem),
    }
    del files[contract.CA_KEY_FILE]
    assert name == args.names.secret_name(files)


def test_the_pod_mounts_the_secret_render_declares(ca_pair: tuple[CaMaterial, CaMaterial]) -> None:
    ca, _ = ca_pair
    secret, _policy, pod = render_session(session(), ca, "python:3.13-slim")
    names = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert names == {secret["metadata"]["name"]}


def test_inject_leaves_the_secret_unbound_and_keeps_a_binding(
    ca_pair: tuple[CaMaterial, CaMaterial],
) -> None:
    ca, _ = ca_pair
    args = session()
    spec = manifests.inject(workspace_spec(), args)
    ours = [v for v in spec["volumes"] if v["name"] in OUR_VOLUMES]
    assert {v["secret"]["secretName"] for v in ours} == {args.names.secret_prefix}
    bound = manifests.with_ca_binding(spec, manifests.ca_binding(args, ca.cert_pem))
    name = manifests.secret_name(args, ca.cert_pem)
    assert {v["secret"]["secretName"] for v in bound["volumes"] if "secret" in v} == {name}
    assert {"name": "work", "emptyDir": {}} in bound["volumes"]  # yours untouched
    assert manifests.inject(bound, args) == bound  # idempotent, the binding kept
    # Another session's binding is no binding: it clashes with ours.
    other = SandboxEgressArgs(session_id="someone else", namespace="agents")
    with pytest.raises(ConfigError, match="clashes with the volume condukt-egress injects"):
        manifests.inject(manifests.with_secret_name(spec, other.names.secret_name({})), args)


def test_secret_carries_exactly_the_sidecar_files() -> None:
    data = manifests.secret_data(session(), CA_PEM, KEY_PEM)
    secret = manifests.secret_manifest(session(), data, name=SECRET_NAME)
    assert_valid(secret)
    data = secret["stringData"]
    # The default bundle is the CA itself: the trust volume shows ca.pem as bundle.pem.
    compat_files = {"openssl.cnf", "sitecustomize.py"}
    sidecar_files = {"policy.json", "ca.pem", "ca-key.pem", "filter.rules", "filter6.rules"}
    sidecar_files.add("Corefile")  # the resolver's (dns_filter: policy by default)
    assert set(data) == sidecar_files | compat_files
    no_resolver = manifests.secret_data(session(dns_filter="off"), CA_PEM, KEY_PEM)
    assert set(no_resolver) == sidecar_files - {"Corefile"} | compat_files
    roots = manifests.secret_data(session(trust_bundle="public-roots"), CA_PEM, KEY_PEM)
    assert set(roots) == sidecar_files | compat_files | {"bundle.pem"}
    assert json.loads(data["policy.json"]) == POLICY.to_wire()
    assert data["ca-key.pem"] == KEY_PEM
    assert secret["immutable"] is True
    assert secret["metadata"]["annotations"][ANNOTATION_SESSION_ID] == "Agent Run 42"


def test_default_bundle_is_the_session_ca_alone() -> None:
    assert manifests.bundle_pem(session(), CA_PEM) == CA_PEM


def test_public_roots_bundle_prepends_certifis_certificates_without_comments() -> None:
    bundle = manifests.bundle_pem(session(trust_bundle="public-roots"), CA_PEM)
    assert bundle.endswith(CA_PEM)
    assert "#" not in bundle
    certificates = re.findall(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", bundle, re.S
    )
    expected = re.findall(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", certifi.contents(), re.S
    )
    assert certificates[:-1] == expected
    assert len(bundle.encode()) < 190_000, "under the original design's 190 KB"


def test_sec1_key_is_refused() -> None:
    sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"
    with pytest.raises(ConfigError, match=r"PKCS#8.*private_key_pem_pkcs8"):
        manifests.secret_data(session(), CA_PEM, sec1)


# --- NetworkPolicy ----------------------------------------------------------


@pytest.mark.parametrize("plain_http", [False, True])
def test_network_policy_leaves_only_the_proxy_path(plain_http: bool) -> None:
    args = session(allow_plain_http=plain_http)
    policy = manifests.network_policy_manifest(args)
    assert_valid(policy)
    assert_network_policy(policy, args.names.pod_labels, plain_http=plain_http)


def test_network_policy_options() -> None:
    args = session(
        dns_namespace="dns",
        dns_pod_labels={"app": "coredns"},
        node_local_dns="169.254.20.10",
        cluster_cidrs=["100.96.0.0/11", "10.0.0.0/8"],
        unproxied_egress=[{"cidr": "10.1.2.3/32", "ports": [5432]}],
    )
    policy = manifests.network_policy_manifest(args)
    assert_valid(policy)
    assert_network_policy(
        policy, args.names.pod_labels, plain_http=False, dns_labels={"app": "coredns"}
    )
    dns, web, db = policy["spec"]["egress"]
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "dns"
    }
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in dns["to"]
    excepted = web["to"][0]["ipBlock"]["except"]
    assert "100.96.0.0/11" in excepted
    assert excepted.count("10.0.0.0/8") == 1
    assert db == {
        "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    }


# --- Injection --------------------------------------------------------------


@pytest.mark.parametrize("native", [True, False])
def test_injected_pod_is_valid_and_secure(native: bool) -> None:
    args = session(native_sidecar=native)
    pod = manifests.workspace_pod_manifest(args, "python:3.13-slim")
    assert_valid(pod)
    spec = pod["spec"]
    assert_session_secure(spec)
    init_names = [c["name"] for c in spec["initContainers"]]
    names = [c["name"] for c in spec["containers"]]
    if native:
        assert init_names == [
            manifests.NETFILTER_CONTAINER,
            manifests.FILTER_CONTAINER,
            manifests.SIDECAR_CONTAINER,
            DNS_CONTAINER,
        ]
        assert spec["initContainers"][2]["restartPolicy"] == "Always"
        assert spec["initContainers"][3]["restartPolicy"] == "Always"
        assert names == ["workspace"]
    else:
        assert init_names == [manifests.NETFILTER_CONTAINER, manifests.FILTER_CONTAINER]
        assert names == ["workspace", manifests.SIDECAR_CONTAINER, DNS_CONTAINER]
        assert "restartPolicy" not in spec["containers"][1]
        assert "restartPolicy" not in spec["containers"][2]
    assert pod["metadata"]["labels"][args.names.label_key] == args.names.label_value


def test_sidecar_flags_match_the_contract() -> None:
    spec = manifests.inject(
        workspace_spec(),
        session(proxy_port=16001, control_port=16002, sidecar_uid=2000, sidecar_gid=2001),
    )
    netfilter, _, sidecar = spec["initContainers"][:3]
    assert netfilter["command"] == ["condukt-egress"]
    assert netfilter["args"] == ["netfilter-setup", "--proxy-port=16001", "--sidecar-uid=2000"]
    assert netfilter["securityContext"]["runAsUser"] == 0
    # iptables may write /run/xtables.lock; the sidecar itself stays read-only.
    assert netfilter["securityContext"]["readOnlyRootFilesystem"] is False
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["args"] == [
        "proxy",
        "--listen=0.0.0.0:16001",
        "--control-listen=0.0.0.0:16002",
        "--policy-file=/etc/condukt/policy.json",
        "--ca-cert-path=/etc/condukt/ca.pem",
        "--ca-key-path=/etc/condukt/ca-key.pem",
        "--session-id=Agent Run 42",
    ]  # fmt: skip
    assert sidecar["securityContext"]["runAsUser"] == 2000
    assert sidecar["securityContext"]["runAsGroup"] == 2001
    assert sidecar["startupProbe"]["exec"]["command"] == manifests.listen_probe_command(16001)
    assert sidecar["resources"]["limits"]
    assert_session_secure(spec, uid=2000, gid=2001)


def test_workspace_trusts_the_ca_through_files_and_env() -> None:
    spec = manifests.inject(workspace_spec(), session())
    workspace = spec["containers"][0]
    mounts = {m["mountPath"]: m for m in workspace["volumeMounts"]}
    for path in manifests.TRUST_BUNDLE_PATHS:
        assert mounts[path]["subPath"] == contract.BUNDLE_FILE
        assert mounts[path]["name"] == manifests.TRUST_VOLUME
    env = {e["name"]: e["value"] for e in workspace["env"]}
    assert env["HOME"] == "/work"
    assert env["NODE_EXTRA_CA_CERTS"] == "/etc/condukt/ca.pem"
    assert env["SSL_CERT_FILE"] == "/etc/condukt/bundle.pem"
    assert len([n for n, _ in manifests.CA_ENV_VARS]) == 6
    trust = next(v for v in spec["volumes"] if v["name"] == manifests.TRUST_VOLUME)
    # The workspace sees ca.pem and bundle.pem (by default both show the Secret's
    # ca.pem) and the client compatibility profile.
    compat_items = {
        "openssl.cnf": "openssl.cnf",
        "python/sitecustomize.py": "sitecustomize.py",
        "truststore.p12": "truststore.p12",
    }
    assert {i["path"]: i["key"] for i in trust["secret"]["items"]} == {
        "ca.pem": "ca.pem",
        "bundle.pem": "ca.pem",
        **compat_items,
    }
    roots = manifests.inject(workspace_spec(), session(trust_bundle="public-roots"))
    trust = next(v for v in roots["volumes"] if v["name"] == manifests.TRUST_VOLUME)
    assert {i["path"]: i["key"] for i in trust["secret"]["items"]} == {
        "ca.pem": "ca.pem",
        "bundle.pem": "bundle.pem",
        **compat_items,
    }


def test_user_ca_env_value_wins() -> None:
    spec = workspace_spec()
    spec["containers"][0]["env"].append({"name": "SSL_CERT_FILE", "value": "/mine.pem"})
    out = manifests.inject(spec, session())
    values = [e["value"] for e in out["containers"][0]["env"] if e["name"] == "SSL_CERT_FILE"]
    assert values == ["/mine.pem"]


def test_injection_does_not_modify_its_input_and_is_idempotent() -> None:
    spec = workspace_spec()
    before = copy.deepcopy(spec)
    once = manifests.inject(spec, session())
    assert spec == before
    assert manifests.inject(once, session()) == once


def test_a_volume_under_our_name_is_refused_beside_our_own_copy() -> None:
    once = manifests.inject(workspace_spec(), session())
    ours = next(v for v in once["volumes"] if v["name"] == "condukt-egress-trust")
    spec = workspace_spec()
    spec["volumes"] += [{"name": "condukt-egress-trust", "emptyDir": {}}, ours]
    with pytest.raises(ConfigError) as caught:
        manifests.inject(spec, session())
    assert caught.value.field == "spec.volumes[1].name"
    assert "rename yours" in caught.value.message


def test_pod_hygiene_defaults_and_explicit_user_choice() -> None:
    out = manifests.inject(workspace_spec(), session())
    assert out["automountServiceAccountToken"] is False
    assert out["enableServiceLinks"] is False
    spec = workspace_spec() | {"automountServiceAccountToken": True}
    assert manifests.inject(spec, session())["automountServiceAccountToken"] is True


def test_stricter_user_settings_are_kept() -> None:
    spec = workspace_spec()
    spec["containers"][0]["securityContext"] = {
        "runAsUser": 1000,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "Localhost", "localhostProfile": "agent.json"},
        "capabilities": {"drop": ["NET_RAW"]},
    }
    context = manifests.inject(spec, session())["containers"][0]["securityContext"]
    assert context["seccompProfile"] == {"type": "Localhost", "localhostProfile": "agent.json"}
    assert context["runAsUser"] == 1000
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL", "NET_RAW"]
    assert context["allowPrivilegeEscalation"] is False


def test_config_digest_follows_the_policy() -> None:
    a = manifests.inject(workspace_spec(), session())
    b = manifests.inject(
        workspace_spec(),
        SandboxEgressArgs(
            session_id="Agent Run 42",
            namespace="agents",
            policy=EgressPolicy(rules=[allow("example.com")]),
        ),
    )

    def env(spec: dict[str, Any]) -> Any:
        return spec["initContainers"][2]["env"]

    assert env(a) != env(b)
    assert env(a)[0]["name"] == manifests.CONFIG_DIGEST_ENV


@pytest.mark.parametrize(
    ("mutate", "field", "fix"),
    [
        (lambda s: s.update(hostNetwork=True), "spec.hostNetwork", "remove hostNetwork"),
        (lambda s: s.update(hostPID=True), "spec.hostPID", "remove hostPID"),
        (lambda s: s.update(hostIPC=True), "spec.hostIPC", "remove hostIPC"),
        (lambda s: s.update(shareProcessNamespace=True), "spec.shareProcessNamespace", "remove"),
        (
            lambda s: s.update(securityContext={"runAsUser": 1337}),
            "spec.securityContext.runAsUser",
            "another uid",
        ),
        (
            lambda s: s.update(securityContext={"fsGroup": 1337}),
            "spec.securityContext.fsGroup",
            "another group",
        ),
        (
            lambda s: s.update(securityContext={"supplementalGroups": [5, 1337]}),
            "spec.securityContext.supplementalGroups",
            "remove it",
        ),
        (
            lambda s: s["containers"][0].update(securityContext={"privileged": True}),
            "spec.containers[0] (container 'workspace').securityContext.privileged",
            "remove it",
        ),
        (
            lambda s: s["containers"][0].update(securityContext={"runAsUser": 1337.0}),
            "spec.containers[0] (container 'workspace').securityContext.runAsUser",
            "another uid",
        ),
        (
            lambda s: s["containers"][0].update(securityContext={"runAsGroup": 1337}),
            "spec.containers[0] (container 'workspace').securityContext.runAsGroup",
            "another group",
        ),
        (
            lambda s: s["containers"][0].update(securityContext={"allowPrivilegeEscalation": True}),
            "spec.containers[0] (container 'workspace').securityContext.allowPrivilegeEscalation",
            "set it to false",
        ),
        (
            lambda s: s["containers"][0].update(
                securityContext={"capabilities": {"add": ["NET_ADMIN"]}}
            ),
            "spec.containers[0] (container 'workspace').securityContext.capabilities.add",
            "unsafe_allowed_capabilities",
        ),
        (
            lambda s: s["containers"][0].update(
                securityContext={"capabilities": {"add": ["CAP_SETUID"]}}
            ),
            "spec.containers[0] (container 'workspace').securityContext.capabilities.add",
            "defeat the egress redirect",
        ),
        (
            lambda s: s["containers"][0].update(
                securityContext={"capabilities": {"add": ["CHOWN"]}}
            ),
            "spec.containers[0] (container 'workspace').securityContext.capabilities.add",
            "no capability at all",
        ),
        (
            lambda s: s["containers"][0].update(
                securityContext={"seccompProfile": {"type": "Unconfined"}}
            ),
            "spec.containers[0] (container 'workspace').securityContext.seccompProfile.type",
            "RuntimeDefault",
        ),
        (
            lambda s: s.update(
                initContainers=[
                    {"name": "setup", "image": "x", "securityContext": {"privileged": True}}
                ]
            ),
            "spec.initContainers[0] (container 'setup').securityContext.privileged",
            "remove it",
        ),
        (
            lambda s: s["containers"].append({"name": "condukt-egress", "image": "evil"}),
            "spec.containers[1].name",
            "rename yours",
        ),
        (
            lambda s: s["volumes"].append({"name": "condukt-egress-trust", "emptyDir": {}}),
            "spec.volumes[1].name",
            "rename yours",
        ),
        (
            lambda s: s.update(ephemeralContainers=[{"name": "dbg", "image": "x"}]),
            "spec.ephemeralContainers",
            "remove ephemeralContainers",
        ),
        (
            lambda s: s["volumes"].append(
                {"name": "node", "hostPath": {"path": "/run/containerd"}}
            ),
            "spec.volumes[1] (volume 'node').hostPath",
            "emptyDir",
        ),
        (
            lambda s: s["volumes"].append({"name": "k", "secret": {"secretName": SECRET_NAME}}),
            "spec.volumes[1] (volume 'k').secret",
            "holds the CA key",
        ),
        (
            lambda s: s["volumes"].append(
                {"name": "k", "projected": {"sources": [{"secret": {"name": SECRET_NAME}}]}}
            ),
            "spec.volumes[1] (volume 'k').projected.sources[0]",
            "holds the CA key",
        ),
        (
            lambda s: s["containers"][0]["env"].append(
                {
                    "name": "K",
                    "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "ca-key.pem"}},
                }
            ),
            "spec.containers[0] (container 'workspace').env[1] ('K').valueFrom.secretKeyRef",
            "remove it",
        ),
        (
            lambda s: s["containers"][0].update(envFrom=[{"secretRef": {"name": SECRET_NAME}}]),
            "spec.containers[0] (container 'workspace').envFrom[0].secretRef",
            "remove it",
        ),
        (
            lambda s: s["containers"][0]["volumeMounts"].append(
                {"name": "work", "mountPath": "/etc/condukt/ca.pem"}
            ),
            "spec.containers[0] (container 'workspace').volumeMounts",
            "inside '/etc/condukt'",
        ),
        (
            lambda s: s["containers"][0].update(
                securityContext={"windowsOptions": {"hostProcess": True}}
            ),
            "spec.containers[0] (container 'workspace').securityContext.windowsOptions.hostProcess",
            "remove it",
        ),
        (
            lambda s: s["containers"][0]["volumeMounts"].append(
                {"name": "work", "mountPath": "/etc/ssl/cert.pem"}
            ),
            "spec.containers[0] (container 'workspace').volumeMounts",
            "move your mount",
        ),
        (
            lambda s: s["containers"][0]["volumeMounts"].append(
                {"name": "condukt-egress-config", "mountPath": "/k"}
            ),
            "spec.containers[0] (container 'workspace').volumeMounts",
            "holds the CA key",
        ),
        (lambda s: s.update(containers=[]), "spec.containers", "declare the workspace container"),
    ],
)
def test_bypass_and_clashes_are_refused(mutate: Any, field: str, fix: str) -> None:
    spec = workspace_spec()
    mutate(spec)
    with pytest.raises(ConfigError) as info:
        manifests.inject(spec, session())
    assert info.value.field == field
    assert fix in str(info.value)


def test_a_pod_level_seccomp_profile_is_inherited_not_overridden() -> None:
    spec = workspace_spec() | {
        "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "a.json"}}
    }
    out = manifests.inject(spec, session())
    assert "seccompProfile" not in out["containers"][0]["securityContext"]
    assert manifests.inject(out, session()) == out


def test_check_refuses_without_changing() -> None:
    manifests.check({"containers": [{"name": "workspace", "image": "x"}]}, session())
    with pytest.raises(ConfigError, match=r"spec\.hostNetwork"):
        manifests.check({"hostNetwork": True}, session())
    with pytest.raises(ConfigError, match="a patch may not change it"):
        manifests.check({"volumes": [{"name": manifests.CONFIG_VOLUME, "emptyDir": {}}]}, session())


def test_escape_hatch_allows_only_the_listed_capability() -> None:
    spec = workspace_spec()
    spec["containers"][0]["securityContext"] = {"capabilities": {"add": ["NET_BIND_SERVICE"]}}
    out = manifests.inject(spec, session(unsafe_allowed_capabilities=["NET_BIND_SERVICE"]))
    assert out["containers"][0]["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]
    spec["containers"][0]["securityContext"] = {"capabilities": {"add": ["NET_RAW"]}}
    with pytest.raises(ConfigError, match="NET_RAW"):
        manifests.inject(spec, session(unsafe_allowed_capabilities=["NET_BIND_SERVICE"]))


def test_user_init_containers_run_after_the_redirect_and_trust_the_ca() -> None:
    spec = workspace_spec() | {"initContainers": [{"name": "setup", "image": "python:3.13-slim"}]}
    out = manifests.inject(spec, session())
    assert [c["name"] for c in out["initContainers"]] == [
        manifests.NETFILTER_CONTAINER, manifests.FILTER_CONTAINER, manifests.SIDECAR_CONTAINER,
        DNS_CONTAINER, "setup",
    ]  # fmt: skip
    setup = out["initContainers"][4]
    assert any(m["mountPath"] == "/etc/ssl/cert.pem" for m in setup["volumeMounts"])


# --- Properties -------------------------------------------------------------


@given(user_containers, st.booleans(), st.booleans())
@settings(deadline=None)
def test_injection_properties(
    containers: list[dict[str, Any]], native: bool, plain_http: bool
) -> None:
    args = session(native_sidecar=native, allow_plain_http=plain_http)
    spec = {"containers": containers, "volumes": [{"name": "work", "emptyDir": {}}]}
    once = manifests.inject(spec, args)
    # Idempotent.
    assert manifests.inject(once, args) == once
    # Nothing of the user's is lost.
    out_by_name = {c["name"]: c for c in once["containers"] + once["initContainers"]}
    for container in containers:
        out = out_by_name[container["name"]]
        out_env = {e["name"]: e["value"] for e in out["env"]}
        for env in container["env"]:
            assert out_env[env["name"]] == env["value"]
    assert {"name": "work", "emptyDir": {}} in once["volumes"]
    assert_session_secure(once)
    assert_valid(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": once}, ("1.29.0",)
    )


@pytest.mark.parametrize(
    ("context", "field", "fix"),
    [
        (
            {"seccompProfile": {"type": "Unconfined"}},
            "spec.securityContext.seccompProfile.type",
            "RuntimeDefault",
        ),
        (
            {"windowsOptions": {"hostProcess": True}},
            "spec.securityContext.windowsOptions.hostProcess",
            "remove it",
        ),
    ],
)
def test_pod_level_bypass_settings_are_refused(
    context: dict[str, Any], field: str, fix: str
) -> None:
    """The docs promise these pod-level refusals; inject and check both keep them."""
    spec = workspace_spec() | {"securityContext": context}
    for refuse in (manifests.inject, manifests.check):
        with pytest.raises(ConfigError) as info:
            refuse(spec, session())
        assert info.value.field == field
        assert fix in info.value.message


# -- security round 2 ------------------------------------------------------------------

OTHER_SECRET = SandboxEgressArgs(session_id="someone else's run").names.secret_name({})
WS = "spec.containers[0] (container 'workspace')"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s["volumes"].append({"name": "k", "secret": {"secretName": OTHER_SECRET}}),
         "spec.volumes[1] (volume 'k').secret"),
        (lambda s: s["volumes"].append(
            {"name": "k", "projected": {"sources": [{"secret": {"name": OTHER_SECRET}}]}}),
         "spec.volumes[1] (volume 'k').projected.sources[0]"),
        (lambda s: s["containers"][0]["env"].append(
            {"name": "K", "valueFrom": {"secretKeyRef": {"name": OTHER_SECRET, "key": "k"}}}),
         f"{WS}.env[1] ('K').valueFrom.secretKeyRef"),
        (lambda s: s["containers"][0].update(envFrom=[{"secretRef": {"name": OTHER_SECRET}}]),
         f"{WS}.envFrom[0].secretRef"),
    ],
)  # fmt: skip
def test_another_sessions_secret_is_refused(mutate: Any, field: str) -> None:
    # Round 2: inject for session B accepted a volume of session A's Secret, CA key included.
    spec = workspace_spec()
    mutate(spec)
    with pytest.raises(ConfigError) as info:
        manifests.inject(spec, session())
    assert info.value.field == field
    assert f"another session's condukt-egress Secret {OTHER_SECRET!r}" in info.value.message
    assert "condukt-egress-*" in info.value.message


@pytest.mark.parametrize(
    ("mutate", "field", "fix"),
    [
        (lambda s: s.update(securityContext={"appArmorProfile": {"type": "Unconfined"}}),
         "spec.securityContext.appArmorProfile.type", "RuntimeDefault"),
        (lambda s: s["containers"][0].update(
            securityContext={"appArmorProfile": {"type": "Unconfined"}}),
         f"{WS}.securityContext.appArmorProfile.type", "RuntimeDefault"),
        (lambda s: s.update(securityContext={"seLinuxOptions": {"type": "spc_t"}}),
         "spec.securityContext.seLinuxOptions.type", "container_t"),
        (lambda s: s["containers"][0].update(securityContext={"seLinuxOptions": {"type": "spc_t"}}),
         f"{WS}.securityContext.seLinuxOptions.type", "container_t"),
        (lambda s: s["containers"][0].update(
            ports=[{"containerPort": 8080}, {"containerPort": 15002, "hostPort": 15002}]),
         f"{WS}.ports[1].hostPort", "remove hostPort"),
        (lambda s: s.update(securityContext={"sysctls": [
            {"name": "net.ipv4.tcp_syncookies", "value": "1"},
            {"name": "net.ipv4.conf.all.route_localnet", "value": "1"}]}),
         "spec.securityContext.sysctls[1] ('net.ipv4.conf.all.route_localnet')", "remove it"),
    ],
)  # fmt: skip
def test_unconfined_profiles_host_ports_and_unsafe_sysctls_are_refused(
    mutate: Any, field: str, fix: str
) -> None:
    # Round 2: all of these were accepted, while privileged was refused.
    spec = workspace_spec()
    mutate(spec)
    with pytest.raises(ConfigError) as info:
        manifests.inject(spec, session())
    assert info.value.field == field
    assert fix in info.value.message


def test_safe_sysctls_confined_profiles_and_sandbox_runtimes_stay_allowed() -> None:
    spec = workspace_spec() | {
        "runtimeClassName": "gvisor",  # gVisor/Kata: good practice for agent sandboxes
        "securityContext": {
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
            "seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"},
        },
    }
    spec["containers"][0]["ports"] = [{"containerPort": 8080, "hostPort": 0}]
    out = manifests.inject(spec, session())
    assert out["runtimeClassName"] == "gvisor"
    assert_valid({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": out})


def test_apparmor_annotations_and_foreign_session_labels_are_refused() -> None:
    args = session()
    manifests.check_pod_metadata({"annotations": {"a": "unconfined"}}, args)
    with pytest.raises(ConfigError) as info:
        manifests.check_pod_metadata(
            {"annotations": {f"{manifests.APPARMOR_ANNOTATION_PREFIX}workspace": "unconfined"}},
            args,
        )
    assert info.value.field.startswith("metadata.annotations[")
    with pytest.raises(ConfigError, match=r"^metadata\.labels\["):
        manifests.check_pod_metadata({"labels": {args.names.label_key: "other"}}, args)


# -- property 9: patches -------------------------------------------------------------


@pytest.mark.parametrize(
    "container",
    [
        {"name": "added", "image": "x"},  # no securityContext at all
        {"name": "ws", "securityContext": {"capabilities": {"drop": []}}},  # drop emptied
        {"name": "ws", "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
    ],
)
def test_harden_patch_leaves_every_container_hardened(container: dict[str, Any]) -> None:
    # Round 2: a patch adding a container without securityContext, or emptying
    # capabilities.drop, was accepted unchanged; a root container with the runtime's
    # default capabilities can setuid(1337) and skip the redirect.
    patch = {"containers": [container]}
    out = manifests.harden_patch(patch, session())
    assert_patch_hardened(out)
    assert out["containers"][0]["securityContext"]["runAsNonRoot"] is True
    assert patch == {"containers": [container]}, "the input is not modified"
    assert manifests.harden_patch(out, session()) == out


def test_a_root_container_in_a_patch_is_refused_or_hardened_when_root_is_allowed() -> None:
    root = {"name": "root", "image": "x", "securityContext": {"runAsUser": 0}}
    with pytest.raises(ConfigError) as info:
        manifests.harden_patch({"containers": [root]}, session())
    assert info.value.field == "spec.containers[0] (container 'root').securityContext.runAsUser"
    out = manifests.harden_patch({"containers": [root]}, session(allow_root_workspace=True))
    assert_patch_hardened(out)  # root, but with no capability to setuid(1337)


def test_harden_patch_refuses_init_containers() -> None:
    with pytest.raises(ConfigError) as info:
        manifests.harden_patch(
            {"initContainers": [{"name": "setup", "securityContext": {"runAsUser": 1000}}]},
            session(),
        )
    assert info.value.field == "spec.initContainers"
    assert "before the egress redirect exists" in info.value.message
