"""The example service (examples/service/app.py) driven through its HTTP API.

Against the scripted CLI of tests/test_automation.py, and a sidecar double for
the event stream. The same flows against the real engine and cluster live in
tests/e2e/test_service_e2e.py.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from condukt_egress.automation import KubernetesSettings, SessionStacks, stack_name
from condukt_egress.control import Target, TcpTarget
from condukt_egress.program import session_program
from examples.service.app import create_app
from tests.pulumi_harness import run
from tests.sidecar_double import ThreadedDouble, event_frame
from tests.test_automation import HISTORY, NOT_FOUND, SPECS, FakeCli, manager_config

SPEC = dataclasses.replace(SPECS["every option"], session_id="Agent Run 42 ünïcode")
URL = f"/sessions/{quote(SPEC.session_id, safe='')}"


@pytest.fixture(scope="module")
def exported() -> dict[str, Any]:
    return run(session_program, config=manager_config(SPEC)).stack_outputs


@pytest.fixture
def sidecar() -> Iterator[ThreadedDouble]:
    double = ThreadedDouble()
    try:
        yield double
    finally:
        double.close()


def service(
    stacks: SessionStacks, sidecar: ThreadedDouble | None = None, **kwargs: Any
) -> TestClient:
    async def target_for(_session_id: str) -> Target:
        assert sidecar is not None
        return TcpTarget("127.0.0.1", sidecar.port)

    kwargs.setdefault("reap_every", None)
    return TestClient(create_app(stacks, target_for=target_for, **kwargs))


def rendered(fake: FakeCli, tmp_path: Path) -> SessionStacks:
    settings = KubernetesSettings(render_yaml_to_directory=tmp_path / "out")
    return fake.stacks(tmp_path / "state", kubernetes=settings)


def wait_for_job(client: TestClient, url: str) -> dict[str, Any]:
    for _ in range(300):
        body: dict[str, Any] = client.get(url).json()
        if body["job"] is None or body["job"]["state"] != "running":
            return body
        time.sleep(0.05)
    raise AssertionError(f"the job of {url} never ended")


def test_a_session_from_post_to_delete(
    fake: FakeCli, tmp_path: Path, exported: dict[str, Any]
) -> None:
    fake.answer("stack output", stdout=json.dumps(exported))
    with service(rendered(fake, tmp_path)) as client:
        created = client.post("/sessions", json=SPEC.to_config())
        assert created.status_code == 202, created.text
        url = f"/sessions/{quote(SPEC.session_id, safe='')}"
        assert created.headers["Location"] == url
        assert created.json()["status"] == url

        body = wait_for_job(client, url)
        assert body["job"] == {"operation": "up", "state": "done", "error": None}
        assert body["exists"] is True
        assert (body["lastOperation"], body["lastResult"]) == ("up", "succeeded")
        assert body["podName"] == SPEC.args.names.pod
        assert body["caExpires"] is not None

        fake.answer(
            "stack ls",
            stdout=json.dumps([{"name": SPEC.stack_name, "current": False, "resourceCount": 7}]),
        )
        listed = client.get("/sessions").json()
        assert [(s["sessionId"], s["resourceCount"]) for s in listed] == [(SPEC.session_id, 7)]

        deleted = client.delete(url)
        assert deleted.status_code == 202, deleted.text
        assert deleted.json()["job"]["operation"] == "destroy"
        jobs = client.app.state.service.jobs  # type: ignore[attr-defined]
        for _ in range(300):
            if SPEC.session_id not in jobs:
                break
            time.sleep(0.05)
        assert SPEC.session_id not in jobs, "a finished destroy leaves no job behind"
        fake.answer("stack output", **NOT_FOUND)  # what the backend says now
        assert client.get(url).status_code == 404, "a destroyed session is gone"
    # Leaving the client waits for the jobs; the destroy removed the stack.
    keys = fake.commands()
    assert keys.index("destroy") < keys.index("stack rm")


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"sessionId": "run-1", "namespace": "Bad_NS"}, "namespace", "namespace: must be"),
        ({"sessionId": "run-1", "namespce": "a"}, "namespce", "did you mean 'namespace'?"),
        ({"namespace": "agents"}, "sessionId", "sessionId: is required"),
        (
            {"sessionId": "run-1", "policy": {"rules": [{"allow": ["x.com:443"]}]}},
            "policy.rules[0].allow[0]",
            "has a port",
        ),
        (["run-1"], "config", "must be an object"),
        ({"sessionId": "a/b"}, "sessionId", "must not contain '/'"),
    ],
)
def test_a_bad_spec_is_400_naming_the_key(
    fake: FakeCli, tmp_path: Path, body: Any, field: str, needle: str
) -> None:
    with service(rendered(fake, tmp_path)) as client:
        answer = client.post("/sessions", json=body)
    assert answer.status_code == 400
    assert answer.json()["field"] == field
    assert needle in answer.json()["error"]
    assert fake.commands() == [], "a bad spec never reaches the engine"


def test_a_body_that_is_not_json_is_400(fake: FakeCli, tmp_path: Path) -> None:
    with service(rendered(fake, tmp_path)) as client:
        answer = client.post("/sessions", content=b"{not json")
    assert answer.status_code == 400
    assert "not JSON" in answer.json()["error"]


def test_unknown_session_is_404(fake: FakeCli, tmp_path: Path) -> None:
    fake.answer("stack select", code=255, stderr="error: no stack named 'x' found\n")
    fake.answer("stack output", code=255, stderr="error: no stack named 'x' found\n")
    with service(rendered(fake, tmp_path)) as client:
        assert client.get("/sessions/nope").status_code == 404
        assert client.delete("/sessions/nope").status_code == 404
        assert client.post("/sessions/nope/cancel").status_code == 404


def test_a_busy_session_is_409(fake: FakeCli, tmp_path: Path, exported: dict[str, Any]) -> None:
    release = tmp_path / "release"
    fake.answer("up", stdout="Updating", wait_for=str(release))
    fake.answer("stack output", stdout=json.dumps(exported))
    with service(rendered(fake, tmp_path)) as client:
        try:
            assert client.post("/sessions", json=SPEC.to_config()).status_code == 202
            again = client.post("/sessions", json=SPEC.to_config())
            assert again.status_code == 409
            assert "up is running" in again.json()["error"]
            assert client.get(URL).json()["job"]["state"] == "running"
            assert client.delete(URL).status_code == 409
        finally:
            release.touch()
        assert wait_for_job(client, URL)["job"]["state"] == "done"


def test_no_cli_is_503(fake: FakeCli, tmp_path: Path) -> None:
    stacks = SessionStacks(tmp_path / "state", passphrase="p", pulumi_root=tmp_path / "nothing")
    with service(stacks) as client:
        answer = client.post("/sessions", json={"sessionId": "run-1"})
        assert answer.status_code == 503
        assert "`pulumi` CLI was not found" in answer.json()["error"]
        assert client.get("/sessions").status_code == 503
    assert not (tmp_path / "state").exists()


def test_events_stream_as_server_sent_events(
    fake: FakeCli, tmp_path: Path, sidecar: ThreadedDouble
) -> None:
    secret = "Bearer ghp_do-not-leak"
    frames = [
        event_frame("request_opened", host="api.github.com", headers={"authorization": secret}),
        event_frame("request_denied", host="evil.example", reason="matched_deny_list"),
    ]

    def feed() -> None:
        sidecar.run(sidecar.double.wait_for_peer(30), timeout=40)
        sidecar.run(sidecar.double.send(*frames))

    feeder = threading.Thread(target=feed)
    feeder.start()
    with service(rendered(fake, tmp_path), sidecar) as client:
        answer = client.get(f"{URL}/events", params={"max_events": 2})
    feeder.join(30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    chunks = [c for c in answer.text.split("\n\n") if c]
    assert [c.splitlines()[0] for c in chunks] == ["event: event", "event: event"]
    records = [json.loads(c.splitlines()[1].removeprefix("data: ")) for c in chunks]
    assert [(r["kind"], r["host"]) for r in records] == [
        ("request_opened", "api.github.com"),
        ("request_denied", "evil.example"),
    ]
    assert records[1]["reason"] == "matched_deny_list"
    assert "ghp_do-not-leak" not in answer.text, "request headers never leave the service"


def test_the_reaper_runs_periodically(fake: FakeCli, tmp_path: Path) -> None:
    fake.answer("stack ls", stdout="[]")
    with service(rendered(fake, tmp_path), reap_every=0.05):
        deadline = time.monotonic() + 20
        while fake.commands().count("stack ls") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert fake.commands().count("stack ls") >= 2, "the reaper lists the sessions each run"


def test_reap_once_returns_what_it_reaped(fake: FakeCli, tmp_path: Path) -> None:
    old = "2020-01-01T00:00:00.000Z"
    name = stack_name("idle")
    fake.answer(
        "stack ls", stdout=json.dumps([{"name": name, "current": False, "lastUpdate": old}])
    )
    fake.answer("stack output", stdout=json.dumps({"sessionId": "idle"}))
    fake.answer("stack history", stdout=json.dumps([{**HISTORY[0], "endTime": old}]))
    app = create_app(rendered(fake, tmp_path), reap_every=None)
    with TestClient(app) as client:
        assert client.portal is not None
        assert client.portal.call(app.state.service.reap_once) == ["idle"]
    assert "destroy" in fake.commands()
