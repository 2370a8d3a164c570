"""The guard: admission policies that make the API server refuse what would escape a session.

What :mod:`condukt_egress.manifests` guarantees holds only for objects that
pass through our code. In a namespace the guard is bound to, the API server
itself refuses, whoever sends the request:

- ``session-pods``: a Pod carrying the session label that is not injected as
  :func:`~condukt_egress.manifests.inject` injects it (our init containers
  first and unaltered, the sidecar reading the Secret of the session the label
  names, the workspace hardening) and any change of that label after creation;
- ``ephemeral-containers``: ``kubectl debug`` containers on session pods;
- ``network-policies``: NetworkPolicies condukt-egress did not generate
  (policies add up), unless named in ``allowed_network_policies``;
- ``only-session-pods`` (off by default): any Pod without the session label.

Each rule is one ``ValidatingAdmissionPolicy`` (``admissionregistration.k8s.io/v1``,
Kubernetes 1.30+) and one binding selecting namespaces by label. Every CEL
expression is built here from the same builders and constants as the
injection (the containers of an injected template pod, the naming of
:func:`~condukt_egress.naming.session_names`), never from copied literals, and
uses only standard CEL macros and functions.

Example:
    >>> objects = guard_manifests(SandboxGuardArgs(allowed_network_policies=["default-deny"]))
    >>> [o["kind"] for o in objects][:2]
    ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from condukt_egress import checks, contract, manifests, podrules
from condukt_egress._cel import has_path as _has_path
from condukt_egress._cel import is_ as _is
from condukt_egress._cel import lit as _lit
from condukt_egress.args import SandboxEgressArgs, validate_image
from condukt_egress.dns import DNS_IMAGE, DNS_UID
from condukt_egress.errors import ConfigError
from condukt_egress.naming import (
    DNS_CONTAINER,
    HASH_CHARS,
    LABEL_MANAGED_BY,
    LABEL_SESSION,
    MANAGED_BY,
    OUR_CONTAINERS,
    OUR_VOLUMES,
    SECRET_HASH_PATTERN,
    session_names,
)
from condukt_egress.options import check_fields, option, switch

__all__ = [
    "GUARD_NAMESPACE_LABEL",
    "GUARD_RULES",
    "POLICY_PREFIX",
    "GuardMode",
    "GuardRule",
    "SandboxGuardArgs",
    "guard_manifests",
]

JSON = dict[str, Any]

GUARD_NAMESPACE_LABEL: Final = "egress.condukt.dev/guard"
"""Default namespace label key the guard's bindings select (value ``enforce``)."""

POLICY_PREFIX: Final = "condukt-egress-guard-"
"""Name prefix of every guard policy and binding; the rule name follows."""

GuardRule = Literal["session-pods", "ephemeral-containers", "network-policies", "only-session-pods"]
"""One rule of the guard, hence one policy and one binding."""

GUARD_RULES: Final[tuple[GuardRule, ...]] = get_args(GuardRule)

GuardMode = Literal["deny", "warn"]
"""``deny`` refuses; ``warn`` only warns the client and records an audit annotation."""

_ACTIONS: Final[Mapping[str, list[str]]] = {"deny": ["Deny"], "warn": ["Warn", "Audit"]}
_TEMPLATE_IDS: Final = ("condukt-guard-template-a", "Template B #2")
_DNS_SUBDOMAIN_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


