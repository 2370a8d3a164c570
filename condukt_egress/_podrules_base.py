"""What a pod rule is, and the parts the rules of :mod:`condukt_egress.podrules` are built from.

- the types: :class:`PodRule` (one row of the table), :class:`RuleContext`
  (the session it is checked against), :class:`Problem` (where a spec breaks it);
- the helpers of its Python ``check``, and the vocabulary of its
  counterexamples (pod mutators: set a field of the workspace or of the pod spec);
- the rows several scopes share: :func:`field_rule` (a field must not hold a
  value), :func:`id_rule` (a uid or gid reserved for our containers) and
  :func:`confinement_rules` (fields both a container and the pod carry), with
  the words and CEL they have in common.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from condukt_egress import contract
from condukt_egress._cel import has_path, is_, lit
from condukt_egress.errors import ConfigError
from condukt_egress.naming import MANAGED_PREFIX, OUR_CONTAINERS

if TYPE_CHECKING:
    from condukt_egress.args import SandboxEgressArgs

__all__ = [
    "APPARMOR_WHY",
    "EFFECTIVE_UID",
    "JSON",
    "POD_CONTEXT",
    "POD_SC",
    "PROFILE_FIX",
    "SC",
    "SECCOMP_WHY",
    "SECONDARY_FIX",
    "SECRET_WHY",
    "Check",
    "Mutation",
    "PodRule",
    "Problem",
    "RuleContext",
    "Scope",
    "add_volume",
    "cel_managed",
    "confinement_rules",
    "field_rule",
    "id_rule",
    "image_repository",
    "is_managed",
    "negate",
    "never",
    "no_secondary_networks",
    "not_root",
    "on_container",
    "on_metadata",
    "on_spec",
    "remover",
    "root_rule",
    "secret_what",
    "security",
    "setter",
    "when",
    "workspace",
]

JSON = dict[str, Any]
Scope = Literal["pod", "container", "volume", "metadata"]
"""What a rule looks at: the pod spec, one user container, one user volume, the metadata."""


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


def image_repository(image: str) -> str:
    """``image`` without its digest and tag: ``ghcr.io/a/b:1@sha256:..`` is ``ghcr.io/a/b``."""
    name = image.partition("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


# --- checks ----------------------------------------------------------------------


def security(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``securityContext`` of a container or a pod spec (empty when unset)."""
    return obj.get("securityContext") or {}


def _get(obj: Mapping[str, Any], path: str) -> Any:
    for step in path.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(step)  # type: ignore[assignment]
    return obj


def when(condition: bool, path: str, what: str) -> Problem | None:
    """The problem ``path`` ``what`` if ``condition`` holds."""
    return Problem(path, what) if condition else None


def never(_target: Mapping[str, Any], _spec: Mapping[str, Any], _ctx: RuleContext) -> None:
    """The check of a rule the injection repairs instead of refusing."""
    return


def negate(test: str) -> str:
    """CEL: ``test`` does not hold."""
    return f"!{test}"


# --- counterexamples -------------------------------------------------------------


def setter(path: str, value: object) -> Callable[[JSON], None]:
    """Set ``path`` (dotted) in a dict, creating the steps."""

    def set_(obj: JSON) -> None:
        *steps, last = path.split(".")
        for step in steps:
            obj = obj.setdefault(step, {})
        obj[last] = value

    return set_


def remover(path: str) -> Callable[[JSON], None]:
    """Remove ``path`` (dotted) from a dict, if it is there."""

    def remove(obj: JSON) -> None:
        *steps, last = path.split(".")
        for step in steps:
            obj = obj.get(step) or {}
        obj.pop(last, None)

    return remove


def workspace(pod: JSON) -> JSON:
    """The first user container of a pod: where container counterexamples apply."""
    return next(c for c in pod["spec"]["containers"] if c.get("name") not in OUR_CONTAINERS)


def on_container(change: Callable[[JSON], None]) -> Mutation:
    """A counterexample that changes the workspace container."""
    return lambda pod, _ctx: change(workspace(pod))


