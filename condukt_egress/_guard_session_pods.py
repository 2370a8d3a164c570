"""The guard's ``session-pods`` policies: a session pod is injected as condukt-egress injects it.

``session-pods`` judges every session-labelled Pod at creation and at each
change of its spec: our init containers first and unaltered, the sidecar and
the resolver as injected, our volumes on the Secret of the session the label
names, one validation per pod rule of :mod:`condukt_egress.podrules` (the
user's containers, volumes and metadata), and no change of the label.
``session-pods-status`` keeps the label as it was through ``pods/status``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from condukt_egress import manifests, podrules
from condukt_egress._cel import is_, lit
from condukt_egress._guard_cel import (
    JSON,
    TEMPLATE_IDS,
    Cel,
    admission_policy,
    affixed,
    has_label,
    label_variables,
    message_expression,
    name_affixes,
    resource_rule,
    validation,
)
from condukt_egress._guard_injected import Ours, container_matches, read_ours
from condukt_egress.dns import DNS_UID
from condukt_egress.naming import (
    DNS_CONTAINER,
    HASH_CHARS,
    LABEL_SESSION,
    OUR_CONTAINERS,
    OUR_VOLUMES,
    SECRET_HASH_PATTERN,
)

if TYPE_CHECKING:
    from condukt_egress.guard import SandboxGuardArgs

__all__ = ["session_pod_status_policy", "session_pods_policy"]

_SIDECAR: Final = manifests.SIDECAR_CONTAINER
_JUDGED: Final = "!variables.judged || "
"""Prefix of every validation on the pod's spec: true for what ``session-pods`` does not judge."""
_INJECT_FIX: Final = (
    "inject the pod with condukt-egress (SandboxEgress.inject, workload_options or "
    "`condukt-egress render`) instead of writing or editing these parts by hand"
)
_LABEL_UNCHANGED: Final = (
    "variables.labelled == variables.oldLabelled && variables.label == variables.oldLabel"
)
_LABEL_MESSAGE: Final = (
    f"session-pods: the label {LABEL_SESSION} of a pod cannot be added, changed or removed "
    "after creation (by an update or a status update), which would move a running pod into "
    "or out of a session's NetworkPolicy; delete the pod and create it with its final labels"
)
_SCOPES: Final[Mapping[str, tuple[str, str]]] = {
    # scope: (the list a rule's CEL runs over, its loop variable); pod and metadata: no loop
    "container": ("variables.userContainers", "c"),
    "volume": ("variables.userVolumes", "v"),
}


def _rule_validation(rule: podrules.PodRule, cel: str) -> JSON:
    """One validation of ``session-pods`` for one pod rule, its message naming the culprit."""
    message = f"session-pods: {rule.message}"
    if rule.scope not in _SCOPES:
        return validation(f"{_JUDGED}({cel})", message)
    items, var = _SCOPES[rule.scope]
    culprit = f"{items}.filter({var}, !({cel})).map({var}, {var}.name)"
    return validation(
        f"{_JUDGED}{items}.all({var}, {cel})",
        message,
        message_expression(
            f"session-pods: {rule.scope} ",
            Cel(f"size({culprit}) > 0 ? {culprit}[0] : ''"),
            f": {rule.message}",
        ),
    )


