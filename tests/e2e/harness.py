"""What the end-to-end tests drive: the real ``pulumi`` CLI, ``kubectl`` and an API server.

The tools come from ``scripts/e2e-tools`` and the cluster from
``scripts/e2e-cluster start``; ``eval "$(scripts/e2e-cluster env)"`` puts them
on ``PATH`` and sets ``KUBECONFIG``. :func:`missing_tools` says what is absent,
so the suite skips (or, in CI, fails) saying why.

Every project a test runs gets its own local backend directory and stack,
and every object it creates lives in its own namespace: tests never share
state, and the fixtures in ``conftest.py`` remove both whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: its ``Pulumi.yaml`` and ``__main__.py`` are the stack program under test."""

PASSPHRASE = "condukt-egress e2e"
SETUP = (
    "run `scripts/e2e-tools` (builds the pinned pulumi CLI, kube-apiserver, kubectl, "
    'etcd and kwok), `scripts/e2e-cluster start` and `eval "$(scripts/e2e-cluster env)"`'
)

JSON = dict[str, Any]


def missing_tools() -> list[str]:
    """What the suite needs and this environment lacks (empty when it can run)."""
    missing = [tool for tool in ("pulumi", "kubectl") if shutil.which(tool) is None]
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig:
        missing.append("KUBECONFIG")
    elif not Path(kubeconfig.split(os.pathsep)[0]).is_file():
        missing.append(f"KUBECONFIG file {kubeconfig}")
    return missing


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured as text; on failure the assertion shows it."""
    result = subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert result.returncode == 0, (
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    """``kubectl`` with the suite's cluster; its stdout."""
    return run(["kubectl", *args], stdin=stdin, check=check, timeout=180).stdout


def error_lines(output: str) -> list[str]:
    """The ``error:`` lines of the CLI's output (the diagnostics the engine prints)."""
    return [line.strip() for line in output.splitlines() if line.strip().startswith("error:")]


# --- the pulumi CLI ------------------------------------------------------------------


