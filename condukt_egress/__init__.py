"""condukt-egress: per-session, audited, policy-controlled egress for agent sandbox pods.

Declare one :class:`SandboxEgress` per session in a Pulumi program; it mints a
per-session CA, delivers it and the policy to the ``condukt-egress`` sidecar in
an immutable Secret, and locks the pod's egress with a NetworkPolicy so the
sidecar is the only way out. Inject the sidecar into the session's workload::

    import pulumi_kubernetes as k8s
    from condukt_egress import SandboxEgress, SandboxEgressArgs, EgressPolicy, allow

    policy = EgressPolicy(rules=[allow("api.github.com", "*.openai.com")])
    egress = SandboxEgress("s-42", SandboxEgressArgs(session_id="42", policy=policy))
    spec = {"containers": [{"name": "ws", "image": "python:3.13-slim"}]}
    k8s.core.v1.Pod("ws", metadata={"labels": egress.pod_labels},
                    spec=egress.inject(spec), opts=egress.workload_options())

Errors all derive from :class:`EgressError` (see :mod:`condukt_egress.errors`).

Importing the package is light: :class:`SandboxEgress` and the guard's classes,
and with them Pulumi, gRPC and protobuf, load on first use (PEP 562), so the
``render``, ``render-guard``, ``explain`` and ``events`` commands and a service
that only uses :class:`~condukt_egress.control.ControlClient` never load them.
"""

import importlib
import typing

from condukt_egress.args import CaKeyAlgorithm, SandboxEgressArgs, TrustBundle, UnproxiedEgress
from condukt_egress.dns import DnsFilter
from condukt_egress.errors import (
    AutomationError,
    ConfigError,
    ControlChannelError,
    EgressError,
    PolicyError,
)
from condukt_egress.naming import SessionNames, session_names
from condukt_egress.policy import DENY_ALL, EgressPolicy, Rule, Verdict, allow, decide, deny

if typing.TYPE_CHECKING:
    from condukt_egress.component import SandboxEgress
    from condukt_egress.guard import SandboxGuardArgs
    from condukt_egress.guard_component import SandboxGuard

_LAZY: typing.Final = {
    "SandboxEgress": "condukt_egress.component",
    "SandboxGuard": "condukt_egress.guard_component",
    "SandboxGuardArgs": "condukt_egress.guard",
}
"""Names loaded on first use: the Pulumi components (and with them Pulumi), and the
guard's builders, which only platform stacks need."""

__all__ = [
    "DENY_ALL",
    "AutomationError",
    "CaKeyAlgorithm",
    "ConfigError",
    "ControlChannelError",
    "DnsFilter",
    "EgressError",
    "EgressPolicy",
    "PolicyError",
    "Rule",
    "SandboxEgress",
    "SandboxEgressArgs",
    "SandboxGuard",
    "SandboxGuardArgs",
    "SessionNames",
    "TrustBundle",
    "UnproxiedEgress",
    "Verdict",
    "allow",
    "decide",
    "deny",
    "session_names",
]


def __getattr__(name: str) -> typing.Any:
    """Load the names of :data:`_LAZY` on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