def _parse_label(text: str) -> tuple[str, str]:
    """One ``--namespace-label KEY=VALUE`` flag."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(
            "namespace_labels",
            f"must be KEY=VALUE like {GUARD_NAMESPACE_LABEL}=enforce, got {text!r}",
        )
    return key, value


def _namespace_labels(name: str, value: object) -> dict[str, str]:
    """:func:`checks.labels`, with an example when the mapping is empty."""
    if not value:
        raise ConfigError(
            name,
            f"must be a non-empty mapping of label keys to values, got {value!r}; e.g. "
            f"{{'{GUARD_NAMESPACE_LABEL}': 'enforce'}}",
        )
    return checks.labels(name, value)


@dataclass(frozen=True)
class SandboxGuardArgs:
    """Which namespaces the guard binds to, which rules it enforces, what it accepts.

    Attributes:
        namespace_labels: Labels a namespace must carry for the guard to apply
            there (``kubectl label ns agents egress.condukt.dev/guard=enforce``).
        session_pods: Refuse session-labelled Pods that are not injected and
            hardened as condukt-egress does it, and changes of the label.
        ephemeral_containers: Refuse ephemeral containers on session pods.
        network_policies: Refuse NetworkPolicies condukt-egress did not generate.
        only_session_pods: Also refuse every Pod without a session label, for
            namespaces that hold nothing but sessions.
        allowed_network_policies: Names of your own NetworkPolicies the guard
            accepts; each can widen the egress of the pods it selects.
        sidecar_images: Sidecar images session pods may run (the sessions'
            ``sidecar_image``).
        proxy_port: The sessions' ``proxy_port``.
        control_port: The sessions' ``control_port``.
        sidecar_uid: The sessions' ``sidecar_uid``: only the sidecar may run as it.
        unsafe_allowed_capabilities: The sessions' ``unsafe_allowed_capabilities``.
        allow_root_workspace: The sessions' ``allow_root_workspace``: admit
            workspace containers that run as root or name no uid.
        unsafe_secondary_networks: The sessions' ``unsafe_secondary_networks``.
        mode: ``deny`` (default) refuses; ``warn`` lets requests through with a
            warning and an audit annotation, to try the guard on a live namespace.
    """

    namespace_labels: Mapping[str, str] = field(
        default_factory=lambda: {GUARD_NAMESPACE_LABEL: "enforce"},
        metadata=option(
            "Labels a namespace must carry for the guard to apply there (all must match).",
            example=f"{{{GUARD_NAMESPACE_LABEL}: enforce}}",
            what="an object of label keys to values",
            flag="--namespace-label",
            metavar="KEY=VALUE",
            parse=_parse_label,
            check=_namespace_labels,
        ),
    )
    session_pods: bool = switch(
        "Refuse session-labelled pods not injected and hardened by condukt-egress.",
        default=True,
    )
    ephemeral_containers: bool = switch(
        "Refuse `kubectl debug` containers on session pods.",
        default=True,
    )
    network_policies: bool = switch(
        "Refuse NetworkPolicies condukt-egress did not generate.",
        default=True,
    )
    only_session_pods: bool = switch(
        "Refuse every pod without a session label.",
        default=False,
    )
    allowed_network_policies: Sequence[str] = field(
        default=(),
        metadata=option(
            "A NetworkPolicy of yours to accept although it may widen session egress.",
            example="[default-deny]",
            what="a list of NetworkPolicy names",
            flag="--allowed-network-policy",
            metavar="NAME",
            parse=str,
        ),
    )
    sidecar_images: Sequence[str] = field(
        default=(contract.DEFAULT_IMAGE,),
        metadata=option(
            "A sidecar image session pods may run (the sessions' sidecar_image; pin digests).",
            example=f"[{contract.DEFAULT_IMAGE}]",
            what="a list of image references",
            flag="--sidecar-image",
            metavar="IMG",
            parse=str,
        ),
    )
    dns_images: Sequence[str] = field(
        default=(DNS_IMAGE,),
        metadata=option(
            "A CoreDNS image session pods' resolver may run (the sessions' dns_image; "
            "pin digests).",
            example="[<image>]",
            what="a list of image references",
            flag="--dns-image",
            metavar="IMG",
            parse=str,
            doc_default=f"[CoreDNS {DNS_IMAGE.split(':')[1].split('@')[0]}, pinned by digest]",
        ),
    )
    proxy_port: int = field(
        default=contract.DEFAULT_PROXY_PORT,
        metadata=option("The sessions' proxy_port.", example="15001", metavar="PORT"),
    )
    control_port: int = field(
        default=contract.DEFAULT_CONTROL_PORT,
        metadata=option("The sessions' control_port.", example="15002", metavar="PORT"),
    )
    sidecar_uid: int = field(
        default=contract.DEFAULT_SIDECAR_UID,
        metadata=option("The sessions' sidecar_uid.", example="1337", metavar="UID"),
    )
    unsafe_allowed_capabilities: Sequence[str] = field(
        default=(),
        metadata=option(
            "A capability the sessions let workspaces add (a risk you accept).",
            example="[NET_BIND_SERVICE]",
            what="a list of capability names",
            flag="--unsafe-allowed-capability",
            metavar="CAP",
            parse=str,
        ),
    )
    allow_root_workspace: bool = switch(
        "The sessions' allow_root_workspace: admit workspace containers that run as root "
        "or name no uid (risky, as for the sessions).",
        default=False,
    )
    unsafe_secondary_networks: bool = switch(
        "The sessions' unsafe_secondary_networks: admit Multus annotations and "
        "spec.resourceClaims on session pods (unsafe).",
        default=False,
    )
    mode: GuardMode = field(
        default="deny",
        metadata=option(
            "deny refuses; warn admits with a warning and an audit annotation.",
            example="deny",
            choices=get_args(GuardMode),
        ),
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        check_fields(self)  # each option's own check: labels, switches, mode
        if not self.rules:
            raise ConfigError(
                "session_pods",
                "every rule is off, so the guard would enforce nothing; turn at least one on",
            )
        set_(self, "allowed_network_policies", _policy_names(self.allowed_network_policies))
        images = _strings("sidecar_images", self.sidecar_images)
        if not images:
            raise ConfigError(
                "sidecar_images",
                f"must list at least one sidecar image, e.g. {contract.DEFAULT_IMAGE!r}",
            )
        set_(
            self,
            "sidecar_images",
            tuple(validate_image("sidecar_images", i, contract.DEFAULT_IMAGE) for i in images),
        )
        dns_images = _strings("dns_images", self.dns_images)
        if not dns_images:
            raise ConfigError(
                "dns_images", f"must list at least one CoreDNS image, e.g. {DNS_IMAGE!r}"
            )
        set_(
            self,
            "dns_images",
            tuple(validate_image("dns_images", i, DNS_IMAGE) for i in dns_images),
        )
        if self.mode not in _ACTIONS:
            raise ConfigError("mode", f"must be 'deny' or 'warn', got {self.mode!r}")
        # The session options are validated exactly as a session validates them.
        template = self.template(_TEMPLATE_IDS[0], native_sidecar=True)
        set_(self, "proxy_port", template.proxy_port)
        set_(self, "control_port", template.control_port)
        set_(self, "sidecar_uid", template.sidecar_uid)
        set_(self, "unsafe_allowed_capabilities", template.unsafe_allowed_capabilities)

    @property
    def rules(self) -> tuple[GuardRule, ...]:
        """The rules turned on, in :data:`GUARD_RULES` order."""
        on = {
            "session-pods": self.session_pods,
            "ephemeral-containers": self.ephemeral_containers,
            "network-policies": self.network_policies,
            "only-session-pods": self.only_session_pods,
        }
        return tuple(r for r in GUARD_RULES if on[r])

    def template(self, session_id: str, *, native_sidecar: bool) -> SandboxEgressArgs:
        """A session with the guard's session options, to build expected containers from."""
        return SandboxEgressArgs(
            session_id=session_id,
            sidecar_image=self.sidecar_images[0],
            dns_image=self.dns_images[0],
            native_sidecar=native_sidecar,
            proxy_port=self.proxy_port,
            control_port=self.control_port,
            sidecar_uid=self.sidecar_uid,
            unsafe_allowed_capabilities=self.unsafe_allowed_capabilities,
            allow_root_workspace=self.allow_root_workspace,
            unsafe_secondary_networks=self.unsafe_secondary_networks,
        )


