"""Run up to N jobs at once on worker threads (``tableship run --jobs N``).

Threads, not processes: a job's time goes to the source's native scan, Arrow's CSV
rendering, native compression and SSH I/O, which all release the GIL; threads share one
interpreter (one import of pyarrow, DuckDB and asyncssh: a fraction of the memory of N
processes) and one log handler, and the connection caps (core/slots.py) are plain
semaphores. docs/performance.md has the measurements.

Signals reach only the main thread, which waits here. On ``Interrupted`` it stops
dispatching (queued jobs never start), passes the signal on to every running job
(``interrupts.interrupt_thread``: each records its run as interrupted, resumable), waits
for them to end, and raises it again. A job's error never stops the others; only an
error ``stop_on`` names (a ledger that cannot be written) stops the dispatching.
"""

from __future__ import annotations

import signal
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tableship.core import interrupts
from tableship.core.errors import Interrupted

T = TypeVar("T")

_TICK = 0.2  # seconds between two looks at the workers (status updates, signals)


@dataclass
class PoolResult(Generic[T]):
    """What each job gave (``results``), raised (``errors``), and the jobs never started."""

    results: dict[str, T] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    not_started: list[str] = field(default_factory=list)


class _Pool(Generic[T]):
    def __init__(self, names: list[str], work: Callable[[str], T], stop_on: Callable[[BaseException], bool]):
        self.queue: deque[str] = deque(names)
        self.work = work
        self.stop_on = stop_on
        self.cond = threading.Condition()
        self.running: dict[str, int] = {}  # job → thread id
        self.interrupted: set[int] = set()  # threads the signal was passed on to (once each)
        self.stopping = False
        self.signalled: Interrupted | None = None  # a job ended by a signal: the pool ends too
        self.result: PoolResult[T] = PoolResult()

    # -- worker threads
    def worker(self) -> None:
        ident = threading.get_ident()
        while True:
            with self.cond:
                if self.stopping or not self.queue:
                    return
                name = self.queue.popleft()
                self.running[name] = ident
                self.cond.notify_all()
            value: T | None = None
            error: BaseException | None = None
            done = False
            try:
                try:
                    value = self.work(name)
                    done = True
                except BaseException as exc:
                    error = exc
            except BaseException as exc:  # the one interrupt passed on landed in the handler above
                error = error or exc
            try:
                self._finish(name, done, value, error)
            except BaseException:  # ... or in the bookkeeping: it is idempotent
                self._finish(name, done, value, error)

    def _finish(self, name: str, done: bool, value: T | None, error: BaseException | None) -> None:
        with self.cond:
            if done:
                self.result.results[name] = value  # type: ignore[assignment]
            elif error is not None:
                self.result.errors[name] = error
                if isinstance(error, Interrupted):
                    self.signalled = self.signalled or error
                    self.stopping = True
                elif self.stop_on(error):
                    self.stopping = True
            self.running.pop(name, None)
            self.cond.notify_all()

    # -- main thread
    def counts(self) -> tuple[int, int, int]:
        """(done, running, queued)"""
        r = self.result
        return len(r.results) + len(r.errors), len(self.running), len(self.queue)

    def interrupt(self, signum: int) -> None:
        with self.cond:
            self.stopping = True
            for ident in self.running.values():
                if ident not in self.interrupted:
                    self.interrupted.add(ident)
                    interrupts.interrupt_thread(ident, signum)

    def wait_idle(self, on_status: Callable[[int, int, int], None] | None, first: bool = True) -> None:
        last = None
        with self.cond:
            while self.running or (self.queue and not self.stopping):
                if first and self.signalled is not None:
                    # a job saw the signal first (or one a library swallowed): end like the main thread
                    raise Interrupted(self.signalled.signum)
                now = self.counts()
                if on_status is not None and now != last:
                    last = now
                    on_status(*now)
                self.cond.wait(_TICK)
        if on_status is not None:
            on_status(*self.counts())


def run_parallel(
    names: list[str],
    workers: int,
    work: Callable[[str], T],
    *,
    stop_on: Callable[[BaseException], bool] = lambda exc: False,
    on_status: Callable[[int, int, int], None] | None = None,
) -> PoolResult[T]:
    """``work(name)`` for every name, at most ``workers`` at once, in the given order of start.

    ``on_status(done, running, queued)`` is called (on this thread) when the counts change.
    A signal ends the pool as described in the module docstring; the ``PoolResult`` then
    rides on the re-raised ``Interrupted`` as ``exc.pool_result``.
    """
    pool: _Pool[T] = _Pool(names, work, stop_on)
    threads = [
        threading.Thread(target=pool.worker, name=f"tableship-job-{i + 1}", daemon=True)
        for i in range(max(1, min(workers, len(names))))
    ]
    try:
        for t in threads:
            t.start()
        pool.wait_idle(on_status)
    except Interrupted as exc:
        pool.interrupt(exc.signum)
        # a second signal raises out of this wait: the process ends without waiting
        pool.wait_idle(on_status, first=False)
        pool.result.not_started = list(pool.queue)
        exc.pool_result = pool.result  # type: ignore[attr-defined]
        raise
    except BaseException:  # KeyboardInterrupt (no handler installed) or a bug: stop the jobs too
        pool.interrupt(interrupts.pending() or signal.SIGINT)
        raise
    if pool.signalled is not None:  # the last job running ended by a signal
        stop = Interrupted(pool.signalled.signum)
        pool.result.not_started = list(pool.queue)
        stop.pool_result = pool.result  # type: ignore[attr-defined]
        raise stop
    pool.result.not_started = list(pool.queue)
    return pool.result
