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
expression is built from the same builders and constants as the injection
(the containers of an injected template pod, the naming of
:func:`~condukt_egress.naming.session_names`), never from copied literals, and
uses only standard CEL macros and functions. This module holds the options,
the smaller policies and the bindings; ``_guard_session_pods`` builds the
``session-pods`` policies, from what ``_guard_injected`` reads off injected
template pods; ``_guard_cel`` holds the parts every policy is built from.

Example:
    >>> objects = guard_manifests(SandboxGuardArgs(allowed_network_policies=["default-deny"]))
    >>> [o["kind"] for o in objects][:2]
    ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from condukt_egress import _guard_cel as cel
from condukt_egress import checks, contract
from condukt_egress._cel import lit
from condukt_egress._guard_cel import POLICY_PREFIX
from condukt_egress._guard_session_pods import session_pod_status_policy, session_pods_policy
from condukt_egress.args import SandboxEgressArgs, validate_image
from condukt_egress.checks import Check
from condukt_egress.dns import DNS_IMAGE
from condukt_egress.errors import ConfigError
from condukt_egress.naming import LABEL_MANAGED_BY, LABEL_SESSION, MANAGED_BY
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

GuardRule = Literal["session-pods", "ephemeral-containers", "network-policies", "only-session-pods"]
"""One rule of the guard, hence one policy and one binding."""

GUARD_RULES: Final[tuple[GuardRule, ...]] = get_args(GuardRule)

GuardMode = Literal["deny", "warn"]
"""``deny`` refuses; ``warn`` only warns the client and records an audit annotation."""

GUARD_NAMESPACE_LABEL: Final = "egress.condukt.dev/guard"
"""Default namespace label key the guard's bindings select (value ``enforce``)."""

_ACTIONS: Final[Mapping[str, list[str]]] = {"deny": ["Deny"], "warn": ["Warn", "Audit"]}
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


def _strings(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(name, f"must be a list of strings, got {value!r}")
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(name, f"entries must be strings, got {item!r}")
    return tuple(value)


def _images(what: str, default: str) -> Check:
    """A check of a non-empty list of image references (``what``: ``sidecar image``)."""

    def check(name: str, value: object) -> tuple[str, ...]:
        images = _strings(name, value)
        if not images:
            raise ConfigError(name, f"must list at least one {what}, e.g. {default!r}")
        return tuple(validate_image(name, i, default) for i in images)

    return check


def _is_policy_name(text: str) -> bool:
    """Lower-case letters, digits, '-' and '.', starting and ending alphanumeric."""
    return (
        0 < len(text) <= 253
        and set(text) <= _DNS_SUBDOMAIN_CHARS
        and text[0].isalnum()
        and text[-1].isalnum()
    )


def _policy_names(name: str, value: object) -> tuple[str, ...]:
    """A list of NetworkPolicy names, each as its ``metadata.name`` spells it."""
    names = _strings(name, value)
    bad = [n for n in names if not _is_policy_name(n)]
    if bad:
        raise ConfigError(
            name,
            f"{bad[0]!r} is not a NetworkPolicy name (lower-case letters, digits, '-' and "
            "'.', starting and ending alphanumeric); give the metadata.name of the policy",
        )
    return names


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
            check=_policy_names,
        ),
    )
    sidecar_images: Sequence[str] = field(
        default=(contract.DEFAULT_IMAGE,),
        metadata=option(
            "A sidecar image session pods may run (the sessions' sidecar_image; pin digests).",
            what="a list of image references",
            flag="--sidecar-image",
            metavar="IMG",
            parse=str,
            check=_images("sidecar image", contract.DEFAULT_IMAGE),
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
            check=_images("CoreDNS image", DNS_IMAGE),
            doc_default=f"[CoreDNS {DNS_IMAGE.split(':')[1].split('@')[0]}, pinned by digest]",
        ),
    )
    proxy_port: int = field(
        default=contract.DEFAULT_PROXY_PORT,
        metadata=option("The sessions' proxy_port.", metavar="PORT"),
    )
    control_port: int = field(
        default=contract.DEFAULT_CONTROL_PORT,
        metadata=option("The sessions' control_port.", metavar="PORT"),
    )
    sidecar_uid: int = field(
        default=contract.DEFAULT_SIDECAR_UID,
        metadata=option("The sessions' sidecar_uid.", metavar="UID"),
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
            choices=get_args(GuardMode),
        ),
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        check_fields(self)  # each option's own check: labels, switches, images, mode
        if not self.rules:
            raise ConfigError(
                "session_pods",
                "every rule is off, so the guard would enforce nothing; turn at least one on",
            )
        # The session options are validated exactly as a session validates them.
        template = self.template(cel.TEMPLATE_IDS[0], native_sidecar=True)
        for name in ("proxy_port", "control_port", "sidecar_uid", "unsafe_allowed_capabilities"):
            set_(self, name, getattr(template, name))

    @property
    def rules(self) -> tuple[GuardRule, ...]:
        """The rules turned on, in :data:`GUARD_RULES` order: each is the switch of its name."""
        return tuple(r for r in GUARD_RULES if getattr(self, r.replace("-", "_")))

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


