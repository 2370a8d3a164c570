"""The pod rules: every refusal of a session pod, declared once.

A session pod keeps the egress sidecar as its only way out only while no
container can step around it. Each :class:`PodRule` states one such
condition on one part of a pod (the pod spec, a user container, a volume, the
pod metadata), why it matters and how to fix a spec that breaks it, and
carries it in the two forms that enforce it:

- ``check``, a Python function :func:`~condukt_egress.manifests.inject` and
  :func:`~condukt_egress.manifests.check` run on the user's spec before
  injecting (a refusal names the field and the fix);
- ``cel``, the same condition as a CEL expression over the *injected* pod,
  which the guard's ``session-pods`` policy evaluates in the API server, one
  validation per rule, whoever sends the pod.

A rule the injection repairs rather than refuses (a missing
``allowPrivilegeEscalation: false``, say) has no Python refusal for the
missing value; the guard still requires the repaired value, since a pod that
reaches the API server without passing through our code was never repaired.

Every rule also carries its counterexamples (``breaks``: inject and guard
both refuse them; ``repaired``: inject repairs them, the guard refuses them),
and the tests run each through both, so the two forms cannot drift.

The table is put together here from its parts: ``_podrules_base`` (what a
rule is, and the rows several scopes share), ``_podrules_pod`` and
``_podrules_container`` (the rules of the pod spec and of each user
container); the few volume and metadata rules stand here.

Example:
    >>> [r.id for r in POD_RULES if r.scope == "metadata"]
    ['metadata.apparmor-annotation', 'metadata.secondary-network']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from condukt_egress._cel import lit
from condukt_egress._podrules_base import (
    APPARMOR_WHY,
    SECONDARY_FIX,
    SECRET_WHY,
    PodRule,
    Problem,
    RuleContext,
    Scope,
    add_volume,
    cel_managed,
    image_repository,
    is_managed,
    no_secondary_networks,
    on_metadata,
    secret_what,
    when,
    workspace,
)
from condukt_egress._podrules_container import BYPASS_CAPABILITIES, CONTAINER_RULES
from condukt_egress._podrules_pod import POD_WIDE_RULES, SAFE_SYSCTLS
from condukt_egress.naming import MANAGED_PREFIX, OUR_VOLUMES

if TYPE_CHECKING:
    from condukt_egress.args import SandboxEgressArgs

__all__ = [
    "APPARMOR_ANNOTATION_PREFIX",
    "BYPASS_CAPABILITIES",
    "POD_RULES",
    "SAFE_SYSCTLS",
    "SECONDARY_NETWORK_ANNOTATIONS",
    "PodRule",
    "Problem",
    "RuleContext",
    "Scope",
    "guarantees",
    "image_repository",
    "refuse_container",
    "refuse_metadata",
    "refuse_pod",
    "rules_for",
    "workspace",
]

APPARMOR_ANNOTATION_PREFIX: Final = "container.apparmor.security.beta.kubernetes.io/"
"""The pre-1.30 way to choose a container's AppArmor profile (still honoured)."""

SECONDARY_NETWORK_ANNOTATIONS: Final = (
    "k8s.v1.cni.cncf.io/networks",
    "v1.multus-cni.io/default-network",
)
"""Multus annotations that attach (or replace) pod network interfaces."""


# --- volume and metadata rules -------------------------------------------------------


def _check_secret_volume(v: Mapping[str, Any], _s: Mapping[str, Any], ctx: RuleContext) -> Any:
    name = (v.get("secret") or {}).get("secretName")
    if is_managed(name):
        return Problem("secret", secret_what("mounts", str(name), ctx))
    for index, source in enumerate((v.get("projected") or {}).get("sources") or ()):
        name = (source.get("secret") or {}).get("name")
        if is_managed(name):
            return Problem(f"projected.sources[{index}]", secret_what("mounts", str(name), ctx))
    return None


def _volume_rules() -> list[PodRule]:
    return [
        PodRule(
            "volume.host-path",
            "volume",
            "hostPath",
            "no user volume is a hostPath",
            "a node path (e.g. the container runtime socket) lets the workspace escape the pod "
            "and its egress control",
            "use an emptyDir or a PersistentVolumeClaim",
            lambda v, _s, _x: when(v.get("hostPath") is not None, "hostPath", "is set"),
            lambda _x: "!has(v.hostPath)",
            breaks=(add_volume({"name": "node", "hostPath": {"path": "/run/containerd"}}),),
        ),
        PodRule(
            "volume.session-secret",
            "volume",
            "secret, projected",
            f"no user volume references a Secret named {MANAGED_PREFIX}*",
            SECRET_WHY,
            "remove it",
            _check_secret_volume,
            lambda _x: (
                f"!{cel_managed('v', 'secret.secretName')} && !(has(v.projected) && "
                "has(v.projected.sources) && v.projected.sources.exists(s, "
                f"{cel_managed('s', 'secret.name')}))"
            ),
            breaks=(
                lambda pod, x: add_volume(
                    {"name": "k", "secret": {"secretName": x.args.names.secret_name({})}}
                )(pod, x),
                add_volume(
                    {
                        "name": "p",
                        "projected": {"sources": [{"secret": {"name": f"{MANAGED_PREFIX}x"}}]},
                    }
                ),
            ),
        ),
    ]


