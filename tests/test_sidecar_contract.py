"""What we generate, checked against the literal facts of the sidecar's source.

Every fact cites the upstream file and line (tuist/condukt 1.5.1,
``native/condukt_egress``; unchanged through 1.11.0).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from condukt_egress import contract, manifests
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.naming import MAX_SESSION_ID_LENGTH, validate_session_id
from condukt_egress.policy import DefaultAction, EgressPolicy, allow, decide, deny
from tests import clap_model

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
    with pytest.raises(clap_model.UsageError, match="value is required for '--session-id'"):
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
