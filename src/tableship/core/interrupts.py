"""Termination signals → ``Interrupted``, and the child processes that must die with us.

``install()`` (called once by the CLI) makes SIGTERM, SIGINT and SIGHUP raise
``Interrupted`` in the main thread, wherever it is. Two places must not get an
exception thrown into them at an arbitrary point:

- a running asyncio event loop: an exception raised inside a callback is logged by
  asyncio ("Exception in callback…", "Task exception was never retrieved") and lost.
  ``run_until_complete(loop, coro)`` therefore turns the first signal into a
  cancellation of the coroutine — its ``finally``/``except`` blocks run inside the loop
  (e.g. the SFTP destination removes its remote temporary) — and raises
  ``Interrupted`` once the loop has stopped. A second signal stops the loop at once.
- the worker threads of a parallel run (``backup/pool.py``): only the main thread gets
  signals, so it passes them on with ``interrupt_thread()`` — a thread inside
  ``run_until_complete`` has its coroutine cancelled the same way, any other gets
  ``Interrupted`` raised at its next Python instruction (``PyThreadState_SetAsyncExc``,
  what the interpreter does for a signal in the main thread).
- child processes (OpenSSH ``sftp``, which runs ``ssh``): ``child_preexec()`` makes the
  kernel send them SIGKILL when tableship dies, even by ``kill -9`` (Linux
  ``PR_SET_PDEATHSIG``); ``ssh`` then sees its ``sftp`` parent's pipes close and exits.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from tableship.core.errors import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

#: While set, a signal is handed to this callable instead of being raised; it returns
#: False to have it raised after all.
_hook: Callable[[int], bool] | None = None

#: The same for the worker threads inside ``run_until_complete`` (thread id → hook that
#: is safe to call from another thread); guarded by ``_threads_lock``.
_thread_hooks: dict[int, Callable[[int], None]] = {}
_threads_lock = threading.Lock()

#: The first termination signal received, kept after it was raised: a C extension that
#: checks for signals itself (DuckDB, a driver) or an exception raised while Python runs
#: a finalizer can consume the raised ``Interrupted``. ``checkpoint()`` and
#: ``as_interrupt()`` turn the remembered signal back into ``Interrupted`` at the next
#: safe point, so a swallowed signal can never end in a success.
_pending: int | None = None


def on_signal(signum: int, _frame: Any = None) -> None:
    global _pending
    if _pending is None:
        _pending = signum
    hook = _hook
    if hook is not None and hook(signum):
        return
    raise Interrupted(signum)


def pending() -> int | None:
    """The termination signal received so far, if any."""
    return _pending


def checkpoint() -> None:
    """Raise ``Interrupted`` if a termination signal was received (and swallowed)."""
    if _pending is not None:
        raise Interrupted(_pending)


def as_interrupt(exc: BaseException) -> BaseException:
    """``exc``, or ``Interrupted`` when a signal was received: a library that turned the
    signal into its own error ("query interrupted") must not make it a job failure."""
    if _pending is not None and not isinstance(exc, Interrupted):
        return Interrupted(_pending)
    return exc


class ThreadInterrupted(Interrupted):
    """``Interrupted`` raised in a worker thread by ``interrupt_thread`` (the interpreter
    instantiates it without arguments: the signal is the one received)."""

    def __init__(self, *args: object) -> None:
        signum = args[0] if args and isinstance(args[0], int) else (_pending or signal.SIGTERM)
        super().__init__(signum)


def interrupt_thread(ident: int, signum: int) -> None:
    """Pass a termination signal on to the worker thread ``ident`` (see the module docstring)."""
    global _pending
    if _pending is None:
        _pending = signum
    with _threads_lock:
        hook = _thread_hooks.get(ident)
        if hook is not None:
            hook(signum)
            return
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(ThreadInterrupted))


def reset() -> None:
    """Forget a received signal (tests that run several commands in one process)."""
    global _pending
    _pending = None


def install() -> None:
    """SIGTERM/SIGINT/SIGHUP raise ``Interrupted`` (main thread only)."""
    reset()
    for sig in SIGNALS:
        signal.signal(sig, on_signal)


def quiet() -> None:
    """After the ``Error:`` line has been printed: further signals only end the process
    (no second message, no traceback from interpreter shutdown)."""
    for sig in SIGNALS:
        try:
            signal.signal(sig, _exit_now)
        except (ValueError, OSError):  # not the main thread
            pass


def _exit_now(signum: int, _frame: Any = None) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed pipe: nothing more to say anyway
            pass
    os._exit(128 + signum)


def run_until_complete(loop: asyncio.AbstractEventLoop, aw: Awaitable[Any]) -> Any:
    """``loop.run_until_complete(aw)`` where a termination signal cancels ``aw`` (its
    cleanup runs inside the loop) and then raises ``Interrupted``."""
    global _hook
    if threading.current_thread() is not threading.main_thread():
        return _run_in_thread(loop, aw)
    task = asyncio.ensure_future(aw, loop=loop)
    received: list[int] = []
    on_signal = _cancel_then_stop(loop, task, received)

    def hook(signum: int) -> bool:
        # Never raise inside the loop: asyncio would log and drop an exception raised in
        # a callback.
        on_signal(signum)
        loop.call_soon_threadsafe(lambda: None)  # wake the loop up if it sleeps in select()
        return True

    def restore() -> None:
        global _hook
        _hook = previous

    previous, _hook = _hook, hook
    try:
        return _until_complete(loop, task, received, restore)
    finally:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: asyncio never reports it at garbage collection


def _cancel_then_stop(loop: asyncio.AbstractEventLoop, task: asyncio.Future, received: list[int]):
    """The loop's reaction to a signal: the first cancels the coroutine (its cleanup runs), a
    second one stops the loop without waiting for that cleanup."""

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1 and not task.done():
            task.cancel()
        else:
            loop.stop()

    return on_signal


def _until_complete(
    loop: asyncio.AbstractEventLoop, task: asyncio.Future, received: list[int], done: Any = None
) -> Any:
    """``run_until_complete(task)``; a signal received meanwhile becomes ``Interrupted``.
    ``done()`` runs as soon as the loop returns (before ``Interrupted`` is raised)."""
    try:
        result = loop.run_until_complete(task)
    except BaseException:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        if done is not None:
            done()
    if received:  # the coroutine swallowed the cancellation
        raise Interrupted(received[0])
    return result


def _run_in_thread(loop: asyncio.AbstractEventLoop, aw: Awaitable[Any]) -> Any:
    """``run_until_complete`` in a worker thread: ``interrupt_thread`` cancels ``aw``
    through the loop (thread-safe) instead of raising inside it."""
    ident = threading.get_ident()
    task = asyncio.ensure_future(aw, loop=loop)
    received: list[int] = []
    on_loop = _cancel_then_stop(loop, task, received)

    def hook(signum: int) -> None:  # called by the main thread
        loop.call_soon_threadsafe(on_loop, signum)

    try:
        with _threads_lock:
            _thread_hooks[ident] = hook
        # (a signal passed on just before the hook was in place arrived as an exception
        # raised here, before the loop runs; cleanup after a signal runs like any call)
        return _until_complete(loop, task, received)
    finally:
        with _threads_lock:
            _thread_hooks.pop(ident, None)
        if task.done() and not task.cancelled():
            task.exception()


# ---------------------------------------------------------------- child processes

_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # no usable libc: children only die by their process group
        _prctl = None


def child_preexec() -> Callable[[], None]:
    """A ``preexec_fn`` for child processes: the kernel sends them SIGKILL when tableship
    dies, however it dies (Linux ``PR_SET_PDEATHSIG``; elsewhere a no-op)."""
    parent = os.getpid()

    def preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # tableship died before prctl took effect
                os._exit(1)

    return preexec
