"""Automation API as ``pulumi.automation`` users expect it, against the scripted CLI.

Previews that change nothing, any secrets provider, the engine's options and
events passed through, a bound on concurrent operations, per-session
Kubernetes settings, and shared backends (URLs, lock contention). The
scripted stand-in CLI (``FAKE_CLI`` in tests/test_automation.py) records every
call; what only a real engine shows lives in tests/integration.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import EngineEvent

from condukt_egress.automation import (
    AsyncSessionStacks,
    EngineOptions,
    KubernetesSettings,
    Operation,
    PassphraseRequiredError,
    SessionBusyError,
    SessionSpec,
    SessionStacks,
    ca_certificate_urn,
    stack_name,
)
from condukt_egress.errors import ConfigError
from condukt_egress.program import session_program
from tests.pulumi_harness import run
from tests.test_automation import NOT_FOUND, SPECS, FakeCli

CERT = "tls:index/selfSignedCert:SelfSignedCert"
STORED = (
    "encryptionsalt: v1:abc:def\n"
    "config:\n"
    "  condukt-egress:sessionId: run-1\n"
    "  condukt-egress:namespace: before\n"
    "  kubernetes:context: old\n"
)


PREVIEW_EVENTS = [
    {"sequence": 0, "timestamp": 0, "summaryEvent": {"resourceChanges": {"update": 1}}},
    {"sequence": 1, "timestamp": 0, "cancelEvent": {}},
]


def arg(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


# --- preview changes nothing -------------------------------------------------


def test_preview_of_an_existing_session_leaves_its_config(fake: FakeCli, tmp_path: Path) -> None:
    stacks = fake.stacks(tmp_path / "state", kubernetes=KubernetesSettings(context="c"))
    work_dir = stacks.work_dir("run-1")
    work_dir.mkdir(parents=True)
    stored = work_dir / f"Pulumi.{stack_name('run-1')}.yaml"
    stored.write_text(STORED)
    fake.answer("preview", event_log=PREVIEW_EVENTS)

    assert stacks.preview(SessionSpec("run-1", namespace="after")) == {"update": 1}

    assert stored.read_text() == STORED, "a preview must not change what the next up applies"
    calls = fake.calls()
    assert [c["key"] for c in calls] == ["stack select", "config set-all", "preview"]
    set_all, preview = calls[1]["args"], calls[2]["args"]
    (config_file,) = arg(set_all, "--config-file")
    assert arg(preview, "--config-file") == [config_file]
    assert Path(config_file).parent == work_dir
    assert Path(config_file) != stored
    values = json.loads(set_all[set_all.index("--json") + 1])
    assert values["condukt-egress:namespace"] == {"value": "after", "secret": False}
    assert not Path(config_file).exists(), "the private copy is removed"
    assert "config rm-all" not in fake.commands()


def test_preview_copy_keeps_the_salt_and_drops_unwanted_provider_keys(
    fake: FakeCli, tmp_path: Path
) -> None:
    stacks = fake.stacks(tmp_path / "state")
    work_dir = stacks.work_dir("run-1")
    work_dir.mkdir(parents=True)
    (work_dir / f"Pulumi.{stack_name('run-1')}.yaml").write_text(STORED)
    seen: dict[str, str] = {}
    original = stacks._preview_config

    def spy(*args: Any) -> Path:
        path = original(*args)
        seen["text"] = path.read_text()
        return path

    stacks._preview_config = spy  # type: ignore[method-assign,assignment]
    fake.answer("preview", event_log=PREVIEW_EVENTS)
    stacks.preview(SessionSpec("run-1"))
    assert "encryptionsalt: v1:abc:def" in seen["text"]
    assert "kubernetes:context" not in seen["text"]


# --- secrets providers and backends ------------------------------------------


def test_cloud_backend_needs_no_passphrase(fake: FakeCli, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    fake.answer("stack select", **NOT_FOUND)
    fake.answer("up", code=255, stderr="error: stop here\n")
    stacks = SessionStacks(
        tmp_path / "state",
        backend_url="https://api.pulumi.com",
        pulumi_root=fake.root,
        install_plugins=False,
        env={"FAKE_PULUMI_DIR": str(fake.dir), "PULUMI_ACCESS_TOKEN": "pul-x"},
    )
    assert stacks.secrets_provider is None
    assert "PULUMI_CONFIG_PASSPHRASE" not in stacks.environment()
    with pytest.raises(Exception, match="stop here"):
        stacks.up(SessionSpec("run-1"))
    init = next(c for c in fake.calls() if c["key"] == "stack init")
    assert "--secrets-provider" not in init["args"], "the service encrypts by default"
    assert init["env"]["PULUMI_CONFIG_PASSPHRASE"] is None


def test_kms_provider_is_passed_and_needs_no_passphrase(
    fake: FakeCli, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    fake.answer("stack select", **NOT_FOUND)
    fake.answer("up", code=255, stderr="error: stop here\n")
    kms = "awskms://alias/agents?region=eu-west-1"
    stacks = SessionStacks(
        tmp_path / "state",
        backend_url="s3://agents-state/pulumi",
        secrets_provider=kms,
        pulumi_root=fake.root,
        install_plugins=False,
        env={"FAKE_PULUMI_DIR": str(fake.dir)},
    )
    with pytest.raises(Exception, match="stop here"):
        stacks.up(SessionSpec("run-1"))
    init = next(c for c in fake.calls() if c["key"] == "stack init")
    assert arg(init["args"], "--secrets-provider") == [kms]
    assert init["env"]["PULUMI_BACKEND_URL"] == "s3://agents-state/pulumi"


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"backend_url": "s3://b"}, PassphraseRequiredError, "passphrase: none given"),
        (
            {"secrets_provider": "passphrase", "backend_url": "https://api.pulumi.com"},
            PassphraseRequiredError,
            "passphrase: none given",
        ),
        (
            {"secrets_provider": "awskms://k", "passphrase": "p"},
            ConfigError,
            "passphrase: is only used by the passphrase secrets provider",
        ),
        (
            {"backend_url": "https://api.pulumi.com", "passphrase": "p"},
            ConfigError,
            "passphrase: is only used by the passphrase secrets provider",
        ),
        (
            {"secrets_provider": "vault", "passphrase": "p"},
            ConfigError,
            "secrets_provider: must be None (the backend's default), 'passphrase' or a KMS URL",
        ),
        (
            {"backend_url": "ftp://host/x", "passphrase": "p"},
            ConfigError,
            "backend_url: 'ftp://host/x' is not a Pulumi backend URL",
        ),
        (
            {"backend_url": "file://relative/dir", "passphrase": "p"},
            ConfigError,
            "backend_url: file backends need an absolute path",
        ),
        ({"max_operations": 0, "passphrase": "p"}, ConfigError, "max_operations: must be >= 1"),
    ],
)
def test_bad_backend_or_provider_settings(
    kwargs: dict[str, Any], error: type[Exception], needle: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    with pytest.raises(error) as info:
        SessionStacks(tmp_path, **kwargs)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/prefix?region=eu-west-1",
        "azblob://container",
        "gs://bucket",
        "postgres://user@db.internal:5432/pulumi",
        "file:///var/lib/agents",
        "file://~/state",
    ],
)
def test_shared_diy_backends_are_accepted(url: str, tmp_path: Path) -> None:
    stacks = SessionStacks(tmp_path, passphrase="p", backend_url=url)
    assert stacks.environment()["PULUMI_BACKEND_URL"] == url
    assert stacks.project_settings().to_dict()["backend"] == {"url": url}
    assert stacks.secrets_provider == "passphrase"


def test_cloud_lock_contention_is_busy(fake: FakeCli, tmp_path: Path) -> None:
    """Another replica holds the stack: Pulumi Cloud answers 409, a DIY backend its lock."""
    fake.answer(
        "up",
        code=255,
        stderr="error: [409] Conflict: Another update is currently in progress.\n",
    )
    with pytest.raises(SessionBusyError, match=r"another update of this stack is running"):
        fake.stacks(tmp_path / "state").up(SessionSpec("run-1"))


# --- engine options and events -----------------------------------------------


def test_up_passes_replace_target_refresh_parallel_and_events(
    fake: FakeCli,
    tmp_path: Path,
    exported: dict[str, Any],
) -> None:
    fake.answer("stack output", stdout=json.dumps(exported))
    fake.answer(
        "up",
        event_log=[
            {"sequence": 0, "timestamp": 0, "preludeEvent": {"config": {}}},
            {"sequence": 1, "timestamp": 0, "summaryEvent": {"resourceChanges": {"same": 7}}},
            {"sequence": 2, "timestamp": 0, "cancelEvent": {}},
        ],
    )
    spec = SPECS["every option"]
    urn = ca_certificate_urn(spec.session_id)
    events: list[tuple[str, EngineEvent]] = []
    fake.stacks(tmp_path / "state").up(
        spec,
        replace=[urn],
        target=[urn],
        refresh=True,
        parallel=3,
        on_event=lambda sid, event: events.append((sid, event)),
    )
    up = next(c for c in fake.calls() if c["key"] == "up")["args"]
    assert arg(up, "--replace") == [urn]
    assert arg(up, "--target") == [urn]
    assert "--refresh" in up
    assert arg(up, "--parallel") == ["3"]
    assert [sid for sid, _ in events] == [spec.session_id] * len(events)
    summaries = [e.summary_event for _, e in events if e.summary_event is not None]
    assert summaries
    assert summaries[0].resource_changes == {"same": 7}


def test_destroy_and_refresh_pass_their_options(fake: FakeCli, tmp_path: Path) -> None:
    stacks = fake.stacks(tmp_path / "state")
    urn = ca_certificate_urn("run-1")
    stacks.refresh("run-1", target=[urn], parallel=2)
    stacks.destroy("run-1", target=[urn], refresh=True, parallel=5)
    calls = {c["key"]: c["args"] for c in fake.calls()}
    assert arg(calls["refresh"], "--target") == [urn]
    assert arg(calls["refresh"], "--parallel") == ["2"]
    assert arg(calls["destroy"], "--target") == [urn]
    assert arg(calls["destroy"], "--parallel") == ["5"]
    assert "--refresh" in calls["destroy"]
    assert "stack rm" not in calls, "a targeted destroy keeps the stack"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"replace": "urn:pulumi:x"}, "replace: must be a list of resource URNs"),
        ({"target": ["egress-ca"]}, "target: entries must be resource URNs"),
        ({"parallel": 0}, "parallel: must be a whole number >= 1"),
        ({"refresh": "yes"}, "refresh: must be True, False or None"),
    ],
)
def test_bad_engine_options_fail_before_the_cli(
    fake: FakeCli, tmp_path: Path, kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        fake.stacks(tmp_path / "state").up(SessionSpec("run-1"), **kwargs)
    assert needle in str(info.value)
    assert fake.commands() == []


def test_a_failing_event_callback_does_not_stall_the_engine(
    fake: FakeCli,
    tmp_path: Path,
    exported: dict[str, Any],
    caplog: Any,
) -> None:
    fake.answer("stack output", stdout=json.dumps(exported))
    fake.answer("up", event_log=[{"sequence": 0, "timestamp": 0, "cancelEvent": {}}])

    def explode(_sid: str, _event: EngineEvent) -> None:
        raise RuntimeError("ui bug")

    fake.stacks(tmp_path / "state").up(SPECS["every option"], on_event=explode)
    assert "on_event callback failed" in caplog.text


def test_ca_certificate_urn_is_what_the_program_declares() -> None:
    rec = run(session_program, config={"sessionId": "Run 42"})
    urn = ca_certificate_urn("Run 42")
    assert rec.one(CERT).urn == urn.replace(stack_name("Run 42"), "test", 1)


# --- per-session Kubernetes settings -----------------------------------------


def test_kubernetes_settings_per_session_override_the_instance(
    fake: FakeCli,
    tmp_path: Path,
    exported: dict[str, Any],
) -> None:
    fake.answer("stack output", stdout=json.dumps(exported))
    name = SPECS["every option"].stack_name
    work_dir = tmp_path / "state" / "workspaces" / name
    work_dir.mkdir(parents=True)  # an earlier up stored the instance's context
    (work_dir / f"Pulumi.{name}.yaml").write_text("config:\n  kubernetes:context: default-ctx\n")
    stacks = fake.stacks(tmp_path / "state", kubernetes=KubernetesSettings(context="default-ctx"))
    stacks.up(SPECS["every option"], kubernetes=KubernetesSettings(kubeconfig="apiVersion: v1\n"))
    set_all = next(c for c in fake.calls() if c["key"] == "config set-all")["args"]
    values = json.loads(set_all[set_all.index("--json") + 1])
    assert "kubernetes:kubeconfig" not in values
    secret = next(c for c in fake.calls() if c["key"] == "config set")
    assert secret["args"][-1] == "kubernetes:kubeconfig"
    assert secret["stdin"] == "apiVersion: v1\n\n"
    assert "kubernetes:context" not in values
    rm_all = next(c for c in fake.calls() if c["key"] == "config rm-all")["args"]
    assert "kubernetes:context" in rm_all, "the instance's context no longer applies"
    with pytest.raises(TypeError, match="kubernetes must be KubernetesSettings"):
        stacks.up(SPECS["every option"], kubernetes={"context": "x"})  # type: ignore[arg-type]


# --- a bound on concurrent operations ----------------------------------------


def test_operations_beyond_the_bound_wait_for_a_slot(
    fake: FakeCli,
    tmp_path: Path,
    exported: dict[str, Any],
) -> None:
    release = tmp_path / "release"
    fake.answer("up", stdout="Updating", wait_for=str(release))
    fake.answer("stack output", stdout=json.dumps(exported))
    stacks = fake.stacks(tmp_path / "state", max_operations=1)
    started = threading.Event()
    done: list[str] = []

    def up(sid: str) -> None:
        stacks.up(SessionSpec(sid), on_output=lambda _s, _l: started.set())
        done.append(sid)

    first = threading.Thread(target=up, args=("one",))
    first.start()
    assert started.wait(30), "the first up never reached the engine"
    second = threading.Thread(target=up, args=("two",))
    second.start()
    time.sleep(1.0)
    assert fake.commands().count("up") == 1, "the second up must wait for the slot"
    assert fake.commands().count("stack init") == 1, "it waits before touching the CLI"
    release.touch()
    first.join(30)
    second.join(30)
    assert sorted(done) == ["one", "two"]
    assert fake.commands().count("up") == 2


# --- one engine-call path ------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "kwargs", "needle"),
    [
        ("refresh", {"replace": ["urn:pulumi:x"]}, "replace: refresh does not take it"),
        ("refresh", {"refresh": True}, "refresh: refresh does not take it"),
        ("destroy", {"replace": ["urn:pulumi:x"]}, "replace: destroy does not take it"),
        ("up", {"on_output": "print"}, "on_output: must be a callable"),
    ],
)
def test_engine_options_name_what_an_operation_does_not_take(
    operation: Operation, kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        EngineOptions(**kwargs).check(operation)
    assert needle in str(info.value)
    assert EngineOptions(target=["urn:pulumi:x"]).check(operation).sdk_arguments() == {
        "target": ["urn:pulumi:x"]
    }


def test_async_methods_have_the_sync_signatures() -> None:
    public = {n for n in vars(SessionStacks) if not n.startswith("_")}
    wrapped = public - {"environment", "project_settings", "work_dir", "workspace_options"}
    assert wrapped <= set(vars(AsyncSessionStacks)), "every operation has an async twin"
    for name in ("up", "preview", "refresh", "destroy", "get", "list", "status", "reap", "cancel"):
        method = getattr(AsyncSessionStacks, name)
        assert inspect.iscoroutinefunction(method), name
        assert inspect.signature(method) == inspect.signature(getattr(SessionStacks, name)), name


def test_async_destroy_passes_its_options_through(fake: FakeCli, tmp_path: Path) -> None:
    stacks = AsyncSessionStacks(fake.stacks(tmp_path / "state"))
    urn = ca_certificate_urn("run-1")
    asyncio.run(stacks.destroy("run-1", False, target=[urn], parallel=2))
    destroy = next(c for c in fake.calls() if c["key"] == "destroy")["args"]
    assert arg(destroy, "--target") == [urn]
    assert arg(destroy, "--parallel") == ["2"]


def test_a_checkpoint_read_while_another_replica_writes_it_is_busy(
    fake: FakeCli, tmp_path: Path
) -> None:
    """Seen on the real engine: two replicas on one file backend, one reads a torn state."""
    fake.answer("up", code=255, stderr="error: failed to load checkpoint: EOF\n")
    with pytest.raises(SessionBusyError, match="another process was writing this stack's state"):
        fake.stacks(tmp_path / "state").up(SessionSpec("run-1"))
