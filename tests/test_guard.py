"""The guard's admission policies, evaluated offline on our own pods and their mutations.

Every generated pod must be admitted; every mutation that would let a pod
escape its session must be refused with the message that names the rule and
the fix. See ``tests/cel_admission.py`` for what the evaluator models.
"""

from __future__ import annotations

import copy
import doctest
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from condukt_egress import SandboxEgressArgs, contract, manifests
from condukt_egress import guard as guard_module
from condukt_egress.ca import generate_ca
from condukt_egress.dns import DNS_UID, DnsFilter
from condukt_egress.errors import ConfigError
from condukt_egress.guard import (
    GUARD_NAMESPACE_LABEL,
    GUARD_RULES,
    POLICY_PREFIX,
    SandboxGuardArgs,
    guard_manifests,
)
from condukt_egress.naming import (
    DNS_CONTAINER,
    LABEL_SESSION,
    OUR_CONTAINERS,
    session_names,
    validate_session_id,
)
from condukt_egress.render import render_session
from tests import strategies
from tests.cel_admission import admit, compiled, defaulted_pod, request
from tests.k8s_schema import assert_valid, versions

JSON = dict[str, Any]
NS_LABELS = {GUARD_NAMESPACE_LABEL: "enforce"}
GUARD = guard_manifests(SandboxGuardArgs(allowed_network_policies=["default-deny"]))
SESSION = SandboxEgressArgs(session_id="run-42", namespace="agents")
OTHER = SandboxEgressArgs(session_id="run-43", namespace="agents")


def session_pod(args: SandboxEgressArgs = SESSION, spec: JSON | None = None) -> JSON:
    """A pod as our code declares it, as the API server stores it."""
    pod = manifests.workspace_pod_manifest(args, "python:3.13-slim")
    if spec is not None:
        pod["spec"] = manifests.inject(spec, args)
    pod["spec"] = manifests.with_secret_name(pod["spec"], secret_of(args))
    return defaulted_pod(pod)


def secret_of(args: SandboxEgressArgs, content: str = "") -> str:
    """A name of one of the session's Secrets (the content hash of ``content``)."""
    return args.names.secret_name({"content": content})


def refusals(
    obj: JSON, *, old: JSON | None = None, subresource: str = "", guard: list[JSON] = GUARD
) -> list[str]:
    operation = "UPDATE" if old is not None else "CREATE"
    return [
        r.message
        for r in admit(guard, request(operation, obj, old, subresource=subresource), NS_LABELS)
    ]


def refused_with(messages: list[str], *expected: str) -> None:
    assert messages, "admitted, expected a refusal"
    for part in expected:
        assert any(part in m for m in messages), f"{part!r} not in {messages}"


def init(pod: JSON, name: str) -> JSON:
    return next(c for c in pod["spec"]["initContainers"] if c["name"] == name)


def workspace(pod: JSON) -> JSON:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "workspace")


# --- the objects --------------------------------------------------------------------


def test_one_policy_and_one_binding_per_rule_valid_for_every_kubernetes_from_1_30() -> None:
    supported = tuple(v for v in versions() if tuple(map(int, v.split(".")[:2])) >= (1, 30))
    assert {"1.30.0", "1.35.0"} <= set(supported)
    everything = guard_manifests(SandboxGuardArgs(only_session_pods=True, mode="warn"))
    for obj in [*GUARD, *everything]:
        assert_valid(obj, supported)
    kinds = [o["kind"] for o in everything]
    # One pair per rule, and session-pods a second for pods/status.
    assert kinds == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * (
        len(GUARD_RULES) + 1
    )
    for policy, binding in zip(everything[::2], everything[1::2], strict=True):
        assert policy["metadata"]["name"].startswith(POLICY_PREFIX)
        assert binding["spec"]["policyName"] == policy["metadata"]["name"]
        assert policy["spec"]["failurePolicy"] == "Fail"
        assert binding["spec"]["validationActions"] == ["Warn", "Audit"]
        assert binding["spec"]["matchResources"] == {
            "namespaceSelector": {"matchLabels": NS_LABELS}
        }
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in GUARD[1::2])
    for policy in everything[::2]:
        for validation in policy["spec"]["validations"]:
            # The API server refuses messages with line breaks; each names its rule.
            assert "\n" not in validation["message"]
            rule = policy["metadata"]["name"].removeprefix(POLICY_PREFIX)
            assert validation["message"].startswith(f"{rule}: ")