def _session_pod_variables(ours: Ours) -> list[JSON]:
    """The variables of ``session-pods``: the label, what is judged, ours and the user's parts."""
    prefix, suffix = name_affixes("secret_prefix")
    config = (
        f"v.name == {lit(manifests.CONFIG_VOLUME)} && has(v.secret) && has(v.secret.secretName)"
    )
    variables = [
        *label_variables(old_when="request.operation == 'UPDATE' && "),
        {
            # Pod specs are nearly immutable: an UPDATE that leaves the spec alone
            # (labels, annotations, finalizers) is not judged again, so a pod made
            # before the guard existed can still be finalised and deleted.
            "name": "judged",
            "expression": "variables.labelled && "
            "(request.operation != 'UPDATE' || object.spec != oldObject.spec)",
        },
        {"name": "secretPrefix", "expression": affixed("variables.label", prefix, suffix)},
        {
            # The Secret the config volume names; every volume of ours must name it.
            "name": "secretName",
            "expression": f"has(object.spec.volumes) && object.spec.volumes.exists(v, {config}) "
            f"? object.spec.volumes.filter(v, {config})[0].secret.secretName : ''",
        },
        {
            # One of the session's Secrets: the prefix, then exactly a content hash
            # (fixed length, no '-'), so session 'a' never matches one of 'a-b'.
            "name": "secretOwned",
            "expression": "variables.secretName.startsWith(variables.secretPrefix) && "
            f"size(variables.secretName) == size(variables.secretPrefix) + {HASH_CHARS} && "
            f"variables.secretName.matches({lit(SECRET_HASH_PATTERN)})",
        },
        {
            "name": "initContainers",
            "expression": "has(object.spec.initContainers) ? object.spec.initContainers : []",
        },
        {"name": "containers", "expression": "variables.initContainers + object.spec.containers"},
        {
            "name": "rootInit",
            "expression": "variables.initContainers.filter(c, "
            f"!(c.name in {lit([_SIDECAR, DNS_CONTAINER])}))",
        },
        {
            "name": "resolvers",
            "expression": f"variables.containers.filter(c, c.name == {lit(DNS_CONTAINER)})",
        },
        {
            "name": "sidecars",
            "expression": f"variables.containers.filter(c, c.name == {lit(_SIDECAR)})",
        },
    ]

    allowed_volume = " || ".join(
        f"(v.name == {lit(name)} && variables.secretOwned && has(v.secret.secretName) "
        "&& v.secret.secretName == variables.secretName "
        f"&& has(v.secret.items) && v.secret.items.map(i, i.key) == {lit(list(keys))})"
        for name, keys in ours.secret_volumes.items()
    )
    our_volumes = lit(list(ours.secret_volumes))
    variables += [
        {
            # Our volumes (by name) that are not this session's Secret with the
            # keys the injection gives them.
            "name": "ourVolumesBad",
            "expression": "has(object.spec.volumes) ? object.spec.volumes.filter(v, "
            f"v.name in {our_volumes} && !(has(v.secret) && ({allowed_volume})))"
            ".map(v, v.name) : []",
        },
        {
            "name": "userContainers",
            "expression": f"variables.containers.filter(c, !(c.name in {lit(OUR_CONTAINERS)}))",
        },
        {
            "name": "userVolumes",
            "expression": "has(object.spec.volumes) ? object.spec.volumes.filter(v, "
            f"!(v.name in {lit(OUR_VOLUMES)})) : []",
        },
    ]
    return variables


def _layout_validation(ours: Ours) -> JSON:
    """Our init containers first, in order, then (native) the sidecar, then the resolver."""
    root_names = [c["name"] for c in ours.root_init]
    n_root = len(root_names)
    layout = (
        f"variables.initContainers.exists(c, c.name == {lit(_SIDECAR)}) ? "
        f"(size(variables.initContainers) > {n_root} && "
        f"variables.initContainers[{n_root}].name == {lit(_SIDECAR)}) : true"
    )
    # A native resolver comes right after the sidecar: a user native sidecar
    # before it could bind the resolver's port first.
    resolver_layout = (
        f"variables.initContainers.exists(c, c.name == {lit(DNS_CONTAINER)}) && "
        f"variables.initContainers.exists(c, c.name == {lit(_SIDECAR)}) ? "
        f"(size(variables.initContainers) > {n_root + 1} && "
        f"variables.initContainers[{n_root + 1}].name == {lit(DNS_CONTAINER)}) : true"
    )
    root_order = " && ".join(
        [f"size(variables.rootInit) >= {n_root}"]
        + [f"variables.initContainers[{i}].name == {lit(n)}" for i, n in enumerate(root_names)]
        + [f"({layout})", f"({resolver_layout})"]
    )
    return validation(
        _JUDGED + root_order,
        f"session-pods: a session pod must start with the condukt-egress init container(s) "
        f"{', '.join(root_names)}, then (as native sidecars) {_SIDECAR} and the resolver "
        f"{DNS_CONTAINER}, before any other init container, so the egress redirect, the "
        f"proxy and the resolver are in place before anything else runs; {_INJECT_FIX}",
    )


def _root_init_validations(ours: Ours, args: SandboxGuardArgs) -> list[JSON]:
    """Each of our run-once init containers is the one the injection builds."""
    validations = []
    for template in ours.root_init:
        name = template["name"]
        check = container_matches("c", template, ours.wildcard_args[name], args.sidecar_images)
        caps = template["securityContext"]["capabilities"].get("add") or []
        validations.append(
            validation(
                f"{_JUDGED}variables.initContainers"
                f".filter(c, c.name == {lit(name)}).all(c, {check})",
                f"session-pods: the init container {name} must be the one condukt-egress "
                f"injects: image one of {', '.join(args.sidecar_images)}, command, args and "
                "securityContext as injected, no env, envFrom, volume mounts or exec hooks added "
                f"(it runs as root with {', '.join(caps) or 'no capability'}); {_INJECT_FIX}",
            )
        )
    return validations


