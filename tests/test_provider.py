"""The multi-language provider: its schema, its plugin files, and GetSchema/Construct over gRPC.

The gRPC tests start ``python provider/ <engine address>`` as the engine does
(see tests/provider_engine.py) and compare what the provider process registers
with what a Python program registers for the same inputs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal, get_args

import grpc  # type: ignore[import-untyped]
import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from google.protobuf import empty_pb2  # type: ignore[import-untyped]
from pulumi.runtime import rpc
from pulumi.runtime.proto import errors_pb2, provider_pb2, status_pb2

from condukt_egress import args as py_args
from condukt_egress import component, manifests, provider
from condukt_egress.errors import ConfigError
from condukt_egress.options import camel, document, options_of
from condukt_egress.policy import DefaultAction, EgressPolicy
from tests.ca_mask import mask_ca_fingerprints
from tests.k8s_schema import assert_valid
from tests.provider_engine import PROVIDER_DIR, EngineDouble, output_value, running_provider
from tests.pulumi_harness import Recorder, Registration, run
from tests.security_properties import assert_workload_secure
from tests.test_transform_sdk import ints
from tests.transform_monitor import EngineMonitor

SCHEMA_FILE = PROVIDER_DIR / "schema.json"
REGENERATE = ".venv/bin/python -m condukt_egress.provider > provider/schema.json"
EGRESS = "condukt-egress:index:SandboxEgress"
WORKLOAD = "condukt-egress:index:SandboxWorkload"
SECRET = "kubernetes:core/v1:Secret"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"

# The same session and workload, as a TypeScript program writes them (camelCase, wire form)...
WIRE_INPUTS: dict[str, Any] = {
    "sessionId": "Agent Run 42",
    "namespace": "agents",
    "policy": {
        "rules": [
            {"deny": ["*.internal.example.com"]},
            {"allow": ["api.github.com", "*.openai.com"]},
            {"decide": {"timeoutMs": 5000}},
        ],
        "default": "deny",
        "redact": ["x-api-key"],
    },
    "trustBundle": "public-roots",
    "caKeyAlgorithm": "ecdsa-p384",
    "clusterCidrs": ["100.64.0.0/10"],
    "unproxiedEgress": [{"cidr": "10.0.12.7/32", "ports": [5432]}],
}
DEPLOYMENT_MANIFEST: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "agent", "labels": {"app": "agent"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "workspace", "image": "python:3.13-slim"}]},
        },
    },
}
# ... and as a Python program writes them.
PY_ARGS = py_args.SandboxEgressArgs(
    session_id="Agent Run 42",
    namespace="agents",
    policy={
        "rules": [
            {"deny": ["*.internal.example.com"]},
            {"allow": ["api.github.com", "*.openai.com"]},
            {"decide": {"timeout_ms": 5000}},
        ],
        "default": "deny",
        "redact": ["x-api-key"],
    },
    trust_bundle="public-roots",
    ca_key_algorithm="ecdsa-p384",
    cluster_cidrs=["100.64.0.0/10"],
    unproxied_egress=[{"cidr": "10.0.12.7/32", "ports": [5432]}],
)


# --- the schema -----------------------------------------------------------------


def test_checked_in_schema_is_current() -> None:
    current = provider.schema()
    checked_in = json.loads(SCHEMA_FILE.read_text())
    assert current == checked_in, f"provider/schema.json is stale; regenerate it: {REGENERATE}"


def _properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for token, resource in schema["resources"].items():
        yield token, resource
        for kind in ("inputProperties", "properties"):
            for name, prop in resource[kind].items():
                yield f"{token}.{kind}.{name}", prop
    for token, type_ in schema["types"].items():
        yield token, type_
        for name, prop in (type_.get("properties") or {}).items():
            yield f"{token}.{name}", prop
        for value in type_.get("enum") or ():
            yield f"{token}.{value['name']}", value


def test_every_resource_type_property_and_enum_value_is_described() -> None:
    undescribed = [
        where for where, node in _properties(provider.schema()) if not node.get("description")
    ]
    assert undescribed == []


def test_descriptions_are_markdown_paragraphs_not_code_blocks() -> None:
    for where, node in _properties(provider.schema()):
        assert not re.search(r"\n {4}", node.get("description", "")), where


def test_option_descriptions_come_from_the_registry() -> None:
    inputs = provider.schema()["resources"][EGRESS]["inputProperties"]
    registry = options_of(py_args.SandboxEgressArgs)
    assert registry
    for opt in registry:
        described = inputs[opt.config]["description"]
        assert described.startswith(opt.help), opt.name
        assert opt.required or described.endswith(f" Default: {opt.doc_default}.")
    assert inputs["proxyPort"]["description"].endswith("Default: 15001.")


def _schema_kind(schema: dict[str, Any], node: dict[str, Any]) -> tuple[str, list[str]]:
    """A schema node's type as the registry names its kinds, and an enum's sorted values."""
    if "$ref" not in node:
        return node["type"], []
    type_ = schema["types"][node["$ref"].removeprefix("#/types/")]
    return type_["type"], sorted(value["value"] for value in type_.get("enum", ()))


def _python_only_kind(default: Any) -> str:
    """The schema type a Python-only field's default calls for."""
    kinds = {bool: "boolean", int: "integer", str: "string", tuple: "array", dict: "object"}
    return kinds[type(default)]


