"""``SFTPDestination``: the Destination contract (``destinations/base.py``) over one SSH session.

- **Put.** ``.<name>.tableship-<owner>-<hex>.part`` in the target folder (folders below the
  root created as needed; the root itself is never created), pipelined writes (OpenSSH
  ``sftp`` or asyncssh), ``fsync@openssh.com``, then ``posix-rename@openssh.com`` over the
  final name (remove + rename only when the server lacks that extension). A failed put removes
  its temporary when the connection is still up; otherwise ``cleanup`` removes it next run.
- **Confinement.** Every folder between the root and a name is ``lstat``-ed on the server and a
  symlink among them ``realpath``-ed: one leading out of the root is a terminal error. A
  symlink at a final name is never taken as the file (``sha256``/``size`` say missing,
  ``list`` skips it); the upload's rename replaces the link itself.
- **Verify.** ``sha256sum`` run on the server when the account may run commands (probed once
  per connection), else the file is read back over SFTP and hashed locally; the
  :class:`~tableship.destinations.base.Digest` says which.
- **Errors.** See ``errors.py``: every call's failure is translated there; a transient one
  drops the connection and the next call reconnects.
"""

from __future__ import annotations

import asyncio
import builtins  # `list` is also a method name of SFTPDestination
import dataclasses
import hashlib
import io
import logging
import os
import posixpath
import stat as stat_mod
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncssh

from tableship.core import holds, slots
from tableship.core.errors import ConfigError, DestinationError, TableshipError
from tableship.core.redact import redact
from tableship.core.units import human_size
from tableship.destinations.base import Digest, is_temp, safe_name, temp_name
from tableship.destinations.sftp import check as check_mod
from tableship.destinations.sftp import openssh, remote
from tableship.destinations.sftp.bridge import LoopBridge
from tableship.destinations.sftp.errors import RootError, Where
from tableship.destinations.sftp.session import Session
from tableship.destinations.sftp.transfer import SizeChanged, read_remote, write_remote

log = logging.getLogger("tableship.sftp")

# asyncssh logs every connection and channel at INFO; keep tableship's log readable.
if logging.getLogger("asyncssh").level == logging.NOTSET:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


