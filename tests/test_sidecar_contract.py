"""What we generate, checked against the literal facts of the sidecar's source.

Every fact cites the upstream file and line (tuist/condukt 1.5.1,
``native/condukt_egress``; unchanged through 1.11.0).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity

from condukt_egress import contract, manifests
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.naming import MAX_SESSION_ID_LENGTH, validate_session_id
from condukt_egress.policy import DefaultAction, EgressPolicy, allow, decide, deny
from tests import clap_model
from tests import netfilter_model as nf
from tests.security_properties import assert_session_secure

KEY = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"

session_ids = st.text(min_size=1, max_size=MAX_SESSION_ID_LENGTH).filter(
    lambda s: s.strip() and "\x00" not in s
)


def _sidecar(spec: dict[str, Any]) -> dict[str, Any]:
    containers = [*spec.get("initContainers", []), *spec.get("containers", [])]
    return next(c for c in containers if c["name"] == manifests.SIDECAR_CONTAINER)


# --- Item 1: argv that clap parses (upstream src/main.rs:65 `Cli::parse()`) ---


@pytest.mark.parametrize("session_id", ["-42", "--resume", "-", "--session-id", "a b", "x=y", "-h"])
def test_session_ids_that_look_like_flags_reach_the_sidecar_intact(session_id: str) -> None:
    args = contract.proxy_args(proxy_port=15001, control_port=15002, session_id=session_id)
    mode, values = clap_model.parse(args)
    assert mode == "proxy"
    assert values["session-id"] == session_id


def test_the_old_separate_word_form_is_what_clap_rejects() -> None:
    with pytest.raises(clap_model.UsageError, match="unexpected argument '-4' found"):
        clap_model.parse(["proxy", "--ca-cert-path=/c", "--ca-key-path=/k", "--session-id", "-42"])


@given(session_ids)
def test_every_accepted_session_id_parses_as_itself(session_id: str) -> None:
    validate_session_id(session_id)
    container = _sidecar(
        manifests.inject(
            {"containers": [{"name": "w", "image": "i"}]}, SandboxEgressArgs(session_id=session_id)
        )
    )
    assert container["command"] == [contract.BINARY]
    _, values = clap_model.parse(container["args"])
    assert values == {
        "listen": "0.0.0.0:15001",  # default of src/proxy/mod.rs:28
        "control-listen": "0.0.0.0:15002",  # src/proxy/mod.rs:33-37
        "policy-file": "/etc/condukt/policy.json",  # src/proxy/mod.rs:42-46
        "ca-cert-path": "/etc/condukt/ca.pem",
        "ca-key-path": "/etc/condukt/ca-key.pem",
        "session-id": session_id,  # src/proxy/mod.rs:57-59
    }


def test_every_value_flag_we_generate_is_one_word() -> None:
    args = SandboxEgressArgs(session_id="-1", proxy_port=16001, sidecar_uid=2000)
    spec = manifests.inject({"containers": [{"name": "w", "image": "i"}]}, args)
    netfilter = spec["initContainers"][0]
    assert netfilter["args"] == ["netfilter-setup", "--proxy-port=16001", "--sidecar-uid=2000"]
    assert clap_model.parse(netfilter["args"]) == (
        "netfilter-setup",
        {"proxy-port": "16001", "sidecar-uid": "2000"},  # src/netfilter.rs:30-36
    )
    for word in _sidecar(spec)["args"][1:]:
        assert word.startswith("--")
        assert "=" in word


def test_a_nul_in_the_session_id_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"^session_id: contains a NUL.*remove the NUL"):
        validate_session_id("a\x00b")


# --- Item 3: policy.json the sidecar's serde structs accept ---------------------
# Upstream src/proxy/mod.rs:73 parses the file with serde_json::from_str into
# src/proxy/policy.rs:23-64 (`Policy`, `Rule` tagged by "type", `Action`);
# any error ends the proxy (src/main.rs:71-76).


class StrictJsonError(ValueError):
    """What serde_json would refuse, and why."""


def _no_float(text: str) -> object:
    raise StrictJsonError(f"float {text} in an integer field")


def _no_constant(text: str) -> object:
    raise StrictJsonError(f"{text} is not JSON")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise StrictJsonError(f"duplicate field in {keys}")  # serde derive: "duplicate field"
    return dict(pairs)


def _well_formed(value: object) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")  # serde_json: "lone leading surrogate in hex escape"
        except UnicodeEncodeError as exc:
            raise StrictJsonError(f"lone surrogate in {value!r}") from exc
    elif isinstance(value, list):
        for item in value:
            _well_formed(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _well_formed(key)
            _well_formed(item)


def _u64(value: object, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise StrictJsonError(f"{field}: {value!r} is not a u64/usize")


def _strings(value: object, field: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StrictJsonError(f"{field}: expected a sequence of strings, got {value!r}")


def sidecar_parse_policy(raw: bytes) -> dict[str, object]:
    """Parse ``policy.json`` with serde_json's rules and the upstream structs' types."""
    text = raw.decode("utf-8")  # from_str on a String: the file must be UTF-8
    doc = json.loads(
        text,
        parse_float=_no_float,
        parse_constant=_no_constant,
        object_pairs_hook=_no_duplicates,
    )
    _well_formed(doc)
    if not isinstance(doc, dict):
        raise StrictJsonError("policy must be an object")
    for index, rule in enumerate(doc.get("rules", [])):  # policy.rs:25-26
        if not isinstance(rule, dict) or rule.get("type") not in ("allow", "deny", "decide"):
            raise StrictJsonError(f"rules[{index}]: unknown variant")  # policy.rs:44-56
        if rule["type"] != "decide" and "hosts" in rule:
            _strings(rule["hosts"], f"rules[{index}].hosts")  # policy.rs:47-54
    if doc.get("default", "deny") not in ("allow", "deny"):  # policy.rs:28-29, 58-64
        raise StrictJsonError("default: unknown variant")
    _strings(doc.get("redact", []), "redact")  # policy.rs:31-32
    _u64(doc.get("max_body_capture", 4096), "max_body_capture")  # policy.rs:34-35
    _u64(doc.get("decide_timeout_ms", 5000), "decide_timeout_ms")  # policy.rs:40-41
    return doc


def test_the_strict_parser_refuses_what_serde_refuses() -> None:
    for bad in (
        b'{"redact":["\\ud800"]}',
        b'{"max_body_capture":1.0}',
        b'{"default":"Deny"}',
        b'{"rules":[{"type":"Allow"}]}',
        b'{"default":"deny","default":"deny"}',
    ):
        with pytest.raises(StrictJsonError):
            sidecar_parse_policy(bad)


surrogate_text = st.text(
    st.characters(codec=None, categories=["Cs", "Ll", "Nd", "Po"]), min_size=1, max_size=6
)


@given(
    st.lists(surrogate_text, max_size=3),
    st.sampled_from(["allow", "deny"]).map(lambda d: cast("DefaultAction", d)),
    st.integers(0, 16 * 1024 * 1024),
    st.none() | st.integers(1, 600_000),
)
def test_every_accepted_policy_serialises_to_json_the_sidecar_parses(
    redact: list[str], default: DefaultAction, max_body: int, timeout: int | None
) -> None:
    rules = [allow("api.github.com", "*.openai.com"), deny("**.internal")]
    if timeout is not None:
        rules.append(decide(timeout))
    build = partial(
        EgressPolicy, rules=rules, default=default, redact=redact, max_body_capture=max_body
    )
    if any(not _encodes(entry) for entry in redact):
        with pytest.raises(PolicyError, match=r"^redact\[\d\]: contains .* unpaired surrogate"):
            build()
        return
    policy = build()
    doc = sidecar_parse_policy(policy.to_json().encode("utf-8"))
    assert doc == policy.to_wire()
    data = manifests.secret_data(SandboxEgressArgs(session_id="p", policy=policy), "c", KEY)
    assert sidecar_parse_policy(data[contract.POLICY_FILE].encode("utf-8")) == doc


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def test_a_lone_surrogate_in_redact_names_the_field_and_the_fix() -> None:
    with pytest.raises(
        PolicyError,
        match=r"^redact\[1\]: contains '\\ud800', an unpaired "
        r"surrogate.*proxy exits: write well-formed text",
    ):
        EgressPolicy(redact=["x-token", "\ud800"])
    with pytest.raises(PolicyError, match=r"^policy\.redact\[0\]: .*unpaired surrogate"):
        SandboxEgressArgs(session_id="p", policy={"redact": ["a\udfffb"]})


# --- Item 2: no probe connects to the proxy or control port ----------------------
# Every connection accepted on --listen is handled as redirected workspace
# traffic (src/proxy/mod.rs:89-105 -> conn::handle); the control channel has
# one peer slot (src/proxy/control.rs). The listener is bound after the
# control channel (src/proxy/mod.rs:84 then :86).


@pytest.mark.parametrize("native", [True, False])
def test_the_sidecar_start_probe_reads_proc_instead_of_connecting(native: bool) -> None:
    spec = manifests.inject(
        {"containers": [{"name": "w", "image": "i"}]},
        SandboxEgressArgs(session_id="p", native_sidecar=native),
    )
    sidecar = _sidecar(spec)
    probe = sidecar["startupProbe"]
    assert set(probe) == {"exec", "periodSeconds", "failureThreshold"}
    assert probe["exec"]["command"] == [
        "grep",
        "-qE",
        "^ *[0-9]+: 00000000:3A99 00000000:0000 0A ",
        "/proc/net/tcp",
    ]  # 0x3A99 = 15001
    for container in [*spec["initContainers"], *spec["containers"]]:
        assert not {"livenessProbe", "readinessProbe", "lifecycle"} & set(container)


@pytest.mark.skipif(
    not Path("/proc/net/tcp").exists() or shutil.which("grep") is None,
    reason="needs Linux /proc/net/tcp and grep, as in the sidecar image",
)
def test_the_probe_command_sees_a_listener_without_connecting() -> None:
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))  # noqa: S104 - the sidecar's own bind address
        port = server.getsockname()[1]
        command = manifests.listen_probe_command(port)
        assert subprocess.run(command, check=False).returncode == 1  # bound, not listening
        server.listen()
        assert subprocess.run(command, check=False).returncode == 0
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()  # the probe never connected
    assert subprocess.run(command, check=False).returncode == 1


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ({"readinessProbe": {"tcpSocket": {"port": 15001}}}, "readinessProbe.tcpSocket.port"),
        (
            {"livenessProbe": {"httpGet": {"port": 15002, "path": "/"}}},
            "livenessProbe.httpGet.port",
        ),
        ({"startupProbe": {"grpc": {"port": 15002}}}, "startupProbe.grpc.port"),
        (
            {"lifecycle": {"postStart": {"tcpSocket": {"port": "proxy"}}}},
            "lifecycle.postStart.tcpSocket.port",
        ),
    ],
)
def test_user_probes_of_the_sidecar_ports_are_refused(
    container: dict[str, object], field: str
) -> None:
    spec = {"containers": [{"name": "w", "image": "i", **container}]}
    with pytest.raises(ConfigError, match=r"connects to port .*use an exec probe") as info:
        manifests.inject(spec, SandboxEgressArgs(session_id="p"))
    assert info.value.field == f"spec.containers[0] (container 'w').{field}"


# --- Item 8: pod-level resources (Kubernetes 1.34+: PodLevelResources on) ----------

# kubernetes/website content/en/examples/pods/resource/pod-level-resources.yaml
POD_LEVEL_EXAMPLE: dict[str, Any] = {
    "resources": {
        "limits": {"cpu": "1", "memory": "200Mi"},
        "requests": {"cpu": "1", "memory": "100Mi"},
    },
    "containers": [
        {
            "name": "pod-resources-demo-ctr-1",
            "image": "nginx",
            "resources": {
                "limits": {"cpu": "0.5", "memory": "100Mi"},
                "requests": {"cpu": "0.5", "memory": "50Mi"},
            },
        },
        {"name": "pod-resources-demo-ctr-2", "image": "fedora", "command": ["sleep", "inf"]},
    ],
}


def k8s_quantity(value: object) -> Decimal:
    """The official client's parser, independent of ours."""
    return Decimal(str(parse_quantity(value)))  # type: ignore[no-untyped-call]


