"""Local-directory destination (also: NFS mounts, the demo's backup-server folder)."""

from __future__ import annotations

import builtins  # `list` is also a method name in the classes below
import errno
import os
import shutil
import stat
from pathlib import Path

from tableship.core import holds
from tableship.core.errors import DestinationError, TransientDestinationError
from tableship.core.fsutil import atomic_copy, atomic_write_bytes, fsync_dir, sha256_of
from tableship.destinations.base import TMP_RE, Digest, escape_error, is_temp, safe_name, temp_name


class LocalDestination:
    """Files under ``root``. Confinement: every folder on the way to a name must resolve
    (``realpath``) inside the root — a symlink leading out of it is an error, never
    followed; a symlink at a final name is not trusted as the file (``sha256``/``size``
    say missing, ``list`` skips it) and ``put`` replaces the link itself."""

    def __init__(self, name: str, cfg):
        self.name = name
        self.root = Path(cfg.path)

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise DestinationError(
                f"destination {self.name!r}: folder {str(self.root)!r} does not exist",
                f"create it (mkdir -p {self.root}) or fix destinations.{self.name}.path",
            )

    def _escape(self, path: Path, real: str) -> DestinationError:
        return escape_error(self.name, path, self.root, real)

    def _confine(self, rel: str, *, folder: bool = False, create: bool = False) -> Path | None:
        """``root/rel`` after checking that every existing folder on the way (and ``rel``
        itself when ``folder``) resolves inside the root; missing folders are created when
        ``create``, else None is returned (nothing there)."""
        self._check_root()
        root_real = os.path.realpath(self.root)
        parts = rel.split("/") if rel else []
        dirs = parts if folder else parts[:-1]
        cur = self.root
        for part in dirs:
            cur = cur / part
            try:
                os.lstat(cur)
            except FileNotFoundError:
                if not create:
                    return None
                try:
                    os.mkdir(cur)
                except FileExistsError:  # a concurrent run made it: checked below
                    pass
            except OSError as exc:
                raise self._fail(f"reaching {cur}", exc) from None
            real = os.path.realpath(cur)
            if real != root_real and not real.startswith(root_real.rstrip("/") + "/"):
                raise self._escape(cur, real)
        return self.root / rel if rel else self.root

    def _file(self, name: str, *, create: bool = False) -> Path | None:
        """The path of a final name, its folders confined; None if a folder is missing."""
        return self._confine(safe_name(name), create=create)

    def _target(self, name: str) -> Path:
        """The path to write a final name at, its folders created (and confined)."""
        path = self._confine(safe_name(name), create=True)
        assert path is not None  # create=True makes every missing folder
        return path

    def _regular(self, path: Path | None) -> os.stat_result | None:
        """lstat of a regular file (never through a symlink at the name), else None."""
        if path is None:
            return None
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._fail(f"reaching {path.name}", exc) from None
        return st if stat.S_ISREG(st.st_mode) else None

    def _fail(self, what: str, exc: OSError) -> DestinationError:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return DestinationError(
                f"destination {self.name!r}: {what}: permission denied ({exc.filename})",
                "make the folder writable by this user",
            )
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DestinationError(
                f"destination {self.name!r}: {what}: no space left on device",
                "free space on the backup filesystem, then re-run to resume",
            )
        return TransientDestinationError(f"destination {self.name!r}: {what}: {exc.strerror or exc}")

    def put(self, local: Path, name: str, owner: str) -> None:
        try:
            target = self._target(name)
            # os.replace over a symlink at the final name replaces the link, not its target
            atomic_copy(Path(local), target, self.root / temp_name(safe_name(name), owner), hold="upload")
        except OSError as exc:
            raise self._fail(f"writing {name}", exc) from None

    def put_bytes(self, data: bytes, name: str, owner: str) -> None:
        try:
            target = self._target(name)
            atomic_write_bytes(target, data, self.root / temp_name(safe_name(name), owner))
        except OSError as exc:
            raise self._fail(f"writing {name}", exc) from None

    def get(self, name: str, local: Path) -> None:
        src = self._file(name)
        if src is None or self._regular(src) is None:
            raise DestinationError(
                f"destination {self.name!r}: {name} does not exist (or is not a regular file)"
            )
        local = Path(local)
        try:
            atomic_copy(src, local, local.with_name(f".{local.name}.part"), hold="get")
        except OSError as exc:
            raise self._fail(f"reading {name}", exc) from None

    def sha256(self, name: str) -> Digest | None:
        path = self._file(name)
        if path is None or self._regular(path) is None:
            return None  # missing, or a symlink/folder: never taken as the archive
        try:
            with open(path, "rb") as f:
                stamp = _stamp(os.fstat(f.fileno()))  # before reading: a write during it changes ctime
                holds.hold("sha256")
                return Digest(sha256_of(f), "local", stamp)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(f"reading {name}", exc) from None

    def stamp(self, name: str) -> str | None:
        """Device, inode, size, mtime and ctime of the regular file at ``name`` (None if
        missing). Any write through the filesystem changes one of them — a rename over it
        the inode, a write, truncate, chmod or ``touch`` (even one that sets the mtime back)
        the ctime — so a stamp equal to the one of a proved sha256 means the same bytes."""
        try:
            st = self._regular(self._file(name))
        except OSError as exc:
            raise self._fail(f"checking {name}", exc) from None
        return None if st is None else _stamp(st)

    def size(self, name: str) -> int | None:
        try:
            st = self._regular(self._file(name))
        except OSError as exc:
            raise self._fail(f"checking the size of {name}", exc) from None
        return None if st is None else st.st_size

    def _folder(self, folder: str) -> Path | None:
        return self._confine("" if folder in ("", ".") else safe_name(folder), folder=True)

    def list(self, folder: str) -> list[str]:
        base = self._folder(folder)
        if base is None:
            return []
        prefix = "" if base == self.root else safe_name(folder) + "/"
        holds.hold("list")
        try:
            with os.scandir(base) as entries:
                return sorted(
                    prefix + e.name
                    for e in entries
                    if e.is_file(follow_symlinks=False) and not TMP_RE.match(e.name)
                )
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise self._fail(f"listing {folder or '/'}", exc) from None

    def delete(self, name: str) -> None:
        path = self._file(name)
        if path is None:  # the folder is missing too: nothing to delete
            return
        try:
            path.unlink(missing_ok=True)  # a symlink at the name: the link goes, never its target
            fsync_dir(path.parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._fail(f"deleting {name}", exc) from None

    def cleanup(self, folder: str, owner: str) -> builtins.list[str]:
        base = self._folder(folder)
        removed: builtins.list[str] = []
        if base is None:
            return removed
        try:
            with os.scandir(base) as entries:
                for e in entries:
                    if e.is_file(follow_symlinks=False) and is_temp(e.name, owner):
                        try:
                            os.unlink(e.path)
                        except FileNotFoundError:  # a concurrent cleanup got it first
                            continue
                        removed.append(e.name)
        except (FileNotFoundError, NotADirectoryError):
            return removed
        except OSError as exc:
            raise self._fail(f"cleaning temporaries in {folder or '/'}", exc) from None
        return removed

    def check(self) -> builtins.list[tuple[str, bool, str]]:
        out = [("folder exists", self.root.is_dir(), str(self.root))]
        if not out[0][1]:
            return out
        writable = os.access(self.root, os.W_OK | os.X_OK)
        out.append(("writable", writable, "" if writable else "no write permission"))
        try:
            usage = shutil.disk_usage(self.root)
        except OSError as exc:
            out.append(("free space", False, exc.strerror or str(exc)))
            return out
        out.append(
            (
                "free space",
                usage.free > 0,
                f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB",
            )
        )
        return out

    def close(self) -> None:
        pass


def _stamp(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
