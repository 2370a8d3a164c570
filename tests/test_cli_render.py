"""The ``render`` and ``explain`` commands, through click and as a real process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from condukt_egress.cli import cli, main
from tests.k8s_schema import assert_valid
from tests.security_properties import assert_network_policy, assert_session_secure

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "policy.yaml"


def invoke(*argv: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(argv))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def main_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``main`` (the console script) and return its exit status and stderr."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    code = info.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def main_exit_plain(*argv: str) -> tuple[int, str]:
    """Run the command through click's runner; return its exit status and stderr."""
    result = CliRunner().invoke(cli, list(argv))
    return result.exit_code, result.stderr


# --- render ------------------------------------------------------------------


def test_render_prints_a_ready_to_apply_session_and_warns_about_the_key() -> None:
    code, out, err = invoke(
        "render", "--session-id", "demo", "--namespace", "agents", "--policy", str(EXAMPLE)
    )
    assert code == 0
    objects = list(yaml.safe_load_all(out))
    assert [o["kind"] for o in objects] == ["Secret", "NetworkPolicy", "Pod"]
    for obj in objects:
        assert_valid(obj)
    secret, policy, pod = objects
    assert_network_policy(policy, policy["spec"]["podSelector"]["matchLabels"], plain_http=False)
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert_session_secure(pod["spec"])
    assert json.loads(secret["stringData"]["policy.json"])["rules"][1]["hosts"][0] == (
        "api.github.com"
    )
    assert "private key" in err
    assert secret["metadata"]["name"] in err
    assert "no --policy" not in err