def _amount(container: dict[str, Any], section: str, name: str) -> Decimal:
    resources = container.get("resources") or {}
    value = (resources.get(section) or {}).get(name)
    if value is None and section == "requests":
        value = (resources.get("limits") or {}).get(name)
    return Decimal(0) if value is None else Decimal(str(k8s_quantity(value)))


def api_server_errors(spec: dict[str, Any]) -> list[str]:
    """The API server's pod-level resource checks, written from its rules.

    Pod requests >= the aggregate container requests (sum of containers and
    sidecars vs the largest init container plus the sidecars before it);
    every container's limit <= the pod limit; pod requests <= pod limits.
    """
    errors = []
    pod = spec["resources"]
    every = [*spec.get("initContainers", []), *spec["containers"]]
    for name, value in pod.get("requests", {}).items():
        total = sum((_amount(c, "requests", name) for c in spec["containers"]), Decimal(0))
        sidecars = peak = Decimal(0)
        for init in spec.get("initContainers", []):
            amount = _amount(init, "requests", name)
            if init.get("restartPolicy") == "Always":
                total += amount
                sidecars += amount
                peak = max(peak, sidecars)
            else:
                peak = max(peak, amount + sidecars)
        if Decimal(str(k8s_quantity(value))) < max(total, peak):
            errors.append(f"requests.{name} must be >= aggregate container requests")
        limit = pod.get("limits", {}).get(name)
        if limit is not None and k8s_quantity(limit) < k8s_quantity(value):
            errors.append(f"requests.{name} must be <= limits")
    for name, value in pod.get("limits", {}).items():
        for container in every:
            if _amount(container, "limits", name) > Decimal(str(k8s_quantity(value))):
                errors.append(f"{container['name']} limits.{name} above the pod limit")
    return errors


