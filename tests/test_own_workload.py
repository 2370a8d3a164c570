"""Your own workload on every surface: ``render -f``, ``inject``, ``SessionSpec`` and the stack."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from condukt_egress.args import SandboxEgressArgs
from condukt_egress.cli import cli
from condukt_egress.errors import ConfigError
from condukt_egress.manifests import (
    CA_FINGERPRINT_ENV,
    SIDECAR_CONTAINER,
    CaBinding,
    ca_fingerprint,
)
from condukt_egress.program import StackConfigError, session_program
from condukt_egress.render import read_manifests
from condukt_egress.spec import SessionSpec
from condukt_egress.workloads import WORKLOAD_KINDS, document_workload, inject_document
from tests.k8s_schema import assert_valid
from tests.pulumi_harness import run as run_program
from tests.security_properties import assert_session_secure
from tests.transform_monitor import EngineMonitor

ARGS = SandboxEgressArgs(session_id="run-42", namespace="agents")
LABEL = (ARGS.names.label_key, ARGS.names.label_value)
SECRET = ARGS.names.secret_name({"policy.json": "as render made it"})
SECRET_FLAG = f"--secret-name={SECRET}"
POD_SPEC = {"containers": [{"name": "agent", "image": "python:3.13-slim", "command": ["x"]}]}
TEMPLATE = {"metadata": {"labels": {"app": "agent"}}, "spec": POD_SPEC}
API = {"Pod": "v1", "ReplicationController": "v1", "Job": "batch/v1", "CronJob": "batch/v1"}


def manifest(kind: str, name: str = "agent") -> dict[str, Any]:
    """A minimal valid workload of ``kind`` (a fresh copy: tests change them)."""
    return copy.deepcopy(_manifest(kind, name))


def _manifest(kind: str, name: str) -> dict[str, Any]:
    api = API.get(kind, "apps/v1")
    if kind == "Pod":
        return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": POD_SPEC}
    selector = {"selector": {"matchLabels": {"app": "agent"}}}
    template = {"template": {**TEMPLATE, "spec": {**POD_SPEC, "restartPolicy": "Never"}}}
    specs: dict[str, dict[str, Any]] = {
        "Job": template,
        "CronJob": {"schedule": "@hourly", "jobTemplate": {"spec": template}},
        "ReplicationController": {"selector": {"app": "agent"}, "template": TEMPLATE},
        "StatefulSet": {**selector, "serviceName": name, "template": TEMPLATE},
    }
    spec = specs.get(kind, {**selector, "template": TEMPLATE})
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec}


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "agent", "annotations": {"created": "2018-12-02T09:15:16Z"}},
    "spec": {"selector": {"app": "agent"}, "ports": [{"port": 80}]},
}


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod (metadata and spec) a workload object runs."""
    workload = document_workload(obj)
    assert workload is not None
    if not workload.template:
        return obj
    node = obj["spec"]
    for key in workload.template:
        node = node[key]
    return node  # type: ignore[no-any-return]


def stream(*documents: dict[str, Any]) -> str:
    return "".join("---\n" + yaml.safe_dump(d) for d in documents)


def invoke(*argv: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(argv), input=stdin)


# --- inject: a stream in, the same stream out --------------------------------------------


def test_inject_injects_every_workload_kind_and_passes_the_rest_unchanged() -> None:
    documents = [manifest(kind) for kind in WORKLOAD_KINDS]
    user = [SERVICE, *documents]
    result = invoke(
        "inject", "--session-id", "run-42", "-n", "agents", SECRET_FLAG, stdin=stream(*user)
    )
    assert result.exit_code == 0, result.stderr
    out = list(yaml.safe_load_all(result.stdout))
    assert [o["kind"] for o in out] == [d["kind"] for d in user]  # the same stream, in order
    assert out[0] == SERVICE  # timestamps stay text, nothing else is touched
    for before, after in zip(documents, out[1:], strict=True):
        pod = pod_template(after)
        assert pod["metadata"]["labels"][LABEL[0]] == LABEL[1], after["kind"]
        assert_session_secure(pod["spec"])
        assert after["metadata"]["namespace"] == "agents"
        assert after["metadata"]["name"] == before["metadata"]["name"]
        assert after.get("spec", {}).get("selector") == before["spec"].get("selector")
        assert {v["secret"]["secretName"] for v in pod["spec"]["volumes"]} == {SECRET}
        assert_valid(after)
    # Without the CA (inject never sees it), no fingerprint: the Secret's own rolls nothing.
    assert CA_FINGERPRINT_ENV not in result.stdout


