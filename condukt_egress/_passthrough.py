"""Which resources the workload transform lets through with a warning.

The transform injects the workload kinds of :mod:`condukt_egress.transform`.
Everything else passes unchanged, which is right for a Service or a
ConfigMap, but not for a resource that creates or changes pods out of the
transform's sight: a ``helm.sh/v3:Release`` (Helm installs its workloads
itself), an operator's custom resource (an Argo Workflow, a Knative Service),
a mutating webhook or admission policy, a PodPreset. Their pods run without
the egress sidecar, so each such resource is named once in Pulumi's log.

Component resources (``helm.sh/v4:Chart``, ``yaml/v2:ConfigGroup``,
``kustomize/v2:Directory``, ...) are not warned about: their workloads are
child resources, which the transform reaches.

Example:
    >>> passthrough_warning("kubernetes:helm.sh/v3:Release", "db", custom=True) is not None
    True
    >>> passthrough_warning("kubernetes:core/v1:Service", "db", custom=True) is None
    True
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["POD_FREE_KINDS", "passthrough_warning"]

POD_FREE_KINDS: Final = frozenset(
    {
        "APIService",
        "AuditSink",
        "Binding",
        "CSIDriver",
        "CSINode",
        "CSIStorageCapacity",
        "CertificateSigningRequest",
        "ClusterCIDR",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterTrustBundle",
        "CompositePodGroup",
        "ConfigMap",
        "ControllerRevision",
        "CustomResourceDefinition",
        "DeviceClass",
        "DeviceTaintRule",
        "EndpointSlice",
        "Endpoints",
        "Event",
        "Eviction",
        "EvictionRequest",
        "FlowSchema",
        "HorizontalPodAutoscaler",
        "IPAddress",
        "Ingress",
        "IngressClass",
        "Lease",
        "LeaseCandidate",
        "LimitRange",
        "Namespace",
        "NetworkPolicy",
        "Node",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "PodCertificateRequest",
        "PodDisruptionBudget",
        "PodGroup",
        "PodScheduling",
        "PodSchedulingContext",
        "PodSecurityPolicy",
        "PodTemplate",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "ResourceClaim",
        "ResourceClaimParameters",
        "ResourceClaimTemplate",
        "ResourceClass",
        "ResourceClassParameters",
        "ResourcePoolStatusRequest",
        "ResourceQuota",
        "ResourceSlice",
        "Role",
        "RoleBinding",
        "RuntimeClass",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceCIDR",
        "Status",
        "StorageClass",
        "StorageVersionMigration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
        "VolumeAttributesClass",
        "Workload",
    }
)
"""Built-in Kubernetes kinds that neither create pods nor change them (a
NetworkPolicy is no exception to that, but see docs/security.md: policies add up)."""

_BUILTIN_API: Final = re.compile(
    r"^(core|[a-z0-9]+|[a-z0-9.]+\.k8s\.io|[a-z0-9.]+\.kubernetes\.io)/v[0-9a-z]+$"
)
_TYPE: Final = re.compile(r"^kubernetes:(?P<api>[^:]+):(?P<kind>[A-Za-z]+?)(?:Patch|List)?$")


def passthrough_warning(type_: str, name: str, *, custom: bool) -> str | None:
    """The warning for a resource the transform lets through, or None when it is harmless.

    Args:
        type_: The Pulumi type token, e.g. ``kubernetes:helm.sh/v3:Release``.
        name: The Pulumi resource name.
        custom: Whether it is a custom resource (components are not warned about:
            the transform reaches their children).
    """
    match = _TYPE.match(type_)
    if not custom or match is None:
        return None
    api, kind = match["api"], match["kind"]
    if kind in POD_FREE_KINDS and _BUILTIN_API.match(api):
        return None
    return (
        f"condukt-egress: {type_} {name!r} passes without egress injection: condukt-egress "
        "injects Pods and the workload kinds (Deployment, StatefulSet, DaemonSet, ReplicaSet, "
        "ReplicationController, Job, CronJob) only. Any pod this resource creates or changes "
        "(a Helm v3 release's workloads, an operator's pods, a mutating webhook's edits) runs "
        "WITHOUT the egress sidecar; declare such workloads directly or through a component "
        "(helm.sh/v4 Chart, yaml/v2), whose children the transform injects"
    )
