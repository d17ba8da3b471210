"""``check-destination`` for SFTP: each step's outcome as ``(check, ok, detail)``.

A failure to connect is placed by its class (``errors.py``), never by its text: a
``HostKeyError`` means the server answered, an ``AuthError`` that its key was trusted, a
``RootError`` that the login worked; anything else (refused, unreachable, timed out — typed
asyncssh / OSError exceptions translated by ``Where.translate``) fails "connect".
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncssh

from tableship.core.errors import TableshipError
from tableship.core.units import human_size
from tableship.destinations.base import temp_name
from tableship.destinations.sftp import remote
from tableship.destinations.sftp.errors import AuthError, HostKeyError, RootError, fingerprint

if TYPE_CHECKING:
    from tableship.destinations.sftp.destination import SFTPDestination

Result = list[tuple[str, bool, str]]
PROBE = b"tableship check-destination\n"
MIN_FREE = 64 * 2**20


def connect_failure(dest: SFTPDestination, exc: TableshipError) -> Result:
    """The checks up to the one that ``exc`` (raised while connecting) failed."""
    w = dest.where
    answers = ("connect", True, f"{w.host}:{w.port} answers")
    if isinstance(exc, HostKeyError):
        return [answers, ("host key", False, exc.line())]
    if isinstance(exc, AuthError):
        return [answers, ("host key", True, str(w.known_hosts)), ("authentication", False, exc.line())]
    if isinstance(exc, RootError):
        return [
            ("connect", True, f"{w.login} ({dest.cipher})"),
            ("host key", True, str(w.known_hosts)),
            ("authentication", True, w.user),
            ("root folder", False, exc.line()),
        ]
    return [("connect", False, exc.line())]


def check(dest: SFTPDestination) -> Result:
    """Connect, check the host key, the root folder, write permission, free space, verification."""
    w = dest.where
    try:
        dest._call("connecting", lambda: asyncio.sleep(0))
    except TableshipError as exc:
        return connect_failure(dest, exc)
    key = dest.conn.get_server_host_key()
    out: Result = [
        ("connect", True, f"{w.login} ({dest.cipher})"),
        ("host key", True, f"{fingerprint(key) if key else '?'} matches {w.known_hosts}"),
        ("authentication", True, f"as {w.user}"),
        ("root folder", True, w.root),
    ]

    probe = temp_name("check-destination", "check")
    try:
        dest.put_bytes(PROBE, probe, "check")
        ok = dest.size(probe) == len(PROBE)
        dest.delete(probe)
        out.append(("write permission", ok, f"created, renamed and removed a test file in {w.root}"))
    except TableshipError as exc:
        out.append(("write permission", False, exc.line()))

    async def free_space() -> tuple[bool, str]:
        try:
            vfs = await dest.sftp.statvfs(w.root)
            unit = vfs.frsize or vfs.bsize
            free, total = vfs.bavail * unit, vfs.blocks * unit
        except (asyncssh.SFTPOpUnsupported, asyncssh.SFTPFailure):
            if not await dest.probe_exec():
                return True, "unknown (no statvfs@openssh.com and no remote commands)"
            sizes = await remote.df(dest.conn, w.root)
            if sizes is None:
                return True, "unknown (df not available)"
            free, total = sizes
        return free >= MIN_FREE, f"{human_size(free)} free of {human_size(total)}"

    try:
        ok, detail = dest._call("checking free space", free_space)
        out.append(("free space", ok, detail))
    except TableshipError as exc:
        out.append(("free space", False, exc.line()))

    try:
        can = dest._call("probing remote commands", dest.probe_exec)
        verify = dest.cfg.verify
        if verify == "read-back":
            out.append(("verification", True, 'read-back over SFTP (verify = "read-back")'))
        elif can:
            out.append(("verification", True, "sha256sum on the backup host"))
        elif verify == "sha256sum":
            out.append(("verification", False, f'{w.user} may not run sha256sum; set verify = "auto"'))
        else:
            out.append(
                ("verification", True, "read-back over SFTP (this account may not run remote commands)")
            )
    except TableshipError as exc:
        out.append(("verification", False, exc.line()))
    return out