def test_inject_handles_lists_and_json_and_is_idempotent() -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": [manifest("Deployment"), SERVICE]}
    typed = {"apiVersion": "apps/v1", "kind": "DeploymentList", "items": [manifest("Deployment")]}
    result = invoke("inject", "--session-id", "run-42", "-n", "agents", "-o", "json", SECRET_FLAG,
                    stdin=json.dumps(listed) + "\n---\n" + json.dumps(typed))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    assert [i["kind"] for i in items] == ["List", "DeploymentList"]
    for deployment in (items[0]["items"][0], items[1]["items"][0]):
        assert_session_secure(pod_template(deployment)["spec"])
    assert items[0]["items"][1] == SERVICE
    again = invoke("inject", "--session-id", "run-42", "-n", "agents", "-o", "json", SECRET_FLAG,
                   stdin=result.stdout)  # fmt: skip
    (relisted,) = json.loads(again.stdout)["items"]  # the List read back is one document
    assert relisted["items"] == items


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hostNetwork": True}, "Deployment 'agent' spec.template.spec.hostNetwork: is true"),
        (
            {"containers": [{"name": "a", "image": "b", "securityContext": {"privileged": True}}]},
            "Deployment 'agent' spec.template.spec.containers[0] (container 'a')"
            ".securityContext.privileged: is true",
        ),
    ],
)
def test_inject_refuses_a_bypass_naming_the_workload_and_the_field(
    change: dict[str, Any], field: str
) -> None:
    bad = manifest("Deployment")
    bad["spec"]["template"]["spec"] = {**POD_SPEC, **change}
    result = invoke("inject", "--session-id", "run-42", SECRET_FLAG, stdin=stream(SERVICE, bad))
    assert result.exit_code == 1
    assert result.stdout == ""  # nothing half-injected reaches kubectl
    assert result.stderr.startswith(f"error: {field}")
    assert len(result.stderr.splitlines()) == 1


def test_inject_refuses_another_namespace_naming_the_flag_to_change() -> None:
    other = manifest("Pod")
    other["metadata"]["namespace"] = "elsewhere"
    result = invoke(
        "inject", "--session-id", "run-42", "-n", "agents", SECRET_FLAG, stdin=stream(other)
    )
    assert result.exit_code == 1
    assert "Pod 'agent' metadata.namespace: is 'elsewhere'" in result.stderr


def test_inject_is_a_helm_post_renderer(tmp_path: Path) -> None:
    # Helm 3 runs the post-renderer with the manifests on stdin and its
    # --post-renderer-args as arguments, and applies what comes out on stdout.
    done = subprocess.run(
        [sys.executable, "-m", "condukt_egress", "inject", "--session-id=run-42", "-n", "agents",
         SECRET_FLAG],
        input=stream(SERVICE, manifest("Deployment")), capture_output=True, text=True,
        check=False, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    service, deployment = yaml.safe_load_all(done.stdout)
    assert service == SERVICE
    assert_session_secure(pod_template(deployment)["spec"])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), "error: --secret-name: is required: the session Secret is named "),
        (
            (f"--secret-name={SandboxEgressArgs(session_id='run-4').names.secret_name({})}",),
            "error: --secret-name: is 'condukt-egress-run-4-",
        ),
        ((f"--secret-name={ARGS.names.network_policy}",), "not a Secret of session 'run-42'"),
    ],
    ids=["missing", "another session's", "without its content hash"],
)
def test_inject_needs_the_name_of_the_sessions_secret(
    flags: tuple[str, ...], expected: str
) -> None:
    # The Secret is named after its content (CA and policy), which only render or
    # the stack that created it knows: inject cannot guess it.
    result = invoke("inject", "--session-id", "run-42", *flags, stdin=stream(manifest("Pod")))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: --secret-name: "), result.stderr
    assert expected in result.stderr
    assert "kubectl get secret -l egress.condukt.dev/session=run-42-" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_inject_from_a_terminal_asks_for_the_manifests(tmp_path: Path) -> None:
    primary, terminal = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "condukt_egress", "inject", "--session-id", "a"],
            stdin=terminal, capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
        )  # fmt: skip
    finally:
        os.close(primary)
        os.close(terminal)
    assert done.returncode == 2
    assert done.stderr.startswith("error: give the manifests: -f FILE, or pipe them in (-f -)")


# --- render -f: the session's objects, then yours ------------------------------------------