def test_render_without_policy_says_everything_is_denied() -> None:
    code, out, err = invoke("render", "--session-id", "demo", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["kind"] == "List"
    policy = json.loads(document["items"][0]["stringData"]["policy.json"])
    assert (policy["rules"], policy["default"]) == ([], "deny")
    assert "denies every host" in err


def test_render_options_reach_the_objects() -> None:
    code, out, _ = invoke(
        "render",
        "--session-id",
        "demo",
        "--allow-plain-http",
        "--no-native-sidecar",
        "--trust-bundle",
        "public-roots",
        "--ca-key-algorithm",
        "rsa-2048",
        "--sidecar-image",
        "ghcr.io/tuist/condukt-egress:1.11.0",
        "--workspace-image",
        "node:22",
    )
    assert code == 0
    secret, policy, pod = yaml.safe_load_all(out)
    labels = policy["spec"]["podSelector"]["matchLabels"]
    assert_network_policy(policy, labels, plain_http=True)
    spec = pod["spec"]
    assert [c["name"] for c in spec["containers"]] == [
        "workspace", "condukt-egress", "condukt-egress-dns"
    ]  # fmt: skip
    assert spec["containers"][0]["image"] == "node:22"
    assert spec["containers"][1]["image"] == "ghcr.io/tuist/condukt-egress:1.11.0"
    assert secret["stringData"]["bundle.pem"].count("BEGIN CERTIFICATE") > 100
    assert "BEGIN PRIVATE KEY" in secret["stringData"]["ca-key.pem"]


def test_render_network_options_reach_the_network_policy() -> None:
    code, out, _ = invoke(
        "render", "--session-id", "demo",
        "--cluster-cidr", "203.0.113.0/24", "--cluster-cidr", "198.51.100.0/24",
        "--node-local-dns", "169.254.20.10", "--dns-namespace", "dns",
        "--dns-pod-label", "k8s-app=coredns", "--dns-pod-label", "tier=dns",
        "--unproxied-egress", "10.0.12.7/32:5432",
        "--unproxied-egress", "10.0.0.0/24:53,5353/UDP",
        "--unsafe-unproxied-egress",  # port 53: DNS to a resolver of the workspace's choosing
    )  # fmt: skip
    assert code == 0
    _, policy, _ = yaml.safe_load_all(out)
    assert_valid(policy)
    dns_labels = {"k8s-app": "coredns", "tier": "dns"}
    labels = policy["spec"]["podSelector"]["matchLabels"]
    assert_network_policy(policy, labels, plain_http=False, dns_labels=dns_labels)
    dns, web, database, resolver = policy["spec"]["egress"]
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in dns["to"]
    assert {"203.0.113.0/24", "198.51.100.0/24"} <= set(web["to"][0]["ipBlock"]["except"])
    assert database == {
        "to": [{"ipBlock": {"cidr": "10.0.12.7/32"}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    }
    assert resolver["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "UDP", "port": 5353}]
    # Without the acknowledgement, the same flags are refused, naming the flag and entry.
    code, err = main_exit_plain(
        "render", "--session-id", "demo", "--unproxied-egress", "10.0.0.0/24:53,5353/UDP"
    )
    assert code == 1
    assert err.startswith("error: --unproxied-egress[0].ports: contains 53")
    assert "unsafeUnproxiedEgress" in err


def test_render_to_a_file_only_its_owner_can_read(tmp_path: Path) -> None:
    target = tmp_path / "session.yaml"
    target.write_text("old")
    target.chmod(0o644)
    code, out, err = invoke("render", "--session-id", "demo", "--output-file", str(target))
    assert code == 0
    assert out == ""
    assert target.stat().st_mode & 0o777 == 0o600
    assert next(o["kind"] for o in yaml.safe_load_all(target.read_text())) == "Secret"
    assert str(target) in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--namespace", "Bad_NS"], "error: --namespace: must be a Kubernetes namespace"),
        (["--sidecar-image", "a b"], "error: --sidecar-image: must be a container image"),
        (["--workspace-image", " "], "error: --workspace-image: must be a container image"),
        (["--ca-validity-hours", "0"], "error: --ca-validity-hours: must be a whole number"),
        (["--cluster-cidr", "10.0.0.1/8"], "error: --cluster-cidr: must be an IPv4 CIDR"),
        (["--node-local-dns", "::1"], "error: --node-local-dns: must be IPv4"),
        (["--dns-namespace", "A"], "error: --dns-namespace: must be a Kubernetes namespace"),
        (["--dns-pod-label", "kube-dns"], "error: --dns-pod-label: must be KEY=VALUE"),
        (["--dns-pod-label", "a=b", "--dns-pod-label", "a=c"], "error: --dns-pod-label: 'a'"),
        (["--dns-pod-label", "a=b c"], "error: --dns-pod-label['a']: value 'b c' is not"),
        (
            ["--unproxied-egress", "10.0.0.5/32"],
            "error: --unproxied-egress: must be CIDR:PORT[,PORT...][/PROTOCOL]",
        ),
        (
            ["--unproxied-egress", "10.0.0.5/32:5432/tcp"],
            "error: --unproxied-egress.protocol: must be one of TCP, UDP, SCTP",
        ),
        (
            ["--unproxied-egress", "10.0.0.5/32:70000"],
            "error: --unproxied-egress.ports: must be a port number",
        ),
        (["--policy", "/nonexistent/policy.yaml"], "error: /nonexistent/policy.yaml: cannot"),
    ],
)
def test_bad_render_input_is_one_line_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = main_exit(["render", "--session-id", "demo", *argv], capsys)
    assert code == 1
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_bad_policy_file_names_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - allow: [https://api.github.com]\n")
    code, err = main_exit(["render", "--session-id", "demo", "--policy", str(policy)], capsys)
    assert code == 1
    assert err.startswith(f"error: {policy}: rules[0].allow[0]")


@pytest.mark.parametrize("command", ["render", "inject"])
@pytest.mark.parametrize("stem", ["policy", "namespace", "session_id"])
def test_a_manifest_file_named_like_a_flag_keeps_its_name_in_errors(
    command: str,
    stem: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only option errors are renamed to their flag: a workload file called
    # policy.yaml is a file, not ``--policy.yaml``.
    monkeypatch.chdir(tmp_path)
    workload = f"{stem}.yaml"
    Path(workload).write_text("kind: Pod\nmetadata: [\n")
    code, err = main_exit([command, "--session-id", "demo", "-f", workload], capsys)
    assert code == 1
    assert err.startswith(f"error: {workload}: not valid YAML"), err


def test_unknown_choice_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = main_exit(["render", "--session-id", "1", "--trust-bundle", "mozilla"], capsys)
    assert code == 2
    assert "'--trust-bundle'" in err
    assert "session-ca" in err


def test_python_m_render_is_a_stream_kubectl_reads(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    done = subprocess.run(
        [sys.executable, "-m", "condukt_egress", "render", "--session-id", "run-42",
         "--namespace", "agents", "--policy", str(EXAMPLE)],
        capture_output=True, text=True, check=False, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    objects = list(yaml.safe_load_all(done.stdout))
    assert [o["kind"] for o in objects] == ["Secret", "NetworkPolicy", "Pod"]
    assert all(o["metadata"]["namespace"] == "agents" for o in objects)
    assert "private key" in done.stderr


def test_python_m_error_exits_1_without_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "condukt_egress", "render", "--session-id", "1",
         "--namespace", "UPPER"],
        capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: --namespace: ")
    assert "Traceback" not in done.stderr


# --- explain -----------------------------------------------------------------


def test_explain_gives_one_line_per_host_with_the_rule_or_the_default() -> None:
    code, out, _ = invoke(
        "explain", "--policy", str(EXAMPLE),
        "db.internal.example.com", "API.GitHub.com", "example.org", "pypi.org:443",
    )  # fmt: skip
    assert code == 0
    assert out.splitlines() == [
        "db.internal.example.com: deny by rules[0] (deny): matched_deny_list",
        "API.GitHub.com: allow by rules[1] (allow)",
        "example.org: deny by default: default_deny",
        "pypi.org:443: deny by default: default_deny (note: patterns match a bare host name, "
        "never a scheme, port, path or final dot)",
    ]


def test_explain_decide_and_json(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"rules": [{"allow": "a.com"}, {"decide": {"timeout_ms": 1500}}]}))
    code, out, _ = invoke("explain", "--policy", str(policy), "--json", "a.com", "b.com")
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"host": "a.com", "action": "allow", "rule": {"index": 0, "kind": "allow"}, "reason": None},
        {
            "host": "b.com",
            "action": "decide",
            "rule": {"index": 1, "kind": "decide"},
            "reason": None,
        },
    ]
    code, same, _ = invoke("explain", "--policy", str(policy), "--format", "json", "a.com", "b.com")
    assert same == out
    code, out, _ = invoke("explain", "--policy", str(policy), "b.com")
    assert out == (
        "b.com: decide by rules[1] (decide): the control-channel peer is asked; "
        "no answer within 1500 ms denies\n"
    )


def test_explain_default_allow(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: [{deny: [x.com]}]\ndefault: allow\n")
    assert invoke("explain", "--policy", str(policy), "y.com")[1] == "y.com: allow by default\n"


def test_explain_needs_hosts_and_a_valid_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = main_exit(["explain", "--policy", str(EXAMPLE)], capsys)
    assert code == 2
    assert "HOST..." in err
    bad = tmp_path / "policy.yaml"
    bad.write_text("default: maybe\n")
    code, err = main_exit(["explain", "--policy", str(bad), "a.com"], capsys)
    assert code == 1
    assert err.startswith(f"error: {bad}: default: expected 'allow' or 'deny'")


# --- hostile policy files (security round 2) ----------------------------------

_LAUGHS = (
    'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]\n" for n in range(1, 10))
    + "rules: [{allow: *a9}]\n"
)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_LAUGHS, "found an alias (*a0)"),
        ("max_body_capture: " + "9" * 5000 + "\n", "more than 4,300 digits"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["render", "--session-id", "1", "--policy"],
        ["explain", "api.github.com", "--policy"],
        ["events", "--connect", "127.0.0.1:1", "--policy"],
    ],
)
def test_hostile_policy_files_fail_fast_with_one_line_in_every_command(
    tmp_path: Path, command: list[str], text: str, needle: str
) -> None:
    # Round 2: a 420-byte file of nested aliases hung render, explain and events
    # --policy (28 s and 1.9 GB at depth 7, past 60 s at depth 9).
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "condukt_egress", *command, str(policy)],
        capture_output=True, text=True, check=False, timeout=20, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode in (1, 2), done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr) < 1000
