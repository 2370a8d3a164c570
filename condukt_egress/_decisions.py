"""Deciders and their answers: types, the answer cache, the time budget, fail-closed checks.

A decider's return value is trusted only when it is exactly ``"allow"``,
``"deny"`` or ``("deny", reason)`` (:func:`interpret`); anything else, like an
exception or a timeout, becomes a ``deny`` in the client.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple, TypeAlias

from condukt_egress.errors import ConfigError
from condukt_egress.events import Decision, DecisionAction, DecisionRequest

MAX_REASON_CHARS: Final = 1024
"""A decider's deny reason is cut to this length before it goes on the wire."""

SYNC_DECIDER_THREADS: Final = 16
"""Worker threads at most for a sync decider."""

DeciderResult: TypeAlias = Literal["allow", "deny"] | tuple[Literal["deny"], str]
"""What a decider returns: ``"allow"``, ``"deny"`` or ``("deny", reason)``."""

Decider: TypeAlias = Callable[[DecisionRequest], DeciderResult | Awaitable[DeciderResult]]
"""A sync or async callable answering one :class:`DecisionRequest`."""

DecidedBy: TypeAlias = Literal["decider", "cache", "fail_closed"]
"""Where an answer came from; ``fail_closed`` means the decider failed."""

DecisionKey: TypeAlias = tuple[str, int, str]
"""``(host lower-cased, port, scheme lower-cased)``: what one cached answer covers."""


def decision_key(request: DecisionRequest) -> DecisionKey:
    """The cache and in-flight key of a request: host, port and scheme together.

    A decider sees all three, so an answer for ``api.github.com:443`` over
    https says nothing about ``api.github.com:80`` over plain http.
    """
    return request.host.lower(), request.port, request.scheme.lower()


@dataclass(frozen=True)
class DecisionSent:
    """What the client answered to one decision request (for display or audit).

    Attributes:
        request: The sidecar's request.
        decision: The frame written back.
        decided_by: ``decider``, ``cache`` or ``fail_closed``.
        failure: Why the decider failed (``fail_closed`` only), else ``None``.
        seconds: Time from reading the request to writing the answer.
    """

    request: DecisionRequest
    decision: Decision
    decided_by: DecidedBy
    failure: str | None
    seconds: float


class Cached(NamedTuple):
    """An answer the decider gave, as :class:`DecisionCache` replays it."""

    action: DecisionAction
    reason: str | None


class _Entry(NamedTuple):
    expires: float
    """Loop time after which the answer is no longer replayed."""
    answer: Cached


class DecisionCache:
    """Answers per (host, port, scheme), kept for ``ttl`` seconds, at most ``max_entries`` (LRU).

    Only answers the decider gave are cached; fail-closed denials are not, so a
    passing failure does not stick. Keys are :data:`DecisionKey` tuples: the
    decider judged the whole destination, so the answer is replayed only for
    the same host, port and scheme.

    Args:
        ttl: Seconds an answer stays valid; must be positive.
        max_entries: Bound on the number of destinations remembered.
    """

    def __init__(self, ttl: float = 60.0, max_entries: int = 4096) -> None:
        if ttl <= 0:
            raise ConfigError("cache_ttl", f"must be a positive number of seconds, got {ttl!r}")
        if max_entries < 1:
            raise ConfigError(
                "cache_size", f"must be at least 1 host, got {max_entries!r}; the default is 4096"
            )
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[DecisionKey, _Entry] = OrderedDict()

    def get(self, key: DecisionKey, now: float) -> Cached | None:
        """Return the cached answer for ``key``, or ``None``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.answer

    def put(self, key: DecisionKey, action: DecisionAction, reason: str | None, now: float) -> None:
        """Remember an answer for ``key`` (from :func:`decision_key`)."""
        self._entries[key] = _Entry(now + self.ttl, Cached(action, reason))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def decider_budget(decide_timeout_ms: int) -> float:
    """Seconds a decider may take so the answer still beats the sidecar's timeout.

    Keeps a margin of a fifth of the sidecar's ``decide_timeout_ms``, at most
    one second, for the answer to travel back (a port-forward adds latency).

    Args:
        decide_timeout_ms: The policy's ``decide_timeout_ms``.
    """
    if decide_timeout_ms < 1:
        raise ConfigError(
            "decide_timeout_ms",
            f"must be a positive number of milliseconds, got {decide_timeout_ms!r}; use the "
            "policy's decide timeout (5000 by default)",
        )
    return (decide_timeout_ms - min(1000, decide_timeout_ms / 5)) / 1000


class Answer(NamedTuple):
    """What the client answers to one decision request, and why."""

    action: DecisionAction
    reason: str | None
    failure: str | None = None
    """Why the decider failed (the answer is then a fail-closed deny), else ``None``."""

    @property
    def cacheable(self) -> bool:
        """Whether the decider itself gave the answer (failures are never cached)."""
        return self.failure is None


class InvalidAnswerError(Exception):
    """A decider returned something other than the three answers it may give (internal)."""


def interpret(result: object) -> Answer:
    """Map a decider's return value to an answer; refuse anything else."""
    if result == "allow" and isinstance(result, str):
        return Answer("allow", None)
    if result == "deny" and isinstance(result, str):
        return Answer("deny", None)
    if (
        isinstance(result, tuple)
        and len(result) == 2
        and result[0] == "deny"
        and isinstance(result[0], str)
        and isinstance(result[1], str)
    ):
        return Answer("deny", result[1][:MAX_REASON_CHARS] or None)
    raise InvalidAnswerError(f"returned {_describe(result)}")


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"a {type(value).__name__}"


def is_async_callable(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )
