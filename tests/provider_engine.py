"""Start the condukt-egress provider as the engine does and talk to it over gRPC.

The engine starts a source-based Python plugin as ``python <plugin folder>
<engine address>`` and reads its port from the first line of stdout; it then
calls ``GetPluginInfo``, ``GetSchema`` and ``Construct``, the last with the
address of a resource monitor that the provider's registrations reach.

:class:`EngineDouble` plays the engine's part: a real gRPC server with the
``Engine`` service (logs) and the ``ResourceMonitor`` service, the latter
backed by the recording mock monitor of :mod:`tests.pulumi_harness`, so the
provider process registers its children over the wire exactly as with
``pulumi up``, and the test reads what it registered.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.protobuf import empty_pb2, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime import rpc
from pulumi.runtime.proto import (
    engine_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
    resource_pb2,
    resource_pb2_grpc,
)

from tests.pulumi_harness import Recorder, RecordingMonitor, SessionMocks

PROVIDER_DIR = Path(__file__).resolve().parent.parent / "provider"
PROJECT = "condukt-egress"
STACK = "test"
STACK_URN = f"urn:pulumi:{STACK}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{STACK}"


class _Monitor(RecordingMonitor):
    """The recording mock monitor with this test's project and stack in its URNs."""

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        if parent and parent != STACK_URN:
            type_ = parent.split("::")[2] + "$" + type_
        return f"urn:pulumi:{STACK}::{PROJECT}::{type_}::{name}"


class _MonitorService(resource_pb2_grpc.ResourceMonitorServicer):
    def __init__(self, monitor: _Monitor) -> None:
        self.monitor = monitor
        self.lock = threading.Lock()

    def SupportsFeature(self, request: Any, context: Any) -> Any:  # noqa: N802
        return resource_pb2.SupportsFeatureResponse(hasSupport=request.id != "outputValues")

    def GetDeploymentInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self.monitor.GetDeploymentInfo(request)  # type: ignore[no-untyped-call]

    def RegisterResource(self, request: Any, context: Any) -> Any:  # noqa: N802
        with self.lock:
            return self.monitor.RegisterResource(request)

    def RegisterResourceOutputs(self, request: Any, context: Any) -> Any:  # noqa: N802
        with self.lock:
            return self.monitor.RegisterResourceOutputs(request)

    def RegisterPackage(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self.monitor.RegisterPackage(request)  # type: ignore[no-untyped-call]

    def Invoke(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self.monitor.Invoke(request)  # type: ignore[no-untyped-call]


class _EngineService(engine_pb2_grpc.EngineServicer):
    def __init__(self, logs: list[str]) -> None:
        self.logs = logs

    def Log(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.logs.append(request.message)
        return empty_pb2.Empty()

    def GetRootResource(self, request: Any, context: Any) -> Any:  # noqa: N802
        from pulumi.runtime.proto import engine_pb2  # noqa: PLC0415

        return engine_pb2.GetRootResourceResponse(urn=STACK_URN)

    def SetRootResource(self, request: Any, context: Any) -> Any:  # noqa: N802
        from pulumi.runtime.proto import engine_pb2  # noqa: PLC0415

        return engine_pb2.SetRootResourceResponse()


@dataclass
class EngineDouble:
    """The engine's side of one provider process.

    Attributes:
        address: Where the Engine and ResourceMonitor services listen.
        recorder: What the provider registered, in order.
        logs: Messages the provider logged to the engine.
        provider: A stub of the provider's ResourceProvider service.
        stderr: The provider process's stderr so far (after :meth:`stop`).
    """

    address: str
    recorder: Recorder
    monitor: _Monitor
    provider: Any
    process: subprocess.Popen[bytes]
    stderr_file: Any
    server: Any
    channel: Any
    logs: list[str] = field(default_factory=list)
    stderr: str = ""

    def construct(
        self,
        type_: str,
        name: str,
        inputs: Mapping[str, Any],
        dependencies: Mapping[str, list[str]] | None = None,
        *,
        dry_run: bool = False,
        timeout: float = 60,
    ) -> Any:
        """Call ``Construct`` as the engine does for a program's component at the stack's root."""
        struct = struct_pb2.Struct()
        for key, value in inputs.items():
            struct.fields[key].CopyFrom(_value(value))
        request = provider_pb2.ConstructRequest(
            project=PROJECT,
            stack=STACK,
            dryRun=dry_run,
            parallel=4,
            monitorEndpoint=self.address,
            type=type_,
            name=name,
            parent=STACK_URN,
            inputs=struct,
            inputDependencies={
                key: provider_pb2.ConstructRequest.PropertyDependencies(urns=urns)
                for key, urns in (dependencies or {}).items()
            },
        )
        return self.provider.Construct(request, timeout=timeout)

    def stop(self) -> None:
        self.channel.close()
        self.process.terminate()
        try:
            self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung provider
            self.process.kill()
            self.process.communicate()
        self.stderr_file.seek(0)
        self.stderr = self.stderr_file.read().decode(errors="replace")
        self.stderr_file.close()
        self.server.stop(None)
        for loop in self.monitor.loops:
            if not loop.is_running() and not loop.is_closed():
                loop.close()


def _value(value: Any) -> Any:
    struct = struct_pb2.Struct()
    struct.update({"v": value})
    return struct.fields["v"]


def output_value(value: Any, dependencies: list[str]) -> dict[str, Any]:
    """An input as a program's SDK sends an Output to a component: known, with its dependencies."""
    return {
        rpc._special_sig_key: rpc._special_output_value_sig,
        "value": value,
        "dependencies": dependencies,
    }


@contextlib.contextmanager
def running_provider(cwd: Path) -> Iterator[EngineDouble]:
    """Start the engine double and ``python provider/ <engine address>``, as the engine does.

    ``cwd`` is the provider's working directory: the engine runs plugins from
    the program's directory, never from the plugin's.
    """
    recorder = Recorder()
    monitor = _Monitor(SessionMocks(), recorder)
    logs: list[str] = []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    resource_pb2_grpc.add_ResourceMonitorServicer_to_server(_MonitorService(monitor), server)
    engine_pb2_grpc.add_EngineServicer_to_server(_EngineService(logs), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    address = f"127.0.0.1:{port}"
    # Like the engine, never let stderr back up: a refusal makes the SDK print
    # long tracebacks there, and a full pipe would block the provider.
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in EngineDouble.stop
    process = subprocess.Popen(
        [sys.executable, str(PROVIDER_DIR), address],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.isdigit():
        process.kill()
        process.wait()
        server.stop(None)
        stderr.seek(0)
        raise AssertionError(
            f"provider did not print its port: {line!r}\n{stderr.read().decode(errors='replace')}"
        )
    channel = grpc.insecure_channel(f"127.0.0.1:{line}")
    double = EngineDouble(
        address=address,
        recorder=recorder,
        monitor=monitor,
        provider=provider_pb2_grpc.ResourceProviderStub(channel),
        process=process,
        stderr_file=stderr,
        server=server,
        channel=channel,
        logs=logs,
    )
    try:
        yield double
    finally:
        double.stop()
