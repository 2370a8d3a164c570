"""Pod injection: our parts added, the user's containers hardened, bypasses refused.

:func:`inject` adds what :mod:`~condukt_egress.containers` builds to any pod
spec, hardens every user container, raises pod-level ``spec.resources`` by
what it adds, and refuses (through :mod:`~condukt_egress.podrules`) any spec
that could step around the sidecar. It is idempotent.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from condukt_egress import compat, dns, podrules
from condukt_egress._quantity import format_quantity, parse_quantity
from condukt_egress.args import SandboxEgressArgs, validate_image
from condukt_egress.containers import (
    WORKSPACE_TRUST_DIR,
    ca_env,
    filter_container,
    netfilter_container,
    session_volumes,
    sidecar_container,
    trust_mounts,
)
from condukt_egress.errors import ConfigError
from condukt_egress.naming import (
    NETFILTER_CONTAINER,
    OUR_CONTAINERS,
    OUR_VOLUMES,
    TRUST_VOLUME,
)
from condukt_egress.session_objects import (
    bound_secret_name,
    ca_binding,
    ca_fingerprint_env,
    object_metadata,
    with_ca_binding,
    with_ca_fingerprint,
    with_secret_name,
    without_ca_fingerprint,
)

__all__ = [
    "DEFAULT_WORKSPACE_IMAGE",
    "DEFAULT_WORKSPACE_UID",
    "WORKSPACE_IDLE_COMMAND",
    "check",
    "check_pod_metadata",
    "harden_patch",
    "inject",
    "workspace_pod_manifest",
]

JSON = dict[str, Any]

DEFAULT_WORKSPACE_IMAGE: Final = "python:3.13-slim"
"""Image of the workspace container the stack program and ``render`` declare."""

DEFAULT_WORKSPACE_UID: Final = 65532
"""The uid (and gid) workspace containers run as when neither the container nor the
pod names one: a non-root id, not the sidecar's, that no common image uses for root."""


def _where(kind: str, index: int, container: Mapping[str, Any]) -> str:
    return f"spec.{kind}[{index}] (container {container.get('name')!r})"


def _run_as_non_root(
    context: JSON, pod_context: Mapping[str, Any], where: str, args: SandboxEgressArgs
) -> None:
    """Make a workspace container non-root, unless the session opted out.

    Root (uid 0) passes the filter rule that keeps the control port for the
    port-forward path (:func:`filter_rules`). A uid the spec sets is kept; with
    none, :data:`DEFAULT_WORKSPACE_UID` (an image's ``USER`` cannot be seen
    here, and ``runAsNonRoot`` alone refuses images whose user is a name).
    Explicit root was refused before (``container.root``, ``pod.root``).
    """
    if args.allow_root_workspace:
        return
    context["runAsNonRoot"] = True
    if context.get("runAsUser") is None and pod_context.get("runAsUser") is None:
        context["runAsUser"] = DEFAULT_WORKSPACE_UID
        if context.get("runAsGroup") is None and pod_context.get("runAsGroup") is None:
            context["runAsGroup"] = DEFAULT_WORKSPACE_UID


def _harden(
    container: JSON, pod_context: Mapping[str, Any], where: str, args: SandboxEgressArgs
) -> None:
    """Fill in what a workspace container needs to be unable to bypass the sidecar.

    Only missing settings are filled in; stricter user settings are kept (a
    pod-level seccomp profile is inherited rather than overridden).
    """
    context: JSON = dict(container.get("securityContext") or {})
    _run_as_non_root(context, pod_context, where, args)
    capabilities: JSON = dict(context.get("capabilities") or {})
    drop = list(capabilities.get("drop") or [])
    if "ALL" not in drop:
        drop.insert(0, "ALL")
    capabilities["drop"] = drop
    context["capabilities"] = capabilities
    context.setdefault("allowPrivilegeEscalation", False)
    if not pod_context.get("seccompProfile"):
        context.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    container["securityContext"] = context


def _add_ours(
    items: list[JSON], ours: JSON, key: Callable[[Mapping[str, Any]], object]
) -> tuple[int, JSON] | None:
    """Append ``ours`` to ``items`` unless it is there already; return a user's item in its place.

    An item with the same ``key`` (a volume's name, a mount's path) must be
    ours from an earlier injection (injecting is idempotent); the first that
    differs is the user's, returned with its index for the caller to refuse.
    """
    wanted, found = key(ours), False
    for index, item in enumerate(items):
        if key(item) == wanted:
            if item != ours:
                return index, item
            found = True
    if not found:
        items.append(ours)
    return None


