"""Durable local file writes: temp name in the same folder, fsync, rename, fsync dir."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

from tableship.core import holds


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)
    fsync_dir(target.parent)


def _create(tmp: Path):
    """Open ``tmp`` for writing, exclusively: whatever is at that name (a stale temporary,
    or a symlink planted there) is removed first, never written through."""
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    return open(tmp, "xb")


def atomic_write_bytes(target: Path, data: bytes, tmp: Path | None = None) -> None:
    tmp = tmp or target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with _create(tmp) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _finish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(Path(target), text.encode("utf-8"))


def atomic_copy(src: Path, target: Path, tmp: Path, hold: str | None = None) -> None:
    """Copy ``src`` to ``target`` through ``tmp``; ``hold`` names a test hold point
    (``holds.py``) reached when ``tmp`` is complete but not yet renamed."""
    try:
        with open(src, "rb") as fi, _create(tmp) as fo:
            shutil.copyfileobj(fi, fo, 4 * 1024 * 1024)
            fo.flush()
            os.fsync(fo.fileno())
        if hold:
            holds.hold(hold)
        _finish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_of(f: io.BufferedIOBase) -> str:
    """The hex sha256 of what is left to read in binary file ``f``."""
    return hashlib.file_digest(f, "sha256").hexdigest()


def file_sha256(path: Path) -> str:
    """The hex sha256 of the file at ``path``."""
    with open(path, "rb") as f:
        return sha256_of(f)