@dataclass
class Project:
    """A Pulumi project directory with its own local backend and one stack."""

    directory: Path
    backend: Path
    stack: str = "e2e"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PULUMI_BACKEND_URL": self.backend.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "NO_COLOR": "1",
        }

    def pulumi(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """``pulumi <args>`` in this project, non-interactive, no colour."""
        argv = ["pulumi", *args, "--non-interactive", "--color", "never"]
        if args[:2] not in (("stack", "init"), ("stack", "ls"), ("stack", "rm")):
            argv += ["--stack", self.stack]  # projects may hold several stacks
        return run(argv, cwd=self.directory, env=self.env, check=check, timeout=timeout)

    def init(self, config: Mapping[str, Any]) -> None:
        """Create the stack with ``config`` (project-namespaced keys, any YAML value)."""
        self.backend.mkdir(parents=True, exist_ok=True)
        self.pulumi("stack", "init", self.stack)
        self.set_config(config)

    def set_config(self, config: Mapping[str, Any]) -> None:
        """Replace these keys of the stack's config, written as the stack file holds them.

        Objects and lists (``policy``, ``unproxiedEgress``) go into the file as
        YAML, as a user would write them; ``pulumi config set`` takes strings.
        """
        path = self.directory / f"Pulumi.{self.stack}.yaml"
        document = yaml.safe_load(path.read_text()) if path.exists() else None
        document = document or {}
        values = document.setdefault("config", {})
        name = yaml.safe_load((self.directory / "Pulumi.yaml").read_text())["name"]
        for key, value in config.items():
            values[key if ":" in key else f"{name}:{key}"] = value
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    def up(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.pulumi("up", "--yes", "--skip-preview", *extra, check=check)

    def outputs(self) -> JSON:
        out: JSON = json.loads(self.pulumi("stack", "output", "--json", "--show-secrets").stdout)
        return out

    def resources(self) -> list[JSON]:
        """The stack's resources from ``pulumi stack export`` (URN, type, outputs...)."""
        exported = json.loads(self.pulumi("stack", "export", "--show-secrets").stdout)
        resources: list[JSON] = exported["deployment"].get("resources") or []
        return resources

    def remove(self) -> None:
        """Destroy the stack and remove it, tolerating a stack that never came up."""
        if not self.backend.exists():
            return
        listed = self.pulumi("stack", "ls", "--json", check=False)
        if listed.returncode != 0 or self.stack not in {
            s["name"] for s in json.loads(listed.stdout)
        }:
            return
        self.pulumi("destroy", "--yes", "--skip-preview", check=False)
        self.pulumi("stack", "rm", "--yes", "--force", self.stack, check=False)


def python_project(directory: Path, name: str, program: str | None = None) -> None:
    """A Python Pulumi project in ``directory`` that runs in this test run's venv.

    With ``program`` None, the repository's own ``Pulumi.yaml`` and
    ``__main__.py`` are copied unchanged. ``Pulumi.yaml`` names its virtualenv
    ``venv`` (relative to the project), so ``venv`` links to the venv running
    the tests: nothing is installed during the run.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if program is None:
        shutil.copy(ROOT / "Pulumi.yaml", directory / "Pulumi.yaml")
        shutil.copy(ROOT / "__main__.py", directory / "__main__.py")
    else:
        project = {
            "name": name,
            "runtime": {
                "name": "python",
                "options": {"toolchain": "pip", "virtualenv": "venv"},
            },
        }
        (directory / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
        (directory / "__main__.py").write_text(program)
    (directory / "venv").symlink_to(Path(sys.prefix), target_is_directory=True)


# --- the API server ------------------------------------------------------------------


def subset_mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` lacks or differs from ``expected`` (defaults the server adds pass).

    Mappings compare key by key (extra keys in ``actual`` are defaults; an
    empty list or mapping may be missing, as the API server omits empty
    fields when it serialises); lists element by element, same length.
    """
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{path}: expected a mapping, got {actual!r}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual and value in ([], {}):
                continue
            if key not in actual:
                out.append(f"{path}.{key}: missing (expected {value!r})")
            else:
                out += subset_mismatches(value, actual[key], f"{path}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        out = []
        for index, (a, b) in enumerate(zip(expected, actual, strict=True)):
            out += subset_mismatches(a, b, f"{path}[{index}]")
        return out
    if expected != actual:
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


@dataclass(frozen=True)
class Event:
    """One watch event: the API server's revision, type, kind, name and object."""

    revision: int
    type: str
    kind: str
    name: str
    obj: JSON


@dataclass
class WatchRecorder:
    """Records the watch events of Pods, Secrets and NetworkPolicies of one namespace.

    Each kind has its own watch (started from a list, so nothing is missed);
    events are ordered across kinds by the revision etcd gave them (the
    objects' ``resourceVersion``; a deleted object carries its deletion's).
    """

    api: Any
    namespace: str
    events: list[Event] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> WatchRecorder:
        from kubernetes import client  # noqa: PLC0415

        core, net = client.CoreV1Api(self.api), client.NetworkingV1Api(self.api)
        sources: dict[str, Callable[..., Any]] = {
            "Pod": core.list_namespaced_pod,
            "Secret": core.list_namespaced_secret,
            "NetworkPolicy": net.list_namespaced_network_policy,
        }
        started = threading.Barrier(len(sources) + 1)
        for kind, lister in sources.items():
            thread = threading.Thread(target=self._watch, args=(kind, lister, started), daemon=True)
            thread.start()
            self._threads.append(thread)
        started.wait(30)
        return self

    def __exit__(self, *_exc: object) -> None:
        time.sleep(1)  # the last events reach the watches
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _watch(self, kind: str, lister: Callable[..., Any], started: threading.Barrier) -> None:
        from kubernetes import watch  # noqa: PLC0415

        # What exists when recording starts is part of the timeline too.
        api_version = "networking.k8s.io/v1" if kind == "NetworkPolicy" else "v1"
        listed = rest(
            self.api,
            "GET",
            resource_path({"apiVersion": api_version, "kind": kind}, self.namespace),
        )
        version = listed["metadata"]["resourceVersion"]
        with self._lock:
            for item in listed.get("items") or ():
                meta = item["metadata"]
                self.events.append(
                    Event(int(meta["resourceVersion"]), "EXISTING", kind, meta["name"], item)
                )
        started.wait(30)
        while not self._stop.is_set():
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                lister, self.namespace, resource_version=version, timeout_seconds=1
            )
            for event in stream:
                raw = event["raw_object"]
                version = raw["metadata"]["resourceVersion"]
                with self._lock:
                    self.events.append(
                        Event(int(version), event["type"], kind, raw["metadata"]["name"], raw)
                    )

    def timeline(self) -> list[Event]:
        with self._lock:
            return sorted(self.events, key=lambda e: e.revision)


def pod_secrets(pod: JSON) -> set[str]:
    """The Secrets a pod's volumes name."""
    return {v["secret"]["secretName"] for v in pod["spec"].get("volumes") or () if "secret" in v}


def assert_never_unprotected(events: Sequence[Event], network_policy: str) -> None:
    """At no revision does a Pod exist without its Secrets and the session's NetworkPolicy."""
    present: dict[str, dict[str, JSON]] = {"Pod": {}, "Secret": {}, "NetworkPolicy": {}}
    for event in events:
        objects = present[event.kind]
        if event.type == "DELETED":
            objects.pop(event.name, None)
        else:
            objects[event.name] = event.obj
        for name, pod in present["Pod"].items():
            missing = pod_secrets(pod) - set(present["Secret"])
            if network_policy not in present["NetworkPolicy"]:
                missing.add(f"NetworkPolicy {network_policy}")
            assert not missing, (
                f"at revision {event.revision} ({event.type} {event.kind} {event.name}) pod "
                f"{name} exists without {sorted(missing)}:\n" + describe(events)
            )


def describe(events: Sequence[Event]) -> str:
    return "\n".join(f"  {e.revision} {e.type} {e.kind} {e.name}" for e in events)


def last_revision(events: Sequence[Event], kind: str, type_: str = "DELETED") -> int:
    revisions = [e.revision for e in events if e.kind == kind and e.type == type_]
    assert revisions, f"no {type_} {kind} event:\n" + describe(events)
    return max(revisions)


def wait_for(
    predicate: Callable[[], Any], what: str, timeout: float = 120, interval: float = 1
) -> Any:
    """Poll ``predicate`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(interval)


class ApiError(Exception):
    """The API server answered with an error Status; ``message`` is what kubectl would print."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def rest(
    api: Any,
    method: str,
    path: str,
    body: Any = None,
    query: Sequence[tuple[str, str]] = (),
) -> JSON:
    """One raw request to the API server, JSON in and out.

    The typed client would first coerce a body into its models, which drops
    what they do not know: the guard must see exactly the object we built.

    Raises:
        ApiError: The server refused; its Status message.
    """
    serialized = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=list(query),
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*serialized)
    response.read()
    data = json.loads(response.data or b"{}")
    if response.status >= 400:
        raise ApiError(response.status, str(data.get("message", data)))
    return dict(data)


