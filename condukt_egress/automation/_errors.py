"""Errors of the Automation API layer, and the classifier that produces them.

Every failure a service can meet when it drives session stacks becomes one of
these, each a :class:`~condukt_egress.errors.AutomationError` whose message says
what to do next. The Pulumi SDK's own ``CommandError`` is kept as ``__cause__``.
"""

from __future__ import annotations

from typing import Final

from pulumi.automation import CommandError, ConcurrentUpdateError, StackNotFoundError

from condukt_egress.errors import AutomationError

__all__ = [
    "PassphraseRequiredError",
    "PulumiCliError",
    "SessionBusyError",
    "SessionError",
    "SessionNotFoundError",
    "SessionOperationError",
    "translate",
]

_DETAIL_LINES: Final = 12
_TORN_CHECKPOINT: Final = "failed to load checkpoint: EOF"


class PulumiCliError(AutomationError):
    """The ``pulumi`` CLI is missing, not runnable, or too old for inline programs."""


class PassphraseRequiredError(AutomationError):
    """No passphrase for the passphrase secrets provider was given or found."""


class SessionError(AutomationError):
    """Something about one session's stack; the text names both and says what to do.

    Attributes:
        session_id: The session.
        stack_name: Its stack.
        message: What happened and the next step, without the session.
    """

    def __init__(self, session_id: str, stack_name: str, message: str) -> None:
        super().__init__(session_id, stack_name, message)
        self.session_id = session_id
        self.stack_name = stack_name
        self.message = message

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"

    @property
    def subject(self) -> str:
        """The session and its stack, as every message starts."""
        return f"session {self.session_id!r} (stack {self.stack_name})"


class SessionNotFoundError(SessionError):
    """No stack exists for the session id (or it holds no session)."""


class SessionBusyError(SessionError):
    """Another operation on the same session is running (this process or another)."""


class SessionOperationError(SessionError):
    """``up``, ``preview``, ``refresh`` or ``destroy`` of a session failed.

    After a failed ``up`` the stack keeps what was created and stays
    destroyable: call ``destroy(session_id)``, or fix the cause and ``up`` again.

    Attributes:
        operation: ``up``, ``preview``, ``refresh``, ``destroy`` or ``install plugins``.
        details: The engine's last error lines (may be empty).
    """

    def __init__(
        self, session_id: str, stack_name: str, operation: str, message: str, details: str = ""
    ) -> None:
        super().__init__(session_id, stack_name, message)
        self.args = (session_id, stack_name, operation, message, details)
        self.operation = operation
        self.details = details

    def __str__(self) -> str:
        text = f"{self.subject}: {self.operation} failed: {self.message}"
        return f"{text}\n{self.details}" if self.details else text


_HINTS: Final = {
    "up": (
        "the stack keeps whatever was created and stays destroyable; fix the cause and call "
        "up(spec) again, or call destroy(session_id) to remove it"
    ),
    "preview": "nothing was changed; fix the cause shown below and preview again",
    "refresh": "the state was not changed; fix the cause shown below and refresh again",
    "destroy": (
        "some resources may remain; fix the cause and call destroy(session_id) again "
        "(run refresh(session_id) first if objects were deleted outside Pulumi)"
    ),
}


def error_lines(text: str, limit: int = _DETAIL_LINES) -> str:
    """The engine's error lines from a ``CommandError`` text, else its last lines."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return "\n".join((errors or lines)[-limit:])


def translate(
    exc: CommandError,
    *,
    operation: str,
    session_id: str,
    stack_name: str,
    backend_url: str,
    work_dir: str,
) -> AutomationError:
    """Turn the SDK's ``CommandError`` for one session into our error with a next step.

    Args:
        exc: What the Automation API raised.
        operation: The operation that ran (``up``, ``destroy``...).
        session_id: The session's id.
        stack_name: The session's stack.
        backend_url: The state backend, named in the lock-release hint.
        work_dir: The session's workspace directory, named in the same hint.
    """
    if isinstance(exc, StackNotFoundError):
        return SessionNotFoundError(
            session_id,
            stack_name,
            f"no such stack in {backend_url}; start the session with up(spec) "
            "(list() shows the sessions that exist)",
        )
    if isinstance(exc, ConcurrentUpdateError):
        return SessionBusyError(
            session_id,
            stack_name,
            "another update of this stack is running (the backend holds its lock); wait for it "
            "to finish and retry. If the process that held it died, release the lock with "
            f"`PULUMI_BACKEND_URL={backend_url} pulumi cancel --yes {stack_name}` run in "
            f"{work_dir}, then call refresh(session_id)",
        )
    if _TORN_CHECKPOINT in str(exc):
        # A file backend rewrites each object's metadata file (<object>.attrs) in
        # place: read while a live process writes it, or after a process was
        # killed mid-write, it is empty (see _recovery.py).
        return SessionBusyError(
            session_id,
            stack_name,
            "another process was writing this stack's state in "
            f"{backend_url} (its metadata read back empty); wait for it to finish and "
            "retry. If no process is writing it (one was killed), call cancel(session_id): "
            "on a file:// backend it repairs the stack, then destroy(session_id, refresh=True)",
        )
    hint = _HINTS.get(operation, "fix the cause shown below and retry")
    return SessionOperationError(session_id, stack_name, operation, hint, error_lines(str(exc)))