def expressions(objects: list[JSON]) -> list[str]:
    out = []
    for policy in objects[::2]:
        spec = policy["spec"]
        out += [c["expression"] for c in spec.get("matchConditions", ())]
        out += [v["expression"] for v in spec.get("variables", ())]
        for validation in spec["validations"]:
            out.append(validation["expression"])
            out += [validation["messageExpression"]] if "messageExpression" in validation else []
    return out


def test_every_expression_is_standard_cel_and_compiles() -> None:
    everything = guard_manifests(SandboxGuardArgs(only_session_pods=True))
    for expression in expressions(everything):
        compiled(expression)  # raises on anything the standard environment lacks
    with pytest.raises(RuntimeError, match="undeclared reference"):
        compiled("object.metadata.name.lowerAscii() == 'x'")  # a Kubernetes extension


MACROS = (".all(", ".exists(", ".exists_one(", ".filter(", ".map(")


def comprehension_depth(expression: str) -> int:
    """How deeply the CEL macros of ``expression`` nest (strings are skipped)."""
    depth = deepest = 0
    open_macros: list[int] = []
    quote = ""
    for index, char in enumerate(expression):
        if quote:
            quote = "" if char == quote and expression[index - 1] != "\\" else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
            if any(expression.endswith(m, 0, index + 1) for m in MACROS):
                open_macros.append(depth)
                deepest = max(deepest, len(open_macros))
        elif char == ")":
            if open_macros and open_macros[-1] == depth:
                open_macros.pop()
            depth -= 1
    return deepest


def test_expressions_stay_bounded() -> None:
    """Cost: a loop over the pod's containers holds at most a loop over one of their lists.

    The API server stops an evaluation past its cost limit and then refuses
    (failurePolicy Fail). Two levels (containers x a container's capabilities,
    env or mounts) keep the cost linear in the pod's size.
    """
    assert comprehension_depth("a.all(x, x.b.exists(y, y.c.map(z, z)))") == 3
    assert comprehension_depth("a.filter(x, x).map(x, ')')") == 1
    everything = guard_manifests(SandboxGuardArgs(only_session_pods=True))
    assert max(comprehension_depth(e) for e in expressions(everything)) == 2


# --- our pods are admitted ------------------------------------------------------------


@pytest.mark.parametrize("native", [True, False])
def test_the_pods_we_generate_are_admitted(native: bool) -> None:
    args = SandboxEgressArgs(session_id="Agent Run #42", namespace="agents", native_sidecar=native)
    pod = session_pod(args)
    assert refusals(pod) == []
    # A metadata-only update and an image update of the workspace stay admitted.
    updated = copy.deepcopy(pod)
    updated["metadata"].setdefault("annotations", {})["note"] = "x"
    workspace(updated)["image"] = "python:3.14-slim"
    assert refusals(updated, old=pod) == []


def sidecar_of(pod: JSON) -> JSON:
    every = [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
    return next(c for c in every if c["name"] == manifests.SIDECAR_CONTAINER)


@pytest.mark.parametrize("native", [True, False])
def test_pods_bound_to_their_ca_as_render_and_the_component_make_them_are_admitted(
    native: bool,
) -> None:
    # render and the component bind the pod to its CA: the sidecar carries the
    # CA fingerprint after its own env. The guard refused every such pod before.
    args = SandboxEgressArgs(session_id="run-42", namespace="agents", native_sidecar=native)
    objects = render_session(args, generate_ca(args), "python:3.13-slim")
    pod = defaulted_pod(next(o for o in objects if o["kind"] == "Pod"))
    assert [e["name"] for e in sidecar_of(pod)["env"]][-1] == manifests.CA_FINGERPRINT_ENV
    assert refusals(pod) == []
    # Only that one name may follow, and only as a plain value.
    changes: list[Callable[[list[JSON]], object]] = [
        lambda env: env.append({"name": "HTTPS_PROXY", "value": "http://elsewhere:3128"}),
        lambda env: env.insert(0, env.pop()),
        lambda env: env[-1].update(value=None, valueFrom={"fieldRef": {"fieldPath": "x"}}),
    ]
    for change in changes:
        changed = copy.deepcopy(pod)
        change(sidecar_of(changed)["env"])
        refused_with(refusals(changed), "the sidecar condukt-egress must be the one")


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("dns_filter", ["off", "strict"])
def test_pods_without_a_resolver_or_in_strict_mode_are_admitted(
    native: bool, dns_filter: DnsFilter
) -> None:
    args = SandboxEgressArgs(
        session_id="run-42", namespace="agents", native_sidecar=native, dns_filter=dns_filter
    )
    pod = session_pod(args)
    names = [c["name"] for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]]
    assert (DNS_CONTAINER in names) == (dns_filter != "off")
    assert refusals(pod) == []


