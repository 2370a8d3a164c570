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

import copy
import hashlib
import json
import posixpath
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, Final

import certifi

from condukt_egress import contract
from condukt_egress.args import SandboxEgressArgs, validate_image
from condukt_egress.errors import ConfigError
from condukt_egress.naming import ANNOTATION_SESSION_ID, LABEL_MANAGED_BY, MANAGED_BY

__all__ = [
    "BYPASS_CAPABILITIES",
    "CA_ENV_VARS",
    "CA_FINGERPRINT_ENV",
    "CONFIG_DIGEST_ENV",
    "CONFIG_VOLUME",
    "DEFAULT_WORKSPACE_IMAGE",
    "NETFILTER_CONTAINER",
    "SIDECAR_CONTAINER",
    "SPECIAL_IPV4_RANGES",
    "TRUST_BUNDLE_PATHS",
    "TRUST_VOLUME",
    "WORKSPACE_TRUST_DIR",
    "bundle_pem",
    "ca_fingerprint",
    "check",
    "config_digest",
    "inject",
    "network_policy_manifest",
    "object_metadata",
    "secret_data",
    "secret_manifest",
    "with_ca_fingerprint",
    "workspace_pod_manifest",
]

JSON = dict[str, Any]

DEFAULT_WORKSPACE_IMAGE: Final = "python:3.13-slim"
"""Image of the workspace container the stack program and ``render`` declare."""

NETFILTER_CONTAINER: Final = "condukt-egress-init"
SIDECAR_CONTAINER: Final = "condukt-egress"
CONFIG_VOLUME: Final = "condukt-egress-config"
"""Sidecar-only volume: policy, CA certificate and CA key."""
TRUST_VOLUME: Final = "condukt-egress-trust"
"""Workspace volume: the CA certificate and the trust bundle, never the key."""
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

BYPASS_CAPABILITIES: Final = frozenset(
    {
        "ALL",
        "BPF",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "NET_ADMIN",
        "NET_RAW",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_ADMIN",
        "SYS_MODULE",
        "SYS_PTRACE",
        "SYS_RAWIO",
    }
)
"""Capabilities named in refusals as able to defeat the redirect or read the
sidecar. Every added capability is refused (no workspace container may add
any); this set only makes the message say why."""

