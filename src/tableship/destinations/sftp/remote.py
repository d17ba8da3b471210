"""Commands run on the backup host over the session (``sha256sum``, ``df``): the channel is
closed however a command ends (a signal cancels the wait: no process or task is left behind)."""

from __future__ import annotations

import hashlib
import re
import shlex

import asyncssh

from tableship.core import holds

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEX64 = re.compile(r"^\\?([0-9a-fA-F]{64})\s")


async def run(
    conn: asyncssh.SSHClientConnection, command: str, timeout: float | None, hold: str | None = None
) -> tuple[int | None, str, str]:
    """(exit status, stdout, stderr) of ``command``."""
    proc = await conn.create_process(command, stdin=asyncssh.DEVNULL, encoding="utf-8", errors="replace")
    try:
        if hold:
            await holds.hold_async(hold)
        res = await proc.wait(check=False, timeout=timeout)
    finally:
        proc.close()
    return res.exit_status, str(res.stdout or ""), str(res.stderr or "")


async def can_run_sha256sum(conn: asyncssh.SSHClientConnection, timeout: float) -> bool:
    """May this account run ``sha256sum``? (False for ForceCommand internal-sftp, rbash, no coreutils.)"""
    try:
        code, out, _ = await run(conn, "sha256sum /dev/null", timeout=timeout)
    except (TimeoutError, asyncssh.ChannelOpenError, asyncssh.ProcessError, asyncssh.TimeoutError):
        return False
    return code == 0 and out.strip().startswith(EMPTY_SHA256)


async def sha256sum(conn: asyncssh.SSHClientConnection, path: str) -> tuple[str | None, int | None, str]:
    """(hex digest or None, exit status, stderr) of ``sha256sum path`` on the server."""
    code, out, err = await run(conn, f"sha256sum -- {shlex.quote(path)}", timeout=None, hold="sha256")
    m = _HEX64.match(out)
    return (m.group(1).lower() if code == 0 and m else None), code, err


async def df(conn: asyncssh.SSHClientConnection, path: str) -> tuple[int, int] | None:
    """(free, total) bytes of the filesystem holding ``path`` from ``df -Pk``; None if unknown."""
    code, text, _ = await run(conn, f"df -Pk -- {shlex.quote(path)}", timeout=30)
    fields = text.splitlines()[-1].split() if code == 0 and text.strip() else []
    if len(fields) < 4 or not fields[3].isdigit() or not fields[1].isdigit():
        return None
    return int(fields[3]) * 1024, int(fields[1]) * 1024