@pytest.mark.parametrize("source", ["served", "checked in"])
def test_inputs_are_the_python_args_fields_as_the_registry_declares_them(source: str) -> None:
    """Each SandboxEgressArgs field is an input of its kind, requiredness, default and one text.

    The served schema is built from args.py, so it must agree with the option
    registry by construction; the checked-in one goes stale (and fails here)
    the moment an option is added to or changed in args.py.
    """
    schema = provider.schema() if source == "served" else json.loads(SCHEMA_FILE.read_text())
    stale = "" if source == "served" else f"; provider/schema.json is stale: {REGENERATE}"
    resource = schema["resources"][EGRESS]
    inputs = resource["inputProperties"]
    fields = dataclasses.fields(py_args.SandboxEgressArgs)
    registry = {opt.name: opt for opt in options_of(py_args.SandboxEgressArgs)}
    assert sorted(inputs) == sorted(camel(f.name) for f in fields), f"input names{stale}"
    required = [opt.config for opt in registry.values() if opt.required]
    assert resource["requiredInputs"] == required == ["sessionId"], f"required inputs{stale}"
    python_docs = provider._attribute_docs(py_args.SandboxEgressArgs)
    for f in fields:
        prop = inputs[camel(f.name)]
        where = f"{f.name}{stale}"
        assert prop["plain"] is True, where
        opt = registry.get(f.name)
        if opt is None:
            default = f.default_factory() if callable(f.default_factory) else f.default
            assert _schema_kind(schema, prop)[0] == _python_only_kind(default), where
            text, _, shown_default = prop["description"].rpartition(" Default: ")
            assert shown_default == f"{json.dumps(document(default))}.", where
            # The one text: the field's entry in the Attributes section of args.py.
            assert text == python_docs[f.name], where
            continue
        kind, values = _schema_kind(schema, prop)
        assert kind == opt.kind, where
        assert values == sorted(opt.choices), where
        if opt.kind == "array":
            assert _schema_kind(schema, prop["items"])[0] == opt.items, where
        described = opt.help if opt.required else f"{opt.help} Default: {opt.doc_default}."
        assert prop["description"] == described, where


def test_the_inputs_typeddict_is_built_from_a_dataclass() -> None:
    @dataclasses.dataclass(frozen=True)
    class Demo:
        name: str
        bundle: py_args.TrustBundle = "session-ca"
        policy: EgressPolicy | Mapping[str, Any] | None = None
        cidrs: Sequence[str] = ()
        egress: Sequence[py_args.UnproxiedEgress | Mapping[str, Any]] = ()
        labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
        dns: str | None = None

    made = provider._inputs_of(Demo)
    assert typing.is_typeddict(made)
    assert typing.get_type_hints(made) == {
        "name": str,
        "bundle": provider.TrustBundle,
        "policy": provider.EgressPolicy,
        "cidrs": list[str],
        "egress": list[provider.UnproxiedEgress],
        "labels": dict[str, str],
        "dns": str,
    }
    assert made.__required_keys__ == {"name"}


