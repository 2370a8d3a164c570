"""Fixtures of the end-to-end suite: the cluster, a fresh namespace, a fresh stack.

Without the tools (see :data:`tests.e2e.harness.SETUP`) every test here skips
saying what is missing and how to get it; with ``CI=true`` it fails instead,
because CI builds the tools and a skip there would hide a broken harness.
"""

from __future__ import annotations

import contextlib
import gc
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import SETUP, Project, create_namespace, missing_tools


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the e2e suite cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def api() -> Any:
    """A ``kubernetes`` ApiClient for the e2e cluster (skips, or fails in CI, without one)."""
    missing = missing_tools()
    if missing:
        _unavailable(f"the e2e tools are not set up (missing {', '.join(missing)}): {SETUP}")
    from kubernetes import client  # noqa: PLC0415

    from condukt_egress.portforward import load_api_client  # noqa: PLC0415

    api_client = load_api_client()
    try:
        version = client.VersionApi(api_client).get_code(_request_timeout=10)
    except Exception as exc:  # any failure to reach the server means: not set up
        _unavailable(f"the e2e cluster's API server is unreachable ({type(exc).__name__}): {SETUP}")
    assert (int(version.major), int(str(version.minor).rstrip("+"))) >= (1, 30), version
    return api_client


@pytest.fixture
def namespace(api: Any) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) after the test."""
    yield from _namespace(api)


@pytest.fixture(scope="module")
def module_namespace(api: Any) -> Iterator[str]:
    """A fresh namespace shared by one module's tests."""
    yield from _namespace(api)


def _namespace(api: Any) -> Iterator[str]:
    from kubernetes import client  # noqa: PLC0415
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    core: Any = client.CoreV1Api(api)
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    try:
        create_namespace(api, name)
        yield name
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespace(name)


@pytest.fixture
def project_factory(tmp_path: Path) -> Iterator[Any]:
    """Make :class:`Project` objects under ``tmp_path``; each is destroyed and removed after."""
    made: list[Project] = []

    def make(name: str, stack: str = "e2e") -> Project:
        project = Project(tmp_path / name, tmp_path / f"{name}-backend", stack)
        made.append(project)
        return project

    try:
        yield make
    finally:
        for project in reversed(made):
            project.remove()


@pytest.fixture(autouse=True, scope="module")
def _collect_what_the_module_left() -> Iterator[None]:
    """Collect, at the end of each e2e module, the sockets its clients left to the GC.

    Engine runs and API clients (kubernetes, the service's test client) leave
    unix sockets for the garbage collector; collected later, inside an
    unrelated unit test, their ResourceWarnings fail that test instead.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
