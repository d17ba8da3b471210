"""Connection caps shared by every job of one process (``max_connections``).

A cap is a counting semaphore per ``(kind, name)`` — e.g. ``("destination", "edge1")`` —
created on first use with the limit the config gives. Every thread of the process that
opens a connection on that source or destination takes a slot first and gives it back
when the connection ends, so the parallel jobs of one ``tableship run --jobs N`` never
hold more than ``max_connections`` at once between them. Separate processes do not share
caps (docs/configuration.md).

Waiting for a slot never blocks a signal: the waits are short polls that check
``interrupts.checkpoint()`` (and, in an event loop, ``asyncio.sleep`` that a
cancellation ends).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tableship.core import interrupts

log = logging.getLogger("tableship")

_POLL = 0.05  # seconds between two looks at a full cap (and at a pending signal)


@dataclass
class Cap:
    """One cap: at most ``limit`` slots held at once; ``peak`` is the most ever held."""

    kind: str
    name: str
    limit: int
    held: int = 0
    peak: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def try_acquire(self) -> bool:
        """Take a slot if one is free (never waits)."""
        with self._cond:
            if self.held >= self.limit:
                return False
            self.held += 1
            self.peak = max(self.peak, self.held)
            return True

    def acquire(self) -> None:
        """Take a slot, waiting for one (a signal ends the wait with ``Interrupted``)."""
        if self.try_acquire():
            return
        log.info(
            "waiting for a free connection to %s %s (max_connections = %d)", self.kind, self.name, self.limit
        )
        while True:
            interrupts.checkpoint()
            with self._cond:
                if self.held < self.limit:
                    self.held += 1
                    self.peak = max(self.peak, self.held)
                    return
                self._cond.wait(_POLL)

    async def acquire_async(self) -> None:
        """``acquire`` inside an event loop: the loop keeps running, a cancellation ends the wait."""
        if self.try_acquire():
            return
        log.info(
            "waiting for a free connection to %s %s (max_connections = %d)", self.kind, self.name, self.limit
        )
        while not self.try_acquire():
            interrupts.checkpoint()
            await asyncio.sleep(_POLL)

    def release(self) -> None:
        with self._cond:
            if self.held > 0:
                self.held -= 1
            self._cond.notify()

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


_caps: dict[tuple[str, str], Cap] = {}
_lock = threading.Lock()


def cap(kind: str, name: str, limit: int | None) -> Cap | None:
    """The process-wide cap of ``kind`` ``name`` (None when ``limit`` is None: no cap).
    The first caller's limit is kept; one config gives every caller the same one."""
    if limit is None:
        return None
    with _lock:
        found = _caps.get((kind, name))
        if found is None:
            found = _caps[(kind, name)] = Cap(kind, name, int(limit))
        return found


def reset() -> None:
    """Forget every cap (tests that run several commands in one process)."""
    with _lock:
        _caps.clear()