@pytest.mark.parametrize(
    "hint",
    [Literal["a", "b"], int | str, Sequence[py_args.SessionOptions], Mapping[int, str]],
)
def test_a_python_type_without_a_schema_form_is_refused_naming_the_field_and_fix(
    hint: Any,
) -> None:
    with pytest.raises(TypeError, match=r"SandboxEgressArgs\.demo: .* has no schema form; declare"):
        provider._wire_type(hint, "demo")


def test_attribute_docs_are_the_google_style_entries_as_markdown() -> None:
    class Demo:
        """A demo.

        Attributes:
            port: The port
                (``15001`` unless set).
            uid: The uid.

        Prose after the section.
        """

    assert provider._attribute_docs(Demo) == {
        "port": "The port (`15001` unless set).",
        "uid": "The uid.",
    }


def test_an_undocumented_python_only_field_stops_the_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = py_args.SandboxEgressArgs.__doc__ or ""
    monkeypatch.setattr(
        py_args.SandboxEgressArgs, "__doc__", re.sub(r"\n +control_port: .*\n", "\n", doc)
    )
    with pytest.raises(TypeError, match="control_port is undocumented: describe it in the Attrib"):
        provider.EgressProvider()


def test_the_namespace_and_every_sdk_name_are_pinned() -> None:
    """A git install must generate the names a local path does.

    For a git source whose schema has no namespace, the CLI makes the
    repository owner the namespace (packageworkspace.injectSchemaMetadata),
    and each code generator derives its names from it unless the option it
    reads first is set: nodejs packageName, python packageName, csharp
    rootNamespace, go importBasePath, java basePackage.
    """
    schema = provider.schema()
    assert schema["namespace"] == "pulumi"
    pinned = {
        "nodejs": "packageName",
        "python": "packageName",
        "csharp": "rootNamespace",
        "go": "importBasePath",
        "java": "basePackage",
    }
    names = {lang: schema["language"][lang].get(key) for lang, key in pinned.items()}
    assert names == {
        "nodejs": "@pulumi/condukt-egress",
        "python": "pulumi_condukt_egress",
        "csharp": "Pulumi",
        "go": "example.com/pulumi-condukt-egress/sdk/go/conduktegress",
        "java": "com.pulumi",
    }
    # The TypeScript example imports the package by that name.
    example = PROVIDER_DIR.parent / "examples" / "typescript" / "index.ts"
    assert '"@pulumi/condukt-egress"' in example.read_text()


# Java's reserved words and the literals pulumi-java treats alike (names/ident.go).
# fmt: off
_JAVA_KEYWORDS = frozenset((
    "abstract", "assert", "boolean", "break", "byte", "case", "catch", "char", "class", "const",
    "continue", "default", "do", "double", "else", "enum", "extends", "final", "finally", "float",
    "for", "goto", "if", "implements", "import", "instanceof", "int", "interface", "long",
    "native", "new", "package", "private", "protected", "public", "return", "short", "static",
    "strictfp", "super", "switch", "synchronized", "this", "throw", "throws", "transient", "try",
    "void", "volatile", "while", "_", "false", "null", "true", "var",
))
# fmt: on


def test_the_policys_default_is_the_one_java_keyword_and_docs_name_its_java_accessor() -> None:
    # pulumi-java appends "_" to a keyword (names/ident.go). A schema
    # language.java.name renames only the private field (pulumi-java 1.0.0:
    # input types' accessors follow the schema name), so the Java SDK has
    # EgressPolicyArgs.builder().default_(...) and docs/languages.md says so.
    schema = provider.schema()
    keywords = [
        f"{token}.{name}"
        for token, type_ in schema["types"].items()
        for name in type_.get("properties") or {}
        if name in _JAVA_KEYWORDS
    ]
    for token, resource in schema["resources"].items():
        for kind in ("inputProperties", "properties"):
            keywords += [f"{token}.{name}" for name in resource[kind] if name in _JAVA_KEYWORDS]
    assert keywords == ["condukt-egress:index:EgressPolicy.default"]
    docs = (PROVIDER_DIR.parent / "docs" / "languages.md").read_text()
    assert ".default_(DefaultAction.Deny)" in docs


