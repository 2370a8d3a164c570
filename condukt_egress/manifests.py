"""Pure builders of every Kubernetes object of a session, and pod injection.

Nothing here knows Pulumi: functions take a :class:`SandboxEgressArgs` (and CA
PEM text where needed) and return plain dicts written with Kubernetes field
names, exactly as in YAML. The Pulumi component, the workload transform and
the offline ``render`` command all declare what these functions return, so
there is one source of truth for what a session looks like.

:func:`inject` is the heart of it: it adds the netfilter init container, the
sidecar and the trust-store mounts to a pod spec, hardens the user's
containers, refuses specs that could bypass the sidecar, and is idempotent.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from condukt_egress import compat, contract, dns, podrules
from condukt_egress._quantity import format_quantity, parse_quantity
from condukt_egress.args import SandboxEgressArgs, validate_image
from condukt_egress.errors import ConfigError
from condukt_egress.naming import (
    ANNOTATION_SESSION_ID,
    CONFIG_VOLUME,
    DNS_VOLUME,
    FILTER_CONTAINER,
    FILTER_VOLUME,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    MANAGED_PREFIX,
    NETFILTER_CONTAINER,
    OUR_CONTAINERS,
    OUR_VOLUMES,
    SIDECAR_CONTAINER,
    TRUST_VOLUME,
)
from condukt_egress.podrules import (
    APPARMOR_ANNOTATION_PREFIX,
    BYPASS_CAPABILITIES,
    SAFE_SYSCTLS,
)

MANAGED_SECRET_PREFIX: Final = MANAGED_PREFIX
"""Every Secret condukt-egress declares is named with this prefix."""

__all__ = [
    "APPARMOR_ANNOTATION_PREFIX",
    "BYPASS_CAPABILITIES",
    "CA_ENV_VARS",
    "CA_FINGERPRINT_ENV",
    "CONFIG_DIGEST_ENV",
    "CONFIG_VOLUME",
    "DEFAULT_WORKSPACE_IMAGE",
    "DEFAULT_WORKSPACE_UID",
    "FILTER_CAPABILITIES",
    "FILTER_CONTAINER",
    "FILTER_RULES6_FILE",
    "FILTER_RULES_FILE",
    "FILTER_SCRIPT",
    "FILTER_VOLUME",
    "MANAGED_SECRET_PREFIX",
    "NETFILTER_CONTAINER",
    "SAFE_SYSCTLS",
    "SIDECAR_CONTAINER",
    "SPECIAL_IPV4_RANGES",
    "TRUST_BUNDLE_PATHS",
    "TRUST_VOLUME",
    "WORKSPACE_IDLE_COMMAND",
    "WORKSPACE_TRUST_DIR",
    "bundle_pem",
    "ca_fingerprint",
    "check",
    "check_pod_metadata",
    "config_digest",
    "filter_rules",
    "filter_rules_ipv6",
    "harden_patch",
    "inject",
    "network_policy_manifest",
    "object_metadata",
    "secret_data",
    "secret_manifest",
    "with_ca_fingerprint",
    "workspace_pod_manifest",
    "workspace_trust_files",
]

JSON = dict[str, Any]

DEFAULT_WORKSPACE_IMAGE: Final = "python:3.13-slim"
"""Image of the workspace container the stack program and ``render`` declare."""

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
DEFAULT_WORKSPACE_UID: Final = 65532
"""The uid (and gid) workspace containers run as when neither the container nor the
pod names one: a non-root id, not the sidecar's, that no common image uses for root."""
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

CONFIG_DIGEST_ENV: Final = "CONDUKT_SESSION_CONFIG_DIGEST"
"""Sidecar env var carrying :func:`config_digest`: a policy change alters the pod
template, so ``pulumi up`` replaces or rolls the pod (the Secret is immutable
and the sidecar reads the policy once)."""

CA_FINGERPRINT_ENV: Final = "CONDUKT_SESSION_CA_SHA256"
"""Sidecar env var carrying :func:`ca_fingerprint` of the session CA: a new CA
(re-minted on expiry or ``--replace``) changes the pod template, so the pod is
replaced or rolled and the sidecar signs with the CA the workspace trusts."""

SPECIAL_IPV4_RANGES: Final = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
"""Never reachable through the 443/80 rule: private, shared, loopback,
link-local (cloud metadata), benchmarking, multicast and reserved ranges."""

