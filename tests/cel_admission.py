"""An offline stand-in for the API server's ValidatingAdmissionPolicy admission.

It evaluates the guard's CEL with ``cel-expr-python``, Google's Python binding
of cel-cpp: a conformance-tested implementation of the CEL specification (the
same specification cel-go, the API server's engine, implements), with a
type checker that refuses any function or identifier not declared. Nothing
beyond standard CEL is declared here (no Kubernetes extension library), so an
expression that leaned on a non-standard function would fail to compile here
instead of passing unevaluated.

What it models, as the API server does it (``k8s.io/apiserver``
``admission/plugin/policy/validating``): binding namespace selection by labels,
``matchConstraints.resourceRules`` (resource, subresource, operation),
``matchConditions`` (all must hold), ``variables`` (in order, visible to later
variables and to validations as ``variables.<name>``), ``validations`` with
``messageExpression`` falling back to ``message``, on ``object``, ``oldObject``
(null on CREATE) and ``request``. It is stricter in one way: an expression that
errors is a test failure, never a silent refusal, so every refusal we assert
is a ``false`` with our message.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel

JSON = dict[str, Any]

_ENV = cel.NewEnv(
    variables={
        "object": cel.Type.DYN,
        "oldObject": cel.Type.DYN,
        "request": cel.Type.DYN,
        "params": cel.Type.DYN,
        "namespaceObject": cel.Type.DYN,
        "variables": cel.Type.Map(cel.Type.STRING, cel.Type.DYN),
    }
)


@functools.cache
def compiled(expression: str) -> Any:
    """Compile (and type-check) ``expression``; raise on anything non-standard."""
    return _ENV.compile(expression)


def evaluate(expression: str, data: Mapping[str, Any]) -> Any:
    """The plain value of ``expression``; AssertionError if evaluation errors."""
    value = compiled(expression).eval(data=dict(data))
    if value.type() == cel.Type.ERROR:
        raise AssertionError(f"CEL error {value.value()} in: {expression}")
    return value.plain_value()


@dataclass(frozen=True)
class Refusal:
    """One failed validation: the policy's name and the message the client sees."""

    policy: str
    message: str


def request(
    operation: str,
    obj: JSON | None,
    old: JSON | None = None,
    *,
    subresource: str = "",
) -> JSON:
    """An AdmissionRequest for ``obj`` (the request attributes CEL sees)."""
    target = obj or old or {}
    api_version = str(target.get("apiVersion", "v1"))
    group, _, version = api_version.rpartition("/")
    kind = str(target.get("kind", ""))
    resource = {"Pod": "pods", "NetworkPolicy": "networkpolicies"}.get(kind, kind.lower() + "s")
    return {
        "operation": operation,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "subResource": subresource,
        "name": (target.get("metadata") or {}).get("name", ""),
        "namespace": (target.get("metadata") or {}).get("namespace", ""),
        "userInfo": {"username": "tester"},
        "object": obj,
        "oldObject": old,
    }


def _rule_matches(rule: Mapping[str, Any], req: Mapping[str, Any]) -> bool:
    resource = req["resource"]["resource"]
    if req["subResource"]:
        resource += "/" + req["subResource"]
    return (
        req["resource"]["group"] in rule["apiGroups"]
        and req["resource"]["version"] in rule["apiVersions"]
        and resource in rule["resources"]
        and req["operation"] in rule["operations"]
    )


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"selector form not modelled: {selector}"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def admit(
    objects: Sequence[Mapping[str, Any]],
    req: Mapping[str, Any],
    namespace_labels: Mapping[str, str],
) -> list[Refusal]:
    """Every refusal the guard ``objects`` give ``req`` in a namespace with these labels.

    An empty list means the request is admitted.
    """
    policies = {
        o["metadata"]["name"]: o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"
    }
    refusals: list[Refusal] = []
    data: dict[str, Any] = {
        "object": copy.deepcopy(req["object"]),
        "oldObject": copy.deepcopy(req["oldObject"]),
        "request": {k: v for k, v in req.items() if k not in ("object", "oldObject")},
        "params": None,
        "namespaceObject": {"metadata": {"labels": dict(namespace_labels)}},
    }
    for binding in objects:
        if binding["kind"] != "ValidatingAdmissionPolicyBinding":
            continue
        spec = binding["spec"]
        assert "Deny" in spec["validationActions"] or "Warn" in spec["validationActions"]
        if not _selects(spec["matchResources"]["namespaceSelector"], namespace_labels):
            continue
        policy = policies[spec["policyName"]]["spec"]
        assert policy["failurePolicy"] == "Fail"
        if not any(_rule_matches(r, req) for r in policy["matchConstraints"]["resourceRules"]):
            continue
        variables: dict[str, Any] = {}
        scope = {**data, "variables": variables}
        if not all(
            evaluate(c["expression"], scope) is True for c in policy.get("matchConditions", ())
        ):
            continue
        for variable in policy.get("variables", ()):
            variables[variable["name"]] = evaluate(variable["expression"], scope)
        for validation in policy["validations"]:
            verdict = evaluate(validation["expression"], scope)
            assert isinstance(verdict, bool), f"{validation['expression']} gave {verdict!r}"
            if verdict:
                continue
            message = validation["message"]
            if "messageExpression" in validation:
                message = evaluate(validation["messageExpression"], scope)
                assert isinstance(message, str)
                assert message
            refusals.append(Refusal(spec["policyName"], message))
    return refusals


def defaulted_pod(pod: Mapping[str, Any]) -> JSON:
    """``pod`` with the defaults the API server sets before validating admission runs.

    Admission sees the stored form, not the request body: expressions that
    compared whole containers with what we generate would break on these.
    """
    out: JSON = copy.deepcopy(dict(pod))
    spec = out["spec"]
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or ():
            container.setdefault("imagePullPolicy", "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("resources", {})
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in container:
                    for key, value in (
                        ("timeoutSeconds", 1),
                        ("successThreshold", 1),
                        ("periodSeconds", 10),
                        ("failureThreshold", 3),
                    ):
                        container[probe].setdefault(key, value)
    for volume in spec.get("volumes") or ():
        if "secret" in volume:
            volume["secret"].setdefault("defaultMode", 0o644)
    meta = out.setdefault("metadata", {})
    meta.setdefault("uid", "0b7e7f9a-0000-4000-8000-000000000001")
    meta.setdefault("creationTimestamp", "2026-11-29T00:00:00Z")
    return out
