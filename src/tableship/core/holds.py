"""Test-only hold points, so that a test can signal tableship in a known phase without
racing it (tests/integration/test_signals.py).

With ``TABLESHIP_TEST_HOLD=<point>`` and ``TABLESHIP_TEST_HOLD_DIR=<folder>`` set, the
process creates ``<folder>/<point>`` when it reaches ``<point>`` and waits there until
that file is removed. Points: ``export`` (after the source handed over its first batch),
``upload`` (the destination's temporary exists), ``sha256`` (a remote ``sha256sum`` is
running, or the local file is open), ``read-back`` (an SFTP read-back or download is
under way), ``get`` (a local download), ``prune`` (before deleting an archive), ``list``
(while listing a destination folder), ``restore-load`` (a range restore, before each
archive's load), ``restore-loaded`` (the target committed an archive, the ledger does not
know yet), ``restore-next`` (between two archives' loads), ``chunk-<seq>`` (a chunk is
recorded), ``chunk-<seq>-<destination>`` (layout ``chunk``: its copy on that destination
is verified and recorded). Without the variables a hold is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_POLL = 0.01


def _marker(point: str) -> Path | None:
    if os.environ.get("TABLESHIP_TEST_HOLD") != point:
        return None
    folder = os.environ.get("TABLESHIP_TEST_HOLD_DIR")
    if not folder:
        return None
    marker = Path(folder) / point
    marker.write_text(str(os.getpid()))
    return marker


def hold(point: str) -> None:
    """Wait at ``point`` while the test holds it (a signal interrupts the wait)."""
    marker = _marker(point)
    while marker is not None and marker.exists():
        time.sleep(_POLL)


async def hold_async(point: str) -> None:
    """``hold`` inside an event loop (the loop keeps running; a signal cancels the wait)."""
    marker = _marker(point)
    while marker is not None and marker.exists():
        await asyncio.sleep(_POLL)


def after_first(items: Iterable[T], point: str) -> Iterator[T]:
    """Yield ``items``, holding at ``point`` once the first one has been handed over."""
    held = False
    for item in items:
        yield item
        if not held:
            held = True
            hold(point)
