"""The securityContext every container condukt-egress injects starts from.

Non-root, no privilege escalation, read-only root filesystem, no
capabilities, the runtime's default seccomp profile. Our init containers
then loosen exactly what their job needs (root, one or two capabilities);
the sidecar and the resolver keep it as it is.
"""

from __future__ import annotations

from typing import Any

__all__ = ["restricted_context"]


def restricted_context(uid: int, gid: int) -> dict[str, Any]:
    """The restricted securityContext, running as ``uid``/``gid``."""
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
