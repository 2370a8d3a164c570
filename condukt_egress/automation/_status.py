"""What a service shows about one session, cheaply: :class:`SessionStatus`.

A status is asked for on every HTTP request, so it avoids the ``pulumi`` CLI
(a process and a backend round trip each). Three sources:

- the session's **operation record**, a small JSON file in its workspace
  directory that the one engine runner writes when an operation starts and
  ends (operation, result, process id, the outputs of the last ``up``);
- the **API server**, read with the official ``kubernetes`` client and the
  session's own Kubernetes settings: the Pod's phase, its readiness and the
  sidecar container's;
- the session **CA certificate** from the outputs, for its expiry.

Only a session that this state directory has no record of costs CLI calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from condukt_egress.automation._spec import KubernetesSettings, SessionOutputs
from condukt_egress.naming import SIDECAR_CONTAINER

__all__ = [
    "RECORD_FILE",
    "OperationResult",
    "PodState",
    "SessionStatus",
    "ca_expiry",
    "read_pod",
    "read_record",
    "write_record",
]

RECORD_FILE: Final = ".condukt-operation.json"
"""The operation record in a session's workspace directory."""

OperationResult = Literal["running", "succeeded", "failed", "interrupted"]
"""How the last operation ended; ``interrupted``: its process died while it ran."""

_POD_TIMEOUT: Final = (2.0, 5.0)  # connect, read: a status must not hang a request


@dataclass(frozen=True)
class PodState:
    """The session Pod as the API server reports it.

    Attributes:
        phase: ``Pending``, ``Running``, ``Succeeded``, ``Failed``, ``Unknown``,
            or None when there is no such Pod.
        ready: The Pod's ``Ready`` condition.
        sidecar_ready: The sidecar container's readiness (a native sidecar is
            an init container): it answers its control channel.
    """

    phase: str | None
    ready: bool
    sidecar_ready: bool


@dataclass(frozen=True)
class SessionStatus:
    """One session, as :meth:`SessionStacks.status` sees it now.

    Attributes:
        session_id: The session.
        stack_name: Its stack.
        exists: Whether its stack exists.
        running: The operation running on it in this process, if any.
        last_operation: The last engine operation (``up``, ``refresh``,
            ``destroy``), if known.
        last_result: How it ended (``running`` while it runs).
        last_change: When it started or ended.
        outputs: The session's outputs after its last ``up``, if any.
        pod: The Pod as the API server reports it; None when not read (no
            outputs, or the manifests are rendered, not applied).
        ca_expires: When the session CA expires (the next ``up`` after that
            replaces the Pod).
        problem: Why a part is missing (the API server could not be read...).
    """

    session_id: str
    stack_name: str
    exists: bool
    running: str | None = None
    last_operation: str | None = None
    last_result: OperationResult | None = None
    last_change: datetime | None = None
    outputs: SessionOutputs | None = None
    pod: PodState | None = None
    ca_expires: datetime | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (times in ISO 8601; the CA PEM left out)."""
        out: dict[str, Any] = {
            "sessionId": self.session_id,
            "stackName": self.stack_name,
            "exists": self.exists,
            "running": self.running,
            "lastOperation": self.last_operation,
            "lastResult": self.last_result,
            "lastChange": _iso(self.last_change),
            "caExpires": _iso(self.ca_expires),
            "problem": self.problem,
            "pod": None,
        }
        if self.outputs is not None:
            out["podName"] = self.outputs.pod_name
            out["namespace"] = self.outputs.namespace
        if self.pod is not None:
            out["pod"] = {
                "phase": self.pod.phase,
                "ready": self.pod.ready,
                "sidecarReady": self.pod.sidecar_ready,
            }
        return out


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


# --- the operation record ----------------------------------------------------


def write_record(work_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into the session's operation record, atomically."""
    if not work_dir.is_dir():
        return
    record = read_record(work_dir) or {}
    record.update(fields)
    fd, tmp = tempfile.mkstemp(dir=work_dir, prefix=".tmp-record-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(tmp, work_dir / RECORD_FILE)


def read_record(work_dir: Path) -> dict[str, Any] | None:
    """The session's operation record, or None when it has none (or a torn one)."""
    try:
        value = json.loads((work_dir / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def record_outputs(outputs: SessionOutputs) -> dict[str, Any]:
    """Outputs as the record keeps them (nothing secret: the CA certificate is public)."""
    return {**asdict(outputs), "pod_labels": dict(outputs.pod_labels)}


def outputs_of(record: Mapping[str, Any]) -> SessionOutputs | None:
    """The outputs a record keeps, if any."""
    value = record.get("outputs")
    if not isinstance(value, Mapping):
        return None
    try:
        return SessionOutputs(**value)
    except TypeError:
        return None


def result_of(record: Mapping[str, Any]) -> OperationResult | None:
    """The record's result; ``running`` from a process that is gone is ``interrupted``."""
    result = record.get("result")
    if result not in ("running", "succeeded", "failed", "interrupted"):
        return None
    if result == "running" and not process_running(record.get("pid")):
        return "interrupted"
    return result  # type: ignore[no-any-return]


def process_running(pid: object) -> bool:
    """Whether ``pid`` is a process running on this host (a zombie has ended)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here, or it just ended: the signal said it ran
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time from a record, or None."""
    if not isinstance(value, str):
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value)
    return None


# --- the CA and the Pod ------------------------------------------------------


def ca_expiry(ca_cert_pem: str) -> datetime | None:
    """When the session CA certificate expires, or None if it is not a certificate."""
    from cryptography import x509  # noqa: PLC0415 - only a status needs it

    try:
        return x509.load_pem_x509_certificate(ca_cert_pem.encode()).not_valid_after_utc
    except ValueError:
        return None


_CLIENTS: dict[KubernetesSettings, Any] = {}
_CLIENTS_LOCK: Final = threading.Lock()


def api_client(settings: KubernetesSettings) -> Any:
    """A cached ``kubernetes`` API client for the session's provider settings.

    A kubeconfig given as contents is read from memory, never written out.
    """
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(settings)
        if client is not None:
            return client
    from kubernetes import config  # noqa: PLC0415 - heavy import, only for a status

    from condukt_egress.portforward import load_api_client  # noqa: PLC0415

    kubeconfig = settings.kubeconfig
    if kubeconfig is not None and "\n" in kubeconfig:
        client = config.new_client_from_config_dict(  # type: ignore[no-untyped-call]
            yaml.safe_load(kubeconfig), context=settings.context, persist_config=False
        )
    else:
        client = load_api_client(kubeconfig, settings.context)
    with _CLIENTS_LOCK:
        _CLIENTS[settings] = client
    return client


def read_pod(settings: KubernetesSettings, namespace: str, name: str) -> PodState:
    """The session Pod's phase and readiness from the API server.

    Raises:
        Exception: The API server could not be reached or refused the read
            (the caller reports it as the status's problem).
    """
    from kubernetes import client  # noqa: PLC0415

    api = client.CoreV1Api(api_client(settings))
    try:
        pod = api.read_namespaced_pod(name, namespace, _request_timeout=_POD_TIMEOUT)
    except client.ApiException as exc:
        if exc.status == 404:
            return PodState(phase=None, ready=False, sidecar_ready=False)
        raise
    status = pod.status
    if status is None:
        return PodState(phase="Unknown", ready=False, sidecar_ready=False)
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or ())
    statuses = [*(status.init_container_statuses or ()), *(status.container_statuses or ())]
    sidecar = any(s.name == SIDECAR_CONTAINER and bool(s.ready) for s in statuses)
    return PodState(phase=status.phase, ready=ready, sidecar_ready=sidecar)
