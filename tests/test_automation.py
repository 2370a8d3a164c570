"""The Automation API layer without a real ``pulumi`` CLI.

Three kinds of checks: the shared program run under Pulumi's mocks with the
exact config the manager sets (same SessionSpec, same stack); the pure parts
(settings, names, environment, errors); and the orchestration against a
scripted stand-in for the CLI (``fake_cli``), which records every call's
arguments, working directory and environment and answers what a real CLI
answers. What only the real engine can show lives in tests/integration.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from condukt_egress import manifests
from condukt_egress.automation import (
    AsyncSessionStacks,
    KubernetesSettings,
    PassphraseRequiredError,
    PulumiCliError,
    SessionBusyError,
    SessionNotFoundError,
    SessionOperationError,
    SessionOutputs,
    SessionSpec,
    SessionStacks,
    stack_config,
    stack_name,
)
from condukt_egress.errors import AutomationError, ConfigError, PolicyError
from condukt_egress.program import CONFIG_KEYS, args_from_config, session_program
from tests.pulumi_harness import run

SECRET = "kubernetes:core/v1:Secret"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
POD = "kubernetes:core/v1:Pod"
POLICY = {
    "rules": [
        {"deny": ["*.internal.example.com"]},
        {"allow": ["api.github.com", "**.pypi.org"]},
        {"decide": {"timeout_ms": 9000}},
    ],
    "default": "deny",
}
SPECS = {
    "defaults": SessionSpec("run-1"),
    "every option": SessionSpec(
        "Agent Run #42 / ünïcode",
        namespace="agents",
        policy=POLICY,
        workspace_image="node:22",
        sidecar_image="ghcr.io/tuist/condukt-egress:1.11.0",
        allow_plain_http=True,
        trust_bundle="public-roots",
        native_sidecar=False,
        ca_key_algorithm="rsa-3072",
        ca_validity_hours=72,
        cluster_cidrs=["203.0.113.0/24"],
        node_local_dns="169.254.20.10",
        dns_namespace="dns",
        dns_pod_labels={"k8s-app": "coredns"},
        unproxied_egress=[
            {"cidr": "10.0.12.7/32", "ports": [5432]},
            {"cidr": "10.0.0.0/24", "ports": [8125], "protocol": "UDP"},
        ],
    ),
}
STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")  # what the Pulumi backends accept


def manager_config(
    spec: SessionSpec, kubernetes: KubernetesSettings | None = None
) -> dict[str, str]:
    return {k: v.value for k, v in stack_config(spec, kubernetes or KubernetesSettings()).items()}


def body(reg: Any) -> dict[str, Any]:
    return {k: v for k, v in reg.inputs.items() if k not in ("apiVersion", "kind")}


def strip(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}


# --- the stack the manager creates is the stack the program creates ---------


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_manager_config_round_trips_to_the_same_session(spec: SessionSpec, tmp_path: Path) -> None:
    seen: list[tuple[Any, str]] = []
    config = manager_config(spec, KubernetesSettings(render_yaml_to_directory=tmp_path))
    run(lambda: seen.append(args_from_config(pulumi.Config())), config=config)
    assert seen == [(spec.args, spec.workspace_image)]


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_manager_config_declares_the_builders_objects(spec: SessionSpec) -> None:
    rec = run(session_program, config=manager_config(spec))
    args = spec.args
    assert body(rec.one(NETWORK_POLICY)) == strip(manifests.network_policy_manifest(args))
    assert body(rec.one(POD)) == strip(manifests.workspace_pod_manifest(args, spec.workspace_image))
    secret = rec.one(SECRET).inputs
    name = manifests.secret_name(args, rec.stack_outputs["caCertPem"])
    assert secret["metadata"] == manifests.object_metadata(args, name)
    assert secret["stringData"]["policy.json"] == args.egress_policy.to_json()


def test_outputs_are_read_from_what_the_program_exports() -> None:
    spec = SPECS["every option"]
    rec = run(session_program, config=manager_config(spec))
    outputs = SessionOutputs.from_stack_outputs(spec.stack_name, rec.stack_outputs)
    names = spec.args.names
    assert outputs == SessionOutputs(
        session_id=spec.session_id,
        stack_name=spec.stack_name,
        namespace="agents",
        secret_name=manifests.secret_name(spec.args, rec.stack_outputs["caCertPem"]),
        network_policy_name=names.network_policy,
        pod_name=names.pod,
        pod_labels=names.pod_labels,
        control_port=15002,
        ca_cert_pem=rec.stack_outputs["caCertPem"],
    )
    assert outputs.ca_cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert SessionOutputs.from_stack_outputs("s", {}) is None


def test_spec_sets_every_program_config_key_and_only_those() -> None:
    for spec in SPECS.values():
        assert tuple(spec.program_config()) == CONFIG_KEYS
    declared = yaml.safe_load((Path(__file__).parents[1] / "Pulumi.yaml").read_text())["config"]
    assert set(declared) == set(CONFIG_KEYS)


def test_pulumi_yaml_defaults_are_the_spec_defaults() -> None:
    """A ``pulumi up`` stack that sets only sessionId gets what SessionSpec defaults to.

    The engine fills each unset key from its Pulumi.yaml default (objects and
    lists as JSON) and refuses to run when a key without a default is unset,
    so every key but sessionId needs one.
    """
    declared = yaml.safe_load((Path(__file__).parents[1] / "Pulumi.yaml").read_text())["config"]
    assert [k for k, v in declared.items() if "default" not in v] == ["sessionId"]
    config = {
        key: value["default"] if isinstance(value["default"], str) else json.dumps(value["default"])
        for key, value in declared.items()
        if key != "sessionId"
    }
    seen: list[tuple[Any, str]] = []
    run(lambda: seen.append(args_from_config(pulumi.Config())), config={**config, "sessionId": "1"})
    assert seen == [(SessionSpec("1").args, SessionSpec("1").workspace_image)]


def test_spec_keeps_the_validated_options() -> None:
    spec = SPECS["every option"]
    assert spec.cluster_cidrs == ("203.0.113.0/24",)
    assert spec.unproxied_egress == spec.args.unproxied_egress
    assert json.loads(spec.program_config()["unproxiedEgress"]) == [
        {"cidr": "10.0.12.7/32", "ports": [5432], "protocol": "TCP"},
        {"cidr": "10.0.0.0/24", "ports": [8125], "protocol": "UDP"},
    ]
    assert SPECS["defaults"].program_config()["nodeLocalDns"] == ""


# --- SessionSpec, KubernetesSettings, names ------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"session_id": ""}, ConfigError, "session_id: must not be empty"),
        ({"session_id": "1", "namespace": "Bad_NS"}, ConfigError, "namespace: must be"),
        ({"session_id": "1", "sidecar_image": "a b"}, ConfigError, "sidecar_image: must be"),
        ({"session_id": "1", "workspace_image": ""}, ConfigError, "workspace_image: must be"),
        ({"session_id": "1", "trust_bundle": "mozilla"}, ConfigError, "trust_bundle: must be"),
        ({"session_id": "1", "ca_key_algorithm": "dsa"}, ConfigError, "ca_key_algorithm: must"),
        ({"session_id": "1", "ca_validity_hours": 0}, ConfigError, "ca_validity_hours: must"),
        ({"session_id": "1", "cluster_cidrs": "10.0.0.0/8"}, ConfigError, "cluster_cidrs: must"),
        ({"session_id": "1", "node_local_dns": "::1"}, ConfigError, "node_local_dns: must be"),
        ({"session_id": "1", "dns_namespace": "A"}, ConfigError, "dns_namespace: must be"),
        ({"session_id": "1", "dns_pod_labels": {}}, ConfigError, "dns_pod_labels: must be"),
        (
            {"session_id": "1", "unproxied_egress": [{"cidr": "10.0.0.1/32", "ports": []}]},
            ConfigError,
            "unproxied_egress.ports: must be",
        ),
        (
            {"session_id": "1", "policy": {"rules": [{"allow": ["x.com:443"]}]}},
            PolicyError,
            "policy.rules[0]",
        ),
    ],
)
def test_bad_spec_fails_before_any_stack(
    kwargs: dict[str, Any], error: type[Exception], needle: str
) -> None:
    with pytest.raises(error) as info:
        SessionSpec(**kwargs)
    assert needle in str(info.value)


def test_kubernetes_settings_become_provider_config(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "kube.yaml").write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.chdir(tmp_path)
    settings = KubernetesSettings(kubeconfig="kube.yaml", context="agents")
    config = settings.provider_config()
    assert config["kubernetes:kubeconfig"].value == str(tmp_path / "kube.yaml")
    assert config["kubernetes:kubeconfig"].secret is True
    assert config["kubernetes:context"].value == "agents"
    contents = "apiVersion: v1\nkind: Config\nclusters: []\n"
    assert (
        KubernetesSettings(kubeconfig=contents).provider_config()["kubernetes:kubeconfig"].value
        == contents
    )
    rendered = KubernetesSettings(render_yaml_to_directory=tmp_path / "out").provider_config()
    assert {k: v.value for k, v in rendered.items()} == {
        "kubernetes:renderYamlToDirectory": str(tmp_path / "out")
    }
    assert KubernetesSettings().provider_config() == {}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"render_yaml_to_directory": "out"}, "render_yaml_to_directory: must be an absolute path"),
        (
            {"render_yaml_to_directory": "/out", "context": "c"},
            "cannot be combined with kubeconfig or context",
        ),
        ({"context": " "}, "context: must be a non-empty string"),
    ],
)
def test_bad_kubernetes_settings(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        KubernetesSettings(**kwargs)


@given(
    st.text(min_size=1, max_size=300).filter(lambda s: bool(s.strip()) and "\x00" not in s),
    st.text(min_size=1).filter(lambda s: bool(s.strip()) and "\x00" not in s),
)
def test_stack_names_are_valid_and_distinct(a: str, b: str) -> None:
    assert STACK_NAME.match(stack_name(a))
    assert stack_name(a).startswith("session-")
    assert (stack_name(a) == stack_name(b)) == (a == b)


def test_work_dirs_stay_under_the_state_dir(tmp_path: Path) -> None:
    stacks = SessionStacks(tmp_path, passphrase="p")
    for sid in ("../../etc/passwd", "/abs", "a/../../b", ".", "x" * 1024):
        work_dir = stacks.work_dir(sid)
        assert work_dir.parent == tmp_path / "workspaces"
        assert work_dir.name == stack_name(sid)


# --- settings, passphrase, environment -----------------------------------------


def test_project_settings_use_a_local_file_backend(tmp_path: Path) -> None:
    stacks = SessionStacks(tmp_path / "state", passphrase="p")
    settings = stacks.project_settings().to_dict()
    assert settings["name"] == "condukt-egress"
    assert settings["runtime"] == {"name": "python"}
    assert settings["backend"] == {"url": f"file://{tmp_path / 'state' / 'backend'}"}
    options = stacks.workspace_options("run-1")
    assert options.program is session_program
    assert options.secrets_provider == "passphrase"
    assert options.work_dir == str(tmp_path / "state" / "workspaces" / stack_name("run-1"))
    assert not (tmp_path / "state").exists(), "the constructor must not touch the disk"


def test_passphrase_sources(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    with pytest.raises(PassphraseRequiredError, match="PULUMI_CONFIG_PASSPHRASE"):
        SessionStacks(tmp_path)
    with pytest.raises(PassphraseRequiredError, match="non-empty"):
        SessionStacks(tmp_path, passphrase="")
    env = SessionStacks(tmp_path, passphrase="given").environment()
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "given"
    env = SessionStacks(tmp_path, env={"PULUMI_CONFIG_PASSPHRASE": "from-env-arg"}).environment()
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "from-env-arg"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", "pass.txt")
    env = SessionStacks(tmp_path).environment()
    assert env["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(tmp_path / "pass.txt")
    assert "PULUMI_CONFIG_PASSPHRASE" not in env


def test_environment_is_per_instance_and_never_touches_os_environ(tmp_path: Path) -> None:
    before = dict(os.environ)
    one = SessionStacks(tmp_path / "a", passphrase="one", env={"EXTRA": "1"})
    two = SessionStacks(
        tmp_path / "b",
        passphrase="two",
        backend_url="s3://bucket/state",
        env={"PULUMI_BACKEND_URL": "ignored", "PULUMI_CONFIG_PASSPHRASE": "ignored"},
    )
    env_one = dict(one.workspace_options("s").env_vars or {})
    env_two = dict(two.workspace_options("s").env_vars or {})
    assert env_one == {
        "EXTRA": "1",
        "PULUMI_CONFIG_PASSPHRASE": "one",
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'a' / 'backend'}",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    assert env_two["PULUMI_BACKEND_URL"] == "s3://bucket/state"
    assert env_two["PULUMI_CONFIG_PASSPHRASE"] == "two"
    assert "one" not in repr(one)
    assert "two" not in repr(two)
    assert dict(os.environ) == before


# --- no CLI ----------------------------------------------------------------------


def test_missing_cli_is_a_clear_error_for_every_operation(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("PATH", "")
    stacks = SessionStacks(tmp_path / "state", passphrase="p")
    spec = SessionSpec("run-1")
    calls: list[Callable[[], object]] = [
        lambda: stacks.up(spec),
        lambda: stacks.preview(spec),
        lambda: stacks.refresh("run-1"),
        lambda: stacks.destroy("run-1"),
        lambda: stacks.get("run-1"),
        stacks.list,
        stacks.pulumi_version,
        lambda: asyncio.run(AsyncSessionStacks(stacks).up(spec)),
    ]
    for call in calls:
        with pytest.raises(PulumiCliError, match=r"`pulumi` CLI was not found on PATH; install it"):
            call()
    assert not (tmp_path / "state").exists()


def test_pulumi_root_without_a_cli(tmp_path: Path) -> None:
    stacks = SessionStacks(tmp_path / "state", passphrase="p", pulumi_root=tmp_path / "nothing")
    with pytest.raises(PulumiCliError, match=re.escape(f"not found in {tmp_path / 'nothing'}/bin")):
        stacks.up(SessionSpec("run-1"))


# --- orchestration against a scripted CLI ---------------------------------------

FAKE_CLI = r"""#!{python}
import json, os, sys, time
args = [a for a in sys.argv[1:] if a != "--non-interactive"]
if args[:1] == ["version"]:
    # 3.204: past our floor, and still below the SDK's gRPC event stream (3.206+),
    # so events come through the --event-log file this script writes.
    print(os.environ.get("FAKE_PULUMI_VERSION", "v3.204.0"))
    sys.exit(0)
