"""Reach a sidecar's control port through the Kubernetes port-forward API.

The control port is closed to the cluster by the session's NetworkPolicy; the
``pods/portforward`` API is the way in (it is not subject to NetworkPolicy).
:class:`PortForwardTarget` finds the pod (by name, or by the session label
derived from a session id), checks that it runs the ``condukt-egress``
sidecar, and opens the forward with the official ``kubernetes`` client, whose
websocket pump runs on its own thread and hands us one end of a socket pair.
Every :meth:`~PortForwardTarget.open` resolves the pod again, so a reconnect
follows a pod that was replaced.

Credentials: an explicit ``kubeconfig``/``context``, else the default
kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``), else in-cluster service
account credentials.

Example:
    >>> target = PortForwardTarget(namespace="agents", session_id="run-42")  # doctest: +SKIP
    >>> async with ControlClient(target) as client: ...  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from condukt_egress._threads import off_loop
from condukt_egress.contract import DEFAULT_CONTROL_PORT
from condukt_egress.control import Connection
from condukt_egress.errors import ConfigError, ControlChannelError
from condukt_egress.naming import SIDECAR_CONTAINER

__all__ = ["PortForwardTarget", "find_sidecar", "load_api_client"]

_API_TIMEOUT: Final = 15.0
_T = TypeVar("_T")

PortForwardFn = Callable[..., Any]
"""``kubernetes.stream.portforward``'s shape: ``(api_method, name, namespace, ports=...)``."""


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """Return a ``kubernetes.client.ApiClient`` with the first credentials found.

    Args:
        kubeconfig: Path of a kubeconfig file; default ``$KUBECONFIG`` or
            ``~/.kube/config``.
        context: Kubeconfig context; default the file's current context.

    Raises:
        ControlChannelError: No credentials, or the kubeconfig is unusable.
    """
    from kubernetes import client, config  # noqa: PLC0415  (heavy import, CLI start-up)

    default = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(
        Path.home() / ".kube" / "config"
    )
    try:
        if kubeconfig or context or Path(default).is_file():
            return config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, persist_config=False
            )
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
            return client.ApiClient(configuration)
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise ControlChannelError(f"cannot load Kubernetes credentials: {_one_line(exc)}") from exc
    raise ControlChannelError(
        f"no Kubernetes credentials: no kubeconfig at {default} and not running in a "
        "cluster; pass --kubeconfig, or use --connect HOST:PORT with kubectl port-forward"
    )


def find_sidecar(pod: Any, port: int = DEFAULT_CONTROL_PORT) -> str | None:
    """Return the name of the pod's sidecar container, or ``None``.

    A sidecar is a container (native sidecars are init containers) named
    ``condukt-egress`` or declaring ``port`` among its container ports.

    Args:
        pod: A ``V1Pod`` (any object with the same attributes).
        port: The control port.
    """
    spec = getattr(pod, "spec", None)
    if spec is None:
        return None
    for container in [*(spec.init_containers or ()), *(spec.containers or ())]:
        if container.name == SIDECAR_CONTAINER:
            return str(container.name)
        if any(p.container_port == port for p in container.ports or ()):
            return str(container.name)
    return None