def _strings(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(name, f"must be a list of strings, got {value!r}")
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(name, f"entries must be strings, got {item!r}")
    return tuple(value)


def _policy_names(value: object) -> tuple[str, ...]:
    names = _strings("allowed_network_policies", value)
    for name in names:
        if (
            not name
            or len(name) > 253
            or not set(name) <= _DNS_SUBDOMAIN_CHARS
            or not name[0].isalnum()
            or not name[-1].isalnum()
        ):
            raise ConfigError(
                "allowed_network_policies",
                f"{name!r} is not a NetworkPolicy name (lower-case letters, digits, '-' and "
                "'.', starting and ending alphanumeric); give the metadata.name of the policy",
            )
    return names


# --- CEL -------------------------------------------------------------------------


def _label(obj: str, key: str) -> str:
    return f"has({obj}.metadata.labels) && {_lit(key)} in {obj}.metadata.labels"


class _Cel(str):
    """A CEL expression among the literal parts of :func:`_message`."""

    __slots__ = ()


def _message(*parts: str) -> str:
    """CEL: a ``messageExpression`` joining literal text and :class:`_Cel` parts."""
    return " + ".join(f"({p})" if isinstance(p, _Cel) else _lit(p) for p in parts)


def _validation(expression: str, message: str, message_expression: str | None = None) -> JSON:
    out: JSON = {"expression": expression, "message": message, "reason": "Forbidden"}
    if message_expression is not None:
        out["messageExpression"] = message_expression
    return out


def _name_affixes(attribute: str) -> tuple[str, str]:
    """``(prefix, suffix)`` with ``<name> == prefix + label value + suffix`` for every id.

    Read off :func:`session_names` for several ids, so the guard follows
    whatever naming.py derives, and fails loudly if the relation stops being one.
    """
    found = set()
    for session_id in (*_TEMPLATE_IDS, "42", "x" * 300):
        names = session_names(session_id)
        name = getattr(names, attribute)
        prefix, sep, suffix = name.partition(names.label_value)
        if not sep:  # pragma: no cover - a naming change the guard cannot express
            raise AssertionError(f"{attribute} {name!r} does not contain the label value")
        found.add((prefix, suffix))
    if len(found) != 1:  # pragma: no cover - a naming change the guard cannot express
        raise AssertionError(f"{attribute} is not prefix + label value + suffix: {found}")
    return found.pop()


def _affixed(expression: str, prefix: str, suffix: str) -> str:
    """CEL: ``prefix + expression + suffix``, without empty literals."""
    return " + ".join(
        [*([_lit(prefix)] if prefix else []), expression, *([_lit(suffix)] if suffix else [])]
    )


def _common_prefix(a: str, b: str) -> str:
    """The longest text both ``a`` and ``b`` start with."""
    pairs = enumerate(zip(a, b, strict=False))
    end = next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
    return a[:end]


@dataclass(frozen=True)
class _Ours:
    """What the injection puts in a pod, read off injected template pods."""

    root_init: tuple[JSON, ...]  # our init containers other than the sidecars, in order
    sidecar: JSON
    resolver: JSON  # the filtering resolver (native sidecar or container, like the sidecar)
    wildcard_args: Mapping[str, Mapping[int, str]]  # per container: session-dependent argv
    # slots, each with the text every session's value starts with (e.g. "--session-id=")
    secret_volumes: Mapping[str, tuple[str, ...]]  # volumes on the session Secret: their keys
    key_volumes: tuple[str, ...]  # those exposing the CA key
    key_readers: tuple[str, ...]  # our containers mounting one of those


def _ours(args: SandboxGuardArgs) -> _Ours:
    user = {"name": "workspace", "image": manifests.DEFAULT_WORKSPACE_IMAGE}
    specs = {
        (sid, native): manifests.inject(
            {"containers": [user]}, args.template(sid, native_sidecar=native)
        )
        for sid in _TEMPLATE_IDS
        for native in (True, False)
    }

    def ours(spec: JSON) -> dict[str, JSON]:
        every = [*spec["initContainers"], *spec["containers"]]
        return {c["name"]: c for c in every if c["name"] != user["name"]}

    native, plain = specs[(_TEMPLATE_IDS[0], True)], specs[(_TEMPLATE_IDS[0], False)]
    sidecar_name = manifests.SIDECAR_CONTAINER
    root_native = [
        c for c in native["initContainers"] if c["name"] not in (sidecar_name, DNS_CONTAINER)
    ]
    root_plain = list(plain["initContainers"])
    if [c["name"] for c in root_native] != [c["name"] for c in root_plain]:  # pragma: no cover
        raise AssertionError("native and plain injection disagree on the init containers")
    wildcards: dict[str, dict[int, str]] = {}
    other = ours(specs[(_TEMPLATE_IDS[1], True)])
    for name, container in ours(native).items():
        a, b = container.get("args") or [], other[name].get("args") or []
        if len(a) != len(b):  # pragma: no cover - argv length depends on the session
            raise AssertionError(f"{name}: argv length depends on the session id")
        wildcards[name] = {
            i: _common_prefix(x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y
        }
    # An injection without its CA names the Secret by its prefix alone.
    secret = args.template(_TEMPLATE_IDS[0], native_sidecar=True).names.secret_prefix
    secret_volumes = {
        v["name"]: tuple(i["key"] for i in v["secret"]["items"])
        for v in native["volumes"]
        if (v.get("secret") or {}).get("secretName") == secret
    }
    key_volumes = tuple(n for n, keys in secret_volumes.items() if contract.CA_KEY_FILE in keys)
    key_readers = tuple(
        name
        for name, c in ours(native).items()
        if any(m["name"] in key_volumes for m in c.get("volumeMounts") or ())
    )
    return _Ours(
        root_init=tuple(root_native),
        sidecar=ours(native)[sidecar_name],
        resolver=ours(native)[DNS_CONTAINER],
        wildcard_args=wildcards,
        secret_volumes=secret_volumes,
        key_volumes=key_volumes,
        key_readers=key_readers,
    )


def _container_matches(
    c: str, template: JSON, wildcard: Mapping[int, str], images: Sequence[str]
) -> str:
    """CEL: container ``c`` runs what ``template`` runs and nothing more.

    Image one of ``images``; command and argv as built (session-dependent argv
    slots free); environment variable names as built, none from a reference;
    no ``envFrom``; volume mounts as built; no exec hook or exec probe the
    builder did not write (those run commands as the container's uid, which
    for the sidecar is the uid the redirect exempts).
    """
    parts = [f"{c}.image in {_lit(list(images))}"]
    command = template.get("command")
    parts.append(
        f"has({c}.command) && {c}.command == {_lit(command)}" if command else f"!has({c}.command)"
    )
    argv = template.get("args") or []
    parts.append(
        f"has({c}.args) && size({c}.args) == {len(argv)}"
        if argv
        else f"(!has({c}.args) || size({c}.args) == 0)"
    )
    parts += [
        f"{c}.args[{i}].startsWith({_lit(wildcard[i])})"
        if i in wildcard
        else f"{c}.args[{i}] == {_lit(a)}"
        for i, a in enumerate(argv)
        if i not in wildcard or wildcard[i]
    ]
    env_names = [e["name"] for e in template.get("env") or ()]
    if env_names:
        parts.append(
            f"has({c}.env) && {c}.env.map(e, e.name) == {_lit(env_names)} "
            f"&& {c}.env.all(e, !has(e.valueFrom))"
        )
    else:
        parts.append(f"(!has({c}.env) || size({c}.env) == 0)")
    parts.append(f"(!has({c}.envFrom) || size({c}.envFrom) == 0)")
    mounts = [f"{m['name']}:{m['mountPath']}" for m in template.get("volumeMounts") or ()]
    # The ServiceAccount admission plugin adds its token mount to every container
    # of a pod that automounts the token; it runs before validation.
    token = f"m.name.startsWith({_lit(_TOKEN_VOLUME_PREFIX)}) && m.mountPath == {_lit(_TOKEN_PATH)}"
    own = f"{c}.volumeMounts.filter(m, !({token}))"
    if mounts:
        as_text = f"{own}.map(m, m.name + ':' + m.mountPath)"
        parts.append(f"has({c}.volumeMounts) && {as_text} == {_lit(mounts)}")
    else:
        parts.append(f"(!has({c}.volumeMounts) || size({own}) == 0)")
    parts.append(f"(!has({c}.volumeDevices) || size({c}.volumeDevices) == 0)")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        exec_ = (template.get(probe) or {}).get("exec")
        allowed = f"{c}.{probe}.exec.command == {_lit(exec_['command'])}" if exec_ else "false"
        parts.append(f"(!has({c}.{probe}) || !has({c}.{probe}.exec) || {allowed})")
    parts.append(_security_matches(c, template.get("securityContext") or {}))
    lifecycle = template.get("lifecycle")
    if lifecycle:  # pragma: no cover - the builders declare no hook today
        raise AssertionError("the guard does not yet express lifecycle hooks of our containers")
    parts.append(f"!has({c}.lifecycle)")
    if "restartPolicy" not in template:  # a run-once init container stays one
        parts.append(f"!has({c}.restartPolicy)")
    return " && ".join(f"({p})" for p in parts)


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


def _rule_validation(rule: podrules.PodRule, cel: str, judged: str) -> JSON:
    """One validation of ``session-pods`` for one pod rule, its message naming the culprit."""
    message = f"session-pods: {rule.message}"
    if rule.scope not in _SCOPES:
        return _validation(f"{judged}({cel})", message)
    items, var = _SCOPES[rule.scope]
    culprit = f"{items}.filter({var}, !({cel})).map({var}, {var}.name)"
    return _validation(
        f"{judged}{items}.all({var}, {cel})",
        message,
        _message(
            f"session-pods: {rule.scope} ",
            _Cel(f"size({culprit}) > 0 ? {culprit}[0] : ''"),
            f": {rule.message}",
        ),
    )


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
        f"({_has_path(c, 'securityContext.' + p)} && {c}.securityContext.{p} == {_lit(v)})"
        for p, v in _leaves(template)
    ]
    if "add" not in (template.get("capabilities") or {}):
        add = f"{c}.securityContext.capabilities.add"
        parts.append(f"!({_has_path(c, 'securityContext.capabilities.add')} && size({add}) > 0)")
    parts += [f"!({_has_path(c, 'securityContext.' + f)})" for f in _LOOSENING_CONTEXT]
    return " && ".join(parts)


def _session_pod_variables(ours: _Ours) -> list[JSON]:
    """The variables of ``session-pods``: the label, what is judged, ours and the user's parts."""
    sidecar = manifests.SIDECAR_CONTAINER
    prefix, suffix = _name_affixes("secret_prefix")
    label_lit = _lit(LABEL_SESSION)
    config = (
        f"v.name == {_lit(manifests.CONFIG_VOLUME)} && has(v.secret) && has(v.secret.secretName)"
    )
    variables = [
        {"name": "labelled", "expression": _label("object", LABEL_SESSION)},
        {
            "name": "label",
            "expression": f"variables.labelled ? object.metadata.labels[{label_lit}] : ''",
        },
        {
            "name": "oldLabelled",
            "expression": f"request.operation == 'UPDATE' && {_label('oldObject', LABEL_SESSION)}",
        },
        {
            "name": "oldLabel",
            "expression": f"variables.oldLabelled ? oldObject.metadata.labels[{label_lit}] : ''",
        },
        {
            # Pod specs are nearly immutable: an UPDATE that leaves the spec alone
            # (labels, annotations, finalizers) is not judged again, so a pod made
            # before the guard existed can still be finalised and deleted.
            "name": "judged",
            "expression": "variables.labelled && "
            "(request.operation != 'UPDATE' || object.spec != oldObject.spec)",
        },
        {"name": "secretPrefix", "expression": _affixed("variables.label", prefix, suffix)},
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
            f"variables.secretName.matches({_lit(SECRET_HASH_PATTERN)})",
        },
        {
            "name": "initContainers",
            "expression": "has(object.spec.initContainers) ? object.spec.initContainers : []",
        },
        {"name": "containers", "expression": "variables.initContainers + object.spec.containers"},
        {
            "name": "rootInit",
            "expression": "variables.initContainers.filter(c, "
            f"!(c.name in {_lit([sidecar, DNS_CONTAINER])}))",
        },
        {
            "name": "resolvers",
            "expression": f"variables.containers.filter(c, c.name == {_lit(DNS_CONTAINER)})",
        },
        {
            "name": "sidecars",
            "expression": f"variables.containers.filter(c, c.name == {_lit(sidecar)})",
        },
    ]

    allowed_volume = " || ".join(
        f"(v.name == {_lit(name)} && variables.secretOwned && has(v.secret.secretName) "
        "&& v.secret.secretName == variables.secretName "
        f"&& has(v.secret.items) && v.secret.items.map(i, i.key) == {_lit(list(keys))})"
        for name, keys in ours.secret_volumes.items()
    )
    our_volumes = _lit(list(ours.secret_volumes))
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
            "expression": f"variables.containers.filter(c, !(c.name in {_lit(OUR_CONTAINERS)}))",
        },
        {
            "name": "userVolumes",
            "expression": "has(object.spec.volumes) ? object.spec.volumes.filter(v, "
            f"!(v.name in {_lit(OUR_VOLUMES)})) : []",
        },
    ]
    return variables


