"""Import boundaries: light processes stay light, and each concern has one owner.

Every check runs in a fresh interpreter, since this test process has already
imported everything.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import condukt_egress
from condukt_egress.component import SandboxEgress as Component

PACKAGE = Path(condukt_egress.__file__).parent
HEAVY = ("pulumi", "pulumi_kubernetes", "pulumi_tls", "grpc", "google.protobuf", "opentelemetry")


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY)


@pytest.mark.parametrize(
    "code",
    [
        "import condukt_egress",
        "from condukt_egress import SandboxEgressArgs, EgressPolicy, allow",
        "from condukt_egress.control import ControlClient",
        "import condukt_egress.portforward",
        "from condukt_egress.cli import main\n"
        "try:\n    main(['explain', '--policy', 'examples/policy.yaml', 'api.github.com'])\n"
        "except SystemExit:\n    pass",
        "from condukt_egress.cli import main\n"
        "import tempfile, os\n"
        "out = os.path.join(tempfile.mkdtemp(), 'session.yaml')\n"
        "main(['render', '--session-id', 'x', '--output-file', out])",
    ],
    ids=["package", "pure-api", "control", "portforward", "explain", "render"],
)
def test_light_processes_never_load_pulumi_grpc_or_protobuf(code: str) -> None:
    assert heavy(loaded_after(code)) == []


def test_each_command_loads_only_its_own_module() -> None:
    modules = loaded_after(
        "from condukt_egress.cli import main\n"
        "try:\n    main(['explain', '--policy', 'examples/policy.yaml', 'x.org'])\n"
        "except SystemExit:\n    pass"
    )
    assert "condukt_egress.cli.render" not in modules
    assert "condukt_egress.cli.events" not in modules
    assert "condukt_egress.ca" not in modules
    assert "kubernetes" not in modules


def test_sandbox_egress_loads_on_first_use() -> None:
    modules = loaded_after(
        "import condukt_egress\nassert condukt_egress.SandboxEgress.__name__ == 'SandboxEgress'"
    )
    assert "pulumi" in modules
    assert condukt_egress.SandboxEgress is Component


def test_sandbox_guard_loads_on_first_use() -> None:
    assert "pulumi" not in loaded_after("import condukt_egress.guard")
    modules = loaded_after(
        "import condukt_egress\nassert condukt_egress.SandboxGuard.__name__ == 'SandboxGuard'"
    )
    assert "pulumi" in modules


def test_portforward_does_not_import_the_manifest_builders() -> None:
    assert "condukt_egress.manifests" not in loaded_after("import condukt_egress.portforward")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_private_pulumi_sdk_imports() -> None:
    for path in PACKAGE.rglob("*.py"):
        private = [n for n in _imports(path) if n.startswith("pulumi") and "._" in n]
        assert private == [], f"{path.relative_to(PACKAGE)} imports {private}"


def test_pure_modules_know_nothing_of_pulumi() -> None:
    pure = ("args", "ca", "contract", "manifests", "naming", "options", "policy", "render")
    rules = ("podrules", "_podrules_base", "_podrules_container", "_podrules_pod")
    guard = ("guard", "_guard_cel", "_guard_injected", "_guard_session_pods")
    for name in (*pure, *rules, *guard, "spec", "workloads"):
        imported = _imports(PACKAGE / f"{name}.py")
        assert not [n for n in imported if n.split(".")[0].startswith("pulumi")], name


def test_one_module_bridges_threads_and_the_loop() -> None:
    bridges = ("threading.Thread", "to_thread", "run_in_executor", "call_soon_threadsafe")
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_threads.py":
            continue
        text = path.read_text()
        found = [b for b in bridges if b in text]
        assert found == [], f"{path.relative_to(PACKAGE)} bridges threads itself: {found}"