@dataclass
class PortForwardTarget:
    """A session pod's control port, reached through ``pods/portforward``.

    Give exactly one of ``pod`` and ``session_id``.

    Attributes:
        namespace: The pod's namespace.
        pod: The pod's name.
        session_id: The raw session id; the pod is found by the session label.
        port: The sidecar's control port.
        kubeconfig: Kubeconfig path (see :func:`load_api_client`).
        context: Kubeconfig context.
        api_client: A ready ``ApiClient`` (tests, callers with their own
            credentials); when set, ``kubeconfig``/``context`` are unused.
        portforward: The port-forward function; default
            ``kubernetes.stream.portforward`` (tests inject a fake).
        open_timeout: Seconds for resolving the pod and opening the forward.
    """

    namespace: str
    pod: str | None = None
    session_id: str | None = None
    port: int = DEFAULT_CONTROL_PORT
    kubeconfig: str | None = None
    context: str | None = None
    api_client: Any = None
    portforward: PortForwardFn | None = field(default=None, repr=False)
    open_timeout: float = 30.0
    _core: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.namespace:
            raise ConfigError("namespace", "is required for the port-forward path")
        if (self.pod is None) == (self.session_id is None):
            raise ConfigError("pod", "give exactly one of pod and session_id")
        if not 0 < self.port < 65536:
            raise ConfigError("port", f"{self.port} is not a TCP port (1-65535)")

    def describe(self) -> str:
        """Return ``pod NS/NAME port P`` or ``session ID in NS port P``."""
        what = (
            f"pod {self.namespace}/{self.pod}"
            if self.pod
            else (f"session {self.session_id!r} in namespace {self.namespace}")
        )
        return f"{what} (port-forward to port {self.port})"

    def selector(self) -> str | None:
        """Return the label selector for ``session_id``, or ``None`` when ``pod`` is set."""
        if self.session_id is None:
            return None
        from condukt_egress.naming import session_names  # noqa: PLC0415

        names = session_names(self.session_id)
        return f"{names.label_key}={names.label_value}"

    async def open(self) -> Connection:
        """Resolve the pod, check its sidecar, and open the forward."""
        try:
            async with asyncio.timeout(self.open_timeout):
                name = await off_loop(self._resolve_pod, name="condukt-egress-k8s")
                forward = await off_loop(lambda: self._forward(name), name="condukt-egress-k8s")
        except TimeoutError as exc:
            raise ControlChannelError(
                f"{self.describe()}: no answer from the Kubernetes API within "
                f"{self.open_timeout:g} s"
            ) from exc
        try:
            raw = forward.socket(self.port)
            sock = socket.socket(fileno=os.dup(raw.fileno()))
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
        except Exception as exc:
            forward.close()
            raise ControlChannelError(
                f"port-forward to pod {self.namespace}/{name} failed: {_one_line(exc)}"
            ) from exc

        def detail() -> str | None:
            error = forward.error(self.port)
            return _one_line(error) if error else None

        return Connection(reader, writer, error_detail=detail, on_close=forward.close)

    # -- blocking helpers, run on a daemon thread ------------------------------

    def _api(self) -> Any:
        if self._core is None:
            from kubernetes import client  # noqa: PLC0415

            api_client = self.api_client or load_api_client(self.kubeconfig, self.context)
            self._core = client.CoreV1Api(api_client)
        return self._core

    def _resolve_pod(self) -> str:
        core = self._api()
        ns = self.namespace
        if self.pod is not None:
            pod = self._call(
                lambda: core.read_namespaced_pod(
                    name=self.pod, namespace=ns, _request_timeout=_API_TIMEOUT
                ),
                f"pod {ns}/{self.pod}",
            )
        else:
            selector = self.selector()
            listed = self._call(
                lambda: core.list_namespaced_pod(
                    namespace=ns, label_selector=selector, _request_timeout=_API_TIMEOUT
                ),
                f"pods of namespace {ns}",
            )
            pod = self._pick(list(listed.items or ()), selector or "")
        name = str(pod.metadata.name)
        if find_sidecar(pod, self.port) is None:
            raise ControlChannelError(
                f"pod {ns}/{name} has no condukt-egress sidecar (no container named "
                f"{SIDECAR_CONTAINER!r} or exposing port {self.port}); check the pod, "
                "or --port if the control port is not the default"
            )
        phase = getattr(pod.status, "phase", None)
        if phase != "Running":
            raise ControlChannelError(
                f"pod {ns}/{name} is {phase or 'not running'}; wait until it is Running"
            )
        return name

    def _pick(self, pods: list[Any], selector: str) -> Any:
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        running = [p for p in live if getattr(p.status, "phase", None) == "Running"]
        candidates = running or live
        if not candidates:
            raise ControlChannelError(
                f"no pod in namespace {self.namespace} carries label {selector} "
                f"(session {self.session_id!r}); check --namespace and --session-id"
            )
        if len(candidates) > 1:
            names = ", ".join(sorted(str(p.metadata.name) for p in candidates))
            raise ControlChannelError(
                f"{len(candidates)} pods of session {self.session_id!r} are running "
                f"({names}); pick one with --pod"
            )
        return candidates[0]

    def _forward(self, name: str) -> Any:
        forward = self.portforward or _default_portforward()
        core = self._api()
        return self._call(
            lambda: forward(
                core.connect_get_namespaced_pod_portforward,
                name,
                self.namespace,
                ports=str(self.port),
            ),
            f"port-forward to pod {self.namespace}/{name}",
        )

    def _call(self, fn: Callable[[], _T], what: str) -> _T:
        try:
            return fn()
        except ControlChannelError:
            raise
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status == 404:
                raise ControlChannelError(
                    f"{what} not found; check the name and namespace"
                ) from exc
            if status in (401, 403):
                raise ControlChannelError(
                    f"{what}: access refused by the Kubernetes API (HTTP {status}); "
                    "the credentials need get/list on pods and create on pods/portforward"
                ) from exc
            reason = getattr(exc, "reason", None) if status is not None else None
            raise ControlChannelError(
                f"{what}: Kubernetes API request failed: {_one_line(reason or exc)}"
            ) from exc


def _default_portforward() -> PortForwardFn:
    from kubernetes.stream import portforward  # noqa: PLC0415

    return portforward


def _one_line(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 300 else text[:297] + "..."