def test_a_mirrored_resolver_image_needs_the_guards_consent() -> None:
    mirror = "mirror.example/coredns/coredns:v1.14.6"
    pod = session_pod(SandboxEgressArgs(session_id="run-42", namespace="agents", dns_image=mirror))
    refused_with(refusals(pod), f"the resolver {DNS_CONTAINER} must be the one")
    consenting = guard_manifests(SandboxGuardArgs(dns_images=[mirror]))
    assert refusals(pod, guard=consenting) == []


def test_user_init_containers_after_ours_are_admitted() -> None:
    spec = {
        "initContainers": [{"name": "fetch", "image": "busybox"}],
        "containers": [{"name": "workspace", "image": "python:3.13-slim"}],
    }
    assert refusals(session_pod(spec=spec)) == []


def automounted(pod: JSON) -> JSON:
    """``pod`` as the ServiceAccount admission plugin leaves it when the token is automounted."""
    out = copy.deepcopy(pod)
    out["spec"]["automountServiceAccountToken"] = True
    out["spec"]["volumes"].append(
        {"name": "kube-api-access-x7k2p", "projected": {"sources": [{"serviceAccountToken": {
            "path": "token"}}]}}
    )  # fmt: skip
    mount = {
        "name": "kube-api-access-x7k2p",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    for kind in ("initContainers", "containers"):
        for container in out["spec"].get(kind) or ():
            container.setdefault("volumeMounts", []).append(dict(mount))
    return out


@pytest.mark.parametrize("native", [True, False])
def test_a_pod_that_automounts_its_token_is_admitted(native: bool) -> None:
    # Found on a real API server: the ServiceAccount plugin mounts the token into our
    # containers too, before validation; the guard refused every such pod.
    args = SandboxEgressArgs(session_id="sa", namespace="agents", native_sidecar=native)
    assert refusals(automounted(session_pod(args))) == []
    # Only that mount, at that path: another volume there, or the token elsewhere, is not.
    moved = automounted(session_pod(args))
    init(moved, manifests.NETFILTER_CONTAINER)["volumeMounts"][-1]["mountPath"] = "/x"
    refused_with(refusals(moved), "the init container condukt-egress-init must be the one")


def test_objects_outside_bound_namespaces_are_not_judged() -> None:
    bare = uninjected_labelled_pod()
    req = request("CREATE", bare)
    assert admit(GUARD, req, {}) == []
    assert admit(GUARD, req, {GUARD_NAMESPACE_LABEL: "other"}) == []
    assert admit(GUARD, req, NS_LABELS) != []


def test_pods_without_the_session_label_pass_unless_only_session_pods() -> None:
    plain = defaulted_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "db", "namespace": "agents"},
            "spec": {"containers": [{"name": "db", "image": "postgres"}]},
        }
    )
    assert refusals(plain) == []
    strict = guard_manifests(SandboxGuardArgs(only_session_pods=True))
    refused_with(
        refusals(plain, guard=strict),
        "only-session-pods: pod db has no egress.condukt.dev/session label",
    )
    assert refusals(session_pod(), guard=strict) == []


# --- mutations are refused ------------------------------------------------------------


def uninjected_labelled_pod() -> JSON:
    return defaulted_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "sneaky",
                "namespace": "agents",
                "labels": dict(SESSION.names.pod_labels),
            },
            "spec": {"containers": [{"name": "workspace", "image": "python:3.13-slim"}]},
        }
    )


def mutate(change: Callable[[JSON], Any], args: SandboxEgressArgs = SESSION) -> JSON:
    pod = session_pod(args)
    change(pod)
    return pod


def remove_sidecar(pod: JSON) -> None:
    pod["spec"]["initContainers"] = [
        c for c in pod["spec"]["initContainers"] if c["name"] != manifests.SIDECAR_CONTAINER
    ]


def netfilter_after_user_init(pod: JSON) -> None:
    inits = pod["spec"]["initContainers"]
    user = {
        "name": "early",
        "image": "busybox",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod["spec"]["initContainers"] = [user, *inits]


def other_sessions_secret(pod: JSON) -> None:
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == manifests.CONFIG_VOLUME)
    volume["secret"]["secretName"] = secret_of(OTHER)


