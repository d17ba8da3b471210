"""core/slots.py: a cap is never exceeded by threads, and a wait for a slot ends on a signal."""

from __future__ import annotations

import signal
import threading

import pytest

from tableship.core import interrupts, slots
from tableship.core.errors import Interrupted


@pytest.fixture(autouse=True)
def _fresh():
    slots.reset()
    interrupts.reset()
    yield
    slots.reset()
    interrupts.reset()


def test_no_limit_is_no_cap():
    assert slots.cap("source", "wh", None) is None


def test_one_cap_per_name_and_the_first_limit_kept():
    a = slots.cap("destination", "edge", 2)
    assert slots.cap("destination", "edge", 5) is a and a.limit == 2
    assert slots.cap("source", "edge", 2) is not a


def test_threads_never_hold_more_than_the_limit():
    cap = slots.cap("destination", "edge", 3)
    assert cap is not None
    inside = 0
    most = 0
    lock = threading.Lock()
    start = threading.Barrier(12)

    def worker() -> None:
        nonlocal inside, most
        start.wait()
        for _ in range(50):
            with cap.slot():
                with lock:
                    inside += 1
                    most = max(most, inside)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most <= 3 and cap.peak <= 3 and cap.held == 0


def test_try_acquire_never_waits():
    cap = slots.cap("destination", "edge", 1)
    assert cap is not None
    assert cap.try_acquire()
    assert not cap.try_acquire()
    cap.release()
    assert cap.try_acquire()


def test_a_signal_ends_the_wait_for_a_full_cap():
    cap = slots.cap("source", "wh", 1)
    assert cap is not None
    cap.acquire()
    interrupts._pending = signal.SIGTERM  # what on_signal records (the main thread raised it)
    with pytest.raises(Interrupted) as info:
        cap.acquire()
    assert info.value.signum == signal.SIGTERM
    assert cap.held == 1