# --- the other policies ----------------------------------------------------------


def _ephemeral_policy() -> cel.JSON:
    return cel.admission_policy(
        "ephemeral-containers",
        [cel.resource_rule("pods/ephemeralcontainers", ["UPDATE"])],
        [{"name": "session-pod", "expression": cel.has_label("object", LABEL_SESSION)}],
        [],
        [
            cel.validation(
                "!has(object.spec.ephemeralContainers) "
                "|| size(object.spec.ephemeralContainers) == 0",
                "ephemeral-containers: `kubectl debug` containers cannot be added to a session "
                "pod: they are not injected or hardened and could bypass the egress sidecar; "
                "use kubectl exec into the workspace container, or debug a copy of the pod "
                f"without the {LABEL_SESSION} label",
            )
        ],
    )


def _network_policies_policy(args: SandboxGuardArgs) -> cel.JSON:
    prefix, suffix = cel.name_affixes("network_policy")
    label_lit = lit(LABEL_SESSION)
    variables = [
        {
            "name": "managed",
            "expression": f"{cel.has_label('object', LABEL_MANAGED_BY)} && "
            f"object.metadata.labels[{lit(LABEL_MANAGED_BY)}] == {lit(MANAGED_BY)}",
        },
        {
            "name": "session",
            "expression": f"{cel.has_label('object', LABEL_SESSION)} "
            f"? object.metadata.labels[{label_lit}] : ''",
        },
    ]
    ours = (
        "variables.managed && variables.session != '' && "
        f"object.metadata.name == {cel.affixed('variables.session', prefix, suffix)} && "
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
    allowed = f"object.metadata.name in {lit(list(args.allowed_network_policies))}"
    fix = (
        "NetworkPolicies add up, so any other policy selecting a session pod widens its egress. "
        f"Accepted: those condukt-egress generates ({LABEL_MANAGED_BY}={MANAGED_BY}, named "
        f"{prefix}<session label>, selecting exactly that session's pods, no ingress) and those "
        "named in the guard's allowed_network_policies (--allowed-network-policy): add it there "
        "if you accept that it may widen session egress"
    )
    return cel.admission_policy(
        "network-policies",
        [cel.resource_rule("networkpolicies", ["CREATE", "UPDATE"], group="networking.k8s.io")],
        [],
        variables,
        [
            cel.validation(
                f"{allowed} || ({ours})",
                f"network-policies: this NetworkPolicy is not one condukt-egress generated. {fix}",
                cel.message_expression(
                    "network-policies: NetworkPolicy ",
                    cel.Cel("object.metadata.name"),
                    f" is not one condukt-egress generated. {fix}",
                ),
            )
        ],
    )


def _only_session_pods_policy() -> cel.JSON:
    return cel.admission_policy(
        "only-session-pods",
        [cel.resource_rule("pods", ["CREATE"])],
        [],
        [],
        [
            cel.validation(
                cel.has_label("object", LABEL_SESSION),
                f"only-session-pods: this namespace holds only session pods; every pod needs "
                f"the {LABEL_SESSION} label of its session (and its injection): create it "
                "through condukt-egress, or run it in a namespace the guard does not bind",
                cel.message_expression(
                    "only-session-pods: pod ",
                    cel.Cel("object.metadata.name"),
                    f" has no {LABEL_SESSION} label, and this namespace holds only session "
                    "pods: create it through condukt-egress, or run it in a namespace the guard "
                    "does not bind",
                ),
            )
        ],
    )


def _binding(policy: cel.JSON, args: SandboxGuardArgs) -> cel.JSON:
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


def guard_manifests(args: SandboxGuardArgs) -> list[cel.JSON]:
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
    builders: Mapping[GuardRule, Callable[[], list[cel.JSON]]] = {
        "session-pods": lambda: [session_pods_policy(args), session_pod_status_policy()],
        "ephemeral-containers": lambda: [_ephemeral_policy()],
        "network-policies": lambda: [_network_policies_policy(args)],
        "only-session-pods": lambda: [_only_session_pods_policy()],
    }
    out: list[cel.JSON] = []
    for rule in args.rules:
        for policy in builders[rule]():
            out += [policy, _binding(policy, args)]
    return out