def add_capability(pod: JSON) -> None:
    workspace(pod)["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]


def privileged(pod: JSON) -> None:
    """Privileged, escalation left unset: the API server's own validation refuses
    privileged with allowPrivilegeEscalation: false before admission runs."""
    context = workspace(pod)["securityContext"]
    context.pop("allowPrivilegeEscalation")
    context["privileged"] = True


def uid_1337(pod: JSON) -> None:
    workspace(pod)["securityContext"]["runAsUser"] = contract.DEFAULT_SIDECAR_UID


MUTATIONS: dict[str, tuple[Callable[[JSON], Any], str]] = {
    "sidecar removed": (remove_sidecar, "must run the condukt-egress sidecar condukt-egress"),
    "netfilter after a user init container": (
        netfilter_after_user_init,
        "must start with the condukt-egress init container(s) condukt-egress-init, ",
    ),
    "config volume of another session": (
        other_sessions_secret,
        f"must be a Secret {SESSION.names.secret_prefix}<content hash> of the session labelled "
        f"{LABEL_SESSION}={SESSION.names.label_value}",
    ),
    "capability added": (
        add_capability,
        "container workspace: every user container drops ALL capabilities and adds none",
    ),
    "capabilities not dropped": (
        lambda p: workspace(p)["securityContext"].pop("capabilities"),
        "container workspace: every user container drops ALL capabilities",
    ),
    "uid 1337": (uid_1337, "container workspace: no user container runs as the sidecar uid"),
    "pod-wide uid 1337": (
        lambda p: p["spec"]["securityContext"].update(runAsUser=1337),
        "the pod's default uid is not the sidecar uid",
    ),
    "privileged": (
        privileged,
        "container workspace: no user container is privileged",
    ),
    "privilege escalation": (
        lambda p: workspace(p)["securityContext"].update(allowPrivilegeEscalation=True),
        "container workspace: every user container sets allowPrivilegeEscalation: false",
    ),
    "host network": (
        lambda p: p["spec"].update(hostNetwork=True),
        "the pod does not set hostNetwork",
    ),
    "host PID": (lambda p: p["spec"].update(hostPID=True), "the pod does not set hostPID"),
    "hostPath volume": (
        lambda p: p["spec"]["volumes"].append(
            {"name": "sock", "hostPath": {"path": "/run/containerd"}}
        ),
        "volume sock: no user volume is a hostPath",
    ),
    "sidecar image replaced": (
        lambda p: init(p, manifests.SIDECAR_CONTAINER).update(image="evil/proxy:1"),
        "the sidecar condukt-egress must be the one condukt-egress injects",
    ),
    "sidecar exec probe (runs as the exempt uid)": (
        lambda p: init(p, manifests.SIDECAR_CONTAINER).update(
            livenessProbe={"exec": {"command": ["sh", "-c", "curl https://evil.example"]}}
        ),
        "no exec hooks or probes",
    ),
    "sidecar env added": (
        lambda p: init(p, manifests.SIDECAR_CONTAINER)["env"].append(
            {"name": "LD_PRELOAD", "value": "/x.so"}
        ),
        "the sidecar condukt-egress must be the one condukt-egress injects",
    ),
    "sidecar session-id slot used for another flag": (
        lambda p: init(p, manifests.SIDECAR_CONTAINER)["args"].__setitem__(
            -1, "--policy-file=/etc/condukt/ca.pem"
        ),
        "the sidecar condukt-egress must be the one condukt-egress injects",
    ),
    "netfilter args changed": (
        lambda p: init(p, manifests.NETFILTER_CONTAINER)["args"].__setitem__(-1, "0"),
        "the init container condukt-egress-init must be the one condukt-egress injects",
    ),
    "netfilter env added": (
        lambda p: init(p, manifests.NETFILTER_CONTAINER).update(
            env=[{"name": "CONDUKT_EGRESS_IPTABLES_BIN", "value": "true"}]
        ),
        "the init container condukt-egress-init must be the one condukt-egress injects",
    ),
    "workspace mounts the sidecar's config volume": (
        lambda p: workspace(p)["volumeMounts"].append(
            {"name": manifests.CONFIG_VOLUME, "mountPath": "/key"}
        ),
        "container workspace: no user container mounts condukt-egress-config",
    ),
    "a volume with every key of the session Secret": (
        lambda p: p["spec"]["volumes"].append(
            {"name": "all", "secret": {"secretName": secret_of(SESSION)}}
        ),
        "volume all: no user volume references a Secret named condukt-egress-*",
    ),
    "a projected volume on another session's Secret": (
        lambda p: p["spec"]["volumes"].append(
            {"name": "proj", "projected": {"sources": [{"secret": {"name": secret_of(OTHER)}}]}}
        ),
        "volume proj: no user volume references a Secret named condukt-egress-*",
    ),
    "an env var from another session's Secret": (
        lambda p: workspace(p)["env"].append(
            {
                "name": "KEY",
                "valueFrom": {"secretKeyRef": {"name": secret_of(OTHER), "key": "ca-key.pem"}},
            }
        ),
        "container workspace: no user container reads a condukt-egress Secret",
    ),
    "filter rules volume on a Secret of one's own": (
        lambda p: next(v for v in p["spec"]["volumes"] if v["name"] == manifests.FILTER_VOLUME)[
            "secret"
        ].update(secretName="my-empty-rules"),
        f"volume {manifests.FILTER_VOLUME} must be a Secret {SESSION.names.secret_prefix}"
        "<content hash> of the session",
    ),
    "netfilter made a sidecar": (
        lambda p: init(p, manifests.NETFILTER_CONTAINER).update(restartPolicy="Always"),
        "the init container condukt-egress-init must be the one condukt-egress injects",
    ),
    "netfilter image replaced": (
        lambda p: init(p, manifests.NETFILTER_CONTAINER).update(image="busybox"),
        "image one of ghcr.io/tuist/condukt-egress:1.5.1",
    ),
    "resolver image replaced": (
        lambda p: init(p, DNS_CONTAINER).update(image="evil/dns:1"),
        f"the resolver {DNS_CONTAINER} must be the one condukt-egress injects",
    ),
    "resolver as root (root may reach the control port)": (
        lambda p: init(p, DNS_CONTAINER)["securityContext"].update(runAsUser=0),
        f"the resolver {DNS_CONTAINER} must be the one condukt-egress injects",
    ),
    "resolver args changed": (
        lambda p: init(p, DNS_CONTAINER).update(args=["-conf", "/work/Corefile"]),
        f"the resolver {DNS_CONTAINER} must be the one condukt-egress injects",
    ),
    "resolver env added": (
        lambda p: init(p, DNS_CONTAINER)["env"].append({"name": "HTTPS_PROXY", "value": "x"}),
        f"the resolver {DNS_CONTAINER} must be the one condukt-egress injects",
    ),
    "workspace as the resolver uid": (
        lambda p: workspace(p)["securityContext"].update(runAsUser=DNS_UID),
        f"container workspace: no user container runs as the resolver uid {DNS_UID}",
    ),
    "pod-wide resolver uid": (
        lambda p: p["spec"]["securityContext"].update(runAsUser=DNS_UID),
        f"the pod's default uid is not the resolver uid {DNS_UID}",
    ),
    "a second resolver": (
        lambda p: p["spec"]["initContainers"].append(copy.deepcopy(init(p, DNS_CONTAINER))),
        f"the resolver {DNS_CONTAINER} must be the one condukt-egress injects",
    ),
}


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_each_mutation_of_a_session_pod_is_refused_with_its_message(case: str) -> None:
    change, message = MUTATIONS[case]
    assert refusals(session_pod()) == []
    messages = refusals(mutate(change))
    refused_with(messages, "session-pods: ", message)
    # Each rule is proven on its own: no other rule refuses the same mutation
    # (pointing the config volume elsewhere also makes it a foreign Secret volume;
    # a privileged container cannot keep allowPrivilegeEscalation: false).
    others = [m for m in messages if message not in m]
    assert others == [] or case in ("config volume of another session", "privileged"), others


def test_the_label_on_an_uninjected_pod_is_refused() -> None:
    refused_with(
        refusals(uninjected_labelled_pod()),
        "must start with the condukt-egress init container(s) condukt-egress-init",
        "must run the condukt-egress sidecar",
        "container workspace: every user container drops ALL capabilities",
    )


def test_the_label_of_another_session_is_refused() -> None:
    pod = session_pod()
    pod["metadata"]["labels"][LABEL_SESSION] = OTHER.names.label_value
    refused_with(refusals(pod), f"must be a Secret {OTHER.names.secret_prefix}<content hash>")


def test_the_session_label_cannot_be_added_changed_or_removed_on_update() -> None:
    pod = session_pod()
    message = f"the label {LABEL_SESSION} of a pod cannot be added, changed or removed"
    removed = copy.deepcopy(pod)
    del removed["metadata"]["labels"][LABEL_SESSION]
    refused_with(refusals(removed, old=pod), message)
    changed = copy.deepcopy(pod)
    changed["metadata"]["labels"][LABEL_SESSION] = OTHER.names.label_value
    refused_with(refusals(changed, old=pod), message)
    bare = uninjected_labelled_pod()
    del bare["metadata"]["labels"][LABEL_SESSION]
    labelled = copy.deepcopy(bare)
    labelled["metadata"]["labels"] = dict(SESSION.names.pod_labels)
    refused_with(refusals(labelled, old=bare), message)


def test_a_spec_update_of_a_session_pod_is_judged_again() -> None:
    pod = session_pod()
    swapped = copy.deepcopy(pod)
    init(swapped, manifests.SIDECAR_CONTAINER)["image"] = "evil/proxy:1"
    refused_with(refusals(swapped, old=pod), "the sidecar condukt-egress must be the one")


def test_a_metadata_update_of_a_pod_from_before_the_guard_is_admitted() -> None:
    legacy = uninjected_labelled_pod()
    finalised = copy.deepcopy(legacy)
    finalised["metadata"]["finalizers"] = []
    finalised["metadata"]["annotations"] = {"done": "yes"}
    assert refusals(finalised, old=legacy) == []


def test_ephemeral_containers_are_refused_on_session_pods_only() -> None:
    debug = {"name": "debugger", "image": "busybox", "targetContainerName": "workspace"}
    pod = session_pod()
    debugged = copy.deepcopy(pod)
    debugged["spec"]["ephemeralContainers"] = [debug]
    refused_with(
        refusals(debugged, old=pod, subresource="ephemeralcontainers"),
        "ephemeral-containers: `kubectl debug` containers cannot be added to a session pod",
    )
    plain = defaulted_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "db", "namespace": "agents"},
            "spec": {"containers": [{"name": "db", "image": "postgres"}]},
        }
    )
    plain_debugged = copy.deepcopy(plain)
    plain_debugged["spec"]["ephemeralContainers"] = [debug]
    assert refusals(plain_debugged, old=plain, subresource="ephemeralcontainers") == []


