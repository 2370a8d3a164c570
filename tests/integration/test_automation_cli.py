"""SessionStacks against the real ``pulumi`` CLI and engine.

No cluster is needed: the Kubernetes provider renders manifests into a
directory (``kubernetes:renderYamlToDirectory``). Needs the CLI (3.203+) on
PATH and network access to download the kubernetes and tls plugins on the
first run; skips with the reason otherwise. Every test removes its stacks in
``finally``.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import yaml

from condukt_egress import contract, manifests
from condukt_egress.automation import (
    KubernetesSettings,
    SessionBusyError,
    SessionNotFoundError,
    SessionOperationError,
    SessionOutputs,
    SessionSpec,
    SessionStacks,
    ca_certificate_urn,
)
from tests.k8s_schema import assert_valid
from tests.security_properties import assert_network_policy, assert_session_secure

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("pulumi") is None,
        reason="the `pulumi` CLI is not on PATH; install it (https://www.pulumi.com/docs/iac/"
        "download-install/) to run the Automation API integration tests",
    ),
]

PASSPHRASE = "condukt-egress integration tests"
POLICY = {"rules": [{"allow": ["api.github.com"]}], "default": "deny"}
UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:9"}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]
current-context: nowhere
users: [{name: nobody, user: {token: not-a-token}}]
"""


@pytest.fixture
def render_dir(tmp_path: Path) -> Path:
    return (tmp_path / "rendered").resolve()


@pytest.fixture
def stacks(tmp_path: Path, render_dir: Path) -> SessionStacks:
    return SessionStacks(
        tmp_path / "state",
        passphrase=PASSPHRASE,
        kubernetes=KubernetesSettings(render_yaml_to_directory=render_dir),
    )


@contextmanager
def removed_afterwards(stacks: SessionStacks, *session_ids: str) -> Iterator[None]:
    """Destroy and remove every named session's stack, whatever happened."""
    try:
        yield
    finally:
        for session_id in session_ids:
            with suppress(SessionNotFoundError):
                stacks.destroy(session_id, remove_stack=True)


