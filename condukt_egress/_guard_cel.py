"""The parts every policy of :mod:`condukt_egress.guard` is built from.

A ``ValidatingAdmissionPolicy`` and its resource rules, one validation, a
``messageExpression`` mixing text and CEL, the session-label tests and
variables, and the relation between a session's label value and the names
:func:`~condukt_egress.naming.session_names` derives from it.
"""

from __future__ import annotations

from typing import Any, Final

from condukt_egress._cel import lit
from condukt_egress.naming import LABEL_MANAGED_BY, LABEL_SESSION, MANAGED_BY, session_names

__all__ = [
    "JSON",
    "POLICY_PREFIX",
    "TEMPLATE_IDS",
    "Cel",
    "admission_policy",
    "affixed",
    "has_label",
    "label_variables",
    "message_expression",
    "name_affixes",
    "resource_rule",
    "validation",
]

JSON = dict[str, Any]

POLICY_PREFIX: Final = "condukt-egress-guard-"
"""Name prefix of every guard policy and binding; the rule name follows."""

TEMPLATE_IDS: Final = ("condukt-guard-template-a", "Template B #2")
"""Session ids the guard injects template pods for, to read off what depends on the id."""


def has_label(obj: str, key: str) -> str:
    """CEL: ``obj`` (``object``, ``oldObject``) carries the label ``key``."""
    return f"has({obj}.metadata.labels) && {lit(key)} in {obj}.metadata.labels"


def label_variables(old_when: str = "") -> list[JSON]:
    """Variables: the session label of the pod and of its old version (``''`` when absent).

    ``old_when`` is a CEL condition (ending in ``&&``) under which the old
    version counts at all.
    """
    label_lit = lit(LABEL_SESSION)
    return [
        {"name": "labelled", "expression": has_label("object", LABEL_SESSION)},
        {
            "name": "label",
            "expression": f"variables.labelled ? object.metadata.labels[{label_lit}] : ''",
        },
        {"name": "oldLabelled", "expression": old_when + has_label("oldObject", LABEL_SESSION)},
        {
            "name": "oldLabel",
            "expression": f"variables.oldLabelled ? oldObject.metadata.labels[{label_lit}] : ''",
        },
    ]


class Cel(str):
    """A CEL expression among the literal parts of :func:`message_expression`."""

    __slots__ = ()


def message_expression(*parts: str) -> str:
    """CEL: a ``messageExpression`` joining literal text and :class:`Cel` parts."""
    return " + ".join(f"({p})" if isinstance(p, Cel) else lit(p) for p in parts)


def validation(expression: str, message: str, message_expression: str | None = None) -> JSON:
    """One validation of a policy; a refusal is ``Forbidden``."""
    out: JSON = {"expression": expression, "message": message, "reason": "Forbidden"}
    if message_expression is not None:
        out["messageExpression"] = message_expression
    return out


def name_affixes(attribute: str) -> tuple[str, str]:
    """``(prefix, suffix)`` with ``<name> == prefix + label value + suffix`` for every id.

    Read off :func:`session_names` for several ids, so the guard follows
    whatever naming.py derives, and fails loudly if the relation stops being one.
    """
    found = set()
    for session_id in (*TEMPLATE_IDS, "42", "x" * 300):
        names = session_names(session_id)
        name = getattr(names, attribute)
        prefix, sep, suffix = name.partition(names.label_value)
        if not sep:  # pragma: no cover - a naming change the guard cannot express
            raise AssertionError(f"{attribute} {name!r} does not contain the label value")
        found.add((prefix, suffix))
    if len(found) != 1:  # pragma: no cover - a naming change the guard cannot express
        raise AssertionError(f"{attribute} is not prefix + label value + suffix: {found}")
    return found.pop()


def affixed(expression: str, prefix: str, suffix: str) -> str:
    """CEL: ``prefix + expression + suffix``, without empty literals."""
    return " + ".join(
        [*([lit(prefix)] if prefix else []), expression, *([lit(suffix)] if suffix else [])]
    )


def resource_rule(resource: str, operations: list[str], group: str = "") -> JSON:
    """A ``resourceRules`` entry: ``operations`` on ``resource`` of API ``group`` v1."""
    return {
        "apiGroups": [group],
        "apiVersions": ["v1"],
        "resources": [resource],
        "operations": operations,
    }


def admission_policy(
    rule: str,
    resource_rules: list[JSON],
    match_conditions: list[JSON],
    variables: list[JSON],
    validations: list[JSON],
) -> JSON:
    """The ``ValidatingAdmissionPolicy`` of one guard rule (or of a part of one)."""
    spec: JSON = {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": resource_rules},
    }
    if match_conditions:
        spec["matchConditions"] = match_conditions
    if variables:
        spec["variables"] = variables
    spec["validations"] = validations
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_PREFIX + rule, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
        "spec": spec,
    }
