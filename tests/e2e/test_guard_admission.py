"""The guard in a real API server: type checks, admissions, refusals, and the offline model.

``condukt-egress render-guard | kubectl apply -f -`` installs the guard as a
user would (with the allow-listed NetworkPolicy of ``tests/test_guard.py``),
bound to one fresh namespace by its label. Every case is a server-side dry
run: nothing is stored except the one pod the UPDATE cases need.

The case set comes from ``tests/test_guard.py`` (its pods, its refusal table
and the builders it uses) and from the injection of every workload kind and
of the shared corpus: whatever those grow to, this suite sends to the API
server, and checks the offline CEL harness (``tests/cel_admission.py``) gives
the same verdict.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from condukt_egress import SandboxEgressArgs, manifests
from condukt_egress.errors import ConfigError
from condukt_egress.guard import POLICY_PREFIX
from condukt_egress.naming import LABEL_SESSION
from condukt_egress.workloads import WORKLOAD_KINDS, inject_workload, workload_of
from tests import test_guard
from tests.cel_admission import admit, defaulted_pod, request
from tests.corpus import CORPUS
from tests.e2e.harness import (
    api_error,
    create_namespace,
    kubectl,
    run,
    subset_mismatches,
    wait_for,
)
from tests.e2e.test_render_kubectl import condukt_egress
from tests.security_properties import pod_template
from tests.test_guard_corpus import pod_specs
from tests.test_transform import API, token, workload

pytestmark = pytest.mark.integration

JSON = dict[str, Any]
ALLOWED_NETWORK_POLICY = "default-deny"


@dataclass(frozen=True)
class Case:
    """One object sent to the API server, and the refusal text expected (None: admitted)."""

    name: str
    obj: JSON
    expected: str | None


def as_pod(template: JSON, name: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **copy.deepcopy(template.get("metadata") or {})},
        "spec": copy.deepcopy(template["spec"]),
    }


def workload_cases() -> list[Case]:
    """Every workload kind, injected with a native and a plain sidecar, and its pod."""
    cases = []
    for native in (True, False):
        args = SandboxEgressArgs(session_id="e2e-kinds", namespace="agents", native_sidecar=native)
        for kind in WORKLOAD_KINDS:
            if kind in ("Job", "CronJob") and not native:
                continue  # refused by inject: a plain sidecar never lets a Job end
            described = workload_of(token(kind))
            assert described is not None
            obj = {
                "apiVersion": API[kind],
                "kind": kind,
                **inject_workload(workload(kind), described, "agent", args),
            }
            suffix = "native" if native else "plain"
            cases.append(Case(f"{kind} ({suffix} sidecar)", obj, None))
            if kind != "Pod":
                pod = as_pod(dict(pod_template(obj)), f"{kind.lower()}-pod")
                cases.append(Case(f"{kind} pod ({suffix} sidecar)", pod, None))
    for native in (True, False):
        args = SandboxEgressArgs(session_id="e2e-ws", namespace="agents", native_sidecar=native)
        pod = manifests.workspace_pod_manifest(args, "python:3.13-slim")
        cases.append(Case(f"workspace pod (native={native})", pod, None))
    return cases


def refusal_cases() -> list[Case]:
    """``tests/test_guard.py``'s refusal table and its other CREATE refusals."""
    cases = [
        Case(name, test_guard.mutate(change), message)
        for name, (change, message) in test_guard.MUTATIONS.items()
    ]
    cases.append(
        Case(
            "the label on an uninjected pod",
            test_guard.uninjected_labelled_pod(),
            "must run the condukt-egress sidecar",
        )
    )
    other = test_guard.session_pod()
    other["metadata"]["labels"][LABEL_SESSION] = test_guard.OTHER.names.label_value
    cases.append(
        Case(
            "the label of another session",
            other,
            f"must be the Secret {test_guard.OTHER.names.secret}",
        )
    )
    cases.append(
        Case(
            "a foreign NetworkPolicy",
            test_guard.foreign_policy(),
            "NetworkPolicy open-egress is not one condukt-egress generated",
        )
    )
    ours = manifests.network_policy_manifest(test_guard.SESSION)
    renamed = copy.deepcopy(ours)
    renamed["metadata"]["name"] = "second-policy"
    cases.append(Case("our NetworkPolicy renamed", renamed, "is not one condukt-egress generated"))
    with_ingress = copy.deepcopy(ours)
    with_ingress["spec"]["ingress"] = [{}]
    cases.append(
        Case("our NetworkPolicy with ingress", with_ingress, "is not one condukt-egress generated")
    )
    cases.append(Case("our NetworkPolicy", ours, None))
    cases.append(
        Case(
            "an allow-listed NetworkPolicy", test_guard.foreign_policy(ALLOWED_NETWORK_POLICY), None
        )
    )
    return cases