def test_the_api_server_model_rejects_a_naive_injection() -> None:
    assert api_server_errors(POD_LEVEL_EXAMPLE) == []
    naive = manifests.inject(POD_LEVEL_EXAMPLE, SandboxEgressArgs(session_id="p"))
    naive["resources"] = POD_LEVEL_EXAMPLE["resources"]
    assert "requests.memory must be >= aggregate container requests" in api_server_errors(naive)


@pytest.mark.parametrize("native", [True, False])
def test_pod_level_resources_grow_by_what_we_add(native: bool) -> None:
    args = SandboxEgressArgs(session_id="p", native_sidecar=native)
    spec = manifests.inject(POD_LEVEL_EXAMPLE, args)
    assert api_server_errors(spec) == []
    # The sidecar adds 50m/64Mi to the sum (native or not) and the resolver
    # 10m/32Mi (limits 200m/128Mi); the netfilter init container (10m/16Mi)
    # runs alone before them and stays below that sum.
    assert spec["resources"] == {
        "requests": {"cpu": "1060m", "memory": "196Mi"},
        "limits": {"cpu": "2200m", "memory": "584Mi"},
    }
    assert manifests.inject(spec, args) == spec  # idempotent
    assert_session_secure(spec)


def test_pod_level_resources_cover_a_large_plain_init_container() -> None:
    args = SandboxEgressArgs(
        session_id="p",
        sidecar_resources={"requests": {"memory": "1Mi"}, "limits": {"memory": "1Mi"}},
        dns_filter="off",  # the resolver's 32Mi would outweigh the init peak
    )
    spec = manifests.inject(
        {
            "resources": {"requests": {"memory": "10Mi"}},
            "containers": [{"name": "w", "image": "i"}],
        },
        args,
    )
    # Largest init peak: the netfilter container's 16Mi, above the 1Mi sum.
    assert spec["resources"] == {"requests": {"memory": "26Mi"}}
    assert api_server_errors(spec) == []


