"""The one place where threads meet the event loop.

Blocking work leaves the loop in exactly three ways, all here (as kr8s keeps
its sync/async bridging in one ``_async_utils`` module):

- :class:`DaemonPool`: a bounded set of daemon threads for many short calls
  (sync ``decide`` deciders); answers go back to the loop in batches.
- :func:`off_loop`: one daemon thread for one call that may hang (a
  Kubernetes API request): a stuck call never blocks the process's exit, and
  a result that arrives after the caller gave up is closed.
- :func:`in_thread`: :func:`asyncio.to_thread` for work that must finish
  even when the process is exiting (a Pulumi update).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["DaemonPool", "in_thread", "off_loop"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


class DaemonPool:
    """Daemon worker threads for sync deciders; a stuck one never blocks exit.

    Results go back to the event loop in batches: one wake-up of the loop
    settles every answer finished since the last, instead of one cross-thread
    call (and one GIL hand-over) per answer.

    Threads are added one at a time, only while jobs wait and no thread is
    idle or starting: a burst of instant answers is served by one thread
    instead of waking the whole pool to fight over the interpreter lock (each
    lost fight costs up to the 5 ms switch interval), while slow, blocking
    deciders still grow the pool up to ``size``.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._threads: list[threading.Thread] = []
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], object], asyncio.Future[object], asyncio.AbstractEventLoop] | None
        ] = queue.SimpleQueue()
        self._idle = 0
        self._starting = 0
        self._lock = threading.Lock()
        self._done: list[tuple[asyncio.Future[object], object, BaseException | None]] = []

    def submit(self, fn: Callable[[], object]) -> asyncio.Future[object]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._jobs.put((fn, future, loop))
        self._grow()
        return future

    def _grow(self) -> None:
        """Start one more thread if jobs wait and no thread is idle or starting."""
        with self._lock:
            if (
                self._idle == 0
                and self._starting == 0
                and len(self._threads) < self._size
                and not self._jobs.empty()
            ):
                self._starting += 1
                thread = threading.Thread(
                    target=self._work, name="condukt-egress-decider", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()

    def _work(self) -> None:
        with self._lock:
            self._starting -= 1
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            if job is None:
                return
            self._grow()  # more jobs wait behind this one: let another thread help
            fn, future, loop = job
            try:
                outcome: tuple[object, BaseException | None] = (fn(), None)
            except BaseException as exc:  # handed to the awaiting task
                outcome = (None, exc)
            with self._lock:
                self._done.append((future, *outcome))
                first = len(self._done) == 1
            if first:  # later answers ride on this wake-up
                with contextlib.suppress(RuntimeError):  # loop already closed
                    loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        """On the loop: hand every finished answer to its awaiting task."""
        with self._lock:
            done, self._done = self._done, []
        for future, result, exc in done:
            if future.done():
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)



async def off_loop(fn: Callable[[], _T], *, name: str = "condukt-egress-io") -> _T:
    """Run a blocking call on its own daemon thread and await its result.

    If the awaiting task is cancelled (a timeout), the call runs on; a result
    with a ``close()`` method that arrives late is closed.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: _T | None, exc: BaseException | None) -> None:
        if future.done():  # the caller gave up: release what arrived late
            close = getattr(result, "close", None)
            if callable(close):
                close()
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result = context.run(fn)
        except BaseException as exc:  # handed to the awaiting task
            outcome: tuple[_T | None, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


async def in_thread(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``fn`` on the loop's default executor: it finishes even if the process exits."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
