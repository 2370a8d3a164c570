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

Example:
    >>> [r.id for r in POD_RULES if r.scope == "metadata"]
    ['metadata.apparmor-annotation', 'metadata.secondary-network']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from condukt_egress import contract
from condukt_egress._cel import has_path, is_, lit
from condukt_egress.dns import DNS_UID
from condukt_egress.errors import ConfigError
from condukt_egress.naming import (
    CONFIG_VOLUME,
    MANAGED_PREFIX,
    OUR_CONTAINERS,
    OUR_VOLUMES,
    SIDECAR_CONTAINER,
)

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
    "image_repository",
    "refuse_container",
    "refuse_metadata",
    "refuse_pod",
]

JSON = dict[str, Any]
Scope = Literal["pod", "container", "volume", "metadata"]
"""What a rule looks at: the pod spec, one user container, one user volume, the metadata."""

APPARMOR_ANNOTATION_PREFIX: Final = "container.apparmor.security.beta.kubernetes.io/"
"""The pre-1.30 way to choose a container's AppArmor profile (still honoured)."""

SECONDARY_NETWORK_ANNOTATIONS: Final = (
    "k8s.v1.cni.cncf.io/networks",
    "v1.multus-cni.io/default-network",
)
"""Multus annotations that attach (or replace) pod network interfaces."""

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

_UNCONFINED_SELINUX: Final = ("spc_t", "unconfined_t")
_PROBES: Final = ("startupProbe", "livenessProbe", "readinessProbe")
_HOOKS: Final = ("postStart", "preStop")
_HOST_NAMESPACES: Final = ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace")


@dataclass(frozen=True)
class RuleContext:
    """What the rules compare against: the session, and the sidecar images in use.

    Attributes:
        args: The session (its uid, gid, ports and unsafe opt-ins).
        sidecar_images: Images only our containers may run; the session's
            own and the published one are always among them.
    """

    args: SandboxEgressArgs
    sidecar_images: tuple[str, ...] = ()

    @property
    def sidecar_repositories(self) -> tuple[str, ...]:
        """The repositories of the sidecar images, tag and digest stripped, sorted."""
        images = (*self.sidecar_images, self.args.sidecar_image, contract.DEFAULT_IMAGE)
        return tuple(sorted({image_repository(i) for i in images}))


@dataclass(frozen=True)
class Problem:
    """Where a spec breaks a rule (relative to the rule's scope) and what it holds there."""

    path: str
    what: str


Check = Callable[[Mapping[str, Any], Mapping[str, Any], RuleContext], Problem | None]
"""``check(target, pod_spec, ctx)``: the first problem of ``target`` (the scope's object)."""
Mutation = Callable[[JSON, RuleContext], None]
"""Changes a pod (``{"metadata", "spec"}``) so that it breaks a rule: a counterexample."""


@dataclass(frozen=True)
class PodRule:
    """One condition every session pod must meet, in Python and in CEL.

    Attributes:
        id: Stable id, ``<scope>.<name>``; guard messages carry it.
        scope: The part of the pod the rule looks at.
        path: The field, relative to the scope (``securityContext.privileged``).
        rule: The condition, as the security guarantees state it.
        why: What breaking it would let a workspace do.
        fix: How to change a spec that breaks it.
        check: The refusal ``inject`` applies to the user's spec (``None``
            when nothing is wrong, or when the injection repairs it).
        cel: The condition over the injected pod (``c`` a user container,
            ``v`` a user volume, ``object`` the pod): true when it holds.
        breaks: Counterexamples that both ``inject`` and the guard refuse.
        repaired: Counterexamples ``inject`` repairs and the guard refuses.
        applies: Whether the rule holds for a session (off under an unsafe opt-in).
    """

    id: str
    scope: Scope
    path: str
    rule: str
    why: str
    fix: str
    check: Check
    cel: Callable[[RuleContext], str]
    breaks: tuple[Mutation, ...] = ()
    repaired: tuple[Mutation, ...] = ()
    applies: Callable[[SandboxEgressArgs], bool] = field(default=lambda _args: True)

    def error(self, where: str, problem: Problem) -> ConfigError:
        """The refusal of ``inject``: the field, what it holds, why, and the fix."""
        path = f"{where}.{problem.path}" if where else problem.path
        return ConfigError(path, f"{problem.what}; {self.why}: {self.fix}")

    @property
    def message(self) -> str:
        """The guard's message for this rule (without the policy's name)."""
        return f"{self.rule} [{self.id}]; {self.why}: {self.fix}"