def rendered(render_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every rendered object by (kind, name)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(render_dir.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def test_up_renders_a_secure_session_then_destroy_removes_it(
    stacks: SessionStacks, render_dir: Path
) -> None:
    spec = SessionSpec("integration run 1", namespace="agents", policy=POLICY)
    names = spec.args.names
    with removed_afterwards(stacks, spec.session_id):
        outputs = stacks.up(spec)

        assert outputs.pod_name == names.pod
        assert outputs.secret_name == manifests.secret_name(spec.args, outputs.ca_cert_pem)
        assert outputs.pod_labels == names.pod_labels
        assert outputs.ca_cert_pem.startswith("-----BEGIN CERTIFICATE-----")
        assert stacks.get(spec.session_id) == outputs
        assert [s.session_id for s in stacks.list()] == [spec.session_id]

        objects = rendered(render_dir)
        secret = objects[("Secret", outputs.secret_name)]
        keys = set(secret.get("stringData") or {}) | set(secret.get("data") or {})
        assert {contract.POLICY_FILE, contract.CA_CERT_FILE, contract.CA_KEY_FILE} <= keys
        netpol = objects[("NetworkPolicy", names.network_policy)]
        assert_valid(netpol)
        assert_network_policy(netpol, names.pod_labels, plain_http=False)
        pod = objects[("Pod", names.pod)]
        assert_valid(pod)
        assert_session_secure(pod["spec"])
        assert pod["metadata"]["namespace"] == "agents"

        assert stacks.up(spec) == outputs, "a second up must change nothing"
        assert stacks.refresh(spec.session_id).get("create", 0) == 0

        changes = stacks.destroy(spec.session_id)
        assert changes.get("delete", 0) >= 5
        assert rendered(render_dir) == {}
        assert stacks.list() == []
        with pytest.raises(SessionNotFoundError):
            stacks.get(spec.session_id)


def test_preview_changes_nothing_and_leaves_no_stack(
    stacks: SessionStacks, render_dir: Path
) -> None:
    spec = SessionSpec("integration preview")
    with removed_afterwards(stacks, spec.session_id):
        changes = stacks.preview(spec)
        assert changes.get("create", 0) >= 5
        assert stacks.list() == []
        # The real pulumi-kubernetes renders at preview what is already known (the
        # NetworkPolicy); never the Secret or the Pod, which wait for the CA.
        kinds = {kind for kind, _ in rendered(render_dir)} if render_dir.exists() else set()
        assert kinds <= {"NetworkPolicy"}, kinds


def test_many_sessions_at_once(stacks: SessionStacks, render_dir: Path) -> None:
    ids = [f"integration concurrent {i}" for i in range(3)]
    with removed_afterwards(stacks, *ids):
        with ThreadPoolExecutor(len(ids)) as pool:
            outputs = list(pool.map(lambda sid: stacks.up(SessionSpec(sid)), ids))

        assert [o.session_id for o in outputs] == ids
        assert len({o.pod_name for o in outputs}) == len(ids)
        assert len({o.ca_cert_pem for o in outputs}) == len(ids)
        assert sorted(s.session_id or "" for s in stacks.list()) == sorted(ids)
        pods = {name for kind, name in rendered(render_dir) if kind == "Pod"}
        assert pods == {o.pod_name for o in outputs}

        with ThreadPoolExecutor(len(ids)) as pool:
            list(pool.map(stacks.destroy, ids))
        assert stacks.list() == []


def test_same_session_twice_at_once_is_busy(stacks: SessionStacks) -> None:
    spec = SessionSpec("integration busy")
    started, release = threading.Event(), threading.Event()
    results: list[SessionOutputs | BaseException] = []

    def hold(_session_id: str, _line: str) -> None:
        started.set()
        release.wait(120)

    def first() -> None:
        try:
            results.append(stacks.up(spec, on_output=hold))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    with removed_afterwards(stacks, spec.session_id):
        thread = threading.Thread(target=first)
        thread.start()
        try:
            assert started.wait(300), "the first up printed nothing"
            with pytest.raises(SessionBusyError, match="already running"):
                stacks.up(spec)
        finally:
            release.set()
            thread.join()
        assert len(results) == 1
        assert isinstance(results[0], SessionOutputs), results[0]


def test_failed_up_stays_destroyable(tmp_path: Path) -> None:
    stacks = SessionStacks(
        tmp_path / "state",
        passphrase=PASSPHRASE,
        kubernetes=KubernetesSettings(kubeconfig=UNREACHABLE_KUBECONFIG),
    )
    spec = SessionSpec("integration unreachable")
    with removed_afterwards(stacks, spec.session_id):
        with pytest.raises(SessionOperationError) as info:
            stacks.up(spec)
        assert info.value.operation == "up"
        assert "destroy(session_id)" in str(info.value)
        assert [s.session_id for s in stacks.list()] == [spec.session_id]
        stacks.destroy(spec.session_id)
        assert stacks.list() == []


def sidecar_ca(pod: dict[str, Any]) -> str:
    containers = pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    (sidecar,) = [c for c in containers if c["name"] == manifests.SIDECAR_CONTAINER]
    (value,) = [e["value"] for e in sidecar["env"] if e["name"] == manifests.CA_FINGERPRINT_ENV]
    return str(value)


def test_ca_rotation_by_replace_rolls_the_pod_onto_the_new_ca(
    stacks: SessionStacks, render_dir: Path
) -> None:
    spec = SessionSpec("integration rotation", namespace="agents")
    names = spec.args.names
    events: list[Any] = []
    with removed_afterwards(stacks, spec.session_id):
        first = stacks.up(spec)
        pod = rendered(render_dir)[("Pod", names.pod)]
        assert sidecar_ca(pod) == manifests.ca_fingerprint(first.ca_cert_pem)

        second = stacks.up(
            spec,
            replace=[ca_certificate_urn(spec.session_id)],
            on_event=lambda _sid, event: events.append(event),
        )
        assert second.ca_cert_pem != first.ca_cert_pem
        pod = rendered(render_dir)[("Pod", names.pod)]
        assert sidecar_ca(pod) == manifests.ca_fingerprint(second.ca_cert_pem)
        replaced = {
            e.resource_pre_event.metadata.type
            for e in events
            if e.resource_pre_event is not None
            and e.resource_pre_event.metadata.op.value in ("replace", "create-replacement")
        }
        assert {"kubernetes:core/v1:Secret", "kubernetes:core/v1:Pod"} <= replaced


def test_preview_of_an_existing_session_changes_nothing_it_applies(
    stacks: SessionStacks, render_dir: Path
) -> None:
    spec = SessionSpec("integration preview existing", namespace="agents")
    with removed_afterwards(stacks, spec.session_id):
        stacks.up(spec)
        stored = (stacks.work_dir(spec.session_id) / f"Pulumi.{spec.stack_name}.yaml").read_text()
        changes = stacks.preview(SessionSpec(spec.session_id, namespace="elsewhere"))
        assert changes.get("replace", 0) + changes.get("create", 0) >= 1
        after = (stacks.work_dir(spec.session_id) / f"Pulumi.{spec.stack_name}.yaml").read_text()
        assert after == stored
        assert stacks.up(spec).namespace == "agents"
        assert stacks.refresh(spec.session_id).get("update", 0) == 0


def test_bad_config_is_one_line_under_the_engine(stacks: SessionStacks) -> None:
    """A config error reaches the CLI as one ``error:`` line, without a traceback."""
    from pulumi.automation import CommandError, ConfigValue, LocalWorkspace, Stack  # noqa: PLC0415

    spec = SessionSpec("integration bad config")
    with removed_afterwards(stacks, spec.session_id):
        stacks.up(spec)
        options = stacks.workspace_options(spec.session_id)
        workspace = LocalWorkspace(
            work_dir=options.work_dir,
            program=options.program,
            env_vars=options.env_vars,
            secrets_provider=options.secrets_provider,
        )
        stack = Stack.select(spec.stack_name, workspace)
        stack.set_config("condukt-egress:caValidityHours", ConfigValue("a day"))
        with pytest.raises(CommandError) as info:
            stack.preview(color="never")
        text = str(info.value)
        assert "config caValidityHours: must be a whole number of hours" in text
        assert "Traceback" not in text