# --- NetworkPolicies --------------------------------------------------------------------


def foreign_policy(
    name: str = "open-egress", selector: JSON | None = None, labels: JSON | None = None
) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "agents", "labels": labels or {}},
        "spec": {"podSelector": selector or {}, "policyTypes": ["Egress"], "egress": [{}]},
    }


def test_our_network_policies_and_allow_listed_ones_are_admitted() -> None:
    for args in (
        SESSION,
        OTHER,
        SandboxEgressArgs(session_id="x" * 1024, namespace="agents", allow_plain_http=True),
    ):
        policy = manifests.network_policy_manifest(args)
        assert refusals(policy) == []
        assert refusals(policy, old=policy) == []
    assert refusals(foreign_policy("default-deny")) == []


def test_a_foreign_network_policy_is_refused() -> None:
    refused_with(
        refusals(foreign_policy()),
        "network-policies: NetworkPolicy open-egress is not one condukt-egress generated",
        "--allowed-network-policy",
    )


def test_a_network_policy_forging_our_label_is_refused() -> None:
    ours = manifests.network_policy_manifest(SESSION)
    labels = ours["metadata"]["labels"]
    # All pods, or a session's pods under another name, or ingress added: refused.
    refused_with(
        refusals(foreign_policy(ours["metadata"]["name"], labels=labels)),
        "is not one condukt-egress generated",
    )
    renamed = copy.deepcopy(ours)
    renamed["metadata"]["name"] = "second-policy"
    refused_with(refusals(renamed), "is not one condukt-egress generated")
    with_ingress = copy.deepcopy(ours)
    with_ingress["spec"]["ingress"] = [{}]
    refused_with(refusals(with_ingress), "is not one condukt-egress generated")
    other_selector = copy.deepcopy(ours)
    other_selector["spec"]["podSelector"]["matchLabels"] = dict(OTHER.names.pod_labels)
    refused_with(refusals(other_selector), "is not one condukt-egress generated")