@pytest.mark.parametrize(
    ("enum", "literal"),
    [
        (provider.TrustBundle, py_args.TrustBundle),
        (provider.CaKeyAlgorithm, py_args.CaKeyAlgorithm),
        (provider.Protocol, py_args.Protocol),
        (provider.DefaultAction, DefaultAction),
    ],
)
def test_enums_are_the_python_literals(enum: Any, literal: Any) -> None:
    assert sorted(member.value for member in enum) == sorted(get_args(literal))
    assert provider._wire_type(literal, "x") is enum  # found by its Literal, not by its values


def test_an_enum_that_drifts_from_its_literal_fails_at_import() -> None:
    class Drifted(StrEnum):
        A = "a"

    with pytest.raises(TypeError, match="give the enum one member per Literal value"):
        provider._mirrors(Literal["a", "b"])(Drifted)


def test_outputs_and_types_the_other_languages_see() -> None:
    schema = provider.schema()
    egress = schema["resources"][EGRESS]
    assert sorted(egress["properties"]) == [
        "caCertPem",
        "caFingerprint",
        "networkPolicyName",
        "podLabels",
        "secretName",
        "session",
    ]
    assert egress["required"] == sorted(egress["properties"])
    assert sorted(t.rsplit(":", 1)[1] for t in schema["types"]) == [
        "CaKeyAlgorithm",
        "DecideRule",
        "DefaultAction",
        "DnsFilter",
        "EgressPolicy",
        "PolicyRule",
        "Protocol",
        "TrustBundle",
        "UnproxiedEgress",
    ]
    workload = schema["resources"][WORKLOAD]
    assert workload["requiredInputs"] == ["session"]
    assert "required" not in workload  # none: omitted, as the CLI holds it
    # What the Python API needs at preview is plain; a session flows as an Output.
    assert all(p.get("plain") for p in egress["inputProperties"].values())
    assert not any(p.get("plain") for p in workload["inputProperties"].values())


def test_the_document_forms_accept_the_keys_the_python_side_accepts() -> None:
    # The policy and unproxied-egress types other languages send are written
    # out for the schema; they must name exactly what policy.py and args.py read.
    from condukt_egress import policy  # noqa: PLC0415

    def keys(cls: Any) -> tuple[set[str], set[str]]:
        return set(cls.__annotations__), set(cls.__required_keys__)

    assert keys(provider.EgressPolicy) == (set(policy._DOC_KEYS), set())
    assert keys(provider.DecideRule) == (set(policy._DECIDE_KEYS), set())
    assert keys(provider.PolicyRule) == (set(get_args(policy.RuleKind)), set())
    fields = dataclasses.fields(py_args.UnproxiedEgress)
    assert keys(provider.UnproxiedEgress) == (
        {f.name for f in fields},
        {f.name for f in fields if f.default is dataclasses.MISSING},
    )


# --- plugin files -------------------------------------------------------------


def test_plugin_manifest_is_what_pulumi_package_add_reads() -> None:
    manifest = yaml.safe_load((PROVIDER_DIR / "PulumiPlugin.yaml").read_text())
    # workspace.PluginProject (sdk/go/common/workspace/project.go): runtime,
    # packages, requiredPulumiVersion, template; nothing else is read.
    assert set(manifest) <= {"runtime", "packages", "requiredPulumiVersion", "template"}
    # The oldest CLI the e2e suite proves: the one it builds (scripts/e2e-versions).
    versions = PROVIDER_DIR.parent / "scripts" / "e2e-versions"
    if versions.is_file():
        pinned = re.search(r"^PULUMI_VERSION=v(\S+)$", versions.read_text(), re.MULTILINE)
        assert pinned, f"{versions} pins no PULUMI_VERSION"
        assert manifest["requiredPulumiVersion"] == f">={pinned[1]}", (
            "provider/PulumiPlugin.yaml: set requiredPulumiVersion to the CLI the e2e suite runs"
        )
    else:
        assert manifest["requiredPulumiVersion"].startswith(">=3.")
    assert manifest["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": "venv"},
    }
    # The language host runs `python <folder> <engine>`: __main__.py is the entry point.
    main = (PROVIDER_DIR / "__main__.py").read_text()
    assert "main(EgressProvider(), sys.argv[1:])" in main
    assert 'if __name__ == "__main__":' in main