def _annotations(m: Mapping[str, Any]) -> Mapping[str, Any]:
    return m.get("annotations") or {}


def _metadata_rules() -> list[PodRule]:
    return [
        PodRule(
            "metadata.apparmor-annotation",
            "metadata",
            f"annotations[{APPARMOR_ANNOTATION_PREFIX}*]",
            "no AppArmor annotation makes a container unconfined",
            APPARMOR_WHY,
            "use 'runtime/default' or remove the annotation",
            lambda m, _s, _x: next(
                (
                    Problem(f"annotations[{k!r}]", "is 'unconfined'")
                    for k, value in _annotations(m).items()
                    if str(k).startswith(APPARMOR_ANNOTATION_PREFIX) and value == "unconfined"
                ),
                None,
            ),
            lambda _x: (
                "!has(object.metadata.annotations) || object.metadata.annotations.all(k, "
                f"!(k.startsWith({lit(APPARMOR_ANNOTATION_PREFIX)}) && "
                "object.metadata.annotations[k] == 'unconfined'))"
            ),
            breaks=(
                on_metadata(
                    lambda m: m.setdefault("annotations", {}).update(
                        {f"{APPARMOR_ANNOTATION_PREFIX}workspace": "unconfined"}
                    )
                ),
            ),
        ),
        PodRule(
            "metadata.secondary-network",
            "metadata",
            "annotations[k8s.v1.cni.cncf.io/networks]",
            "no Multus annotation attaches or replaces a pod network",
            "NetworkPolicy does not govern secondary interfaces, and the redirect covers only "
            "ports 80 and 443",
            f"remove the annotation, or {SECONDARY_FIX}",
            lambda m, _s, _x: next(
                (
                    Problem(f"annotations[{k!r}]", "is set")
                    for k in SECONDARY_NETWORK_ANNOTATIONS
                    if k in _annotations(m)
                ),
                None,
            ),
            lambda _x: (
                "!has(object.metadata.annotations) || !("
                + " || ".join(
                    f"{lit(k)} in object.metadata.annotations"
                    for k in SECONDARY_NETWORK_ANNOTATIONS
                )
                + ")"
            ),
            breaks=(
                on_metadata(
                    lambda m: m.setdefault("annotations", {}).update(
                        {SECONDARY_NETWORK_ANNOTATIONS[0]: "macvlan-conf"}
                    )
                ),
            ),
            applies=no_secondary_networks,
        ),
    ]


POD_RULES: Final[tuple[PodRule, ...]] = (
    *POD_WIDE_RULES,
    *_volume_rules(),
    *CONTAINER_RULES,
    *_metadata_rules(),
)
"""Every rule, pod-wide ones first (the order ``inject`` reports problems in)."""


def rules_for(args: SandboxEgressArgs, scope: Scope) -> Iterable[PodRule]:
    """The rules of ``scope`` that hold for this session."""
    return (r for r in POD_RULES if r.scope == scope and r.applies(args))


# --- refusals --------------------------------------------------------------------


def _first(
    rules: Iterable[PodRule], target: Mapping[str, Any], spec: Mapping[str, Any], ctx: RuleContext
) -> tuple[PodRule, Problem] | None:
    for rule in rules:
        problem = rule.check(target, spec, ctx)
        if problem is not None:
            return rule, problem
    return None


def refuse_pod(spec: Mapping[str, Any], ctx: RuleContext) -> None:
    """Refuse a pod spec whose pod-wide settings or user volumes break a rule.

    Raises:
        ConfigError: The field (``spec.<path>``), what it holds, why, and the fix.
    """
    found = _first(rules_for(ctx.args, "pod"), spec, spec, ctx)
    if found is not None:
        raise found[0].error("spec", found[1])
    volume_rules = tuple(rules_for(ctx.args, "volume"))
    for index, volume in enumerate(spec.get("volumes") or ()):
        if volume.get("name") in OUR_VOLUMES:
            continue  # ours, from an earlier injection: compared when volumes are merged
        found = _first(volume_rules, volume, spec, ctx)
        if found is not None:
            raise found[0].error(f"spec.volumes[{index}] (volume {volume.get('name')!r})", found[1])


def refuse_container(
    container: Mapping[str, Any], spec: Mapping[str, Any], where: str, ctx: RuleContext
) -> None:
    """Refuse a user container that breaks a rule; ``where`` names it in the error.

    Raises:
        ConfigError: ``<where>.<path>``, what it holds, why, and the fix.
    """
    found = _first(rules_for(ctx.args, "container"), container, spec, ctx)
    if found is not None:
        raise found[0].error(where, found[1])


def refuse_metadata(metadata: Mapping[str, Any], ctx: RuleContext) -> None:
    """Refuse pod (template) metadata that breaks a rule.

    Raises:
        ConfigError: ``metadata.<path>``, what it holds, why, and the fix.
    """
    found = _first(rules_for(ctx.args, "metadata"), metadata, {}, ctx)
    if found is not None:
        raise found[0].error("metadata", found[1])


def guarantees(args: Sequence[PodRule] = POD_RULES) -> list[str]:
    """The rules as the security guarantees list them: ``rule (id): why``."""
    return [f"{r.rule} (`{r.id}`): {r.why}." for r in args]
