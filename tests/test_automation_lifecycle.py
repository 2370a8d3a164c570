"""What a service needs around session stacks: config documents, status, reap, cancel.

Against the scripted CLI of tests/test_automation.py (it records every call)
and, for the Pod, a loopback stand-in for the API server that the official
``kubernetes`` client reads with the session's kubeconfig.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from condukt_egress.automation import (
    KubernetesSettings,
    PodState,
    SessionOperationError,
    SessionSpec,
    stack_name,
)
from condukt_egress.automation._status import RECORD_FILE
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.naming import SIDECAR_CONTAINER
from condukt_egress.spec import CONFIG_KEYS, SESSION_OPTIONS
from tests.test_automation import HISTORY, NOT_FOUND, SPECS, FakeCli

# --- SessionSpec.to_config / from_config ---------------------------------------


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_config_documents_round_trip(spec: SessionSpec) -> None:
    document = spec.to_config()
    assert tuple(document) == CONFIG_KEYS, "the keys of Pulumi.yaml, in its order"
    assert json.loads(json.dumps(document)) == document, "a JSON body as it stands"
    assert SessionSpec.from_config(document) == spec
    assert SessionSpec.from_config(json.loads(json.dumps(document))) == spec
    # The text forms the stack config holds read back too.
    assert SessionSpec.from_config(spec.program_config()) == spec


def test_config_documents_cover_every_registered_option() -> None:
    """A new option in the registry is in the document without touching to/from_config."""
    document = SPECS["every option"].to_config()
    assert set(document) == {o.config for o in SESSION_OPTIONS}
    assert document["policy"]["rules"][0] == {"deny": ["*.internal.example.com"]}
    assert document["allowPlainHttp"] is True
    assert document["caValidityHours"] == 72
    assert document["clusterCidrs"] == ["203.0.113.0/24"]
    assert SPECS["defaults"].to_config()["nodeLocalDns"] == ""


def test_only_session_id_is_required() -> None:
    assert SessionSpec.from_config({"sessionId": "run-1"}) == SessionSpec("run-1")


@pytest.mark.parametrize(
    ("config", "error", "needle"),
    [
        ({"namespace": "a"}, ConfigError, "sessionId: is required"),
        ({"sessionId": ""}, ConfigError, "sessionId: is required"),
        ({"sessionId": "1", "namespce": "a"}, ConfigError, "namespce: is not a session config key"),
        (
            {"sessionId": "1", "ca_validity_hours": 2},
            ConfigError,
            "did you mean 'caValidityHours'?",
        ),
        ({"sessionId": "1", "allowPlainHttp": "yes"}, ConfigError, "allowPlainHttp: must be true"),
        ({"sessionId": "1", "caValidityHours": True}, ConfigError, "caValidityHours: must be a"),
        ({"sessionId": "1", "caValidityHours": 0}, ConfigError, "caValidityHours: must be a whole"),
        ({"sessionId": "1", "clusterCidrs": "10.0.0.0/8"}, ConfigError, "clusterCidrs: must be"),
        ({"sessionId": "1", "dnsPodLabels": ["a"]}, ConfigError, "dnsPodLabels: must be"),
        ({"sessionId": "1", "namespace": "Bad_NS"}, ConfigError, "namespace: must be"),
        (
            {"sessionId": "1", "unproxiedEgress": [{"cidr": "10.0.0.1/32", "ports": []}]},
            ConfigError,
            "unproxiedEgress.ports: must be",
        ),
        (
            {"sessionId": "1", "policy": {"rules": [{"allow": ["x.com:443"]}]}},
            PolicyError,
            "policy.rules[0].allow[0]",
        ),
    ],
)
def test_bad_config_documents_name_the_key(
    config: dict[str, Any], error: type[Exception], needle: str
) -> None:
    with pytest.raises(error) as info:
        SessionSpec.from_config(config)
    assert needle in str(info.value)


def test_a_config_document_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="config: must be an object of stack config keys"):
        SessionSpec.from_config(["sessionId"])  # type: ignore[arg-type]


# --- status ----------------------------------------------------------------------


class _Pods(BaseHTTPRequestHandler):
    pods: dict[str, dict[str, Any]] = {}  # noqa: RUF012 - set per server below
    seen: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        self.seen.append(self.path)
        pod = self.pods.get(self.path)
        body = json.dumps(pod or {"kind": "Status", "code": 404, "reason": "NotFound"}).encode()
        self.send_response(200 if pod else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def api_server() -> Iterator[tuple[str, type[_Pods]]]:
    handler = type("Pods", (_Pods,), {"pods": {}, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        kubeconfig = yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
        yield kubeconfig, handler
    finally:
        server.shutdown()
        server.server_close()


def pod_json(phase: str, ready: bool, sidecar_ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "agents"},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "initContainerStatuses": [
                {
                    "name": SIDECAR_CONTAINER,
                    "ready": sidecar_ready,
                    "restartCount": 0,
                    "image": "i",
                    "imageID": "",
                }
            ],
            "containerStatuses": [
                {
                    "name": "workspace",
                    "ready": ready,
                    "restartCount": 0,
                    "image": "i",
                    "imageID": "",
                }
            ],
        },
    }


def test_status_reads_the_record_the_pod_and_the_ca_without_the_cli(
    fake: FakeCli,
    tmp_path: Path,
    exported: dict[str, Any],
    api_server: tuple[str, type[_Pods]],
) -> None:
    kubeconfig, pods = api_server
    spec = SPECS["every option"]
    path = f"/api/v1/namespaces/agents/pods/{spec.args.names.pod}"
    pods.pods[path] = pod_json("Running", ready=True, sidecar_ready=True)
    fake.answer("stack output", stdout=json.dumps(exported))
    stacks = fake.stacks(tmp_path / "state", kubernetes=KubernetesSettings(kubeconfig=kubeconfig))
    stacks.up(spec)
    calls = len(fake.calls())

    status = stacks.status(spec.session_id)

    assert len(fake.calls()) == calls, "a status of a session known here runs no CLI"
    assert pods.seen == [path]
    assert status.exists
    assert status.running is None
    assert (status.last_operation, status.last_result) == ("up", "succeeded")
    assert status.pod == PodState(phase="Running", ready=True, sidecar_ready=True)
    assert status.outputs is not None
    assert status.outputs.pod_name == spec.args.names.pod
    assert status.ca_expires is not None
    assert status.ca_expires > datetime.now(UTC)
    assert status.problem is None
    body = status.to_dict()
    assert body["pod"] == {"phase": "Running", "ready": True, "sidecarReady": True}
    assert json.loads(json.dumps(body)) == body
    record = (stacks.work_dir(spec.session_id) / RECORD_FILE).read_text()
    assert "PRIVATE KEY" not in record
    assert kubeconfig not in record, "the kubeconfig stays in memory"

    pods.pods[path] = pod_json("Pending", ready=False, sidecar_ready=False)
    assert stacks.status(spec.session_id).pod == PodState("Pending", False, False)
    del pods.pods[path]
    assert stacks.status(spec.session_id).pod == PodState(None, False, False)


def test_status_says_why_the_pod_is_unknown(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any]
) -> None:
    unreachable = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    fake.answer("stack output", stdout=json.dumps(exported))
    stacks = fake.stacks(tmp_path / "state")
    spec = SPECS["every option"]
    stacks.up(spec, kubernetes=KubernetesSettings(kubeconfig=unreachable))
    status = stacks.status(spec.session_id)
    assert status.pod is None
    assert status.problem is not None
    assert status.problem.startswith(f"cannot read Pod agents/{spec.args.names.pod}: ")
    rendered = KubernetesSettings(render_yaml_to_directory=tmp_path / "out")
    status = stacks.status(spec.session_id, kubernetes=rendered)
    assert (status.pod, status.problem) == (None, None), "rendered manifests have no Pod"


def test_status_of_an_unknown_session_asks_the_backend(fake: FakeCli, tmp_path: Path) -> None:
    fake.answer("stack select", **NOT_FOUND)
    fake.answer("stack output", **NOT_FOUND)
    stacks = fake.stacks(tmp_path / "state")
    status = stacks.status("nope")
    assert not status.exists
    assert status.last_operation is None
    assert not stacks.work_dir("nope").exists()


def test_status_while_running_and_after_the_process_died(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any]
) -> None:
    release = tmp_path / "release"
    fake.answer("up", stdout="Updating", wait_for=str(release))
    fake.answer("stack output", stdout=json.dumps(exported))
    stacks = fake.stacks(tmp_path / "state")
    spec = SPECS["every option"]
    started = threading.Event()
    thread = threading.Thread(
        target=stacks.up, args=(spec,), kwargs={"on_output": lambda _s, _l: started.set()}
    )
    thread.start()
    try:
        assert started.wait(30)
        status = stacks.status(spec.session_id)
        assert (status.running, status.last_operation, status.last_result) == (
            "up",
            "up",
            "running",
        )
    finally:
        release.touch()
        thread.join(30)
    record = stacks.work_dir(spec.session_id) / RECORD_FILE
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "result": "running", "pid": 2**22 + 7}))
    assert stacks.status(spec.session_id).last_result == "interrupted"


# --- reap ------------------------------------------------------------------------


def listed(*entries: tuple[str, datetime | None, bool]) -> str:
    out = []
    for session_id, last, running in entries:
        entry: dict[str, Any] = {
            "name": stack_name(session_id),
            "current": False,
            "updateInProgress": running,
        }
        if last is not None:
            entry["lastUpdate"] = last.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        out.append(entry)
    return json.dumps(out)


def recorded(stacks: Any, session_id: str) -> None:
    """The stack config a session started here keeps (its id is read from it)."""
    work_dir = stacks.work_dir(session_id)
    work_dir.mkdir(parents=True)
    name = stack_name(session_id)
    (work_dir / f"Pulumi.{name}.yaml").write_text(
        yaml.safe_dump({"config": {"condukt-egress:sessionId": session_id}})
    )


def history_at(end: datetime) -> str:
    return json.dumps([{**HISTORY[0], "endTime": end.strftime("%Y-%m-%dT%H:%M:%S.000Z")}])


def test_reap_destroys_idle_sessions_and_keeps_the_rest(fake: FakeCli, tmp_path: Path) -> None:
    old = datetime.now(UTC) - timedelta(hours=5)
    fresh = datetime.now(UTC) - timedelta(minutes=5)
    fake.answer(
        "stack ls",
        stdout=listed(("idle", old, False), ("fresh", fresh, False), ("busy", old, True)),
    )
    fake.answer("stack history", stdout=history_at(old))
    stacks = fake.stacks(tmp_path / "state")
    for sid in ("idle", "fresh", "busy"):
        recorded(stacks, sid)

    assert stacks.reap(older_than=timedelta(hours=1)) == ["idle"]

    destroys = [c for c in fake.calls() if c["key"] == "destroy"]
    assert len(destroys) == 1
    assert destroys[0]["cwd"] == str(stacks.work_dir("idle"))
    assert not stacks.work_dir("idle").exists()
    assert stacks.work_dir("fresh").exists()
    assert stacks.work_dir("busy").exists(), "an update in progress is never touched"


def test_reap_skips_a_session_another_replica_holds(fake: FakeCli, tmp_path: Path) -> None:
    old = datetime.now(UTC) - timedelta(hours=5)
    fake.answer("stack ls", stdout=listed(("held", old, False)))
    fake.answer("stack history", stdout=history_at(old))
    fake.answer(
        "destroy",
        code=255,
        stderr="error: the stack is currently locked by 1 lock(s). Either wait for the other "
        "process(es) to end or delete the lock file with `pulumi cancel`.\n",
    )
    stacks = fake.stacks(tmp_path / "state")
    recorded(stacks, "held")
    assert stacks.reap(older_than=60) == []
    assert "stack rm" not in fake.commands()
    assert stacks.work_dir("held").exists()


def test_reap_keeps_a_session_updated_since_it_was_listed(fake: FakeCli, tmp_path: Path) -> None:
    old = datetime.now(UTC) - timedelta(hours=5)
    fake.answer("stack ls", stdout=listed(("revived", old, False)))
    fake.answer("stack history", stdout=history_at(datetime.now(UTC)))
    stacks = fake.stacks(tmp_path / "state")
    recorded(stacks, "revived")
    assert stacks.reap(older_than=60) == []
    assert "destroy" not in fake.commands()


def test_reap_destroys_sessions_whose_ca_expires_soon(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any]
) -> None:
    spec = SPECS["every option"]  # a 72-hour CA
    fake.answer("stack output", stdout=json.dumps(exported))
    stacks = fake.stacks(tmp_path / "state")
    stacks.up(spec, kubernetes=KubernetesSettings(render_yaml_to_directory=tmp_path / "out"))
    now = datetime.now(UTC)
    fake.answer("stack ls", stdout=listed((spec.session_id, now, False)))
    fake.answer("stack history", stdout=history_at(now))
    assert stacks.reap(expiring_within=timedelta(hours=1)) == []
    assert stacks.reap(expiring_within=timedelta(hours=100)) == [spec.session_id]


def test_reap_needs_a_window() -> None:
    from condukt_egress.automation import SessionStacks  # noqa: PLC0415

    stacks = SessionStacks("/nonexistent", passphrase="p")
    with pytest.raises(ConfigError, match="older_than: give older_than, expiring_within or both"):
        stacks.reap()
    with pytest.raises(ConfigError, match="expiring_within: must be a positive"):
        stacks.reap(expiring_within=-5)


# --- cancel ----------------------------------------------------------------------


def test_cancel_interrupts_a_running_up_and_frees_the_session(
    fake: FakeCli, tmp_path: Path
) -> None:
    fake.answer("up", stdout="Updating", wait_for=str(tmp_path / "never"))
    stacks = fake.stacks(tmp_path / "state")
    started = threading.Event()
    errors: list[BaseException] = []

    def up() -> None:
        try:
            stacks.up(SessionSpec("run-1"), on_output=lambda _s, _l: started.set())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=up)
    thread.start()
    assert started.wait(30)
    assert stacks.cancel("run-1", wait=30) is True
    thread.join(30)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], SessionOperationError)
    assert stacks.status("run-1").last_result == "failed"
    stacks.destroy("run-1")  # the session is free and destroyable


def test_cancel_of_an_idle_session_runs_pulumi_cancel(fake: FakeCli, tmp_path: Path) -> None:
    stacks = fake.stacks(tmp_path / "state")
    assert stacks.cancel("run-1") is True
    cancel = [c for c in fake.calls() if c["key"] == "cancel"]
    assert len(cancel) == 1
    assert stack_name("run-1") in cancel[0]["args"]
    fake.answer("cancel", code=255, stderr="error: no update in progress\n")
    assert stacks.cancel("run-1") is False


def test_pid_in_the_record_is_this_process(fake: FakeCli, tmp_path: Path) -> None:
    stacks = fake.stacks(tmp_path / "state")
    stacks.refresh("run-1")
    record = json.loads((stacks.work_dir("run-1") / RECORD_FILE).read_text())
    assert record["pid"] == os.getpid()
    assert (record["operation"], record["result"]) == ("refresh", "succeeded")


# --- the control channel's target ------------------------------------------------


def test_control_target_is_the_sessions_pod_with_its_kube_settings(
    fake: FakeCli,
    tmp_path: Path,
    exported: dict[str, Any],
    api_server: tuple[str, type[_Pods]],
) -> None:
    kubeconfig, _pods = api_server
    fake.answer("stack output", stdout=json.dumps(exported))
    stacks = fake.stacks(tmp_path / "state")
    spec = SPECS["every option"]
    stacks.up(spec, kubernetes=KubernetesSettings(kubeconfig=kubeconfig))
    target = stacks.control_target(spec.session_id)
    assert (target.namespace, target.pod, target.port) == ("agents", spec.args.names.pod, 15002)
    assert target.api_client.configuration.host.startswith("http://127.0.0.1:")
    rendered = KubernetesSettings(render_yaml_to_directory=tmp_path / "out")
    with pytest.raises(ConfigError, match="kubernetes: the session's manifests are rendered"):
        stacks.control_target(spec.session_id, kubernetes=rendered)


def test_a_stack_made_elsewhere_gets_its_config_back_before_destroy(
    fake: FakeCli, tmp_path: Path
) -> None:
    """Another replica's stack has no config here; the program needs its sessionId."""
    stacks = fake.stacks(tmp_path / "state")
    stacks.destroy("elsewhere")
    keys = fake.commands()
    assert keys.index("config refresh") < keys.index("destroy")
    refresh = next(c for c in fake.calls() if c["key"] == "config refresh")
    assert "--force" in refresh["args"]
    before = len(fake.calls())
    recorded(stacks, "here")
    stacks.destroy("here")
    later = [c["key"] for c in fake.calls()[before:]]
    assert "config refresh" not in later, "a stack with its config here keeps it"