def test_plugin_requirements_install_this_repository_with_its_pins() -> None:
    lines = [
        line
        for line in (PROVIDER_DIR / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == ["-r ../requirements.txt", "-e .."]
    repository = PROVIDER_DIR.parent
    assert (repository / "requirements.txt").is_file()
    assert (repository / "pyproject.toml").is_file()


def test_plugin_venv_is_not_committed() -> None:
    ignored = (PROVIDER_DIR.parent / ".gitignore").read_text().splitlines()
    assert "venv/" in ignored


# --- the provider over gRPC -------------------------------------------------------


@dataclasses.dataclass
class Constructed:
    engine: EngineDouble
    egress: Any
    workload: Any
    template: Any


@pytest.fixture(scope="module")
def constructed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Constructed]:
    with running_provider(tmp_path_factory.mktemp("program")) as engine:
        egress = engine.construct(EGRESS, "s-42", WIRE_INPUTS)
        session = rpc.deserialize_properties(egress.state)["session"]
        deps = list(egress.stateDependencies["session"].urns)
        workload = engine.construct(
            WORKLOAD,
            "agent",
            {"session": output_value(session, deps), "workload": DEPLOYMENT_MANIFEST},
        )
        template = engine.construct(
            WORKLOAD,
            "template",
            {
                "session": output_value(session, deps),
                "podTemplate": DEPLOYMENT_MANIFEST["spec"]["template"],
            },
        )
        yield Constructed(engine, egress, workload, template)


@pytest.fixture(scope="module")
def python_recorded() -> Recorder:
    """The same session and Deployment in a Python program; the engine double runs the transform."""

    def program() -> None:
        egress = component.SandboxEgress("s-42", PY_ARGS)
        k8s.apps.v1.Deployment(
            "agent",
            metadata=DEPLOYMENT_MANIFEST["metadata"],
            spec=DEPLOYMENT_MANIFEST["spec"],
            opts=egress.workload_options(),
        )

    return run(program, monitor_factory=EngineMonitor)


def test_plugin_info_and_schema_come_from_the_running_provider(constructed: Constructed) -> None:
    provider_stub = constructed.engine.provider
    info = provider_stub.GetPluginInfo(empty_pb2.Empty())
    assert info.version == provider.version() == "0.1.0"
    reply = provider_stub.GetSchema(provider_pb2.GetSchemaRequest(version=0))
    served = json.loads(reply.schema)
    assert served == json.loads(SCHEMA_FILE.read_text())
    assert served["name"] == "condukt-egress"
    assert served["version"] == "0.1.0"


_PEM = re.compile(r"-----BEGIN [A-Z ]+-----[^-]+-----END [A-Z ]+-----\n?")


def _comparable(reg: Registration) -> tuple[str, str, str, Any, frozenset[str]]:
    """A registration with its random key material and the mock stack prefix taken out."""

    def strip(urn: str) -> str:
        return urn.replace("pulumi:pulumi:Stack$", "")

    inputs, _ = mask_ca_fingerprints(ints(reg.inputs))  # the Secret's name has the CA's hash
    inputs = json.loads(_PEM.sub("<PEM>", json.dumps(inputs, sort_keys=True)))
    if isinstance(inputs.get("data"), dict):  # the JVM trust store holds the CA too
        inputs["data"] = dict.fromkeys(inputs["data"], "<PKCS#12>")
    return (
        reg.type,
        reg.name,
        strip(reg.parent).rsplit("::", 2)[-2] if reg.parent else "",
        inputs,
        frozenset(strip(d) for d in reg.dependencies),
    )


def test_session_children_are_the_python_components(
    constructed: Constructed, python_recorded: Recorder
) -> None:
    """CA key, CA certificate, Secret, NetworkPolicy: same types, names, parents, inputs, deps."""
    ours = [r for r in constructed.engine.recorder.registrations if r.name.startswith("s-42")]
    theirs = [r for r in python_recorded.registrations if r.name.startswith("s-42")]
    assert len(ours) == 5
    assert sorted(map(_comparable, ours), key=repr) == sorted(map(_comparable, theirs), key=repr)
    assert constructed.egress.urn == (
        "urn:pulumi:test::condukt-egress::condukt-egress:index:SandboxEgress::s-42"
    )


def test_session_outputs_carry_their_dependencies(constructed: Constructed) -> None:
    state = rpc.deserialize_properties(constructed.egress.state)
    names = py_args.SandboxEgressArgs(session_id="Agent Run 42").names
    assert state["secretName"] == manifests.secret_name(PY_ARGS, state["caCertPem"])
    assert state["networkPolicyName"] == names.network_policy
    assert state["podLabels"] == names.pod_labels
    assert state["caCertPem"].startswith("-----BEGIN CERTIFICATE-----")
    deps = {k: sorted(v.urns) for k, v in constructed.egress.stateDependencies.items()}
    # The session also carries the CA's fingerprint, so it depends on the CA too.
    assert {u.rsplit("::", 1)[1] for u in deps["session"]} == {
        "s-42-ca",
        "s-42-network-policy",
        "s-42-secret",
    }
    assert provider.session_args(state["session"]) == PY_ARGS
    ca = provider.session_ca(state["session"])
    assert ca == manifests.ca_binding(PY_ARGS, state["caCertPem"])
    assert ca is not None
    assert (ca.fingerprint, ca.secret_name) == (state["caFingerprint"], state["secretName"])


def test_declared_workload_is_the_python_injected_workload(
    constructed: Constructed, python_recorded: Recorder
) -> None:
    registrations = constructed.engine.recorder.registrations
    ours = next(r for r in registrations if r.type == DEPLOYMENT)
    theirs = python_recorded.one(DEPLOYMENT)
    (ours_masked, ours_ca), (theirs_masked, theirs_ca) = (
        mask_ca_fingerprints(ints(ours.inputs)),
        mask_ca_fingerprints(ints(theirs.inputs)),
    )
    assert ours_masked == theirs_masked
    # Each carries its own session CA, so a new CA rolls the pods in both.
    egress_state = rpc.deserialize_properties(constructed.egress.state)
    assert ours_ca == [egress_state["caFingerprint"]]
    assert len(theirs_ca) == 1
    parent = next(r for r in registrations if r.type == WORKLOAD and r.name == "agent")
    assert ours.parent == parent.urn
    # Ordered after the Secret and the NetworkPolicy, like workload_options() orders it,
    # and after the CA whose fingerprint its sidecar carries (the session output's).
    assert {d.rsplit("::", 1)[1] for d in ours.dependencies} == {
        "s-42-ca",
        "s-42-secret",
        "s-42-network-policy",
    }
    assert {d.rsplit("::", 1)[1] for d in theirs.dependencies} <= {
        d.rsplit("::", 1)[1] for d in ours.dependencies
    }
    obj = ints(ours.inputs)
    assert_valid(obj)
    assert_workload_secure(obj, PY_ARGS.names.pod_labels, "agents")
    manifest = ints(rpc.deserialize_properties(constructed.workload.state)["manifest"])
    assert manifest == obj


def test_pod_template_comes_back_injected_without_declaring_anything(
    constructed: Constructed, python_recorded: Recorder
) -> None:
    template = ints(rpc.deserialize_properties(constructed.template.state)["podTemplate"])
    theirs = ints(python_recorded.one(DEPLOYMENT).inputs)["spec"]["template"]
    template_masked, template_ca = mask_ca_fingerprints(template)
    theirs_masked, _ = mask_ca_fingerprints(theirs)
    assert template_masked == theirs_masked
    egress_state = rpc.deserialize_properties(constructed.egress.state)
    assert template_ca == [egress_state["caFingerprint"]]
    children = [
        r
        for r in constructed.engine.recorder.registrations
        if "SandboxWorkload::template" in r.parent
    ]
    assert children == []
    deps = constructed.template.stateDependencies["podTemplate"].urns
    assert {d.rsplit("::", 1)[1] for d in deps} == {
        "s-42-ca",
        "s-42-secret",
        "s-42-network-policy",
    }


def test_preview_constructs_the_same_outputs(constructed: Constructed) -> None:
    engine = constructed.engine
    preview = engine.construct(EGRESS, "preview", WIRE_INPUTS, dry_run=True)
    state = rpc.deserialize_properties(preview.state)
    # Known at preview, so a workload's refusal shows at `pulumi preview`.
    assert provider.session_args(state["session"]) == PY_ARGS
    deps = list(preview.stateDependencies["session"].urns)
    workload = engine.construct(
        WORKLOAD,
        "preview-agent",
        {"session": output_value(state["session"], deps), "workload": DEPLOYMENT_MANIFEST},
        dry_run=True,
    )
    assert rpc.deserialize_properties(workload.state)["manifest"]["kind"] == "Deployment"


def _construct_error(engine: EngineDouble, type_: str, inputs: dict[str, Any]) -> str:
    """The error the engine shows: the details, and any input property errors in the trailers."""
    with pytest.raises(grpc.RpcError) as caught:
        engine.construct(type_, "bad", inputs)
    parts = [caught.value.details() or ""]
    for key, value in caught.value.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                errors = errors_pb2.InputPropertiesError()
                detail.Unpack(errors)
                parts += [f"{e.property_path}: {e.reason}" for e in errors.errors]
    return "\n".join(parts)


def test_bad_inputs_fail_construct_naming_the_field_and_the_fix(
    constructed: Constructed,
) -> None:
    engine = constructed.engine
    error = _construct_error(engine, EGRESS, {"sessionId": "x", "namespace": "Agents"})
    assert "namespace: must be a Kubernetes namespace name" in error
    error = _construct_error(
        engine, EGRESS, {"sessionId": "x", "policy": {"rules": [{"allow": ["https://x.com"]}]}}
    )
    assert "policy.rules[0].allow[0]" in error
    error = _construct_error(engine, EGRESS, {"sessionId": "x", "trustBundle": "system"})
    assert "trustBundle" in error
    error = _construct_error(engine, EGRESS, {"sessionId": "x", "caValidityHours": 0})
    assert "caValidityHours: must be a whole number of hours from 1 to 8760" in error
    session = rpc.deserialize_properties(constructed.egress.state)["session"]
    error = _construct_error(
        engine,
        WORKLOAD,
        {"session": session, "workload": {**DEPLOYMENT_MANIFEST, "kind": "Service"}},
    )
    assert "workload.kind" in error
    assert "Deployment" in error
    hostile = json.loads(json.dumps(DEPLOYMENT_MANIFEST))
    hostile["spec"]["template"]["spec"]["hostNetwork"] = True
    error = _construct_error(
        engine, WORKLOAD, {"session": output_value(session, []), "workload": hostile}
    )
    refusal = "Deployment 'bad' spec.template.spec.hostNetwork: "
    assert refusal in error
    # Also logged as the workload's error, without the SDK's wrapping around it.
    assert any(log.startswith(refusal) for log in engine.logs)
    error = _construct_error(engine, WORKLOAD, {"session": {"sessionId": "x"}, "podTemplate": {}})
    assert "session: must be the session output of a SandboxEgress" in error


def test_python_args_refuses_outputs_where_the_python_api_needs_values() -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        namespace = pulumi.Output.from_input("a")
        with pytest.raises(ConfigError, match=r"^namespace: must be known when the program runs"):
            provider.python_args({"session_id": "x", "namespace": namespace})
        with pytest.raises(ConfigError, match=r"^dnsPodLabels: must be a non-empty mapping"):
            provider.python_args({"session_id": "x", "dns_pod_labels": {}})
    finally:
        asyncio.set_event_loop(None)
        loop.close()
