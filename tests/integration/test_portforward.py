"""The port-forward path against a real cluster; skips with a reason without one.

Needs a kubeconfig (or in-cluster credentials) whose API server answers. The
sidecar test also needs a running session pod, named by
``CONDUKT_EGRESS_TEST_NAMESPACE`` and ``CONDUKT_EGRESS_TEST_POD``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import pytest
from kubernetes import client as k8s

from condukt_egress.control import ControlClient
from condukt_egress.errors import ControlChannelError
from condukt_egress.portforward import PortForwardTarget, find_sidecar, load_api_client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_client() -> Any:
    try:
        client = load_api_client()
    except ControlChannelError as exc:
        pytest.skip(str(exc))

    try:
        k8s.VersionApi(client).get_code(_request_timeout=5)
    except Exception as exc:
        pytest.skip(f"Kubernetes API unreachable: {type(exc).__name__}")
    return client


def test_a_pod_without_the_sidecar_is_refused(api_client: Any) -> None:
    pods = k8s.CoreV1Api(api_client).list_namespaced_pod("kube-system", _request_timeout=10)
    plain = [p for p in pods.items if find_sidecar(p) is None]
    if not plain:
        pytest.skip("every kube-system pod looks like a sidecar pod")
    name = str(getattr(plain[0].metadata, "name", ""))
    target = PortForwardTarget(namespace="kube-system", pod=name, api_client=api_client)
    with pytest.raises(ControlChannelError, match="has no condukt-egress sidecar"):
        asyncio.run(target.open())


def test_port_forward_reaches_a_session_sidecar(api_client: Any) -> None:
    namespace = os.environ.get("CONDUKT_EGRESS_TEST_NAMESPACE")
    pod = os.environ.get("CONDUKT_EGRESS_TEST_POD")
    if not (namespace and pod):
        pytest.skip(
            "set CONDUKT_EGRESS_TEST_NAMESPACE and CONDUKT_EGRESS_TEST_POD to a session pod"
        )

    async def scenario() -> int:
        client = ControlClient(
            PortForwardTarget(namespace=namespace, pod=pod, api_client=api_client),
            reconnect=False,
        )
        runner = asyncio.ensure_future(client.run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(runner), 3)
        await client.aclose()
        await runner  # raises if the forward failed
        return client.stats.connects

    assert asyncio.run(scenario()) == 1