# --- properties -------------------------------------------------------------------------


def accepted(session_id: str) -> bool:
    try:
        validate_session_id(session_id)
    except ConfigError:
        return False
    return True


session_ids = st.text(min_size=1, max_size=80).filter(accepted)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    session_id=session_ids,
    native=st.booleans(),
    containers=strategies.user_containers,
    init_containers=st.lists(
        st.fixed_dictionaries({"name": strategies.names, "image": st.just("busybox")}),
        max_size=2,
        unique_by=lambda c: c["name"],
    ),
    volumes=strategies.volumes,
    labels=strategies.labels,
)
def test_every_pod_inject_produces_is_admitted(
    *,
    session_id: str,
    native: bool,
    containers: list[JSON],
    init_containers: list[JSON],
    volumes: list[JSON],
    labels: dict[str, str],
) -> None:
    names = {c["name"] for c in containers}
    spec: JSON = {"containers": containers, "volumes": volumes}
    spec["initContainers"] = [c for c in init_containers if c["name"] not in names]
    args = SandboxEgressArgs(session_id=session_id, namespace="agents", native_sidecar=native)
    pod = session_pod(args, spec)
    pod["metadata"]["labels"] = {**labels, **args.names.pod_labels}
    assert refusals(pod) == []
    assert refusals(manifests.network_policy_manifest(args)) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    containers=strategies.user_containers,
    native=st.booleans(),
    pick=st.integers(min_value=0),
    escape=st.sampled_from(["capability", "uid", "privileged", "escalation", "no-drop"]),
    capability=st.sampled_from(["NET_ADMIN", "NET_RAW", "SETUID", "CAP_SYS_ADMIN", "CHOWN"]),
)
def test_any_escape_on_any_user_container_is_refused(
    *,
    containers: list[JSON],
    native: bool,
    pick: int,
    escape: str,
    capability: str,
) -> None:
    """Whichever container of an injected pod is weakened afterwards, the pod is refused."""
    args = SandboxEgressArgs(session_id="prop", namespace="agents", native_sidecar=native)
    pod = session_pod(args, {"containers": containers})
    ours = {*OUR_CONTAINERS, *(c["name"] for c in pod["spec"]["initContainers"])}
    users = [c for c in pod["spec"]["containers"] if c["name"] not in ours]
    target = users[pick % len(users)]
    context = target["securityContext"]
    expected = {
        "capability": "[container.capabilities]",
        "uid": "[container.sidecar-uid]",
        "privileged": "[container.privileged]",
        "escalation": "[container.privilege-escalation]",
        "no-drop": "[container.capabilities]",
    }[escape]
    if escape == "capability":
        context["capabilities"]["add"] = [capability]
    elif escape == "uid":
        context["runAsUser"] = args.sidecar_uid
    elif escape == "privileged":
        context["privileged"] = True
    elif escape == "escalation":
        context["allowPrivilegeEscalation"] = True
    else:
        context["capabilities"]["drop"] = [d for d in context["capabilities"]["drop"] if d != "ALL"]
    refused_with(refusals(pod), f"container {target['name']}: ", expected)


