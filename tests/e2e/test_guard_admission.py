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
from condukt_egress.ca import generate_ca
from condukt_egress.errors import ConfigError
from condukt_egress.guard import POLICY_PREFIX
from condukt_egress.naming import LABEL_SESSION
from condukt_egress.render import render_session
from condukt_egress.workloads import (
    WORKLOAD_KINDS,
    inject_workload,
    with_ca_binding,
    workload_of,
)
from tests import test_guard
from tests.cel_admission import admit, defaulted_pod, request
from tests.corpus import CORPUS
from tests.e2e.harness import (
    ApiError,
    create_namespace,
    kubectl,
    resource_path,
    rest,
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
DRY_RUN = [("dryRun", "All")]
ADMISSION = "denied request: "
"""How the API server's message for a ValidatingAdmissionPolicy refusal continues."""


@dataclass(frozen=True)
class Case:
    """One object sent to the API server, and the refusal text expected (None: admitted)."""

    name: str
    obj: JSON
    expected: str | None
    original: JSON | None = None
    """For a corpus pod, the pod before injection (in a namespace without the guard)."""


def bound(spec: JSON, args: SandboxEgressArgs) -> JSON:
    """An injected spec bound to a Secret of its session, as the transform and render bind it."""
    return manifests.with_secret_name(spec, args.names.secret_name({}))


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
                **with_ca_binding(
                    inject_workload(workload(kind), described, "agent", args),
                    described,
                    manifests.CaBinding(None, args.names.secret_name({})),
                ),
            }
            suffix = "native" if native else "plain"
            cases.append(Case(f"{kind} ({suffix} sidecar)", obj, None))
            if kind != "Pod":
                pod = as_pod(dict(pod_template(obj)), f"{kind.lower()}-pod")
                cases.append(Case(f"{kind} pod ({suffix} sidecar)", pod, None))
    for native in (True, False):
        args = SandboxEgressArgs(session_id="e2e-ws", namespace="agents", native_sidecar=native)
        pod = manifests.workspace_pod_manifest(args, "python:3.13-slim")
        pod["spec"] = bound(pod["spec"], args)
        cases.append(Case(f"workspace pod (native={native})", pod, None))
        # As render and the component make it: bound to a real CA, whose
        # fingerprint the sidecar carries in its env.
        rendered = render_session(args, generate_ca(args), "python:3.13-slim")
        pod = next(o for o in rendered if o["kind"] == "Pod")
        cases.append(Case(f"rendered pod with its CA (native={native})", pod, None))
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
            # The API server reports a policy's first failed validation only.
            "must start with the condukt-egress init container(s) condukt-egress-init",
        )
    )
    other = test_guard.session_pod()
    other["metadata"]["labels"][LABEL_SESSION] = test_guard.OTHER.names.label_value
    cases.append(
        Case(
            "the label of another session",
            other,
            f"must be a Secret {test_guard.OTHER.names.secret_prefix}<content hash>",
        )
    )
    unbound = test_guard.session_pod()
    unbound["spec"] = manifests.with_secret_name(
        unbound["spec"], test_guard.SESSION.names.secret_prefix
    )
    cases.append(
        Case(
            "an injection never bound to its Secret",
            unbound,
            f"must be a Secret {test_guard.SESSION.names.secret_prefix}<content hash>",
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
    """Every pod of the shared corpus that ``inject`` accepts, injected (none without it).

    Service accounts are dropped: the corpus names ones this cluster lacks,
    which the ServiceAccount admission plugin refuses before the guard runs.
    """
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
            bare = {
                k: v for k, v in spec.items() if k not in ("serviceAccountName", "serviceAccount")
            }
            try:
                injected = bound(manifests.inject(bare, args), args)
            except ConfigError:
                continue
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"corpus-{index}", "labels": dict(args.names.pod_labels)},
                "spec": injected,
            }
            original = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"corpus-{index}"},
                "spec": bare,
            }
            cases.append(Case(f"{path.name}[{index}]", pod, None, original))
    return cases


def mounts_api_token(obj: JSON) -> bool:
    """Whether the user asked for the API token, which the ServiceAccount plugin mounts.

    That mutating admission plugin runs before validating admission and adds
    the ``kube-api-access-*`` volume mount to *every* container, ours
    included; the offline harness does not model it. Pods that keep the
    injection's default (``automountServiceAccountToken: false``) are untouched.
    """
    return obj["kind"] == "Pod" and obj["spec"].get("automountServiceAccountToken") is True


WORKLOADS = workload_cases()
REFUSALS = refusal_cases()


# --- the cluster side -------------------------------------------------------------------


