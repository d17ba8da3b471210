"""The asyncio bridge: the destination's public methods are synchronous (the Destination
contract); each runs a coroutine on the destination's own private event loop.

A termination signal cancels the running coroutine — so its cleanup (e.g. removing the remote
temporary of a put) runs while the connection is up — and then raises ``Interrupted``
(``interrupts.run_until_complete``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import asyncssh

from tableship.core import interrupts

T = TypeVar("T")


class LoopBridge:
    """One private event loop, created on first use and closed by ``close``."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, coro: Awaitable[T]) -> T:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return interrupts.run_until_complete(self._loop, coro)

    def close(self, conn: asyncssh.SSHClientConnection | None) -> None:
        """Close ``conn`` (gracefully when the loop can still run, else abort it), cancel what
        is left on the loop and close it. Never raises but for a signal."""
        loop, self._loop = self._loop, None
        usable = loop is not None and not loop.is_closed() and not loop.is_running()
        try:
            if conn is not None:
                try:
                    conn.close()
                    if usable:
                        assert loop is not None
                        interrupts.run_until_complete(loop, asyncio.wait_for(conn.wait_closed(), timeout=5))
                except Exception:  # closing never hides the caller's outcome
                    conn.abort()
                except BaseException:  # a signal while closing: still abort, then stop
                    conn.abort()
                    raise
        finally:
            if usable:
                assert loop is not None
                try:
                    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                    for t in pending:
                        t.cancel()
                    if pending:
                        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                except Exception:
                    pass
                finally:
                    loop.close()


def raise_first(done: Iterable[asyncio.Future[Any]]) -> None:
    """Raise the first failure among finished requests, retrieving every exception
    (so asyncio never reports "exception was never retrieved")."""
    errors = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]


async def settle(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel unfinished requests and wait for them; swallow their outcomes."""
    futures = list(futures)
    for t in futures:
        if not t.done():
            t.cancel()
    if futures:
        await asyncio.gather(*futures, return_exceptions=True)
