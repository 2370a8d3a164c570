"""``AsyncSessionStacks``: :class:`SessionStacks` for asyncio, with its exact signatures.

Each method is the blocking one run in a worker thread through the project's
one bridge (:func:`condukt_egress._threads.in_thread`). The wrapper keeps the
wrapped method's parameter types (a ``ParamSpec``), so a type checker sees
``await stacks.up(spec, replace=[...])`` exactly as it sees ``up``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from condukt_egress._threads import in_thread
from condukt_egress.automation._stacks import SessionStacks

__all__ = ["AsyncSessionStacks"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _in_thread(
    method: Callable[Concatenate[SessionStacks, _P], _R],
) -> Callable[Concatenate[AsyncSessionStacks, _P], Coroutine[Any, Any, _R]]:
    async def call(self: AsyncSessionStacks, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await in_thread(method, self.stacks, *args, **kwargs)

    functools.update_wrapper(call, method)  # the signature, for inspect and docs
    call.__qualname__ = f"AsyncSessionStacks.{method.__name__}"
    call.__doc__ = f"See :meth:`SessionStacks.{method.__name__}` (run in a worker thread)."
    return call


class AsyncSessionStacks:
    """:class:`SessionStacks` for asyncio: each call runs in a worker thread.

    Cancelling an awaiting task does not stop the engine: the operation runs
    to its end in its thread (and keeps the session busy until then); call
    :meth:`cancel` to stop it.

    Example:
        >>> stacks = AsyncSessionStacks(SessionStacks(passphrase=...))  # doctest: +SKIP
        >>> outputs = await stacks.up(SessionSpec("run-42"))  # doctest: +SKIP
    """

    def __init__(self, stacks: SessionStacks) -> None:
        self.stacks = stacks

    up = _in_thread(SessionStacks.up)
    preview = _in_thread(SessionStacks.preview)
    refresh = _in_thread(SessionStacks.refresh)
    destroy = _in_thread(SessionStacks.destroy)
    get = _in_thread(SessionStacks.get)
    list = _in_thread(SessionStacks.list)
    status = _in_thread(SessionStacks.status)
    reap = _in_thread(SessionStacks.reap)
    cancel = _in_thread(SessionStacks.cancel)
    pulumi_version = _in_thread(SessionStacks.pulumi_version)
    control_target = _in_thread(SessionStacks.control_target)