def _sidecar_validations(ours: Ours, args: SandboxGuardArgs) -> list[JSON]:
    """The resolver and the sidecar: present as injected, native or plain containers."""
    sidecar_check = container_matches(
        "c",
        ours.sidecar,
        ours.wildcard_args[_SIDECAR],
        args.sidecar_images,
        bound_env=manifests.CA_FINGERPRINT_ENV,
    )
    native = is_("c", "restartPolicy", "Always")
    in_init = f"variables.initContainers.exists(c, c.name == {lit(_SIDECAR)} && {native})"
    in_main = f"object.spec.containers.exists(c, c.name == {lit(_SIDECAR)})"
    resolver_check = container_matches(
        "c", ours.resolver, ours.wildcard_args[DNS_CONTAINER], args.dns_images
    )
    in_main_resolver = f"object.spec.containers.exists(r, r.name == {lit(DNS_CONTAINER)})"
    return [
        validation(
            f"{_JUDGED}size(variables.resolvers) <= 1 && variables.resolvers.all(c, "
            f"{resolver_check} && ({native} || {in_main_resolver}))",
            f"session-pods: the resolver {DNS_CONTAINER} must be the one condukt-egress "
            f"injects: image one of {', '.join(args.dns_images)}, args, env, Corefile mount and "
            f"securityContext (uid {DNS_UID}, whose DNS queries the redirect exempts) as "
            f"injected, beside the sidecar; {_INJECT_FIX}",
        ),
        validation(
            f"{_JUDGED}size(variables.sidecars) == 1 && ({in_init} || {in_main})",
            f"session-pods: a session pod must run the condukt-egress sidecar {_SIDECAR} (a "
            "native sidecar in spec.initContainers with restartPolicy: Always, or a container); "
            + _INJECT_FIX,
        ),
        validation(
            f"{_JUDGED}variables.sidecars.all(c, {sidecar_check})",
            f"session-pods: the sidecar {_SIDECAR} must be the one condukt-egress injects: image "
            f"one of {', '.join(args.sidecar_images)}, command, args and securityContext as "
            "injected (the session id aside), only its own env and config mount, no exec hooks "
            f"or probes (they would run as uid {args.sidecar_uid}, which the redirect exempts); "
            f"{_INJECT_FIX}",
        ),
    ]


def _volumes_validation(ours: Ours) -> JSON:
    """Our volumes are the Secret of the session the pod's label names."""
    return validation(
        f"{_JUDGED}has(object.spec.volumes) && object.spec.volumes.exists(v, v.name == "
        f"{lit(manifests.CONFIG_VOLUME)}) && size(variables.ourVolumesBad) == 0",
        f"session-pods: the condukt-egress volumes ({', '.join(ours.secret_volumes)}) must "
        f"be the Secret of the session the pod's {LABEL_SESSION} label names, with the "
        "keys condukt-egress gives each; a pod may carry only the label of the session "
        "whose policy it runs",
        message_expression(
            "session-pods: volume ",
            Cel(
                "size(variables.ourVolumesBad) > 0 ? variables.ourVolumesBad[0] : "
                + lit(manifests.CONFIG_VOLUME)
            ),
            " must be a Secret ",
            Cel("variables.secretPrefix"),
            "<content hash>",
            f" of the session labelled {LABEL_SESSION}=",
            Cel("variables.label"),
            " (with the keys condukt-egress gives it); a pod may carry only the label of "
            "the session whose policy it runs: label it with the session it was injected "
            "for, or inject it for this one",
        ),
    )


def session_pods_policy(args: SandboxGuardArgs) -> JSON:
    """The ``session-pods`` policy: session pods as injected, and their label unchanged."""
    ours = read_ours(args)
    context = podrules.RuleContext(
        args.template(TEMPLATE_IDS[0], native_sidecar=True), tuple(args.sidecar_images)
    )
    validations = [
        validation(f"request.operation != 'UPDATE' || {_LABEL_UNCHANGED}", _LABEL_MESSAGE),
        _layout_validation(ours),
        *_root_init_validations(ours, args),
        *_sidecar_validations(ours, args),
        _volumes_validation(ours),
        *(
            _rule_validation(rule, rule.cel(context))
            for rule in podrules.POD_RULES
            if rule.applies(context.args)
        ),
    ]
    return admission_policy(
        "session-pods",
        [resource_rule("pods", ["CREATE", "UPDATE"])],
        [
            {
                "name": "session-pod",
                "expression": f"({has_label('object', LABEL_SESSION)}) || (request.operation == "
                f"'UPDATE' && {has_label('oldObject', LABEL_SESSION)})",
            }
        ],
        _session_pod_variables(ours),
        validations,
    )


def session_pod_status_policy() -> JSON:
    """``pods/status`` may change labels (the pod strategy resets only the spec there).

    Every kubelet status write passes through this policy, so its one
    expression stays trivial: the session label is as it was.
    """
    return admission_policy(
        "session-pods-status",
        [resource_rule("pods/status", ["UPDATE"])],
        [
            {
                "name": "session-label-involved",
                "expression": f"({has_label('object', LABEL_SESSION)}) || "
                f"({has_label('oldObject', LABEL_SESSION)})",
            }
        ],
        label_variables(),
        [
            validation(
                _LABEL_UNCHANGED,
                "session-pods-status" + _LABEL_MESSAGE.removeprefix("session-pods"),
            )
        ],
    )
