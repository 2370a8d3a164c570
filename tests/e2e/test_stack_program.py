"""The repository's own stack program under the real ``pulumi`` CLI and API server.

One session stack comes up once for the module (``Pulumi.yaml`` and
``__main__.py`` copied unchanged, run in this venv); the tests read what it
created, then change it, rotate its CA and destroy it, in file order, with
the API server's watch events recorded to prove the pod never exists without
its Secret and NetworkPolicy. Bad config runs on stacks of its own.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client

from condukt_egress import compat, contract, manifests
from condukt_egress.spec import SessionSpec
from tests.e2e.harness import (
    Event,
    Project,
    WatchRecorder,
    assert_never_unprotected,
    describe,
    error_lines,
    last_revision,
    objects_in,
    python_project,
    resource_path,
    rest,
    subset_mismatches,
    wait_for,
)

pytestmark = pytest.mark.integration

POLICY = {"rules": [{"allow": ["api.github.com"]}], "default": "deny"}
CHANGED_POLICY = {"rules": [{"allow": ["api.github.com", "pypi.org"]}], "default": "deny"}
CA_TYPE = "tls:index/selfSignedCert:SelfSignedCert"


@dataclass
class Session:
    project: Project
    spec: SessionSpec
    api: Any
    timelines: dict[str, list[Event]] = field(default_factory=dict)
    """The watch events of each change, by the test that made it."""

    @property
    def core(self) -> Any:
        return client.CoreV1Api(self.api)

    def secret_name(self) -> str:
        """The Secret's name, as the stack exports it (it carries a hash of its content)."""
        return str(self.project.outputs()["secretName"])

    def secret(self) -> Any:
        return self.core.read_namespaced_secret(self.secret_name(), self.spec.namespace)

    def secrets(self) -> list[str]:
        """The names of every Secret of the namespace."""
        listed = self.core.list_namespaced_secret(self.spec.namespace).items
        return sorted(s.metadata.name for s in listed)

    def pod(self) -> Any:
        names = self.spec.args.names
        return self.core.read_namespaced_pod(names.pod, self.spec.namespace)

    def raw(self, kind: str) -> dict[str, Any]:
        """The object as the API server returns it (JSON, camelCase)."""
        names, namespace = self.spec.args.names, self.spec.namespace
        name, api_version = {
            "Pod": (names.pod, "v1"),
            "Secret": (self.secret_name(), "v1"),
            "NetworkPolicy": (names.network_policy, "networking.k8s.io/v1"),
        }[kind]
        obj = {"apiVersion": api_version, "kind": kind}
        return rest(self.api, "GET", resource_path(obj, namespace, name))


@pytest.fixture(scope="module")
def session(
    api: Any, module_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Session]:
    base = tmp_path_factory.mktemp("stack")
    project = Project(base / "project", base / "backend")
    python_project(project.directory, "condukt-egress")
    spec = SessionSpec("e2e run 1", namespace=module_namespace, policy=POLICY)
    try:
        project.init(
            {"sessionId": spec.session_id, "namespace": module_namespace, "policy": POLICY}
        )
        project.up()
        yield Session(project, spec, api)
    finally:
        project.remove()


def raw_data(secret: Any) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def decoded(secret: Any) -> dict[str, str]:
    """The Secret's text files (its ``stringData``); binary ones (the Java store) left out."""
    return {k: v.decode() for k, v in raw_data(secret).items() if k != compat.JAVA_TRUSTSTORE_FILE}


def sidecar_fingerprint(pod: dict[str, Any]) -> str:
    containers = pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    (sidecar,) = [c for c in containers if c["name"] == manifests.SIDECAR_CONTAINER]
    (value,) = [e["value"] for e in sidecar["env"] if e["name"] == manifests.CA_FINGERPRINT_ENV]
    return str(value)


def assert_secret_replaced_around_the_pod(events: list[Event], old: str, new: str) -> None:
    """The new Secret exists before the old Pod goes; the old Secret goes after the new Pod.

    Found by this suite: with a fixed name, pulumi-kubernetes replaced the
    immutable Secret delete-before-replace, under the running pod. Named after
    its content, the Secret is replaced create-before-delete around the Pod.
    """
    added = [e.revision for e in events if (e.type, e.kind, e.name) == ("ADDED", "Secret", new)]
    gone = [e.revision for e in events if (e.type, e.kind, e.name) == ("DELETED", "Secret", old)]
    pod_gone = [e.revision for e in events if (e.type, e.kind) == ("DELETED", "Pod")]
    pod_added = [e.revision for e in events if (e.type, e.kind) == ("ADDED", "Pod")]
    for revisions in (added, gone, pod_gone, pod_added):
        assert revisions, describe(events)
    assert max(added) < min(pod_gone), describe(events)
    assert max(pod_added) < min(gone), describe(events)


# --- a. the stack program -------------------------------------------------------------


def test_the_objects_are_what_the_builders_declare(session: Session) -> None:
    args, image = session.spec.args, session.spec.workspace_image
    cert = session.project.outputs()["caCertPem"]
    data = decoded(session.secret())
    assert data == manifests.secret_data(args, cert, data[contract.CA_KEY_FILE])
    binary = manifests.secret_binary_data(args, cert)
    assert {k: raw_data(session.secret())[k] for k in binary} == {
        k: base64.b64decode(v) for k, v in binary.items()
    }

    secret = session.raw("Secret")
    expected_secret = manifests.secret_manifest(args, None, name=manifests.secret_name(args, cert))
    del expected_secret["stringData"]
    assert subset_mismatches(expected_secret, secret) == []

    network_policy = manifests.network_policy_manifest(args)
    assert subset_mismatches(network_policy, session.raw("NetworkPolicy")) == []

    pod = manifests.workspace_pod_manifest(args, image, ca_cert_pem=cert)
    assert subset_mismatches(pod, session.raw("Pod")) == []


