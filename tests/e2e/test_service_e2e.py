"""The example service (examples/service/app.py) on the real engine and cluster.

The flows of tests/test_service.py with a real ``pulumi`` CLI and API server:
a session created over HTTP gets a Running Pod, shows it in its status, and
is gone after DELETE. Skips without the e2e tools (tests/e2e/engine.py),
fails instead under ``CI=true``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from examples.service.app import create_app
from tests.e2e import engine
from tests.e2e.engine import real_stacks, session_objects

pytestmark = pytest.mark.integration
cluster = engine.cluster  # fixtures
fresh_namespace = engine.fresh_namespace


def poll(client: TestClient, url: str, done: Any, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    answer = client.get(url)
    while time.monotonic() < deadline:
        answer = client.get(url)
        if done(answer):
            return answer
        time.sleep(0.5)
    raise AssertionError(f"{url}: still {answer.status_code} {answer.text}")


def test_a_session_over_http_on_the_real_engine(
    tmp_path: Path, cluster: Any, fresh_namespace: str
) -> None:
    app = create_app(real_stacks(tmp_path / "state"), reap_every=None)
    with TestClient(app) as client:
        created = client.post(
            "/sessions", json={"sessionId": "http-1", "namespace": fresh_namespace}
        )
        assert created.status_code == 202, created.text
        url = created.headers["Location"]

        def running(answer: Any) -> bool:
            body = answer.json()
            if body.get("job", {}).get("state") == "failed":
                raise AssertionError(body["job"]["error"])
            return bool(body.get("pod") and body["pod"]["phase"] == "Running")

        body = poll(client, url, running).json()
        assert (body["lastOperation"], body["lastResult"]) == ("up", "succeeded")
        assert body["pod"]["ready"] is True
        assert body["caExpires"] is not None
        assert [s["sessionId"] for s in client.get("/sessions").json()] == ["http-1"]
        assert (
            client.post(
                "/sessions", json={"sessionId": "http-1", "namespace": "Bad_NS"}
            ).status_code
            == 400
        )

        assert client.delete(url).status_code == 202
        poll(client, url, lambda answer: answer.status_code == 404)
    assert session_objects(cluster, fresh_namespace) == []
