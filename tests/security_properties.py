"""The testable properties of ``security.md``, as reusable assertions.

Each function checks one numbered property on plain manifests, so the same
checks run on what the builders return, what the component registers under
mocks, what the transform produces and what ``render`` prints.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from condukt_egress import contract
from condukt_egress.manifests import (
    CONFIG_VOLUME,
    NETFILTER_CONTAINER,
    SIDECAR_CONTAINER,
    SPECIAL_IPV4_RANGES,
)

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


def assert_capabilities(pod_spec: JSON, allowed: frozenset[str] = frozenset()) -> None:
    """Property 2: only the netfilter container adds capabilities; all drop ALL."""
    for container in containers(pod_spec):
        caps = (container.get("securityContext") or {}).get("capabilities") or {}
        assert "ALL" in (caps.get("drop") or ()), f"{container['name']} does not drop ALL"
        added = set(caps.get("add") or ())
        if container["name"] == NETFILTER_CONTAINER:
            assert added == set(contract.NETFILTER_CAPABILITIES)
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


def assert_session_secure(pod_spec: JSON, uid: int = 1337, gid: int = 1337) -> None:
    """Properties 1-4 and 10 on an injected pod spec."""
    assert_no_probe_of_the_sidecar_ports(pod_spec, _sidecar_ports(pod_spec))
    assert_key_only_in_sidecar(pod_spec)
    assert_capabilities(pod_spec)
    assert_sidecar_identity(pod_spec, uid, gid)
    assert_no_host_namespaces(pod_spec)
    names = [c["name"] for c in pod_spec["initContainers"]]
    assert names[0] == NETFILTER_CONTAINER, "the redirect must be installed before any user code"


def assert_hardened(pod_spec: JSON) -> None:
    """Items 3 and 9: seccomp confined, no node paths, no ephemeral containers."""
    pod_seccomp = ((pod_spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    assert pod_seccomp != "Unconfined"
    for container in containers(pod_spec):
        context = container.get("securityContext") or {}
        seccomp = (context.get("seccompProfile") or {}).get("type") or pod_seccomp
        assert seccomp in ("RuntimeDefault", "Localhost"), container["name"]
    assert not any("hostPath" in v for v in pod_spec.get("volumes") or ())
    assert not pod_spec.get("ephemeralContainers")


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
