"""The one place where threads meet the event loop.

Blocking work leaves the loop in exactly three ways, all here (as kr8s keeps
its sync/async bridging in one ``_async_utils`` module):

- :class:`DaemonPool`: a bounded set of daemon threads for many short calls
  (sync ``decide`` deciders); calls and answers cross in batches.
- :func:`off_loop`: one daemon thread for one call that may hang (a
  Kubernetes API request): a stuck call never blocks the process's exit, and
  a result that arrives after the caller gave up is closed.
- :func:`in_thread`: :func:`asyncio.to_thread` for work that must finish
  even when the process is exiting (a Pulumi update).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Final, ParamSpec, TypeAlias, TypeVar

__all__ = ["DaemonPool", "in_thread", "off_loop"]

_T = TypeVar("_T")
_A = TypeVar("_A")
_P = ParamSpec("_P")


_Job: TypeAlias = tuple[Callable[[Any], object], Any, "asyncio.Future[object]"]
"""A call: the function, its one argument (no closure per call), the future awaiting it."""

SPILL_AFTER: Final = 0.005
"""Seconds a call may run before the calls queued behind it move to another thread."""


class _Batch:
    """Calls handed to the threads in one go; ``started`` is when the running one began."""

    __slots__ = ("jobs", "loop", "started", "timer")

    def __init__(self, jobs: list[_Job], loop: asyncio.AbstractEventLoop) -> None:
        self.jobs = collections.deque(jobs)
        self.loop = loop
        self.started: float | None = None
        self.timer: asyncio.TimerHandle | None = None


class DaemonPool:
    """Daemon worker threads for sync deciders; a stuck one never blocks exit.

    Every hand-over between a thread and the event loop costs an interpreter
    lock hand-over, and a lost fight for the lock costs up to the 5 ms switch
    interval (more on a loaded machine). So calls cross in batches, both ways:

    - the calls submitted in one loop iteration go to one thread as one
      batch (one wake-up), and that thread runs them one after the other
      while the loop waits in ``select``, without contention;
    - their results come back with one wake-up of the loop when the batch is
      done.

    A blocking call must not hold up the ones behind it: the loop checks each
    running batch every :data:`SPILL_AFTER` seconds, and when its current call
    has run that long, moves the calls not yet started to a new batch for
    another thread (the pool grows, one thread at a time, up to ``size``) and
    settles the results finished so far.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._threads: list[threading.Thread] = []
        self._batches: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._idle = 0  # threads waiting for a batch that none is promised to
        self._waiting = 0  # batches queued that no thread is promised to
        self._lock = threading.Lock()
        self._submitted: list[_Job] = []
        self._done: list[tuple[asyncio.Future[object], object, BaseException | None]] = []
        self._closed = False

    def submit(self, fn: Callable[[_A], object], arg: _A) -> asyncio.Future[object]:
        """Run ``fn(arg)`` on a pool thread; it leaves with this loop iteration's other calls."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._submitted.append((fn, arg, future))
        if len(self._submitted) == 1:
            loop.call_soon(self._dispatch, loop)
        return future

    def shutdown(self) -> None:
        self._closed = True  # a batch's pending check no longer spills
        for _ in self._threads:
            self._batches.put(None)
        self._threads.clear()

    # -- on the loop

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs, self._submitted = self._submitted, []
        if jobs:
            self._start(_Batch(jobs, loop))

    def _start(self, batch: _Batch) -> None:
        batch.timer = batch.loop.call_later(SPILL_AFTER, self._check, batch)
        thread = None
        with self._lock:
            if self._idle:
                self._idle -= 1  # that thread takes this batch
            elif len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name="condukt-egress-decider", daemon=True
                )
                self._threads.append(thread)
            else:
                self._waiting += 1  # the next thread to finish takes it
        self._batches.put(batch)
        if thread is not None:
            thread.start()

    def _check(self, batch: _Batch) -> None:
        """A batch runs long: move its calls not yet started to another thread."""
        spill: list[_Job] = []
        if self._closed:
            return
        with self._lock:
            started = batch.started
            running = bool(batch.jobs)  # else its last call posts the rest
            if batch.jobs and started is not None and time.monotonic() - started >= SPILL_AFTER:
                spill = list(batch.jobs)
                batch.jobs.clear()
        self._settle()
        if spill:
            self._start(_Batch(spill, batch.loop))
        if running:
            batch.timer = batch.loop.call_later(SPILL_AFTER, self._check, batch)

    def _settle(self) -> None:
        """Hand every finished result to its awaiting task."""
        with self._lock:
            done, self._done = self._done, []
        for future, result, exc in done:
            if future.done():
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def _finished(self, batch: _Batch) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
        self._settle()

    # -- on a pool thread

    def _work(self) -> None:
        while True:
            batch = self._batches.get()
            if batch is None:
                return
            self._run(batch)
            with self._lock:
                if self._waiting:
                    self._waiting -= 1
                else:
                    self._idle += 1

    def _run(self, batch: _Batch) -> None:
        lock, jobs = self._lock, batch.jobs
        while True:
            with lock:
                if not jobs:
                    batch.started = None
                    break
                fn, arg, future = jobs.popleft()
                batch.started = time.monotonic()
            try:
                outcome: tuple[object, BaseException | None] = (fn(arg), None)
            except BaseException as exc:  # handed to the awaiting task
                outcome = (None, exc)
            with lock:
                self._done.append((future, *outcome))
        with contextlib.suppress(RuntimeError):  # loop already closed
            batch.loop.call_soon_threadsafe(self._finished, batch)


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
