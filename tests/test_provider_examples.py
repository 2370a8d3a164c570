"""The TypeScript and YAML examples use the package as its schema says, and their inputs hold.

No Pulumi CLI here, so no SDK can be generated and the TypeScript program
cannot be type-checked; instead the YAML program's inputs go through the
provider's own input mapping and the one implementation, and the TypeScript
program is checked against the schema's names.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import grpc  # type: ignore[import-untyped]
import pytest
import yaml
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.runtime import rpc

from condukt_egress import manifests, provider, workloads
from tests.corpus import CORPUS, needs_corpus
from tests.k8s_schema import assert_valid
from tests.provider_engine import PROVIDER_DIR, output_value, running_provider
from tests.security_properties import assert_workload_secure, pod_template
from tests.test_transform_sdk import ints

EGRESS = "condukt-egress:index:SandboxEgress"
WORKLOAD = "condukt-egress:index:SandboxWorkload"

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PROVIDER_DIR / "schema.json").read_text())
    return loaded


@pytest.mark.parametrize("language", ["typescript", "yaml", "go", "java"])
def test_example_projects_add_the_provider_folder(language: str) -> None:
    project = yaml.safe_load((EXAMPLES / language / "Pulumi.yaml").read_text())
    source = (EXAMPLES / language / project["packages"]["condukt-egress"]).resolve()
    assert source == PROVIDER_DIR
    assert project["config"]["sessionId"]["type"] == "string"


def test_typescript_example_resolves_modules_as_typescript_7_requires() -> None:
    # TypeScript 7 drops moduleResolution node (node10); node16 pairs with module node16.
    options = json.loads((EXAMPLES / "typescript" / "tsconfig.json").read_text())
    compiler = options["compilerOptions"]
    assert compiler["moduleResolution"] in {"node16", "nodenext", "bundler"}
    if compiler["moduleResolution"] != "bundler":
        assert compiler["module"] == compiler["moduleResolution"]


@pytest.mark.parametrize(
    ("language", "generated"),
    [
        ("typescript", ["sdks/pulumi-condukt-egress/index.ts", "node_modules/x", "bin/index.js"]),
        ("yaml", ["sdks/pulumi-condukt-egress/condukt-egress-0.1.0.yaml"]),
        ("go", ["sdks/pulumi-condukt-egress/go.mod"]),
        ("java", ["sdks/pulumi-condukt-egress/build.gradle", "target/classes/App.class"]),
    ],
)
def test_what_pulumi_install_writes_into_an_example_is_ignored(
    language: str, generated: list[str]
) -> None:
    git = shutil.which("git")
    if git is None or not (EXAMPLES.parent / ".git").exists():
        pytest.skip("not a git checkout")
    checked = subprocess.run(
        [git, "check-ignore", "--no-index", *generated],
        cwd=EXAMPLES / language,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.stdout.split() == generated


def _substitute(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return variables[value[2:-1]]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    return value


def test_yaml_example_inputs_are_accepted_by_the_provider() -> None:
    program = yaml.safe_load((EXAMPLES / "yaml" / "Pulumi.yaml").read_text())
    schema = _schema()
    host = ComponentProvider(
        [provider.SandboxEgress, provider.SandboxWorkload], provider.PACKAGE, version="0.1.0"
    )
    resources = program["resources"]
    for resource in resources.values():
        declared = schema["resources"][resource["type"]]
        assert set(resource["properties"]) <= set(declared["inputProperties"])
        assert set(declared["requiredInputs"]) <= set(resource["properties"])

    variables: dict[str, Any] = {"sessionId": "42", "namespace": "agents"}
    egress_inputs = _substitute(resources["egress"]["properties"], variables)
    mapped = host.map_inputs(egress_inputs, host._component_defs["SandboxEgress"])
    args = provider.python_args(mapped)
    assert args.egress_policy.decide_timeout_ms == 5000
    assert args.egress_policy.evaluate("api.openai.com").action == "allow"

    variables["egress.session"] = provider.session_document(args)
    agent_inputs = _substitute(resources["agent"]["properties"], variables)
    mapped = host.map_inputs(agent_inputs, host._component_defs["SandboxWorkload"])
    session = provider.session_args(mapped["session"])
    assert session == args
    manifest = cast("dict[str, Any]", mapped["workload"])
    workload = workloads.workload_of(f"kubernetes:{manifest['apiVersion']}:{manifest['kind']}")
    assert workload is not None
    injected = {
        "apiVersion": manifest["apiVersion"],
        "kind": manifest["kind"],
        **workloads.inject_workload(manifest, workload, "agent", session),
    }
    assert_valid(injected)
    assert_workload_secure(injected, session.names.pod_labels, "agents")

    for expression in program["outputs"].values():
        name, prop = expression[2:-1].split(".")
        assert prop in schema["resources"][resources[name]["type"]]["properties"]


def test_typescript_example_uses_the_schema_names() -> None:
    source = (EXAMPLES / "typescript" / "index.ts").read_text()
    schema = _schema()
    classes = set(re.findall(r"new condukt\.(\w+)\(", source))
    assert classes == {"SandboxEgress", "SandboxWorkload"}
    for cls in classes:
        assert f"condukt-egress:index:{cls}" in schema["resources"]
    egress = schema["resources"]["condukt-egress:index:SandboxEgress"]
    workload = schema["resources"]["condukt-egress:index:SandboxWorkload"]
    for used in re.findall(r"\b(?:egress|agent|worker)\.(\w+)", source):
        assert used in egress["properties"] or used in workload["properties"], used
    for key in ("sessionId", "namespace", "policy", "session", "workload", "podTemplate"):
        assert re.search(rf"\b{key}\b", source)
    assert "timeoutMs" in source  # nested names are camelCase too
    package = json.loads((EXAMPLES / "typescript" / "package.json").read_text())
    # What `pulumi package add` links: the SDK folder is named <namespace>-<name>.
    assert package["dependencies"]["@pulumi/condukt-egress"] == "file:sdks/pulumi-condukt-egress"
    assert "@pulumi/condukt-egress" in source


def _corpus_workloads(every: int) -> list[tuple[str, dict[str, Any]]]:
    assert CORPUS is not None
    found = []
    for file in sorted(CORPUS.glob("*.yaml")):
        try:
            docs = list(yaml.safe_load_all(file.read_text()))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if (
                isinstance(doc, dict)
                and doc.get("kind") in workloads.WORKLOAD_KINDS
                and isinstance(doc.get("apiVersion"), str)
                and isinstance(doc.get("spec"), dict)
            ):
                metadata = {
                    k: v for k, v in (doc.get("metadata") or {}).items() if k != "namespace"
                }
                found.append((file.name, {**doc, "metadata": metadata}))
    return found[::every]


@needs_corpus
def test_corpus_workloads_through_the_provider_are_injected_or_refused_by_field(
    tmp_path: Path,
) -> None:
    """Every 8th real-world workload, sent to the provider process as a program would send it."""
    sample = _corpus_workloads(every=8)
    assert len(sample) >= 40
    injected, refused = 0, []
    with running_provider(tmp_path) as engine:
        egress = engine.construct(EGRESS, "s", {"sessionId": "corpus", "namespace": "agents"})
        session = output_value(
            rpc.deserialize_properties(egress.state)["session"],
            list(egress.stateDependencies["session"].urns),
        )
        labels = provider.session_args(
            rpc.deserialize_properties(egress.state)["session"]
        ).names.pod_labels
        for index, (file, doc) in enumerate(sample):
            workload = json.loads(json.dumps(doc, default=str))
            workload = {k: workload[k] for k in ("apiVersion", "kind", "metadata", "spec")}
            reply, details = None, ""
            try:
                reply = engine.construct(
                    WORKLOAD, f"w{index}", {"session": session, "workload": workload}
                )
            except grpc.RpcError as error:
                details = error.details() or ""
            if reply is None:
                # A refusal names the kind, the resource, the field and the fix.
                field = rf"{doc['kind']} 'w{index}' spec\.[^\n]*?: \S"
                assert re.search(field, details), (file, details)
                refused.append(file)
                continue
            manifest = ints(rpc.deserialize_properties(reply.state)["manifest"])
            template = pod_template(manifest)
            assert manifest["metadata"]["namespace"] == "agents"
            assert labels.items() <= template["metadata"]["labels"].items()
            init = [c["name"] for c in template["spec"].get("initContainers") or ()]
            assert init[0] == manifests.NETFILTER_CONTAINER, file
            assert manifests.SIDECAR_CONTAINER in init, file
            injected += 1
    assert injected > 3 * len(refused)