key = args[0]
if key in ("stack", "config", "plugin") and len(args) > 1 and not args[1].startswith("-"):
    key = f"{args[0]} {args[1]}"
# Only `config set` reads its value from stdin; other commands inherit ours.
stdin = sys.stdin.read() if key == "config set" else None
record = {"key": key, "args": args, "argv": sys.argv, "stdin": stdin, "cwd": os.getcwd(),
          "env": {k: os.environ.get(k) for k in
                  ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "EXTRA")}}
with open(os.environ["FAKE_PULUMI_DIR"] + "/calls.jsonl", "a") as log:
    log.write(json.dumps(record) + "\n")
with open(os.environ["FAKE_PULUMI_DIR"] + "/scenario.json") as f:
    scenario = json.load(f)
reply = scenario.get(key, {})
# fake.answer("file_backend", dir=...): read and lock that backend as pulumi 3.274 does
backend = scenario.get("file_backend", {}).get("dir")
if backend and not key.startswith(("config", "plugin")):
    import glob
    for attrs in glob.glob(backend + "/.pulumi/stacks/*/*.json.attrs"):
        try:
            with open(attrs) as f:
                json.load(f)  # fileblob decodes an object's metadata before reading it
        except ValueError:
            sys.stderr.write("error: EOF\n" if key == "stack ls" else
                             "error: failed to load checkpoint: EOF\n")
            sys.exit(1)
    held = glob.glob(backend + "/.pulumi/locks/*/*/*/*.json")
    if key == "cancel":
        for lock in held:
            os.remove(lock)
    elif held and key in ("up", "refresh", "destroy"):
        sys.stderr.write("error: the stack is currently locked by 1 lock(s). Either wait for "
                         "the other process(es) to end or delete the lock file with "
                         "`pulumi cancel`.\n")
        sys.exit(255)
