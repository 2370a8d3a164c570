"""What condukt-egress puts into a pod: its containers, volumes and in-pod filter rules.

The netfilter init container (the redirect), the filter init container (the
in-pod rules that keep the sidecar's ports for the redirect and the
port-forward path), the sidecar itself, the Secret-backed volumes, and the
trust-store mounts and CA variables of workspace containers. Pure builders.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from condukt_egress import compat, contract, dns
from condukt_egress._hardening import restricted_context
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.naming import (
    CONFIG_VOLUME,
    DNS_VOLUME,
    FILTER_CONTAINER,
    FILTER_VOLUME,
    NETFILTER_CONTAINER,
    SIDECAR_CONTAINER,
    TRUST_VOLUME,
)

__all__ = [
    "CA_ENV_VARS",
    "CONFIG_DIGEST_ENV",
    "FILTER_CAPABILITIES",
    "FILTER_DIR",
    "FILTER_RULES6_FILE",
    "FILTER_RULES_FILE",
    "FILTER_SCRIPT",
    "PORT_FORWARD_UID",
    "TRUST_BUNDLE_PATHS",
    "WORKSPACE_TRUST_DIR",
    "ca_env",
    "config_digest",
    "filter_container",
    "filter_rules",
    "filter_rules_ipv6",
    "listen_probe_command",
    "netfilter_container",
    "session_volumes",
    "sidecar_container",
    "trust_mounts",
    "workspace_trust_files",
]

JSON = dict[str, Any]

CONFIG_DIGEST_ENV: Final = "CONDUKT_SESSION_CONFIG_DIGEST"
"""Sidecar env var carrying :func:`config_digest`: a policy change alters the pod
template, so ``pulumi up`` replaces or rolls the pod (the Secret is immutable
and the sidecar reads the policy once)."""

FILTER_RULES_FILE: Final = "filter.rules"
"""Secret key and file name of the ``iptables-restore`` input."""
FILTER_RULES6_FILE: Final = "filter6.rules"
FILTER_DIR: Final = "/etc/condukt-filter"
FILTER_SCRIPT: Final = (
    f"{contract.IPTABLES_RESTORE} --noflush {FILTER_DIR}/{FILTER_RULES_FILE} && "
    f"{{ ip6tables-restore --noflush {FILTER_DIR}/{FILTER_RULES6_FILE} || "
    "[ ! -e /proc/net/if_inet6 ]; }"
)
"""The filter container's whole job (``/bin/sh`` is dash in ``debian:bookworm-slim``). The IPv6
rules may fail only on a node without IPv6, where there is no ``[::1]`` to protect."""
FILTER_CAPABILITIES: Final = ("NET_ADMIN",)
"""What the filter container needs: ``iptables-restore`` talks netlink (nft backend).
No raw sockets."""
WORKSPACE_TRUST_DIR: Final = "/etc/condukt"
TRUST_BUNDLE_PATHS: Final = ("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/cert.pem")
"""System trust-store files of Debian/Ubuntu/Alpine and of LibreSSL/macOS-style images."""

CA_ENV_VARS: Final = (
    ("NODE_EXTRA_CA_CERTS", contract.CA_CERT_FILE),  # additive: the CA alone
    ("REQUESTS_CA_BUNDLE", contract.BUNDLE_FILE),  # these replace the store: the bundle
    ("SSL_CERT_FILE", contract.BUNDLE_FILE),
    ("PIP_CERT", contract.BUNDLE_FILE),
    ("CURL_CA_BUNDLE", contract.BUNDLE_FILE),
    ("GIT_SSL_CAINFO", contract.BUNDLE_FILE),
)
"""The six CA variables of the original glue, and the file each points at."""

PORT_FORWARD_UID: Final = 0
"""The uid of port-forward connections: containerd and CRI-O dial ``localhost:<port>``
inside the pod's network namespace from their own (root) process."""


