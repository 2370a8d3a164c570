"""Pure builders of every Kubernetes object of a session, and pod injection (a façade).

Nothing here knows Pulumi: functions take a :class:`SandboxEgressArgs` (and CA
PEM text where needed) and return plain dicts written with Kubernetes field
names, exactly as in YAML. The Pulumi component, the workload transform and
the offline ``render`` command all declare what these functions return, so
there is one source of truth for what a session looks like. The work lives
in one module per concept, re-exported here:

- :mod:`~condukt_egress.session_objects`: metadata, the Secret and its
  content-derived name, the NetworkPolicy, the CA's binding in a pod;
- :mod:`~condukt_egress.containers`: what we put in a pod (the netfilter and
  filter init containers, the sidecar, volumes, trust mounts, filter rules);
- :mod:`~condukt_egress.podrules`: every refusal, declared once for
  ``inject`` and the guard;
- :mod:`~condukt_egress.injection`: :func:`inject` and its relatives.
"""

from __future__ import annotations

from typing import Final

from condukt_egress.containers import (
    CA_ENV_VARS,
    CONFIG_DIGEST_ENV,
    FILTER_CAPABILITIES,
    FILTER_RULES6_FILE,
    FILTER_RULES_FILE,
    FILTER_SCRIPT,
    TRUST_BUNDLE_PATHS,
    WORKSPACE_TRUST_DIR,
    config_digest,
    filter_rules,
    filter_rules_ipv6,
    listen_probe_command,
    workspace_trust_files,
)
from condukt_egress.injection import (
    DEFAULT_WORKSPACE_IMAGE,
    DEFAULT_WORKSPACE_UID,
    WORKSPACE_IDLE_COMMAND,
    check,
    check_pod_metadata,
    harden_patch,
    inject,
    workspace_pod_manifest,
)
from condukt_egress.naming import (
    CONFIG_VOLUME,
    FILTER_CONTAINER,
    FILTER_VOLUME,
    MANAGED_PREFIX,
    NETFILTER_CONTAINER,
    SIDECAR_CONTAINER,
    TRUST_VOLUME,
)
from condukt_egress.podrules import (
    APPARMOR_ANNOTATION_PREFIX,
    BYPASS_CAPABILITIES,
    SAFE_SYSCTLS,
)
from condukt_egress.session_objects import (
    CA_FINGERPRINT_ENV,
    SPECIAL_IPV4_RANGES,
    CaBinding,
    bundle_pem,
    ca_binding,
    ca_fingerprint,
    network_policy_manifest,
    object_metadata,
    secret_binary_data,
    secret_data,
    secret_manifest,
    secret_name,
    with_ca_binding,
    with_ca_fingerprint,
    with_secret_name,
)

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
    "CaBinding",
    "bundle_pem",
    "ca_binding",
    "ca_fingerprint",
    "check",
    "check_pod_metadata",
    "config_digest",
    "filter_rules",
    "filter_rules_ipv6",
    "harden_patch",
    "inject",
    "listen_probe_command",
    "network_policy_manifest",
    "object_metadata",
    "secret_binary_data",
    "secret_data",
    "secret_manifest",
    "secret_name",
    "with_ca_binding",
    "with_ca_fingerprint",
    "with_secret_name",
    "workspace_pod_manifest",
    "workspace_trust_files",
]

MANAGED_SECRET_PREFIX: Final = MANAGED_PREFIX
"""Every Secret condukt-egress declares is named with this prefix."""
