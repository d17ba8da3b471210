"""The pipelined SFTP transfers on asyncssh: up to ``MAX_REQUESTS`` full-size writes or reads
in flight, in order, every request settled however the transfer ends."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO

import asyncssh

from tableship.core import holds
from tableship.destinations.sftp.bridge import raise_first, settle

#: Requests kept in flight for uploads and read-back (x ~255 KiB each).
MAX_REQUESTS = 32
#: Largest SFTP read/write we send (OpenSSH accepts 255 KiB; capped by the server's limits).
MAX_BLOCK = 255 * 1024
MIN_BLOCK = 32 * 1024


class SizeChanged(Exception):
    """The local file's size changed while it was uploaded: (bytes read, bytes expected)."""


def block_size(sftp: asyncssh.SFTPClient, kind: str) -> int:
    """The request size for ``kind`` ("read" / "write"): the server's limit, within our bounds."""
    limits = getattr(sftp, "limits", None)  # asyncssh ≥ 2.14 with the limits@openssh.com extension
    n = getattr(limits, f"max_{kind}_len", 0) if limits is not None else 0
    return max(MIN_BLOCK, min(n or MAX_BLOCK, MAX_BLOCK))


def server_limits_known(sftp: asyncssh.SFTPClient) -> bool:
    return bool(getattr(getattr(sftp, "limits", None), "max_write_len", 0))


async def write_remote(sftp: asyncssh.SFTPClient, src: BinaryIO, tmp: str, size: int) -> None:
    """Write ``src`` (``size`` bytes) to the new file ``tmp``, then fsync it."""
    block = block_size(sftp, "write")
    # "x": exclusive create, so a link planted at the (random) temporary name is never followed
    async with await sftp.open(tmp, "xb", block_size=0) as f:
        inflight: set[asyncio.Future[Any]] = set()
        offset = 0
        try:
            while True:
                data = src.read(block)
                if not data:
                    break
                if len(inflight) >= MAX_REQUESTS:
                    done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    raise_first(done)
                inflight.add(asyncio.ensure_future(f.write(data, offset)))
                if not offset:
                    await holds.hold_async("upload")
                offset += len(data)
            if inflight:
                done, inflight = await asyncio.wait(inflight)
                raise_first(done)
        finally:
            await settle(inflight)
        if offset != size:
            raise SizeChanged(offset, size)
        try:  # durable before the rename (fsync@openssh.com)
            await f.fsync()
        except asyncssh.SFTPOpUnsupported:
            pass


async def read_remote(sftp: asyncssh.SFTPClient, path: str, sink: Callable[[bytes], Any]) -> int:
    """Stream ``path`` in order to ``sink``; returns the bytes read."""
    block = block_size(sftp, "read")
    total = 0
    async with await sftp.open(path, "rb", block_size=0) as f:
        size = (await f.stat()).size or 0

        async def read_at(off: int, n: int) -> bytes:
            try:
                return await f.read(n, off)
            except asyncssh.SFTPEOFError:
                return b""

        pending: deque[tuple[int, int, asyncio.Future[bytes]]] = deque()
        next_off = 0
        try:
            while True:
                while next_off < size and len(pending) < MAX_REQUESTS:
                    n = min(block, size - next_off)
                    pending.append((next_off, n, asyncio.ensure_future(read_at(next_off, n))))
                    next_off += n
                if not pending:
                    break
                off, n, fut = pending.popleft()
                data = await fut
                while len(data) < n:  # a short read: fetch the rest in place
                    more = await read_at(off + len(data), n - len(data))
                    if not more:
                        break
                    data += more
                sink(data)
                if not total:
                    await holds.hold_async("read-back")
                total += len(data)
                if len(data) < n:  # the file shrank while reading
                    break
            # the file may have grown since stat: read to the real end
            while True:
                more = await read_at(total, block)
                if not more:
                    break
                sink(more)
                total += len(more)
        finally:
            await settle([fut for _, _, fut in pending])
    return total
