"""The testable properties of ``security.md``, as reusable assertions.

Each function checks one numbered property on plain manifests, so the same
checks run on what the builders return, what the component registers under
mocks, what the transform produces and what ``render`` prints.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.utils import CryptographyDeprecationWarning

from condukt_egress import compat, contract
from condukt_egress.manifests import (
    CA_ENV_VARS,
    CONFIG_VOLUME,
    FILTER_CAPABILITIES,
    FILTER_CONTAINER,
    NETFILTER_CONTAINER,
    SIDECAR_CONTAINER,
    SPECIAL_IPV4_RANGES,
    TRUST_VOLUME,
    WORKSPACE_TRUST_DIR,
)
from condukt_egress.naming import HASH_CHARS, SessionNames

JSON = Mapping[str, Any]


def containers(pod_spec: JSON) -> Iterator[JSON]:
    """Every init container and container of a pod spec."""
    yield from pod_spec.get("initContainers") or ()
    yield from pod_spec.get("containers") or ()


def _secret_volume_keys(pod_spec: JSON) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for volume in pod_spec.get("volumes") or ():
        secret = volume.get("secret")
        if secret is None:
            continue
        items = secret.get("items")
        # A secret volume without items exposes every key of the Secret.
        keys = {i["key"] for i in items} if items else {"*"}
        out[volume["name"]] = keys
    return out


def assert_key_only_in_sidecar(pod_spec: JSON) -> None:
    """Property 1: only the sidecar mounts the CA key or the policy."""
    keys = _secret_volume_keys(pod_spec)
    for container in containers(pod_spec):
        for mount in container.get("volumeMounts") or ():
            exposed = keys.get(mount["name"], set())
            sensitive = exposed & {contract.CA_KEY_FILE, contract.POLICY_FILE, "*"}
            if container["name"] == SIDECAR_CONTAINER:
                continue
            assert not sensitive, (
                f"container {container['name']} mounts {mount['name']} exposing {sensitive}"
            )
    sidecar = next(c for c in containers(pod_spec) if c["name"] == SIDECAR_CONTAINER)
    mounted = {m["name"] for m in sidecar["volumeMounts"]}
    assert CONFIG_VOLUME in mounted


PRIVILEGED_INIT: Mapping[str, frozenset[str]] = {
    NETFILTER_CONTAINER: frozenset(contract.NETFILTER_CAPABILITIES),
    FILTER_CONTAINER: frozenset(FILTER_CAPABILITIES),
}
"""The only containers that add capabilities, and exactly what each adds: the
netfilter init container (NET_ADMIN, NET_RAW) and the filter container (NET_ADMIN alone).
Both are init containers of ours that run as root and exit before user code."""


def assert_capabilities(pod_spec: JSON, allowed: frozenset[str] = frozenset()) -> None:
    """Property 2: only the netfilter containers add capabilities; all drop ALL."""
    inits = {c["name"]: c for c in pod_spec.get("initContainers") or ()}
    for container in containers(pod_spec):
        caps = (container.get("securityContext") or {}).get("capabilities") or {}
        assert "ALL" in (caps.get("drop") or ()), f"{container['name']} does not drop ALL"
        added = set(caps.get("add") or ())
        if container["name"] in PRIVILEGED_INIT:
            assert added == PRIVILEGED_INIT[container["name"]], container["name"]
            assert inits.get(container["name"]) is container, "must be an init container"
            assert "restartPolicy" not in container, "must exit before user code runs"
            assert (container.get("securityContext") or {}).get("allowPrivilegeEscalation") is False
        else:
            assert added <= allowed, f"{container['name']} adds {added}"
            assert (container.get("securityContext") or {}).get("allowPrivilegeEscalation") is False


def assert_sidecar_identity(pod_spec: JSON, uid: int, gid: int) -> None:
    """Property 3: only the sidecar runs as the sidecar uid or gid."""
    pod_context = pod_spec.get("securityContext") or {}
    assert pod_context.get("runAsUser") != uid
    assert pod_context.get("runAsGroup") != gid
    assert pod_context.get("fsGroup") != gid
    for container in containers(pod_spec):
        context = container.get("securityContext") or {}
        if container["name"] == SIDECAR_CONTAINER:
            assert context["runAsUser"] == uid
            assert context["runAsGroup"] == gid
        else:
            assert context.get("runAsUser") != uid, container["name"]
            assert context.get("runAsGroup") != gid, container["name"]


def assert_no_host_namespaces(pod_spec: JSON) -> None:
    """Property 4: no privileged container, no host namespaces."""
    for name in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"):
        assert not pod_spec.get(name), name
    for container in containers(pod_spec):
        assert not (container.get("securityContext") or {}).get("privileged"), container["name"]


def assert_network_policy(
    policy: JSON,
    pod_labels: Mapping[str, str],
    *,
    plain_http: bool,
    dns_labels: Mapping[str, str] | None = None,
) -> None:
    """Property 5: ingress denied, DNS to cluster DNS only, 443 (80) to public IPv4 only."""
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": dict(pod_labels)}
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert not spec.get("ingress")
    dns_rule, web_rule, *extra = spec["egress"]
    assert {(p["protocol"], p["port"]) for p in dns_rule["ports"]} == {("UDP", 53), ("TCP", 53)}
    for peer in dns_rule["to"]:
        if "ipBlock" in peer:
            assert peer["ipBlock"]["cidr"].endswith("/32")
        else:
            assert peer["podSelector"]["matchLabels"] == dict(dns_labels or {"k8s-app": "kube-dns"})
            assert peer["namespaceSelector"]["matchLabels"]
    expected_ports = {443, 80} if plain_http else {443}
    assert {(p["protocol"], p["port"]) for p in web_rule["ports"]} == {
        ("TCP", p) for p in expected_ports
    }
    (block,) = web_rule["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert set(SPECIAL_IPV4_RANGES) <= set(block["ipBlock"]["except"])
    for rule in spec["egress"]:
        for peer in rule.get("to") or ():
            if "ipBlock" in peer:
                assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).version == 4
    assert all("to" in r and r["to"] for r in extra), "an extra rule without peers allows all"


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def assert_names(names: SessionNames, other: SessionNames | None = None) -> None:
    """Property 6: valid names and label, >= 128 bits of the id's hash, distinct per id."""
    secret = names.secret_name({})
    for value in (secret[: -HASH_CHARS - 1], names.network_policy, names.pod, names.label_value):
        assert _DNS_LABEL.match(value), value
        assert len(value) <= 63, value
    assert _DNS_LABEL.match(secret), secret
    assert names.owns_secret(secret), secret
    hash_part = names.label_value.rsplit("-", 1)[-1]
    assert len(hash_part) * 5 >= 128, f"{hash_part!r} carries fewer than 128 bits"
    assert len(names.ca_common_name) <= 64
    if other is not None and other.session_id != names.session_id:
        assert not names.owns_secret(other.secret_name({}))
        assert names.network_policy != other.network_policy
        assert names.pod != other.pod
        assert names.label_value != other.label_value


