"""``interrupts``: a signal is an ``Interrupted`` no ``except Exception`` can swallow; in an
event loop it cancels the coroutine (whose cleanup runs) instead of being raised inside
asyncio, and a second signal stops the loop without waiting for that cleanup."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from tableship.core import interrupts
from tableship.core.errors import Interrupted, TableshipError


@pytest.fixture
def handlers():
    saved = {sig: signal.getsignal(sig) for sig in interrupts.SIGNALS}
    interrupts.install()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_interrupted_is_not_an_exception():
    exc = Interrupted(signal.SIGTERM)
    assert not isinstance(exc, Exception) and not isinstance(exc, TableshipError)
    assert exc.exit_code == 143 and exc.signum == signal.SIGTERM
    assert exc.line() == "interrupted by SIGTERM — re-run the same command to resume where it stopped"


def test_a_signal_is_never_swallowed_by_except_exception(handlers):
    with pytest.raises(Interrupted) as info:
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            signal.sigtimedwait([], 0)  # let the handler run here, at the latest
        except Exception:  # what every ordinary handler in the project does
            pytest.fail("a signal was caught as an Exception")
    assert info.value.exit_code == 128 + signal.SIGHUP


def test_in_a_loop_the_signal_cancels_the_coroutine_and_its_cleanup_runs(handlers, caplog):
    loop = asyncio.new_event_loop()
    cleaned = []

    async def work():
        helper = asyncio.ensure_future(asyncio.sleep(3600))
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await helper
        finally:
            helper.cancel()
            await asyncio.sleep(0)  # the cleanup may still await: the loop is running
            cleaned.append(True)

    try:
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            with pytest.raises(Interrupted) as info:
                interrupts.run_until_complete(loop, work())
    finally:
        loop.close()
    assert info.value.signum == signal.SIGTERM
    assert cleaned == [True]
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


def test_a_second_signal_stops_the_loop_without_waiting_for_the_cleanup(handlers):
    loop = asyncio.new_event_loop()
    stages = []

    async def work():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(3600)
        finally:
            stages.append("cleanup started")
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(3600)  # a cleanup that would hang
            stages.append("cleanup finished")

    try:
        with pytest.raises(Interrupted) as info:
            interrupts.run_until_complete(loop, work())
        assert info.value.signum == signal.SIGTERM  # the first signal decides the exit code
        assert stages == ["cleanup started"]
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_without_a_signal_results_and_errors_pass_through():
    loop = asyncio.new_event_loop()
    try:
        assert interrupts.run_until_complete(loop, asyncio.sleep(0, result=42)) == 42
        with pytest.raises(ValueError):
            interrupts.run_until_complete(loop, _raise(ValueError("x")))
    finally:
        loop.close()


async def _raise(exc: BaseException):
    raise exc