def corpus_cases() -> list[Case]:
    """Every pod of the shared corpus that ``inject`` accepts, injected (none without it)."""
    if CORPUS is None:
        return []
    args = SandboxEgressArgs(session_id="corpus", namespace="agents")
    cases = []
    for path in sorted(CORPUS.glob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError:
            continue
        for index, spec in enumerate(s for doc in docs for s in pod_specs(doc)):
            if not spec.get("containers"):
                continue
            try:
                injected = manifests.inject(spec, args)
            except ConfigError:
                continue
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"corpus-{index}", "labels": dict(args.names.pod_labels)},
                "spec": injected,
            }
            cases.append(Case(f"{path.name}[{index}]", pod, None))
    return cases


WORKLOADS = workload_cases()
REFUSALS = refusal_cases()


# --- the cluster side -------------------------------------------------------------------


@dataclass
class Guarded:
    """The namespace the guard is bound to, and how to send objects there."""

    api: Any
    namespace: str

    def dry_run(self, obj: JSON) -> str | None:
        """None if the API server admits ``obj`` (dry run), else its message."""
        body = copy.deepcopy(obj)
        body["metadata"]["namespace"] = self.namespace
        body["metadata"].pop("uid", None)
        body["metadata"].pop("creationTimestamp", None)
        group, _, version = body["apiVersion"].rpartition("/")
        plural = {"NetworkPolicy": "networkpolicies"}.get(body["kind"], body["kind"].lower() + "s")
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            self.api.call_api(
                f"{prefix}/namespaces/{self.namespace}/{plural}",
                "POST",
                query_params=[("dryRun", "All")],
                body=body,
                header_params={"Content-Type": "application/json"},
                auth_settings=["BearerToken"],
                response_type="object",
                _return_http_data_only=True,
            )
        except ApiException as exc:
            return api_error(exc)
        return None


