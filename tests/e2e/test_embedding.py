"""A program embedding SandboxEgress, under the real engine and API server.

A Deployment, a Job and a CronJob take ``workload_options()``; then
``register_stack_transform()`` reaches a local Helm chart's Deployment through
``helm.sh/v4:Chart`` (its children are registered by the Kubernetes provider,
not by this program, so only the engine's stack transform sees them). Every
pod template on the API server, and every pod the controllers made from
them, must be injected. A refused workload must fail ``pulumi up`` with our
message as the engine prints it.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from condukt_egress import SandboxEgressArgs
from tests.e2e.harness import Project, error_lines, kubectl, python_project, wait_for
from tests.security_properties import assert_session_secure, assert_workload_secure

pytestmark = pytest.mark.integration

SESSION_ID = "e2e embedding"

PROGRAM = textwrap.dedent(
    """\
    import pulumi
    import pulumi_kubernetes as k8s

    from condukt_egress import SandboxEgress, SandboxEgressArgs

    config = pulumi.Config()
    namespace = config.require("namespace")
    egress = SandboxEgress("egress", SandboxEgressArgs(session_id=SESSION_ID, namespace=namespace))
    labels = {"app": "agent"}


    def template(restart="Always", ports=None):
        container = {"name": "ws", "image": "python:3.13-slim", "command": ["sleep", "infinity"]}
        if ports:
            container["ports"] = ports
        return {"metadata": {"labels": labels},
                "spec": {"restartPolicy": restart, "containers": [container]}}


    opts = egress.workload_options()
    k8s.apps.v1.Deployment(
        "agent", metadata={"name": "agent"},
        spec={"replicas": 1, "selector": {"matchLabels": labels}, "template": template()},
        opts=opts,
    )
    k8s.batch.v1.Job(
        "job", metadata={"name": "job"},
        spec={"backoffLimit": 0, "template": template("Never")},
        opts=opts,
    )
    k8s.batch.v1.CronJob(
        "cron", metadata={"name": "cron"},
        spec={"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": template("Never")}}},
        opts=opts,
    )
    if config.get_bool("refuse"):
        k8s.apps.v1.Deployment(
            "refused", metadata={"name": "refused"},
            spec={"selector": {"matchLabels": labels},
                  "template": template(ports=[{"containerPort": 8000, "hostPort": 8001}])},
            opts=opts,
        )

    egress.register_stack_transform()
    k8s.helm.v4.Chart("chart", chart="./chart", namespace=namespace,
                      opts=pulumi.ResourceOptions(depends_on=[egress]))
    """
).replace("SESSION_ID", repr(SESSION_ID))

CHART = {
    "Chart.yaml": "apiVersion: v2\nname: tiny\nversion: 0.1.0\n",
    "templates/deployment.yaml": textwrap.dedent(
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}-web
        spec:
          replicas: 1
          selector:
            matchLabels: {app: web}
          template:
            metadata:
              labels: {app: web}
            spec:
              containers:
                - name: web
                  image: nginx:1.27
                  ports: [{containerPort: 8080}]
        """
    ),
    "templates/service.yaml": textwrap.dedent(
        """\
        apiVersion: v1
        kind: Service
        metadata:
          name: {{ .Release.Name }}-web
        spec:
          selector: {app: web}
          ports: [{port: 80, targetPort: 8080}]
        """
    ),
}


def write_chart(directory: Path) -> None:
    for name, text in CHART.items():
        path = directory / "chart" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def objects(namespace: str, kinds: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        kubectl("get", kinds, "--namespace", namespace, "-o", "json")
    )["items"]
    return items


@pytest.fixture
def embedding(namespace: str, project_factory: Callable[..., Project]) -> Project:
    project = project_factory("embedding")
    python_project(project.directory, "embedding", PROGRAM)
    write_chart(project.directory)
    project.init({"namespace": namespace})
    return project


def test_every_pod_template_on_the_api_server_is_injected(
    embedding: Project, namespace: str
) -> None:
    embedding.up()
    labels = SandboxEgressArgs(session_id=SESSION_ID, namespace=namespace).names.pod_labels
    workloads = objects(namespace, "deployments,jobs,cronjobs")
    names = sorted((w["kind"], w["metadata"]["name"]) for w in workloads)
    assert [n for n in names if n[1] != "chart-web"] == [
        ("CronJob", "cron"),
        ("Deployment", "agent"),
        ("Job", "job"),
    ]
    assert ("Deployment", "chart-web") in names, names
    for workload in workloads:
        assert_workload_secure(workload, labels, namespace)

    def pods() -> list[dict[str, Any]]:
        found = objects(namespace, "pods")
        owners = {p["metadata"]["name"].rsplit("-", 2)[0] for p in found}
        return found if {"agent", "chart-web"} <= owners and len(found) >= 3 else []

    for pod in wait_for(pods, "the controllers' pods", timeout=120):
        assert_workload_secure(pod, labels, namespace)
        assert_session_secure(pod["spec"])


def test_a_refused_workload_fails_up_with_our_message_on_one_line(embedding: Project) -> None:
    embedding.set_config({"refuse": True})
    result = embedding.up(check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    errors = error_lines(output)
    assert len(errors) == 1, output
    assert (
        "Deployment 'refused' spec.template.spec.containers[0] (container 'ws')"
        ".ports[0].hostPort: is 8001;" in errors[0]
    ), output
    assert "8001.0" not in output
    assert "Traceback" not in output
    assert 'File "' not in output
