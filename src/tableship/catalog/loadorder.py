"""Loads that overlap, commits in range order.

A range restore hands its verified archives to :func:`load_in_order`. Up to
``loader.parallel_loads`` of them load at once, each in a worker thread on its own
connection; each waits, right before its commit (``LoadSpec.before_commit``), until the
archive before it was committed *and* recorded ``loaded`` in the ledger. So, whatever
the timing:

- the target only ever shows a prefix of the range, as a sequential restore would, and
  the ledger is at most one archive behind it (the one between its commit and its
  ``loaded`` record, which a resume loads again: its load replaces its spans);
- the ledger is written from the calling thread only;
- when one load fails, or a signal reaches the calling thread, the loads after it are
  cancelled at their commit point and rolled back; the error is the first one, in range
  order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from tableship.catalog.loaders.base import Loader, LoadSpec
from tableship.core import holds

T = TypeVar("T")


class Cancelled(Exception):
    """An archive before this one failed (or the restore was interrupted): roll back."""


class CommitOrder:
    """The turn of each archive to commit: 0, 1, 2, … (or nobody's, once cancelled)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._cancelled = False

    def wait_turn(self, i: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._next == i or self._cancelled)
            if self._cancelled:
                raise Cancelled(i)

    def done(self, i: int) -> None:
        with self._cond:
            self._next = i + 1
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()


def load_in_order(
    loader: Loader,
    items: Sequence[T],
    spec_of: Callable[[T], LoadSpec],
    started: Callable[[T], None],
    committed: Callable[[T, int], None],
) -> None:
    """Load every item's spec, committing in ``items`` order.

    ``started(item)`` runs (in this thread) before an item's load is handed to a worker —
    the ledger's ``loading``; ``committed(item, rows)`` after the target committed it — the
    ledger's ``loaded`` — and before the next item may commit."""
    if not items:
        return
    order = CommitOrder()
    width = max(1, min(loader.parallel_loads, len(items)))
    futures: list[Future[int]] = []
    with ThreadPoolExecutor(width, thread_name_prefix="load") as pool:

        def submit(i: int) -> None:
            holds.hold("restore-load")
            started(items[i])
            spec = spec_of(items[i])
            spec.before_commit = lambda: order.wait_turn(i)
            futures.append(pool.submit(loader.load, spec))

        try:
            for i in range(width):
                submit(i)
            for i, item in enumerate(items):
                rows = futures[i].result()
                holds.hold("restore-loaded")
                committed(item, rows)
                if i + 1 < len(items):
                    holds.hold("restore-next")  # the next archive may not commit yet
                order.done(i)
                if i + width < len(items):
                    submit(i + width)
        except BaseException:
            order.cancel()  # the loads after the failed one roll back at their commit point
            raise