@settings(max_examples=60, deadline=None)
@given(first=session_ids, second=session_ids)
def test_the_secret_matches_the_label_for_any_ids(first: str, second: str) -> None:
    a = SandboxEgressArgs(session_id=first, namespace="agents")
    pod = session_pod(a)
    assert refusals(pod) == []
    if session_names(first).label_value == session_names(second).label_value:
        return
    b = SandboxEgressArgs(session_id=second, namespace="agents")
    pod["metadata"]["labels"][LABEL_SESSION] = b.names.label_value
    refused_with(
        refusals(pod), f"must be a Secret {b.names.secret_prefix}<content hash> of the session"
    )


def test_a_pod_may_mount_any_secret_of_its_session_and_only_one() -> None:
    # The Secret is named after its content: a new policy or CA is a new name.
    pod = session_pod()
    pod["spec"] = manifests.with_secret_name(pod["spec"], secret_of(SESSION, "new policy"))
    assert refusals(pod) == []
    trust = next(v for v in pod["spec"]["volumes"] if v["name"] == manifests.TRUST_VOLUME)
    trust["secret"]["secretName"] = secret_of(SESSION, "old policy")
    refused_with(refusals(pod), f"volume {manifests.TRUST_VOLUME} must be a Secret")


def test_an_injection_never_bound_to_its_secret_is_refused() -> None:
    pod = session_pod()
    pod["spec"] = manifests.with_secret_name(pod["spec"], SESSION.names.secret_prefix)
    refused_with(refusals(pod), f"must be a Secret {SESSION.names.secret_prefix}<content hash>")