def test_a_pod_level_quantity_we_cannot_read_names_the_field() -> None:
    spec = {"resources": {"requests": {"memory": "lots"}}, "containers": [{"name": "w"}]}
    with pytest.raises(ConfigError, match=r"is 'lots', not a Kubernetes quantity.*e\.g\. 100Mi"):
        manifests.inject(spec, SandboxEgressArgs(session_id="p"))


# --- Item 6: in-pod filter rules next to the sidecar's nat OUTPUT rules -------------

FILTER_DEFAULT = (
    "*filter\n"
    "-A INPUT ! -i lo -p tcp --dport 15001 -j REJECT --reject-with tcp-reset\n"
    "-A INPUT ! -i lo -p tcp --dport 15002 -j REJECT --reject-with tcp-reset\n"
    "-A OUTPUT -o lo -p tcp --dport 15002 -m owner ! --uid-owner 0 "
    "-j REJECT --reject-with tcp-reset\n"
    "-A OUTPUT -o lo -p tcp --dport 15001 -m conntrack ! --ctstate DNAT "
    "-j REJECT --reject-with tcp-reset\n"
    "-A OUTPUT -p tcp --dport 80 -m owner --uid-owner 1337 -j REJECT --reject-with tcp-reset\n"
    "COMMIT\n"
)


