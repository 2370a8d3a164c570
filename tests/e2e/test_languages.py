"""Every Pulumi language, for real: the pulumi CLI, its language hosts and an API server.

- The schema: ``pulumi package get-schema ./provider`` serves
  ``provider/schema.json`` and ``pulumi schema check`` accepts it.
- C#: ``pulumi package gen-sdk --language dotnet`` (no .NET needed) generates
  the names the C# snippet of ``docs/languages.md`` uses.
- Each example (``examples/<language>``): ``pulumi package add`` of this
  repository's provider, ``pulumi up``, and the objects on the API server are
  those a Python program makes from the same inputs, field by field (the CA
  material aside); ``pulumi destroy`` deletes the Pods before the Secret and
  the NetworkPolicy.
- A workload bypass from TypeScript fails ``pulumi up`` with Python's message.

Tools are found on ``PATH`` (``eval "$(scripts/e2e-cluster env)"``). A test
whose tools are absent skips naming them; with ``CI=true`` it fails instead,
unless the harness's recipe (``scripts/e2e-tools``) cannot build that tool,
which the skip then says.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.resources
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ca_mask import mask_ca_fingerprints
from tests.e2e.harness import run

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_DIR = ROOT / "provider"
EXAMPLES = ROOT / "examples"
PASSPHRASE = "condukt-egress e2e"
SESSION_ID = "lang-42"
JSON = dict[str, Any]

pytestmark = pytest.mark.integration

HOSTS = {
    "python": "pulumi-language-python",
    "yaml": "pulumi-language-yaml",
    "typescript": "pulumi-language-nodejs",
    "go": "pulumi-language-go",
    "java": "pulumi-language-java",
    "dotnet": "pulumi-language-dotnet",
}
"""The language host each language needs (the provider itself runs on Python's)."""

RESOURCE_PLUGINS = ("pulumi-resource-kubernetes", "pulumi-resource-tls")


def _harness_targets() -> set[str]:
    """The tools ``scripts/e2e-tools`` builds by default (what CI has)."""
    recipe = ROOT / "scripts" / "e2e-tools"
    if not recipe.is_file():
        return set()
    found = re.search(r"default_targets=\(([^)]*)\)", recipe.read_text())
    return set(found[1].split()) if found else set()


def need(*tools: str) -> None:
    """Skip (or in CI fail) unless every tool is on ``PATH``; the reason names the absent ones."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    reason = (
        f"not on PATH: {', '.join(missing)} (scripts/e2e-tools builds the harness's tools; "
        'eval "$(scripts/e2e-cluster env)" puts them on PATH)'
    )
    buildable = _harness_targets() | {"pulumi", "kubectl"}
    if os.environ.get("CI") == "true" and set(missing) & buildable:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    unbuildable = sorted(set(missing) - buildable)
    if unbuildable:
        reason += f"; scripts/e2e-tools builds no {', '.join(unbuildable)}"
    pytest.skip(reason)


def need_cluster() -> None:
    need("kubectl")
    kubeconfig = os.environ.get("KUBECONFIG", "")
    reachable = bool(kubeconfig) and (
        subprocess.run(
            ["kubectl", "version", "--request-timeout=10s"], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not reachable:
        reason = "no reachable API server: scripts/e2e-cluster start, then its env"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)


def kubectl_json(*args: str) -> Any:
    return json.loads(run(["kubectl", *args, "-o", "json"], timeout=120).stdout)


@pytest.fixture(scope="session")
def pulumi_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every ``pulumi`` run: its own home, plugins installed from ``PATH``.

    The provider's program asks for the kubernetes and tls plugins at the
    versions its Python SDKs pin; nothing can be downloaded here, so each is
    installed from the binary on ``PATH`` (a wrapper that runs it). The
    Python host creates ``provider/venv`` (PulumiPlugin.yaml) on first use.
    """
    need("pulumi", *RESOURCE_PLUGINS)
    home = tmp_path_factory.mktemp("pulumi-home")
    env = {
        **os.environ,
        "PULUMI_HOME": str(home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "NO_COLOR": "1",
    }
    for plugin, module in (("kubernetes", "pulumi_kubernetes"), ("tls", "pulumi_tls")):
        binary = shutil.which(f"pulumi-resource-{plugin}")
        assert binary is not None
        pinned = importlib.resources.files(module).joinpath("pulumi-plugin.json").read_text()
        wrapper = home / f"pulumi-resource-{plugin}"
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(binary)} "$@"\n')
        wrapper.chmod(0o755)
        version = json.loads(pinned)["version"]
        install = [
            "pulumi",
            "plugin",
            "install",
            "resource",
            plugin,
            version,
            "--file",
            str(wrapper),
        ]
        run(install, env=env)
    return env


class Project:
    """A Pulumi project in its own directory, with its own local backend and one stack."""

    def __init__(self, directory: Path, env: Mapping[str, str]) -> None:
        self.directory = directory
        self.backend = directory.parent / f"{directory.name}-backend"
        self.backend.mkdir(parents=True, exist_ok=True)
        self.env = {
            **env,
            "PULUMI_BACKEND_URL": self.backend.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        }
        self.stack_ready = False

    def pulumi(
        self, *args: str, check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        argv = ["pulumi", *args, "--non-interactive", "--color", "never"]
        return run(argv, cwd=self.directory, env=self.env, check=check, timeout=timeout)

    def init(self, config: Mapping[str, str]) -> None:
        self.pulumi("stack", "init", "e2e")
        self.stack_ready = True
        for key, value in config.items():
            self.pulumi("config", "set", key, value)

    def up(self, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.pulumi("up", "--yes", "--skip-preview", check=check)

    def destroy(self) -> None:
        if self.stack_ready:
            self.pulumi("destroy", "--yes", "--skip-preview")
            self.pulumi("stack", "rm", "--yes", "--force", "e2e")
            self.stack_ready = False


@pytest.fixture
def projects() -> Iterator[list[Project]]:
    """Projects a test made; each still up afterwards is destroyed."""
    made: list[Project] = []
    try:
        yield made
    finally:
        for project in reversed(made):
            with contextlib.suppress(AssertionError):
                project.destroy()


@pytest.fixture
def namespaces() -> Iterator[Callable[[], str]]:
    """Make fresh namespaces for a test; each is deleted with its contents after it."""
    made: list[str] = []

    def create() -> str:
        name = f"lang-{uuid.uuid4().hex[:10]}"
        run(["kubectl", "create", "namespace", name], timeout=60)
        made.append(name)
        return name

    try:
        yield create
    finally:
        for name in made:
            run(["kubectl", "delete", "namespace", name, "--wait=false"], check=False)


# --- the schema -----------------------------------------------------------------


def test_get_schema_serves_the_checked_in_schema(pulumi_env: dict[str, str]) -> None:
    need(HOSTS["python"])
    get_schema = ["pulumi", "package", "get-schema", str(PROVIDER_DIR)]
    served = run(get_schema, cwd=ROOT, env=pulumi_env).stdout
    checked_in = json.loads((PROVIDER_DIR / "schema.json").read_text())
    assert json.loads(served) == checked_in


def test_schema_check_accepts_the_schema() -> None:
    need("pulumi")
    checked = run(["pulumi", "schema", "check", str(PROVIDER_DIR / "schema.json")], cwd=ROOT)
    assert "error" not in (checked.stdout + checked.stderr).lower()


def test_the_cli_is_at_least_the_required_version() -> None:
    need("pulumi")
    manifest = yaml.safe_load((PROVIDER_DIR / "PulumiPlugin.yaml").read_text())
    floor = manifest["requiredPulumiVersion"].removeprefix(">=")
    printed = run(["pulumi", "version"]).stdout.strip().removeprefix("v")
    version = tuple(int(part) for part in re.findall(r"\d+", printed)[:3])
    assert version >= tuple(int(part) for part in floor.split(".")), printed


# --- C#: generated without .NET ---------------------------------------------------


def _snippet(language: str) -> str:
    text = (ROOT / "docs" / "languages.md").read_text()
    blocks = re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert blocks, f"docs/languages.md has no {language} snippet"
    return "\n".join(blocks)


@contextlib.contextmanager
def _logo_server(directory: Path) -> Iterator[str]:
    """A loopback HTTP server for the logo the C# generator downloads; its URL."""
    (directory / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/logo.png"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_csharp_snippet_uses_the_names_the_dotnet_codegen_generates(tmp_path: Path) -> None:
    """The C# SDK from the checked-in schema (which get-schema serves, tested above).

    The C# generator fetches the package logo over HTTP (pulumi-dotnet
    codegen ``getLogo``); a copy of the schema points it at loopback.
    """
    need("pulumi", HOSTS["dotnet"])
    schema = json.loads((PROVIDER_DIR / "schema.json").read_text())
    out, www = tmp_path / "sdk", tmp_path / "www"
    www.mkdir()
    with _logo_server(www) as logo:
        copy = tmp_path / "schema.json"
        copy.write_text(json.dumps({**schema, "logoUrl": logo}))
        run(["pulumi", "package", "gen-sdk", str(copy), "--language", "dotnet", "--out", str(out)])
    source = "\n".join(p.read_text() for p in sorted(out.rglob("*.cs")))
    namespaces = set(re.findall(r"^namespace ([\w.]+)", source, re.MULTILINE))
    classes = set(re.findall(r"\b(?:class|enum|struct) (\w+)", source))
    members = set(re.findall(r"public [\w.<>?,\[\] ]+? (\w+)\s*(?:\{|=>)", source))
    members |= set(re.findall(r"public static [\w.]+ (\w+) \{", source))
    snippet = _snippet("csharp")
    used_namespaces = set(re.findall(r"^using ([\w.]+);", snippet, re.MULTILINE))
    assert used_namespaces <= namespaces | {"Pulumi"}, (used_namespaces, namespaces)
    code = re.sub(r"^using .*$", "", snippet, flags=re.MULTILINE)
    used_classes = set(re.findall(r"\bnew (\w+)\s*[({]", code))
    used_classes |= set(re.findall(r"\b([A-Z]\w+)\.[A-Z]\w+", code))
    assert used_classes <= classes, sorted(used_classes - classes)
    used_members = set(re.findall(r"\b([A-Z]\w*) = ", code))
    used_members |= set(re.findall(r"\.([A-Z]\w+)\b", code))
    assert {"SandboxEgressArgs", "EgressPolicyArgs", "Default", "Session"} <= (
        used_classes | used_members
    )
    assert used_members <= members | classes, sorted(used_members - members - classes)
    # The names hold: Pulumi.ConduktEgress, as docs/languages.md says.
    assert "Pulumi.ConduktEgress" in namespaces


# --- the examples, up and down ------------------------------------------------------

PYTHON_PROGRAM = """
import pulumi
import pulumi_kubernetes as k8s

from condukt_egress import SandboxEgress, SandboxEgressArgs

config = pulumi.Config()
namespace = config.require("namespace")
egress = SandboxEgress("egress", SandboxEgressArgs(
    session_id=config.require("sessionId"),
    namespace=namespace,
    policy={
        "rules": [
            {"deny": ["*.internal.example.com"]},
            {"allow": ["api.github.com", "*.openai.com"]},
            {"decide": {"timeout_ms": 5000}},
        ],
        "default": "deny",
        "redact": ["x-api-key"],
    },
))
for name, labels, image, command in WORKLOADS:
    # The TypeScript example's worker: autonamed, its pod template injected.
    declared = {"name": name, "labels": labels} if name != "worker" else {}
    replicas = {"replicas": 1} if name != "worker" else {}
    k8s.apps.v1.Deployment(
        name,
        metadata={**declared, "namespace": namespace},
        spec={
            **replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": CONTAINER[name], "image": image, "command": command}],
                },
            },
        },
        opts=egress.workload_options(),
    )
"""
"""What each example declares, written with the Python component (WORKLOADS filled in)."""

AGENT = ("agent", {"app": "agent"}, "python:3.13-slim", ["sleep", "infinity"])


def _python_reference(
    directory: Path, workloads: Sequence[tuple[Any, ...]], env: Mapping[str, str]
) -> Project:
    directory.mkdir(parents=True)
    containers = {w[0]: "workspace" if w[0] == "agent" else w[0] for w in workloads}
    program = f"WORKLOADS = {list(workloads)!r}\nCONTAINER = {containers!r}\n{PYTHON_PROGRAM}"
    (directory / "__main__.py").write_text(program)
    project = {
        "name": "condukt-egress-python",
        "runtime": {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}},
    }
    (directory / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    (directory / "venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return Project(directory, env)


def _example(language: str, directory: Path, env: Mapping[str, str]) -> Project:
    """A copy of ``examples/<language>`` with the provider added by ``pulumi package add``."""
    shutil.copytree(
        EXAMPLES / language,
        directory,
        ignore=shutil.ignore_patterns("sdks", "node_modules", "bin", "target", "Pulumi.*.yaml"),
    )
    manifest = directory / "Pulumi.yaml"
    project = yaml.safe_load(manifest.read_text())
    assert (EXAMPLES / language / project["packages"]["condukt-egress"]).resolve() == PROVIDER_DIR
    # The copy is elsewhere: `pulumi package add` records the provider's path anew.
    text = manifest.read_text()
    text = re.sub(r"\npackages:\n(  .*\n|\s*#.*\n)*", "\n", text)
    manifest.write_text(text)
    return Project(directory, env)


NO_LINK = {"yaml", "java"}
"""Languages whose host (pulumi-yaml 1.25, pulumi-java 1.0) generates the SDK but has no Link."""


def add_package(project: Project, language: str) -> None:
    """``pulumi package add`` of this repository's provider into ``project``.

    Where the language host cannot link (:data:`NO_LINK`), the command fails
    after generating the SDK; the package is then recorded in ``Pulumi.yaml``
    as the command would have.
    """
    added = project.pulumi("package", "add", str(PROVIDER_DIR), check=False)
    if added.returncode == 0:
        return
    output = added.stdout + added.stderr
    assert language in NO_LINK, output
    assert "linking package" in output, output
    assert (project.directory / "sdks" / "pulumi-condukt-egress").is_dir(), output
    manifest = project.directory / "Pulumi.yaml"
    manifest.write_text(
        manifest.read_text() + yaml.safe_dump({"packages": {"condukt-egress": str(PROVIDER_DIR)}})
    )


def _normalized(obj: JSON) -> JSON:
    """An API object as declared: server-set fields and the namespace dropped, CA masked."""
    metadata = {
        k: v for k, v in obj["metadata"].items() if k in {"name", "labels", "annotations"} and v
    }
    annotations = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if not k.startswith(("deployment.kubernetes.io/", "kubectl.kubernetes.io/"))
    }
    metadata.pop("annotations", None)
    if annotations:
        metadata["annotations"] = annotations
    out = {k: v for k, v in obj.items() if k not in {"metadata", "status"}}
    out["metadata"] = metadata
    if obj["kind"] == "Secret":
        # The CA (and the bundle and JVM trust store holding it) are minted per run.
        minted = {"ca.pem", "ca-key.pem", "bundle.pem", "truststore.p12"}
        out["data"] = {
            k: ("<CA material>" if k in minted else v) for k, v in (obj.get("data") or {}).items()
        }
    masked, _ = mask_ca_fingerprints(out)
    result: JSON = masked
    return result


def live_objects(namespace: str) -> dict[str, JSON]:
    """The session's objects by kind and name; a Secret's name with its content hash masked."""
    listed = kubectl_json("get", "secrets,networkpolicies,deployments", "-n", namespace)
    normalized = [
        _normalized(item)
        for item in listed["items"]
        if not item["metadata"]["name"].startswith("default-token")
    ]
    return {f"{obj['kind']}/{obj['metadata']['name']}": obj for obj in normalized}


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            elif key not in expected:
                out.append(f"{path}.{key}: unexpected {actual[key]!r}")
            else:
                out += differences(expected[key], actual[key], f"{path}.{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            d
            for i, (a, b) in enumerate(zip(expected, actual, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]


class DeletionWatch:
    """The order in which Pods, Secrets and NetworkPolicies of a namespace are deleted.

    One ``kubectl get --watch`` per kind (kubectl watches one type at a
    time); deletions are ordered by the revision etcd gave them.
    """

    KINDS = ("pods", "secrets", "networkpolicies")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.deleted: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._processes: list[subprocess.Popen[str]] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> DeletionWatch:
        for kind in self.KINDS:
            process = subprocess.Popen(
                [
                    *("kubectl", "get", kind, "-n", self.namespace),
                    *("--watch-only", "--output-watch-events", "-o", "json"),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            thread = threading.Thread(target=self._read, args=(process,), daemon=True)
            thread.start()
            self._processes.append(process)
            self._threads.append(thread)
        time.sleep(2)  # the watches are established before anything is deleted
        return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in process.stdout:
            buffer += line
            with contextlib.suppress(ValueError):
                event, end = decoder.raw_decode(buffer.lstrip())
                buffer = buffer.lstrip()[end:]
                if event.get("type") == "DELETED":
                    obj = event["object"]
                    revision = int(obj["metadata"]["resourceVersion"])
                    with self._lock:
                        self.deleted.append((revision, f"{obj['kind']}/{obj['metadata']['name']}"))

    def __exit__(self, *_exc: object) -> None:
        time.sleep(2)  # the last events reach the watches
        for process in self._processes:
            process.terminate()
            process.wait(10)
        for thread in self._threads:
            thread.join(10)
        for process in self._processes:
            if process.stdout is not None:
                process.stdout.close()

    def order(self) -> list[str]:
        with self._lock:
            return [name for _, name in sorted(self.deleted)]


def _wait_pods_gone(namespace: str) -> None:
    run(
        ["kubectl", "wait", "--for=delete", "pods", "--all", "-n", namespace, "--timeout=120s"],
        check=False,
    )


EXAMPLE_WORKLOADS: dict[str, list[tuple[Any, ...]]] = {
    "yaml": [AGENT],
    "typescript": [AGENT, ("worker", {"app": "worker"}, "node:22-slim", ["sleep", "infinity"])],
    "go": [AGENT],
    "java": [AGENT],
}


def _comparable(objects: dict[str, JSON]) -> dict[str, JSON]:
    """Objects keyed by kind and name; a Deployment named by Pulumi keyed by its app label."""
    out = {}
    for key, obj in objects.items():
        if obj["kind"] == "Deployment":
            app = obj["spec"]["selector"]["matchLabels"]["app"]
            unnamed = {k: v for k, v in obj["metadata"].items() if k != "name"}
            out[f"Deployment/app={app}"] = {**obj, "metadata": unnamed}
        else:
            out[key] = obj
    return out


@pytest.mark.parametrize("language", ["yaml", "typescript", "go", "java"])
def test_example_creates_what_the_python_component_creates_and_destroys_pods_first(
    language: str,
    tmp_path: Path,
    pulumi_env: dict[str, str],
    projects: list[Project],
    namespaces: Callable[[], str],
) -> None:
    need("pulumi", HOSTS["python"], HOSTS[language], *RESOURCE_PLUGINS)
    need_cluster()
    config = {"sessionId": SESSION_ID}

    reference_ns, example_ns = namespaces(), namespaces()
    reference = _python_reference(tmp_path / "python", EXAMPLE_WORKLOADS[language], pulumi_env)
    projects.append(reference)
    reference.init({**config, "namespace": reference_ns})
    reference.up()

    example = _example(language, tmp_path / language, pulumi_env)
    projects.append(example)
    add_package(example, language)
    example.init({**config, "namespace": example_ns})
    example.up()

    expected, actual = live_objects(reference_ns), live_objects(example_ns)
    kinds = sorted(key.split("/")[0] for key in actual)
    assert kinds.count("Secret") == 1, kinds
    assert kinds.count("NetworkPolicy") == 1, kinds
    assert set(_comparable(expected)) == set(_comparable(actual)), (expected, actual)
    assert "Deployment/app=agent" in _comparable(actual)
    assert differences(_comparable(expected), _comparable(actual)) == []

    with DeletionWatch(example_ns) as watch:
        example.destroy()
        _wait_pods_gone(example_ns)
    order = watch.order()
    session = [i for i, name in enumerate(order) if name.startswith(("Secret/", "NetworkPolicy/"))]
    pods = [i for i, name in enumerate(order) if name.startswith("Pod/")]
    assert session, order
    assert pods, f"no Pod was deleted (the Deployment's replica): {order}"
    assert max(pods) < min(session), f"a Pod outlived its session: {order}"
    left = kubectl_json("get", "secrets,networkpolicies,deployments", "-n", example_ns)["items"]
    assert [
        i["metadata"]["name"] for i in left if not i["metadata"]["name"].startswith("default-token")
    ] == []


# --- refusals ------------------------------------------------------------------------


def test_a_workload_bypass_from_typescript_fails_up_with_the_python_message(
    tmp_path: Path,
    pulumi_env: dict[str, str],
    projects: list[Project],
    namespaces: Callable[[], str],
) -> None:
    need("pulumi", HOSTS["python"], HOSTS["typescript"], *RESOURCE_PLUGINS)
    need_cluster()
    bypass_ts, bypass_py = "hostNetwork: true,", '"hostNetwork": True,'

    reference = _python_reference(tmp_path / "python", [AGENT], pulumi_env)
    source = (reference.directory / "__main__.py").read_text()
    marker_py = '"containers": [{"name": CONTAINER[name]'
    assert marker_py in source
    source = source.replace(marker_py, f"{bypass_py} {marker_py}", 1)
    (reference.directory / "__main__.py").write_text(source)
    projects.append(reference)
    reference.init({"sessionId": SESSION_ID, "namespace": namespaces()})
    python_failed = reference.up(check=False)
    assert python_failed.returncode != 0

    example = _example("typescript", tmp_path / "typescript", pulumi_env)
    index = example.directory / "index.ts"
    program = index.read_text()
    marker = "spec: {\n                    containers: ["
    assert marker in program
    index.write_text(
        program.replace(
            marker,
            f"spec: {{\n                    {bypass_ts}\n                    containers: [",
            1,
        )
    )
    projects.append(example)
    add_package(example, "typescript")
    example.init({"sessionId": SESSION_ID, "namespace": namespaces()})
    typescript_failed = example.up(check=False)
    assert typescript_failed.returncode != 0

    def refusal(output: str) -> str:
        # The message runs to its fix; Python's engine error wraps it in more text.
        found = re.search(
            r"(Deployment 'agent' spec\.template\.spec\.hostNetwork: [^\n]*?remove hostNetwork)",
            output,
        )
        assert found, output
        return found[1].strip()

    message = refusal(python_failed.stdout + python_failed.stderr)
    assert refusal(typescript_failed.stdout + typescript_failed.stderr) == message
    assert "hostNetwork" in message
