"""The pod rules of the pod spec itself: namespaces, default ids, sysctls, claims, init layout.

:mod:`condukt_egress.podrules` puts these first in its table. A row's Python
check, CEL and counterexamples are declared beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from condukt_egress._cel import has_path, is_, lit
from condukt_egress._podrules_base import (
    JSON,
    POD_CONTEXT,
    POD_SC,
    PROFILE_FIX,
    SC,
    SECCOMP_WHY,
    SECONDARY_FIX,
    PodRule,
    Problem,
    RuleContext,
    confinement_rules,
    field_rule,
    id_rule,
    no_secondary_networks,
    on_spec,
    root_rule,
    security,
    setter,
    when,
)
from condukt_egress.dns import DNS_UID
from condukt_egress.naming import OUR_CONTAINERS, SIDECAR_CONTAINER

__all__ = ["POD_WIDE_RULES", "SAFE_SYSCTLS"]

SAFE_SYSCTLS: Final = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ping_group_range",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_syncookies",
    }
)
"""Kubernetes' safe sysctls (namespaced, no effect on other pods or the redirect).
Any other is refused: net.* sysctls act on the pod's network namespace, where
the redirect and the sidecar live (route_localnet, forwarding, rp_filter...)."""

_HOST_NAMESPACES: Final = ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace")


def _check_gid(s: Mapping[str, Any], _p: Mapping[str, Any], ctx: RuleContext) -> Any:
    context, gid = security(s), ctx.args.sidecar_gid
    for name in ("runAsGroup", "fsGroup"):
        if context.get(name) == gid:
            return Problem(f"securityContext.{name}", f"is the sidecar gid {gid}")
    return when(
        gid in (context.get("supplementalGroups") or ()),
        "securityContext.supplementalGroups",
        f"contains the sidecar gid {gid}",
    )


def _cel_gid(ctx: RuleContext) -> str:
    gid = ctx.args.sidecar_gid
    return (
        f"!{is_('object', 'spec.securityContext.runAsGroup', gid)} && "
        f"!{is_('object', 'spec.securityContext.fsGroup', gid)} && "
        f"!({has_path('object', 'spec.securityContext.supplementalGroups')} && "
        f"{gid} in {POD_CONTEXT}.supplementalGroups)"
    )


def _check_sysctls(s: Mapping[str, Any], _p: Mapping[str, Any], _x: RuleContext) -> Any:
    for index, sysctl in enumerate(security(s).get("sysctls") or ()):
        name = sysctl.get("name")
        if name not in SAFE_SYSCTLS:
            return Problem(
                f"securityContext.sysctls[{index}] ({name!r})",
                "is not one of Kubernetes' safe sysctls",
            )
    return None


def _check_native(s: Mapping[str, Any], _p: Mapping[str, Any], ctx: RuleContext) -> Any:
    if ctx.args.native_sidecar:
        return None
    for index, c in enumerate(s.get("initContainers") or ()):
        if c.get("restartPolicy") == "Always" and c.get("name") not in OUR_CONTAINERS:
            return Problem(
                f"initContainers[{index}].restartPolicy",
                f"is Always (container {c.get('name')!r}), with the sidecar a plain container",
            )
    return None


def _cel_native(_ctx: RuleContext) -> str:
    sidecar = lit(SIDECAR_CONTAINER)
    return (
        f"!object.spec.containers.exists(c, c.name == {sidecar}) || "
        "!has(object.spec.initContainers) || object.spec.initContainers.all(c, "
        f"!{is_('c', 'restartPolicy', 'Always')})"
    )


def _add_native_init(pod: JSON, _ctx: RuleContext) -> None:
    pod["spec"].setdefault("initContainers", []).append(
        {"name": "helper", "image": "busybox:1.37", "restartPolicy": "Always"}
    )


def _namespace_rule(name: str) -> PodRule:
    return field_rule(
        f"pod.{name}",
        "pod",
        name,
        True,
        f"the pod does not set {name}",
        "a session pod must not share the node's or its containers' namespaces, which "
        "would bypass or expose the egress sidecar",
        f"remove {name}",
    )


POD_WIDE_RULES: Final[tuple[PodRule, ...]] = (
    *(_namespace_rule(name) for name in _HOST_NAMESPACES),
    PodRule(
        "pod.ephemeral-containers",
        "pod",
        "ephemeralContainers",
        "the pod declares no ephemeral containers",
        "ephemeral containers are added by `kubectl debug`, never declared, and "
        "condukt-egress cannot harden them",
        "remove ephemeralContainers",
        lambda s, _p, _x: when(bool(s.get("ephemeralContainers")), "ephemeralContainers", "is set"),
        lambda _x: (
            "!has(object.spec.ephemeralContainers) || size(object.spec.ephemeralContainers) == 0"
        ),
        breaks=(on_spec(setter("ephemeralContainers", [{"name": "d", "image": "busybox"}])),),
    ),
    id_rule(
        "pod",
        "sidecar uid",
        "runAsUser",
        lambda x: x.args.sidecar_uid,
        "the pod's default uid is not the sidecar uid",
        "the redirect exempts that uid's traffic, which skips the proxy",
        "run the workspace as another uid",
    ),
    id_rule(
        "pod",
        "resolver uid",
        "runAsUser",
        lambda _x: DNS_UID,
        f"the pod's default uid is not the resolver uid {DNS_UID}",
        "the DNS redirect exempts that uid's queries, which skip the filtering resolver",
        "run the workspace as another uid",
    ),
    PodRule(
        "pod.sidecar-gid",
        "pod",
        f"{SC}.runAsGroup, fsGroup, supplementalGroups",
        "the pod's groups do not include the sidecar gid",
        "that group is the sidecar's",
        "use another group for the workspace, or remove it",
        _check_gid,
        _cel_gid,
        breaks=(lambda pod, x: setter(f"{SC}.fsGroup", x.args.sidecar_gid)(pod["spec"]),),
    ),
    root_rule(
        "pod",
        "the pod's default uid is not root",
        lambda _x: (
            f"!{is_('object', f'{POD_SC}.runAsUser', 0)} && "
            f"!{is_('object', f'{POD_SC}.runAsNonRoot', False)}"
        ),
    ),
    field_rule(
        "pod.seccomp",
        "pod",
        f"{SC}.seccompProfile.type",
        "Unconfined",
        "the pod's seccomp profile is not Unconfined",
        SECCOMP_WHY,
        PROFILE_FIX,
    ),
    *confinement_rules("pod", "the pod"),
    PodRule(
        "pod.sysctls",
        "pod",
        f"{SC}.sysctls",
        "the pod sets only Kubernetes' safe sysctls",
        "unsafe ones can change the pod's network stack under the redirect (and need a "
        "kubelet allowlist)",
        "remove it",
        _check_sysctls,
        lambda _x: (
            f"!({has_path('object', f'{POD_SC}.sysctls')}) || "
            f"object.{POD_SC}.sysctls.all(s, s.name in {lit(SAFE_SYSCTLS)})"
        ),
        breaks=(on_spec(setter(f"{SC}.sysctls", [{"name": "net.ipv4.ip_forward", "value": "1"}])),),
    ),
    field_rule(
        "pod.host-users",
        "pod",
        "hostUsers",
        False,
        "the pod does not run in a user namespace (hostUsers: false)",
        "in a user namespace the runtime's root is not the pod's uid 0, so the in-pod rule "
        "that keeps the control port for the port-forward path lets the container's own "
        "root through instead",
        "remove hostUsers; condukt-egress does not support user namespaces yet",
    ),
    PodRule(
        "pod.resource-claims",
        "pod",
        "resourceClaims",
        "the pod claims no dynamic resources (resourceClaims)",
        "a DRA claim can attach a network interface that NetworkPolicy does not govern and "
        "the redirect does not cover",
        f"remove it, or {SECONDARY_FIX}",
        lambda s, _p, _x: when(bool(s.get("resourceClaims")), "resourceClaims", "is set"),
        lambda _x: "!has(object.spec.resourceClaims) || size(object.spec.resourceClaims) == 0",
        breaks=(on_spec(setter("resourceClaims", [{"name": "n", "resourceClaimName": "x"}])),),
        applies=no_secondary_networks,
    ),
    PodRule(
        "pod.native-sidecars",
        "pod",
        "initContainers[].restartPolicy",
        "with the sidecar a plain container, no user init container is a native sidecar",
        "a native sidecar starts before every container, so it could bind the sidecar's "
        "ports first and feed the operator a forged audit stream",
        "make it a regular container, or use native_sidecar (nativeSidecar)",
        _check_native,
        _cel_native,
        breaks=(_add_native_init,),
    ),
)
"""The rules of the pod spec, in the order ``inject`` reports problems in."""