DNS_REDIRECT = (
    "*nat\n"
    "-I OUTPUT 1 -p udp --dport 53 -m owner ! --uid-owner 1053 -j REDIRECT --to-ports 15053\n"
    "-I OUTPUT 2 -p tcp --dport 53 -m owner ! --uid-owner 1053 -j REDIRECT --to-ports 15053\n"
    "COMMIT\n"
)


def test_the_filter_rules_are_exactly_these() -> None:
    assert (
        manifests.filter_rules(SandboxEgressArgs(session_id="p")) == DNS_REDIRECT + FILTER_DEFAULT
    )
    off = SandboxEgressArgs(session_id="p", dns_filter="off")
    assert manifests.filter_rules(off) == FILTER_DEFAULT
    plain = manifests.filter_rules(
        SandboxEgressArgs(session_id="p", allow_plain_http=True, dns_filter="off")
    )
    assert plain == FILTER_DEFAULT.replace(
        "-A OUTPUT -p tcp --dport 80 -m owner --uid-owner 1337 -j REJECT --reject-with tcp-reset\n",
        "",
    )


WS, ROOT, SIDECAR, RESOLVER = 65532, 0, 1337, 1053
_CASES = [
    # who, where, port -> verdict, port after nat: (plain HTTP off, plain HTTP on)
    ((WS, "93.184.216.34", 443), ("ACCEPT", 15001), ("ACCEPT", 15001)),  # redirected to proxy
    ((WS, "93.184.216.34", 80), ("ACCEPT", 15001), ("ACCEPT", 15001)),  # redirected to proxy
    ((WS, nf.LOOPBACK, 15002), ("REJECT", 15002), ("REJECT", 15002)),  # own decisions: closed
    ((WS, nf.POD_IP, 15002), ("REJECT", 15002), ("REJECT", 15002)),
    ((ROOT, nf.LOOPBACK, 15002), ("ACCEPT", 15002), ("ACCEPT", 15002)),  # port-forward path
    ((WS, nf.LOOPBACK, 15001), ("REJECT", 15001), ("REJECT", 15001)),  # no NAT entry: closed
    ((WS, nf.POD_IP, 15001), ("REJECT", 15001), ("REJECT", 15001)),
    ((SIDECAR, nf.LOOPBACK, 15001), ("REJECT", 15001), ("REJECT", 15001)),  # self-dial loop
    ((SIDECAR, "93.184.216.34", 443), ("ACCEPT", 443), ("ACCEPT", 443)),  # upstream dial
    ((SIDECAR, "93.184.216.34", 80), ("REJECT", 80), ("ACCEPT", 80)),  # reset at once
    ((WS, "10.0.12.7", 15001), ("ACCEPT", 15001), ("ACCEPT", 15001)),  # unproxied service
    ((WS, nf.LOOPBACK, 8080), ("ACCEPT", 8080), ("ACCEPT", 8080)),  # in-pod loopback
    # DNS: every uid but the resolver's lands on the resolver, wherever it was sent.
    ((WS, "10.96.0.10", 53, "udp"), ("ACCEPT", 15053), ("ACCEPT", 15053)),  # cluster DNS
    ((WS, "10.96.0.10", 53), ("ACCEPT", 15053), ("ACCEPT", 15053)),  # TCP too
    ((WS, "8.8.8.8", 53, "udp"), ("ACCEPT", 15053), ("ACCEPT", 15053)),  # any resolver
    ((WS, nf.LOOPBACK, 53, "udp"), ("ACCEPT", 15053), ("ACCEPT", 15053)),  # loopback too
    ((SIDECAR, "10.96.0.10", 53, "udp"), ("ACCEPT", 15053), ("ACCEPT", 15053)),  # the sidecar
    ((RESOLVER, "10.96.0.10", 53, "udp"), ("ACCEPT", 53), ("ACCEPT", 53)),  # upstream, as is
    ((RESOLVER, "10.96.0.10", 53), ("ACCEPT", 53), ("ACCEPT", 53)),
    ((RESOLVER, "93.184.216.34", 443), ("ACCEPT", 15001), ("ACCEPT", 15001)),  # no HTTPS out
]


