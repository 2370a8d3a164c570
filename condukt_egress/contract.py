"""The sidecar's wire contract, in one place.

Everything the ``ghcr.io/tuist/condukt-egress`` binary reads or writes that we
generate or parse is named here and nowhere else: its modes and flags, the
files it loads, its ports and uid, the policy JSON keys and the control-channel
frame names. The values follow release 1.5.1 (unchanged through 1.11.0).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BINARY",
    "BUNDLE_FILE",
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CONFIG_DIR",
    "CONTROL_QUEUE_FRAMES",
    "DEFAULT_ACTIONS",
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_DECIDE_TIMEOUT_MS",
    "DEFAULT_IMAGE",
    "DEFAULT_MAX_BODY_CAPTURE",
    "DEFAULT_PROXY_PORT",
    "DEFAULT_SIDECAR_UID",
    "EVENT_KINDS",
    "FRAME_DECISION",
    "FRAME_DECISION_REQUEST",
    "FRAME_EVENT",
    "IPTABLES_RESTORE",
    "MODE_NETFILTER_SETUP",
    "MODE_PROXY",
    "NETFILTER_CAPABILITIES",
    "POLICY_FILE",
    "REASON_DECIDER_DENY",
    "REASON_DECIDER_PREFIX",
    "REASON_DECIDER_TIMEOUT",
    "REASON_DEFAULT_DENY",
    "REASON_MATCHED_DENY_LIST",
    "REDIRECTED_PORTS",
    "RULE_TYPES",
    "netfilter_args",
    "proxy_args",
]

DEFAULT_IMAGE: Final = "ghcr.io/tuist/condukt-egress:1.5.1"
"""The published sidecar image pinned by default."""

BINARY: Final = "condukt-egress"
"""The entrypoint inside the image."""

MODE_NETFILTER_SETUP: Final = "netfilter-setup"
"""Init mode: appends the iptables ``nat OUTPUT`` redirect rules, then exits."""

MODE_PROXY: Final = "proxy"
"""Long-lived mode: the egress proxy and its control channel."""

DEFAULT_PROXY_PORT: Final = 15001
DEFAULT_CONTROL_PORT: Final = 15002
DEFAULT_SIDECAR_UID: Final = 1337
"""The uid whose traffic the redirect exempts; the image's default user."""

REDIRECTED_PORTS: Final = (80, 443)
"""TCP ports the init container redirects to the proxy (IPv4 only)."""

NETFILTER_CAPABILITIES: Final = ("NET_ADMIN", "NET_RAW")
"""Capabilities ``netfilter-setup`` needs (it runs as uid 0)."""

IPTABLES_RESTORE: Final = "iptables-restore"
"""In the image (Dockerfile:54-58 installs Debian's ``iptables``, nft backend), the
same tool family ``netfilter-setup`` runs (src/netfilter.rs:39, ``iptables``)."""

CONFIG_DIR: Final = "/etc/condukt"
"""Where the sidecar's Secret volume is mounted."""

POLICY_FILE: Final = "policy.json"
CA_CERT_FILE: Final = "ca.pem"
CA_KEY_FILE: Final = "ca-key.pem"
BUNDLE_FILE: Final = "bundle.pem"
"""Secret keys; the sidecar reads the first three, the workspace trusts the last."""

# Policy JSON (read once at start).
RULE_TYPES: Final = ("allow", "deny", "decide")
DEFAULT_ACTIONS: Final = ("allow", "deny")
DEFAULT_MAX_BODY_CAPTURE: Final = 4096
DEFAULT_DECIDE_TIMEOUT_MS: Final = 5000

# Denial reasons the sidecar reports.
REASON_MATCHED_DENY_LIST: Final = "matched_deny_list"
REASON_DEFAULT_DENY: Final = "default_deny"
REASON_DECIDER_TIMEOUT: Final = "decider_timeout"
REASON_DECIDER_DENY: Final = "decider_deny"
REASON_DECIDER_PREFIX: Final = "decider: "

# Control channel (NDJSON, one frame per line, both directions).
FRAME_EVENT: Final = "event"
FRAME_DECISION_REQUEST: Final = "decision_request"
FRAME_DECISION: Final = "decision"
EVENT_KINDS: Final = (
    "request_opened",
    "request_allowed",
    "request_denied",
    "request_closed",
    "request_failed",
)
CONTROL_QUEUE_FRAMES: Final = 1024
"""Frames the sidecar queues while no peer is connected; more are dropped."""


def proxy_args(
    *,
    proxy_port: int,
    control_port: int,
    session_id: str,
) -> list[str]:
    """Return the sidecar's ``proxy`` arguments, with every path flag explicit.

    Every value travels in the same word as its flag, so any session id that
    :func:`condukt_egress.naming.validate_session_id` accepts (``-42``,
    ``--resume``) reaches the sidecar intact.

    Args:
        proxy_port: Port the redirected traffic lands on.
        control_port: Port of the NDJSON control channel.
        session_id: Raw session id, echoed in every event.
    """
    # One word per flag (``--flag=value``): clap reads a separate value word
    # that starts with ``-`` (``--session-id -42``) as another flag and exits
    # with a usage error (upstream src/main.rs:65, ``Cli::parse``).
    return [
        MODE_PROXY,
        f"--listen=0.0.0.0:{proxy_port}",
        f"--control-listen=0.0.0.0:{control_port}",
        f"--policy-file={CONFIG_DIR}/{POLICY_FILE}",
        f"--ca-cert-path={CONFIG_DIR}/{CA_CERT_FILE}",
        f"--ca-key-path={CONFIG_DIR}/{CA_KEY_FILE}",
        f"--session-id={session_id}",
    ]


def netfilter_args(*, proxy_port: int, sidecar_uid: int) -> list[str]:
    """Return the init container's ``netfilter-setup`` arguments.

    Args:
        proxy_port: Port the 80/443 redirect points at.
        sidecar_uid: The uid exempted from the redirect.
    """
    return [
        MODE_NETFILTER_SETUP,
        f"--proxy-port={proxy_port}",
        f"--sidecar-uid={sidecar_uid}",
    ]