def _session_pods_policy(args: SandboxGuardArgs) -> JSON:
    ours = _ours(args)
    sidecar = manifests.SIDECAR_CONTAINER
    root_names = [c["name"] for c in ours.root_init]
    uid = args.sidecar_uid
    variables = _session_pod_variables(ours)
    n_root = len(root_names)
    layout = (
        f"variables.initContainers.exists(c, c.name == {_lit(sidecar)}) ? "
        f"(size(variables.initContainers) > {n_root} && "
        f"variables.initContainers[{n_root}].name == {_lit(sidecar)}) : true"
    )
    # A native resolver comes right after the sidecar: a user native sidecar
    # before it could bind the resolver's port first.
    resolver_layout = (
        f"variables.initContainers.exists(c, c.name == {_lit(DNS_CONTAINER)}) && "
        f"variables.initContainers.exists(c, c.name == {_lit(sidecar)}) ? "
        f"(size(variables.initContainers) > {n_root + 1} && "
        f"variables.initContainers[{n_root + 1}].name == {_lit(DNS_CONTAINER)}) : true"
    )
    root_order = " && ".join(
        [f"size(variables.rootInit) >= {n_root}"]
        + [f"variables.initContainers[{i}].name == {_lit(n)}" for i, n in enumerate(root_names)]
        + [f"({layout})", f"({resolver_layout})"]
    )
    judged = "!variables.judged || "
    inject_fix = (
        "inject the pod with condukt-egress (SandboxEgress.inject, workload_options or "
        "`condukt-egress render`) instead of writing or editing these parts by hand"
    )
    validations = [
        _validation(
            f"request.operation != 'UPDATE' || {_LABEL_UNCHANGED}",
            _LABEL_MESSAGE,
        ),
        _validation(
            judged + root_order,
            f"session-pods: a session pod must start with the condukt-egress init container(s) "
            f"{', '.join(root_names)}, then (as native sidecars) {sidecar} and the resolver "
            f"{DNS_CONTAINER}, before any other init container, so the egress redirect, the "
            f"proxy and the resolver are in place before anything else runs; {inject_fix}",
        ),
    ]
    for template in ours.root_init:
        name = template["name"]
        check = _container_matches("c", template, ours.wildcard_args[name], args.sidecar_images)
        caps = template["securityContext"]["capabilities"].get("add") or []
        validations.append(
            _validation(
                f"{judged}variables.initContainers"
                f".filter(c, c.name == {_lit(name)}).all(c, {check})",
                f"session-pods: the init container {name} must be the one condukt-egress "
                f"injects: image one of {', '.join(args.sidecar_images)}, command, args and "
                "securityContext as injected, no env, envFrom, volume mounts or exec hooks added "
                f"(it runs as root with {', '.join(caps) or 'no capability'}); {inject_fix}",
            )
        )
    sidecar_check = _container_matches(
        "c", ours.sidecar, ours.wildcard_args[sidecar], args.sidecar_images
    )
    native = _is("c", "restartPolicy", "Always")
    in_init = f"variables.initContainers.exists(c, c.name == {_lit(sidecar)} && {native})"
    in_main = f"object.spec.containers.exists(c, c.name == {_lit(sidecar)})"
    resolver_check = _container_matches(
        "c", ours.resolver, ours.wildcard_args[DNS_CONTAINER], args.dns_images
    )
    in_main_resolver = f"object.spec.containers.exists(r, r.name == {_lit(DNS_CONTAINER)})"
    validations += [
        _validation(
            f"{judged}size(variables.resolvers) <= 1 && variables.resolvers.all(c, "
            f"{resolver_check} && ({native} || {in_main_resolver}))",
            f"session-pods: the resolver {DNS_CONTAINER} must be the one condukt-egress "
            f"injects: image one of {', '.join(args.dns_images)}, args, env, Corefile mount and "
            f"securityContext (uid {DNS_UID}, whose DNS queries the redirect exempts) as "
            f"injected, beside the sidecar; {inject_fix}",
        ),
        _validation(
            f"{judged}size(variables.sidecars) == 1 && ({in_init} || {in_main})",
            f"session-pods: a session pod must run the condukt-egress sidecar {sidecar} (a "
            "native sidecar in spec.initContainers with restartPolicy: Always, or a container); "
            + inject_fix,
        ),
        _validation(
            f"{judged}variables.sidecars.all(c, {sidecar_check})",
            f"session-pods: the sidecar {sidecar} must be the one condukt-egress injects: image "
            f"one of {', '.join(args.sidecar_images)}, command, args and securityContext as "
            "injected (the session id aside), only its own env and config mount, no exec hooks "
            f"or probes (they would run as uid {uid}, which the redirect exempts); {inject_fix}",
        ),
        _validation(
            f"{judged}has(object.spec.volumes) && object.spec.volumes.exists(v, v.name == "
            f"{_lit(manifests.CONFIG_VOLUME)}) && size(variables.ourVolumesBad) == 0",
            f"session-pods: the condukt-egress volumes ({', '.join(ours.secret_volumes)}) must "
            f"be the Secret of the session the pod's {LABEL_SESSION} label names, with the "
            "keys condukt-egress gives each; a pod may carry only the label of the session "
            "whose policy it runs",
            _message(
                "session-pods: volume ",
                _Cel(
                    "size(variables.ourVolumesBad) > 0 ? variables.ourVolumesBad[0] : "
                    + _lit(manifests.CONFIG_VOLUME)
                ),
                " must be a Secret ",
                _Cel("variables.secretPrefix"),
                "<content hash>",
                f" of the session labelled {LABEL_SESSION}=",
                _Cel("variables.label"),
                " (with the keys condukt-egress gives it); a pod may carry only the label of "
                "the session whose policy it runs: label it with the session it was injected "
                "for, or inject it for this one",
            ),
        ),
    ]
    context = podrules.RuleContext(
        args.template(_TEMPLATE_IDS[0], native_sidecar=True), tuple(args.sidecar_images)
    )
    validations += [
        _rule_validation(rule, rule.cel(context), judged)
        for rule in podrules.POD_RULES
        if rule.applies(context.args)
    ]
    return _policy(
        "session-pods",
        [_rule("pods", ["CREATE", "UPDATE"])],
        [
            {
                "name": "session-pod",
                "expression": f"({_label('object', LABEL_SESSION)}) || (request.operation == "
                f"'UPDATE' && {_label('oldObject', LABEL_SESSION)})",
            }
        ],
        variables,
        validations,
    )


