"""The session's own objects: metadata, Secret, NetworkPolicy, and the CA's traces in a pod.

The CA's traces in a pod are two: the sidecar's :data:`CA_FINGERPRINT_ENV`
and the name of the Secret its volumes mount, which carries a hash of the
Secret's content (:func:`secret_name`).

Pure builders (no Pulumi): each takes a :class:`SandboxEgressArgs` (and CA PEM
text where needed) and returns plain dicts with Kubernetes field names. The
component, the stack program and ``render`` declare exactly what these return.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from condukt_egress import compat, contract, dns
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.containers import (
    FILTER_RULES6_FILE,
    FILTER_RULES_FILE,
    filter_rules,
    filter_rules_ipv6,
    workspace_trust_files,
)
from condukt_egress.errors import ConfigError
from condukt_egress.naming import (
    ANNOTATION_SESSION_ID,
    CONFIG_VOLUME,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    OUR_VOLUMES,
    SIDECAR_CONTAINER,
)

__all__ = [
    "CA_FINGERPRINT_ENV",
    "SPECIAL_IPV4_RANGES",
    "CaBinding",
    "bound_secret_name",
    "bundle_pem",
    "ca_binding",
    "ca_fingerprint",
    "ca_fingerprint_env",
    "network_policy_manifest",
    "object_metadata",
    "secret_binary_data",
    "secret_data",
    "secret_manifest",
    "secret_name",
    "with_ca_binding",
    "with_ca_fingerprint",
    "with_secret_name",
    "without_ca_fingerprint",
]

JSON = dict[str, Any]

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


def object_metadata(args: SandboxEgressArgs, name: str) -> JSON:
    """Metadata shared by the session's objects: name, namespace, labels, raw id."""
    names = args.names
    return {
        "name": name,
        "namespace": args.namespace,
        "labels": {LABEL_MANAGED_BY: MANAGED_BY, names.label_key: names.label_value},
        "annotations": {ANNOTATION_SESSION_ID: args.session_id},
    }


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


def ca_fingerprint_env(spec: Mapping[str, Any]) -> JSON | None:
    """The sidecar's CA fingerprint env entry in an injected spec, if any."""
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or ():
            if isinstance(container, Mapping) and container.get("name") == SIDECAR_CONTAINER:
                for entry in container.get("env") or ():
                    if isinstance(entry, Mapping) and entry.get("name") == CA_FINGERPRINT_ENV:
                        return dict(entry)
    return None


def without_ca_fingerprint(container: JSON) -> JSON:
    """``container`` without the CA fingerprint env entry (to compare injections)."""
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
    data: dict[str, str] = {}
    for key, value in _public_data(args, ca_cert_pem).items():
        data[key] = value
        if key == contract.CA_CERT_FILE:  # the key beside its certificate, as always
            data[contract.CA_KEY_FILE] = ca_key_pem
    return data


def secret_name(args: SandboxEgressArgs, ca_cert_pem: str) -> str:
    """The name of the session Secret for this CA: :meth:`SessionNames.secret_name` of its files.

    Every file of :func:`secret_data` and :func:`secret_binary_data` but the
    CA key, which the certificate pins (and which would make the name a
    Pulumi secret). A new policy, option or CA gives a new name, so the
    Secret is created before the pods that mount it are replaced, and
    deleted after them; the same ones give the same name.
    """
    files = {**_public_data(args, ca_cert_pem), **secret_binary_data(args, ca_cert_pem)}
    return args.names.secret_name(files)


def with_secret_name(pod_spec: Mapping[str, Any], name: Any) -> JSON:
    """``pod_spec`` (injected) with its condukt-egress volumes naming the Secret ``name``.

    ``name`` is :func:`secret_name`, or (in the component) the Secret
    resource's name as an Output. The input is not modified.
    """
    spec: JSON = dict(pod_spec)
    if "volumes" not in spec:
        return spec
    spec["volumes"] = [
        {**v, "secret": {**v["secret"], "secretName": name}}
        if isinstance(v, Mapping) and v.get("name") in OUR_VOLUMES and "secret" in v
        else v
        for v in spec.get("volumes") or ()
    ]
    return spec


@dataclass(frozen=True)
class CaBinding:
    """What binds an injected pod to its session's CA: the two traces it carries.

    Attributes:
        fingerprint: :func:`ca_fingerprint`, set as the sidecar's
            :data:`CA_FINGERPRINT_ENV`; ``None`` leaves the env alone.
        secret_name: :func:`secret_name`, the Secret the volumes mount.

    Plain text, or (in the component) Outputs of the CA and the Secret.
    """

    fingerprint: Any
    secret_name: Any


def ca_binding(args: SandboxEgressArgs, ca_cert_pem: str) -> CaBinding:
    """The :class:`CaBinding` of a session with this CA certificate."""
    return CaBinding(ca_fingerprint(ca_cert_pem), secret_name(args, ca_cert_pem))


def with_ca_binding(pod_spec: Mapping[str, Any], binding: CaBinding) -> JSON:
    """``pod_spec`` (injected) bound to its CA: the fingerprint env and the Secret's name."""
    if binding.fingerprint is not None:
        pod_spec = with_ca_fingerprint(pod_spec, binding.fingerprint)
    return with_secret_name(pod_spec, binding.secret_name)


def bound_secret_name(spec: Mapping[str, Any]) -> Any:
    """The Secret name an injected spec's config volume carries, ``None`` without one."""
    for volume in spec.get("volumes") or ():
        if isinstance(volume, Mapping) and volume.get("name") == CONFIG_VOLUME:
            return (volume.get("secret") or {}).get("secretName")
    return None


def _public_data(args: SandboxEgressArgs, ca_cert_pem: str) -> dict[str, str]:
    """:func:`secret_data` without the CA key."""
    data = {
        contract.POLICY_FILE: args.egress_policy.to_json(),
        contract.CA_CERT_FILE: ca_cert_pem,
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


def secret_binary_data(args: SandboxEgressArgs, ca_cert_pem: str) -> dict[str, str]:
    """The Secret's ``data``: its binary files, base64-encoded (``stringData`` must be UTF-8).

    The JVM trust store of the client compatibility profile
    (:func:`condukt_egress.compat.java_truststore`): the same certificates as
    the bundle, the same bytes for the same CA. Empty when the profile is off.
    """
    if not args.client_compat:
        return {}
    roots = _public_roots() if args.trust_bundle == "public-roots" else ""
    store = compat.java_truststore(ca_cert_pem, roots)
    return {compat.JAVA_TRUSTSTORE_FILE: base64.b64encode(store).decode("ascii")}


def _compat_files(args: SandboxEgressArgs) -> dict[str, str]:
    if not args.client_compat:
        return {}
    return {
        compat.OPENSSL_CONF_FILE: compat.openssl_config(),
        compat.SITECUSTOMIZE_FILE: compat.sitecustomize_source(),
    }


def secret_manifest(
    args: SandboxEgressArgs, string_data: Any, data: Any = None, *, name: Any
) -> JSON:
    """The immutable Secret delivering the CA and the policy to the sidecar.

    Args:
        args: The session.
        string_data: The Secret's ``stringData``: :func:`secret_data` itself,
            or (in the component) a Pulumi Output that resolves to it.
        data: Its ``data``: :func:`secret_binary_data` or an Output of it;
            left out when ``None`` or empty.
        name: Its name, :func:`secret_name` (or, in the component, an Output of it).
    """
    secret: JSON = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_metadata(args, name),
        "type": "Opaque",
        "immutable": True,
    }
    if data is not None and data != {}:
        secret["data"] = data
    secret["stringData"] = string_data
    return secret


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
