"""Bulk bytes through OpenSSH's ``sftp`` client (C, AES-GCM): ``put -f`` over a second connection
that uses the same ``known_hosts`` strictly and the same key. The control connection (asyncssh)
has already checked the host key, the login and the folder; it also tells, after a failure,
whether the server went away or the client never opened the file (then asyncssh does the upload
and this client is not tried again for the destination: password logins, agent-only keys, odd
ssh options, an old client...).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from tableship.core import interrupts
from tableship.core.errors import DestinationError
from tableship.core.redact import redact
from tableship.destinations.sftp.session import CIPHERS
from tableship.destinations.sftp.transfer import MAX_REQUESTS, block_size, server_limits_known

if TYPE_CHECKING:
    from tableship.destinations.sftp.destination import SFTPDestination

log = logging.getLogger("tableship.sftp")

#: Files at least this big go through OpenSSH's ``sftp`` client when it is installed and
#: can log in with a key/agent: C with AES-NI uses half the CPU of any Python SSH stack,
#: which matters most on a busy host. Smaller files (sidecars) stay on asyncssh.
OPENSSH_MIN_BYTES = 8 * 2**20
#: ssh(1) and sftp(1) exit with 255 when the connection fails or drops (a failed batch command: 1).
SSH_CONNECTION_FAILED = 255


def argv(dest: SFTPDestination, sftp: asyncssh.SFTPClient) -> list[str] | None:
    """The ``sftp`` command line for ``dest``, or None when it cannot be used."""
    exe = shutil.which("sftp")
    cfg, where = dest.cfg, dest.where
    if exe is None or dest.openssh_broken:
        return None
    if (cfg.key_file is None and cfg.password is not None) or cfg.key_passphrase is not None:
        return None  # password logins and encrypted keys stay on asyncssh (no askpass plumbing)
    alive = str(int(max(5.0, cfg.connect_timeout)))
    args = [exe, "-q", "-b", "-", "-P", str(where.port), "-F", "/dev/null",
            "-R", str(MAX_REQUESTS),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={where.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no",
            "-o", f"ConnectTimeout={int(max(1, cfg.connect_timeout))}",
            "-o", f"ServerAliveInterval={alive}", "-o", "ServerAliveCountMax=3",
            "-o", f"Ciphers={','.join(CIPHERS)}", "-o", "Compression=no", "-o", "LogLevel=ERROR",
            "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
            "-o", f"User={where.user}"]  # fmt: skip
    if server_limits_known(sftp):  # the server told its limits: use full-size writes
        args += ["-B", str(block_size(sftp, "write"))]
    if cfg.key_file is not None:
        args += ["-i", str(Path(cfg.key_file).expanduser()), "-o", "IdentitiesOnly=yes"]
    args.append(f"[{where.host}]" if ":" in where.host else where.host)
    return args


async def put(
    dest: SFTPDestination, sftp: asyncssh.SFTPClient, local: Path, tmp: str, folder: str, size: int
) -> bool:
    """Upload ``local`` to ``tmp`` with ``sftp put -f`` (fsync). False: OpenSSH is unusable here,
    use asyncssh."""
    args = argv(dest, sftp)
    if args is None:
        return False
    if dest.cap is not None and not dest.cap.try_acquire():
        # its own connection would go over max_connections: this upload goes over ours
        log.debug("destination %s: no free connection for OpenSSH's sftp; using asyncssh", dest.name)
        return False
    try:
        return await _put(dest, sftp, args, local, tmp, folder, size)
    finally:
        if dest.cap is not None:
            dest.cap.release()


async def _put(
    dest: SFTPDestination,
    sftp: asyncssh.SFTPClient,
    args: list[str],
    local: Path,
    tmp: str,
    folder: str,
    size: int,
) -> bool:
    with tempfile.TemporaryDirectory(prefix="tableship-sftp-") as private:
        link = Path(private) / "upload"  # a plain name: sftp globs its local argument
        link.symlink_to(Path(local).resolve())
        quoted = '"' + tmp.replace("\\", "\\\\").replace('"', '\\"') + '"'
        # preexec: the kernel kills the client if tableship dies, even by kill -9
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=private,
            preexec_fn=interrupts.child_preexec(),
        )
        try:
            _, err = await proc.communicate(f"put -f {link} {quoted}\n".encode())
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if proc.returncode == 0:
        return True
    text = redact(" ".join(err.decode(errors="replace").split()))[-300:]  # redacted before cutting
    low = text.lower()
    where, timeout = dest.where, dest.cfg.connect_timeout
    # Is the control connection still alive? If not, the server or the network went away.
    try:
        await asyncio.wait_for(sftp.stat(folder), timeout=timeout)
        started = await asyncio.wait_for(sftp.exists(tmp), timeout=timeout)
    except BaseException as exc:
        raise where.translate(exc, f"uploading to {tmp}") or exc from None
    if not started:
        # The control connection works but OpenSSH's client never opened the file: logged in
        # (a batch command failed, not the connection: not exit 255, not ssh's "Permission
        # denied (publickey)") and the server refused to create it…
        if (
            proc.returncode != SSH_CONNECTION_FAILED
            and "permission denied" in low
            and "permission denied (" not in low
        ):
            raise where.denied("writing", tmp)
        # … or it could not log in or start where asyncssh could: stop using it here.
        dest.openssh_broken = True
        log.warning(
            "destination %s: the OpenSSH sftp client failed before uploading (exit %s: %s); "
            "using asyncssh for uploads",
            where.name,
            proc.returncode,
            text or "no message",
        )
        return False
    await dest.remove_quietly(tmp)  # then measure the free space without it
    if "permission denied" in low:  # the server's status message for a write
        raise where.denied("writing", tmp)
    full = await dest.disk_full(sftp, folder, size)
    if full is not None:
        raise full
    if (
        proc.returncode == SSH_CONNECTION_FAILED
        or not text
        or any(w in low for w in ("connection", "broken pipe", "timeout", "timed out", "not responding"))
    ):
        raise where.transient(f"uploading to {tmp}", text or f"sftp exit {proc.returncode}")
    raise DestinationError(
        f"destination {where.name!r}: uploading to {tmp} failed: {text}",
        f"check the remote filesystem under {where.root} (free space, quota, permissions)",
    )