if "event_log" in reply and "--event-log" in args:
    with open(args[args.index("--event-log") + 1], "a") as events:
        for event in reply["event_log"]:
            events.write(json.dumps(event) + "\n")
print(reply.get("stdout", ""), flush=True)
if "wait_for" in reply:
    for _ in range(600):
        if os.path.exists(reply["wait_for"]):
            break
        time.sleep(0.05)
sys.stderr.write(reply.get("stderr", ""))
sys.exit(reply.get("code", 0))
"""
HISTORY = [
    {
        "kind": "update",
        "startTime": "2026-01-01T00:00:00.000Z",
        "endTime": "2026-01-01T00:00:09.000Z",
        "message": "",
        "environment": {},
        "config": {},
        "result": "succeeded",
        "version": 1,
        "resourceChanges": {"create": 7},
    }
]
NOT_FOUND = {"code": 255, "stderr": "error: no stack named 'x' found\n"}


@dataclass
class FakeCli:
    root: Path
    dir: Path
    replies: dict[str, Any]

    def answer(self, key: str, **reply: Any) -> None:
        self.replies[key] = reply
        (self.dir / "scenario.json").write_text(json.dumps(self.replies))

    def calls(self) -> list[dict[str, Any]]:
        log = self.dir / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def commands(self) -> list[str]:
        return [call["key"] for call in self.calls()]

    def stacks(self, state: Path, **kwargs: Any) -> SessionStacks:
        kwargs.setdefault("install_plugins", False)
        return SessionStacks(
            state,
            passphrase="pp",
            pulumi_root=self.root,
            env={"FAKE_PULUMI_DIR": str(self.dir), "EXTRA": "x"},
            **kwargs,
        )


def make_fake(tmp_path: Path) -> FakeCli:
    """A scripted CLI in ``tmp_path/cli/bin/pulumi`` answering like an empty backend."""
    root = tmp_path / "cli"
    (root / "bin").mkdir(parents=True)
    script = root / "bin" / "pulumi"
    script.write_text(FAKE_CLI.replace("{python}", sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    cli = FakeCli(root=root, dir=tmp_path, replies={})
    cli.answer("config", stdout="{}")
    cli.answer("stack history", stdout=json.dumps(HISTORY))
    cli.answer("stack output", stdout="{}")
    return cli


def test_up_of_a_known_session_selects_it_and_drops_stale_provider_keys(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any]
) -> None:
    spec = SPECS["every option"]
    work_dir = tmp_path / "state" / "workspaces" / spec.stack_name
    work_dir.mkdir(parents=True)
    (work_dir / f"Pulumi.{spec.stack_name}.yaml").write_text(
        "config:\n  kubernetes:renderYamlToDirectory: /x\n  kubernetes:context: old\n"
    )
    fake.answer("stack output", stdout=json.dumps(exported))
    stacks = fake.stacks(tmp_path / "state", kubernetes=KubernetesSettings(context="c"))

    stacks.up(spec)

    calls = fake.calls()
    assert [c["key"] for c in calls][:4] == [
        "stack select",
        "config set-all",
        "config rm-all",
        "up",
    ]
    assert "kubernetes:renderYamlToDirectory" in calls[2]["args"]
    assert "kubernetes:context" not in calls[2]["args"], "still wanted: set, not removed"


def test_up_selects_a_session_another_replica_created(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any]
) -> None:
    spec = SPECS["every option"]
    fake.answer("stack init", code=255, stderr=f"error: stack '{spec.stack_name}' already exists\n")
    fake.answer("stack output", stdout=json.dumps(exported))
    stacks = fake.stacks(tmp_path / "state")

    assert stacks.up(spec).pod_name == spec.args.names.pod
    assert [c["key"] for c in fake.calls()][:3] == ["stack init", "stack select", "config set-all"]


def test_up_creates_configures_and_returns_outputs(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any]
) -> None:
    spec = SPECS["every option"]
    fake.answer("stack select", **NOT_FOUND)
    fake.answer("stack output", stdout=json.dumps(exported))
    kubeconfig = "apiVersion: v1\nkind: Config\n"
    stacks = fake.stacks(
        tmp_path / "state", kubernetes=KubernetesSettings(kubeconfig=kubeconfig, context="c")
    )
    before = dict(os.environ)

    outputs = stacks.up(spec)

    assert outputs == SessionOutputs.from_stack_outputs(spec.stack_name, exported)
    assert outputs.pod_name == spec.args.names.pod
    calls = fake.calls()
    keys = [c["key"] for c in calls]
    # A new session: no `stack select` that must fail first, no config read.
    assert keys[:4] == ["stack init", "config set-all", "config set", "up"]
    name = spec.stack_name
    work_dir = str(tmp_path / "state" / "workspaces" / name)
    for call in calls:
        assert call["cwd"] == work_dir
        assert call["env"] == {
            "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state' / 'backend'}",
            "PULUMI_CONFIG_PASSPHRASE": "pp",
            "EXTRA": "x",
        }
    init = calls[0]["args"]
    assert init[:3] == ["stack", "init", name]
    assert init[init.index("--secrets-provider") + 1] == "passphrase"
    set_all = calls[1]["args"]
    assert set_all[set_all.index("--stack") + 1] == name
    values = json.loads(set_all[set_all.index("--json") + 1])
    assert "kubernetes:kubeconfig" not in values, "a secret never goes in argv"
    secret = calls[2]
    assert secret["args"] == [
        "config",
        "set",
        "--secret",
        "--stack",
        name,
        "--",
        "kubernetes:kubeconfig",
    ]
    assert secret["stdin"] == kubeconfig + "\n", "the CLI drops one trailing newline"
    assert values["kubernetes:context"] == {"value": "c", "secret": False}
    assert values["condukt-egress:sessionId"]["value"] == spec.session_id
    assert values["condukt-egress:allowPlainHttp"] == {"value": "true", "secret": False}
    # Typed object and array keys are set as objects: the CLI refuses a string there.
    assert values["condukt-egress:policy"]["objectValue"] == spec.args.egress_policy.to_dict()
    assert values["condukt-egress:clusterCidrs"]["objectValue"] == ["203.0.113.0/24"]
    assert values["condukt-egress:unproxiedEgress"]["objectValue"][0]["cidr"] == "10.0.12.7/32"
    assert "objectValue" not in values["condukt-egress:namespace"]
    up = calls[3]["args"]
    assert {"--yes", "--skip-preview"} <= set(up)
    assert up[up.index("--exec-kind") + 1] == "auto.inline"
    assert any(a.startswith("--client=127.0.0.1:") for a in up)
    assert up[up.index("--color") + 1] == "never"
    project = yaml.safe_load((Path(work_dir) / "Pulumi.yaml").read_text())
    assert project["name"] == "condukt-egress"
    assert project["backend"]["url"] == f"file://{tmp_path / 'state' / 'backend'}"
    assert dict(os.environ) == before


def test_failed_up_keeps_the_stack_and_says_what_to_do(fake: FakeCli, tmp_path: Path) -> None:
    fake.answer(
        "up",
        code=255,
        stdout="Updating (session-run-1)\n  kubernetes:core/v1:Pod workspace **failed**\n",
        stderr='error: update failed\nerror: pods "workspace-run-1" is forbidden\n',
    )
    lines: list[tuple[str, str]] = []
    with pytest.raises(SessionOperationError) as info:
        fake.stacks(tmp_path / "state").up(
            SessionSpec("run-1"), on_output=lambda sid, line: lines.append((sid, line))
        )
    error = info.value
    assert error.operation == "up"
    assert "stays destroyable" in str(error)
    assert "destroy(session_id)" in str(error)
    assert 'pods "workspace-run-1" is forbidden' in error.details
    assert ("run-1", "Updating (session-run-1)") in lines
    assert "stack rm" not in fake.commands()


def test_locked_stack_is_busy_with_the_release_command(fake: FakeCli, tmp_path: Path) -> None:
    fake.answer(
        "up",
        code=255,
        stderr="error: the stack is currently locked by 1 lock(s). Either wait for the other "
        "process(es) to end or delete the lock file with `pulumi cancel`.\n",
    )
    with pytest.raises(SessionBusyError, match=r"pulumi cancel --yes session-run-1-") as info:
        fake.stacks(tmp_path / "state").up(SessionSpec("run-1"))
    assert isinstance(info.value, AutomationError)


def test_unknown_session_is_not_found_and_leaves_nothing(fake: FakeCli, tmp_path: Path) -> None:
    fake.answer("stack select", **NOT_FOUND)
    fake.answer("stack output", **NOT_FOUND)
    stacks = fake.stacks(tmp_path / "state")
    for call in (
        lambda: stacks.destroy("nope"),
        lambda: stacks.refresh("nope"),
        lambda: stacks.get("nope"),
    ):
        with pytest.raises(
            SessionNotFoundError, match=r"no such stack .* start the session with up"
        ):
            call()
    assert not stacks.work_dir("nope").exists()
    assert "destroy" not in fake.commands()


def test_get_of_a_stack_without_a_session(fake: FakeCli, tmp_path: Path) -> None:
    with pytest.raises(SessionNotFoundError, match="holds no session"):
        fake.stacks(tmp_path / "state").get("run-1")


def test_destroy_removes_stack_and_workspace(fake: FakeCli, tmp_path: Path) -> None:
    fake.answer(
        "stack history",
        stdout=json.dumps([{**HISTORY[0], "kind": "destroy", "resourceChanges": {"delete": 7}}]),
    )
    stacks = fake.stacks(tmp_path / "state")
    stacks.work_dir("run-1").mkdir(parents=True)
    assert stacks.destroy("run-1") == {"delete": 7}
    keys = fake.commands()
    assert keys[keys.index("destroy") :].count("stack rm") == 1
    assert not stacks.work_dir("run-1").exists()


def test_preview_of_a_new_session_removes_its_stack(fake: FakeCli, tmp_path: Path) -> None:
    fake.answer("stack select", **NOT_FOUND)
    fake.answer(
        "preview",
        event_log=[
            {"sequence": 0, "timestamp": 0, "summaryEvent": {"resourceChanges": {"create": 7}}},
            {"sequence": 1, "timestamp": 0, "cancelEvent": {}},
        ],
    )
    stacks = fake.stacks(tmp_path / "state")
    assert stacks.preview(SessionSpec("run-1")) == {"create": 7}
    assert fake.commands()[-1] == "stack rm"
    assert not stacks.work_dir("run-1").exists()


def test_same_session_twice_at_once_is_busy_not_corrupt(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any]
) -> None:
    release = tmp_path / "release"
    fake.answer("up", stdout="Updating", wait_for=str(release))
    fake.answer("stack output", stdout=json.dumps(exported))
    stacks = fake.stacks(tmp_path / "state")
    spec = SPECS["every option"]
    started = threading.Event()
    results: list[Any] = []

    def first() -> None:
        results.append(stacks.up(spec, on_output=lambda _sid, _line: started.set()))

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(30), "the first up never reached the engine"
        with pytest.raises(SessionBusyError, match="up is already running for this session"):
            stacks.up(spec)
        with pytest.raises(SessionBusyError, match="cannot destroy: up is already running"):
            stacks.destroy(spec.session_id)
    finally:
        release.touch()
        thread.join(30)
    assert results == [SessionOutputs.from_stack_outputs(spec.stack_name, exported)]
    assert fake.commands().count("up") == 1


def test_plugins_are_installed_once_matching_the_sdks(fake: FakeCli, tmp_path: Path) -> None:
    from importlib.metadata import version  # noqa: PLC0415

    fake.answer("up", code=255, stderr="error: boom\n")
    stacks = fake.stacks(tmp_path / "state", install_plugins=True)
    for _ in range(2):
        with pytest.raises(SessionOperationError):
            stacks.up(SessionSpec("run-1"))
    installs = [c["args"] for c in fake.calls() if c["key"] == "plugin install"]
    assert installs == [
        ["plugin", "install", "resource", "kubernetes", f"v{version('pulumi_kubernetes')}"],
        ["plugin", "install", "resource", "tls", f"v{version('pulumi_tls')}"],
    ]


def test_plugin_install_failure_says_what_to_do(fake: FakeCli, tmp_path: Path) -> None:
    fake.answer("plugin install", code=255, stderr="error: could not download plugin\n")
    with pytest.raises(SessionOperationError, match="install_plugins=False") as info:
        fake.stacks(tmp_path / "state", install_plugins=True).up(SessionSpec("run-1"))
    assert info.value.operation == "install plugins"
    assert "up" not in fake.commands()


def test_pulumi_version_checks_the_cli_once(fake: FakeCli, tmp_path: Path) -> None:
    stacks = fake.stacks(tmp_path / "state")
    assert stacks.pulumi_version() == "3.204.0"
    assert fake.commands() == []


def test_too_old_cli_is_refused(fake: FakeCli, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("FAKE_PULUMI_VERSION", "v3.150.0")
    with pytest.raises(PulumiCliError, match=r"is 3\.150\.0; session stacks need 3\.203"):
        fake.stacks(tmp_path / "state").up(SessionSpec("run-1"))


def test_list_reports_session_stacks_with_their_ids(fake: FakeCli, tmp_path: Path) -> None:
    known, foreign = stack_name("run 1"), stack_name("made elsewhere")
    fake.answer(
        "stack ls",
        stdout=json.dumps(
            [
                {"name": known, "current": False, "updateInProgress": False, "resourceCount": 7},
                {"name": f"organization/condukt-egress/{foreign}", "current": False},
                {"name": "dev", "current": True},
            ]
        ),
    )
    stacks = fake.stacks(tmp_path / "state")
    work_dir = stacks.work_dir("run 1")
    work_dir.mkdir(parents=True)
    (work_dir / f"Pulumi.{known}.yaml").write_text(
        yaml.safe_dump({"config": {"condukt-egress:sessionId": "run 1"}})
    )
    listed = stacks.list()
    assert [(s.session_id, s.stack_name, s.resource_count) for s in listed] == [
        ("run 1", known, 7),
        (None, foreign, None),
    ]


def test_a_failing_progress_callback_does_not_stall_the_engine(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any], caplog: Any
) -> None:
    fake.answer("up", stdout="line one\nline two")
    fake.answer("stack output", stdout=json.dumps(exported))

    def explode(_sid: str, _line: str) -> None:
        raise RuntimeError("callback bug")

    outputs = fake.stacks(tmp_path / "state").up(SPECS["every option"], on_output=explode)
    assert outputs.session_id == SPECS["every option"].session_id
    assert "on_output callback failed" in caplog.text


def test_progress_goes_to_the_logger_by_default(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any], caplog: Any
) -> None:
    fake.answer("up", stdout="Updating (session)")
    fake.answer("stack output", stdout=json.dumps(exported))
    caplog.set_level("INFO", logger="condukt_egress.automation")
    asyncio.run(AsyncSessionStacks(fake.stacks(tmp_path / "state")).up(SPECS["every option"]))
    assert f"session {SPECS['every option'].session_id}: Updating (session)" in caplog.text


# --- no secret in any command line (issue 19 item 6) ----------------------------


def test_no_secret_reaches_any_command_line(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any]
) -> None:
    """``ps`` shows every argv to every local user: secrets go by stdin or environment."""
    kubeconfig = (
        "apiVersion: v1\nkind: Config\nusers:\n- name: agent\n"
        "  user:\n    token: kubeconfig-token-7f3a9c\n"
    )
    passphrase = "state-passphrase-91b2"
    token = "pul-access-token-55d1"
    fake.answer("stack output", stdout=json.dumps(exported))
    fake.answer("stack ls", stdout="[]")
    fake.answer(
        "preview",
        event_log=[
            {"sequence": 0, "timestamp": 0, "summaryEvent": {"resourceChanges": {"same": 7}}},
            {"sequence": 1, "timestamp": 0, "cancelEvent": {}},
        ],
    )
    stacks = SessionStacks(
        tmp_path / "state",
        passphrase=passphrase,
        pulumi_root=fake.root,
        install_plugins=False,
        env={"FAKE_PULUMI_DIR": str(fake.dir), "PULUMI_ACCESS_TOKEN": token},
        kubernetes=KubernetesSettings(kubeconfig=kubeconfig),
    )
    spec = SPECS["every option"]
    stacks.up(spec)
    stacks.preview(spec)
    stacks.up(spec, kubernetes=KubernetesSettings(kubeconfig=kubeconfig + "# rotated\n"))
    stacks.get(spec.session_id)
    stacks.refresh(spec.session_id)
    stacks.destroy(spec.session_id)
    stacks.list()

    calls = fake.calls()
    for call in calls:
        argv = "\0".join(call["argv"])
        for secret in ("kubeconfig-token-7f3a9c", passphrase, token):
            assert secret not in argv, f"{secret!r} in the argv of `pulumi {call['key']}`"
    assert {"up", "preview", "refresh", "destroy", "config set-all", "config set"} <= {
        c["key"] for c in calls
    }
    piped = [c["stdin"] for c in calls if c["key"] == "config set"]
    assert piped == [kubeconfig + "\n", kubeconfig + "\n", kubeconfig + "# rotated\n\n"]
    preview_secret = [c["args"] for c in calls if c["key"] == "config set"][1]
    assert "--config-file" in preview_secret, "a preview's secret goes to its private copy"
