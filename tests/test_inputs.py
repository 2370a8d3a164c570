"""Args from other resources: ``pulumi.Input`` values for the namespace, images, policy, trust.

A namespace that is an auto-named Namespace's ``metadata.name``, a policy host
computed from another resource, a StackReference output: these used to fail
at construction with our own validation error on an ``Output``. Now plain
values are still validated up front, Outputs when they resolve (the error
still names the field), and the names derived from ``session_id`` stay plain.
Run under the engine-like monitor (tests/transform_monitor.py), so the
workload transform runs as the engine runs it.
"""

from __future__ import annotations

import gc
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s
import pytest

from condukt_egress import SandboxEgress, SandboxEgressArgs, manifests
from condukt_egress.args import INPUT_FIELDS
from condukt_egress.component import ResolvedInputError
from condukt_egress.errors import ConfigError, PolicyError
from tests.k8s_schema import assert_valid
from tests.pulumi_harness import Recorder, run
from tests.security_properties import assert_workload_secure
from tests.test_ca_rotation import fingerprints
from tests.transform_monitor import EngineMonitor

SECRET = "kubernetes:core/v1:Secret"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
POD = "kubernetes:core/v1:Pod"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
WORKSPACE: Any = {"containers": [{"name": "w", "image": "busybox"}]}


def make_args(**options: Any) -> SandboxEgressArgs:
    """``SandboxEgressArgs(**options)``: fields typed as plain values (docs/embedding.md)."""
    return SandboxEgressArgs(**options)


FAILED_RUN = pytest.mark.filterwarnings(
    # When the program fails, the SDK leaves the tasks of the other pending
    # Outputs unfinished; they are destroyed with the loop (an unraisable
    # "Task was destroyed but it is pending"), as in any failed Pulumi program.
    "ignore::pytest.PytestUnraisableExceptionWarning"
)


def engine_run(program: Any) -> Recorder:
    return run(program, monitor_factory=EngineMonitor)


def test_namespace_from_an_auto_named_namespace() -> None:
    def program() -> None:
        ns = k8s.core.v1.Namespace("agents")  # the mocks name it agents-auto
        egress = SandboxEgress("s", make_args(session_id="42", namespace=ns.metadata.name))
        assert egress.names == SandboxEgressArgs(session_id="42").names
        k8s.core.v1.Pod("ws", spec=WORKSPACE, opts=egress.workload_options())
        k8s.apps.v1.Deployment(
            "agent",
            spec=cast(
                Any,
                {
                    "selector": {"matchLabels": {"app": "a"}},
                    "template": {"metadata": {"labels": {"app": "a"}}, "spec": WORKSPACE},
                },
            ),
            opts=egress.workload_options(),
        )

    rec = engine_run(program)
    names = SandboxEgressArgs(session_id="42").names
    assert rec.one(SECRET).inputs["metadata"]["namespace"] == "agents-auto"
    netpol = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        **rec.one(NETWORK_POLICY).inputs,
    }
    assert netpol["metadata"] == {**netpol["metadata"], "namespace": "agents-auto"}
    assert_valid(netpol)
    pod = {"apiVersion": "v1", "kind": "Pod", **rec.one(POD).inputs}
    assert pod["metadata"]["namespace"] == "agents-auto"
    assert pod["metadata"]["labels"] == names.pod_labels
    assert_workload_secure(pod, names.pod_labels, "agents-auto")
    assert len(fingerprints(pod["spec"])) == 1
    deployment = rec.one(DEPLOYMENT).inputs
    assert deployment["metadata"]["namespace"] == "agents-auto"
    assert rec.one(SECRET).urn in rec.one(POD).dependencies
    assert rec.one(NETWORK_POLICY).urn in rec.one(DEPLOYMENT).dependencies


def test_policy_host_and_images_from_other_resources() -> None:
    def program() -> None:
        svc = k8s.core.v1.Service("api", metadata={"namespace": "agents"})
        host = svc.metadata.apply(lambda m: f"{m['name']}.example.com")
        image = pulumi.Output.from_input("registry.example.com/condukt-egress:1.5.1")
        args = make_args(
            session_id="42",
            namespace="agents",
            policy={"rules": [{"allow": [host, "api.github.com"]}]},
            sidecar_image=image,
            trust_bundle=pulumi.Output.from_input("public-roots"),
        )
        assert set(args.deferred) == {"policy", "sidecar_image", "trust_bundle"}
        egress = SandboxEgress("s", args)
        k8s.core.v1.Pod(
            "ws", metadata={"namespace": "agents"}, spec=WORKSPACE, opts=egress.workload_options()
        )

    rec = engine_run(program)
    data = rec.one(SECRET).inputs["stringData"]
    resolved = SandboxEgressArgs(
        session_id="42",
        namespace="agents",
        policy={"rules": [{"allow": ["api-auto.example.com", "api.github.com"]}]},
        trust_bundle="public-roots",
    )
    assert data["policy.json"] == resolved.egress_policy.to_json()
    assert len(data["bundle.pem"]) > 100_000, "public-roots reached the Secret"
    pod = rec.one(POD).inputs
    images = {
        c["image"] for c in pod["spec"]["initContainers"] if c["name"] != "condukt-egress-dns"
    }
    assert images == {"registry.example.com/condukt-egress:1.5.1"}