# --- helpers ---------------------------------------------------------------------


def image_repository(image: str) -> str:
    """``image`` without its digest and tag: ``ghcr.io/a/b:1@sha256:..`` is ``ghcr.io/a/b``."""
    name = image.partition("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _security(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("securityContext") or {}


def _get(obj: Mapping[str, Any], path: str) -> Any:
    for step in path.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(step)  # type: ignore[assignment]
    return obj


def _when(condition: bool, path: str, what: str) -> Problem | None:
    return Problem(path, what) if condition else None


def _never(_target: Mapping[str, Any], _spec: Mapping[str, Any], _ctx: RuleContext) -> None:
    """The check of a rule the injection repairs instead of refusing."""
    return


def _not(test: str) -> str:
    return f"!{test}"


def _setter(path: str, value: object) -> Callable[[JSON], None]:
    """Set ``path`` (dotted) in a dict, creating the steps."""

    def set_(obj: JSON) -> None:
        *steps, last = path.split(".")
        for step in steps:
            obj = obj.setdefault(step, {})
        obj[last] = value

    return set_


def _remover(path: str) -> Callable[[JSON], None]:
    def remove(obj: JSON) -> None:
        *steps, last = path.split(".")
        for step in steps:
            obj = obj.get(step) or {}
        obj.pop(last, None)

    return remove


def workspace(pod: JSON) -> JSON:
    """The first user container of a pod: where container counterexamples apply."""
    return next(c for c in pod["spec"]["containers"] if c.get("name") not in OUR_CONTAINERS)


def _on_container(change: Callable[[JSON], None]) -> Mutation:
    return lambda pod, _ctx: change(workspace(pod))


def _on_spec(change: Callable[[JSON], None]) -> Mutation:
    return lambda pod, _ctx: change(pod["spec"])


def _on_metadata(change: Callable[[JSON], None]) -> Mutation:
    return lambda pod, _ctx: change(pod.setdefault("metadata", {}))


def _add_volume(volume: JSON) -> Mutation:
    return lambda pod, _ctx: pod["spec"].setdefault("volumes", []).append(volume)


def _not_root(args: SandboxEgressArgs) -> bool:
    return not args.allow_root_workspace


def _no_secondary_networks(args: SandboxEgressArgs) -> bool:
    return not args.unsafe_secondary_networks


_POD_CONTEXT: Final = "object.spec.securityContext"
_EFFECTIVE_UID: Final = (
    f"(({has_path('c', 'securityContext.runAsUser')}) ? c.securityContext.runAsUser : "
    f"(({has_path('object', 'spec.securityContext.runAsUser')}) ? "
    f"{_POD_CONTEXT}.runAsUser : -1))"
)
"""CEL: the uid container ``c`` runs as, from its own or the pod's context; -1 if neither
sets one (then the image's ``USER`` decides, which the API server cannot see)."""

_ROOT_FIX: Final = (
    "run the workspace as a non-root uid, or accept that risk with allow_root_workspace "
    "(allowRootWorkspace)"
)
_ROOT_WHY: Final = (
    "a root workspace may connect to the sidecar's control port, which only the port-forward "
    "path (root) may reach"
)
_SECONDARY_FIX: Final = "accept that risk with unsafe_secondary_networks (unsafeSecondaryNetworks)"
_SECRET_WHY: Final = (
    f"that Secret holds the CA key; only the volumes condukt-egress injects may reference "
    f"Secrets named {MANAGED_PREFIX}*"
)


def _is_managed(name: object) -> bool:
    return isinstance(name, str) and name.startswith(MANAGED_PREFIX)


def _secret_what(verb: str, secret: str, ctx: RuleContext) -> str:
    own = ctx.args.names.owns_secret(secret)
    whose = "the session Secret" if own else "another session's condukt-egress Secret"
    return f"{verb} {whose} {secret!r}"


def _cel_managed(root: str, path: str) -> str:
    return f"({has_path(root, path)} && {root}.{path}.startsWith({lit(MANAGED_PREFIX)}))"


# --- container rules -------------------------------------------------------------


def _check_capabilities(c: Mapping[str, Any], _s: Mapping[str, Any], ctx: RuleContext) -> Any:
    for cap in (_security(c).get("capabilities") or {}).get("add") or ():
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
        if _is_managed(ref):
            return Problem(
                f"env[{index}] ({env.get('name')!r}).valueFrom.secretKeyRef",
                _secret_what("reads", str(ref), ctx),
            )
    for index, source in enumerate(c.get("envFrom") or ()):
        ref = (source.get("secretRef") or {}).get("name")
        if _is_managed(ref):
            return Problem(f"envFrom[{index}].secretRef", _secret_what("imports", str(ref), ctx))
    return None


def _check_root(c: Mapping[str, Any], _s: Mapping[str, Any], _ctx: RuleContext) -> Any:
    context = _security(c)
    if context.get("runAsUser") == 0:
        return Problem("securityContext.runAsUser", "is 0 (root)")
    return _when(context.get("runAsNonRoot") is False, "securityContext.runAsNonRoot", "is false")


def _cel_root(_ctx: RuleContext) -> str:
    return f"{_EFFECTIVE_UID} != 0 && !{is_('c', 'securityContext.runAsNonRoot', False)}"


def _check_image(c: Mapping[str, Any], _s: Mapping[str, Any], ctx: RuleContext) -> Any:
    image = c.get("image")
    is_sidecar = isinstance(image, str) and image_repository(image) in ctx.sidecar_repositories
    return _when(is_sidecar, "image", f"is the sidecar image {image!r}")


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


def _set_sidecar_uid(pod: JSON, ctx: RuleContext) -> None:
    workspace(pod).setdefault("securityContext", {})["runAsUser"] = ctx.args.sidecar_uid


def _set_resolver_uid(pod: JSON, _ctx: RuleContext) -> None:
    workspace(pod).setdefault("securityContext", {})["runAsUser"] = DNS_UID


def _set_sidecar_gid(pod: JSON, ctx: RuleContext) -> None:
    workspace(pod).setdefault("securityContext", {})["runAsGroup"] = ctx.args.sidecar_gid


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


_ROOTS: Final[Mapping[str, str]] = {"container": "c", "pod": "object.spec"}


def _field_rule(  # noqa: PLR0917 - read as a row of the table, like PodRule
    id_: str, scope: Scope, path: str, bad: object, rule: str, why: str, fix: str, **more: Any
) -> PodRule:
    """A rule that one field must not hold ``bad`` (``True``: be true; a tuple: any of them)."""
    bad_values = bad if isinstance(bad, tuple) else (bad,)

    def check(target: Mapping[str, Any], _spec: Mapping[str, Any], _ctx: RuleContext) -> Any:
        value = _get(target, path)
        hit = bool(value) if bad is True else value in bad_values
        return _when(
            hit and value is not None, path, f"is {value!r}" if bad is not True else "is true"
        )

    root = _ROOTS[scope]
    test = f"{root}.{path}" if bad is True else f"{root}.{path} in {lit(list(bad_values))}"
    target = _on_container if scope == "container" else _on_spec
    return PodRule(
        id_,
        scope,
        path,
        rule,
        why,
        fix,
        check,
        more.pop("cel", lambda _x: f"!({has_path(root, path)} && {test})"),
        breaks=more.pop("breaks", (target(_setter(path, bad_values[0])),)),
        **more,
    )


_SC: Final = "securityContext"
_APPARMOR_WHY: Final = (
    "a workspace without its AppArmor profile has fewer walls between it and the redirect"
)
_PROFILE_FIX: Final = "use RuntimeDefault (or a Localhost profile) or leave it unset"
_SELINUX_WHY: Final = "spc_t is the 'super privileged container' type"
_SELINUX_FIX: Final = "remove it and let the runtime pick container_t"
_SECCOMP_WHY: Final = "without seccomp a workspace meets the kernel's whole system call surface"


def _confinement_rules(scope: Scope, who: str) -> list[PodRule]:
    """Privilege and confinement fields that exist on both a container and the pod."""
    return [
        _field_rule(
            f"{scope}.host-process",
            scope,
            f"{_SC}.windowsOptions.hostProcess",
            True,
            f"{who} is not a Windows host process",
            "a host process runs in the node's network",
            "remove it",
        ),
        _field_rule(
            f"{scope}.apparmor",
            scope,
            f"{_SC}.appArmorProfile.type",
            "Unconfined",
            f"{who} is not AppArmor Unconfined",
            _APPARMOR_WHY,
            _PROFILE_FIX,
        ),
        _field_rule(
            f"{scope}.selinux",
            scope,
            f"{_SC}.seLinuxOptions.type",
            _UNCONFINED_SELINUX,
            f"{who} is not in an unconfined SELinux domain (spc_t, unconfined_t)",
            _SELINUX_WHY,
            _SELINUX_FIX,
        ),
    ]


_CONTAINER_RULES: Final[tuple[PodRule, ...]] = (
    _field_rule(
        "container.privileged",
        "container",
        f"{_SC}.privileged",
        True,
        "no user container is privileged",
        "a privileged workspace can rewrite the redirect rules",
        "remove it",
    ),
    _field_rule(
        "container.privilege-escalation",
        "container",
        f"{_SC}.allowPrivilegeEscalation",
        True,
        "every user container sets allowPrivilegeEscalation: false",
        "setuid binaries could become the sidecar uid",
        "set it to false or remove it",
        cel=lambda _x: f"{is_('c', f'{_SC}.allowPrivilegeEscalation', False)}",
        repaired=(_on_container(_remover(f"{_SC}.allowPrivilegeEscalation")),),
    ),
    PodRule(
        "container.capabilities",
        "container",
        f"{_SC}.capabilities",
        "every user container drops ALL capabilities and adds none",
        "a capability lets the workspace defeat the redirect or become the sidecar",
        "remove it, or, accepting that risk, list it in unsafe_allowed_capabilities",
        _check_capabilities,
        _cel_capabilities,
        breaks=(_on_container(_setter(f"{_SC}.capabilities.add", ["NET_ADMIN"])),),
        repaired=(_on_container(_remover(f"{_SC}.capabilities")),),
    ),
    PodRule(
        "container.sidecar-uid",
        "container",
        f"{_SC}.runAsUser",
        "no user container runs as the sidecar uid",
        "the redirect exempts that uid's traffic, which skips the proxy",
        "run the workspace as another uid",
        lambda c, _s, x: _when(
            _security(c).get("runAsUser") == x.args.sidecar_uid,
            f"{_SC}.runAsUser",
            f"is the sidecar uid {x.args.sidecar_uid}",
        ),
        lambda x: f"{_EFFECTIVE_UID} != {x.args.sidecar_uid}",
        breaks=(_set_sidecar_uid,),
    ),
    PodRule(
        "container.resolver-uid",
        "container",
        f"{_SC}.runAsUser",
        f"no user container runs as the resolver uid {DNS_UID}",
        "the DNS redirect exempts that uid's queries, which skip the filtering resolver",
        "run the workspace as another uid",
        lambda c, _s, _x: _when(
            _security(c).get("runAsUser") == DNS_UID,
            f"{_SC}.runAsUser",
            f"is the resolver uid {DNS_UID}",
        ),
        lambda _x: f"{_EFFECTIVE_UID} != {DNS_UID}",
        breaks=(_set_resolver_uid,),
    ),
    PodRule(
        "container.sidecar-gid",
        "container",
        f"{_SC}.runAsGroup",
        "no user container runs as the sidecar gid",
        "that group is the sidecar's",
        "use another group",
        lambda c, _s, x: _when(
            _security(c).get("runAsGroup") == x.args.sidecar_gid,
            f"{_SC}.runAsGroup",
            f"is the sidecar gid {x.args.sidecar_gid}",
        ),
        lambda x: _not(is_("c", f"{_SC}.runAsGroup", x.args.sidecar_gid)),
        breaks=(_set_sidecar_gid,),
    ),
    PodRule(
        "container.root",
        "container",
        f"{_SC}.runAsUser",
        "no user container runs as root",
        _ROOT_WHY,
        _ROOT_FIX,
        _check_root,
        _cel_root,
        breaks=(
            _on_container(_setter(f"{_SC}.runAsUser", 0)),
            _on_container(_setter(f"{_SC}.runAsNonRoot", False)),
        ),
        applies=_not_root,
    ),
    PodRule(
        "container.uid-set",
        "container",
        f"{_SC}.runAsUser",
        "every user container names its uid (container or pod securityContext.runAsUser)",
        "otherwise the image's USER decides, and it may be root or the sidecar uid",
        "set runAsUser (the injection sets 65532 when the spec names none)",
        _never,
        lambda _x: f"{_EFFECTIVE_UID} != -1",
        repaired=(_remove_uid,),
        applies=_not_root,
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
    _field_rule(
        "container.seccomp",
        "container",
        f"{_SC}.seccompProfile.type",
        "Unconfined",
        "every user container runs under a seccomp profile (its own or the pod's)",
        _SECCOMP_WHY + " (Unconfined, or unset on a kubelet without SeccompDefault)",
        _PROFILE_FIX,
        cel=lambda _x: (
            f"!{is_('c', f'{_SC}.seccompProfile.type', 'Unconfined')} && "
            f"({has_path('c', f'{_SC}.seccompProfile')} || "
            f"{has_path('object', 'spec.securityContext.seccompProfile')})"
        ),
        repaired=(_remove_seccomp,),
    ),
    *_confinement_rules("container", "no user container"),
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
        breaks=(_on_container(_setter("ports", [{"containerPort": 80, "hostPort": 8001}])),),
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
        _SECRET_WHY,
        "remove it",
        _check_env,
        lambda _x: (
            "(!has(c.env) || !c.env.exists(e, "
            f"{_cel_managed('e', 'valueFrom.secretKeyRef.name')})) && (!has(c.envFrom) || "
            f"!c.envFrom.exists(f, {_cel_managed('f', 'secretRef.name')}))"
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
        lambda c, _s, _x: _when(
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


# --- pod rules -------------------------------------------------------------------


def _check_gid(s: Mapping[str, Any], _p: Mapping[str, Any], ctx: RuleContext) -> Any:
    context, gid = _security(s), ctx.args.sidecar_gid
    for name in ("runAsGroup", "fsGroup"):
        if context.get(name) == gid:
            return Problem(f"securityContext.{name}", f"is the sidecar gid {gid}")
    return _when(
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
        f"{gid} in {_POD_CONTEXT}.supplementalGroups)"
    )


def _check_sysctls(s: Mapping[str, Any], _p: Mapping[str, Any], _x: RuleContext) -> Any:
    for index, sysctl in enumerate(_security(s).get("sysctls") or ()):
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
    return _field_rule(
        f"pod.{name}",
        "pod",
        name,
        True,
        f"the pod does not set {name}",
        "a session pod must not share the node's or its containers' namespaces, which "
        "would bypass or expose the egress sidecar",
        f"remove {name}",
    )


_POD_SC: Final = "spec.securityContext"
_POD_RULES: Final[tuple[PodRule, ...]] = (
    *(_namespace_rule(name) for name in _HOST_NAMESPACES),
    PodRule(
        "pod.ephemeral-containers",
        "pod",
        "ephemeralContainers",
        "the pod declares no ephemeral containers",
        "ephemeral containers are added by `kubectl debug`, never declared, and "
        "condukt-egress cannot harden them",
        "remove ephemeralContainers",
        lambda s, _p, _x: _when(
            bool(s.get("ephemeralContainers")), "ephemeralContainers", "is set"
        ),
        lambda _x: (
            "!has(object.spec.ephemeralContainers) || size(object.spec.ephemeralContainers) == 0"
        ),
        breaks=(_on_spec(_setter("ephemeralContainers", [{"name": "d", "image": "busybox"}])),),
    ),
    PodRule(
        "pod.sidecar-uid",
        "pod",
        f"{_SC}.runAsUser",
        "the pod's default uid is not the sidecar uid",
        "the redirect exempts that uid's traffic, which skips the proxy",
        "run the workspace as another uid",
        lambda s, _p, x: _when(
            _security(s).get("runAsUser") == x.args.sidecar_uid,
            f"{_SC}.runAsUser",
            f"is the sidecar uid {x.args.sidecar_uid}",
        ),
        lambda x: _not(is_("object", f"{_POD_SC}.runAsUser", x.args.sidecar_uid)),
        breaks=(lambda pod, x: _setter(f"{_SC}.runAsUser", x.args.sidecar_uid)(pod["spec"]),),
    ),
    PodRule(
        "pod.resolver-uid",
        "pod",
        f"{_SC}.runAsUser",
        f"the pod's default uid is not the resolver uid {DNS_UID}",
        "the DNS redirect exempts that uid's queries, which skip the filtering resolver",
        "run the workspace as another uid",
        lambda s, _p, _x: _when(
            _security(s).get("runAsUser") == DNS_UID,
            f"{_SC}.runAsUser",
            f"is the resolver uid {DNS_UID}",
        ),
        lambda _x: _not(is_("object", f"{_POD_SC}.runAsUser", DNS_UID)),
        breaks=(lambda pod, _x: _setter(f"{_SC}.runAsUser", DNS_UID)(pod["spec"]),),
    ),
    PodRule(
        "pod.sidecar-gid",
        "pod",
        f"{_SC}.runAsGroup, fsGroup, supplementalGroups",
        "the pod's groups do not include the sidecar gid",
        "that group is the sidecar's",
        "use another group for the workspace, or remove it",
        _check_gid,
        _cel_gid,
        breaks=(lambda pod, x: _setter(f"{_SC}.fsGroup", x.args.sidecar_gid)(pod["spec"]),),
    ),
    PodRule(
        "pod.root",
        "pod",
        f"{_SC}.runAsUser",
        "the pod's default uid is not root",
        _ROOT_WHY,
        _ROOT_FIX,
        _check_root,
        lambda _x: (
            f"!{is_('object', f'{_POD_SC}.runAsUser', 0)} && "
            f"!{is_('object', f'{_POD_SC}.runAsNonRoot', False)}"
        ),
        breaks=(
            _on_spec(_setter(f"{_SC}.runAsUser", 0)),
            _on_spec(_setter(f"{_SC}.runAsNonRoot", False)),
        ),
        applies=_not_root,
    ),
    _field_rule(
        "pod.seccomp",
        "pod",
        f"{_SC}.seccompProfile.type",
        "Unconfined",
        "the pod's seccomp profile is not Unconfined",
        _SECCOMP_WHY,
        _PROFILE_FIX,
    ),
    *_confinement_rules("pod", "the pod"),
    PodRule(
        "pod.sysctls",
        "pod",
        f"{_SC}.sysctls",
        "the pod sets only Kubernetes' safe sysctls",
        "unsafe ones can change the pod's network stack under the redirect (and need a "
        "kubelet allowlist)",
        "remove it",
        _check_sysctls,
        lambda _x: (
            f"!({has_path('object', f'{_POD_SC}.sysctls')}) || "
            f"object.{_POD_SC}.sysctls.all(s, s.name in {lit(SAFE_SYSCTLS)})"
        ),
        breaks=(
            _on_spec(_setter(f"{_SC}.sysctls", [{"name": "net.ipv4.ip_forward", "value": "1"}])),
        ),
    ),
    _field_rule(
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
        f"remove it, or {_SECONDARY_FIX}",
        lambda s, _p, _x: _when(bool(s.get("resourceClaims")), "resourceClaims", "is set"),
        lambda _x: "!has(object.spec.resourceClaims) || size(object.spec.resourceClaims) == 0",
        breaks=(_on_spec(_setter("resourceClaims", [{"name": "n", "resourceClaimName": "x"}])),),
        applies=_no_secondary_networks,
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


# --- volume and metadata rules -------------------------------------------------------


def _check_secret_volume(v: Mapping[str, Any], _s: Mapping[str, Any], ctx: RuleContext) -> Any:
    name = (v.get("secret") or {}).get("secretName")
    if _is_managed(name):
        return Problem("secret", _secret_what("mounts", str(name), ctx))
    for index, source in enumerate((v.get("projected") or {}).get("sources") or ()):
        name = (source.get("secret") or {}).get("name")
        if _is_managed(name):
            return Problem(f"projected.sources[{index}]", _secret_what("mounts", str(name), ctx))
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
            lambda v, _s, _x: _when(v.get("hostPath") is not None, "hostPath", "is set"),
            lambda _x: "!has(v.hostPath)",
            breaks=(_add_volume({"name": "node", "hostPath": {"path": "/run/containerd"}}),),
        ),
        PodRule(
            "volume.session-secret",
            "volume",
            "secret, projected",
            f"no user volume references a Secret named {MANAGED_PREFIX}*",
            _SECRET_WHY,
            "remove it",
            _check_secret_volume,
            lambda _x: (
                f"!{_cel_managed('v', 'secret.secretName')} && !(has(v.projected) && "
                "has(v.projected.sources) && v.projected.sources.exists(s, "
                f"{_cel_managed('s', 'secret.name')}))"
            ),
            breaks=(
                lambda pod, x: _add_volume(
                    {"name": "k", "secret": {"secretName": x.args.names.secret_name({})}}
                )(pod, x),
                _add_volume(
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
            "a workspace without its AppArmor profile has fewer walls between it and the redirect",
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
                _on_metadata(
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
            f"remove the annotation, or {_SECONDARY_FIX}",
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
                _on_metadata(
                    lambda m: m.setdefault("annotations", {}).update(
                        {SECONDARY_NETWORK_ANNOTATIONS[0]: "macvlan-conf"}
                    )
                ),
            ),
            applies=_no_secondary_networks,
        ),
    ]


POD_RULES: Final[tuple[PodRule, ...]] = (
    *_POD_RULES,
    *_volume_rules(),
    *_CONTAINER_RULES,
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