def test_the_pod_is_admitted_and_running(session: Session) -> None:
    def ready() -> bool:
        status = session.pod().status
        conditions = {c.type: c.status for c in status.conditions or ()}
        return status.phase == "Running" and conditions.get("Ready") == "True"

    wait_for(ready, "the workspace pod to be Running and Ready", timeout=60)


def test_an_unchanged_stack_previews_no_change(session: Session) -> None:
    # The Secret's name is a hash of its content: the same inputs, the same name.
    result = session.project.pulumi("preview", "--expect-no-changes", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_outputs(session: Session) -> None:
    args = session.spec.args
    names = args.names
    outputs = session.project.outputs()
    cert_pem = outputs.pop("caCertPem")
    assert outputs == {
        "sessionId": args.session_id,
        "namespace": args.namespace,
        "secretName": manifests.secret_name(args, cert_pem),
        "networkPolicyName": names.network_policy,
        "podName": names.pod,
        "podLabels": dict(names.pod_labels),
        "controlPort": args.control_port,
        "workloadKind": "Pod",
    }
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert decoded(session.secret())[contract.CA_CERT_FILE] == cert_pem


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"namespace": "Not_A_Namespace"}, "config namespace: "),
        (
            {"policy": {"rules": [{"allow": ["api.github.com:443"]}], "default": "deny"}},
            "config policy.rules[0].allow[0]: ",
        ),
        ({"caValidityHours": "a day"}, "caValidityHours"),
        ({"allowPlainHttp": "maybe"}, "allowPlainHttp"),
    ],
    ids=["bad namespace", "port in a host", "string for an integer", "string for a boolean"],
)
def test_bad_config_is_one_line_without_a_traceback(
    session: Session, config: dict[str, Any], expected: str
) -> None:
    project = Project(session.project.directory, session.project.backend, "bad-config")
    try:
        project.init({"sessionId": "e2e bad config", "namespace": session.spec.namespace, **config})
        result = project.pulumi("preview", check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        errors = error_lines(output)
        assert len(errors) == 1, output
        assert expected in errors[0], output
        assert "Traceback" not in output
        assert 'File "' not in output
    finally:
        project.pulumi("stack", "rm", "--yes", "--force", project.stack, check=False)
        Path(project.directory / f"Pulumi.{project.stack}.yaml").unlink(missing_ok=True)


# --- b. changes and teardown ----------------------------------------------------------


def test_a_policy_change_replaces_the_secret_and_the_pod(
    session: Session,
) -> None:
    old_secret, pod_uid = session.secret_name(), session.pod().metadata.uid
    session.project.set_config({"policy": CHANGED_POLICY})
    with WatchRecorder(session.api, session.spec.namespace) as recorder:
        session.project.up()
    events = recorder.timeline()
    new_secret = session.secret_name()
    assert new_secret != old_secret
    assert session.spec.args.names.owns_secret(new_secret)
    assert session.secrets() == [new_secret]  # the old one is gone, after the pod
    assert session.pod().metadata.uid != pod_uid
    assert_secret_replaced_around_the_pod(events, old_secret, new_secret)
    changed = SessionSpec(
        session.spec.session_id, namespace=session.spec.namespace, policy=CHANGED_POLICY
    )
    policy_file = decoded(session.secret())[contract.POLICY_FILE]
    assert policy_file == changed.args.egress_policy.to_json()
    kinds = {(e.type, e.kind) for e in events}
    assert {("DELETED", "Secret"), ("ADDED", "Secret"), ("DELETED", "Pod"), ("ADDED", "Pod")} <= (
        kinds
    ), describe(events)
    session.timelines["policy change"] = events
    session.spec = changed


def test_replacing_the_ca_rolls_the_pod_to_the_new_fingerprint(session: Session) -> None:
    before = session.project.outputs()["caCertPem"]
    pod_uid, old_secret = session.pod().metadata.uid, session.secret_name()
    (urn,) = [r["urn"] for r in session.project.resources() if r["type"] == CA_TYPE]
    with WatchRecorder(session.api, session.spec.namespace) as recorder:
        session.project.up("--replace", urn)
    after = session.project.outputs()["caCertPem"]
    assert after != before
    assert session.pod().metadata.uid != pod_uid
    assert sidecar_fingerprint(session.raw("Pod")) == manifests.ca_fingerprint(after)
    assert decoded(session.secret())[contract.CA_CERT_FILE] == after
    new_secret = session.secret_name()
    assert new_secret == manifests.secret_name(session.spec.args, after)
    assert session.secrets() == [new_secret]
    assert_secret_replaced_around_the_pod(recorder.timeline(), old_secret, new_secret)
    session.timelines["CA rotation"] = recorder.timeline()


@pytest.mark.parametrize("change", ["policy change", "CA rotation"])
def test_no_pod_runs_without_its_secret_and_network_policy_during_a_change(
    session: Session, change: str
) -> None:
    assert_never_unprotected(session.timelines[change], session.spec.args.names.network_policy)


def test_destroy_deletes_the_pod_before_the_network_policy_and_the_secret(
    session: Session,
) -> None:
    with WatchRecorder(session.api, session.spec.namespace) as recorder:
        session.project.pulumi("destroy", "--yes", "--skip-preview")
    events = recorder.timeline()
    pod_gone = last_revision(events, "Pod")
    assert pod_gone < last_revision(events, "NetworkPolicy"), describe(events)
    assert pod_gone < last_revision(events, "Secret"), describe(events)
    assert_never_unprotected(events, session.spec.args.names.network_policy)
    assert objects_in(session.spec.namespace) == []
