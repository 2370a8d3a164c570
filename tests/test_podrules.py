"""Every pod rule, through both of its forms: ``inject`` refuses, the guard refuses.

The rules live once, in :mod:`condukt_egress.podrules`; each carries its own
counterexamples. Here every counterexample goes through ``inject`` (on the
user's spec) and through the guard's CEL (on the injected pod, as the API
server stores it), so a rule cannot hold in one and not in the other. The
attacks of the third security review are pinned by name at the end.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from condukt_egress import SandboxEgressArgs, manifests, podrules
from condukt_egress.errors import ConfigError
from condukt_egress.guard import GUARD_NAMESPACE_LABEL, SandboxGuardArgs, guard_manifests
from condukt_egress.naming import DNS_CONTAINER, LABEL_SESSION
from condukt_egress.podrules import POD_RULES, PodRule, RuleContext
from tests.cel_admission import admit, defaulted_pod, request

JSON = dict[str, Any]
NS_LABELS = {GUARD_NAMESPACE_LABEL: "enforce"}
SESSION = SandboxEgressArgs(session_id="rules-1", namespace="agents")
WORKSPACE: JSON = {"name": "workspace", "image": "python:3.13-slim"}


def _layouts(rule: PodRule) -> list[bool]:
    # Native sidecars beside a plain-container sidecar only exist in the plain layout.
    return [False] if rule.id == "pod.native-sidecars" else [True, False]


CASES = [
    pytest.param(rule, index, native, id=f"{rule.id}-{index}-{'native' if native else 'plain'}")
    for rule in POD_RULES
    for index in range(len(rule.breaks))
    for native in _layouts(rule)
]
REPAIRED = [
    pytest.param(rule, index, id=f"{rule.id}-{index}")
    for rule in POD_RULES
    for index in range(len(rule.repaired))
]


def session(native: bool = True, **options: Any) -> SandboxEgressArgs:
    return dataclasses.replace(SESSION, native_sidecar=native, **options)


def guard_for(args: SandboxEgressArgs) -> list[JSON]:
    return guard_manifests(
        SandboxGuardArgs(
            allow_root_workspace=args.allow_root_workspace,
            unsafe_secondary_networks=args.unsafe_secondary_networks,
        )
    )


def user_pod() -> JSON:
    """What a user declares: a bare workspace, before injection."""
    return {"metadata": {}, "spec": {"containers": [copy.deepcopy(WORKSPACE)]}}


def injected_pod(args: SandboxEgressArgs) -> JSON:
    """The same pod injected, labelled, as the API server stores it."""
    pod = manifests.workspace_pod_manifest(args, WORKSPACE["image"])
    # Bound to a Secret of the session, as the transform and render bind it with the CA.
    pod["spec"] = manifests.with_secret_name(pod["spec"], args.names.secret_name({}))
    return defaulted_pod(pod)


def inject_error(pod: JSON, args: SandboxEgressArgs) -> ConfigError | None:
    try:
        manifests.check_pod_metadata(pod["metadata"], args)
        manifests.inject(pod["spec"], args)
    except ConfigError as error:
        return error
    return None


def guard_refusals(pod: JSON, args: SandboxEgressArgs) -> list[str]:
    return [r.message for r in admit(guard_for(args), request("CREATE", pod), NS_LABELS)]


def test_every_rule_has_a_counterexample_and_a_unique_id() -> None:
    ids = [r.id for r in POD_RULES]
    assert len(ids) == len(set(ids))
    for rule in POD_RULES:
        assert rule.breaks or rule.repaired, rule.id
        assert rule.id.startswith(f"{rule.scope}."), rule.id
        assert "\n" not in rule.message


def test_the_pods_we_generate_keep_every_rule() -> None:
    for native in (True, False):
        args = session(native)
        assert guard_refusals(injected_pod(args), args) == []


@pytest.mark.parametrize(("rule", "index", "native"), CASES)
def test_each_counterexample_is_refused_by_inject_and_by_the_guard(
    rule: PodRule, index: int, native: bool
) -> None:
    args = session(native)
    ctx = RuleContext(args)
    # inject, on the user's spec:
    pod = user_pod()
    rule.breaks[index](pod, ctx)
    error = inject_error(pod, args)
    assert error is not None, f"inject accepted a counterexample of {rule.id}"
    assert rule.why in error.message, str(error)
    assert rule.fix in error.message, str(error)
    # the guard, on the injected pod:
    pod = injected_pod(args)
    rule.breaks[index](pod, ctx)
    messages = guard_refusals(pod, args)
    assert any(f"[{rule.id}]" in m for m in messages), (rule.id, messages)


@pytest.mark.parametrize(("rule", "index"), REPAIRED)
def test_what_inject_repairs_the_guard_refuses(rule: PodRule, index: int) -> None:
    args = session()
    ctx = RuleContext(args)
    pod = user_pod()
    rule.repaired[index](pod, ctx)
    spec = manifests.inject(pod["spec"], args)
    # The injection repaired it: the rule holds on what inject returns...
    stored = injected_pod(args)
    stored["spec"] = defaulted_pod({"spec": spec})["spec"]
    assert not any(f"[{rule.id}]" in m for m in guard_refusals(stored, args))
    # ...and a pod that skipped our code is refused.
    pod = injected_pod(args)
    rule.repaired[index](pod, ctx)
    assert any(f"[{rule.id}]" in m for m in guard_refusals(pod, args)), rule.id


OPT_INS = {
    "container.root": {"allow_root_workspace": True},
    "container.uid-set": {"allow_root_workspace": True},
    "pod.root": {"allow_root_workspace": True},
    "pod.resource-claims": {"unsafe_secondary_networks": True},
    "metadata.secondary-network": {"unsafe_secondary_networks": True},
}


@pytest.mark.parametrize("rule_id", sorted(OPT_INS))
def test_an_unsafe_opt_in_lifts_its_rule_in_both(rule_id: str) -> None:
    rule = next(r for r in POD_RULES if r.id == rule_id)
    args = session(**OPT_INS[rule_id])
    assert not rule.applies(args)
    ctx = RuleContext(args)
    for change in rule.breaks:
        pod = user_pod()
        change(pod, ctx)
        error = inject_error(pod, args)
        assert error is None or f"{rule.why}" not in error.message, str(error)
    for change in (*rule.breaks, *rule.repaired):
        pod = injected_pod(args)
        change(pod, ctx)
        assert not any(f"[{rule.id}]" in m for m in guard_refusals(pod, args))


def test_check_refuses_what_inject_refuses() -> None:
    """``check`` (for patches) runs the same table."""
    args = session(native=False)
    for rule in POD_RULES:
        if rule.scope == "metadata":
            continue  # metadata is checked by check_pod_metadata, above
        for change in rule.breaks:
            pod = user_pod()
            change(pod, RuleContext(args))
            with pytest.raises(ConfigError) as info:
                manifests.check(pod["spec"], args)
            assert rule.why in info.value.message, rule.id


def test_guarantees_name_every_rule_in_the_table_words() -> None:
    lines = podrules.guarantees()
    assert len(lines) == len(POD_RULES)
    for rule, line in zip(POD_RULES, lines, strict=True):
        assert rule.rule in line
        assert rule.id in line
        assert rule.why in line


# --- the attacks of security review 3, by name -------------------------------------------


def test_review3_a_root_workspace_is_refused() -> None:
    pod = injected_pod(SESSION)
    podrules.workspace(pod)["securityContext"]["runAsUser"] = 0
    messages = guard_refusals(pod, SESSION)
    assert any("[container.root]" in m for m in messages), messages


def test_review3_a_workspace_without_any_uid_is_refused() -> None:
    pod = injected_pod(SESSION)
    context = podrules.workspace(pod)["securityContext"]
    context.pop("runAsUser")
    context.pop("runAsGroup", None)
    messages = guard_refusals(pod, SESSION)
    assert any("[container.uid-set]" in m for m in messages), messages


def test_review3_an_extra_container_on_the_sidecar_image_is_refused() -> None:
    pod = injected_pod(SESSION)
    extra = copy.deepcopy(podrules.workspace(pod))
    extra.update(name="escape", image=SESSION.sidecar_image)
    extra["securityContext"].pop("runAsUser")  # the image's USER: the sidecar uid
    pod["spec"]["containers"].append(extra)
    messages = guard_refusals(pod, SESSION)
    assert any("container escape: " in m and "[container.sidecar-image]" in m for m in messages)
    assert any("[container.uid-set]" in m for m in messages)
    # inject refuses it as well, naming the field.
    with pytest.raises(ConfigError, match=r"containers\[1\] \(container 'escape'\)\.image"):
        manifests.inject(
            {"containers": [WORKSPACE, {"name": "escape", "image": SESSION.sidecar_image}]},
            SESSION,
        )


def test_review3_a_user_native_sidecar_before_ours_is_refused() -> None:
    pod = injected_pod(SESSION)
    inits = pod["spec"]["initContainers"]
    early = copy.deepcopy(podrules.workspace(pod))
    early.update(name="binder", restartPolicy="Always")
    sidecar_at = next(i for i, c in enumerate(inits) if c["name"] == manifests.SIDECAR_CONTAINER)
    inits.insert(sidecar_at, early)  # after the filter, before our sidecar
    messages = guard_refusals(pod, SESSION)
    assert any("must start with the condukt-egress init container" in m for m in messages)


def test_a_user_native_sidecar_before_our_resolver_is_refused() -> None:
    pod = injected_pod(SESSION)
    inits = pod["spec"]["initContainers"]
    early = copy.deepcopy(podrules.workspace(pod))
    early.update(name="binder", restartPolicy="Always")
    resolver_at = next(i for i, c in enumerate(inits) if c["name"] == DNS_CONTAINER)
    inits.insert(resolver_at, early)  # after our sidecar, before the resolver (its port)
    messages = guard_refusals(pod, SESSION)
    assert any("must start with the condukt-egress init container" in m for m in messages)


def test_review3_our_init_container_with_a_loosened_security_context_is_refused() -> None:
    pod = injected_pod(SESSION)
    netfilter = pod["spec"]["initContainers"][0]
    netfilter["securityContext"]["capabilities"]["add"].append("SYS_ADMIN")
    messages = guard_refusals(pod, SESSION)
    assert any("the init container condukt-egress-init must be the one" in m for m in messages)


def status_update(pod: JSON, labels: dict[str, str]) -> list[str]:
    updated = copy.deepcopy(pod)
    updated["metadata"]["labels"] = labels
    updated["status"] = {"phase": "Running"}
    req = request("UPDATE", updated, pod, subresource="status")
    return [r.message for r in admit(guard_for(SESSION), req, NS_LABELS)]


def test_review3_labels_cannot_change_through_pods_status() -> None:
    pod = injected_pod(SESSION)
    label = {LABEL_SESSION: pod["metadata"]["labels"][LABEL_SESSION]}
    # Removing it from a session pod, or adding it to an uninjected one: refused.
    assert any("session-pods-status: " in m for m in status_update(pod, {}))
    bare = defaulted_pod(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b", "namespace": "agents"},
         "spec": {"containers": [WORKSPACE]}}
    )  # fmt: skip
    assert any("session-pods-status: " in m for m in status_update(bare, label))
    # A kubelet status write that leaves the labels alone passes.
    assert status_update(pod, dict(pod["metadata"]["labels"])) == []
    assert status_update(bare, {}) == []
