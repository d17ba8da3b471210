"""Local-directory destination (also: NFS mounts, the demo's backup-server folder)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

from ..errors import DestinationError, TransientDestinationError
from ..fsutil import atomic_copy, atomic_write_bytes, fsync_dir
from .base import TMP_RE, is_temp, safe_name, temp_name


class LocalDestination:
    last_verify_method = "local"

    def __init__(self, name: str, cfg):
        self.name = name
        self.root = Path(cfg.path)

    def _path(self, name: str) -> Path:
        self._check_root()
        return self.root / safe_name(name)

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise DestinationError(
                f"destination {self.name!r}: folder {str(self.root)!r} does not exist",
                f"create it (mkdir -p {self.root}) or fix destinations.{self.name}.path",
            )

    def _fail(self, what: str, exc: OSError) -> DestinationError:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return DestinationError(f"destination {self.name!r}: {what}: permission denied ({exc.filename})",
                                    "make the folder writable by this user")
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DestinationError(f"destination {self.name!r}: {what}: no space left on device",
                                    "free space on the backup filesystem, then re-run to resume")
        return TransientDestinationError(f"destination {self.name!r}: {what}: {exc.strerror or exc}")

    def put(self, local: Path, name: str, owner: str) -> None:
        target = self._path(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_copy(Path(local), target, self.root / temp_name(safe_name(name), owner))
        except OSError as exc:
            raise self._fail(f"writing {name}", exc) from None

    def put_bytes(self, data: bytes, name: str, owner: str) -> None:
        target = self._path(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data, self.root / temp_name(safe_name(name), owner))
        except OSError as exc:
            raise self._fail(f"writing {name}", exc) from None

    def get(self, name: str, local: Path) -> None:
        src = self._path(name)
        if not src.is_file():
            raise DestinationError(f"destination {self.name!r}: {name} does not exist")
        local = Path(local)
        try:
            atomic_copy(src, local, local.with_name(f".{local.name}.part"))
        except OSError as exc:
            raise self._fail(f"reading {name}", exc) from None

    def sha256(self, name: str) -> str | None:
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                return hashlib.file_digest(f, "sha256").hexdigest()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(f"reading {name}", exc) from None

    def size(self, name: str) -> int | None:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(f"checking the size of {name}", exc) from None

    def list(self, folder: str) -> list[str]:
        self._check_root()
        base = self.root / safe_name(folder) if folder not in ("", ".") else self.root
        prefix = "" if base == self.root else safe_name(folder) + "/"
        try:
            with os.scandir(base) as entries:
                return sorted(prefix + e.name for e in entries if e.is_file() and not TMP_RE.match(e.name))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise self._fail(f"listing {folder or '/'}", exc) from None

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink(missing_ok=True)
            fsync_dir(self._path(name).parent)
        except FileNotFoundError:  # the folder is missing too: nothing to delete
            return
        except OSError as exc:
            raise self._fail(f"deleting {name}", exc) from None

    def cleanup(self, folder: str, owner: str) -> list[str]:
        self._check_root()
        base = self.root / safe_name(folder) if folder not in ("", ".") else self.root
        removed = []
        try:
            with os.scandir(base) as entries:
                for e in entries:
                    if e.is_file() and is_temp(e.name, owner):
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

    def check(self) -> list[tuple[str, bool, str]]:
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
        out.append(("free space", usage.free > 0, f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB"))
        return out

    def close(self) -> None:
        pass
