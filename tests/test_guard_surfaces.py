"""The guard on both surfaces: the SandboxGuard component and ``render-guard``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from condukt_egress import SandboxGuard, SandboxGuardArgs
from condukt_egress.cli import cli
from condukt_egress.cli.render_guard import GUARD_OPTIONS
from condukt_egress.guard import guard_manifests
from condukt_egress.guard_component import TYPE_TOKEN
from tests.k8s_schema import assert_valid, versions
from tests.pulumi_harness import run
from tests.test_imports import heavy, loaded_after

POLICY = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
BINDING = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"
SINCE_1_30 = tuple(v for v in versions() if tuple(map(int, v.split(".")[:2])) >= (1, 30))


def as_object(inputs: dict[str, Any], kind: str) -> dict[str, Any]:
    body = {k: v for k, v in inputs.items() if k not in ("apiVersion", "kind")}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, **body}


def test_component_declares_the_same_objects_parented_and_bindings_after_policies() -> None:
    args = SandboxGuardArgs(only_session_pods=True, allowed_network_policies=["default-deny"])
    recorded = run(lambda: SandboxGuard("guard", args).policy_names)
    component = recorded.one(TYPE_TOKEN)
    expected = guard_manifests(args)
    # Registration order follows when each input resolves: compare by name.
    names = [o["metadata"]["name"] for o in expected[::2]]
    policies = sorted(
        recorded.of_type(POLICY), key=lambda r: names.index(r.inputs["metadata"]["name"])
    )
    by_name = {b.inputs["metadata"]["name"]: b for b in recorded.of_type(BINDING)}
    bindings = [by_name[name] for name in names]
    assert [as_object(p.inputs, "ValidatingAdmissionPolicy") for p in policies] == expected[::2]
    assert [as_object(b.inputs, "ValidatingAdmissionPolicyBinding") for b in bindings] == expected[
        1::2
    ]
    for policy, binding in zip(policies, bindings, strict=True):
        assert policy.parent == component.urn
        assert binding.parent == component.urn
        assert policy.urn in binding.dependencies  # created after, deleted before its policy
        assert_valid(as_object(binding.inputs, "ValidatingAdmissionPolicyBinding"), SINCE_1_30)
    assert recorded.outputs[component.urn]["policyNames"] == [
        o["metadata"]["name"] for o in expected[::2]
    ]


def test_component_refuses_other_args() -> None:
    with pytest.raises(TypeError) as caught:
        run(lambda: SandboxGuard("guard", {"only_session_pods": True}))  # type: ignore[arg-type]
    assert str(caught.value) == (
        "args must be SandboxGuardArgs, got dict; "
        "build it with SandboxGuardArgs(namespace_labels=..., ...)"
    )


def invoke(*argv: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(argv))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_render_guard_prints_what_the_component_declares(tmp_path: Path) -> None:
    code, out, err = invoke(
        "render-guard",
        "--namespace-label",
        "team=agents",
        "--allowed-network-policy",
        "default-deny",
        "--only-session-pods",
        "--no-ephemeral-containers",
        "--sidecar-image",
        "registry.example/condukt-egress:1.5.1",
        "--mode",
        "warn",
    )
    assert code == 0, err
    objects = list(yaml.safe_load_all(out))
    expected = guard_manifests(
        SandboxGuardArgs(
            namespace_labels={"team": "agents"},
            allowed_network_policies=["default-deny"],
            only_session_pods=True,
            ephemeral_containers=False,
            sidecar_images=["registry.example/condukt-egress:1.5.1"],
            mode="warn",
        )
    )
    assert objects == expected
    for obj in objects:
        assert_valid(obj, SINCE_1_30)
    assert "kubectl label namespace NS team=agents" in err
    code, _, _ = invoke(
        "render-guard", "--format", "json", "--output-file", str(tmp_path / "g.json")
    )
    assert code == 0
    listed = json.loads((tmp_path / "g.json").read_text())
    assert listed["items"] == guard_manifests(SandboxGuardArgs())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--namespace-label", "novalue"], "--namespace-label: must be KEY=VALUE"),
        (
            ["--namespace-label", "bad key=x"],
            "--namespace-label['bad key']: is not a valid Kubernetes label key",
        ),
        (["--allowed-network-policy", "Bad"], "--allowed-network-policy: 'Bad' is not a Network"),
        (["--proxy-port", "443"], "--proxy-port: must not be 443"),
        (
            ["--no-session-pods", "--no-ephemeral-containers", "--no-network-policies"],
            "--session-pods: every rule is off",
        ),
    ],
)
def test_render_guard_names_the_flag_and_the_fix(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["render-guard", *argv])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {message}")
    assert len(result.stderr.splitlines()) == 1


def test_every_guard_option_is_declared_and_is_a_flag() -> None:
    fields = [f.name for f in dataclasses.fields(SandboxGuardArgs)]
    assert [o.name for o in GUARD_OPTIONS] == fields
    code, out, _ = invoke("render-guard", "--help")
    assert code == 0
    for opt in GUARD_OPTIONS:
        assert opt.flag in out


def test_render_guard_and_the_pure_guard_never_load_pulumi() -> None:
    assert heavy(loaded_after("from condukt_egress import SandboxGuardArgs")) == []
    code = (
        "from condukt_egress.cli import main\n"
        "import tempfile, os\n"
        "main(['render-guard', '--output-file', os.path.join(tempfile.mkdtemp(), 'g.yaml')])"
    )
    assert heavy(loaded_after(code)) == []
