"""SFTP destination: atomic, verified delivery to a backup host over SSH.

Library choice (measured by ``bench/bench_sftp.py`` against OpenSSH's ``scp`` + remote
``sha256sum`` on 127.0.0.1, see docs/sftp.md): paramiko reaches 160-230 MB/s even with
pipelined 256 KiB writes and AES-GCM; asyncssh with AES-GCM and 32 pipelined full-size writes keeps pace
with ``scp`` on an idle host but needs about twice its CPU, so it falls behind on a busy
one. So: **asyncssh is the control connection** (host key, login, folders, rename,
verification, listing, cleanup, small files) and **large files are streamed by OpenSSH's
``sftp`` client** (``put -f``, AES-GCM, full-size requests) over a second connection that
uses the same ``known_hosts`` strictly and the same key — falling back to asyncssh when
the ``sftp`` binary is missing or cannot log in (e.g. password-only accounts). The
public methods are synchronous (the Destination contract); each one runs a coroutine
on the destination's own private event loop.

How each point of the contract is met (see ``base.py``):

- **Host key.** ``known_hosts`` (OpenSSH format, hashed entries and ``[host]:port``
  included) is matched by asyncssh. A key that is not trusted is reported as *unknown*
  (no entry for the host) or *changed* (the host has other keys): a terminal error with
  the ``ssh-keyscan`` / ``ssh-keygen -R`` hint. ``host_key_policy = "accept-new"``
  records the first key of an unknown host in ``known_hosts`` and still refuses a
  changed one.
- **Auth.** ``key_file`` alone when set (like ``IdentitiesOnly``), else the SSH agent,
  then the default ``~/.ssh`` keys; ``password`` optionally (never logged).
- **Put.** ``.<name>.tableship-<owner>-<hex>.part`` in the target folder (folders below
  the root created as needed; the root itself is never created), pipelined writes
  (OpenSSH ``sftp`` or asyncssh), ``fsync@openssh.com``, then ``posix-rename@openssh.com``
  over the final name (remove + rename only when the server lacks that extension). A failed put removes its temporary
  when the connection is still up; otherwise ``cleanup`` removes it on the next run.
- **Confinement.** Every folder between the root and a name is ``lstat``-ed on the server
  and a symlink among them ``realpath``-ed: one leading out of the root is a terminal
  error. A symlink at a final name is never taken as the file (``sha256``/``size`` say
  missing, ``list`` skips it); the upload's rename replaces the link itself.
- **Verify.** ``sha256sum`` run on the server when the account may run commands
  (probed once per connection), else the file is read back over SFTP with pipelined
  reads and hashed locally. ``last_verify_method`` says which.
- **Errors.** Connection refused/reset/timeout, lost connection, closed channel →
  TransientDestinationError (the next call reconnects). Authentication, host key,
  permission denied, missing root, remote disk full → DestinationError with a hint.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import posixpath
import re
import shlex
import shutil
import socket
import stat as stat_mod
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh

from tableship.core import holds, interrupts
from tableship.core.errors import (
    ConfigError,
    DestinationError,
    Interrupted,
    TableshipError,
    TransientDestinationError,
)
from tableship.core.redact import redact
from tableship.destinations.base import is_temp, safe_name, temp_name

log = logging.getLogger("tableship.sftp")

# asyncssh logs every connection and channel at INFO; keep tableship's log readable.
if logging.getLogger("asyncssh").level == logging.NOTSET:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)

#: Cipher preference: AES-GCM runs on AES-NI through OpenSSL and is the fastest here;
#: the others keep compatibility with servers that disable GCM.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
#: Requests kept in flight for uploads and read-back (x ~255 KiB each).
MAX_REQUESTS = 32
#: Largest SFTP read/write we send (OpenSSH accepts 255 KiB; capped by the server's limits).
MAX_BLOCK = 255 * 1024
MIN_BLOCK = 32 * 1024
#: SSH channel window and packet size we advertise (helps read-back throughput).
WINDOW = 16 * 2**20
MAX_PACKET = 256 * 1024
#: Files at least this big go through OpenSSH's ``sftp`` client when it is installed and
#: can log in with a key/agent: C with AES-NI uses half the CPU of any Python SSH stack,
#: which matters most on a busy host. Smaller files (sidecars) stay on asyncssh.
OPENSSH_MIN_BYTES = 8 * 2**20

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEX64 = re.compile(r"^\\?([0-9a-fA-F]{64})\s")


class _Client(asyncssh.SSHClient):
    """Called by asyncssh only for a host key that ``known_hosts`` does not trust."""

    def __init__(self, dest: SFTPDestination):
        self.dest = dest

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self.dest._untrusted_host_key(host, addr, port, key)


def _fingerprint(key: asyncssh.SSHKey) -> str:
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"


def _raise_first(done) -> None:
    """Raise the first failure among finished requests, retrieving every exception
    (so asyncio never reports "exception was never retrieved")."""
    errors = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
    if errors:
        raise errors[0]


async def _settle(futures) -> None:
    """Cancel unfinished requests and wait for them; swallow their outcomes."""
    futures = list(futures)
    for t in futures:
        if not t.done():
            t.cancel()
    if futures:
        await asyncio.gather(*futures, return_exceptions=True)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


class SFTPDestination:
    last_verify_method = "sha256sum"

    def __init__(self, name: str, cfg):
        self.name = name
        self.cfg = cfg
        self.root = posixpath.normpath(cfg.path) if cfg.path != "/" else "/"
        self.host = cfg.host
        self.port = cfg.port
        self.user = cfg.user
        self.known_hosts = Path(cfg.known_hosts).expanduser()
        self.host_spec = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        self.where = f"{self.user}@{self.host}:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._dirs: set[str] = set()  # folders seen to exist and to resolve inside the root
        self._root_real: str | None = None
        self._can_exec: bool | None = None
        self._openssh_broken = False
        self._host_key_problem: tuple | None = None  # (kind, offered key[, error])
        self.cipher: str | None = None

    # ------------------------------------------------------------------ plumbing
    def _run(self, coro: Awaitable[Any]) -> Any:
        """Run ``coro`` on the private loop. A termination signal cancels it — so its
        cleanup (e.g. removing the remote temporary of a put) runs while the connection
        is up — and then raises ``Interrupted`` (see ``interrupts.run_until_complete``)."""
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return interrupts.run_until_complete(self._loop, coro)

    def _call(self, what: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``fn(*args)`` on a live connection; translate every failure."""

        async def guarded() -> Any:
            try:
                await self._connect()
                return await fn(*args)
            except TableshipError as exc:
                if exc.transient:
                    self._drop()
                raise
            except BaseException as exc:
                err = self._translate(exc, what)
                if err is None:
                    raise
                if err.transient:
                    self._drop()
                raise err from None

        return self._run(guarded())

    def _drop(self) -> None:
        """Forget a broken connection; the next call reconnects."""
        conn, self._conn, self._sftp = self._conn, None, None
        self._dirs.clear()
        if conn is not None:
            try:
                conn.abort()
            except Exception:  # already dead
                pass

    def _key_options(self) -> dict:
        opts: dict[str, Any] = {}
        if self.cfg.key_file is not None:
            path = Path(self.cfg.key_file).expanduser()
            if not path.is_file():
                raise DestinationError(
                    f"destination {self.name!r}: key_file {str(path)!r} does not exist",
                    f"fix destinations.{self.name}.key_file (or remove it to use the SSH agent "
                    "and the default ~/.ssh keys)",
                )
            try:
                try:
                    passphrase = (
                        self.cfg.key_passphrase.get_secret_value() if self.cfg.key_passphrase else None
                    )
                    key = asyncssh.read_private_key(str(path), passphrase)
                except asyncssh.KeyImportError as exc:
                    if "passphrase" in str(exc).lower():
                        raise asyncssh.KeyEncryptionError(str(exc)) from None
                    raise
            except asyncssh.KeyEncryptionError:
                if self.cfg.key_passphrase is not None:
                    raise DestinationError(
                        f"destination {self.name!r}: key_passphrase does not decrypt key_file {str(path)!r}",
                        f"fix destinations.{self.name}.key_passphrase (e.g. ${{file:/path}})",
                    ) from None
                raise DestinationError(
                    f"destination {self.name!r}: key_file {str(path)!r} is protected by a passphrase",
                    f"set destinations.{self.name}.key_passphrase, load the key into ssh-agent "
                    "and remove key_file, or use a key without a passphrase",
                ) from None
            except (asyncssh.KeyImportError, ValueError, OSError) as exc:
                raise DestinationError(
                    f"destination {self.name!r}: key_file {str(path)!r} is not a usable private key ({exc})",
                    f"point destinations.{self.name}.key_file at an OpenSSH private key",
                ) from None
            opts["client_keys"] = [key]
            opts["agent_path"] = None
        else:
            opts["ignore_encrypted"] = True  # default keys / agent, like ssh(1)
        if self.cfg.password is not None:
            opts["password"] = self.cfg.password.get_secret_value()
        else:
            opts["password_auth"] = False
            opts["kbdint_auth"] = False
        return opts

    def _known_hosts_arg(self) -> Any:
        if self.known_hosts.is_file():
            try:
                return asyncssh.read_known_hosts(str(self.known_hosts))
            except (OSError, ValueError) as exc:
                raise DestinationError(
                    f"destination {self.name!r}: cannot read known_hosts {str(self.known_hosts)!r}: {exc}",
                    f"fix the file or destinations.{self.name}.known_hosts",
                ) from None
        # No file: every host is unknown. (An empty *object*, not b"": asyncssh would
        # silently fall back to ~/.ssh/known_hosts for a falsy value.)
        return asyncssh.import_known_hosts("")

    def _untrusted_host_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        known: list = []
        if self.known_hosts.is_file():
            try:
                known = list(
                    asyncssh.match_known_hosts(
                        str(self.known_hosts), host, addr, port if port != 22 else None
                    )[0]
                )
            except (OSError, ValueError):
                known = []
        if known:
            self._host_key_problem = ("changed", key)
            return False
        if self.cfg.host_key_policy == "accept-new":
            try:
                self._record_host_key(key)
            except DestinationError as exc:  # raised inside asyncssh: report it after connect fails
                self._host_key_problem = ("unrecorded", key, exc)
                return False
            return True
        self._host_key_problem = ("unknown", key)
        return False

    def _record_host_key(self, key: asyncssh.SSHKey) -> None:
        alg, b64 = key.export_public_key("openssh").decode().split()[:2]
        line = f"{self.host_spec} {alg} {b64}\n"
        try:
            self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(line)
        except OSError as exc:
            raise DestinationError(
                f"destination {self.name!r}: cannot record the host key in "
                f"{str(self.known_hosts)!r}: {exc.strerror}",
                "make known_hosts writable or add the key with ssh-keyscan",
            ) from None
        log.warning(
            "destination %s: recorded the new host key of %s (%s) in %s (host_key_policy = accept-new)",
            self.name,
            self.host_spec,
            _fingerprint(key),
            self.known_hosts,
        )

    async def _connect(self) -> asyncssh.SFTPClient:
        if self._sftp is not None and self._conn is not None and not self._conn.is_closed():
            return self._sftp
        self._drop()
        opts = self._key_options()
        self._host_key_problem = None
        conn = await asyncssh.connect(
            self.host, self.port,
            username=self.user,
            known_hosts=self._known_hosts_arg(),
            client_factory=lambda: _Client(self),
            config=None,
            connect_timeout=self.cfg.connect_timeout,
            login_timeout=self.cfg.connect_timeout,
            keepalive_interval=max(5.0, self.cfg.connect_timeout),
            keepalive_count_max=3,
            encryption_algs=list(CIPHERS),
            compression_algs=["none"],  # archives are compressed already
            window=WINDOW,
            max_pktsize=MAX_PACKET,
            gss_auth=False,
            gss_kex=False,
            **opts,
        )  # fmt: skip
        self.cipher = conn.get_extra_info("send_cipher")
        try:
            sftp = await conn.start_sftp_client()
            await self._check_root(sftp)  # a missing root fails every call, not just the first
        except BaseException:
            conn.abort()
            raise
        self._conn, self._sftp = conn, sftp
        log.debug("destination %s: connected to %s (%s)", self.name, self.where, self.cipher)
        return sftp

    async def _check_root(self, sftp: asyncssh.SFTPClient) -> None:
        try:
            attrs = await sftp.stat(self.root)
        except asyncssh.SFTPNoSuchFile:
            raise self._no_root() from None
        except asyncssh.SFTPPermissionDenied:
            raise self._denied("reaching", self.root) from None
        if attrs.permissions is not None and not stat_mod.S_ISDIR(attrs.permissions):
            raise DestinationError(
                f"destination {self.name!r}: remote path {self.root} on {self.host} is not a folder",
                f"fix destinations.{self.name}.path",
            )
        # the root itself may be a symlink (a mount point elsewhere): what is under it is
        # confined to where it really is
        self._root_real = posixpath.normpath(await sftp.realpath(self.root))
        self._dirs.add(self.root)

    # ------------------------------------------------------------------ errors
    def _no_root(self) -> DestinationError:
        return DestinationError(
            f"destination {self.name!r}: remote folder {self.root} does not exist on {self.host}",
            f"create it on the backup host (mkdir -p {self.root}, writable by {self.user}) or fix "
            f"destinations.{self.name}.path; tableship never creates the root folder",
        )

    def _no_sha256sum(self) -> DestinationError:
        return DestinationError(
            f'destination {self.name!r}: {self.user} may not run sha256sum on {self.host} (verify = "sha256sum")',
            'set verify = "auto" or "read-back" (reads the file back over SFTP to hash it)',
        )

    def _denied(self, doing: str, path: str) -> DestinationError:
        return DestinationError(
            f"destination {self.name!r}: permission denied {doing} {path} on {self.host} as {self.user}",
            f"make {self.root} and its subfolders writable by {self.user} on the backup host, "
            f"or fix destinations.{self.name}.path",
        )

    def _transient(self, what: str, why: str) -> TransientDestinationError:
        return TransientDestinationError(
            f"destination {self.name!r}: {what}: {why} ({self.where})",
            f"check that {self.host} and its sshd are reachable (ssh -p {self.port} {self.user}@{self.host}), "
            "then re-run to resume",
        )

    def _translate(self, exc: BaseException, what: str) -> TableshipError | None:
        if isinstance(exc, (Interrupted, KeyboardInterrupt, SystemExit, GeneratorExit)):
            return None
        if isinstance(exc, asyncio.CancelledError):
            return self._transient(what, "cancelled")
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return self._host_key_error(exc)
        if isinstance(exc, asyncssh.PermissionDenied):
            tried = (
                [f"key_file {self.cfg.key_file}"]
                if self.cfg.key_file
                else ["ssh-agent and default ~/.ssh keys"]
            ) + (["password"] if self.cfg.password is not None else [])
            return DestinationError(
                f"destination {self.name!r}: authentication failed for {self.where} (tried {' and '.join(tried)})",
                f"check destinations.{self.name}.user and key_file: its public key must be in "
                f"~{self.user}/.ssh/authorized_keys on {self.host}",
            )
        if isinstance(exc, asyncssh.SFTPPermissionDenied):
            return DestinationError(
                f"destination {self.name!r}: permission denied {what} on {self.host} as {self.user}",
                f"make {self.root} and its subfolders writable by {self.user} on the backup host",
            )
        if isinstance(exc, asyncssh.SFTPNoSuchFile):
            return DestinationError(
                f"destination {self.name!r}: {what}: no such file or folder on {self.host}",
                "check that nothing else removes files in the destination folder, then re-run",
            )
        if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection, asyncssh.ConnectionLost)):
            return self._transient(what, "connection lost")
        if isinstance(exc, asyncssh.ChannelOpenError):
            return self._transient(what, f"channel refused ({exc.reason})")
        if isinstance(exc, asyncssh.SFTPError):
            return DestinationError(
                f"destination {self.name!r}: {what}: the server said {exc.reason!r}",
                f"check the remote filesystem under {self.root} (free space, quota, permissions)",
            )
        if isinstance(exc, (asyncssh.KeyImportError, asyncssh.KeyEncryptionError)):
            return DestinationError(
                f"destination {self.name!r}: cannot use an SSH key: {exc}",
                f"check destinations.{self.name}.key_file and ~/.ssh",
            )
        if isinstance(exc, asyncssh.DisconnectError):  # protocol errors, server shutdown, kex failure
            return self._transient(what, f"disconnected: {exc.reason}")
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError, socket.timeout)):
            return self._transient(what, "timed out")
        if isinstance(exc, socket.gaierror):
            return self._transient(what, f"cannot resolve host name {self.host!r} ({exc.strerror})")
        if isinstance(exc, ConnectionRefusedError):
            return self._transient(what, "connection refused")
        if isinstance(exc, ConnectionResetError):
            return self._transient(what, "connection reset")
        if isinstance(exc, (BrokenPipeError, ConnectionError, EOFError)):
            return self._transient(what, "connection closed")
        if isinstance(exc, OSError):
            return self._transient(what, exc.strerror or str(exc))
        if isinstance(exc, ConfigError):
            return exc
        return DestinationError(
            f"destination {self.name!r}: {what}: unexpected {type(exc).__name__}: {exc}",
            "re-run with --debug and report it",
        )

    def _host_key_error(self, exc: BaseException) -> DestinationError:
        kind, key, *rest = self._host_key_problem or ("unknown", None)
        if rest:
            return rest[0]
        offered = f" ({_fingerprint(key)})" if key is not None else ""
        kh = str(self.known_hosts)
        keyscan = f"ssh-keyscan -p {self.port} {self.host} >> {kh}"
        if kind == "changed":
            return DestinationError(
                f"destination {self.name!r}: the host key of {self.host_spec} has CHANGED: the server offered "
                f"{_fingerprint(key) if key is not None else 'another key'}, which does not match {kh}; "
                "this may be a man-in-the-middle attack",
                f"if the backup host was re-installed or re-keyed, confirm the new fingerprint with its admin, "
                f"then ssh-keygen -R '{self.host_spec}' -f {kh} and {keyscan}",
            )
        return DestinationError(
            f"destination {self.name!r}: the host key of {self.host_spec} is unknown{offered}: not in {kh}",
            f"confirm the fingerprint with the host's admin, then add it: {keyscan} "
            f'(or set host_key_policy = "accept-new")',
        )

    # ------------------------------------------------------------------ paths
    def _remote(self, name: str) -> str:
        rel = safe_name(name)
        path = posixpath.normpath(posixpath.join(self.root, rel))
        if not (path == self.root or path.startswith(self.root.rstrip("/") + "/")):
            raise ConfigError(f"destination path {name!r} escapes the destination root {self.root}")
        return path

    def _folder(self, folder: str) -> str:
        return self.root if folder in ("", ".") else self._remote(folder)

    def _inside(self, real: str) -> bool:
        root = self._root_real or self.root
        return real == root or real.startswith(root.rstrip("/") + "/")

    def _escape(self, path: str, real: str) -> DestinationError:
        return DestinationError(
            f"destination {self.name!r}: {path} on {self.host} is a symlink leading out of the destination root "
            f"{self.root} (to {real}); nothing is written, read or deleted through it",
            f"replace the symlink by a real folder on the backup host (or point destinations.{self.name}.path "
            "at the real location)",
        )

    async def _confine(
        self, sftp: asyncssh.SFTPClient, path: str, *, folder: bool = False, create: bool = False
    ) -> bool:
        """Check (lstat + realpath on the server) that every existing folder from the root
        to ``path`` — ``path`` itself too when ``folder`` — resolves inside the root; a
        symlink leading out is an error. Missing folders are created when ``create``;
        otherwise False says one is missing (nothing there)."""
        if self.root not in self._dirs:
            await self._check_root(sftp)
        target = path if folder else posixpath.dirname(path)
        if target in self._dirs:
            return True
        rel = posixpath.relpath(target, self.root)
        cur = self.root
        for part in [] if rel == "." else rel.split("/"):
            cur = posixpath.join(cur, part)
            if cur in self._dirs:
                continue
            try:
                attrs = await sftp.lstat(cur)
            except asyncssh.SFTPNoSuchFile:
                if not create:
                    return False
                try:
                    await sftp.mkdir(cur)
                except asyncssh.SFTPPermissionDenied:
                    raise self._denied("creating the folder", cur) from None
                except asyncssh.SFTPError:
                    if not await sftp.isdir(cur):  # a concurrent run made it: fine (checked below)
                        raise
                attrs = await sftp.lstat(cur)
            except asyncssh.SFTPPermissionDenied:
                raise self._denied("reaching", cur) from None
            if attrs.permissions is not None and stat_mod.S_ISLNK(attrs.permissions):
                try:
                    real = posixpath.normpath(await sftp.realpath(cur))
                except asyncssh.SFTPNoSuchFile:  # a dangling link
                    real = "(nothing)"
                if not self._inside(real):
                    raise self._escape(cur, real)
                attrs = await sftp.stat(cur)
            if attrs.permissions is not None and not stat_mod.S_ISDIR(attrs.permissions):
                raise DestinationError(
                    f"destination {self.name!r}: {cur} on {self.host} is a file, not a folder",
                    "remove or rename it on the backup host, or change remote_dir",
                )
            self._dirs.add(cur)
        return True

    async def _regular(self, sftp: asyncssh.SFTPClient, path: str):
        """lstat attributes of the regular file ``path`` (folders confined), or None when it
        is missing or a symlink: a link at a final name is never taken as the file."""
        if not await self._confine(sftp, path):
            return None
        try:
            attrs = await sftp.lstat(path)
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPPermissionDenied:
            raise self._denied("reading", path) from None
        if attrs.permissions is not None and stat_mod.S_ISLNK(attrs.permissions):
            log.warning(
                "destination %s: %s on %s is a symlink: not trusted as the file (it is replaced by an upload)",
                self.name,
                path,
                self.host,
            )
            return None
        if attrs.permissions is not None and not stat_mod.S_ISREG(attrs.permissions):
            raise DestinationError(
                f"destination {self.name!r}: {path} on {self.host} is not a regular file",
                "remove it on the backup host",
            )
        return attrs

    async def _rename(self, sftp: asyncssh.SFTPClient, tmp: str, final: str) -> None:
        try:
            await sftp.posix_rename(tmp, final)
            return
        except asyncssh.SFTPOpUnsupported:
            pass
        # No posix-rename@openssh.com: SFTPv3 rename refuses to overwrite.
        try:
            await sftp.remove(final)
        except asyncssh.SFTPNoSuchFile:
            pass
        await sftp.rename(tmp, final)

    async def _remove_quietly(self, tmp: str) -> None:
        sftp = self._sftp
        if sftp is None or self._conn is None or self._conn.is_closed():
            return
        try:
            await asyncio.wait_for(sftp.remove(tmp), timeout=self.cfg.connect_timeout)
        except Exception:  # best effort: cleanup() removes it on the next run (a signal still propagates)
            log.debug("could not remove temporary %s", tmp, exc_info=True)

    async def _disk_full(
        self, sftp: asyncssh.SFTPClient, folder: str, needed: int
    ) -> DestinationError | None:
        try:
            vfs = await asyncio.wait_for(sftp.statvfs(folder), timeout=self.cfg.connect_timeout)
        except Exception:
            return None
        free = vfs.bavail * (vfs.frsize or vfs.bsize)
        if free < max(needed, 1 << 20):
            return DestinationError(
                f"destination {self.name!r}: remote disk full on {self.host}: {_human(free)} free under {folder}, "
                f"{_human(needed)} needed",
                f"free space on the backup host's filesystem (or point destinations.{self.name}.path elsewhere), "
                "then re-run to resume",
            )
        return None

    # ------------------------------------------------------------------ transfers
    def _block(self, sftp: asyncssh.SFTPClient, kind: str) -> int:
        limits = getattr(sftp, "limits", None)
        n = getattr(limits, f"max_{kind}_len", 0) if limits is not None else 0
        return max(MIN_BLOCK, min(n or MAX_BLOCK, MAX_BLOCK))

    async def _write_remote(self, sftp: asyncssh.SFTPClient, src, tmp: str, size: int) -> None:
        block = self._block(sftp, "write")
        # "x": exclusive create, so a link planted at the (random) temporary name is never followed
        async with await sftp.open(tmp, "xb", block_size=0) as f:
            inflight: set[asyncio.Future] = set()
            offset = 0
            try:
                while True:
                    data = src.read(block)
                    if not data:
                        break
                    if len(inflight) >= MAX_REQUESTS:
                        done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                        _raise_first(done)
                    inflight.add(asyncio.ensure_future(f.write(data, offset)))
                    if not offset:
                        await holds.hold_async("upload")
                    offset += len(data)
                if inflight:
                    done, inflight = await asyncio.wait(inflight)
                    _raise_first(done)
            finally:
                await _settle(inflight)
            if offset != size:
                raise DestinationError(
                    f"destination {self.name!r}: the local file changed size while uploading "
                    f"({offset} bytes read, {size} expected)",
                    "re-run",
                )
            try:  # durable before the rename (fsync@openssh.com)
                await f.fsync()
            except asyncssh.SFTPOpUnsupported:
                pass

    async def _upload(self, local: Path | None, data: bytes | None, size: int, name: str, owner: str) -> None:
        sftp = await self._connect()
        final = self._remote(name)
        tmp = self._remote(temp_name(safe_name(name), owner))
        folder = posixpath.dirname(final)
        await self._confine(sftp, final, create=True)
        if self.cfg.verify == "sha256sum" and not await self._probe_exec():
            raise self._no_sha256sum()  # before uploading what could not be verified
        t0 = time.monotonic()
        via = "asyncssh"
        try:
            if (
                local is not None
                and size >= OPENSSH_MIN_BYTES
                and await self._openssh_put(local, tmp, folder, size)
            ):
                via = "openssh sftp"
            else:
                try:
                    with open(local, "rb", buffering=0) if local is not None else io.BytesIO(data) as src:
                        await self._write_remote(sftp, src, tmp, size)
                except asyncssh.SFTPPermissionDenied:
                    raise self._denied("writing", tmp) from None
                except asyncssh.SFTPError as exc:
                    if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)):
                        raise
                    await self._remove_quietly(tmp)  # then measure the free space without it
                    full = await self._disk_full(sftp, folder, size)
                    raise (full or exc) from None
            try:
                await self._rename(sftp, tmp, final)
            except asyncssh.SFTPPermissionDenied:
                raise self._denied("renaming into", final) from None
            except asyncssh.SFTPError as exc:
                if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)):
                    raise
                if await sftp.isdir(final):
                    raise DestinationError(
                        f"destination {self.name!r}: {final} on {self.host} is a folder, "
                        "where tableship must write a file",
                        "remove or rename that folder on the backup host, then re-run",
                    ) from None
                raise
        except BaseException:
            await self._remove_quietly(tmp)
            raise
        dt = max(time.monotonic() - t0, 1e-6)
        log.debug(
            "destination %s: put %s (%s) via %s in %.2fs, %.0f MB/s",
            self.name,
            final,
            _human(size),
            via,
            dt,
            size / dt / 1e6,
        )

    # -- bulk bytes through OpenSSH's sftp client (C, AES-GCM): the control connection
    #    above has already checked the host key, the login and the folder.
    def _openssh_argv(self, sftp: asyncssh.SFTPClient) -> list[str] | None:
        exe = shutil.which("sftp")
        if exe is None or self._openssh_broken:
            return None
        if (
            self.cfg.key_file is None and self.cfg.password is not None
        ) or self.cfg.key_passphrase is not None:
            return None  # password logins and encrypted keys stay on asyncssh (no askpass plumbing)
        alive = str(int(max(5.0, self.cfg.connect_timeout)))
        argv = [exe, "-q", "-b", "-", "-P", str(self.port), "-F", "/dev/null",
                "-R", str(MAX_REQUESTS),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no",
                "-o", f"ConnectTimeout={int(max(1, self.cfg.connect_timeout))}",
                "-o", f"ServerAliveInterval={alive}", "-o", "ServerAliveCountMax=3",
                "-o", f"Ciphers={','.join(CIPHERS)}", "-o", "Compression=no", "-o", "LogLevel=ERROR",
                "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
                "-o", f"User={self.user}"]  # fmt: skip
        limits = getattr(sftp, "limits", None)
        if getattr(limits, "max_write_len", 0):  # the server told its limits: use full-size writes
            argv += ["-B", str(self._block(sftp, "write"))]
        if self.cfg.key_file is not None:
            argv += ["-i", str(Path(self.cfg.key_file).expanduser()), "-o", "IdentitiesOnly=yes"]
        argv.append(f"[{self.host}]" if ":" in self.host else self.host)
        return argv

    async def _openssh_put(self, local: Path, tmp: str, folder: str, size: int) -> bool:
        """Upload with ``sftp put -f`` (fsync). False: OpenSSH unusable here, use asyncssh."""
        sftp = self._sftp
        argv = self._openssh_argv(sftp)
        if argv is None:
            return False
        with tempfile.TemporaryDirectory(prefix="tableship-sftp-") as private:
            link = Path(private) / "upload"  # a plain name: sftp globs its local argument
            link.symlink_to(Path(local).resolve())
            quoted = '"' + tmp.replace("\\", "\\\\").replace('"', '\\"') + '"'
            # preexec: the kernel kills the client if tableship dies, even by kill -9
            proc = await asyncio.create_subprocess_exec(
                *argv,
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
        # Is the control connection still alive? If not, the server or the network went away.
        try:
            await asyncio.wait_for(sftp.stat(folder), timeout=self.cfg.connect_timeout)
            started = await asyncio.wait_for(sftp.exists(tmp), timeout=self.cfg.connect_timeout)
        except BaseException as exc:
            raise self._translate(exc, f"uploading to {tmp}") or exc from None
        if not started:
            # The control connection works but OpenSSH's client never opened the file.
            if "permission denied" in low and "permission denied (" not in low:
                raise self._denied("writing", tmp)
            # It could not log in or start where asyncssh could (agent, HOME, ssh
            # options, an old client...): stop using it for this destination.
            self._openssh_broken = True
            log.warning(
                "destination %s: the OpenSSH sftp client failed before uploading (exit %s: %s); "
                "using asyncssh for uploads",
                self.name,
                proc.returncode,
                text or "no message",
            )
            return False
        await self._remove_quietly(tmp)  # then measure the free space without it
        if "permission denied" in low:
            raise self._denied("writing", tmp)
        full = await self._disk_full(sftp, folder, size)
        if full is not None:
            raise full
        if (
            any(w in low for w in ("connection", "broken pipe", "timeout", "timed out", "not responding"))
            or not text
        ):
            raise self._transient(f"uploading to {tmp}", text or f"sftp exit {proc.returncode}")
        raise DestinationError(
            f"destination {self.name!r}: uploading to {tmp} failed: {text}",
            f"check the remote filesystem under {self.root} (free space, quota, permissions)",
        )

    async def _read_remote(self, sftp: asyncssh.SFTPClient, path: str, sink: Callable[[bytes], Any]) -> int:
        """Stream ``path`` in order to ``sink`` with up to MAX_REQUESTS reads in flight."""
        block = self._block(sftp, "read")
        total = 0
        async with await sftp.open(path, "rb", block_size=0) as f:
            size = (await f.stat()).size or 0

            async def read_at(off: int, n: int) -> bytes:
                try:
                    return await f.read(n, off)
                except asyncssh.SFTPEOFError:
                    return b""

            pending: deque[tuple[int, int, asyncio.Future]] = deque()
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
                await _settle([fut for _, _, fut in pending])
        return total

    async def _exec(
        self, command: str, timeout: float | None, hold: str | None = None
    ) -> tuple[int | None, str, str]:
        """Run ``command`` on the server; the channel is closed however this ends (a
        signal cancels the wait: no process or task is left behind)."""
        assert self._conn is not None
        proc = await self._conn.create_process(
            command, stdin=asyncssh.DEVNULL, encoding="utf-8", errors="replace"
        )
        try:
            if hold:
                await holds.hold_async(hold)
            res = await proc.wait(check=False, timeout=timeout)
        finally:
            proc.close()
        return res.exit_status, str(res.stdout or ""), str(res.stderr or "")

    async def _probe_exec(self) -> bool:
        """May this account run ``sha256sum``? (False for ForceCommand internal-sftp, rbash, no coreutils.)"""
        if self._can_exec is None:
            try:
                code, out, _ = await self._exec(
                    "sha256sum /dev/null", timeout=max(10.0, self.cfg.connect_timeout)
                )
                self._can_exec = code == 0 and out.strip().startswith(EMPTY_SHA256)
            except (TimeoutError, asyncssh.ChannelOpenError, asyncssh.ProcessError, asyncssh.TimeoutError):
                self._can_exec = False
            log.debug(
                "destination %s: remote sha256sum %s",
                self.name,
                "available" if self._can_exec else "not available",
            )
        return self._can_exec

    async def _sha256(self, name: str) -> str | None:
        sftp = await self._connect()
        path = self._remote(name)
        if await self._regular(sftp, path) is None:
            return None
        mode = self.cfg.verify
        if mode in ("auto", "sha256sum"):
            if await self._probe_exec():
                code, out, err = await self._exec(
                    f"sha256sum -- {shlex.quote(path)}", timeout=None, hold="sha256"
                )
                m = _HEX64.match(out)
                if code == 0 and m:
                    self.last_verify_method = "sha256sum"
                    return m.group(1).lower()
                if mode == "sha256sum":
                    raise DestinationError(
                        f"destination {self.name!r}: remote sha256sum of {path} failed "
                        f"(exit {code}): {redact(err.strip())[:200]}",
                        'check the file on the backup host, or set verify = "read-back"',
                    )
                log.warning(
                    "destination %s: remote sha256sum of %s failed (exit %s: %s); reading it back instead",
                    self.name,
                    path,
                    code,
                    redact(err.strip())[:200],
                )
            elif mode == "sha256sum":
                raise self._no_sha256sum()
        h = hashlib.sha256()
        try:
            await self._read_remote(sftp, path, h.update)
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPPermissionDenied:
            raise self._denied("reading", path) from None
        self.last_verify_method = "read-back"
        return h.hexdigest()

    # ------------------------------------------------------------------ the contract
    def put(self, local: Path, name: str, owner: str) -> None:
        local = Path(local)
        self._remote(name)  # refuse an escaping name before touching anything
        try:
            size = local.stat().st_size
        except OSError as exc:
            raise DestinationError(f"cannot read the local file {local}: {exc.strerror}") from None
        self._call(f"uploading {name}", self._upload, local, None, size, name, owner)

    def put_bytes(self, data: bytes, name: str, owner: str) -> None:
        self._remote(name)
        self._call(f"writing {name}", self._upload, None, bytes(data), len(data), name, owner)

    def get(self, name: str, local: Path) -> None:
        local = Path(local)
        path = self._remote(name)
        part = local.with_name(f".{local.name}.part")

        async def download() -> None:
            sftp = await self._connect()
            if await self._regular(sftp, path) is None:
                raise DestinationError(
                    f"destination {self.name!r}: {name} does not exist (or is not a regular file)"
                )
            try:
                with open(part, "wb") as out:
                    await self._read_remote(sftp, path, out.write)
                    out.flush()
                    os.fsync(out.fileno())
            except asyncssh.SFTPNoSuchFile:
                raise DestinationError(f"destination {self.name!r}: {name} does not exist") from None
            except asyncssh.SFTPPermissionDenied:
                raise self._denied("reading", path) from None
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            os.replace(part, local)

        self._call(f"downloading {name}", download)

    def sha256(self, name: str) -> str | None:
        self._remote(name)
        return self._call(f"checking the sha256 of {name}", self._sha256, name)

    def size(self, name: str) -> int | None:
        path = self._remote(name)

        async def size() -> int | None:
            attrs = await self._regular(self._sftp, path)
            return None if attrs is None else attrs.size

        return self._call(f"checking the size of {name}", size)

    def list(self, folder: str) -> list[str]:
        path = self._folder(folder)
        prefix = "" if path == self.root else safe_name(folder) + "/"

        async def listing() -> list[str]:
            await holds.hold_async("list")
            if not await self._confine(self._sftp, path, folder=True):
                return []
            try:
                entries = await self._sftp.readdir(path)
            except asyncssh.SFTPNoSuchFile:
                return []
            except asyncssh.SFTPPermissionDenied:
                raise self._denied("listing", path) from None
            return sorted(
                prefix + e.filename
                for e in entries
                if e.attrs.permissions is not None
                and stat_mod.S_ISREG(e.attrs.permissions)
                and not is_temp(str(e.filename))
            )

        return self._call(f"listing {folder or '/'}", listing)

    def delete(self, name: str) -> None:
        path = self._remote(name)

        async def delete() -> None:
            if not await self._confine(self._sftp, path):
                return  # its folder is missing: nothing to delete
            try:
                await self._sftp.remove(path)  # a symlink at the name: the link goes, never its target
            except asyncssh.SFTPNoSuchFile:
                pass
            except asyncssh.SFTPPermissionDenied:
                raise self._denied("deleting", path) from None

        self._call(f"deleting {name}", delete)

    def cleanup(self, folder: str, owner: str) -> list[str]:
        path = self._folder(folder)

        async def cleanup() -> list[str]:
            if not await self._confine(self._sftp, path, folder=True):
                return []
            try:
                entries = await self._sftp.readdir(path)
            except asyncssh.SFTPNoSuchFile:
                return []
            removed = []
            for e in entries:
                fn = str(e.filename)
                if (
                    is_temp(fn, owner)
                    and e.attrs.permissions is not None
                    and stat_mod.S_ISREG(e.attrs.permissions)
                ):
                    try:
                        await self._sftp.remove(posixpath.join(path, fn))
                    except asyncssh.SFTPNoSuchFile:
                        continue
                    except asyncssh.SFTPPermissionDenied:
                        raise self._denied("deleting", posixpath.join(path, fn)) from None
                    removed.append(fn)
            return sorted(removed)

        return self._call(f"cleaning temporaries in {folder or '/'}", cleanup)

    def check(self) -> list[tuple[str, bool, str]]:
        """Connect, check the host key, the root folder, write permission, free space, verification."""
        out: list[tuple[str, bool, str]] = []
        try:
            self._call("connecting", lambda: asyncio.sleep(0))
        except TableshipError as exc:
            text = exc.line()
            if self._host_key_problem is not None or "host key" in text:
                out.append(("connect", True, f"{self.host}:{self.port} answers"))
                out.append(("host key", False, text))
            elif "authentication failed" in text:
                out += [
                    ("connect", True, f"{self.host}:{self.port} answers"),
                    ("host key", True, str(self.known_hosts)),
                    ("authentication", False, text),
                ]
            elif "does not exist" in text or "not a folder" in text or "permission denied" in text:
                out += [
                    ("connect", True, f"{self.where} ({self.cipher})"),
                    ("host key", True, str(self.known_hosts)),
                    ("authentication", True, self.user),
                    ("root folder", False, text),
                ]
            else:
                out.append(("connect", False, text))
            return out
        key = self._conn.get_server_host_key() if self._conn is not None else None
        out.append(("connect", True, f"{self.where} ({self.cipher})"))
        out.append(("host key", True, f"{_fingerprint(key) if key else '?'} matches {self.known_hosts}"))
        out.append(("authentication", True, f"as {self.user}"))
        out.append(("root folder", True, self.root))

        probe = temp_name("check-destination", "check")
        try:
            self.put_bytes(b"tableship check-destination\n", probe, "check")
            ok = self.size(probe) == len(b"tableship check-destination\n")
            self.delete(probe)
            out.append(("write permission", ok, f"created, renamed and removed a test file in {self.root}"))
        except TableshipError as exc:
            out.append(("write permission", False, exc.line()))

        async def free_space() -> tuple[bool, str]:
            try:
                vfs = await self._sftp.statvfs(self.root)
                free, total = vfs.bavail * (vfs.frsize or vfs.bsize), vfs.blocks * (vfs.frsize or vfs.bsize)
            except (asyncssh.SFTPOpUnsupported, asyncssh.SFTPFailure):
                if not await self._probe_exec():
                    return True, "unknown (no statvfs@openssh.com and no remote commands)"
                code, text, _ = await self._exec(f"df -Pk -- {shlex.quote(self.root)}", timeout=30)
                fields = text.splitlines()[-1].split() if code == 0 and text.strip() else []
                if len(fields) < 4 or not fields[3].isdigit():
                    return True, "unknown (df not available)"
                free, total = int(fields[3]) * 1024, int(fields[1]) * 1024
            return free >= 64 * 2**20, f"{_human(free)} free of {_human(total)}"

        try:
            ok, detail = self._call("checking free space", free_space)
            out.append(("free space", ok, detail))
        except TableshipError as exc:
            out.append(("free space", False, exc.line()))

        try:
            can = self._call("probing remote commands", self._probe_exec)
            if self.cfg.verify == "read-back":
                out.append(("verification", True, 'read-back over SFTP (verify = "read-back")'))
            elif can:
                out.append(("verification", True, "sha256sum on the backup host"))
            elif self.cfg.verify == "sha256sum":
                out.append(("verification", False, f'{self.user} may not run sha256sum; set verify = "auto"'))
            else:
                out.append(
                    ("verification", True, "read-back over SFTP (this account may not run remote commands)")
                )
        except TableshipError as exc:
            out.append(("verification", False, exc.line()))
        return out

    def close(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        self._dirs.clear()
        loop, self._loop = self._loop, None
        usable = loop is not None and not loop.is_closed() and not loop.is_running()
        try:
            if conn is not None:
                try:
                    conn.close()
                    if usable:
                        interrupts.run_until_complete(loop, asyncio.wait_for(conn.wait_closed(), timeout=5))
                except Exception:  # closing never hides the caller's outcome
                    conn.abort()
                except BaseException:  # a signal while closing: still abort, then stop
                    conn.abort()
                    raise
        finally:
            if usable:
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

    def __del__(self):  # pragma: no cover - safety net
        try:
            if self._conn is not None:
                self._conn.abort()
        except Exception:
            pass
