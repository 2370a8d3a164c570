"""The workload transform through the SDK's real callback path (see tests/transform_monitor.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.runtime import rpc

from condukt_egress import SandboxEgress, SandboxEgressArgs
from tests.ca_mask import mask_ca_fingerprints
from tests.k8s_schema import assert_valid
from tests.pulumi_harness import Recorder, Registration, run
from tests.security_properties import assert_workload_secure, pod_template
from tests.test_transform import API, SEVEN, token, typed, workload
from tests.transform_monitor import EngineMonitor

ARGS = SandboxEgressArgs(session_id="Agent Run 42", namespace="agents")
SECRET = "kubernetes:core/v1:Secret"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
CLASSES = {
    "Pod": k8s.core.v1.Pod,
    "Deployment": k8s.apps.v1.Deployment,
    "StatefulSet": k8s.apps.v1.StatefulSet,
    "DaemonSet": k8s.apps.v1.DaemonSet,
    "ReplicaSet": k8s.apps.v1.ReplicaSet,
    "Job": k8s.batch.v1.Job,
    "CronJob": k8s.batch.v1.CronJob,
}


def ints(value: Any) -> Any:
    """Integral floats back to ints, as the provider does with the wire's numbers."""
    if isinstance(value, dict):
        return {k: ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def as_object(reg: Registration, kind: str) -> dict[str, Any]:
    obj: dict[str, Any] = ints({"apiVersion": API[kind], "kind": kind, **reg.inputs})
    return obj


def run_engine(program: Any) -> tuple[Recorder, EngineMonitor]:
    monitors: list[EngineMonitor] = []

    def factory(mocks: pulumi.runtime.Mocks, recorder: Recorder) -> EngineMonitor:
        monitors.append(EngineMonitor(mocks, recorder))
        return monitors[0]

    recorder = run(program, monitor_factory=factory)
    return recorder, monitors[0]


def assert_ordered_after_the_session(rec: Recorder, reg: Registration) -> None:
    assert rec.one(SECRET).urn in reg.dependencies
    assert rec.one(NETWORK_POLICY).urn in reg.dependencies


@pytest.mark.parametrize("form", ["dict", "typed"])
def test_every_kind_with_workload_options(form: str) -> None:
    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        for kind in SEVEN:
            props = workload(kind) if form == "dict" else typed(kind)
            CLASSES[kind](kind.lower(), **props, opts=egress.workload_options())

    rec, monitor = run_engine(program)
    assert sorted(name for name, _ in monitor.invoked) == sorted(k.lower() for k in SEVEN)
    for kind in SEVEN:
        reg = rec.one(token(kind))
        obj = as_object(reg, kind)
        assert_valid(obj)
        assert_workload_secure(obj, ARGS.names.pod_labels, "agents")
        assert_ordered_after_the_session(rec, reg)


def test_typed_and_dict_forms_give_the_same_result() -> None:
    def program(form: str) -> None:
        egress = SandboxEgress("s", ARGS)
        for kind in SEVEN:
            props = workload(kind) if form == "dict" else typed(kind)
            CLASSES[kind](kind.lower(), **props, opts=egress.workload_options())

    typed_run, _ = run_engine(lambda: program("typed"))
    dict_run, _ = run_engine(lambda: program("dict"))
    for kind in SEVEN:
        typed_inputs, typed_ca = mask_ca_fingerprints(typed_run.one(token(kind)).inputs)
        dict_inputs, dict_ca = mask_ca_fingerprints(dict_run.one(token(kind)).inputs)
        assert typed_inputs == dict_inputs, kind
        assert len(typed_ca) == len(dict_ca) == 1, kind  # each run's own CA


def test_snake_case_keys_inside_typed_args_cannot_hide_a_setting() -> None:
    """The SDK turns Python names into wire names before the transform sees them."""

    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        container = k8s.core.v1.ContainerArgs(
            name="ws",
            image="x",
            security_context={"run_as_user": 1337},  # type: ignore[arg-type]
        )
        pod = k8s.core.v1.PodSpecArgs(containers=[container], restart_policy="Never")
        spec = k8s.batch.v1.JobSpecArgs(template=k8s.core.v1.PodTemplateSpecArgs(spec=pod))
        k8s.batch.v1.Job("agent", spec=spec, opts=egress.workload_options())

    with pytest.raises(Exception, match=r"securityContext\.runAsUser"):
        run(program, monitor_factory=EngineMonitor, recorder=Recorder())


def test_the_transform_option_alone_also_orders() -> None:
    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        k8s.batch.v1.Job(
            "agent", **workload("Job"), opts=pulumi.ResourceOptions(transforms=[egress.transform])
        )

    rec, _ = run_engine(program)
    job = rec.one("kubernetes:batch/v1:Job")
    assert_workload_secure(as_object(job, "Job"), ARGS.names.pod_labels, "agents")
    assert_ordered_after_the_session(rec, job)


def test_secret_values_stay_secret_and_are_kept() -> None:
    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        props = workload("Deployment")
        container = props["spec"]["template"]["spec"]["containers"][0]
        container["env"].append({"name": "TOKEN", "value": pulumi.Output.secret("s3cr3t")})
        k8s.apps.v1.Deployment("agent", **props, opts=egress.workload_options())
        whole = workload("Job")
        k8s.batch.v1.Job(
            "job", metadata=whole["metadata"], spec=pulumi.Output.secret(whole["spec"]),
            opts=egress.workload_options(),
        )  # fmt: skip

    rec, _ = run_engine(program)
    deployment = rec.one("kubernetes:apps/v1:Deployment")
    assert "spec" in deployment.secret_inputs
    obj = as_object(deployment, "Deployment")
    env = {e["name"]: e["value"] for e in pod_template(obj)["spec"]["containers"][0]["env"]}
    assert env["TOKEN"] == "s3cr3t"
    assert env["HOME"] == "/work"
    assert_workload_secure(obj, ARGS.names.pod_labels, "agents")
    job = rec.one("kubernetes:batch/v1:Job")
    assert "spec" in job.secret_inputs
    assert_workload_secure(as_object(job, "Job"), ARGS.names.pod_labels, "agents")


def test_outputs_from_other_resources_are_resolved_then_injected() -> None:
    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        config = k8s.core.v1.ConfigMap("cfg", data={"image": "python:3.13-slim"})
        props = workload("StatefulSet")
        props["spec"]["template"]["spec"]["containers"][0]["image"] = config.data["image"]
        k8s.apps.v1.StatefulSet(
            "agent", **props,
            opts=pulumi.ResourceOptions.merge(
                pulumi.ResourceOptions(depends_on=[config]), egress.workload_options()
            ),
        )  # fmt: skip

    rec, _ = run_engine(program)
    reg = rec.one("kubernetes:apps/v1:StatefulSet")
    obj = as_object(reg, "StatefulSet")
    assert pod_template(obj)["spec"]["containers"][0]["image"] == "python:3.13-slim"
    assert rec.one("kubernetes:core/v1:ConfigMap").urn in reg.dependencies, "user's depends_on kept"
    assert_ordered_after_the_session(rec, reg)


def test_an_unknown_spec_stays_unknown_rather_than_half_injected() -> None:
    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        never: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
        never.set_result(None)
        known: asyncio.Future[bool] = asyncio.get_event_loop().create_future()
        known.set_result(False)
        unknown = pulumi.Output(set(), never, known)
        k8s.batch.v1.Job("agent", spec=unknown, opts=egress.workload_options())

    rec, monitor = run_engine(program)
    job = rec.one("kubernetes:batch/v1:Job")
    assert monitor.invoked[-1][0] == "agent"
    assert monitor.wire["agent"]["spec"] == rpc.UNKNOWN, "computed at `pulumi up`"
    assert job.inputs["metadata"]["namespace"] == "agents"


def test_a_bypass_is_refused_through_the_engine_path() -> None:
    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        props = workload("DaemonSet")
        props["spec"]["template"]["spec"]["hostNetwork"] = True
        k8s.apps.v1.DaemonSet("agent", **props, opts=egress.workload_options())

    recorder = Recorder()
    with pytest.raises(Exception, match=r"DaemonSet 'agent' spec\.template\.spec\.hostNetwork"):
        run(program, monitor_factory=EngineMonitor, recorder=recorder)
    assert "kubernetes:apps/v1:DaemonSet" not in {r.type for r in recorder.registrations}


def test_stack_transform_injects_every_later_workload() -> None:
    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        egress.register_stack_transform()
        k8s.apps.v1.Deployment("agent", **workload("Deployment"))
        k8s.core.v1.Service("svc", spec={"ports": [{"port": 8080}]})

    rec, _ = run_engine(program)
    deployment = rec.one("kubernetes:apps/v1:Deployment")
    assert_workload_secure(as_object(deployment, "Deployment"), ARGS.names.pod_labels, "agents")
    assert rec.one("kubernetes:core/v1:Service").inputs == {
        "apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 8080.0}]}
    }  # fmt: skip
    # The session's own resources pass through the stack transform untouched.
    secret_name = rec.one(SECRET).inputs["metadata"]["name"]
    assert ARGS.names.owns_secret(secret_name)
    volumes = deployment.inputs["spec"]["template"]["spec"]["volumes"]
    assert {v["secret"]["secretName"] for v in volumes if "secret" in v} == {secret_name}


def test_a_component_with_the_options_reaches_its_children() -> None:
    class Agent(pulumi.ComponentResource):
        def __init__(self, name: str, opts: pulumi.ResourceOptions) -> None:
            super().__init__("test:index:Agent", name, None, opts)
            k8s.batch.v1.CronJob(
                f"{name}-cron", **workload("CronJob"), opts=pulumi.ResourceOptions(parent=self)
            )
            self.register_outputs({})

    def program() -> None:
        egress = SandboxEgress("s", ARGS)
        Agent("agent", opts=egress.workload_options())

    rec, _ = run_engine(program)
    cron = rec.one("kubernetes:batch/v1:CronJob")
    obj = as_object(cron, "CronJob")
    assert_valid(obj)
    assert_workload_secure(obj, ARGS.names.pod_labels, "agents")
    assert_ordered_after_the_session(rec, cron)
