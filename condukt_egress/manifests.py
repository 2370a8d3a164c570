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
from collections.abc import Iterable, Mapping
from typing import Any, Final

import certifi

from condukt_egress import contract
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.errors import ConfigError
from condukt_egress.naming import ANNOTATION_SESSION_ID, LABEL_MANAGED_BY, MANAGED_BY

__all__ = [
    "BYPASS_CAPABILITIES",
    "CA_ENV_VARS",
    "CONFIG_DIGEST_ENV",
    "CONFIG_VOLUME",
    "NETFILTER_CONTAINER",
    "SIDECAR_CONTAINER",
    "SPECIAL_IPV4_RANGES",
    "TRUST_BUNDLE_PATHS",
    "TRUST_VOLUME",
    "WORKSPACE_TRUST_DIR",
    "bundle_pem",
    "config_digest",
    "inject",
    "network_policy_manifest",
    "object_metadata",
    "secret_data",
    "secret_manifest",
    "workspace_pod_manifest",
]

JSON = dict[str, Any]

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
    context["capabilities"] = {"drop": ["ALL"], "add": list(contract.NETFILTER_CAPABILITIES)}
    return {
        "name": NETFILTER_CONTAINER,
        "image": args.image,
        "command": [contract.BINARY],
        "args": contract.netfilter_args(proxy_port=args.proxy_port, sidecar_uid=args.sidecar_uid),
        "securityContext": context,
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
    }


def sidecar_container(args: SandboxEgressArgs) -> JSON:
    """The proxy container: native sidecar (init container) or plain container."""
    container: JSON = {
        "name": SIDECAR_CONTAINER,
        "image": args.image,
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
            "tcpSocket": {"port": args.proxy_port},
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
    mounts: list[JSON] = [{"name": TRUST_VOLUME, "mountPath": WORKSPACE_TRUST_DIR, "readOnly": True}]
    mounts += [
        {"name": TRUST_VOLUME, "mountPath": p, "subPath": contract.BUNDLE_FILE, "readOnly": True}
        for p in TRUST_BUNDLE_PATHS
    ]
    return mounts


def _ca_env() -> list[JSON]:
    return [{"name": n, "value": f"{WORKSPACE_TRUST_DIR}/{f}"} for n, f in CA_ENV_VARS]


def _where(kind: str, index: int, container: Mapping[str, Any]) -> str:
    return f"spec.{kind}[{index}] (container {container.get('name')!r})"


def _check_pod(spec: Mapping[str, Any], args: SandboxEgressArgs) -> None:
    for name in _FORBIDDEN_POD_FIELDS:
        if spec.get(name):
            raise ConfigError(
                f"spec.{name}",
                "is true; a session pod must not share the node's or its containers' "
                f"namespaces, which would bypass or expose the egress sidecar: remove {name}",
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
    seccomp = (context.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        raise ConfigError(
            "spec.securityContext.seccompProfile.type",
            "is Unconfined; use RuntimeDefault (or a Localhost profile) or leave it unset",
        )


def _harden(container: JSON, where: str, args: SandboxEgressArgs) -> None:
    """Make a workspace container unable to bypass the sidecar, or refuse it.

    Stricter user settings are kept: we only fill in what is missing and
    refuse what is unsafe.
    """
    context: JSON = dict(container.get("securityContext") or {})
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
    capabilities: JSON = dict(context.get("capabilities") or {})
    for cap in capabilities.get("add") or ():
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
    drop = list(capabilities.get("drop") or [])
    if "ALL" not in drop:
        drop.insert(0, "ALL")
    capabilities["drop"] = drop
    context["capabilities"] = capabilities
    context.setdefault("allowPrivilegeEscalation", False)
    context.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    container["securityContext"] = context


def _merge_named(
    existing: Iterable[Mapping[str, Any]],
    ours: Iterable[JSON],
    field_: str,
    describe: str,
) -> list[JSON]:
    """Append ``ours`` to ``existing`` by name; equal duplicates are ours, others clash."""
    result = [dict(item) for item in existing]
    by_name = {item.get("name"): item for item in result}
    for item in ours:
        current = by_name.get(item["name"])
        if current is None:
            result.append(item)
        elif current != item:
            raise ConfigError(
                f"{field_} {item['name']!r}",
                f"clashes with the {describe} condukt-egress injects under the same name; "
                "rename yours",
            )
    return result


def _with_trust(container: JSON, where: str) -> None:
    mounts = [dict(m) for m in container.get("volumeMounts") or ()]
    for ours in _trust_mounts():
        clash = next((m for m in mounts if m.get("mountPath") == ours["mountPath"]), None)
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
        if mount.get("name") == CONFIG_VOLUME:
            raise ConfigError(
                f"{where}.volumeMounts",
                f"mounts {CONFIG_VOLUME!r}, which holds the CA key; only the sidecar may",
            )
    container["volumeMounts"] = mounts
    env = [dict(e) for e in container.get("env") or ()]
    present = {e.get("name") for e in env}
    # An explicit user value of a CA variable wins (documented): they chose it.
    env += [e for e in _ca_env() if e["name"] not in present]
    container["env"] = env


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
            namespaces, sidecar uid/gid, added capabilities) or clashes with
            a name or path condukt-egress uses. The message names the field.
    """
    spec: JSON = copy.deepcopy(dict(pod_spec))
    _check_pod(spec, args)
    ours_init = [netfilter_container(args)]
    ours_main: list[JSON] = []
    (ours_init if args.native_sidecar else ours_main).append(sidecar_container(args))
    all_ours = {c["name"]: c for c in ours_init + ours_main}

    lists: dict[str, list[JSON]] = {}
    for kind in ("initContainers", "containers"):
        user: list[JSON] = []
        for index, raw in enumerate(spec.get(kind) or ()):
            container = dict(raw)
            name = container.get("name")
            if name in _OURS:
                expected = all_ours.get(name)
                in_right_list = expected is not None and (
                    (kind == "initContainers") == (expected in ours_init)
                )
                if not in_right_list or container != expected:
                    raise ConfigError(
                        f"spec.{kind}[{index}].name",
                        f"{name!r} clashes with the container condukt-egress injects under "
                        "that name; rename yours",
                    )
                continue  # ours, from an earlier injection: rebuilt below
            where = _where(kind, index, container)
            _harden(container, where, args)
            _with_trust(container, where)
            user.append(container)
        lists[kind] = user

    if not lists["containers"]:
        raise ConfigError(
            "spec.containers", "is empty; declare the workspace container to protect"
        )
    spec["initContainers"] = ours_init + lists["initContainers"]
    spec["containers"] = lists["containers"] + ours_main
    spec["volumes"] = _merge_named(spec.get("volumes") or (), _volumes(args), "volume", "volume")
    spec.setdefault("automountServiceAccountToken", False)
    spec.setdefault("enableServiceLinks", False)
    return spec


def workspace_pod_manifest(
    args: SandboxEgressArgs,
    workspace_image: str,
    command: list[str] | None = None,
) -> JSON:
    """The session's workspace Pod, with egress control injected.

    Args:
        args: The session.
        workspace_image: Image of the (untrusted) workspace container.
        command: Its command; default keeps the pod idle for ``kubectl exec``.
    """
    if not isinstance(workspace_image, str) or not workspace_image.strip():
        raise ConfigError(
            "workspace_image", f"must be a container image reference, got {workspace_image!r}"
        )
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
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": inject(spec, args)}