def _session_pod_status_policy() -> JSON:
    """``pods/status`` may change labels (the pod strategy resets only the spec there).

    Every kubelet status write passes through this policy, so its one
    expression stays trivial: the session label is as it was.
    """
    label_lit = _lit(LABEL_SESSION)
    return _policy(
        "session-pods-status",
        [_rule("pods/status", ["UPDATE"])],
        [
            {
                "name": "session-label-involved",
                "expression": f"({_label('object', LABEL_SESSION)}) || "
                f"({_label('oldObject', LABEL_SESSION)})",
            }
        ],
        [
            {"name": "labelled", "expression": _label("object", LABEL_SESSION)},
            {
                "name": "label",
                "expression": f"variables.labelled ? object.metadata.labels[{label_lit}] : ''",
            },
            {"name": "oldLabelled", "expression": _label("oldObject", LABEL_SESSION)},
            {
                "name": "oldLabel",
                "expression": "variables.oldLabelled ? "
                f"oldObject.metadata.labels[{label_lit}] : ''",
            },
        ],
        [
            _validation(
                _LABEL_UNCHANGED,
                "session-pods-status" + _LABEL_MESSAGE.removeprefix("session-pods"),
            )
        ],
    )


def _ephemeral_policy() -> JSON:
    return _policy(
        "ephemeral-containers",
        [_rule("pods/ephemeralcontainers", ["UPDATE"])],
        [{"name": "session-pod", "expression": _label("object", LABEL_SESSION)}],
        [],
        [
            _validation(
                "!has(object.spec.ephemeralContainers) "
                "|| size(object.spec.ephemeralContainers) == 0",
                "ephemeral-containers: `kubectl debug` containers cannot be added to a session "
                "pod: they are not injected or hardened and could bypass the egress sidecar; "
                "use kubectl exec into the workspace container, or debug a copy of the pod "
                f"without the {LABEL_SESSION} label",
            )
        ],
    )