@FAILED_RUN
@pytest.mark.parametrize(
    ("field", "value", "error", "needle"),
    [
        ("namespace", "Bad_NS", ConfigError, "namespace: must be a Kubernetes namespace name"),
        ("sidecar_image", "a b", ConfigError, "sidecar_image: must be a container image"),
        ("trust_bundle", "mozilla", ConfigError, "trust_bundle: must be one of"),
        (
            "policy",
            {"rules": [{"allow": ["x.com:443"]}]},
            PolicyError,
            "policy.rules[0].allow[0]: 'x.com:443' has a port",
        ),
    ],
)
def test_a_bad_output_value_fails_when_it_resolves_naming_the_field(
    field: str, value: Any, error: type[Exception], needle: str
) -> None:
    recorder = Recorder()

    def program() -> None:
        args = make_args(session_id="42", **{field: pulumi.Output.from_input(value)})
        egress = SandboxEgress("s", args)
        k8s.core.v1.Pod("ws", spec=WORKSPACE, opts=egress.workload_options())

    with pytest.raises(ResolvedInputError) as info:
        run(program, monitor_factory=EngineMonitor, recorder=recorder)
    assert isinstance(info.value, pulumi.RunError), "one line under pulumi up"
    assert str(info.value).startswith(needle)
    assert "\n" not in str(info.value)
    assert isinstance(info.value.error, error), "the ConfigError/PolicyError is kept"
    assert info.value.field == needle.split(":", maxsplit=1)[0]
    assert not recorder.of_type(POD), "no workload without a valid session"
    gc.collect()  # the failed run's pending tasks go now, under FAILED_RUN, not in a later test


@FAILED_RUN
def test_a_host_inside_the_policy_document_is_checked_when_it_resolves() -> None:
    def program() -> None:
        host = pulumi.Output.from_input("https://evil.example.com")
        SandboxEgress("s", make_args(session_id="1", policy={"rules": [{"allow": [host]}]}))

    with pytest.raises(ResolvedInputError, match=r"^policy\.rules\[0\]\.allow\[0\]: .*is a URL"):
        engine_run(program)
    gc.collect()


def test_plain_values_are_still_checked_up_front() -> None:
    with pytest.raises(ConfigError, match="namespace: must be a Kubernetes namespace"):
        SandboxEgressArgs(session_id="1", namespace="Bad_NS")
    with pytest.raises(PolicyError, match=r"policy\.rules\[0\]\.allow\[0\]"):
        SandboxEgressArgs(session_id="1", policy={"rules": [{"allow": ["x.com:443"]}]})
    assert SandboxEgressArgs(session_id="1").deferred == {}


def test_session_id_and_other_fields_must_be_plain() -> None:
    def program() -> None:
        with pytest.raises(ConfigError, match="session_id: must be a plain string, not an Output"):
            SandboxEgressArgs(session_id=pulumi.Output.from_input("42"))  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="control_port: must be a port number"):
            SandboxEgressArgs(session_id="1", control_port=pulumi.Output.from_input(1))  # type: ignore[arg-type]

    engine_run(program)
    assert INPUT_FIELDS == ("namespace", "sidecar_image", "policy", "trust_bundle")


def test_inject_needs_plain_args_and_says_what_to_use() -> None:
    def program() -> None:
        egress = SandboxEgress(
            "s", make_args(session_id="1", namespace=pulumi.Output.from_input("agents"))
        )
        with pytest.raises(ConfigError, match=r"^namespace: is an Output.*workload_options\(\)"):
            egress.inject(WORKSPACE)

    engine_run(program)


def test_unknown_at_preview_stays_unknown_without_failing() -> None:
    """A namespace unknown at preview: the session's objects wait for it, nothing fails."""

    def program() -> None:
        unknown = pulumi.Output(set(), _future(None), _future(False))
        egress = SandboxEgress("s", make_args(session_id="1", namespace=unknown))
        k8s.core.v1.Pod("ws", spec=WORKSPACE, opts=egress.workload_options())

    rec = engine_run(program)
    assert rec.one(POD).inputs.get("spec") is None or "containers" in rec.one(POD).inputs["spec"]
    assert manifests.SIDECAR_CONTAINER  # the names stay plain: nothing else to resolve


def _future(value: Any) -> Any:
    import asyncio  # noqa: PLC0415

    future: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
    future.set_result(value)
    return future