def resource_path(obj: Mapping[str, Any], namespace: str, name: str = "") -> str:
    """The REST path of ``obj``'s collection in ``namespace`` (or of ``name`` in it)."""
    group, _, version = str(obj["apiVersion"]).rpartition("/")
    kind = str(obj["kind"])
    plural = {"NetworkPolicy": "networkpolicies"}.get(kind, kind.lower() + "s")
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def api_error(exc: BaseException) -> str:
    """The message of an API server refusal (the Status's ``message``), else the text."""
    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message", body))
        except (TypeError, ValueError):
            return str(body)
    return str(exc)


def create_namespace(api: Any, name: str, labels: Mapping[str, str] | None = None) -> None:
    """Create a namespace and wait until pods can be created in it.

    The ServiceAccount admission plugin refuses pods (dry runs too) until the
    controller manager has created the namespace's ``default`` ServiceAccount.
    """
    from kubernetes import client  # noqa: PLC0415

    core: Any = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name, "labels": dict(labels or {})}})
    wait_for(
        lambda: core.list_namespaced_service_account(name).items,
        f"the default ServiceAccount of {name}",
        timeout=60,
        interval=0.2,
    )


def objects_in(namespace: str, kinds: str = "pods,secrets,networkpolicies") -> list[str]:
    """``kind/name`` of what is left in ``namespace`` (the default token Secret aside)."""
    out = kubectl("get", kinds, "--namespace", namespace, "-o", "name")
    return [line for line in out.split() if line and not re.match(r"secret/default-token", line)]


def iter_docs(text: str) -> Iterator[JSON]:
    for doc in yaml.safe_load_all(text):
        if doc:
            yield doc
