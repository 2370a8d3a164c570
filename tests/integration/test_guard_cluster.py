"""The guard in a real API server (1.30+); skips with a reason without one.

It installs the guard bound to a throw-away namespace, reads the API server's
own type check of every expression (``status.typeChecking``, against the real
OpenAPI types, which the offline tests cannot see), then sends our pod and
mutations of it as server-side dry runs and checks what is admitted and what
is refused, with which message. Everything it creates is removed in
``finally``; it refuses to run where a guard is already installed.
"""

from __future__ import annotations

import contextlib
import copy
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from condukt_egress import SandboxEgressArgs, manifests
from condukt_egress.ca import generate_ca
from condukt_egress.errors import ControlChannelError
from condukt_egress.guard import POLICY_PREFIX, SandboxGuardArgs, guard_manifests
from condukt_egress.portforward import load_api_client

pytestmark = pytest.mark.integration

LABEL = "egress.condukt.dev/guard-test"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, str]]:
    try:
        api = load_api_client()
    except ControlChannelError as exc:
        pytest.skip(str(exc))
    try:
        version = k8s.VersionApi(api).get_code(_request_timeout=5)
    except Exception as exc:
        pytest.skip(f"Kubernetes API unreachable: {type(exc).__name__}")
    minor = int("".join(ch for ch in str(version.minor) if ch.isdigit()) or 0)
    if (int(version.major), minor) < (1, 30):
        pytest.skip(f"the guard needs Kubernetes 1.30+, the cluster is {version.git_version}")
    admission: Any = k8s.AdmissionregistrationV1Api(api)  # bodies are plain dicts
    existing = admission.list_validating_admission_policy(_request_timeout=10).items
    if any(str(p.metadata.name).startswith(POLICY_PREFIX) for p in existing):
        pytest.skip("a condukt-egress guard is installed in this cluster; not replacing it")
    run = uuid.uuid4().hex[:8]
    namespace = f"condukt-guard-test-{run}"
    objects = guard_manifests(SandboxGuardArgs(namespace_labels={LABEL: run}))
    core: Any = k8s.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": namespace, "labels": {LABEL: run}}})
        for obj in objects:
            if obj["kind"] == "ValidatingAdmissionPolicy":
                admission.create_validating_admission_policy(obj)
            else:
                admission.create_validating_admission_policy_binding(obj)
        yield api, namespace
    finally:
        for obj in reversed(objects):
            name = obj["metadata"]["name"]
            try:
                if obj["kind"] == "ValidatingAdmissionPolicy":
                    admission.delete_validating_admission_policy(name)
                else:
                    admission.delete_validating_admission_policy_binding(name)
            except ApiException:
                pass
        with contextlib.suppress(ApiException):
            core.delete_namespace(namespace)


def test_the_api_server_type_checks_every_expression_cleanly(cluster: tuple[Any, str]) -> None:
    api, _ = cluster
    admission: Any = k8s.AdmissionregistrationV1Api(api)  # bodies are plain dicts
    names = [o["metadata"]["name"] for o in guard_manifests(SandboxGuardArgs())[::2]]
    deadline = time.monotonic() + 60
    for name in names:
        while True:
            policy: Any = admission.read_validating_admission_policy(name)
            status = policy.status
            if status is not None and status.observed_generation == policy.metadata.generation:
                break
            assert time.monotonic() < deadline, f"{name} was never type-checked"
            time.sleep(1)
        warnings = (status.type_checking and status.type_checking.expression_warnings) or []
        assert warnings == [], [(w.field_ref, w.warning) for w in warnings]


def dry_run_create(api: Any, namespace: str, pod: dict[str, Any]) -> str | None:
    """None if the pod is admitted, else the API server's message."""
    pod = copy.deepcopy(pod)
    pod["metadata"]["namespace"] = namespace
    core: Any = k8s.CoreV1Api(api)
    try:
        core.create_namespaced_pod(namespace, pod, dry_run="All")
    except ApiException as exc:
        return str(exc.body)
    return None


def test_our_pod_is_admitted_and_mutations_are_refused(cluster: tuple[Any, str]) -> None:
    api, namespace = cluster
    args = SandboxEgressArgs(session_id="guard-test", namespace=namespace)
    # Bound to its CA, so its volumes name the session's content-named Secret.
    ca = generate_ca(args).cert_pem
    pod = manifests.workspace_pod_manifest(args, "python:3.13-slim", ca_cert_pem=ca)
    unbound = manifests.workspace_pod_manifest(args, "python:3.13-slim")
    time.sleep(5)  # bindings reach the admission plugin through an informer
    assert dry_run_create(api, namespace, pod) is None
    refusal = dry_run_create(api, namespace, unbound)
    assert refusal is not None, "a pod whose volumes name no Secret of the session is refused"
    assert "must be a Secret" in refusal
    added = copy.deepcopy(pod)
    workspace = next(c for c in added["spec"]["containers"] if c["name"] == "workspace")
    workspace["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    refusal = dry_run_create(api, namespace, added)
    assert refusal is not None
    assert "container workspace: every user container drops ALL capabilities" in refusal
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sneaky", "labels": dict(args.names.pod_labels)},
        "spec": {"containers": [{"name": "workspace", "image": "python:3.13-slim"}]},
    }
    refusal = dry_run_create(api, namespace, bare)
    assert refusal is not None
    assert "session-pods:" in refusal