def _merge_volumes(existing: Iterable[Mapping[str, Any]], ours: Iterable[JSON]) -> list[JSON]:
    """Append ``ours`` to ``existing``; an equal volume of the same name is ours already."""
    result = [dict(item) for item in existing]
    for volume in ours:
        clash = _add_ours(result, volume, lambda item: item.get("name"))
        if clash is not None:
            raise ConfigError(
                f"spec.volumes[{clash[0]}].name",
                f"your volume {volume['name']!r} clashes with the volume condukt-egress "
                "injects under the same name; rename yours",
            )
    return result


def _under(path: str, directory: str) -> bool:
    normal = posixpath.normpath(path or "/")
    return normal == directory or normal.startswith(directory + "/")


def _with_trust(container: JSON, where: str, args: SandboxEgressArgs) -> None:
    mounts = [dict(m) for m in container.get("volumeMounts") or ()]
    for ours in trust_mounts():
        clash = _add_ours(mounts, ours, lambda m: posixpath.normpath(str(m.get("mountPath"))))
        if clash is not None:
            raise ConfigError(
                f"{where}.volumeMounts",
                f"mounts volume {clash[1].get('name')!r} at {ours['mountPath']!r}, where "
                f"condukt-egress mounts the session trust bundle ({TRUST_VOLUME!r}); "
                "move your mount elsewhere",
            )
    for mount in mounts:
        path = str(mount.get("mountPath"))
        if mount.get("name") != TRUST_VOLUME and _under(path, WORKSPACE_TRUST_DIR):
            raise ConfigError(
                f"{where}.volumeMounts",
                f"mounts volume {mount.get('name')!r} at {path!r}, inside {WORKSPACE_TRUST_DIR!r} "
                f"where condukt-egress mounts the session trust volume ({TRUST_VOLUME!r}); "
                "move your mount elsewhere",
            )
    container["volumeMounts"] = mounts
    env = [dict(e) for e in container.get("env") or ()]
    present = {e.get("name") for e in env}
    # An explicit user value of a CA variable wins (documented): they chose it.
    env += [e for e in ca_env() if e["name"] not in present]
    if args.client_compat:
        env = compat.compat_env(env, WORKSPACE_TRUST_DIR)
    container["env"] = env


def _user_containers(
    spec: Mapping[str, Any], args: SandboxEgressArgs, ours: Mapping[str, tuple[str, JSON]]
) -> Iterable[tuple[str, str, JSON]]:
    """Yield ``(list, where, container)`` for each user container; check ours are ours."""
    for kind in ("initContainers", "containers"):
        for index, raw in enumerate(spec.get(kind) or ()):
            container = dict(raw)
            name = container.get("name")
            if name in OUR_CONTAINERS:
                expected_kind, expected = ours.get(name, ("", {}))
                if kind != expected_kind or without_ca_fingerprint(container) != expected:
                    raise ConfigError(
                        f"spec.{kind}[{index}].name",
                        f"your container {name!r} clashes with the container condukt-egress "
                        "injects under that name; rename yours",
                    )
                continue  # ours, from an earlier injection: rebuilt by inject
            where = _where(kind, index, container)
            podrules.refuse_container(container, spec, where, podrules.RuleContext(args))
            yield kind, where, container


def _quantity(value: object, where: str) -> Decimal:
    try:
        return parse_quantity(value)
    except ValueError:
        raise ConfigError(
            where,
            f"is {value!r}, not a Kubernetes quantity; condukt-egress must add its containers' "
            "resources to the pod-level spec.resources: write e.g. 100Mi or 250m",
        ) from None


def _container_amount(container: Mapping[str, Any], where: str, section: str, name: str) -> Decimal:
    resources = container.get("resources") or {}
    value = (resources.get(section) or {}).get(name)
    if value is None and section == "requests":
        # The API server defaults a missing request to the limit.
        section, value = "limits", (resources.get("limits") or {}).get(name)
    if value is None:
        return Decimal(0)
    return _quantity(value, f"{where}.resources.{section}.{name}")


def _aggregate(spec: Mapping[str, Any], section: str, name: str) -> Decimal:
    """The pod's aggregate container ``requests``/``limits`` of one resource.

    Kubernetes' rule (``resourcehelper.PodRequests``): the sum of the
    containers and of the restartable (native sidecar) init containers, or,
    if larger, the largest plain init container plus the sidecars started
    before it.
    """
    total = sum(
        (
            _container_amount(c, _where("containers", i, c), section, name)
            for i, c in enumerate(spec.get("containers") or ())
        ),
        Decimal(0),
    )
    sidecars = init_peak = Decimal(0)
    for index, container in enumerate(spec.get("initContainers") or ()):
        amount = _container_amount(
            container, _where("initContainers", index, container), section, name
        )
        if container.get("restartPolicy") == "Always":
            total += amount
            sidecars += amount
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, amount + sidecars)
    return max(total, init_peak)