def assert_session_secure(pod_spec: JSON, uid: int = 1337, gid: int = 1337) -> None:
    """Properties 1-4 and 10 on an injected pod spec."""
    assert_no_probe_of_the_sidecar_ports(pod_spec, _sidecar_ports(pod_spec))
    assert_key_only_in_sidecar(pod_spec)
    assert_capabilities(pod_spec)
    assert_sidecar_identity(pod_spec, uid, gid)
    assert_no_host_namespaces(pod_spec)
    names = [c["name"] for c in pod_spec["initContainers"]]
    assert names[:2] == [NETFILTER_CONTAINER, FILTER_CONTAINER], (
        "the redirect and the filter rules must be installed before any user code"
    )


def assert_hardened(pod_spec: JSON) -> None:
    """Items 3 and 9: seccomp confined, no node paths, non-root workspace containers."""
    pod_seccomp = ((pod_spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    assert pod_seccomp != "Unconfined"
    for container in containers(pod_spec):
        context = container.get("securityContext") or {}
        seccomp = (context.get("seccompProfile") or {}).get("type") or pod_seccomp
        assert seccomp in ("RuntimeDefault", "Localhost"), container["name"]
    assert not any("hostPath" in v for v in pod_spec.get("volumes") or ())
    for container in containers(pod_spec):
        if container["name"].startswith("condukt-egress"):
            continue
        context = container.get("securityContext") or {}
        # Property 9 (non-root by default): root passes the control-port filter rule.
        assert context.get("runAsNonRoot") is True, container["name"]
        assert context.get("runAsUser") != 0, container["name"]
    assert not pod_spec.get("ephemeralContainers")


def assert_container_hardened(container: JSON, pod_context: JSON | None = None) -> None:
    """Property 9 on one user container: drops ALL, cannot escalate, confined by seccomp."""
    context = container.get("securityContext") or {}
    name = container.get("name")
    assert "ALL" in ((context.get("capabilities") or {}).get("drop") or ()), name
    assert context.get("allowPrivilegeEscalation") is False, name
    assert not context.get("privileged"), name
    pod_seccomp = ((pod_context or {}).get("seccompProfile") or {}).get("type")
    seccomp = (context.get("seccompProfile") or {}).get("type") or pod_seccomp
    assert seccomp in ("RuntimeDefault", "Localhost"), name


def assert_patch_hardened(pod_spec: JSON) -> None:
    """Property 9 on a patch's pod spec: every container it adds or touches ends hardened.

    A patch merges into a pod declared elsewhere, so it carries no sidecar; it
    must carry no init container either (server-side apply could order one
    before the redirect), and every container in it is hardened.
    """
    assert not pod_spec.get("initContainers"), "a patch may not carry init containers"
    assert not pod_spec.get("ephemeralContainers")
    for name in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"):
        assert not pod_spec.get(name), name
    for container in pod_spec.get("containers") or ():
        assert container.get("name") not in (NETFILTER_CONTAINER, SIDECAR_CONTAINER)
        assert_container_hardened(container, pod_spec.get("securityContext"))


def pod_template(obj: JSON) -> JSON:
    """The pod template (``metadata`` and ``spec``) of a workload object of any kind."""
    kind = obj["kind"]
    if kind == "Pod":
        return obj
    spec: JSON = obj["spec"]
    if kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: JSON = spec["template"]
    return template


def assert_workload_secure(obj: JSON, pod_labels: Mapping[str, str], namespace: str) -> None:
    """Properties 1-4 and 9 on an injected workload, and that the NetworkPolicy selects it."""
    template = pod_template(obj)
    assert dict(pod_labels).items() <= (template["metadata"].get("labels") or {}).items()
    assert obj["metadata"]["namespace"] == namespace
    assert_session_secure(template["spec"])
    assert_hardened(template["spec"])


_CONNECTING_HANDLERS = ("tcpSocket", "httpGet", "grpc")


def assert_no_probe_of_the_sidecar_ports(pod_spec: JSON, ports: tuple[int, int]) -> None:
    """Property 10: no probe or hook connects to the proxy or control port.

    The sidecar takes every connection accepted on the proxy port for
    redirected workspace traffic (upstream src/proxy/mod.rs:89-105) and serves
    one control peer at a time (src/proxy/control.rs); kubelet's TCP/HTTP/gRPC
    checks would be such connections. Our own containers use no network probe.
    """
    names = {p: p for p in ports} | {"proxy": "proxy", "control": "control"}
    for container in containers(pod_spec):
        handlers = [
            container.get(p) or {} for p in ("startupProbe", "livenessProbe", "readinessProbe")
        ]
        lifecycle = container.get("lifecycle") or {}
        handlers += [lifecycle.get("postStart") or {}, lifecycle.get("preStop") or {}]
        for handler in handlers:
            for kind in _CONNECTING_HANDLERS:
                if kind not in handler:
                    continue
                assert container["name"] not in (SIDECAR_CONTAINER, NETFILTER_CONTAINER), (
                    f"{container['name']} has a {kind} check"
                )
                assert handler[kind].get("port") not in names, (
                    f"{container['name']} {kind} connects to {handler[kind].get('port')}"
                )


def _sidecar_ports(pod_spec: JSON) -> tuple[int, int]:
    sidecar = next(c for c in containers(pod_spec) if c["name"] == SIDECAR_CONTAINER)
    by_name = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    return by_name["proxy"], by_name["control"]


def secret_files(secret: JSON) -> dict[str, bytes]:
    """A Secret's files as kubelet writes them: ``stringData`` as UTF-8, ``data`` decoded."""
    text = secret.get("stringData") or {}
    binary = secret.get("data") or {}
    assert not set(text) & set(binary), "a key in both stringData and data: stringData wins"
    files = {key: base64.b64decode(value, validate=True) for key, value in binary.items()}
    files.update({key: value.encode() for key, value in text.items()})
    return files


def _quiet_certificates() -> contextlib.AbstractContextManager[None]:
    """certifi ships a root with a negative serial number, which ``cryptography`` warns about."""
    return warnings.catch_warnings(category=CryptographyDeprecationWarning, action="ignore")


def pem_certificates(pem: bytes) -> list[bytes]:
    """The DER form of every certificate of a PEM bundle, in order."""
    with _quiet_certificates():
        certs = x509.load_pem_x509_certificates(pem)
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def java_trusted(store: bytes) -> list[bytes]:
    """The DER certificates a password-less PKCS#12 trust store holds; it holds no key."""
    with _quiet_certificates():
        loaded = pkcs12.load_pkcs12(store, None)
    assert loaded.key is None, "the trust store holds a key"
    assert loaded.cert is None, "the trust store holds a key's certificate"
    return [c.certificate.public_bytes(serialization.Encoding.DER) for c in loaded.additional_certs]


def workspace_trust_view(secret: JSON, pod_spec: JSON) -> dict[str, bytes]:
    """The files a workspace container sees in its trust directory, as kubelet projects them.

    Follows the trust volume's ``items`` (file path <- Secret key) over the
    Secret's files; a key the Secret lacks would fail the pod's start.
    """
    volume = next(v for v in pod_spec["volumes"] if v["name"] == TRUST_VOLUME)
    data = secret_files(secret)
    view: dict[str, bytes] = {}
    for item in volume["secret"]["items"]:
        assert item["key"] in data, f"the trust volume projects {item['key']!r}, not in the Secret"
        view[item["path"]] = data[item["key"]]
    return view


def assert_workspace_trusts_the_ca(secret: JSON, pod_spec: JSON) -> None:
    """Every CA variable and every system trust-store path of a workspace names a file
    holding the session CA."""
    view = workspace_trust_view(secret, pod_spec)
    ca = secret["stringData"][contract.CA_CERT_FILE].strip().encode()
    profile = {
        compat.OPENSSL_CONF_FILE,
        f"{compat.PYTHON_DIR}/{compat.SITECUSTOMIZE_FILE}",
        compat.JAVA_TRUSTSTORE_FILE,
    }
    assert {contract.CA_CERT_FILE, contract.BUNDLE_FILE} <= set(view)
    assert set(view) - {contract.CA_CERT_FILE, contract.BUNDLE_FILE} <= profile, set(view)
    key = secret["stringData"][contract.CA_KEY_FILE]
    key_der = serialization.load_pem_private_key(key.encode(), None).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for path, content in view.items():  # as PEM text, or as DER (the PKCS#12 store)
        assert key.strip().encode() not in content, f"the workspace would see the CA key in {path}"
        assert key_der not in content, f"the workspace would see the CA key in {path}"
    store = view.get(compat.JAVA_TRUSTSTORE_FILE)
    if store is not None:  # the JVM's trust store: the bundle's certificates, no key
        assert java_trusted(store) == pem_certificates(view[contract.BUNDLE_FILE])
    workspace = next(c for c in pod_spec["containers"] if c["name"] != SIDECAR_CONTAINER)
    env = {e["name"]: e.get("value") for e in workspace.get("env") or ()}
    for name, file in CA_ENV_VARS:
        assert env[name] == f"{WORKSPACE_TRUST_DIR}/{file}"
        assert ca in view[file], f"{name} names {file}, which lacks the session CA"
    for mount in workspace["volumeMounts"]:
        if mount["name"] == TRUST_VOLUME and "subPath" in mount:
            assert ca in view[mount["subPath"]], mount["mountPath"]
