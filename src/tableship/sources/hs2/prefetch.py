"""The HS2 fast path's prefetch: the next fetch runs while the previous rows are rendered."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class Prefetcher:
    """Runs ``fetch`` on a daemon thread, one call ahead of the consumer.

    The thread starts the first fetch at once; ``get()`` waits for its result (raising
    the fetch's exception); ``next()`` lets the thread make the following call while the
    consumer works on this result. So at most two results exist at a time, and only this
    thread touches the connection until ``stop()`` has joined it.
    """

    def __init__(self, fetch: Callable[[], Any], timeout: float):
        self._fetch = fetch
        self._timeout = timeout
        self._results: queue.Queue = queue.Queue(maxsize=1)
        self._go = threading.Semaphore(1)
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="tableship-hs2-fetch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            if self._stopped:
                return
            item: tuple[Any, BaseException | None]
            try:
                item = (self._fetch(), None)
            except BaseException as exc:  # handed to the consumer
                item = (None, exc)
            self._results.put(item)
            if item[1] is not None:
                return

    def get(self):
        resp, exc = self._results.get()
        if exc is not None:
            raise exc
        return resp

    def next(self) -> None:
        self._go.release()

    def stop(self, wait: bool = True) -> None:
        """Stop the thread; ``wait=False`` (the connection is being abandoned) returns at
        once, leaving a fetch in flight to end with the daemon thread."""
        self._stopped = True
        self._go.release()
        if wait:
            self._thread.join(timeout=self._timeout + 5)
