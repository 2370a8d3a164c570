"""The one engine-call path of :class:`SessionStacks`: claim, slot, run, record, translate.

``up``, ``preview``, ``refresh`` and ``destroy`` all run through
:meth:`EngineRunner._operation` (the session claimed in this process, one of
``max_operations`` slots held, the SDK's ``CommandError`` turned into our
error) and :meth:`EngineRunner._engine` (the one call of the engine, with
the validated :class:`EngineOptions`, our output sinks and the operation
record that :meth:`SessionStacks.status` reads).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from pulumi.automation import CommandError, EngineEvent, Stack

from condukt_egress.automation._errors import SessionBusyError, translate
from condukt_egress.automation._operations import EngineOptions, OnEvent, OnOutput, Operation
from condukt_egress.automation._spec import KubernetesSettings, SessionOutputs, stack_name
from condukt_egress.automation._status import now, record_outputs, write_record
from condukt_egress.automation._workspaces import StackWorkspaces

__all__ = ["EngineRunner", "load_program_modules"]

_T = TypeVar("_T")

_MODULES_LOCK: Final = threading.Lock()
_modules_loaded = False


def load_program_modules() -> None:
    """Load the resource SDK modules the session program uses, once, under a lock.

    ``pulumi_kubernetes`` loads its submodules lazily (``importlib``'s
    ``LazyLoader``), which before Python 3.12 is not thread-safe: two inline
    programs reaching ``k8s.core.v1`` at once, one per session thread, can
    see a half-loaded module (``module 'pulumi_kubernetes.core.v1' has no
    attribute 'Secret'``; seen with ten concurrent ``up`` on the real engine).
    """
    global _modules_loaded  # noqa: PLW0603 - a process-wide once
    with _MODULES_LOCK:
        if _modules_loaded:
            return
        import pulumi_kubernetes as k8s  # noqa: PLC0415
        import pulumi_tls as tls  # noqa: PLC0415

        for module, name in (
            (k8s.core.v1, "Secret"),
            (k8s.core.v1, "Pod"),
            (k8s.networking.v1, "NetworkPolicy"),
            (k8s.apps.v1, "Deployment"),
            (k8s.batch.v1, "Job"),
            (k8s.meta.v1, "ObjectMetaArgs"),
            (tls, "PrivateKey"),
            (tls, "SelfSignedCert"),
        ):
            getattr(module, name)
        _modules_loaded = True


class EngineRunner(StackWorkspaces):
    """The engine operations of one :class:`SessionStacks`, one at a time per session.

    The attributes are set by :meth:`SessionStacks.__init__`.
    """

    max_operations: int
    _slots: threading.BoundedSemaphore
    _on_output: OnOutput | None
    _guard: threading.Lock
    _busy: dict[str, str]  # stack name -> the operation running in this process
    _known: dict[str, tuple[KubernetesSettings, SessionOutputs]]

    @contextmanager
    def _operation(self, session_id: str, operation: Operation) -> Iterator[str]:
        """Run one engine operation: claim the session, take a slot, translate failures."""
        name = stack_name(session_id)
        with (
            self._claim(session_id, name, operation),
            self._slot(session_id, operation),
            self._translated(session_id, name, operation),
        ):
            yield name

    @contextmanager
    def _claim(self, session_id: str, name: str, operation: str) -> Iterator[None]:
        """Mark the session busy in this process, or raise :class:`SessionBusyError`."""
        with self._guard:
            running = self._busy.get(name)
            if running is not None:
                raise SessionBusyError(
                    session_id,
                    name,
                    f"cannot {operation}: {running} is already running for this session in "
                    "this process; wait for it to return, then retry",
                )
            self._busy[name] = operation
        try:
            yield
        finally:
            with self._guard:
                del self._busy[name]

    @contextmanager
    def _slot(self, session_id: str, operation: str) -> Iterator[None]:
        """Hold one of the ``max_operations`` slots, waiting (and saying so) if none is free."""
        if not self._slots.acquire(blocking=False):
            self._logger.info(
                "session %s: %s waits for one of %d operation slots",
                session_id,
                operation,
                self.max_operations,
            )
            self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    @contextmanager
    def _translated(self, session_id: str, name: str, operation: str) -> Iterator[None]:
        """Turn the SDK's ``CommandError`` into our error with the next step."""
        try:
            yield
        except CommandError as exc:
            raise translate(
                exc,
                operation=operation,
                session_id=session_id,
                stack_name=name,
                backend_url=self.backend_url,
                work_dir=str(self.work_dir(session_id)),
            ) from exc

    def _engine(
        self,
        operation: Operation,
        session_id: str,
        stack: Stack,
        options: EngineOptions,
        **extra: Any,
    ) -> Any:
        """The one call of the engine: ``stack.<operation>`` with our sinks and the options."""
        options.check(operation)
        load_program_modules()
        sink = self._sink(session_id, options.on_output)
        run = getattr(stack, operation)
        work_dir = self.work_dir(session_id)
        recorded = operation != "preview"  # a preview changes nothing, so records nothing
        if recorded:
            write_record(
                work_dir,
                operation=operation,
                result="running",
                pid=os.getpid(),
                at=now().isoformat(),
                exists=True,
            )
        try:
            result = run(
                color="never",
                on_output=sink,
                on_error=sink,
                on_event=self._event_sink(session_id, options.on_event),
                **options.sdk_arguments(),
                **extra,
            )
        except BaseException:
            if recorded:
                write_record(work_dir, result="failed", at=now().isoformat())
            raise
        if recorded:
            gone = {"outputs": None} if operation == "destroy" else {}
            write_record(work_dir, result="succeeded", at=now().isoformat(), **gone)
        return result

    def _sink(self, session_id: str, on_output: OnOutput | None) -> Callable[[str], None]:
        """A line consumer for the SDK: the callback's, else a log line at INFO."""
        callback = on_output or self._on_output
        if callback is not None:
            return self._guarded(session_id, "on_output", callback)
        logger = self._logger
        return lambda line: logger.info("session %s: %s", session_id, line)

    def _event_sink(
        self, session_id: str, on_event: OnEvent | None
    ) -> Callable[[EngineEvent], None] | None:
        """An engine-event consumer for the SDK, if the call asked for events."""
        return None if on_event is None else self._guarded(session_id, "on_event", on_event)

    def _guarded(
        self, session_id: str, name: str, callback: Callable[[str, _T], None]
    ) -> Callable[[_T], None]:
        """``callback`` for one session; its errors are logged, never let stall the CLI pipe."""
        logger = self._logger

        def sink(item: _T) -> None:
            try:
                callback(session_id, item)
            except Exception:
                logger.exception("%s callback failed for session %s", name, session_id)

        return sink

    def _remember(
        self, session_id: str, settings: KubernetesSettings, outputs: SessionOutputs
    ) -> None:
        """Keep what the last ``up`` of a session used and made, for :meth:`status`."""
        with self._guard:
            self._known[session_id] = (settings, outputs)
        write_record(self.work_dir(session_id), outputs=record_outputs(outputs))

    def _forget_session(self, session_id: str) -> None:
        """Drop what :meth:`_remember` kept once the session's stack is gone."""
        with self._guard:
            self._known.pop(session_id, None)
