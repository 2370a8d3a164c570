"""Run sandbox sessions from a Python service: one Pulumi stack per session.

Agent platforms do not shell out to ``pulumi up``; they import this. Every
stack runs the shared program :func:`condukt_egress.program.session_program`
inline, with the same stack config a ``pulumi up`` user sets, so both create
the same session. State goes to a local file backend (no Pulumi Cloud login)
unless you pass another (S3, Azure Blob, GCS, Postgres, Pulumi Cloud; several
service replicas may share one); secrets (the session CA key, a kubeconfig)
are encrypted by the backend's default secrets provider or the one you name,
with a passphrase only where the passphrase is the provider. The ``pulumi``
CLI (3.203+) must be installed.

Example::

    from pathlib import Path
    from condukt_egress.automation import KubernetesSettings, SessionSpec, SessionStacks

    stacks = SessionStacks(
        state_dir="/var/lib/agents/pulumi",
        passphrase=secret_store["pulumi-passphrase"],
        kubernetes=KubernetesSettings(context="agents-cluster"),
    )
    out = stacks.up(SessionSpec("run-42", namespace="agents",
                                policy={"rules": [{"allow": ["api.github.com"]}]}))
    print(out.pod_name, out.pod_labels, out.ca_cert_pem)
    print(stacks.status("run-42").pod)        # phase, readiness, sidecar readiness
    stacks.destroy("run-42")
    stacks.reap(older_than=3600)               # idle sessions, from a periodic job

A request body maps onto a spec in one line, with errors naming the key:
``SessionSpec.from_config({"sessionId": "run-42", "namespace": "agents"})``.

Errors (all :class:`~condukt_egress.errors.AutomationError`, so all
:class:`~condukt_egress.errors.EgressError`)::

    AutomationError
    ├── PulumiCliError           no `pulumi` CLI on PATH, or too old
    ├── PassphraseRequiredError  the passphrase is the provider, and none was given
    ├── SessionNotFoundError     no stack for that session id
    ├── SessionBusyError         an operation on that session is already running
    └── SessionOperationError    up/preview/refresh/destroy failed (after a failed
                                 up the stack stays destroyable)

Bad options raise :class:`~condukt_egress.errors.ConfigError` /
:class:`~condukt_egress.errors.PolicyError` when the :class:`SessionSpec` is
built, before any stack exists.
"""

from condukt_egress.automation._async import AsyncSessionStacks
from condukt_egress.automation._errors import (
    PassphraseRequiredError,
    PulumiCliError,
    SessionBusyError,
    SessionError,
    SessionNotFoundError,
    SessionOperationError,
)
from condukt_egress.automation._operations import EngineOptions, OnEvent, OnOutput, Operation
from condukt_egress.automation._spec import (
    KUBERNETES_CONFIG_KEYS,
    PROJECT_NAME,
    STACK_PREFIX,
    KubernetesSettings,
    SessionOutputs,
    SessionSpec,
    SessionSummary,
    ca_certificate_urn,
    secret_config,
    stack_config,
    stack_config_json,
    stack_name,
)
from condukt_egress.automation._stacks import (
    DEFAULT_MAX_OPERATIONS,
    MIN_PULUMI_VERSION,
    SessionStacks,
    default_state_dir,
)
from condukt_egress.automation._status import OperationResult, PodState, SessionStatus

__all__ = [
    "DEFAULT_MAX_OPERATIONS",
    "KUBERNETES_CONFIG_KEYS",
    "MIN_PULUMI_VERSION",
    "PROJECT_NAME",
    "STACK_PREFIX",
    "AsyncSessionStacks",
    "EngineOptions",
    "KubernetesSettings",
    "OnEvent",
    "OnOutput",
    "Operation",
    "OperationResult",
    "PassphraseRequiredError",
    "PodState",
    "PulumiCliError",
    "SessionBusyError",
    "SessionError",
    "SessionNotFoundError",
    "SessionOperationError",
    "SessionOutputs",
    "SessionSpec",
    "SessionStacks",
    "SessionStatus",
    "SessionSummary",
    "ca_certificate_urn",
    "default_state_dir",
    "secret_config",
    "stack_config",
    "stack_config_json",
    "stack_name",
]
