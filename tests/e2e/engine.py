"""The real engine and cluster for the session-service tests, or a skip saying why.

The e2e tools come from ``scripts/e2e-tools`` and the cluster from
``scripts/e2e-cluster start``; ``eval "$(scripts/e2e-cluster env)"`` puts the
``pulumi`` CLI (with its kubernetes and tls plugins) on ``PATH`` and sets
``KUBECONFIG``, ``PULUMI_BACKEND_URL`` and ``PULUMI_CONFIG_PASSPHRASE``.
Without them every test here skips; with ``CI=true`` it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from condukt_egress.automation import KubernetesSettings, SessionStacks

SETUP = (
    'run `scripts/e2e-tools`, `scripts/e2e-cluster start` and `eval "$(scripts/e2e-cluster env)"`'
)


def unavailable(reason: str) -> None:
    """Skip, or fail under ``CI=true`` (a skip there would hide a broken harness)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the real engine cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def kubeconfig() -> str:
    """The e2e cluster's kubeconfig path, or a skip naming what is missing."""
    missing = [tool for tool in ("pulumi", "kubectl") if shutil.which(tool) is None]
    path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if not path or not Path(path).is_file():
        missing.append("KUBECONFIG")
    if not os.environ.get("PULUMI_CONFIG_PASSPHRASE"):
        missing.append("PULUMI_CONFIG_PASSPHRASE")
    if missing:
        unavailable(f"the e2e tools are not set up (missing {', '.join(missing)}): {SETUP}")
    return path


@pytest.fixture(scope="module")
def cluster() -> Any:
    """A ``kubernetes`` ApiClient of the e2e cluster."""
    path = kubeconfig()
    from kubernetes import client  # noqa: PLC0415

    from condukt_egress.portforward import load_api_client  # noqa: PLC0415

    api = load_api_client(path)
    try:
        client.VersionApi(api).get_code(_request_timeout=10)
    except Exception as exc:
        unavailable(f"the e2e API server is unreachable ({type(exc).__name__}): {SETUP}")
    return api


@pytest.fixture
def fresh_namespace(cluster: Any) -> Iterator[str]:
    """A namespace of its own, deleted after the test."""
    from kubernetes import client  # noqa: PLC0415

    core: Any = client.CoreV1Api(cluster)
    name = f"svc-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)


def real_stacks(state: Path, **kwargs: Any) -> SessionStacks:
    """Session stacks on the real CLI, their own file backend, the e2e cluster."""
    kwargs.setdefault("kubernetes", KubernetesSettings(kubeconfig=kubeconfig()))
    kwargs.setdefault("install_plugins", False)  # the e2e tools put them on PATH
    return SessionStacks(state, passphrase=os.environ["PULUMI_CONFIG_PASSPHRASE"], **kwargs)


def session_objects(cluster: Any, namespace: str) -> list[str]:
    """What is left in ``namespace``: pods, secrets (not the token) and network policies."""
    from kubernetes import client  # noqa: PLC0415

    core: Any = client.CoreV1Api(cluster)
    net: Any = client.NetworkingV1Api(cluster)
    left = [f"pod/{p.metadata.name}" for p in core.list_namespaced_pod(namespace).items]
    left += [
        f"secret/{s.metadata.name}"
        for s in core.list_namespaced_secret(namespace).items
        if s.type != "kubernetes.io/service-account-token"
    ]
    left += [
        f"networkpolicy/{n.metadata.name}"
        for n in net.list_namespaced_network_policy(namespace).items
    ]
    return left


def locks(state: Path) -> list[Path]:
    """Lock files the file backend still holds (one per running or killed update)."""
    return sorted((state / "backend" / ".pulumi" / "locks").rglob("*.json"))