_FORBIDDEN_POD_FIELDS: Final = ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace")
_OURS: Final = (NETFILTER_CONTAINER, SIDECAR_CONTAINER)
_OUR_VOLUMES: Final = (CONFIG_VOLUME, TRUST_VOLUME)


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

    It changes with the policy, the trust bundle choice and the CA profile (a
    new profile makes pulumi-tls mint a new CA), so the pod template changes.
    """
    material = json.dumps(
        {
            "policy": args.egress_policy.to_wire(),
            "trust_bundle": args.trust_bundle,
            "ca": [args.ca_key_algorithm, args.ca_validity_hours],
            "session": args.session_id,
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
        der = ssl.PEM_cert_to_DER_cert(ca_cert_pem.strip() + "\n")
    except ValueError:
        raise ConfigError(
            "ca_cert_pem", "is not a PEM certificate ('-----BEGIN CERTIFICATE-----')"
        ) from None
    return hashlib.sha256(der).hexdigest()


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


def bundle_pem(args: SandboxEgressArgs, ca_cert_pem: str) -> str:
    """The workspace trust bundle: the session CA, after certifi's roots if asked.

    Every TCP 443 flow out of the pod is intercepted and re-signed by the
    session CA, so the public roots only matter for ``public-roots`` users who
    want them for other reasons; they add ~250 KB to the Secret.
    """
    ca = ca_cert_pem if ca_cert_pem.endswith("\n") else ca_cert_pem + "\n"
    if args.trust_bundle == "public-roots":
        roots = certifi.contents()
        return roots + ("" if roots.endswith("\n") else "\n") + ca
    return ca


def secret_data(args: SandboxEgressArgs, ca_cert_pem: str, ca_key_pem: str) -> dict[str, str]:
    """The Secret's ``stringData``: policy, CA certificate, CA key, trust bundle.

    Raises:
        ConfigError: The key is not PKCS#8 PEM (the sidecar cannot load SEC1 keys).
    """
    if "-----BEGIN PRIVATE KEY-----" not in ca_key_pem:
        raise ConfigError(
            "ca_key_pem",
            "must be a PKCS#8 PEM key ('-----BEGIN PRIVATE KEY-----'); the sidecar cannot "
            "load SEC1/PKCS#1 keys: use pulumi-tls private_key_pem_pkcs8",
        )
    return {
        contract.POLICY_FILE: args.egress_policy.to_json(),
        contract.CA_CERT_FILE: ca_cert_pem,
        contract.CA_KEY_FILE: ca_key_pem,
        contract.BUNDLE_FILE: bundle_pem(args, ca_cert_pem),
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
            # What the workspace may see: the certificate and the bundle, no key.
            "name": TRUST_VOLUME,
            "secret": {
                "secretName": secret,
                "defaultMode": 0o444,
                "items": [
                    {"key": k, "path": k} for k in (contract.CA_CERT_FILE, contract.BUNDLE_FILE)
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


def _refuse_pod(spec: Mapping[str, Any], args: SandboxEgressArgs) -> None:
    """Refuse pod-level settings that bypass or expose the sidecar."""
    for name in _FORBIDDEN_POD_FIELDS:
        if spec.get(name):
            raise ConfigError(
                f"spec.{name}",
                "is true; a session pod must not share the node's or its containers' "
                f"namespaces, which would bypass or expose the egress sidecar: remove {name}",
            )
    if spec.get("ephemeralContainers"):
        raise ConfigError(
            "spec.ephemeralContainers",
            "is set; ephemeral containers are added by `kubectl debug`, never declared, and "
            "condukt-egress cannot harden them: remove ephemeralContainers",
        )
    context = spec.get("securityContext") or {}
    if context.get("runAsUser") == args.sidecar_uid:
        raise ConfigError(
            "spec.securityContext.runAsUser",
            f"is the sidecar uid {args.sidecar_uid}, whose traffic skips the proxy; "
            "run the workspace as another uid",
        )
    for field_ in ("runAsGroup", "fsGroup"):
        if context.get(field_) == args.sidecar_gid:
            raise ConfigError(
                f"spec.securityContext.{field_}",
                f"is the sidecar gid {args.sidecar_gid}; use another group for the workspace",
            )
    if args.sidecar_gid in (context.get("supplementalGroups") or ()):
        raise ConfigError(
            "spec.securityContext.supplementalGroups",
            f"contains the sidecar gid {args.sidecar_gid}; remove it",
        )
    if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
        raise ConfigError(
            "spec.securityContext.seccompProfile.type",
            "is Unconfined; use RuntimeDefault (or a Localhost profile) or leave it unset",
        )
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        raise ConfigError(
            "spec.securityContext.windowsOptions.hostProcess",
            "is true; a host process runs in the node's network: remove it",
        )
    for index, volume in enumerate(spec.get("volumes") or ()):
        where = f"spec.volumes[{index}] (volume {volume.get('name')!r})"
        if volume.get("name") in _OUR_VOLUMES:
            continue  # ours, from an earlier injection: compared in _merge_volumes
        if volume.get("hostPath") is not None:
            raise ConfigError(
                f"{where}.hostPath",
                "is set; a node path (e.g. the container runtime socket) lets the workspace "
                "escape the pod and its egress control: use an emptyDir or a "
                "PersistentVolumeClaim",
            )
        if _names_session_secret(volume, args):
            raise ConfigError(
                where,
                f"mounts the session Secret {args.names.secret!r}, which holds the CA key; "
                f"only the condukt-egress volumes may reference it: remove the volume",
            )


def _names_session_secret(volume: Mapping[str, Any], args: SandboxEgressArgs) -> bool:
    secret = args.names.secret
    if (volume.get("secret") or {}).get("secretName") == secret:
        return True
    sources = (volume.get("projected") or {}).get("sources") or ()
    return any((s.get("secret") or {}).get("name") == secret for s in sources)


def _refuse_container(container: Mapping[str, Any], where: str, args: SandboxEgressArgs) -> None:
    """Refuse a user container that could bypass the sidecar or read the CA key."""
    context = container.get("securityContext") or {}
    if context.get("privileged"):
        raise ConfigError(
            f"{where}.securityContext.privileged",
            "is true; a privileged workspace can rewrite the redirect rules: remove it",
        )
    if context.get("allowPrivilegeEscalation") is True:
        raise ConfigError(
            f"{where}.securityContext.allowPrivilegeEscalation",
            "is true; setuid binaries could become the sidecar uid: set it to false or remove it",
        )
    if context.get("runAsUser") == args.sidecar_uid:
        raise ConfigError(
            f"{where}.securityContext.runAsUser",
            f"is the sidecar uid {args.sidecar_uid}, whose traffic skips the proxy; "
            "run the workspace as another uid",
        )
    if context.get("runAsGroup") == args.sidecar_gid:
        raise ConfigError(
            f"{where}.securityContext.runAsGroup",
            f"is the sidecar gid {args.sidecar_gid}; use another group",
        )
    if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
        raise ConfigError(
            f"{where}.securityContext.seccompProfile.type",
            "is Unconfined; use RuntimeDefault (or a Localhost profile) or leave it unset",
        )
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        raise ConfigError(
            f"{where}.securityContext.windowsOptions.hostProcess",
            "is true; a host process runs in the node's network: remove it",
        )
    for cap in (context.get("capabilities") or {}).get("add") or ():
        normal = str(cap).upper().removeprefix("CAP_")
        if normal in args.unsafe_allowed_capabilities:
            continue
        why = (
            "it lets the workspace defeat the egress redirect or read the sidecar"
            if normal in BYPASS_CAPABILITIES
            else "workspace containers may add no capability at all"
        )
        raise ConfigError(
            f"{where}.securityContext.capabilities.add",
            f"adds {cap!r}: {why}. Remove it, or, accepting that risk, list it in "
            "SandboxEgressArgs.unsafe_allowed_capabilities",
        )
    for path, port in _network_checks(container):
        if port in (args.proxy_port, args.control_port, "proxy", "control"):
            raise ConfigError(
                f"{where}.{path}",
                f"connects to port {port!r}, the egress sidecar's proxy or control port: the "
                "sidecar takes every connection there for workspace traffic (or its only "
                "control peer); probe a port of your own container or use an exec probe",
            )
    secret = args.names.secret
    for index, env in enumerate(container.get("env") or ()):
        ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
        if ref == secret:
            raise ConfigError(
                f"{where}.env[{index}] ({env.get('name')!r}).valueFrom.secretKeyRef",
                f"reads the session Secret {secret!r}, which holds the CA key: remove it",
            )
    for index, source in enumerate(container.get("envFrom") or ()):
        if (source.get("secretRef") or {}).get("name") == secret:
            raise ConfigError(
                f"{where}.envFrom[{index}].secretRef",
                f"imports the session Secret {secret!r}, which holds the CA key: remove it",
            )
    for mount in container.get("volumeMounts") or ():
        if mount.get("name") == CONFIG_VOLUME:
            raise ConfigError(
                f"{where}.volumeMounts",
                f"mounts {CONFIG_VOLUME!r}, which holds the CA key; only the sidecar may",
            )


def _network_checks(container: Mapping[str, Any]) -> Iterable[tuple[str, object]]:
    """Yield ``(field path, port)`` of every probe or hook kubelet opens a connection for."""
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        for kind in ("tcpSocket", "httpGet", "grpc"):
            handler = (container.get(probe) or {}).get(kind)
            if isinstance(handler, Mapping):
                yield f"{probe}.{kind}.port", handler.get("port")
    for hook in ("postStart", "preStop"):
        for kind in ("tcpSocket", "httpGet"):
            handler = ((container.get("lifecycle") or {}).get(hook) or {}).get(kind)
            if isinstance(handler, Mapping):
                yield f"lifecycle.{hook}.{kind}.port", handler.get("port")


def _harden(container: JSON, pod_context: Mapping[str, Any]) -> None:
    """Fill in what a workspace container needs to be unable to bypass the sidecar.

    Only missing settings are filled in; stricter user settings are kept (a
    pod-level seccomp profile is inherited rather than overridden).
    """
    context: JSON = dict(container.get("securityContext") or {})
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


def _with_trust(container: JSON, where: str) -> None:
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
    container["env"] = env


def _user_containers(
    spec: Mapping[str, Any], args: SandboxEgressArgs, ours: Mapping[str, tuple[str, JSON]]
) -> Iterable[tuple[str, str, JSON]]:
    """Yield ``(list, where, container)`` for each user container; check ours are ours."""
    for kind in ("initContainers", "containers"):
        for index, raw in enumerate(spec.get(kind) or ()):
            container = dict(raw)
            name = container.get("name")
            if name in _OURS:
                expected_kind, expected = ours.get(name, ("", {}))
                if kind != expected_kind or _without_ca_fingerprint(container) != expected:
                    raise ConfigError(
                        f"spec.{kind}[{index}].name",
                        f"your container {name!r} clashes with the container condukt-egress "
                        "injects under that name; rename yours",
                    )
                continue  # ours, from an earlier injection: rebuilt by inject
            where = _where(kind, index, container)
            _refuse_container(container, where, args)
            yield kind, where, container


def check(pod_spec: Mapping[str, Any], args: SandboxEgressArgs) -> None:
    """Refuse a (possibly partial) pod spec that could bypass the sidecar; change nothing.

    This is every refusal of :func:`inject` without the injection, for specs
    that are merged into a pod rather than declaring one (``*Patch`` workloads).

    Raises:
        ConfigError: As :func:`inject`; the message names the field and the fix.
    """
    _refuse_pod(pod_spec, args)
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(pod_spec.get(kind) or ()):
            if container.get("name") in _OURS:
                raise ConfigError(
                    f"spec.{kind}[{index}].name",
                    f"{container.get('name')!r} is a condukt-egress container; a patch may not "
                    "change it: remove it from the patch",
                )
    for _ in _user_containers(pod_spec, args, {}):
        pass
    for index, volume in enumerate(pod_spec.get("volumes") or ()):
        if volume.get("name") in _OUR_VOLUMES:
            raise ConfigError(
                f"spec.volumes[{index}].name",
                f"{volume.get('name')!r} is a condukt-egress volume; a patch may not change it: "
                "remove it from the patch",
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
    _refuse_pod(spec, args)
    fingerprint = _ca_fingerprint_env(spec)
    ours_init = [netfilter_container(args)]
    ours_main: list[JSON] = []
    (ours_init if args.native_sidecar else ours_main).append(sidecar_container(args))
    ours = {c["name"]: ("initContainers", c) for c in ours_init}
    ours.update({c["name"]: ("containers", c) for c in ours_main})

    pod_context = spec.get("securityContext") or {}
    lists: dict[str, list[JSON]] = {"initContainers": [], "containers": []}
    for kind, where, container in _user_containers(spec, args, ours):
        _harden(container, pod_context)
        _with_trust(container, where)
        lists[kind].append(container)

    if not lists["containers"]:
        raise ConfigError("spec.containers", "is empty; declare the workspace container to protect")
    spec["initContainers"] = ours_init + lists["initContainers"]
    spec["containers"] = lists["containers"] + ours_main
    spec["volumes"] = _merge_volumes(spec.get("volumes") or (), _volumes(args))
    spec.setdefault("automountServiceAccountToken", False)
    spec.setdefault("enableServiceLinks", False)
    if fingerprint is not None:  # an earlier injection's CA: kept, so inject stays idempotent
        return with_ca_fingerprint(spec, fingerprint["value"])
    return spec


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
        command: Its command; default keeps the pod idle for ``kubectl exec``.
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
                "command": command or ["sleep", "infinity"],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
        ],
    }
    injected = inject(spec, args)
    if ca_cert_pem is not None:
        injected = with_ca_fingerprint(injected, ca_fingerprint(ca_cert_pem))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": injected}