def _network_policies_policy(args: SandboxGuardArgs) -> JSON:
    prefix, suffix = _name_affixes("network_policy")
    label_lit = _lit(LABEL_SESSION)
    variables = [
        {
            "name": "managed",
            "expression": f"{_label('object', LABEL_MANAGED_BY)} && "
            f"object.metadata.labels[{_lit(LABEL_MANAGED_BY)}] == {_lit(MANAGED_BY)}",
        },
        {
            "name": "session",
            "expression": f"{_label('object', LABEL_SESSION)} "
            f"? object.metadata.labels[{label_lit}] : ''",
        },
    ]
    ours = (
        "variables.managed && variables.session != '' && "
        f"object.metadata.name == {_affixed('variables.session', prefix, suffix)} && "
        "has(object.spec.podSelector.matchLabels) "
        "&& size(object.spec.podSelector.matchLabels) == 1 && "
        f"{label_lit} in object.spec.podSelector.matchLabels && "
        f"object.spec.podSelector.matchLabels[{label_lit}] == variables.session && "
        "(!has(object.spec.podSelector.matchExpressions) "
        "|| size(object.spec.podSelector.matchExpressions) == 0) && "
        "has(object.spec.policyTypes) && 'Ingress' in object.spec.policyTypes && "
        "'Egress' in object.spec.policyTypes && "
        "(!has(object.spec.ingress) || size(object.spec.ingress) == 0)"
    )
    allowed = f"object.metadata.name in {_lit(list(args.allowed_network_policies))}"
    fix = (
        "NetworkPolicies add up, so any other policy selecting a session pod widens its egress. "
        f"Accepted: those condukt-egress generates ({LABEL_MANAGED_BY}={MANAGED_BY}, named "
        f"{prefix}<session label>, selecting exactly that session's pods, no ingress) and those "
        "named in the guard's allowed_network_policies (--allowed-network-policy): add it there "
        "if you accept that it may widen session egress"
    )
    return _policy(
        "network-policies",
        [_rule("networkpolicies", ["CREATE", "UPDATE"], group="networking.k8s.io")],
        [],
        variables,
        [
            _validation(
                f"{allowed} || ({ours})",
                f"network-policies: this NetworkPolicy is not one condukt-egress generated. {fix}",
                _message(
                    "network-policies: NetworkPolicy ",
                    _Cel("object.metadata.name"),
                    f" is not one condukt-egress generated. {fix}",
                ),
            )
        ],
    )


