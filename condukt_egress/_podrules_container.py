"""The pod rules of each user container: privileges, uids, image, ports and what it reads.

A part of :mod:`condukt_egress.podrules` (which holds the whole table); each
rule's checks, CEL and counterexamples stand next to its row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from condukt_egress._cel import has_path, is_, lit
from condukt_egress._podrules_base import (
    EFFECTIVE_UID,
    JSON,
    PROFILE_FIX,
    SC,
    SECCOMP_WHY,
    SECRET_WHY,
    PodRule,
    Problem,
    RuleContext,
    cel_managed,
    confinement_rules,
    field_rule,
    id_rule,
    image_repository,
    is_managed,
    never,
    not_root,
    on_container,
    remover,
    root_rule,
    secret_what,
    security,
    setter,
    when,
    workspace,
)
from condukt_egress.dns import DNS_UID
from condukt_egress.naming import CONFIG_VOLUME, MANAGED_PREFIX

__all__ = ["BYPASS_CAPABILITIES", "CONTAINER_RULES"]

BYPASS_CAPABILITIES: Final = frozenset(
    {
        "ALL",
        "BPF",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "NET_ADMIN",
        "NET_RAW",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_ADMIN",
        "SYS_MODULE",
        "SYS_PTRACE",
        "SYS_RAWIO",
    }
)
"""Capabilities named in refusals as able to defeat the redirect or read the
sidecar. Every added capability is refused (no workspace container may add
any); this set only makes the message say why."""

_PROBES: Final = ("startupProbe", "livenessProbe", "readinessProbe")
_HOOKS: Final = ("postStart", "preStop")


def _check_capabilities(c: Mapping[str, Any], _s: Mapping[str, Any], ctx: RuleContext) -> Any:
    for cap in (security(c).get("capabilities") or {}).get("add") or ():
        normal = str(cap).upper().removeprefix("CAP_")
        if normal in ctx.args.unsafe_allowed_capabilities:
            continue
        why = (
            "it lets the workspace defeat the egress redirect or read the sidecar"
            if normal in BYPASS_CAPABILITIES
            else "workspace containers may add no capability at all"
        )
        return Problem("securityContext.capabilities.add", f"adds {cap!r} ({why})")
    return None


def _cel_capabilities(ctx: RuleContext) -> str:
    allowed = sorted({s for c in ctx.args.unsafe_allowed_capabilities for s in (c, f"CAP_{c}")})
    caps = "c.securityContext.capabilities"
    return (
        f"({has_path('c', 'securityContext.capabilities.drop')} && 'ALL' in {caps}.drop) && "
        f"(!has({caps}.add) || {caps}.add.all(a, a in {lit(allowed)}))"
    )


def _network_checks(c: Mapping[str, Any]) -> Iterable[tuple[str, object]]:
    """Yield ``(field path, port)`` of every probe or hook kubelet opens a connection for."""
    for probe in _PROBES:
        for kind in ("tcpSocket", "httpGet", "grpc"):
            handler = (c.get(probe) or {}).get(kind)
            if isinstance(handler, Mapping):
                yield f"{probe}.{kind}.port", handler.get("port")
    for hook in _HOOKS:
        for kind in ("tcpSocket", "httpGet"):
            handler = ((c.get("lifecycle") or {}).get(hook) or {}).get(kind)
            if isinstance(handler, Mapping):
                yield f"lifecycle.{hook}.{kind}.port", handler.get("port")


def _sidecar_ports(ctx: RuleContext) -> list[object]:
    return [ctx.args.proxy_port, ctx.args.control_port, "proxy", "control"]


def _check_ports(c: Mapping[str, Any], _s: Mapping[str, Any], ctx: RuleContext) -> Any:
    for path, port in _network_checks(c):
        if port in _sidecar_ports(ctx):
            return Problem(path, f"connects to port {port!r}, the sidecar's proxy or control port")
    return None


def _cel_ports(ctx: RuleContext) -> str:
    # An IntOrString port compares as text: string() takes both ints and strings.
    ports = lit([str(p) for p in _sidecar_ports(ctx)])
    paths = [f"{p}.{k}" for p in _PROBES for k in ("tcpSocket", "httpGet", "grpc")]
    paths += [f"lifecycle.{h}.{k}" for h in _HOOKS for k in ("tcpSocket", "httpGet")]
    return " && ".join(
        f"!({has_path('c', f'{p}.port')} && string(c.{p}.port) in {ports})" for p in paths
    )


def _check_env(c: Mapping[str, Any], _s: Mapping[str, Any], ctx: RuleContext) -> Any:
    for index, env in enumerate(c.get("env") or ()):
        ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
        if is_managed(ref):
            return Problem(
                f"env[{index}] ({env.get('name')!r}).valueFrom.secretKeyRef",
                secret_what("reads", str(ref), ctx),
            )
    for index, source in enumerate(c.get("envFrom") or ()):
        ref = (source.get("secretRef") or {}).get("name")
        if is_managed(ref):
            return Problem(f"envFrom[{index}].secretRef", secret_what("imports", str(ref), ctx))
    return None


def _cel_root(_ctx: RuleContext) -> str:
    return f"{EFFECTIVE_UID} != 0 && !{is_('c', 'securityContext.runAsNonRoot', False)}"


def _check_image(c: Mapping[str, Any], _s: Mapping[str, Any], ctx: RuleContext) -> Any:
    image = c.get("image")
    is_sidecar = isinstance(image, str) and image_repository(image) in ctx.sidecar_repositories
    return when(is_sidecar, "image", f"is the sidecar image {image!r}")


def _cel_image(ctx: RuleContext) -> str:
    return (
        "!has(c.image) || !("
        + " || ".join(
            f"c.image == {lit(r)} || c.image.startsWith({lit(r + ':')}) "
            f"|| c.image.startsWith({lit(r + '@')})"
            for r in ctx.sidecar_repositories
        )
        + ")"
    )


def _set_sidecar_image(pod: JSON, ctx: RuleContext) -> None:
    workspace(pod)["image"] = ctx.args.sidecar_image


def _probe_sidecar(pod: JSON, ctx: RuleContext) -> None:
    workspace(pod)["readinessProbe"] = {"httpGet": {"port": ctx.args.control_port}}


def _hook_sidecar(pod: JSON, _ctx: RuleContext) -> None:
    workspace(pod)["lifecycle"] = {"preStop": {"tcpSocket": {"port": "proxy"}}}


def _env_secret(pod: JSON, ctx: RuleContext) -> None:
    workspace(pod).setdefault("env", []).append(
        {
            "name": "K",
            "valueFrom": {"secretKeyRef": {"name": ctx.args.names.secret_name({}), "key": "k"}},
        }
    )


def _env_from_secret(pod: JSON, _ctx: RuleContext) -> None:
    workspace(pod).setdefault("envFrom", []).append(
        {"secretRef": {"name": f"{MANAGED_PREFIX}other"}}
    )


def _mount_config(pod: JSON, _ctx: RuleContext) -> None:
    workspace(pod).setdefault("volumeMounts", []).append(
        {"name": CONFIG_VOLUME, "mountPath": "/stolen"}
    )


def _remove_uid(pod: JSON, _ctx: RuleContext) -> None:
    workspace(pod).get("securityContext", {}).pop("runAsUser", None)
    (pod["spec"].get("securityContext") or {}).pop("runAsUser", None)


def _remove_seccomp(pod: JSON, _ctx: RuleContext) -> None:
    workspace(pod).get("securityContext", {}).pop("seccompProfile", None)
    (pod["spec"].get("securityContext") or {}).pop("seccompProfile", None)


CONTAINER_RULES: Final[tuple[PodRule, ...]] = (
    field_rule(
        "container.privileged",
        "container",
        f"{SC}.privileged",
        True,
        "no user container is privileged",
        "a privileged workspace can rewrite the redirect rules",
        "remove it",
    ),
    field_rule(
        "container.privilege-escalation",
        "container",
        f"{SC}.allowPrivilegeEscalation",
        True,
        "every user container sets allowPrivilegeEscalation: false",
        "setuid binaries could become the sidecar uid",
        "set it to false or remove it",
        cel=lambda _x: f"{is_('c', f'{SC}.allowPrivilegeEscalation', False)}",
        repaired=(on_container(remover(f"{SC}.allowPrivilegeEscalation")),),
    ),
    PodRule(
        "container.capabilities",
        "container",
        f"{SC}.capabilities",
        "every user container drops ALL capabilities and adds none",
        "a capability lets the workspace defeat the redirect or become the sidecar",
        "remove it, or, accepting that risk, list it in unsafe_allowed_capabilities",
        _check_capabilities,
        _cel_capabilities,
        breaks=(on_container(setter(f"{SC}.capabilities.add", ["NET_ADMIN"])),),
        repaired=(on_container(remover(f"{SC}.capabilities")),),
    ),
    id_rule(
        "container",
        "sidecar uid",
        "runAsUser",
        lambda x: x.args.sidecar_uid,
        "no user container runs as the sidecar uid",
        "the redirect exempts that uid's traffic, which skips the proxy",
        "run the workspace as another uid",
    ),
    id_rule(
        "container",
        "resolver uid",
        "runAsUser",
        lambda _x: DNS_UID,
        f"no user container runs as the resolver uid {DNS_UID}",
        "the DNS redirect exempts that uid's queries, which skip the filtering resolver",
        "run the workspace as another uid",
    ),
    id_rule(
        "container",
        "sidecar gid",
        "runAsGroup",
        lambda x: x.args.sidecar_gid,
        "no user container runs as the sidecar gid",
        "that group is the sidecar's",
        "use another group",
    ),
    root_rule("container", "no user container runs as root", _cel_root),
    PodRule(
        "container.uid-set",
        "container",
        f"{SC}.runAsUser",
        "every user container names its uid (container or pod securityContext.runAsUser)",
        "otherwise the image's USER decides, and it may be root or the sidecar uid",
        "set runAsUser (the injection sets 65532 when the spec names none)",
        never,
        lambda _x: f"{EFFECTIVE_UID} != -1",
        repaired=(_remove_uid,),
        applies=not_root,
    ),
    PodRule(
        "container.sidecar-image",
        "container",
        "image",
        "no user container runs the sidecar image",
        "its USER is the sidecar uid, whose traffic the redirect exempts",
        "run the workspace on another image",
        _check_image,
        _cel_image,
        breaks=(_set_sidecar_image,),
    ),
    field_rule(
        "container.seccomp",
        "container",
        f"{SC}.seccompProfile.type",
        "Unconfined",
        "every user container runs under a seccomp profile (its own or the pod's)",
        SECCOMP_WHY + " (Unconfined, or unset on a kubelet without SeccompDefault)",
        PROFILE_FIX,
        cel=lambda _x: (
            f"!{is_('c', f'{SC}.seccompProfile.type', 'Unconfined')} && "
            f"({has_path('c', f'{SC}.seccompProfile')} || "
            f"{has_path('object', 'spec.securityContext.seccompProfile')})"
        ),
        repaired=(_remove_seccomp,),
    ),
    *confinement_rules("container", "no user container"),
    PodRule(
        "container.host-port",
        "container",
        "ports[].hostPort",
        "no user container has a hostPort",
        "a host port opens the pod on the node's network, past the NetworkPolicy's closed ingress",
        "remove hostPort (use a Service, or port-forward)",
        lambda c, _s, _x: next(
            (
                Problem(f"ports[{i}].hostPort", f"is {p.get('hostPort')!r}")
                for i, p in enumerate(c.get("ports") or ())
                if p.get("hostPort")
            ),
            None,
        ),
        lambda _x: "!has(c.ports) || c.ports.all(p, !has(p.hostPort) || p.hostPort == 0)",
        breaks=(on_container(setter("ports", [{"containerPort": 80, "hostPort": 8001}])),),
    ),
    PodRule(
        "container.sidecar-ports",
        "container",
        "probes and lifecycle hooks",
        "no probe or hook of a user container connects to the sidecar's ports",
        "the sidecar takes every connection there for workspace traffic (or its only control peer)",
        "probe a port of your own container or use an exec probe",
        _check_ports,
        _cel_ports,
        breaks=(_probe_sidecar, _hook_sidecar),
    ),
    PodRule(
        "container.secret-env",
        "container",
        "env, envFrom",
        "no user container reads a condukt-egress Secret into its environment",
        SECRET_WHY,
        "remove it",
        _check_env,
        lambda _x: (
            "(!has(c.env) || !c.env.exists(e, "
            f"{cel_managed('e', 'valueFrom.secretKeyRef.name')})) && (!has(c.envFrom) || "
            f"!c.envFrom.exists(f, {cel_managed('f', 'secretRef.name')}))"
        ),
        breaks=(_env_secret, _env_from_secret),
    ),
    PodRule(
        "container.key-mount",
        "container",
        "volumeMounts",
        f"no user container mounts {CONFIG_VOLUME}",
        "it holds the CA key, which only the sidecar may read",
        "remove the mount",
        lambda c, _s, _x: when(
            any(m.get("name") == CONFIG_VOLUME for m in c.get("volumeMounts") or ()),
            "volumeMounts",
            f"mounts {CONFIG_VOLUME!r}",
        ),
        lambda _x: (
            f"!has(c.volumeMounts) || !c.volumeMounts.exists(m, m.name == {lit(CONFIG_VOLUME)})"
        ),
        breaks=(_mount_config,),
    ),
)
"""The rules of every user container, in the order ``inject`` reports problems in."""