@pytest.mark.parametrize(("conn", "plain_off", "plain_on"), _CASES)
def test_filter_rules_and_redirect_together(
    conn: tuple[Any, ...], plain_off: tuple[str, int], plain_on: tuple[str, int]
) -> None:
    connection = nf.Connection(*conn)
    for plain, expected in ((False, plain_off), (True, plain_on)):
        args = SandboxEgressArgs(session_id="p", allow_plain_http=plain)
        rules = manifests.filter_rules(args)
        # The filter container runs after netfilter-setup: its nat rules go in first.
        nat = nf.installed(nf.sidecar_nat_rules(15001, 1337), nf.restore_rules(rules, "nat"))
        filter_ = nf.restore_rules(rules, "filter")
        outcome = nf.evaluate(connection, nat, filter_)
        assert (outcome.verdict, outcome.dport) == expected, (conn, plain)


def test_the_filter_runs_after_the_redirect_and_before_anything_else() -> None:
    spec = manifests.inject(
        {"initContainers": [{"name": "setup", "image": "busybox"}],
         "containers": [{"name": "w", "image": "i"}]},
        SandboxEgressArgs(session_id="p", sidecar_image="ghcr.io/tuist/condukt-egress:1.5.1"),
    )  # fmt: skip
    names = [c["name"] for c in spec["initContainers"]]
    assert names == [
        "condukt-egress-init", "condukt-egress-filter", "condukt-egress", "condukt-egress-dns",
        "setup",
    ]  # fmt: skip
    filter_ = spec["initContainers"][1]
    assert filter_["image"] == "ghcr.io/tuist/condukt-egress:1.5.1"  # ships iptables
    assert filter_["command"] == [
        "/bin/sh", "-c",
        "iptables-restore --noflush /etc/condukt-filter/filter.rules && "
        "{ ip6tables-restore --noflush /etc/condukt-filter/filter6.rules || "
        "[ ! -e /proc/net/if_inet6 ]; }",
    ]  # fmt: skip
    assert filter_["securityContext"]["runAsUser"] == 0
    assert filter_["securityContext"]["readOnlyRootFilesystem"] is True
    assert filter_["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert filter_["volumeMounts"] == [
        {"name": "condukt-egress-filter", "mountPath": "/etc/condukt-filter", "readOnly": True}
    ]
    volume = next(v for v in spec["volumes"] if v["name"] == "condukt-egress-filter")
    assert volume["secret"]["items"] == [
        {"key": "filter.rules", "path": "filter.rules"},
        {"key": "filter6.rules", "path": "filter6.rules"},
    ]
    data = manifests.secret_data(SandboxEgressArgs(session_id="p"), "c", KEY)
    assert data["filter.rules"] == DNS_REDIRECT + FILTER_DEFAULT
    assert data["filter6.rules"] == (
        "*filter\n-A OUTPUT -o lo -p tcp -m multiport --dports 15001,15002 "
        "-j REJECT --reject-with tcp-reset\nCOMMIT\n"
        "*filter\n"
        "-A OUTPUT -p udp --dport 53 -m owner ! --uid-owner 1053 -j REJECT\n"
        "-A OUTPUT -p tcp --dport 53 -m owner ! --uid-owner 1053 -j REJECT "
        "--reject-with tcp-reset\n"
        "COMMIT\n"
    )
    assert_session_secure(spec)


