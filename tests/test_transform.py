"""The workload transform called directly, with the wire-form dicts the engine hands it.

Typed ``*Args`` specs reach a transform only through the SDK, which serialises
them first; tests/test_transform_sdk.py covers that path.
"""

from __future__ import annotations

import asyncio
import copy
import os
import pathlib
import re
import sys
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from condukt_egress import _bail, manifests, transform
from condukt_egress._passthrough import passthrough_warning
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.errors import ConfigError
from condukt_egress.transform import workload_transform
from condukt_egress.workloads import WORKLOAD_KINDS, workload_of
from tests.k8s_schema import assert_valid
from tests.security_properties import (
    assert_patch_hardened,
    assert_workload_secure,
    pod_template,
)
from tests.strategies import labels, user_containers, volumes

ARGS = SandboxEgressArgs(session_id="Agent Run 42", namespace="agents")
LABELS = ARGS.names.pod_labels
API = {
    "Pod": "v1",
    "ReplicationController": "v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
SEVEN = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]


def token(kind: str, variant: str = "") -> str:
    api = API[kind]
    return f"kubernetes:{'core/' + api if api == 'v1' else api}:{kind}{variant}"


def pod_spec(kind: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "ws",
                "image": "python:3.13-slim",
                "env": [{"name": "HOME", "value": "/work"}],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }
        ],
        "volumes": [{"name": "work", "emptyDir": {}}],
        **extra,
    }
    if kind in ("Job", "CronJob"):
        spec["restartPolicy"] = "Never"
    return spec