@pytest.mark.parametrize(
    ("label_of", "secret"),
    [
        ("a", lambda: secret_of(SandboxEgressArgs(session_id="a-b"))),
        ("a-b", lambda: secret_of(SandboxEgressArgs(session_id="a"))),
        ("a", lambda: secret_of(SandboxEgressArgs(session_id="a")) + "-x"),
        ("a", lambda: secret_of(SandboxEgressArgs(session_id="a"))[:-1]),
        ("a", lambda: secret_of(SandboxEgressArgs(session_id="a"))[:-1] + "1"),
        ("a", lambda: SandboxEgressArgs(session_id="a").names.network_policy),
    ],
    ids=[
        "a mounts a-b's",
        "a-b mounts a's",
        "a longer name",
        "a shorter name",
        "not base32",
        "the unhashed name",
    ],
)
def test_a_secret_is_the_session_prefix_and_exactly_a_content_hash(
    label_of: str, secret: Callable[[], str]
) -> None:
    # Counterexample to a bare startsWith: the prefix of session 'a' is no prefix
    # of the Secrets of 'a-b' (its base ends with a fixed-length hash), and the
    # length and alphabet of the content hash are checked exactly.
    args = SandboxEgressArgs(session_id=label_of, namespace="agents")
    pod = session_pod(args)
    assert refusals(pod) == []
    pod["spec"] = manifests.with_secret_name(pod["spec"], secret())
    assert not args.names.owns_secret(secret())
    refused_with(refusals(pod), f"must be a Secret {args.names.secret_prefix}<content hash>")


# --- options ----------------------------------------------------------------------------


def test_session_options_shape_what_is_accepted() -> None:
    guard_args = SandboxGuardArgs(
        sidecar_images=[
            "registry.example/condukt-egress@sha256:" + "a" * 64,
            contract.DEFAULT_IMAGE,
        ],
        proxy_port=16001,
        unsafe_allowed_capabilities=["NET_BIND_SERVICE"],
    )
    guard = guard_manifests(guard_args)
    args = SandboxEgressArgs(
        session_id="s",
        namespace="agents",
        sidecar_image=guard_args.sidecar_images[0],
        proxy_port=16001,
        unsafe_allowed_capabilities=["NET_BIND_SERVICE"],
    )
    pod = session_pod(args)
    workspace(pod)["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert refusals(pod, guard=guard) == []
    # The default guard refuses this pod: another image, port and capability.
    refused_with(
        refusals(pod),
        "image one of ghcr.io/tuist/condukt-egress:1.5.1",
        "container workspace: every user container drops ALL capabilities",
    )


def test_rules_can_be_turned_off() -> None:
    only_pods = guard_manifests(
        SandboxGuardArgs(network_policies=False, ephemeral_containers=False)
    )
    assert [o["metadata"]["name"] for o in only_pods] == [POLICY_PREFIX + "session-pods"] * 2 + [
        POLICY_PREFIX + "session-pods-status"
    ] * 2
    assert refusals(foreign_policy(), guard=only_pods) == []


@pytest.mark.parametrize(
    ("kwargs", "field", "fix"),
    [
        ({"namespace_labels": {}}, "namespace_labels", "egress.condukt.dev/guard"),
        ({"namespace_labels": {"bad key!": "x"}}, "namespace_labels['bad key!']", "label key"),
        ({"allowed_network_policies": ["Bad_Name"]}, "allowed_network_policies", "metadata.name"),
        (
            {"allowed_network_policies": "default-deny"},
            "allowed_network_policies",
            "list of strings",
        ),
        ({"sidecar_images": []}, "sidecar_images", contract.DEFAULT_IMAGE),
        ({"sidecar_images": ["has space"]}, "sidecar_images", "printable ASCII"),
        ({"proxy_port": 443}, "proxy_port", "15001"),
        ({"mode": "audit"}, "mode", "one of 'deny', 'warn'"),
        ({"only_session_pods": "yes"}, "only_session_pods", "true or false"),
        (
            {"session_pods": False, "ephemeral_containers": False, "network_policies": False},
            "session_pods",
            "turn at least one on",
        ),
    ],
)
def test_bad_options_name_the_field_and_the_fix(
    kwargs: dict[str, Any], field: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as info:
        SandboxGuardArgs(**kwargs)
    assert info.value.field == field
    assert fix in str(info.value)


def test_the_module_example_runs() -> None:
    result = doctest.testmod(guard_module, raise_on_error=False, verbose=False)
    assert result.attempted >= 2
    assert result.failed == 0
