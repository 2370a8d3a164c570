"""``condukt-egress render | kubectl apply --server-side -f -`` and its teardown, for real.

Each session kind the README names is applied as the README and ``render``'s
next steps write it (server-side: a public-roots Secret exceeds the 256 KiB
annotation of client-side apply), comes up Running under kwok, and is torn
down by the commands the rendered file's header prints, which must leave
nothing of it behind.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from condukt_egress import SandboxEgressArgs, manifests
from condukt_egress.ca import generate_ca
from condukt_egress.render import render_session, to_yaml
from tests.e2e.harness import kubectl, objects_in, run, wait_for

pytestmark = pytest.mark.integration

SESSIONS = {
    "default": [],
    "plain sidecar": ["--no-native-sidecar"],
    "public roots": ["--trust-bundle", "public-roots"],
    "unproxied egress": ["--unproxied-egress", "10.0.12.7/32:5432"],
}

POD_RESOURCES = {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def condukt_egress() -> list[str]:
    """The installed CLI of this venv (``python -m condukt_egress`` where it is not on PATH)."""
    script = Path(sys.executable).with_name("condukt-egress")
    if script.exists():
        return [str(script)]
    found = shutil.which("condukt-egress")
    return [found] if found else [sys.executable, "-m", "condukt_egress"]


def teardown_commands(text: str, file: Path) -> list[list[str]]:
    """The commands the rendered YAML's header prints, for this file."""
    commands = [
        line.removeprefix("#").strip()
        for line in text.splitlines()
        if line.startswith("#   kubectl ")
    ]
    assert len(commands) == 2, text[:800]
    return [c.replace(" FILE ", f" {file} ").split() for c in commands]


def wait_running(namespace: str, pod: str) -> None:
    def running() -> bool:
        status = json.loads(kubectl("get", "pod", "--namespace", namespace, pod, "-o", "json"))
        return bool(status.get("status", {}).get("phase") == "Running")

    wait_for(running, f"pod {pod} to be Running", timeout=90)


def apply_and_tear_down(text: str, path: Path, namespace: str) -> None:
    path.write_text(text)
    applied = kubectl("apply", "--server-side", "-f", "-", stdin=text)
    names = {o["kind"]: o["metadata"]["name"] for o in _docs(text)}
    assert applied.split("\n")[:3] == [
        f"secret/{names['Secret']} serverside-applied",
        f"networkpolicy.networking.k8s.io/{names['NetworkPolicy']} serverside-applied",
        f"pod/{names['Pod']} serverside-applied",
    ], applied
    wait_running(namespace, names["Pod"])
    for command in teardown_commands(text, path):
        assert command[0] == "kubectl"
        kubectl(*command[1:])
    assert objects_in(namespace) == []


def _docs(text: str) -> list[dict[str, Any]]:
    import yaml  # noqa: PLC0415

    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("flags", list(SESSIONS.values()), ids=list(SESSIONS))
def test_render_applies_and_tears_down_as_the_readme_says(
    flags: list[str], namespace: str, tmp_path: Path
) -> None:
    argv = [*condukt_egress(), "render", "--session-id", "run-42", "--namespace", namespace]
    text = run([*argv, *flags]).stdout
    apply_and_tear_down(text, tmp_path / "session.yaml", namespace)


def test_a_pod_with_pod_level_resources_is_accepted(namespace: str, tmp_path: Path) -> None:
    """Injected containers raise pod-level resources; the API server checks the sums."""
    args = SandboxEgressArgs(session_id="run-43", namespace=namespace)
    ca = generate_ca(args)
    secret, network_policy, pod = render_session(args, ca, "python:3.13-slim")
    user = {
        "restartPolicy": "Never",
        "resources": POD_RESOURCES,
        "containers": [
            {
                "name": "workspace",
                "image": "python:3.13-slim",
                "command": ["sleep", "infinity"],
                "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}},
            }
        ],
    }
    pod["spec"] = manifests.with_ca_binding(
        manifests.inject(user, args), manifests.ca_binding(args, ca.cert_pem)
    )
    assert pod["spec"]["resources"] != POD_RESOURCES  # grown by the injected containers
    apply_and_tear_down(to_yaml([secret, network_policy, pod]), tmp_path / "s.yaml", namespace)


def test_a_new_rendering_is_applied_beside_the_old_and_the_old_secret_pruned(
    namespace: str, tmp_path: Path
) -> None:
    """As the CLI page says: its Secret is new (named after its content), the pod
    is replaced onto it, then render's prune command deletes the old Secret by label."""
    argv = [*condukt_egress(), "render", "--session-id", "run-44", "--namespace", namespace]
    first, second = run(argv), run(argv)  # two renderings: two CAs
    old = {o["kind"]: o["metadata"]["name"] for o in _docs(first.stdout)}
    new = {o["kind"]: o["metadata"]["name"] for o in _docs(second.stdout)}
    assert old["Secret"] != new["Secret"]
    assert (old["NetworkPolicy"], old["Pod"]) == (new["NetworkPolicy"], new["Pod"])
    kubectl("apply", "--server-side", "-f", "-", stdin=first.stdout)
    wait_running(namespace, old["Pod"])
    kubectl("delete", "pod", "--namespace", namespace, old["Pod"], "--wait=true")
    kubectl("apply", "--server-side", "-f", "-", stdin=second.stdout)
    wait_running(namespace, new["Pod"])
    assert sorted(objects_in(namespace, "secrets")) == sorted(
        f"secret/{o['Secret']}" for o in (old, new)
    )
    (prune,) = [
        line.split("prune the older Secrets: ", 1)[1]
        for line in second.stderr.splitlines()
        if "prune the older Secrets: " in line
    ]
    assert prune.startswith("kubectl delete secret ")
    kubectl(*prune.split()[1:])
    assert objects_in(namespace, "secrets") == [f"secret/{new['Secret']}"]
    path = tmp_path / "session.yaml"
    for command in teardown_commands(second.stdout, path):
        kubectl(*command[1:])
    assert objects_in(namespace) == []