def workload(kind: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A dict-form workload of ``kind`` (wire names), labelled app=agent."""
    pod = spec if spec is not None else pod_spec(kind)
    template = {"metadata": {"labels": {"app": "agent"}}, "spec": pod}
    specs: dict[str, Any] = {
        "Pod": pod,
        "Job": {"template": template},
        "CronJob": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}},
        "StatefulSet": {
            "serviceName": "agent",
            "selector": {"matchLabels": {"app": "agent"}},
            "template": template,
        },
        "ReplicationController": {"selector": {"app": "agent"}, "template": template},
    }
    default = {"selector": {"matchLabels": {"app": "agent"}}, "template": template}
    metadata: dict[str, Any] = {"name": "agent"}
    if kind == "Pod":
        metadata["labels"] = {"app": "agent"}
    return {"metadata": metadata, "spec": specs.get(kind, default)}


def typed(kind: str) -> dict[str, Any]:
    """The same workload as :func:`workload`, as pulumi-kubernetes ``*Args`` objects."""
    core, meta = k8s.core.v1, k8s.meta.v1
    pod = core.PodSpecArgs(
        containers=[
            core.ContainerArgs(
                name="ws",
                image="python:3.13-slim",
                env=[core.EnvVarArgs(name="HOME", value="/work")],
                volume_mounts=[core.VolumeMountArgs(name="work", mount_path="/work")],
            )
        ],
        volumes=[core.VolumeArgs(name="work", empty_dir=core.EmptyDirVolumeSourceArgs())],
        restart_policy="Never" if kind in ("Job", "CronJob") else None,
    )
    template = core.PodTemplateSpecArgs(
        metadata=meta.ObjectMetaArgs(labels={"app": "agent"}), spec=pod
    )
    selector = meta.LabelSelectorArgs(match_labels={"app": "agent"})
    apps, batch = k8s.apps.v1, k8s.batch.v1
    spec: Any = {
        "Pod": pod,
        "Deployment": apps.DeploymentSpecArgs(selector=selector, template=template),
        "StatefulSet": apps.StatefulSetSpecArgs(
            service_name="agent", selector=selector, template=template
        ),
        "DaemonSet": apps.DaemonSetSpecArgs(selector=selector, template=template),
        "ReplicaSet": apps.ReplicaSetSpecArgs(selector=selector, template=template),
        "Job": batch.JobSpecArgs(template=template),
        "CronJob": batch.CronJobSpecArgs(
            schedule="*/5 * * * *",
            job_template=batch.JobTemplateSpecArgs(spec=batch.JobSpecArgs(template=template)),
        ),
    }[kind]
    labels = {"app": "agent"} if kind == "Pod" else None
    return {"metadata": meta.ObjectMetaArgs(name="agent", labels=labels), "spec": spec}


def apply(
    kind: str, props: dict[str, Any], args: SandboxEgressArgs = ARGS, variant: str = ""
) -> dict[str, Any]:
    result = workload_transform(args, list)(
        pulumi.ResourceTransformArgs(
            custom=True,
            type_=token(kind, variant),
            name="agent",
            props=props,
            opts=pulumi.ResourceOptions(),
        )
    )
    assert isinstance(result, pulumi.ResourceTransformResult)
    return dict(result.props)


def props_selector(kind: str) -> Any:
    return workload(kind)["spec"].get("selector")


def as_object(kind: str, props: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API[kind], "kind": kind, **props}


# --- every kind -------------------------------------------------------------


@pytest.mark.parametrize("kind", [*SEVEN, "ReplicationController"])
def test_every_workload_kind_is_injected_hardened_and_valid(kind: str) -> None:
    props = workload(kind)
    obj = as_object(kind, apply(kind, props))
    assert_valid(obj)
    assert_workload_secure(obj, LABELS, "agents")
    template = pod_template(obj)
    assert template["metadata"]["labels"]["app"] == "agent"
    assert template["spec"]["containers"][0]["name"] == "ws"
    if kind != "Pod":
        assert obj["spec"].get("selector") == props_selector(kind), "selectors are immutable"
    # Idempotent: transforming the result again changes nothing.
    assert as_object(kind, apply(kind, apply(kind, props))) == obj


def test_other_resources_pass_through() -> None:
    transform = workload_transform(ARGS, list)
    for type_ in ("kubernetes:core/v1:Service", "kubernetes:core/v1:PodTemplate", "aws:s3:Bucket"):
        args = pulumi.ResourceTransformArgs(
            True, type_, "x", {"spec": {}}, pulumi.ResourceOptions()
        )
        assert transform(args) is None


@pytest.mark.parametrize(
    ("type_", "custom", "warned"),
    [
        ("kubernetes:helm.sh/v3:Release", True, True),
        ("kubernetes:argoproj.io/v1alpha1:Workflow", True, True),  # a custom resource
        ("kubernetes:serving.knative.dev/v1:Service", True, True),  # not the core Service
        ("kubernetes:admissionregistration.k8s.io/v1:MutatingWebhookConfiguration", True, True),
        ("kubernetes:settings.k8s.io/v1alpha1:PodPreset", True, True),
        ("kubernetes:core/v1:Service", True, False),
        ("kubernetes:core/v1:ConfigMapList", True, False),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", True, False),
        ("kubernetes:helm.sh/v4:Chart", False, False),  # a component: children are reached
        ("kubernetes:yaml/v2:ConfigGroup", False, False),
        ("random:index/randomId:RandomId", True, False),
    ],
)
def test_resources_that_may_create_pods_are_named_once_in_the_log(
    type_: str, custom: bool, warned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Round 2: a helm.sh/v3 Release, custom resources and any kind we do not inject
    # passed without a word, and their pods ran without the sidecar.
    logged: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: logged.append(message))
    transform = workload_transform(ARGS, list)
    for _ in range(2):
        args = pulumi.ResourceTransformArgs(custom, type_, "db", {}, pulumi.ResourceOptions())
        assert transform(args) is None
    if not warned:
        assert logged == []
        return
    (message,) = logged  # once per resource, however often the transform runs
    assert f"{type_} 'db' passes without egress injection" in message
    assert "WITHOUT the egress sidecar" in message


def test_every_kind_pulumi_kubernetes_ships_is_injected_pod_free_or_warned() -> None:
    root = pathlib.Path(k8s.__file__).parent
    pattern = re.compile(r"'(kubernetes:[A-Za-z0-9./]+:[A-Z][A-Za-z]+)'")
    tokens = {t for path in root.rglob("*.py") for t in pattern.findall(path.read_text())}
    passed = {t for t in tokens if workload_of(t) is None}
    warned = {t for t in passed if passthrough_warning(t, "x", custom=True) is not None}
    kinds = {t.rsplit(":", 1)[1].removesuffix("List").removesuffix("Patch") for t in warned}
    # What may create or change pods out of the transform's sight (components aside).
    assert kinds <= {
        "Release", "Chart", "ConfigFile", "ConfigGroup", "Directory", "PodPreset",
        "MutatingWebhookConfiguration", "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
    }, sorted(kinds)  # fmt: skip
    assert "Release" in kinds


def test_every_workload_type_pulumi_kubernetes_ships_is_recognised() -> None:
    root = pathlib.Path(k8s.__file__).parent
    kinds = "|".join(WORKLOAD_KINDS)
    pattern = re.compile(rf"'(kubernetes:[a-z0-9./]+:(?:{kinds})(?:Patch|List)?)'")
    tokens = {t for path in root.rglob("*.py") for t in pattern.findall(path.read_text())}
    assert len(tokens) >= 50, sorted(tokens)  # 57 in pulumi-kubernetes 4.34
    assert [t for t in tokens if workload_of(t) is None] == []


# --- namespace, labels, jobs ------------------------------------------------


def test_unset_namespace_becomes_the_sessions() -> None:
    assert apply("Job", workload("Job"))["metadata"]["namespace"] == "agents"


def test_another_namespace_is_refused() -> None:
    props = workload("Deployment")
    props["metadata"]["namespace"] = "other"
    with pytest.raises(ConfigError) as info:
        apply("Deployment", props)
    assert info.value.field == "Deployment 'agent' metadata.namespace"
    assert "namespace='other'" in str(info.value)


def test_a_label_of_another_session_is_refused() -> None:
    props = workload("Deployment")
    props["spec"]["template"]["metadata"]["labels"][ARGS.names.label_key] = "other-session"
    with pytest.raises(ConfigError) as info:
        apply("Deployment", props)
    assert info.value.field == (
        "Deployment 'agent' spec.template.metadata.labels['egress.condukt.dev/session']"
    )
    assert "a pod belongs to one session" in str(info.value)


def test_a_pod_labelled_for_another_session_is_refused() -> None:
    props = workload("Pod")
    props["metadata"].setdefault("labels", {})[ARGS.names.label_key] = "other-session"
    with pytest.raises(ConfigError) as info:
        apply("Pod", props)
    assert info.value.field == "Pod 'agent' metadata.labels['egress.condukt.dev/session']"
    assert "is 'other-session', but the workload is injected for session" in str(info.value)


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_jobs_need_the_native_sidecar(kind: str) -> None:
    args = SandboxEgressArgs(session_id="1", namespace="agents", native_sidecar=False)
    with pytest.raises(ConfigError, match="native_sidecar=True"):
        apply(kind, workload(kind), args)


def test_a_workload_without_a_pod_template_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        apply("CronJob", {"spec": {"schedule": "* * * * *", "jobTemplate": {}}})
    assert info.value.field == "CronJob 'agent' spec.jobTemplate.spec"


# --- refusals name the workload and the path --------------------------------


@pytest.mark.parametrize(
    ("kind", "mutate", "field"),
    [
        ("Pod", lambda s: s.update(hostPID=True), "Pod 'agent' spec.hostPID"),
        ("Deployment", lambda s: s["containers"][0].update(securityContext={"privileged": True}),
         "Deployment 'agent' spec.template.spec.containers[0] (container 'ws')"
         ".securityContext.privileged"),
        ("CronJob", lambda s: s.update(hostNetwork=True),
         "CronJob 'agent' spec.jobTemplate.spec.template.spec.hostNetwork"),
        ("StatefulSet", lambda s: s["containers"][0].update(
            securityContext={"capabilities": {"add": ["SYS_PTRACE"]}}),
         "StatefulSet 'agent' spec.template.spec.containers[0] (container 'ws')"
         ".securityContext.capabilities.add"),
        ("DaemonSet", lambda s: s.update(securityContext={"runAsUser": 1337}),
         "DaemonSet 'agent' spec.template.spec.securityContext.runAsUser"),
        ("ReplicaSet",
         lambda s: s["volumes"].append({"name": "condukt-egress-trust", "emptyDir": {}}),
         "ReplicaSet 'agent' spec.template.spec.volumes[1].name"),
        ("Job", lambda s: s.update(shareProcessNamespace=True),
         "Job 'agent' spec.template.spec.shareProcessNamespace"),
    ],
)  # fmt: skip
def test_refusals_name_the_workload_and_path(kind: str, mutate: Any, field: str) -> None:
    spec = pod_spec(kind)
    mutate(spec)
    with pytest.raises(ConfigError) as info:
        apply(kind, workload(kind, spec))
    assert info.value.field == field


def test_numbers_from_the_wire_are_integers_again() -> None:
    """The engine sends every number as a float: 8001 arrives as 8001.0."""
    wire = pod_spec("Deployment")
    wire["containers"][0]["ports"] = [{"containerPort": 8000.0}]
    wire["terminationGracePeriodSeconds"] = 30.0
    out = pod_template(as_object("Deployment", apply("Deployment", workload("Deployment", wire))))
    assert out["spec"]["terminationGracePeriodSeconds"] == 30
    port = out["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert (port, type(port)) == (8000, int)
    wire["containers"][0]["ports"] = [{"containerPort": 8000.0, "hostPort": 8001.0}]
    with pytest.raises(ConfigError, match=r"hostPort: is 8001; a host port") as info:
        apply("Deployment", workload("Deployment", wire))
    assert "8001.0" not in str(info.value)


def test_numbers_inside_outputs_are_integers_again() -> None:
    """A secret or unknown part of the spec resolves to wire floats too."""

    async def injected() -> Any:
        wire = pod_spec("Job")
        wire["activeDeadlineSeconds"] = pulumi.Output.secret(600.0)
        spec = apply("Job", workload("Job", wire))["spec"]
        assert isinstance(spec, pulumi.Output)
        return await spec.future()

    loop = asyncio.new_event_loop()  # asyncio.run would unset the loop later tests use
    try:
        seconds = loop.run_until_complete(injected())["template"]["spec"]["activeDeadlineSeconds"]
    finally:
        loop.close()
    assert (seconds, type(seconds)) == (600, int)
    assert type(transform.from_wire(0.5)) is float


class ExitedError(Exception):
    pass


def test_under_the_cli_a_refusal_is_the_runs_one_error_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exec script would add a traceback; the language host adds nothing after exit 32."""
    logged: list[str] = []

    def exit_(code: int) -> None:
        raise ExitedError(code)

    monkeypatch.setattr(sys, "orig_argv", ["python", "-u", "/x/pulumi-language-python-exec"])
    monkeypatch.setattr(pulumi.log, "error", lambda message, *_a, **_k: logged.append(message))
    monkeypatch.setattr(os, "_exit", exit_)
    spec = pod_spec("Deployment")
    spec["containers"][0]["ports"] = [{"containerPort": 8000.0, "hostPort": 8001.0}]
    with pytest.raises(ExitedError) as info:
        apply("Deployment", workload("Deployment", spec))
    assert info.value.args == (_bail.ERROR_SHOWN,)
    assert logged == [
        "Deployment 'agent' spec.template.spec.containers[0] (container 'ws').ports[0].hostPort: "
        "is 8001; a host "
        "port opens the pod on the node's network, past the NetworkPolicy's closed ingress: "
        "remove hostPort (use a Service, or port-forward)"
    ]


# --- Patch and List variants ------------------------------------------------


def test_a_patch_is_hardened_not_injected() -> None:
    patch = {"metadata": {"name": "agent"}, "spec": {"replicas": 3}}
    assert apply("Deployment", copy.deepcopy(patch), variant="Patch") == patch
    added = {"spec": {"template": {"spec": {"containers": [{"name": "ws", "image": "y"}]}}}}
    out = apply("Deployment", copy.deepcopy(added), variant="Patch")
    pod = out["spec"]["template"]["spec"]
    assert_patch_hardened(pod)
    assert [c["name"] for c in pod["containers"]] == ["ws"], "no sidecar in a patch"
    assert apply("Deployment", copy.deepcopy(out), variant="Patch") == out


@pytest.mark.parametrize("kind", [*SEVEN, "ReplicationController"])
def test_every_container_a_patch_adds_ends_hardened(kind: str) -> None:
    # Round 2: a patch adding a container with no securityContext, or emptying
    # capabilities.drop, passed unchanged.
    pod = {"containers": [
        {"name": "added", "image": "x"},
        {"name": "ws", "securityContext": {"capabilities": {"drop": []}, "runAsUser": 10}},
    ]}  # fmt: skip
    spec: dict[str, Any] = pod
    for key in reversed((*WORKLOAD_KINDS[kind], "spec") if WORKLOAD_KINDS[kind] else ()):
        spec = {key: spec}
    out = apply(kind, {"spec": spec}, variant="Patch")
    assert_patch_hardened(pod_template({"kind": kind, **out})["spec"])


@given(user_containers)
@settings(max_examples=40, deadline=None)
def test_any_patch_is_refused_or_ends_hardened(containers: list[dict[str, Any]]) -> None:
    patch = {"spec": {"template": {"spec": {"containers": containers}}}}
    try:
        out = apply("Deployment", copy.deepcopy(patch), variant="Patch")
    except ConfigError as error:
        field = error.field
    else:
        assert_patch_hardened(out["spec"]["template"]["spec"])
        return
    assert field.startswith("DeploymentPatch 'agent' spec.template")


@pytest.mark.parametrize(
    ("kind", "props", "field"),
    [
        ("Deployment", {"spec": {"template": {"spec": {"initContainers": [
            {"name": "setup", "image": "x", "securityContext": {"runAsUser": 1000}}]}}}},
         "DeploymentPatch 'agent' spec.template.spec.initContainers"),
        ("Pod", {"metadata": {"annotations": {
            "container.apparmor.security.beta.kubernetes.io/ws": "unconfined"}}},
         "PodPatch 'agent' metadata.annotations["
         "'container.apparmor.security.beta.kubernetes.io/ws']"),
        ("Job", {"spec": {"template": {"metadata": {"labels": {
            "egress.condukt.dev/session": "another"}}}}},
         "JobPatch 'agent' spec.template.metadata.labels['egress.condukt.dev/session']"),
        ("Deployment", {"spec": {"template": {"spec": {"containers": [
            {"name": "ws", "ports": [{"containerPort": 1, "hostPort": 1}]}]}}}},
         "DeploymentPatch 'agent' spec.template.spec.containers[0] (container 'ws')"
         ".ports[0].hostPort"),
    ],
)  # fmt: skip
def test_a_patch_cannot_add_an_init_container_or_unconfine_the_pod(
    kind: str, props: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        apply(kind, props, variant="Patch")
    assert info.value.field == field


def test_an_apparmor_unconfined_annotation_on_a_template_is_refused() -> None:
    props = workload("Deployment")
    props["spec"]["template"]["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/ws": "unconfined"
    }
    with pytest.raises(ConfigError) as info:
        apply("Deployment", props)
    assert info.value.field.startswith("Deployment 'agent' spec.template.metadata.annotations[")


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        ("Deployment", {"template": {"spec": {"hostNetwork": True}}},
         "DeploymentPatch 'agent' spec.template.spec.hostNetwork"),
        ("Pod", {"containers": [{"name": "ws", "securityContext": {"privileged": True}}]},
         "PodPatch 'agent' spec.containers[0] (container 'ws').securityContext.privileged"),
        ("CronJob", {"jobTemplate": {"spec": {"template": {"spec": {"initContainers": [
            {"name": "condukt-egress", "image": "evil"}]}}}}},
         "CronJobPatch 'agent' spec.jobTemplate.spec.template.spec.initContainers[0].name"),
    ],
)  # fmt: skip
def test_a_patch_cannot_add_a_bypass(kind: str, spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply(kind, {"spec": spec}, variant="Patch")
    assert info.value.field == field


def test_a_list_is_injected_item_by_item() -> None:
    items = [{"apiVersion": "batch/v1", "kind": "Job", **workload("Job")} for _ in range(2)]
    out = apply("Job", {"items": items}, variant="List")
    assert len(out["items"]) == 2
    for item in out["items"]:
        assert_valid(item)
        assert_workload_secure(item, LABELS, "agents")
    items[1]["spec"]["template"]["spec"]["hostIPC"] = True
    with pytest.raises(ConfigError, match=r"JobList 'agent.items\[1\]'|Job 'agent.items\[1\]'"):
        apply("Job", {"items": items}, variant="List")


# --- properties -------------------------------------------------------------


@given(st.sampled_from(SEVEN), user_containers, user_containers, volumes, labels, st.booleans())
@settings(deadline=None)
def test_transform_properties(  # noqa: PLR0917 - hypothesis passes strategies positionally
    kind: str,
    main: list[dict[str, Any]],
    init: list[dict[str, Any]],
    vols: list[dict[str, Any]],
    user_labels: dict[str, str],
    plain_http: bool,
) -> None:
    init = [c | {"name": f"i{c['name']}"[:10].rstrip("-")} for c in init]
    assume(not {c["name"] for c in init} & {c["name"] for c in main})
    args = SandboxEgressArgs(session_id="prop", namespace="agents", allow_plain_http=plain_http)
    spec = pod_spec(kind, containers=main, initContainers=init, volumes=vols)
    props = workload(kind, spec)
    template_in = pod_template(as_object(kind, props))  # shares props' nested dicts
    template_in["metadata"]["labels"] = dict(user_labels)
    before = copy.deepcopy(props)
    once = apply(kind, props, args)
    assert props == before, "the input must not be modified"
    assert apply(kind, once, args) == once, "injection twice equals injection once"
    obj = as_object(kind, once)
    assert_workload_secure(obj, args.names.pod_labels, "agents")
    template = pod_template(obj)
    assert user_labels.items() <= template["metadata"]["labels"].items()
    out = {
        c["name"]: c for c in template["spec"]["containers"] + template["spec"]["initContainers"]
    }
    for container in main + init:
        got = {e["name"]: e["value"] for e in out[container["name"]]["env"]}
        assert {e["name"]: e["value"] for e in container["env"]}.items() <= got.items()
        ours = container.get("securityContext") or {}
        context = out[container["name"]]["securityContext"]
        assert context.get("readOnlyRootFilesystem") == ours.get("readOnlyRootFilesystem")
        # A uid the user set is kept; with none, the non-root default.
        assert context["runAsUser"] == ours.get("runAsUser", manifests.DEFAULT_WORKSPACE_UID)
        assert context["runAsNonRoot"] is True
    for volume in vols:
        assert volume in template["spec"]["volumes"]
    assert_valid(obj, ("1.29.0", "1.37.0"))
    assert manifests.SIDECAR_CONTAINER in {c["name"] for c in template["spec"]["initContainers"]}