@pytest.fixture(scope="module")
def guarded(api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    """The guard installed as a user would, bound to a fresh namespace; removed after.

    The e2e cluster is the suite's own, so a guard left by an interrupted run
    is simply replaced by ``kubectl apply``.
    """
    text = run(
        [*condukt_egress(), "render-guard", "--allowed-network-policy", ALLOWED_NETWORK_POLICY]
    ).stdout
    path = tmp_path_factory.mktemp("guard") / "guard.yaml"
    path.write_text(text)
    core: Any = client.CoreV1Api(api)
    namespace = f"e2e-guard-{uuid.uuid4().hex[:10]}"
    try:
        kubectl("apply", "-f", "-", stdin=text)
        create_namespace(api, namespace, test_guard.NS_LABELS)
        guarded = Guarded(api, namespace)
        # Bindings reach the admission plugin through an informer: wait until one refuses.
        probe = test_guard.uninjected_labelled_pod()
        wait_for(lambda: guarded.dry_run(probe), "the guard to refuse", timeout=60)
        yield guarded
    finally:
        kubectl("delete", "-f", str(path), "--ignore-not-found", check=False)
        with contextlib.suppress(ApiException):
            core.delete_namespace(namespace)


def test_every_policy_type_checks_without_warnings(guarded: Guarded) -> None:
    admission: Any = client.AdmissionregistrationV1Api(guarded.api)
    policies = [
        p
        for p in admission.list_validating_admission_policy().items
        if p.metadata.name.startswith(POLICY_PREFIX)
    ]
    assert len(policies) >= 3

    def checked(name: str) -> Any:
        policy = admission.read_validating_admission_policy(name)
        status = policy.status
        ok = status is not None and status.observed_generation == policy.metadata.generation
        return status if ok else None

    for name in [p.metadata.name for p in policies]:
        status = wait_for(functools.partial(checked, name), f"{name}'s type check", timeout=60)
        warnings = (status.type_checking and status.type_checking.expression_warnings) or []
        assert warnings == [], [(w.field_ref, w.warning) for w in warnings]


@pytest.mark.parametrize("case", WORKLOADS, ids=[c.name for c in WORKLOADS])
def test_every_injected_workload_and_its_pod_is_admitted(guarded: Guarded, case: Case) -> None:
    assert guarded.dry_run(case.obj) is None


def test_every_injected_corpus_pod_is_admitted(guarded: Guarded) -> None:
    cases = corpus_cases()
    if not cases:
        pytest.skip("no ../shared/k8s-corpus beside this checkout")
    refused = {c.name: m for c in cases if (m := guarded.dry_run(c.obj)) is not None}
    assert refused == {}


@pytest.mark.parametrize("case", REFUSALS, ids=[c.name for c in REFUSALS])
def test_every_refusal_case_is_refused_with_its_message(guarded: Guarded, case: Case) -> None:
    message = guarded.dry_run(case.obj)
    if case.expected is None:
        assert message is None
    else:
        assert message is not None, "admitted"
        assert case.expected in message


def offline_verdict(obj: JSON) -> list[str]:
    """The offline harness's refusals of ``obj`` (CREATE, as the API server stores it)."""
    stored = defaulted_pod(obj) if obj["kind"] == "Pod" else copy.deepcopy(obj)
    refusals = admit(test_guard.GUARD, request("CREATE", stored), test_guard.NS_LABELS)
    return [r.message for r in refusals]


def test_the_offline_harness_and_the_api_server_agree_on_every_case(guarded: Guarded) -> None:
    differences = []
    for case in [*WORKLOADS, *REFUSALS, *corpus_cases()]:
        offline = offline_verdict(case.obj)
        server = guarded.dry_run(case.obj)
        if (server is None) != (offline == []):
            differences.append(f"{case.name}: server {server!r}, offline {offline!r}")
        elif server is not None and not any(m in server for m in offline):
            differences.append(f"{case.name}: server {server!r} names none of {offline!r}")
    assert differences == []


# --- UPDATE and subresource cases: one stored session pod --------------------------------


@pytest.fixture(scope="module")
def stored_pod(guarded: Guarded) -> JSON:
    core: Any = client.CoreV1Api(guarded.api)
    pod = test_guard.session_pod()
    pod["metadata"] = {
        "name": pod["metadata"]["name"],
        "labels": pod["metadata"]["labels"],
        "annotations": pod["metadata"].get("annotations", {}),
    }
    core.create_namespaced_pod(guarded.namespace, pod)
    stored = guarded.api.call_api(
        f"/api/v1/namespaces/{guarded.namespace}/pods/{pod['metadata']['name']}",
        "GET",
        auth_settings=["BearerToken"],
        response_type="object",
        _return_http_data_only=True,
    )
    return dict(stored)


def updated(
    guarded: Guarded, pod: JSON, change: Callable[[JSON], Any], subresource: str = ""
) -> str | None:
    """None if the API server admits ``change`` to the stored pod (dry-run PUT), else why."""
    body = copy.deepcopy(pod)
    change(body)
    path = f"/api/v1/namespaces/{guarded.namespace}/pods/{pod['metadata']['name']}"
    try:
        guarded.api.call_api(
            path + (f"/{subresource}" if subresource else ""),
            "PUT",
            query_params=[("dryRun", "All")],
            body=body,
            header_params={"Content-Type": "application/json"},
            auth_settings=["BearerToken"],
            response_type="object",
            _return_http_data_only=True,
        )
    except ApiException as exc:
        return api_error(exc)
    return None


def set_label(value: str | None) -> Callable[[JSON], None]:
    def change(pod: JSON) -> None:
        labels = pod["metadata"]["labels"]
        if value is None:
            del labels[LABEL_SESSION]
        else:
            labels[LABEL_SESSION] = value

    return change


def test_updates_of_a_stored_session_pod(guarded: Guarded, stored_pod: JSON) -> None:
    label = f"the label {LABEL_SESSION} of a pod cannot be added, changed or removed"
    note = {"note": "x"}
    assert updated(guarded, stored_pod, lambda p: p["metadata"]["annotations"].update(note)) is None
    removed = updated(guarded, stored_pod, set_label(None))
    assert removed is not None
    assert label in removed
    changed = updated(guarded, stored_pod, set_label(test_guard.OTHER.names.label_value))
    assert changed is not None
    assert label in changed

    def swap_sidecar(pod: JSON) -> None:
        test_guard.init(pod, manifests.SIDECAR_CONTAINER)["image"] = "evil/proxy:1"

    swapped = updated(guarded, stored_pod, swap_sidecar)
    assert swapped is not None
    assert "the sidecar condukt-egress must be the one" in swapped

    def debug(pod: JSON) -> None:
        pod["spec"]["ephemeralContainers"] = [
            {"name": "debugger", "image": "busybox", "targetContainerName": "workspace"}
        ]

    debugged = updated(guarded, stored_pod, debug, "ephemeralcontainers")
    assert debugged is not None
    assert "ephemeral-containers: `kubectl debug` containers cannot be added" in debugged


def test_the_guard_file_is_what_kubectl_stored(guarded: Guarded) -> None:
    """``render-guard``'s objects round-trip: the API server kept every expression as sent."""
    text = run(
        [*condukt_egress(), "render-guard", "--allowed-network-policy", ALLOWED_NETWORK_POLICY]
    ).stdout
    for doc in (d for d in yaml.safe_load_all(text) if d):
        if doc["kind"] != "ValidatingAdmissionPolicy":
            continue
        stored = json.loads(
            kubectl("get", "validatingadmissionpolicy", doc["metadata"]["name"], "-o", "json")
        )
        assert subset_mismatches(doc["spec"], stored["spec"]) == []
