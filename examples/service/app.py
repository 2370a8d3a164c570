"""A small HTTP service that runs sandbox sessions: copy it, then make it yours.

Endpoints (JSON; a session body is the stack config document, the same
camelCase keys as ``Pulumi.yaml``)::

    POST   /sessions                 start one: 202 and a status URL (a background job)
    GET    /sessions                 every session stack in the backend
    GET    /sessions/{id}            its status: stack, last operation, Pod, sidecar, CA
    GET    /sessions/{id}/events     its egress events, as server-sent events (?max_events=N)
    POST   /sessions/{id}/cancel     stop its running operation (the stack stays destroyable)
    DELETE /sessions/{id}            end it: 202 (a background job)

Errors map onto HTTP codes: a bad spec is 400 (the body names the key), an
unknown session 404, a busy one 409, a missing ``pulumi`` CLI 503. A reaper
runs every ``reap_every`` seconds and destroys idle sessions and those whose
CA expires soon. Run it with::

    export PULUMI_CONFIG_PASSPHRASE=change-me
    uvicorn --factory examples.service.app:main --port 8000
    curl -X POST localhost:8000/sessions -d '{"sessionId": "run-42", "namespace": "agents"}'

Jobs live in this process: a replica that restarts forgets its jobs, not its
sessions (the stacks are in the backend; ``GET /sessions/{id}`` still works).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from condukt_egress.automation import (
    AsyncSessionStacks,
    PulumiCliError,
    SessionBusyError,
    SessionNotFoundError,
    SessionSpec,
    SessionStacks,
    stack_name,
)
from condukt_egress.control import ControlClient, Target
from condukt_egress.errors import AutomationError, ConfigError, FieldError
from condukt_egress.events import DecisionRequest, Event, Frame

__all__ = ["SessionService", "create_app", "main", "router"]

_LOG = logging.getLogger("condukt_egress.service")

TargetFor = Callable[[str], Coroutine[Any, Any, Target]]
"""Where a session's control channel is: the sidecar's port-forward by default."""


@dataclass
class Job:
    """One background operation of this process on one session."""

    operation: str
    task: asyncio.Task[Any]
    error: str | None = None

    def view(self) -> dict[str, Any]:
        """The job as the status endpoint shows it."""
        state = "running" if not self.task.done() else ("failed" if self.error else "done")
        return {"operation": self.operation, "state": state, "error": self.error}


def _error(status: int, exc: Exception, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": str(exc), "type": type(exc).__name__, **extra}, status)


def _event_record(frame: Frame) -> dict[str, Any] | None:
    """What the stream shows of a frame; request headers (credentials) never leave."""
    if isinstance(frame, Event):
        request = frame.request
        return {
            "type": "event",
            "kind": frame.kind,
            "at": frame.at_text,
            "host": request.host,
            "port": request.port,
            "scheme": request.scheme,
            "method": request.method,
            "path": request.path,
            "status": request.response_status,
            "reason": frame.reason,
            "bytesIn": request.bytes_in,
            "bytesOut": request.bytes_out,
        }
    if isinstance(frame, DecisionRequest):
        return {"type": "decide", "id": frame.id, "host": frame.host, "port": frame.port}
    return None


class SessionService:
    """The service's state: the stacks, this process's jobs, the reaper's settings.

    Args:
        stacks: The session stacks (state backend, passphrase, cluster).
        reap_every: Seconds between reaper runs; None runs none.
        idle_after: Seconds after its last update that a session is reaped.
        ca_margin: Reap a session whose CA expires within this many seconds.
        target_for: The control channel of a session id; default its Pod's
            port-forward (:meth:`SessionStacks.control_target`).
    """

    def __init__(
        self,
        stacks: SessionStacks,
        *,
        reap_every: float | None = 300.0,
        idle_after: float = 6 * 3600.0,
        ca_margin: float = 3600.0,
        target_for: TargetFor | None = None,
    ) -> None:
        self.sessions = AsyncSessionStacks(stacks)
        self.jobs: dict[str, Job] = {}
        self.reap_every = reap_every
        self.idle_after = idle_after
        self.ca_margin = ca_margin
        self.target_for = target_for or self.sessions.control_target

    def ensure_idle(self, session_id: str, operation: str) -> None:
        """Raise :class:`SessionBusyError` (409) while a job of ours runs on the session."""
        running = self.jobs.get(session_id)
        if running is not None and not running.task.done():
            raise SessionBusyError(
                session_id,
                stack_name(session_id),
                f"cannot {operation}: {running.operation} is running; wait for it "
                f"(GET /sessions/{quote(session_id, safe='')}), or cancel it",
            )

    def start(self, session_id: str, operation: str, work: Coroutine[Any, Any, Any]) -> Job:
        """Run ``work`` as the session's background job."""
        try:
            self.ensure_idle(session_id, operation)
        except SessionBusyError:
            work.close()
            raise

        async def run() -> None:
            try:
                await work
            except Exception as exc:
                job.error = str(exc)
                _LOG.warning("session %s: %s failed: %s", session_id, operation, exc)
                return
            if operation == "destroy" and self.jobs.get(session_id) is job:
                del self.jobs[session_id]  # the session is gone: its URL is 404 now

        job = Job(operation, asyncio.create_task(run()))
        self.jobs[session_id] = job
        return job

    async def reap_once(self) -> list[str]:
        """One reaper run: the ids of the sessions it destroyed."""
        reaped = await self.sessions.reap(
            older_than=self.idle_after, expiring_within=self.ca_margin
        )
        for session_id in reaped:
            self.jobs.pop(session_id, None)
        return reaped

    async def reaper(self, every: float) -> None:
        """Reap every ``every`` seconds until cancelled; a failed run is logged."""
        while True:
            await asyncio.sleep(every)
            try:
                reaped = await self.reap_once()
            except Exception:
                _LOG.exception("reaper run failed")
                continue
            if reaped:
                _LOG.info("reaped sessions %s", ", ".join(reaped))

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """Run the reaper while the app serves; at the end, let running jobs finish."""
        task = asyncio.create_task(self.reaper(self.reap_every)) if self.reap_every else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # Operations run to their end in their threads; wait for them.
            jobs = [job.task for job in self.jobs.values()]
            await asyncio.gather(*jobs, return_exceptions=True)