class SFTPDestination:
    def __init__(self, name: str, cfg: Any):
        self.name = name
        self.cfg = cfg
        self.root = posixpath.normpath(cfg.path) if cfg.path != "/" else "/"
        self.host = cfg.host
        self.port = cfg.port
        self.user = cfg.user
        self.where = Where(
            name=name,
            host=cfg.host,
            port=cfg.port,
            user=cfg.user,
            root=self.root,
            known_hosts=Path(cfg.known_hosts).expanduser(),
            key_file=str(cfg.key_file) if cfg.key_file is not None else None,
            password=cfg.password is not None,
        )
        self.session = Session(self.where, cfg)
        self._bridge = LoopBridge()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._dirs: set[str] = set()  # folders seen to exist and to resolve inside the root
        self._root_real: str | None = None
        self._can_exec: bool | None = None
        self.openssh_broken = False  # OpenSSH's client failed to log in here: asyncssh does the uploads
        # max_connections across the parallel jobs of this process (core/slots.py): the
        # asyncssh connection holds one slot while it is open, an OpenSSH upload another
        self.cap = slots.cap("destination", name, getattr(cfg, "max_connections", None))
        self._slot = False

    @property
    def known_hosts(self) -> Path:
        return self.where.known_hosts

    @known_hosts.setter
    def known_hosts(self, path: Path) -> None:
        self.where = self.session.where = dataclasses.replace(self.where, known_hosts=Path(path))

    @property
    def cipher(self) -> str | None:
        return self.session.cipher

    # ------------------------------------------------------------------ plumbing
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
                err = self.where.translate(exc, what, self.session.host_key_problem)
                if err is None:
                    raise
                if err.transient:
                    self._drop()
                raise err from None

        return self._bridge.run(guarded())

    def _drop(self) -> None:
        """Forget a broken connection; the next call reconnects."""
        conn, self._conn, self._sftp = self._conn, None, None
        self._dirs.clear()
        if conn is not None:
            try:
                conn.abort()
            except Exception:  # already dead
                pass
        self._release()

    def _release(self) -> None:
        if self._slot and self.cap is not None:
            self._slot = False
            self.cap.release()

    async def _connect(self) -> asyncssh.SFTPClient:
        if self._sftp is not None and self._conn is not None and not self._conn.is_closed():
            return self._sftp
        self._drop()
        if self.cap is not None:
            await self.cap.acquire_async()
            self._slot = True
        try:
            conn = await self.session.connect()
        except BaseException:
            self._release()
            raise
        try:
            sftp = await conn.start_sftp_client()
            await self._check_root(sftp)  # a missing root fails every call, not just the first
        except BaseException:
            conn.abort()
            self._release()
            raise
        self._conn, self._sftp = conn, sftp
        log.debug("destination %s: connected to %s (%s)", self.name, self.where.login, self.cipher)
        return sftp

    @property
    def sftp(self) -> asyncssh.SFTPClient:
        """The live SFTP client (inside a ``_call``, after ``_connect``)."""
        assert self._sftp is not None
        return self._sftp

    @property
    def conn(self) -> asyncssh.SSHClientConnection:
        assert self._conn is not None
        return self._conn

    async def _check_root(self, sftp: asyncssh.SFTPClient) -> None:
        try:
            attrs = await sftp.stat(self.root)
        except asyncssh.SFTPNoSuchFile:
            raise self.where.no_root() from None
        except asyncssh.SFTPPermissionDenied:
            raise self.where.denied("reaching", self.root, RootError) from None
        if attrs.permissions is not None and not stat_mod.S_ISDIR(attrs.permissions):
            raise self.where.root_not_a_folder()
        # the root itself may be a symlink (a mount point elsewhere): what is under it is
        # confined to where it really is
        self._root_real = posixpath.normpath(await sftp.realpath(self.root))
        self._dirs.add(self.root)

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
                    raise self.where.denied("creating the folder", cur) from None
                except asyncssh.SFTPError:
                    if not await sftp.isdir(cur):  # a concurrent run made it: fine (checked below)
                        raise
                attrs = await sftp.lstat(cur)
            except asyncssh.SFTPPermissionDenied:
                raise self.where.denied("reaching", cur) from None
            if attrs.permissions is not None and stat_mod.S_ISLNK(attrs.permissions):
                try:
                    real = posixpath.normpath(await sftp.realpath(cur))
                except asyncssh.SFTPNoSuchFile:  # a dangling link
                    real = "(nothing)"
                if not self._inside(real):
                    raise self.where.escape(cur, real)
                attrs = await sftp.stat(cur)
            if attrs.permissions is not None and not stat_mod.S_ISDIR(attrs.permissions):
                raise DestinationError(
                    f"destination {self.name!r}: {cur} on {self.host} is a file, not a folder",
                    "remove or rename it on the backup host, or change remote_dir",
                )
            self._dirs.add(cur)
        return True

    async def _regular(self, sftp: asyncssh.SFTPClient, path: str) -> asyncssh.SFTPAttrs | None:
        """lstat attributes of the regular file ``path`` (folders confined), or None when it
        is missing or a symlink: a link at a final name is never taken as the file."""
        if not await self._confine(sftp, path):
            return None
        try:
            attrs = await sftp.lstat(path)
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPPermissionDenied:
            raise self.where.denied("reading", path) from None
        if attrs.permissions is not None and stat_mod.S_ISLNK(attrs.permissions):
            log.warning(
                "destination %s: %s on %s is a symlink: not trusted as the file "
                "(it is replaced by an upload)",
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

    async def remove_quietly(self, tmp: str) -> None:
        sftp = self._sftp
        if sftp is None or self._conn is None or self._conn.is_closed():
            return
        try:
            await asyncio.wait_for(sftp.remove(tmp), timeout=self.cfg.connect_timeout)
        except Exception:  # best effort: cleanup() removes it on the next run (a signal still propagates)
            log.debug("could not remove temporary %s", tmp, exc_info=True)

    async def disk_full(self, sftp: asyncssh.SFTPClient, folder: str, needed: int) -> DestinationError | None:
        try:
            vfs = await asyncio.wait_for(sftp.statvfs(folder), timeout=self.cfg.connect_timeout)
        except Exception:
            return None
        free = vfs.bavail * (vfs.frsize or vfs.bsize)
        return self.where.disk_full(free, needed, folder) if free < max(needed, 1 << 20) else None

    # ------------------------------------------------------------------ transfers
    async def _upload(self, local: Path | None, data: bytes | None, size: int, name: str, owner: str) -> None:
        sftp = await self._connect()
        final = self._remote(name)
        tmp = self._remote(temp_name(safe_name(name), owner))
        folder = posixpath.dirname(final)
        await self._confine(sftp, final, create=True)
        if self.cfg.verify == "sha256sum" and not await self.probe_exec():
            raise self.where.no_sha256sum()  # before uploading what could not be verified
        t0 = time.monotonic()
        via = "asyncssh"
        try:
            if (
                local is not None
                and size >= openssh.OPENSSH_MIN_BYTES
                and await openssh.put(self, sftp, local, tmp, folder, size)
            ):
                via = "openssh sftp"
            else:
                await self._write(sftp, local, data, tmp, folder, size)
            try:
                await self._rename(sftp, tmp, final)
            except asyncssh.SFTPPermissionDenied:
                raise self.where.denied("renaming into", final) from None
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
            await self.remove_quietly(tmp)
            raise
        dt = max(time.monotonic() - t0, 1e-6)
        log.debug(
            "destination %s: put %s (%s) via %s in %.2fs, %.0f MB/s",
            self.name,
            final,
            human_size(size),
            via,
            dt,
            size / dt / 1e6,
        )

    async def _write(
        self,
        sftp: asyncssh.SFTPClient,
        local: Path | None,
        data: bytes | None,
        tmp: str,
        folder: str,
        size: int,
    ) -> None:
        """The upload on asyncssh."""
        try:
            with open(local, "rb", buffering=0) if local is not None else io.BytesIO(data or b"") as src:
                await write_remote(sftp, src, tmp, size)
        except SizeChanged as exc:
            read, expected = exc.args
            raise DestinationError(
                f"destination {self.name!r}: the local file changed size while uploading "
                f"({read} bytes read, {expected} expected)",
                "re-run",
            ) from None
        except asyncssh.SFTPPermissionDenied:
            raise self.where.denied("writing", tmp) from None
        except asyncssh.SFTPError as exc:
            if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)):
                raise
            await self.remove_quietly(tmp)  # then measure the free space without it
            full = await self.disk_full(sftp, folder, size)
            raise (full or exc) from None

    async def probe_exec(self) -> bool:
        """May this account run ``sha256sum``? Probed once per destination."""
        if self._can_exec is None:
            self._can_exec = await remote.can_run_sha256sum(self.conn, max(10.0, self.cfg.connect_timeout))
            log.debug(
                "destination %s: remote sha256sum %s",
                self.name,
                "available" if self._can_exec else "not available",
            )
        return self._can_exec

    async def _sha256(self, name: str) -> Digest | None:
        sftp = await self._connect()
        path = self._remote(name)
        if await self._regular(sftp, path) is None:
            return None
        mode = self.cfg.verify
        if mode in ("auto", "sha256sum"):
            if await self.probe_exec():
                digest, code, err = await remote.sha256sum(self.conn, path)
                if digest is not None:
                    return Digest(digest, "sha256sum")
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
                raise self.where.no_sha256sum()
        h = hashlib.sha256()
        try:
            await read_remote(sftp, path, h.update)
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPPermissionDenied:
            raise self.where.denied("reading", path) from None
        return Digest(h.hexdigest(), "read-back")

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
                    await read_remote(sftp, path, out.write)
                    out.flush()
                    os.fsync(out.fileno())
            except asyncssh.SFTPNoSuchFile:
                raise DestinationError(f"destination {self.name!r}: {name} does not exist") from None
            except asyncssh.SFTPPermissionDenied:
                raise self.where.denied("reading", path) from None
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            os.replace(part, local)

        self._call(f"downloading {name}", download)

    def sha256(self, name: str) -> Digest | None:
        self._remote(name)
        return self._call(f"checking the sha256 of {name}", self._sha256, name)

    def size(self, name: str) -> int | None:
        path = self._remote(name)

        async def size() -> int | None:
            attrs = await self._regular(self.sftp, path)
            return None if attrs is None else attrs.size

        return self._call(f"checking the size of {name}", size)

    async def _entries(self, path: str) -> Sequence[asyncssh.SFTPName]:
        """The entries of a remote folder, its way confined; [] when it does not exist."""
        if not await self._confine(self.sftp, path, folder=True):
            return []
        try:
            return await self.sftp.readdir(path)
        except asyncssh.SFTPNoSuchFile:
            return []
        except asyncssh.SFTPPermissionDenied:
            raise self.where.denied("listing", path) from None

    def list(self, folder: str) -> list[str]:
        path = self._folder(folder)
        prefix = "" if path == self.root else safe_name(folder) + "/"

        async def listing() -> builtins.list[str]:
            await holds.hold_async("list")
            entries = await self._entries(path)
            return sorted(
                prefix + str(e.filename)
                for e in entries
                if e.attrs.permissions is not None
                and stat_mod.S_ISREG(e.attrs.permissions)
                and not is_temp(str(e.filename))
            )

        return self._call(f"listing {folder or '/'}", listing)

    def delete(self, name: str) -> None:
        path = self._remote(name)

        async def delete() -> None:
            if not await self._confine(self.sftp, path):
                return  # its folder is missing: nothing to delete
            try:
                await self.sftp.remove(path)  # a symlink at the name: the link goes, never its target
            except asyncssh.SFTPNoSuchFile:
                pass
            except asyncssh.SFTPPermissionDenied:
                raise self.where.denied("deleting", path) from None

        self._call(f"deleting {name}", delete)

    def cleanup(self, folder: str, owner: str) -> builtins.list[str]:
        path = self._folder(folder)

        async def cleanup() -> builtins.list[str]:
            entries = await self._entries(path)
            removed = []
            for e in entries:
                fn = str(e.filename)
                if (
                    is_temp(fn, owner)
                    and e.attrs.permissions is not None
                    and stat_mod.S_ISREG(e.attrs.permissions)
                ):
                    try:
                        await self.sftp.remove(posixpath.join(path, fn))
                    except asyncssh.SFTPNoSuchFile:
                        continue
                    except asyncssh.SFTPPermissionDenied:
                        raise self.where.denied("deleting", posixpath.join(path, fn)) from None
                    removed.append(fn)
            return sorted(removed)

        return self._call(f"cleaning temporaries in {folder or '/'}", cleanup)

    def check(self) -> builtins.list[tuple[str, bool, str]]:
        """Connect, check the host key, the root folder, write permission, free space, verification."""
        return check_mod.check(self)

    def close(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        self._dirs.clear()
        try:
            self._bridge.close(conn)
        finally:
            self._release()

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            if self._conn is not None:
                self._conn.abort()
        except Exception:
            pass