@dataclass
class Guarded:
    """The namespace the guard is bound to, and how to send objects there."""

    api: Any
    namespace: str

    unguarded: str = ""
    """A namespace without the guard's label."""

    def dry_run(self, obj: JSON, *, guard: bool = True) -> str | None:
        """None if the API server admits ``obj`` (dry run), else its message."""
        namespace = self.namespace if guard else self.unguarded
        body = copy.deepcopy(obj)
        body["metadata"]["namespace"] = namespace
        body["metadata"].pop("uid", None)
        body["metadata"].pop("creationTimestamp", None)
        try:
            rest(self.api, "POST", resource_path(body, namespace), body, DRY_RUN)
        except ApiError as exc:
            return exc.message
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
    run_id = uuid.uuid4().hex[:10]
    namespace, unguarded = f"e2e-guard-{run_id}", f"e2e-unguarded-{run_id}"
    try:
        kubectl("apply", "-f", "-", stdin=text)
        create_namespace(api, namespace, test_guard.NS_LABELS)
        create_namespace(api, unguarded)
        guarded = Guarded(api, namespace, unguarded)
        # Bindings reach the admission plugin through an informer: wait until one refuses.
        probe = test_guard.uninjected_labelled_pod()
        wait_for(
            lambda: ADMISSION in (guarded.dry_run(probe) or ""), "the guard to refuse", timeout=60
        )
        yield guarded
    finally:
        kubectl("delete", "-f", str(path), "--ignore-not-found", check=False)
        for name in (namespace, unguarded):
            with contextlib.suppress(ApiException):
                core.delete_namespace(name)


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
    refused, invalid = {}, []
    for case in cases:
        message = guarded.dry_run(case.obj)
        if message is None:
            continue
        assert case.original is not None
        if ADMISSION not in message and guarded.dry_run(case.original, guard=False) is not None:
            invalid.append(case.name)  # the corpus pod is invalid as published
            continue
        refused[case.name] = message
    assert refused == {}
    assert len(invalid) < len(cases) / 10, invalid


def test_a_pod_with_the_api_token_is_admitted(guarded: Guarded) -> None:
    args = SandboxEgressArgs(session_id="e2e-token", namespace="agents")
    spec = {
        "automountServiceAccountToken": True,
        "containers": [{"name": "app", "image": "python:3.13-slim"}],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "token", "labels": dict(args.names.pod_labels)},
        "spec": bound(manifests.inject(spec, args), args),
    }
    assert offline_verdict(pod) == []
    assert guarded.dry_run(pod) is None


@pytest.mark.parametrize("case", REFUSALS, ids=[c.name for c in REFUSALS])
def test_every_refusal_case_is_refused_with_its_message(guarded: Guarded, case: Case) -> None:
    message = guarded.dry_run(case.obj)
    if case.expected is None:
        assert message is None
    else:
        assert message is not None, "admitted"
        if ADMISSION not in message and "Duplicate value" in message:
            return  # two containers of one name: the API server's own validation refuses it
        assert ADMISSION in message, "refused before admission: the case is not a valid object"
        assert case.expected in message


def offline_verdict(obj: JSON) -> list[str]:
    """The offline harness's refusals of ``obj`` (CREATE, as the API server stores it)."""
    stored = defaulted_pod(obj) if obj["kind"] == "Pod" else copy.deepcopy(obj)
    refusals = admit(test_guard.GUARD, request("CREATE", stored), test_guard.NS_LABELS)
    return [r.message for r in refusals]


def test_the_offline_harness_and_the_api_server_agree_on_every_case(guarded: Guarded) -> None:
    """Same verdict on every case; the server's message is one the harness gives.

    The API server reports only the first failed validation of a policy, the
    harness every one, so the server's message must be among the harness's.
    Corpus pods the API server's own validation refuses, injected or not,
    never reach admission and are left out.
    """
    differences, compared = [], 0
    for case in [*WORKLOADS, *REFUSALS, *corpus_cases()]:
        if mounts_api_token(case.obj):
            continue  # the harness does not model the ServiceAccount plugin's mutation
        offline = offline_verdict(case.obj)
        server = guarded.dry_run(case.obj)
        if server is not None and ADMISSION not in server:
            if case.original is not None and guarded.dry_run(case.original, guard=False):
                continue  # an invalid corpus pod: no verdict to compare
            if "Duplicate value" in server and offline:
                continue  # refused by the API server's validation first, and by the guard
            differences.append(f"{case.name}: refused before admission: {server!r}")
        elif (server is None) != (offline == []):
            differences.append(f"{case.name}: server {server!r}, offline {offline!r}")
        elif server is not None and not any(server.endswith(ADMISSION + m) for m in offline):
            differences.append(f"{case.name}: server {server!r} is none of {offline!r}")
        compared += 1
    assert differences == []
    assert compared >= len(WORKLOADS) + len(REFUSALS)


# --- UPDATE and subresource cases: one stored session pod --------------------------------


@pytest.fixture(scope="module")
def stored_pod(guarded: Guarded) -> JSON:
    pod = test_guard.session_pod()
    pod["metadata"] = {
        "name": pod["metadata"]["name"],
        "labels": pod["metadata"]["labels"],
        "annotations": pod["metadata"].get("annotations", {}),
    }
    rest(guarded.api, "POST", resource_path(pod, guarded.namespace), pod)
    return rest(guarded.api, "GET", resource_path(pod, guarded.namespace, pod["metadata"]["name"]))


def updated(
    guarded: Guarded, pod: JSON, change: Callable[[JSON], Any], subresource: str = ""
) -> str | None:
    """None if the API server admits ``change`` to the stored pod (dry-run PUT), else why."""
    path = resource_path(pod, guarded.namespace, pod["metadata"]["name"])
    for _ in range(10):
        body = rest(guarded.api, "GET", path)  # the scheduler and kwok update it meanwhile
        change(body)
        try:
            rest(
                guarded.api, "PUT", path + (f"/{subresource}" if subresource else ""), body, DRY_RUN
            )
        except ApiError as exc:
            if exc.status == 409:  # modified between our GET and PUT: read it again
                continue
            return exc.message
        return None
    raise AssertionError(f"{path} kept changing under 10 dry-run updates")


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