def on_spec(change: Callable[[JSON], None]) -> Mutation:
    """A counterexample that changes the pod spec."""
    return lambda pod, _ctx: change(pod["spec"])


def on_metadata(change: Callable[[JSON], None]) -> Mutation:
    """A counterexample that changes the pod metadata."""
    return lambda pod, _ctx: change(pod.setdefault("metadata", {}))


def add_volume(volume: JSON) -> Mutation:
    """A counterexample that adds ``volume`` to the pod."""
    return lambda pod, _ctx: pod["spec"].setdefault("volumes", []).append(volume)


# --- what several scopes share ----------------------------------------------------


def not_root(args: SandboxEgressArgs) -> bool:
    """Applies unless the session accepts a root workspace."""
    return not args.allow_root_workspace


def no_secondary_networks(args: SandboxEgressArgs) -> bool:
    """Applies unless the session accepts secondary networks."""
    return not args.unsafe_secondary_networks


SC: Final = "securityContext"
"""The field every rule on privileges reads, in a container or in the pod spec."""
POD_SC: Final = f"spec.{SC}"
"""The pod's securityContext, from the pod (``object``) in CEL."""
POD_CONTEXT: Final = f"object.{POD_SC}"
EFFECTIVE_UID: Final = (
    f"(({has_path('c', f'{SC}.runAsUser')}) ? c.{SC}.runAsUser : "
    f"(({has_path('object', f'{POD_SC}.runAsUser')}) ? {POD_CONTEXT}.runAsUser : -1))"
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
SECONDARY_FIX: Final = "accept that risk with unsafe_secondary_networks (unsafeSecondaryNetworks)"
SECRET_WHY: Final = (
    f"that Secret holds the CA key; only the volumes condukt-egress injects may reference "
    f"Secrets named {MANAGED_PREFIX}*"
)
APPARMOR_WHY: Final = (
    "a workspace without its AppArmor profile has fewer walls between it and the redirect"
)
PROFILE_FIX: Final = "use RuntimeDefault (or a Localhost profile) or leave it unset"
SECCOMP_WHY: Final = "without seccomp a workspace meets the kernel's whole system call surface"
_SELINUX_WHY: Final = "spc_t is the 'super privileged container' type"
_SELINUX_FIX: Final = "remove it and let the runtime pick container_t"
_UNCONFINED_SELINUX: Final = ("spc_t", "unconfined_t")


def is_managed(name: object) -> bool:
    """Whether ``name`` is one condukt-egress gives its Secrets."""
    return isinstance(name, str) and name.startswith(MANAGED_PREFIX)


def secret_what(verb: str, secret: str, ctx: RuleContext) -> str:
    """What a spec does with a condukt-egress Secret: ``mounts the session Secret 'x'``."""
    own = ctx.args.names.owns_secret(secret)
    whose = "the session Secret" if own else "another session's condukt-egress Secret"
    return f"{verb} {whose} {secret!r}"


def cel_managed(root: str, path: str) -> str:
    """CEL: ``root.path`` is set and names a condukt-egress Secret."""
    return f"({has_path(root, path)} && {root}.{path}.startsWith({lit(MANAGED_PREFIX)}))"


# --- rows of the table -----------------------------------------------------------

_ROOTS: Final[Mapping[str, str]] = {"container": "c", "pod": "object.spec"}
_TARGETS: Final[Mapping[str, Callable[[Callable[[JSON], None]], Mutation]]] = {
    "container": on_container,
    "pod": on_spec,
}


def field_rule(  # noqa: PLR0917 - read as a row of the table, like PodRule
    id_: str, scope: Scope, path: str, bad: object, rule: str, why: str, fix: str, **more: Any
) -> PodRule:
    """A rule that one field must not hold ``bad`` (``True``: be true; a tuple: any of them)."""
    bad_values = bad if isinstance(bad, tuple) else (bad,)

    def check(target: Mapping[str, Any], _spec: Mapping[str, Any], _ctx: RuleContext) -> Any:
        value = _get(target, path)
        hit = bool(value) if bad is True else value in bad_values
        return when(
            hit and value is not None, path, f"is {value!r}" if bad is not True else "is true"
        )

    root = _ROOTS[scope]
    test = f"{root}.{path}" if bad is True else f"{root}.{path} in {lit(list(bad_values))}"
    return PodRule(
        id_,
        scope,
        path,
        rule,
        why,
        fix,
        check,
        more.pop("cel", lambda _x: f"!({has_path(root, path)} && {test})"),
        breaks=more.pop("breaks", (_TARGETS[scope](setter(path, bad_values[0])),)),
        **more,
    )


def id_rule(  # noqa: PLR0917 - read as a row of the table, like PodRule
    scope: Scope,
    kind: str,
    name: str,
    value: Callable[[RuleContext], int],
    rule: str,
    why: str,
    fix: str,
) -> PodRule:
    """A rule that ``securityContext.<name>`` is not ``value``, an id only our containers use.

    ``kind`` names the id (``sidecar uid``) in the rule's id and its refusal.
    The CEL of a container's ``runAsUser`` compares the uid it runs as (its
    own or the pod's); otherwise the field itself.
    """
    path = f"{SC}.{name}"

    def cel(ctx: RuleContext) -> str:
        if scope == "container" and name == "runAsUser":
            return f"{EFFECTIVE_UID} != {value(ctx)}"
        root, steps = ("c", path) if scope == "container" else ("object", f"spec.{path}")
        return negate(is_(root, steps, value(ctx)))

    return PodRule(
        f"{scope}.{kind.replace(' ', '-')}",
        scope,
        path,
        rule,
        why,
        fix,
        lambda t, _s, x: when(security(t).get(name) == value(x), path, f"is the {kind} {value(x)}"),
        cel,
        breaks=(lambda pod, x: _TARGETS[scope](setter(path, value(x)))(pod, x),),
    )


def _check_root(c: Mapping[str, Any], _s: Mapping[str, Any], _ctx: RuleContext) -> Any:
    context = security(c)
    if context.get("runAsUser") == 0:
        return Problem("securityContext.runAsUser", "is 0 (root)")
    return when(context.get("runAsNonRoot") is False, "securityContext.runAsNonRoot", "is false")


def root_rule(scope: Scope, rule: str, cel: Callable[[RuleContext], str]) -> PodRule:
    """A rule that a container, or the pod by default, does not run as root.

    Off when the session accepts a root workspace (``allow_root_workspace``).
    """
    target = _TARGETS[scope]
    return PodRule(
        f"{scope}.root",
        scope,
        f"{SC}.runAsUser",
        rule,
        _ROOT_WHY,
        _ROOT_FIX,
        _check_root,
        cel,
        breaks=(
            target(setter(f"{SC}.runAsUser", 0)),
            target(setter(f"{SC}.runAsNonRoot", False)),
        ),
        applies=not_root,
    )


def confinement_rules(scope: Scope, who: str) -> list[PodRule]:
    """Privilege and confinement fields that exist on both a container and the pod."""
    return [
        field_rule(
            f"{scope}.host-process",
            scope,
            f"{SC}.windowsOptions.hostProcess",
            True,
            f"{who} is not a Windows host process",
            "a host process runs in the node's network",
            "remove it",
        ),
        field_rule(
            f"{scope}.apparmor",
            scope,
            f"{SC}.appArmorProfile.type",
            "Unconfined",
            f"{who} is not AppArmor Unconfined",
            APPARMOR_WHY,
            PROFILE_FIX,
        ),
        field_rule(
            f"{scope}.selinux",
            scope,
            f"{SC}.seLinuxOptions.type",
            _UNCONFINED_SELINUX,
            f"{who} is not in an unconfined SELinux domain (spc_t, unconfined_t)",
            _SELINUX_WHY,
            _SELINUX_FIX,
        ),
    ]