def _fit_pod_resources(before: Mapping[str, Any], spec: JSON) -> None:
    """Raise pod-level ``spec.resources`` by what the injected containers add.

    With pod-level resources (on by default since Kubernetes 1.34) the API
    server rejects a pod whose pod-level requests are below the aggregate
    container requests, or whose limits are below a container's limit. Each
    resource the user set at pod level grows by exactly the growth of the
    aggregate, so the user's containers keep the budget they had; a request
    never ends above its limit.
    """
    pod = spec.get("resources")
    if not isinstance(pod, Mapping) or not pod:
        return
    fitted: JSON = {
        key: dict(value) if isinstance(value, Mapping) else value for key, value in pod.items()
    }
    for section in ("requests", "limits"):
        for name, value in (pod.get(section) or {}).items():
            current = _quantity(value, f"spec.resources.{section}.{name}")
            grown = _aggregate(spec, section, name) - _aggregate(before, section, name)
            if grown > 0:
                fitted[section][name] = format_quantity(current + grown, name)
    requests, limits = fitted.get("requests") or {}, fitted.get("limits") or {}
    for name, request in requests.items():
        if name in limits and parse_quantity(request) > parse_quantity(limits[name]):
            limits[name] = request
    spec["resources"] = fitted


def check(pod_spec: Mapping[str, Any], args: SandboxEgressArgs) -> None:
    """Refuse a (possibly partial) pod spec that could bypass the sidecar; change nothing.

    This is every refusal of :func:`inject` without the injection, for specs
    that are merged into a pod rather than declaring one (``*Patch`` workloads).

    Raises:
        ConfigError: As :func:`inject`; the message names the field and the fix.
    """
    podrules.refuse_pod(pod_spec, podrules.RuleContext(args))
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(pod_spec.get(kind) or ()):
            if container.get("name") in OUR_CONTAINERS:
                raise ConfigError(
                    f"spec.{kind}[{index}].name",
                    f"{container.get('name')!r} is a condukt-egress container; a patch may not "
                    "change it: remove it from the patch",
                )
    for _ in _user_containers(pod_spec, args, {}):
        pass
    for index, volume in enumerate(pod_spec.get("volumes") or ()):
        if volume.get("name") in OUR_VOLUMES:
            raise ConfigError(
                f"spec.volumes[{index}].name",
                f"{volume.get('name')!r} is a condukt-egress volume; a patch may not change it: "
                "remove it from the patch",
            )


def harden_patch(pod_spec: Mapping[str, Any], args: SandboxEgressArgs) -> JSON:
    """The pod spec of a server-side-apply patch, hardened like an injected one, or refused.

    A patch merges into a pod declared elsewhere, so it cannot carry the
    sidecar; but every container it adds or touches ends hardened like an
    injected one (``capabilities.drop: [ALL]``, ``allowPrivilegeEscalation:
    false``, seccomp ``RuntimeDefault`` unless the patch sets a profile),
    since a container it adds would otherwise run with the runtime's default
    capabilities (root can ``setuid`` to the sidecar uid and skip the
    redirect); like injected ones they run as non-root unless the session
    allows root workspaces. Init containers are refused: server-side apply may place a new
    one before the netfilter init container, where it runs before the
    redirect exists.

    Args:
        pod_spec: The patch's (partial) pod spec, Kubernetes field names.
        args: The session.

    Returns:
        A new dict; the input is not modified. Idempotent.

    Raises:
        ConfigError: Every refusal of :func:`check`, and init containers.
    """
    check(pod_spec, args)
    if pod_spec.get("initContainers"):
        raise ConfigError(
            "spec.initContainers",
            "is set in a patch; server-side apply may order a patched init container before "
            f"{NETFILTER_CONTAINER!r}, so it would run before the egress redirect exists: "
            "declare init containers in the workload itself, which condukt-egress injects",
        )
    spec: JSON = copy.deepcopy(dict(pod_spec))
    if spec.get("containers"):
        pod_context = spec.get("securityContext") or {}
        containers = [dict(c) for c in spec["containers"]]
        for index, container in enumerate(containers):
            _harden(container, pod_context, _where("containers", index, container), args)
        spec["containers"] = containers
    return spec


def check_pod_metadata(metadata: Mapping[str, Any], args: SandboxEgressArgs) -> None:
    """Refuse pod (template) metadata that breaks a pod rule or moves the pod's session.

    Raises:
        ConfigError: A metadata rule of :mod:`~condukt_egress.podrules` (an
            AppArmor ``unconfined`` or a Multus annotation), or the session
            label with another session's value (``metadata.labels[...]``).
    """
    podrules.refuse_metadata(metadata, podrules.RuleContext(args))
    labels = metadata.get("labels") or {}
    key, value = args.names.label_key, args.names.label_value
    if labels.get(key, value) != value:
        raise ConfigError(
            f"metadata.labels[{key!r}]",
            f"is {labels[key]!r}, but the workload is injected for session "
            f"{args.session_id!r} ({value!r}); a pod belongs to one session: remove the label "
            "or use that session's SandboxEgress",
        )