_PEM_BLOCK: Final = re.compile(r"-----BEGIN CERTIFICATE-----\n.*?\n-----END CERTIFICATE-----", re.S)
PORT_FORWARD_UID: Final = 0
"""The uid of port-forward connections: containerd and CRI-O dial ``localhost:<port>``
inside the pod's network namespace from their own (root) process."""


def object_metadata(args: SandboxEgressArgs, name: str) -> JSON:
    """Metadata shared by the session's objects: name, namespace, labels, raw id."""
    names = args.names
    return {
        "name": name,
        "namespace": args.namespace,
        "labels": {LABEL_MANAGED_BY: MANAGED_BY, names.label_key: names.label_value},
        "annotations": {ANNOTATION_SESSION_ID: args.session_id},
    }


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


def ca_fingerprint(ca_cert_pem: str) -> str:
    """SHA-256 of the CA certificate's DER form, lower-case hex.

    The value ``openssl x509 -noout -fingerprint -sha256`` prints (without
    colons), so an operator can compare a running pod with ``caCertPem``.

    Raises:
        ConfigError: ``ca_cert_pem`` holds no PEM certificate.
    """
    try:
        der = _pem_to_der(ca_cert_pem.strip() + "\n")
    except ValueError:
        raise ConfigError(
            "ca_cert_pem", "is not a PEM certificate ('-----BEGIN CERTIFICATE-----')"
        ) from None
    return hashlib.sha256(der).hexdigest()


_PEM_HEADER: Final = "-----BEGIN CERTIFICATE-----"
_PEM_FOOTER: Final = "-----END CERTIFICATE-----"


def _pem_to_der(pem: str) -> bytes:
    """``ssl.PEM_cert_to_DER_cert``, rule for rule, without importing ``ssl`` (8 ms).

    Raises:
        ValueError: No certificate header or footer, non-ASCII text, or bad base64.
    """
    text = pem.strip()
    if not pem.startswith(_PEM_HEADER) or not text.endswith(_PEM_FOOTER):
        raise ValueError("not a PEM certificate")
    return base64.decodebytes(text[len(_PEM_HEADER) : -len(_PEM_FOOTER)].encode("ascii"))


def with_ca_fingerprint(pod_spec: Mapping[str, Any], fingerprint: Any) -> JSON:
    """``pod_spec`` (injected) with the sidecar's :data:`CA_FINGERPRINT_ENV` set.

    ``fingerprint`` is :func:`ca_fingerprint` of the session CA, or (in the
    component) a Pulumi Output of it: any value, placed as the env var's value.
    Only that entry is new; the input is not modified.

    Raises:
        ConfigError: ``pod_spec`` has no condukt-egress sidecar (inject it first).
    """
    spec: JSON = dict(pod_spec)
    for kind in ("initContainers", "containers"):
        containers = [dict(c) for c in spec.get(kind) or ()]
        for container in containers:
            if container.get("name") == SIDECAR_CONTAINER:
                env = [e for e in container.get("env") or () if e.get("name") != CA_FINGERPRINT_ENV]
                container["env"] = [*env, {"name": CA_FINGERPRINT_ENV, "value": fingerprint}]
                spec[kind] = containers
                return spec
    raise ConfigError(
        "spec", f"has no {SIDECAR_CONTAINER!r} container; inject the session before adding its CA"
    )


def _ca_fingerprint_env(spec: Mapping[str, Any]) -> JSON | None:
    """The sidecar's CA fingerprint env entry in an injected spec, if any."""
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or ():
            if isinstance(container, Mapping) and container.get("name") == SIDECAR_CONTAINER:
                for entry in container.get("env") or ():
                    if isinstance(entry, Mapping) and entry.get("name") == CA_FINGERPRINT_ENV:
                        return dict(entry)
    return None


def _without_ca_fingerprint(container: JSON) -> JSON:
    env = container.get("env")
    if not isinstance(env, list):
        return container
    kept = [e for e in env if not (isinstance(e, Mapping) and e.get("name") == CA_FINGERPRINT_ENV)]
    return {**container, "env": kept}


@functools.cache
def _public_roots() -> str:
    """Certifi's Mozilla roots, certificates only: its comments are a quarter of the bytes."""
    import certifi  # noqa: PLC0415 - only public-roots sessions need it

    return "".join(f"{block}\n" for block in _PEM_BLOCK.findall(certifi.contents()))