def test_render_f_prints_the_session_then_your_documents_in_order(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text(stream(manifest("Deployment"), SERVICE))
    result = invoke("render", "--session-id", "run-42", "-n", "agents", "-f", str(first), "-f",
                    "-", stdin=stream(manifest("Job", "batch")))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    out = list(yaml.safe_load_all(result.stdout))
    assert [o["kind"] for o in out] == ["Secret", "NetworkPolicy", "Deployment", "Service", "Job"]
    secret, policy, deployment, service, job = out
    assert service == SERVICE
    fingerprint = ca_fingerprint(secret["stringData"]["ca.pem"])
    for workload in (deployment, job):
        pod = pod_template(workload)
        labels = pod["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        sidecar = next(
            c
            for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
            if c["name"] == SIDECAR_CONTAINER
        )
        assert {"name": CA_FINGERPRINT_ENV, "value": fingerprint} in sidecar["env"]
    # The teardown deletes your workloads first, then their pods, then the rest.
    assert "kubectl delete --namespace agents deployment/agent job/batch --wait=true" in (
        result.stderr
    )
    refused = invoke("render", "--session-id", "a", "--workspace-image", "x", "-f", str(first))
    assert refused.exit_code == 2
    assert "--workspace-image sets the demo Pod, which -f replaces" in refused.stderr


def test_manifests_keep_timestamps_and_refuse_non_objects() -> None:
    (doc,) = read_manifests("a: 2018-12-02T09:15:16Z\nb: 2018-12-02\n", "f")
    assert doc == {"a": "2018-12-02T09:15:16Z", "b": "2018-12-02"}
    with pytest.raises(ConfigError, match=r"^f document 2: is \[1, 2\], not a Kubernetes object"):
        read_manifests("a: 1\n---\n[1, 2]\n", "f")


# --- SessionSpec(workload=...) and the stack -------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [POD_SPEC, TEMPLATE, manifest("Pod"), manifest("Deployment"), manifest("CronJob")],
    ids=["pod spec", "pod template", "Pod", "Deployment", "CronJob"],
)
def test_session_spec_takes_a_pod_spec_a_template_or_a_manifest(value: dict[str, Any]) -> None:
    spec = SessionSpec("run-42", namespace="agents", workload=value)
    assert document_workload(spec.workload) is not None
    assert spec.workload["metadata"]["name"]
    assert json.loads(spec.program_config()["workload"]) == spec.workload
    assert SessionSpec("run-42", namespace="agents", workload=spec.workload) == spec


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (SERVICE, "workload.kind: is 'Service' in 'v1', not a workload; give one of Pod,"),
        ({"image": "x"}, "workload: is none of a pod spec ({containers: [...]}), a pod template"),
        ({"spec": POD_SPEC, "kind2": 1}, "workload.kind2: is not a pod template key"),
        (
            {**POD_SPEC, "hostPID": True},
            "workload Pod 'workspace-run-42-siru7c5qacskv3dwyp6bmjffqa' spec.hostPID: is true",
        ),
    ],
)
def test_a_bad_workload_names_the_field(value: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        SessionSpec("run-42", workload=value)
    assert str(info.value).startswith(message)


def test_workspace_image_is_the_short_form_and_not_both() -> None:
    with pytest.raises(ConfigError, match=r"^workspace_image: sets the demo Pod's image"):
        SessionSpec("run-42", workspace_image="node:22", workload=POD_SPEC)


def test_the_stack_declares_your_workload_injected_instead_of_the_demo_pod() -> None:
    config = {"sessionId": "run-42", "namespace": "agents", "workload": manifest("Deployment")}
    recorder = run_program(session_program, config=config, monitor_factory=EngineMonitor)
    types = [r.type for r in recorder.registrations]
    assert "kubernetes:core/v1:Pod" not in types
    deployment = recorder.one("kubernetes:apps/v1:Deployment")
    declared = {"apiVersion": "apps/v1", "kind": "Deployment", **deployment.inputs}
    assert_session_secure(pod_template(declared)["spec"])
    assert recorder.stack_outputs["workloadKind"] == "Deployment"
    # The stack and inject inject alike: only the CA fingerprint (inject has no CA) differs.
    secret = {v["secret"]["secretName"] for v in pod_template(declared)["spec"]["volumes"]}
    (name,) = secret
    assert ARGS.names.owns_secret(name)
    injected = inject_document(manifest("Deployment"), ARGS, ca=CaBinding(None, name))
    for spec in (pod_template(declared)["spec"], pod_template(injected)["spec"]):
        for container in spec.get("initContainers", []) + spec["containers"]:
            container["env"] = [
                e for e in container.get("env", []) if e["name"] != CA_FINGERPRINT_ENV
            ]
    assert pod_template(declared) == pod_template(injected)


def test_a_bad_workload_in_stack_config_names_the_key() -> None:
    config = {"sessionId": "run-42", "workload": {**POD_SPEC, "hostNetwork": True}}
    with pytest.raises(StackConfigError) as info:
        run_program(session_program, config=config)
    assert info.value.field.startswith("config workload Pod ")
    assert "hostNetwork" in str(info.value)
    assert "condukt-egress:workload:" in str(info.value)


def test_the_documented_workload_examples_are_valid() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    (stack_file,) = [
        b for b in page.split("```yaml\n")[1:] if "condukt-egress:workload:" in b.split("```")[0]
    ]
    config = yaml.safe_load(stack_file.split("```")[0])["config"]
    spec = SessionSpec(
        config["condukt-egress:sessionId"],
        namespace=config["condukt-egress:namespace"],
        workload=config["condukt-egress:workload"],
    )
    assert spec.workload["kind"] == "Deployment"
    (python,) = [b.split("```")[0] for b in page.split("```python\n")[1:] if "SessionSpec(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(python, "docs/cli.md", "exec"), namespace)  # noqa: S102
    assert namespace["spec"].workload["spec"]["runtimeClassName"] == "gvisor"