router = APIRouter()


def _service(request: Request) -> SessionService:
    service: SessionService = request.app.state.service
    return service


def _accepted(session_id: str, job: Job) -> JSONResponse:
    url = f"/sessions/{quote(session_id, safe='')}"
    body = {"sessionId": session_id, "status": url, "job": job.view()}
    return JSONResponse(body, 202, headers={"Location": url})


@router.post("/sessions")
async def create(request: Request) -> JSONResponse:
    """Start a session from its stack config document: 202 and its status URL."""
    service = _service(request)
    try:
        body = await request.json()
    except ValueError as exc:
        return _error(400, ValueError(f"the body is not JSON: {exc}"))
    spec = SessionSpec.from_config(body)  # 400 naming the key
    if "/" in spec.session_id:
        raise ConfigError(
            "sessionId", "must not contain '/' here: it is a segment of the session's URL"
        )
    await service.sessions.pulumi_version()  # 503 now, not in the job
    job = service.start(spec.session_id, "up", service.sessions.up(spec))
    return _accepted(spec.session_id, job)


@router.get("/sessions")
async def list_sessions(request: Request) -> list[dict[str, Any]]:
    """Every session stack in the backend."""
    return [
        {
            "sessionId": s.session_id,
            "stackName": s.stack_name,
            "resourceCount": s.resource_count,
            "updateInProgress": s.update_in_progress,
            "lastUpdate": s.last_update.isoformat() if s.last_update else None,
        }
        for s in await _service(request).sessions.list()
    ]


@router.get("/sessions/{session_id}")
async def status(request: Request, session_id: str) -> dict[str, Any]:
    """The session's status and this process's job on it."""
    service = _service(request)
    job = service.jobs.get(session_id)
    current = await service.sessions.status(session_id)
    if not current.exists and job is None:
        raise SessionNotFoundError(session_id, current.stack_name, "no such session")
    return {**current.to_dict(), "job": job.view() if job else None}


@router.post("/sessions/{session_id}/cancel")
async def cancel(request: Request, session_id: str) -> dict[str, Any]:
    """Stop the session's running operation; the stack stays destroyable."""
    cancelled = await _service(request).sessions.cancel(session_id)
    return {"sessionId": session_id, "cancelled": cancelled}


@router.delete("/sessions/{session_id}")
async def delete(request: Request, session_id: str) -> JSONResponse:
    """End the session: 202, its destroy runs as a background job."""
    service = _service(request)
    service.ensure_idle(session_id, "destroy")
    current = await service.sessions.status(session_id)
    if not current.exists:
        raise SessionNotFoundError(session_id, current.stack_name, "no such session")
    job = service.start(session_id, "destroy", service.sessions.destroy(session_id))
    return _accepted(session_id, job)


@router.get("/sessions/{session_id}/events")
async def events(
    request: Request, session_id: str, max_events: int | None = None
) -> StreamingResponse:
    """Server-sent events from the session's sidecar; ``max_events`` ends the stream."""
    target = await _service(request).target_for(session_id)  # 404 before the stream

    async def stream() -> AsyncIterator[str]:
        sent = 0
        async with ControlClient(target, reconnect=True) as client:
            async for frame in client.frames():
                record = _event_record(frame)
                if record is None:
                    continue
                yield f"event: {record['type']}\ndata: {json.dumps(record)}\n\n"
                sent += 1
                if max_events is not None and sent >= max_events:
                    return

    return StreamingResponse(stream(), media_type="text/event-stream")


_STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (FieldError, 400),  # ConfigError, PolicyError: the body names the field
    (SessionNotFoundError, 404),
    (SessionBusyError, 409),
    (PulumiCliError, 503),
    (AutomationError, 500),
)


def create_app(
    stacks: SessionStacks,
    *,
    reap_every: float | None = 300.0,
    idle_after: float = 6 * 3600.0,
    ca_margin: float = 3600.0,
    target_for: TargetFor | None = None,
) -> FastAPI:
    """The service around ``stacks`` (arguments as :class:`SessionService`)."""
    service = SessionService(
        stacks,
        reap_every=reap_every,
        idle_after=idle_after,
        ca_margin=ca_margin,
        target_for=target_for,
    )
    app = FastAPI(title="condukt-egress sessions", lifespan=service.lifespan)
    app.state.service = service
    app.include_router(router)
    for error, code in _STATUS_OF:

        async def handler(_request: Request, exc: Exception, code: int = code) -> JSONResponse:
            extra = {"field": exc.field} if isinstance(exc, FieldError) else {}
            return _error(code, exc, **extra)

        app.add_exception_handler(error, handler)
    return app


def main() -> FastAPI:
    """The app with settings from the environment (``uvicorn --factory``)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return create_app(SessionStacks())