def bundle_pem(args: SandboxEgressArgs, ca_cert_pem: str) -> str:
    """The workspace trust bundle: the session CA, after certifi's roots if asked.

    Every TCP 443 flow out of the pod is intercepted and re-signed by the
    session CA, so the public roots only matter for ``public-roots`` users who
    want them for other reasons; they add ~180 KB to the Secret.
    """
    ca = ca_cert_pem if ca_cert_pem.endswith("\n") else ca_cert_pem + "\n"
    if args.trust_bundle == "public-roots":
        return _public_roots() + ca
    return ca


def workspace_trust_files(args: SandboxEgressArgs) -> dict[str, str]:
    """The files of the workspace's trust volume, each with the Secret key it shows.

    With ``session-ca`` the bundle *is* the CA certificate, so the Secret
    holds it once and the volume shows ``ca.pem`` under both names; with
    ``public-roots`` the bundle is its own key. The client compatibility
    profile, when on, adds its OpenSSL config and Python ``sitecustomize``.
    """
    bundle_key = (
        contract.BUNDLE_FILE if args.trust_bundle == "public-roots" else contract.CA_CERT_FILE
    )
    files = {contract.CA_CERT_FILE: contract.CA_CERT_FILE, contract.BUNDLE_FILE: bundle_key}
    if args.client_compat:
        files[compat.OPENSSL_CONF_FILE] = compat.OPENSSL_CONF_FILE
        files[f"{compat.PYTHON_DIR}/{compat.SITECUSTOMIZE_FILE}"] = compat.SITECUSTOMIZE_FILE
    return files


def secret_data(args: SandboxEgressArgs, ca_cert_pem: str, ca_key_pem: str) -> dict[str, str]:
    """The Secret's ``stringData``: policy, CA certificate, CA key and, if it differs, the bundle.

    Raises:
        ConfigError: The key is not PKCS#8 PEM (the sidecar cannot load SEC1 keys).
    """
    if "-----BEGIN PRIVATE KEY-----" not in ca_key_pem:
        raise ConfigError(
            "ca_key_pem",
            "must be a PKCS#8 PEM key ('-----BEGIN PRIVATE KEY-----'); the sidecar cannot "
            "load SEC1/PKCS#1 keys: use pulumi-tls private_key_pem_pkcs8",
        )
    data = {
        contract.POLICY_FILE: args.egress_policy.to_json(),
        contract.CA_CERT_FILE: ca_cert_pem,
        contract.CA_KEY_FILE: ca_key_pem,
        FILTER_RULES_FILE: filter_rules(args),
        FILTER_RULES6_FILE: filter_rules_ipv6(args),
        **_compat_files(args),
    }
    if args.dns_filter != "off":
        data[dns.COREFILE] = dns.corefile(
            args.egress_policy, mode=args.dns_filter, decide_hosts=args.dns_decide_hosts
        )
    if workspace_trust_files(args)[contract.BUNDLE_FILE] == contract.BUNDLE_FILE:
        data[contract.BUNDLE_FILE] = bundle_pem(args, ca_cert_pem)
    return data


def _compat_files(args: SandboxEgressArgs) -> dict[str, str]:
    if not args.client_compat:
        return {}
    return {
        compat.OPENSSL_CONF_FILE: compat.openssl_config(),
        compat.SITECUSTOMIZE_FILE: compat.sitecustomize_source(),
    }


