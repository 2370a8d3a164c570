"""What the injection puts in a session pod, as the guard's ``session-pods`` policy expects it.

:func:`read_ours` injects template pods (two session ids, native and plain
sidecars) and reads off our containers, the argv slots that depend on the
session and our Secret volumes; :func:`container_matches` is the CEL that a
container of a stored pod is one of ours, unaltered. Nothing here is copied
from the builders: a change to the injection is a change to the guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from condukt_egress import manifests
from condukt_egress._cel import has_path, lit
from condukt_egress._guard_cel import JSON, TEMPLATE_IDS
from condukt_egress.naming import DNS_CONTAINER

if TYPE_CHECKING:
    from condukt_egress.guard import SandboxGuardArgs

__all__ = ["Ours", "container_matches", "read_ours"]


def _common_prefix(a: str, b: str) -> str:
    """The longest text both ``a`` and ``b`` start with."""
    pairs = enumerate(zip(a, b, strict=False))
    end = next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
    return a[:end]


@dataclass(frozen=True)
class Ours:
    """What the injection puts in a pod, read off injected template pods."""

    root_init: tuple[JSON, ...]  # our init containers other than the sidecars, in order
    sidecar: JSON
    resolver: JSON  # the filtering resolver (native sidecar or container, like the sidecar)
    wildcard_args: Mapping[str, Mapping[int, str]]  # per container: session-dependent argv
    # slots, each with the text every session's value starts with (e.g. "--session-id=")
    secret_volumes: Mapping[str, tuple[str, ...]]  # volumes on the session Secret: their keys


def read_ours(args: SandboxGuardArgs) -> Ours:
    """Inject template pods with the guard's session options and read off :class:`Ours`."""
    user = {"name": "workspace", "image": manifests.DEFAULT_WORKSPACE_IMAGE}
    specs = {
        (sid, native): manifests.inject(
            {"containers": [user]}, args.template(sid, native_sidecar=native)
        )
        for sid in TEMPLATE_IDS
        for native in (True, False)
    }

    def ours(spec: JSON) -> dict[str, JSON]:
        every = [*spec["initContainers"], *spec["containers"]]
        return {c["name"]: c for c in every if c["name"] != user["name"]}

    native, plain = specs[(TEMPLATE_IDS[0], True)], specs[(TEMPLATE_IDS[0], False)]
    sidecar_name = manifests.SIDECAR_CONTAINER
    root_native = [
        c for c in native["initContainers"] if c["name"] not in (sidecar_name, DNS_CONTAINER)
    ]
    root_plain = list(plain["initContainers"])
    if [c["name"] for c in root_native] != [c["name"] for c in root_plain]:  # pragma: no cover
        raise AssertionError("native and plain injection disagree on the init containers")
    wildcards: dict[str, dict[int, str]] = {}
    other = ours(specs[(TEMPLATE_IDS[1], True)])
    for name, container in ours(native).items():
        a, b = container.get("args") or [], other[name].get("args") or []
        if len(a) != len(b):  # pragma: no cover - argv length depends on the session
            raise AssertionError(f"{name}: argv length depends on the session id")
        wildcards[name] = {
            i: _common_prefix(x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y
        }
    # An injection without its CA names the Secret by its prefix alone.
    secret = args.template(TEMPLATE_IDS[0], native_sidecar=True).names.secret_prefix
    secret_volumes = {
        v["name"]: tuple(i["key"] for i in v["secret"]["items"])
        for v in native["volumes"]
        if (v.get("secret") or {}).get("secretName") == secret
    }
    return Ours(
        root_init=tuple(root_native),
        sidecar=ours(native)[sidecar_name],
        resolver=ours(native)[DNS_CONTAINER],
        wildcard_args=wildcards,
        secret_volumes=secret_volumes,
    )


def container_matches(
    c: str,
    template: JSON,
    wildcard: Mapping[int, str],
    images: Sequence[str],
    *,
    bound_env: str | None = None,
) -> str:
    """CEL: container ``c`` runs what ``template`` runs and nothing more.

    Image one of ``images``; command and argv as built (session-dependent argv
    slots free); environment variable names as built, none from a reference,
    and ``bound_env`` after them or not (the sidecar's CA fingerprint, which
    only a pod bound to its CA carries: the component's and ``render``'s do,
    ``inject``'s do not);
    no ``envFrom``; volume mounts as built; no exec hook or exec probe the
    builder did not write (those run commands as the container's uid, which
    for the sidecar is the uid the redirect exempts).
    """
    parts = [f"{c}.image in {lit(list(images))}"]
    command = template.get("command")
    parts.append(
        f"has({c}.command) && {c}.command == {lit(command)}" if command else f"!has({c}.command)"
    )
    argv = template.get("args") or []
    parts.append(
        f"has({c}.args) && size({c}.args) == {len(argv)}"
        if argv
        else f"(!has({c}.args) || size({c}.args) == 0)"
    )
    parts += [
        f"{c}.args[{i}].startsWith({lit(wildcard[i])})"
        if i in wildcard
        else f"{c}.args[{i}] == {lit(a)}"
        for i, a in enumerate(argv)
        if i not in wildcard or wildcard[i]
    ]
    env_names = [e["name"] for e in template.get("env") or ()]
    if env_names or bound_env is not None:
        names = (
            f"== {lit(env_names)}"
            if bound_env is None
            else f"in {lit([env_names, [*env_names, bound_env]])}"
        )
        parts.append(
            f"has({c}.env) && {c}.env.map(e, e.name) {names} && {c}.env.all(e, !has(e.valueFrom))"
        )
    else:
        parts.append(f"(!has({c}.env) || size({c}.env) == 0)")
    parts.append(f"(!has({c}.envFrom) || size({c}.envFrom) == 0)")
    mounts = [f"{m['name']}:{m['mountPath']}" for m in template.get("volumeMounts") or ()]
    # The ServiceAccount admission plugin adds its token mount to every container
    # of a pod that automounts the token; it runs before validation.
    token = f"m.name.startsWith({lit(_TOKEN_VOLUME_PREFIX)}) && m.mountPath == {lit(_TOKEN_PATH)}"
    own = f"{c}.volumeMounts.filter(m, !({token}))"
    if mounts:
        as_text = f"{own}.map(m, m.name + ':' + m.mountPath)"
        parts.append(f"has({c}.volumeMounts) && {as_text} == {lit(mounts)}")
    else:
        parts.append(f"(!has({c}.volumeMounts) || size({own}) == 0)")
    parts.append(f"(!has({c}.volumeDevices) || size({c}.volumeDevices) == 0)")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        exec_ = (template.get(probe) or {}).get("exec")
        allowed = f"{c}.{probe}.exec.command == {lit(exec_['command'])}" if exec_ else "false"
        parts.append(f"(!has({c}.{probe}) || !has({c}.{probe}.exec) || {allowed})")
    parts.append(_security_matches(c, template.get("securityContext") or {}))
    lifecycle = template.get("lifecycle")
    if lifecycle:  # pragma: no cover - the builders declare no hook today
        raise AssertionError("the guard does not yet express lifecycle hooks of our containers")
    parts.append(f"!has({c}.lifecycle)")
    if "restartPolicy" not in template:  # a run-once init container stays one
        parts.append(f"!has({c}.restartPolicy)")
    return " && ".join(f"({p})" for p in parts)


_TOKEN_VOLUME_PREFIX: Final = "kube-api-access-"  # noqa: S105 - a volume name
_TOKEN_PATH: Final = "/var/run/secrets/kubernetes.io/serviceaccount"  # noqa: S105 - a path
"""The volume and path of the service account token the API server mounts into every
container when a pod automounts it (``automountServiceAccountToken: true``)."""

_LOOSENING_CONTEXT: Final = ("appArmorProfile", "seLinuxOptions", "windowsOptions", "procMount")
"""securityContext fields our containers never set; present, they could only loosen them."""


def _leaves(value: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, object]]:
    for key, item in value.items():
        if isinstance(item, Mapping):
            yield from _leaves(item, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", item


def _security_matches(c: str, template: Mapping[str, Any]) -> str:
    """CEL: ``c``'s securityContext sets every field ``template`` sets, to the same value.

    Lists (capabilities) must be equal; an ``add`` the template lacks must stay
    absent; fields our containers never set (AppArmor, SELinux, Windows, procMount)
    must stay absent.
    """
    parts = [
        f"({has_path(c, 'securityContext.' + p)} && {c}.securityContext.{p} == {lit(v)})"
        for p, v in _leaves(template)
    ]
    if "add" not in (template.get("capabilities") or {}):
        add = f"{c}.securityContext.capabilities.add"
        parts.append(f"!({has_path(c, 'securityContext.capabilities.add')} && size({add}) > 0)")
    parts += [f"!({has_path(c, 'securityContext.' + f)})" for f in _LOOSENING_CONTEXT]
    return " && ".join(parts)