def inject(pod_spec: Mapping[str, Any], args: SandboxEgressArgs) -> JSON:
    """Return ``pod_spec`` with the session's egress control injected.

    Adds the netfilter init container first (before any user init container
    runs), the sidecar (native: right after it; plain: last container), the
    sidecar-only config volume and the workspace trust volume; mounts the
    trust bundle over the system trust store of every user container and
    sets the CA variables; hardens every user container and the pod.

    Args:
        pod_spec: A PodSpec written with Kubernetes (camelCase) field names.
        args: The session.

    Returns:
        A new dict; the input is not modified. Injecting twice gives the
        same result as injecting once. Its volumes name the session Secret
        by its prefix until :func:`with_secret_name` binds the name, which
        an earlier injection's binding keeps.

    Raises:
        ConfigError: The spec could bypass the sidecar (privileged, host
            namespaces or paths, ephemeral containers, sidecar uid/gid, added
            capabilities, references to the session Secret) or clashes with a
            name or path condukt-egress uses. The message names the field.
    """
    spec: JSON = copy.deepcopy(dict(pod_spec))
    podrules.refuse_pod(spec, podrules.RuleContext(args))
    fingerprint = ca_fingerprint_env(spec)
    bound = bound_secret_name(spec)
    ours_volumes = session_volumes(args)
    if args.names.owns_secret(bound):  # an earlier injection's Secret: kept, as the CA is
        ours_volumes = with_secret_name({"volumes": ours_volumes}, bound)["volumes"]
    ours_init = [netfilter_container(args), filter_container(args)]
    ours_main: list[JSON] = []
    (ours_init if args.native_sidecar else ours_main).append(sidecar_container(args))
    if args.dns_filter != "off":
        resolver = dns.resolver_container(args.dns_image, native=args.native_sidecar)
        (ours_init if args.native_sidecar else ours_main).append(resolver)
    ours = {c["name"]: ("initContainers", c) for c in ours_init}
    ours.update({c["name"]: ("containers", c) for c in ours_main})

    pod_context = spec.get("securityContext") or {}
    lists: dict[str, list[JSON]] = {"initContainers": [], "containers": []}
    for kind, where, container in _user_containers(spec, args, ours):
        _harden(container, pod_context, where, args)
        _with_trust(container, where, args)
        lists[kind].append(container)

    if not lists["containers"]:
        raise ConfigError("spec.containers", "is empty; declare the workspace container to protect")
    spec["initContainers"] = ours_init + lists["initContainers"]
    spec["containers"] = lists["containers"] + ours_main
    spec["volumes"] = _merge_volumes(spec.get("volumes") or (), ours_volumes)
    _fit_pod_resources(pod_spec, spec)
    spec.setdefault("automountServiceAccountToken", False)
    spec.setdefault("enableServiceLinks", False)
    if fingerprint is not None:  # an earlier injection's CA: kept, so inject stays idempotent
        return with_ca_fingerprint(spec, fingerprint["value"])
    return spec


WORKSPACE_IDLE_COMMAND: Final = ("sh", "-c", "trap 'exit 0' TERM INT; sleep infinity & wait")
"""Default workspace command: idle for ``kubectl exec``, and gone on SIGTERM.

A bare ``sleep infinity`` is PID 1 of its container, which ignores SIGTERM, so
a deleted Pod kept running for its whole grace period; outside Pulumi (a
``kubectl delete -f`` of a rendering) that could outlive the NetworkPolicy."""


def workspace_pod_manifest(
    args: SandboxEgressArgs,
    workspace_image: str,
    command: list[str] | None = None,
    *,
    ca_cert_pem: str | None = None,
) -> JSON:
    """The session's workspace Pod, with egress control injected.

    Args:
        args: The session.
        workspace_image: Image of the (untrusted) workspace container.
        command: Its command; default :data:`WORKSPACE_IDLE_COMMAND` keeps the
            pod idle for ``kubectl exec`` and exits at once on SIGTERM.
        ca_cert_pem: The session CA, whose fingerprint the sidecar's env then
            carries (see :data:`CA_FINGERPRINT_ENV`) and whose Secret the
            volumes name (:func:`secret_name`). The component leaves it out
            here: its workload transform adds both as Outputs.
    """
    validate_image("workspace_image", workspace_image, DEFAULT_WORKSPACE_IMAGE)
    names = args.names
    metadata = object_metadata(args, names.pod)
    spec = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
        "containers": [
            {
                "name": "workspace",
                "image": workspace_image,
                "command": command or list(WORKSPACE_IDLE_COMMAND),
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
        ],
    }
    injected = inject(spec, args)
    if ca_cert_pem is not None:
        injected = with_ca_binding(injected, ca_binding(args, ca_cert_pem))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": injected}