def config_digest(args: SandboxEgressArgs) -> str:
    """Digest of everything the sidecar reads once at start, CA material aside.

    It changes with the policy, the trust bundle choice, the CA profile (a
    new profile makes pulumi-tls mint a new CA) and the DNS filter options
    (the resolver reads its Corefile once too), so the pod template changes.
    """
    material = json.dumps(
        {
            "policy": args.egress_policy.to_wire(),
            "trust_bundle": args.trust_bundle,
            "client_compat": args.client_compat,
            "ca": [args.ca_key_algorithm, args.ca_validity_hours],
            "session": args.session_id,
            "dns": [args.dns_filter, list(args.dns_decide_hosts)],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def workspace_trust_files(args: SandboxEgressArgs) -> dict[str, str]:
    """The files of the workspace's trust volume, each with the Secret key it shows.

    With ``session-ca`` the bundle *is* the CA certificate, so the Secret
    holds it once and the volume shows ``ca.pem`` under both names; with
    ``public-roots`` the bundle is its own key. The client compatibility
    profile, when on, adds its OpenSSL config, Python ``sitecustomize`` and
    JVM trust store. Never the CA key.
    """
    bundle_key = (
        contract.BUNDLE_FILE if args.trust_bundle == "public-roots" else contract.CA_CERT_FILE
    )
    files = {contract.CA_CERT_FILE: contract.CA_CERT_FILE, contract.BUNDLE_FILE: bundle_key}
    if args.client_compat:
        files[compat.OPENSSL_CONF_FILE] = compat.OPENSSL_CONF_FILE
        files[f"{compat.PYTHON_DIR}/{compat.SITECUSTOMIZE_FILE}"] = compat.SITECUSTOMIZE_FILE
        files[compat.JAVA_TRUSTSTORE_FILE] = compat.JAVA_TRUSTSTORE_FILE
    return files


def netfilter_container(args: SandboxEgressArgs) -> JSON:
    """The init container that installs the 80/443 redirect, then exits."""
    context = restricted_context(0, 0)
    context["runAsNonRoot"] = False
    # The image runs the iptables binary, which may take its lock file in
    # /run; this container is trusted and exits before any workspace starts.
    context["readOnlyRootFilesystem"] = False
    context["capabilities"] = {"drop": ["ALL"], "add": list(contract.NETFILTER_CAPABILITIES)}
    return {
        "name": NETFILTER_CONTAINER,
        "image": args.sidecar_image,
        "command": [contract.BINARY],
        "args": contract.netfilter_args(proxy_port=args.proxy_port, sidecar_uid=args.sidecar_uid),
        "securityContext": context,
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
    }


def listen_probe_command(port: int) -> list[str]:
    """An exec probe that is true once a socket LISTENs on ``0.0.0.0:port``.

    It reads ``/proc/net/tcp`` (the pod's network namespace) instead of
    connecting: the sidecar treats every connection accepted on the proxy port
    as redirected workspace traffic (an event, a ``decision_request``, under
    ``default: allow`` a dial to itself), and the control port serves one peer
    at a time. The proxy binds its listener after the control channel, so
    this one line means both are up. ``grep`` is in the image
    (``debian:bookworm-slim``, upstream Dockerfile:48).
    """
    # /proc/net/tcp: "  sl: local_address rem_address st ...", hex, st 0A = LISTEN.
    return [
        "grep",
        "-qE",
        f"^ *[0-9]+: 00000000:{port:04X} 00000000:0000 0A ",
        "/proc/net/tcp",
    ]


def filter_rules(args: SandboxEgressArgs) -> str:
    """The in-pod ``filter`` rules, as ``iptables-restore --noflush`` input.

    ``netfilter-setup`` only adds ``nat OUTPUT`` rules (upstream
    src/netfilter.rs:66-111): loopback and the sidecar uid RETURN, then TCP
    80 and 443 are REDIRECTed to the proxy. Loopback is exempt, and the proxy
    listens on every address, so without these rules a workspace process
    reaches both sidecar ports directly. In ``filter OUTPUT`` (after ``nat``):

    0. Neither port from outside the pod (kubelet, the node, hostNetwork
       pods, which most CNIs exempt from NetworkPolicy): only redirected
       in-pod traffic and in-pod port-forward are the sidecar's business.
    1. The control port over loopback only from uid 0, the port-forward path
       (the container runtime dials ``localhost`` in the pod's namespace):
       a workspace can neither answer its own ``decision_request`` s nor hold
       the sidecar's single peer slot.
    2. The proxy port over loopback only for connections the redirect made
       (conntrack state DNAT): no connection without an original destination.
    3. With plain HTTP off, the sidecar's own dials to port 80 are reset at
       once, so an allowed ``http://`` request fails instead of hanging
       until the dial times out (the NetworkPolicy drops it silently).

    Rejections answer with a TCP reset: the client fails at once. With the
    DNS filter on, the file starts with the ``nat`` redirect of every DNS
    query but the resolver's to it (:func:`condukt_egress.dns.redirect_rules`).
    """
    reject = "-j REJECT --reject-with tcp-reset"
    rules = [
        "*filter",
        f"-A INPUT ! -i lo -p tcp --dport {args.proxy_port} {reject}",
        f"-A INPUT ! -i lo -p tcp --dport {args.control_port} {reject}",
        f"-A OUTPUT -o lo -p tcp --dport {args.control_port} "
        f"-m owner ! --uid-owner {PORT_FORWARD_UID} {reject}",
        f"-A OUTPUT -o lo -p tcp --dport {args.proxy_port} -m conntrack ! --ctstate DNAT {reject}",
    ]
    if not args.allow_plain_http:
        rules.append(
            f"-A OUTPUT -p tcp --dport 80 -m owner --uid-owner {args.sidecar_uid} {reject}"
        )
    rules.append("COMMIT")
    redirect = dns.redirect_rules() if args.dns_filter != "off" else ""
    return redirect + "\n".join(rules) + "\n"


def filter_rules_ipv6(args: SandboxEgressArgs) -> str:
    """The IPv6 half of :func:`filter_rules`: no in-pod connection to ``[::1]`` sidecar ports.

    The sidecar listens on IPv4 only, so a workspace could bind ``[::1]:<control
    port>`` and be the "sidecar" for a runtime that dials ``localhost`` as IPv6
    first (CRI-O resolves it serially); refused, the runtime goes on to
    127.0.0.1. With the DNS filter on, IPv6 DNS from anyone but the resolver
    is refused too (:func:`condukt_egress.dns.redirect_rules_ipv6`).
    """
    ours = (
        "*filter\n"
        f"-A OUTPUT -o lo -p tcp -m multiport --dports {args.proxy_port},{args.control_port} "
        "-j REJECT --reject-with tcp-reset\n"
        "COMMIT\n"
    )
    return ours + (dns.redirect_rules_ipv6() if args.dns_filter != "off" else "")


def filter_container(args: SandboxEgressArgs) -> JSON:
    """The init container that installs :func:`filter_rules`, then exits.

    Same image as the sidecar (it ships ``iptables``); root with
    ``NET_ADMIN`` only; it runs after the netfilter init container and before
    the sidecar and any user code.
    """
    context = restricted_context(0, 0)
    context["runAsNonRoot"] = False
    # iptables' nft backend (the image's) takes no /run/xtables.lock: read-only is fine.
    context["capabilities"] = {"drop": ["ALL"], "add": list(FILTER_CAPABILITIES)}
    return {
        "name": FILTER_CONTAINER,
        "image": args.sidecar_image,
        "command": ["/bin/sh", "-c", FILTER_SCRIPT],
        "securityContext": context,
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        "volumeMounts": [{"name": FILTER_VOLUME, "mountPath": FILTER_DIR, "readOnly": True}],
    }


def sidecar_container(args: SandboxEgressArgs) -> JSON:
    """The proxy container: native sidecar (init container) or plain container."""
    container: JSON = {
        "name": SIDECAR_CONTAINER,
        "image": args.sidecar_image,
        "command": [contract.BINARY],
        "args": contract.proxy_args(
            proxy_port=args.proxy_port,
            control_port=args.control_port,
            session_id=args.session_id,
        ),
        "env": [{"name": CONFIG_DIGEST_ENV, "value": config_digest(args)}],
        "ports": [
            {"name": "proxy", "containerPort": args.proxy_port, "protocol": "TCP"},
            {"name": "control", "containerPort": args.control_port, "protocol": "TCP"},
        ],
        "securityContext": restricted_context(args.sidecar_uid, args.sidecar_gid),
        "resources": {k: dict(v) for k, v in args.sidecar_resources.items()},
        "volumeMounts": [
            {"name": CONFIG_VOLUME, "mountPath": contract.CONFIG_DIR, "readOnly": True}
        ],
        "startupProbe": {
            "exec": {"command": listen_probe_command(args.proxy_port)},
            "periodSeconds": 1,
            "failureThreshold": 60,
        },
    }
    if args.native_sidecar:
        container["restartPolicy"] = "Always"
    return container


def session_volumes(args: SandboxEgressArgs) -> list[JSON]:
    """The Secret-backed volumes of a session pod: config, filter rules, trust.

    They name the Secret by :attr:`~condukt_egress.naming.SessionNames.secret_prefix`
    alone, which no Secret has: its name ends with a hash of its content, known
    with the CA, and :func:`~condukt_egress.session_objects.with_secret_name`
    binds it (the transform, ``render`` and ``inject --secret-name`` do).
    """
    secret = args.names.secret_prefix
    return [
        {
            # Only the sidecar mounts this volume; 0444 because kubelet makes the
            # files root-owned and the sidecar runs as a non-root uid.
            "name": CONFIG_VOLUME,
            "secret": {
                "secretName": secret,
                "defaultMode": 0o444,
                "items": [
                    {"key": k, "path": k}
                    for k in (contract.POLICY_FILE, contract.CA_CERT_FILE, contract.CA_KEY_FILE)
                ],
            },
        },
        {
            # Only the filter init container mounts this volume: its rules file.
            "name": FILTER_VOLUME,
            "secret": {
                "secretName": secret,
                "defaultMode": 0o444,
                "items": [{"key": k, "path": k} for k in (FILTER_RULES_FILE, FILTER_RULES6_FILE)],
            },
        },
        *(
            [
                {
                    # Only the resolver mounts this volume: its Corefile.
                    "name": DNS_VOLUME,
                    "secret": {
                        "secretName": secret,
                        "defaultMode": 0o444,
                        "items": [{"key": dns.COREFILE, "path": dns.COREFILE}],
                    },
                }
            ]
            if args.dns_filter != "off"
            else []
        ),
        {
            # What the workspace may see: the certificate and the bundle, no key.
            "name": TRUST_VOLUME,
            "secret": {
                "secretName": secret,
                "defaultMode": 0o444,
                "items": [
                    {"key": key, "path": path} for path, key in workspace_trust_files(args).items()
                ],
            },
        },
    ]


def trust_mounts() -> list[JSON]:
    """A workspace container's mounts of the trust volume, over the system trust stores."""
    mounts: list[JSON] = [
        {"name": TRUST_VOLUME, "mountPath": WORKSPACE_TRUST_DIR, "readOnly": True}
    ]
    mounts += [
        {"name": TRUST_VOLUME, "mountPath": p, "subPath": contract.BUNDLE_FILE, "readOnly": True}
        for p in TRUST_BUNDLE_PATHS
    ]
    return mounts


def ca_env() -> list[JSON]:
    """The CA variables of a workspace container (:data:`CA_ENV_VARS`)."""
    return [{"name": n, "value": f"{WORKSPACE_TRUST_DIR}/{f}"} for n, f in CA_ENV_VARS]