def test_workspaces_run_as_non_root_by_default() -> None:
    spec = manifests.inject(
        {"initContainers": [{"name": "setup", "image": "busybox"}],
         "containers": [{"name": "w", "image": "i"},
                        {"name": "v", "image": "i", "securityContext": {"runAsUser": 1000}}]},
        SandboxEgressArgs(session_id="p"),
    )  # fmt: skip
    by_name = {c["name"]: c["securityContext"] for c in [*spec["initContainers"],
                                                         *spec["containers"]]}  # fmt: skip
    assert by_name["setup"]["runAsNonRoot"] is True
    assert by_name["setup"]["runAsUser"] == by_name["w"]["runAsUser"] == 65532
    assert by_name["w"]["runAsGroup"] == 65532
    assert by_name["v"]["runAsUser"] == 1000
    assert "runAsGroup" not in by_name["v"]
    pod_uid = manifests.inject(
        {"securityContext": {"runAsUser": 4000}, "containers": [{"name": "w", "image": "i"}]},
        SandboxEgressArgs(session_id="p"),
    )
    assert pod_uid["containers"][0]["securityContext"]["runAsNonRoot"] is True
    assert "runAsUser" not in pod_uid["containers"][0]["securityContext"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"containers": [{"name": "w", "securityContext": {"runAsUser": 0}}]},
         "spec.containers[0] (container 'w').securityContext.runAsUser"),
        ({"securityContext": {"runAsUser": 0}, "containers": [{"name": "w"}]},
         "spec.securityContext.runAsUser"),
        ({"containers": [{"name": "w", "securityContext": {"runAsNonRoot": False}}]},
         "spec.containers[0] (container 'w').securityContext.runAsNonRoot"),
    ],
)  # fmt: skip
def test_root_workspaces_are_refused_with_the_opt_out(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=r"control port.*allow_root_workspace") as info:
        manifests.inject(spec, SandboxEgressArgs(session_id="p"))
    assert info.value.field == field
    opted = manifests.inject(spec, SandboxEgressArgs(session_id="p", allow_root_workspace=True))
    assert opted["containers"][0]["securityContext"].get("runAsNonRoot") is not True