def _only_session_pods_policy() -> JSON:
    return _policy(
        "only-session-pods",
        [_rule("pods", ["CREATE"])],
        [],
        [],
        [
            _validation(
                _label("object", LABEL_SESSION),
                f"only-session-pods: this namespace holds only session pods; every pod needs "
                f"the {LABEL_SESSION} label of its session (and its injection): create it "
                "through condukt-egress, or run it in a namespace the guard does not bind",
                _message(
                    "only-session-pods: pod ",
                    _Cel("object.metadata.name"),
                    f" has no {LABEL_SESSION} label, and this namespace holds only session "
                    "pods: create it through condukt-egress, or run it in a namespace the guard "
                    "does not bind",
                ),
            )
        ],
    )


def _rule(resource: str, operations: list[str], group: str = "") -> JSON:
    return {
        "apiGroups": [group],
        "apiVersions": ["v1"],
        "resources": [resource],
        "operations": operations,
    }


def _policy(
    rule: str,
    resource_rules: list[JSON],
    match_conditions: list[JSON],
    variables: list[JSON],
    validations: list[JSON],
) -> JSON:
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


def _binding(policy: JSON, args: SandboxGuardArgs) -> JSON:
    name = policy["metadata"]["name"]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
        "spec": {
            "policyName": name,
            "validationActions": list(_ACTIONS[args.mode]),
            "matchResources": {"namespaceSelector": {"matchLabels": dict(args.namespace_labels)}},
        },
    }


def guard_manifests(args: SandboxGuardArgs) -> list[JSON]:
    """The guard's policies and bindings, each policy followed by its binding.

    Args:
        args: Namespaces, rules and the session options the guard accepts.

    Returns:
        Plain dicts with Kubernetes field names, ready for ``kubectl apply``
        or a Pulumi resource; per rule turned on, one ``ValidatingAdmissionPolicy``
        and its ``ValidatingAdmissionPolicyBinding`` (``session-pods`` has a
        second pair, ``session-pods-status``, for label changes through
        ``pods/status``).
    """
    builders: Mapping[GuardRule, Callable[[], list[JSON]]] = {
        "session-pods": lambda: [_session_pods_policy(args), _session_pod_status_policy()],
        "ephemeral-containers": lambda: [_ephemeral_policy()],
        "network-policies": lambda: [_network_policies_policy(args)],
        "only-session-pods": lambda: [_only_session_pods_policy()],
    }
    out: list[JSON] = []
    for rule in args.rules:
        for policy in builders[rule]():
            out += [policy, _binding(policy, args)]
    return out
