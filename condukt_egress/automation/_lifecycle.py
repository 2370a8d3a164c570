"""What a service needs around session stacks: status, reaping and cancelling.

:meth:`SessionStacks.status`, :meth:`~SessionStacks.reap` and
:meth:`~SessionStacks.cancel` are these functions. They build on the stacks'
own operations (the one engine runner, its claim and its lock handling), so
a reaper or a cancel follows the same busy rules as every ``up``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pulumi.automation import CommandError, Stack

from condukt_egress.automation._cli import interrupt_operations
from condukt_egress.automation._errors import SessionBusyError, SessionNotFoundError, error_lines
from condukt_egress.automation._operations import EngineOptions
from condukt_egress.automation._recovery import recover_stack
from condukt_egress.automation._spec import (
    PROJECT_NAME,
    STACK_PREFIX,
    KubernetesSettings,
    stack_name,
)
from condukt_egress.automation._status import (
    PodState,
    SessionStatus,
    api_client,
    ca_expiry,
    now,
    outputs_of,
    parse_time,
    read_pod,
    read_record,
    result_of,
    write_record,
)
from condukt_egress.errors import AutomationError, ConfigError

if TYPE_CHECKING:
    from condukt_egress.automation._stacks import SessionStacks
    from condukt_egress.portforward import PortForwardTarget

__all__ = [
    "cancel_session",
    "control_target",
    "reap_sessions",
    "recover_stacks",
    "session_status",
]

_SAME_UPDATE = timedelta(seconds=1)  # `stack ls` and `stack history` round times differently


def _utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC time (the SDK parses the CLI's UTC times as naive)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def session_status(
    stacks: SessionStacks, session_id: str, *, kubernetes: KubernetesSettings | None = None
) -> SessionStatus:
    """What the session is doing now, cheap enough for every HTTP request.

    Reads the session's operation record in this state directory (no CLI
    call), the Pod from the API server with the session's Kubernetes
    settings (``kubernetes`` if given, else those of its last ``up`` here,
    else the instance's), and the CA's expiry from its certificate. Only a session
    with no record here (made by another replica, or removed) costs CLI
    calls, to learn whether its stack exists and its outputs.

    Raises:
        ConfigError: A bad session id.
        PulumiCliError: No record here and no usable CLI.
    """
    name = stack_name(session_id)
    with stacks._guard:
        running = stacks._busy.get(name)
        known = stacks._known.get(session_id)
    record = read_record(stacks.work_dir(session_id))
    settings = kubernetes or (known[0] if known else stacks.kubernetes)
    if record is not None:
        outputs = outputs_of(record)
        base = SessionStatus(
            session_id=session_id,
            stack_name=name,
            exists=bool(record.get("exists", True)),
            running=running,
            last_operation=record.get("operation"),
            last_result=result_of(record),
            last_change=parse_time(record.get("at")),
            outputs=outputs,
        )
    elif running is not None:
        base = SessionStatus(session_id, name, exists=False, running=running)
        outputs = None
    else:
        try:
            with stacks._translated(session_id, name, "status"):
                outputs = stacks._read_outputs(session_id, name)
        except SessionNotFoundError:
            return SessionStatus(session_id, name, exists=False)
        base = SessionStatus(session_id, name, exists=True, outputs=outputs)
    if outputs is None:
        return base
    pod: PodState | None = None
    problem: str | None = None
    if settings.render_yaml_to_directory is None:
        try:
            pod = read_pod(settings, outputs.namespace, outputs.pod_name)
        except Exception as exc:
            problem = f"cannot read Pod {outputs.namespace}/{outputs.pod_name}: {_line(exc)}"
    return dataclasses.replace(
        base, pod=pod, ca_expires=ca_expiry(outputs.ca_cert_pem), problem=problem
    )


def reap_sessions(
    stacks: SessionStacks,
    older_than: timedelta | float | None = None,
    expiring_within: timedelta | float | None = None,
) -> list[str]:
    """Destroy and remove idle sessions, and those whose CA expires soon; their ids.

    See :meth:`SessionStacks.reap`.

    On a ``file://`` backend it first repairs what killed processes left
    (:func:`recover_stacks`: their locks, an unreadable checkpoint), so
    their sessions are reaped too, and one damaged stack does not make
    ``list()`` fail for all.

    Safe beside other replicas on the same backend: a session busy here or
    in another process (the backend's lock) is skipped, never broken, and
    each candidate is checked again once it is ours, so a session updated
    since :meth:`list` is kept.

    Args:
        stacks: The session stacks to reap.
        older_than: Reap sessions whose last update ended longer ago
            (a ``timedelta`` or seconds).
        expiring_within: Reap sessions whose CA expires within this window
            (the next ``up`` would replace the Pod under the agent).

    Raises:
        ConfigError: Neither window given, or one is not a positive duration.
    """
    idle = _duration("older_than", older_than)
    expiring = _duration("expiring_within", expiring_within)
    if idle is None and expiring is None:
        raise ConfigError(
            "older_than",
            "give older_than, expiring_within or both (e.g. reap(older_than=3600))",
        )
    recover_stacks(stacks)
    reaped: list[str] = []
    for summary in stacks.list():
        session_id = summary.session_id or _session_id_of(stacks, summary.stack_name)
        if session_id is None or summary.update_in_progress:
            continue
        stale = _reason_to_reap(stacks, session_id, summary.last_update, idle, expiring)
        if stale is None:
            continue
        before = summary.last_update

        def still_stale(stack: Stack, before: datetime | None = before) -> bool:
            """Whether nobody updated the session since it was listed (it is ours now)."""
            last = stack.info(show_secrets=False)
            if last is None or before is None:
                return True
            ended = _utc(last.end_time)
            limit = _utc(before)
            return ended is not None and limit is not None and ended <= limit + _SAME_UPDATE

        try:
            stacks._destroy(session_id, EngineOptions(), remove_stack=True, still_stale=still_stale)
        except (SessionBusyError, SessionNotFoundError) as exc:
            stacks._logger.info("reap: skipped session %s: %s", session_id, exc.message)
            continue
        except AutomationError as exc:
            stacks._logger.warning("reap: could not destroy session %s: %s", session_id, exc)
            continue
        if not stacks.work_dir(session_id).exists():
            stacks._logger.info("reap: destroyed session %s (%s)", session_id, stale)
            reaped.append(session_id)
    return reaped


def cancel_session(stacks: SessionStacks, session_id: str, *, wait: float = 60.0) -> bool:
    """Stop the session's running operation as ``pulumi cancel`` does; True if one was.

    An operation of this process gets the CLI's Ctrl-C (SIGINT): it lets
    the running resource operations finish, saves the state and releases
    the lock, and its call raises :class:`SessionOperationError`. Then
    this waits up to ``wait`` seconds for it to return (checked on CLI
    3.274: the update ends ``update canceled`` and the lock is released).
    Otherwise this runs ``pulumi cancel`` on the stack: on Pulumi Cloud it
    stops another replica's update; on a DIY backend it removes whatever
    lock is there (one a dead process left; a live one is not stopped) and
    always succeeds. Either way the stack stays destroyable.

    Before that, on a ``file://`` backend with no live process holding the
    stack, it repairs what a killed process left (:func:`recover_stacks`):
    the checkpoint that reads as ``failed to load checkpoint: EOF`` reads
    again, so ``destroy(session_id, refresh=True)`` can reconcile it with
    the cluster.

    Raises:
        SessionNotFoundError: No stack for this session.
    """
    name = stack_name(session_id)
    with stacks._guard:
        running = stacks._busy.get(name)
    if running is not None:
        sent = interrupt_operations(stacks.work_dir(session_id))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with stacks._guard:
                if name not in stacks._busy:
                    break
            time.sleep(0.05)
        return sent > 0
    recover_stacks(stacks, [name])
    with stacks._translated(session_id, name, "cancel"):
        stack = stacks._select(session_id, name)
        try:
            stack.cancel()
        except CommandError as exc:
            stacks._logger.info("cancel %s: %s", session_id, error_lines(str(exc)))
            return False
    write_record(stacks.work_dir(session_id), result="interrupted", at=now().isoformat())
    return True


def recover_stacks(stacks: SessionStacks, names: Iterable[str] | None = None) -> None:
    """Repair what killed processes left in a file backend's session stacks (all by default).

    A session busy in this process is left alone, and so is one whose lock
    a live process holds (see :func:`condukt_egress.automation._recovery.recover_stack`):
    it removes dead processes' locks, an empty metadata file that makes the
    checkpoint read as ``EOF``, and puts back the newest readable checkpoint
    the backend keeps if the checkpoint itself is unreadable. Each repair is
    logged at WARNING. Other backends keep no such files: nothing to do.
    """
    backend_dir = stacks._backend_dir()
    if backend_dir is None:
        return
    if names is None:
        folder = backend_dir / ".pulumi" / "stacks" / PROJECT_NAME
        names = sorted({p.name.split(".json")[0] for p in folder.glob(f"{STACK_PREFIX}*.json*")})
    for name in names:
        with stacks._guard:
            if name in stacks._busy:
                continue
            try:
                done = recover_stack(backend_dir, PROJECT_NAME, name)
            except OSError as exc:
                done = [f"could not repair it: {exc}"]
        for line in done:
            stacks._logger.warning("stack %s: %s", name, line)


def _reason_to_reap(
    stacks: SessionStacks,
    session_id: str,
    last_update: datetime | None,
    idle: timedelta | None,
    expiring: timedelta | None,
) -> str | None:
    """Why a session should be reaped, or None to keep it."""
    at = now()
    if idle is not None and last_update is not None:
        last = _utc(last_update)
        if last is not None and at - last > idle:
            return f"idle since {last.isoformat()}"
    if expiring is not None:
        expires = _ca_expires(stacks, session_id)
        if expires is not None and expires - at < expiring:
            return f"CA expires {expires.isoformat()}"
    return None


def _ca_expires(stacks: SessionStacks, session_id: str) -> datetime | None:
    """The session CA's expiry from its record here, else from its stack outputs."""
    record = read_record(stacks.work_dir(session_id))
    outputs = outputs_of(record) if record is not None else None
    if outputs is None:
        try:
            outputs = stacks.get(session_id)
        except AutomationError:
            return None
    return ca_expiry(outputs.ca_cert_pem)


def _session_id_of(stacks: SessionStacks, name: str) -> str | None:
    """The session id a stack exports (a stack made by another replica), if any."""
    workspace = stacks._project_workspace()
    try:
        raw = workspace.stack_outputs(name)
    except CommandError:
        return None
    value = raw.get("sessionId")
    session_id = None if value is None else value.value
    if isinstance(session_id, str) and stack_name(session_id) == name:
        return session_id
    return None


def _duration(name: str, value: timedelta | float | None) -> timedelta | None:
    """A positive window from a ``timedelta`` or seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = timedelta(seconds=value)
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ConfigError(name, f"must be a positive timedelta or seconds, got {value!r}")
    return value


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def control_target(
    stacks: SessionStacks, session_id: str, *, kubernetes: KubernetesSettings | None = None
) -> PortForwardTarget:
    """The session sidecar's control port, through the API server's port-forward.

    See :meth:`SessionStacks.control_target`.
    """
    from condukt_egress.portforward import PortForwardTarget  # noqa: PLC0415 - kubernetes

    record = read_record(stacks.work_dir(session_id))
    outputs = outputs_of(record) if record is not None else None
    if outputs is None:
        outputs = stacks.get(session_id)
    with stacks._guard:
        known = stacks._known.get(session_id)
    settings = kubernetes or (known[0] if known else stacks.kubernetes)
    if settings.render_yaml_to_directory is not None:
        raise ConfigError(
            "kubernetes",
            "the session's manifests are rendered to a directory, not applied: there is no "
            "Pod to connect to; pass kubernetes=KubernetesSettings(context=...)",
        )
    return PortForwardTarget(
        namespace=outputs.namespace,
        pod=outputs.pod_name,
        port=outputs.control_port,
        api_client=api_client(settings),
    )
