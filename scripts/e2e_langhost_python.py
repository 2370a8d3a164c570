"""A stand-in for Pulumi's Python language host (``pulumi-language-python``).

The Go module proxy serves no version of the real host (a nested module of the
pulumi repository), so the e2e harness installs this one under that name. The
engine starts it like any language plugin (engine address as the last
argument; it prints its port), and it runs the program the way the real host
does: ``python -u pulumi-language-python-exec --monitor ... PROGRAM`` with the
config in ``PULUMI_CONFIG``, where the exec script is the one published in the
pinned SDK's Go module (installed beside this file by scripts/e2e-tools). The
program's own output goes straight to the engine, and exit code 32 (errors
already shown) bails without a second message, as in the real host.

It also runs Python plugins, as the real host does for this repository's
multi-language provider (``provider/``): ``InstallDependencies`` makes the
plugin's virtualenv and installs its ``requirements.txt``, and ``RunPlugin``
starts ``python -u <plugin directory>`` and streams its output and exit code
back to the engine.

Not implemented (the harness does not need them): plugin discovery for the
engine (``GetRequiredPackages`` answers nothing, so the engine loads plugins
on first use: from PATH here), code generation, policy packs.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

HERE = Path(__file__).resolve().parent
EXEC = HERE / "pulumi-language-python-exec"
# pulumi-language-python-exec exits with this after printing an actionable error.
BAIL_EXIT_CODE = 32


def _python(root: str, options: dict[str, Any]) -> str:
    """The interpreter the real host picks: the project's virtualenv, else python3."""
    venv = options.get("virtualenv")
    if venv:
        candidate = Path(root or ".", venv) / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return os.environ.get("PULUMI_PYTHON_CMD") or "python3"


class PythonHost(language_pb2_grpc.LanguageRuntimeServicer):
    """The LanguageRuntime calls the engine makes for `pulumi up/preview/destroy`."""

    def __init__(self, engine_address: str) -> None:
        self.engine_address = engine_address

    def Handshake(self, request: Any, context: Any) -> Any:
        if request.engine_address:
            self.engine_address = request.engine_address
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=os.environ.get("E2E_PULUMI_VERSION", ""))

    def GetRequiredPlugins(self, request: Any, context: Any) -> Any:
        return language_pb2.GetRequiredPluginsResponse()

    def GetRequiredPackages(self, request: Any, context: Any) -> Any:
        return language_pb2.GetRequiredPackagesResponse()

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:
        return language_pb2.GetProgramDependenciesResponse()

    def RuntimeOptionsPrompts(self, request: Any, context: Any) -> Any:
        return language_pb2.RuntimeOptionsResponse()

    def About(self, request: Any, context: Any) -> Any:
        info = request.info
        python = _python(info.root_directory, _options(info))
        version = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return language_pb2.AboutResponse(executable=python, version=version)

    def Run(self, request: Any, context: Any) -> Any:
        info = request.info
        program = info.entry_point or request.program or "."
        if info.program_directory:
            program = str(Path(info.program_directory, program))
        args = [_python(info.root_directory, _options(info)), "-u", str(EXEC)]
        for flag, value in (
            ("monitor", request.monitor_address),
            ("engine", self.engine_address),
            ("project", request.project),
            ("stack", request.stack),
            ("pwd", request.pwd),
            ("dry_run", "true" if request.dryRun else ""),
            ("parallel", str(request.parallel)),
            ("organization", request.organization),
            ("root_directory", info.root_directory),
        ):
            if value:
                args += [f"--{flag}", value]
        args += [program, *request.args]
        env = dict(os.environ)
        if request.config:
            env["PULUMI_CONFIG"] = json.dumps(dict(request.config))
        if request.configSecretKeys:
            env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        code = subprocess.run(args, env=env, check=False).returncode
        if code == 0:
            return language_pb2.RunResponse()
        if code == BAIL_EXIT_CODE:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"Program exited with non-zero exit code: {code}")

    def InstallDependencies(self, request: Any, context: Any) -> Iterator[Any]:
        info = request.info
        directory = info.program_directory or info.root_directory or request.directory or "."
        venv = _options(info).get("virtualenv")
        commands: list[list[str]] = []
        if venv:
            target = Path(info.root_directory or directory, venv)
            if not (target / "bin" / "python").exists():
                commands.append([sys.executable, "-m", "venv", str(target)])
            python = str(target / "bin" / "python")
        else:
            python = os.environ.get("PULUMI_PYTHON_CMD") or "python3"
        if Path(directory, "requirements.txt").exists():
            commands.append([python, "-m", "pip", "install", "-q", "-r", "requirements.txt"])
        for command in commands:
            code = yield from _streamed(command, directory, dict(os.environ), _install_output)
            if code != 0:
                context.abort(grpc.StatusCode.UNKNOWN, f"{' '.join(command)} exited {code}")

    def RunPlugin(self, request: Any, context: Any) -> Iterator[Any]:
        info = request.info
        directory = info.program_directory or request.program or request.pwd
        python = _python(info.root_directory or directory, _options(info))
        env = dict(item.split("=", 1) for item in request.env if "=" in item) or dict(os.environ)
        code = yield from _streamed(
            [python, "-u", directory, *request.args], request.pwd or directory, env, _plugin_output
        )
        yield language_pb2.RunPluginResponse(exitcode=code)


def _install_output(stream: str, data: bytes) -> Any:
    return language_pb2.InstallDependenciesResponse(**{stream: data})


def _plugin_output(stream: str, data: bytes) -> Any:
    return language_pb2.RunPluginResponse(**{stream: data})


def _streamed(command: list[str], cwd: str, env: dict[str, str], message: Any) -> Iterator[Any]:
    """Run ``command``, yielding its stdout and stderr as they come; return its exit code."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    chunks: queue.Queue[tuple[str, bytes]] = queue.Queue()

    def pump(name: str, pipe: Any) -> None:
        for data in iter(lambda: pipe.read1(65536), b""):
            chunks.put((name, data))
        chunks.put((name, b""))

    for name, pipe in (("stdout", process.stdout), ("stderr", process.stderr)):
        threading.Thread(target=pump, args=(name, pipe), daemon=True).start()
    open_pipes = 2
    while open_pipes:
        name, data = chunks.get()
        if data:
            yield message(name, data)
        else:
            open_pipes -= 1
    return process.wait()


def _options(info: Any) -> dict[str, Any]:
    return MessageToDict(info.options) if info.HasField("options") else {}


def main() -> None:
    """Serve on a free loopback port and print it, as the engine expects of a plugin."""
    engine_address = sys.argv[-1] if len(sys.argv) > 1 else ""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)],
    )
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(PythonHost(engine_address), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # The engine ends its plugins with SIGINT: stop quietly, as real plugins do.
    with contextlib.suppress(KeyboardInterrupt):
        server.wait_for_termination()
    server.stop(0)


if __name__ == "__main__":
    main()