def secret_manifest(args: SandboxEgressArgs, string_data: Any) -> JSON:
    """The immutable Secret delivering the CA and the policy to the sidecar.

    Args:
        args: The session.
        string_data: The Secret's ``stringData``: :func:`secret_data` itself,
            or (in the component) a Pulumi Output that resolves to it.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_metadata(args, args.names.secret),
        "type": "Opaque",
        "immutable": True,
        "stringData": string_data,
    }


def network_policy_manifest(args: SandboxEgressArgs) -> JSON:
    """The NetworkPolicy that leaves the sidecar as the pod's only way out.

    No ingress at all (the control port has no authentication; port-forward
    is not subject to NetworkPolicy), DNS only to the cluster DNS pods, TCP 443
    (and 80 if opted in) only to public IPv4, no IPv6, plus the explicit
    unproxied destinations.
    """
    names = args.names
    dns_peers: list[JSON] = [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": args.dns_namespace}
            },
            "podSelector": {"matchLabels": dict(args.dns_pod_labels)},
        }
    ]
    if args.node_local_dns:
        dns_peers.append({"ipBlock": {"cidr": f"{args.node_local_dns}/32"}})
    web_ports = [443, 80] if args.allow_plain_http else [443]
    except_ = list(SPECIAL_IPV4_RANGES)
    except_ += [c for c in args.cluster_cidrs if c not in except_ and c != "0.0.0.0/0"]
    egress: list[JSON] = [
        {
            "to": dns_peers,
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": except_}}],
            "ports": [{"protocol": "TCP", "port": p} for p in web_ports],
        },
    ]
    for dest in args.unproxied_egress:
        assert not isinstance(dest, Mapping)  # noqa: S101 - normalised by SandboxEgressArgs
        egress.append(
            {
                "to": [{"ipBlock": {"cidr": dest.cidr}}],
                "ports": [{"protocol": dest.protocol, "port": p} for p in dest.ports],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_metadata(args, names.network_policy),
        "spec": {
            "podSelector": {"matchLabels": dict(names.pod_labels)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress,
        },
    }


def _restricted_context(uid: int, gid: int) -> JSON:
    return {
        "runAsUser": uid,
        "runAsGroup": gid,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def netfilter_container(args: SandboxEgressArgs) -> JSON:
    """The init container that installs the 80/443 redirect, then exits."""
    context = _restricted_context(0, 0)
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
    context = _restricted_context(0, 0)
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
        "securityContext": _restricted_context(args.sidecar_uid, args.sidecar_gid),
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


def _volumes(args: SandboxEgressArgs) -> list[JSON]:
    secret = args.names.secret
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


def _trust_mounts() -> list[JSON]:
    mounts: list[JSON] = [
        {"name": TRUST_VOLUME, "mountPath": WORKSPACE_TRUST_DIR, "readOnly": True}
    ]
    mounts += [
        {"name": TRUST_VOLUME, "mountPath": p, "subPath": contract.BUNDLE_FILE, "readOnly": True}
        for p in TRUST_BUNDLE_PATHS
    ]
    return mounts


def _ca_env() -> list[JSON]:
    return [{"name": n, "value": f"{WORKSPACE_TRUST_DIR}/{f}"} for n, f in CA_ENV_VARS]


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


def _merge_volumes(existing: Iterable[Mapping[str, Any]], ours: Iterable[JSON]) -> list[JSON]:
    """Append ``ours`` to ``existing``; an equal volume of the same name is ours already."""
    result = [dict(item) for item in existing]
    by_name = {item.get("name"): (index, item) for index, item in enumerate(result)}
    for volume in ours:
        index, current = by_name.get(volume["name"], (-1, None))
        if current is None:
            result.append(volume)
        elif current != volume:
            raise ConfigError(
                f"spec.volumes[{index}].name",
                f"your volume {volume['name']!r} clashes with the volume condukt-egress "
                "injects under the same name; rename yours",
            )
    return result


def _under(path: str, directory: str) -> bool:
    normal = posixpath.normpath(path or "/")
    return normal == directory or normal.startswith(directory + "/")


def _with_trust(container: JSON, where: str, args: SandboxEgressArgs) -> None:
    mounts = [dict(m) for m in container.get("volumeMounts") or ()]
    for ours in _trust_mounts():
        clash = next(
            (m for m in mounts if posixpath.normpath(str(m.get("mountPath"))) == ours["mountPath"]),
            None,
        )
        if clash is None:
            mounts.append(ours)
        elif clash != ours:
            raise ConfigError(
                f"{where}.volumeMounts",
                f"mounts volume {clash.get('name')!r} at {ours['mountPath']!r}, where "
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
    env += [e for e in _ca_env() if e["name"] not in present]
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
                if kind != expected_kind or _without_ca_fingerprint(container) != expected:
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
        same result as injecting once.

    Raises:
        ConfigError: The spec could bypass the sidecar (privileged, host
            namespaces or paths, ephemeral containers, sidecar uid/gid, added
            capabilities, references to the session Secret) or clashes with a
            name or path condukt-egress uses. The message names the field.
    """
    spec: JSON = copy.deepcopy(dict(pod_spec))
    podrules.refuse_pod(spec, podrules.RuleContext(args))
    fingerprint = _ca_fingerprint_env(spec)
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
    spec["volumes"] = _merge_volumes(spec.get("volumes") or (), _volumes(args))
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
            carries (see :data:`CA_FINGERPRINT_ENV`). The component leaves it
            out here: its workload transform adds the fingerprint as an Output.
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
        injected = with_ca_fingerprint(injected, ca_fingerprint(ca_cert_pem))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": injected}
