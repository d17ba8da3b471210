"""The ledger's errors: every SQLite, OS or psycopg error on the ledger becomes one
:class:`LedgerError` line naming the file (or server) and the fix — corrupt, full,
read-only, locked (:class:`LedgerLockedError`, exit 75), unreachable (exit 75), written
by a newer tableship. Raised by :mod:`.schema` and the modules that query the ledger."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from tableship.core.errors import EXIT_LEDGER, EXIT_LOCKED, ConfigError, TableshipError


class LedgerError(TableshipError):
    """The ledger cannot be read or written (corrupt, full, read-only, newer). Exit 74."""

    exit_code = EXIT_LEDGER

    def __init__(self, message: str, hint: str, path: Path | None = None):
        super().__init__(message, hint)
        self.path = path


class LedgerLockedError(LedgerError):
    """Another process holds the ledger (or its migration lock) too long. Exit 75."""

    exit_code = EXIT_LOCKED
    transient = True


def backup_path(path: Path, version: int) -> Path:
    return path.with_name(f"{path.name}.v{version}.bak")


def _copies(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.v*.bak"))


def ledger_error(exc: BaseException, path: Path) -> LedgerError:
    """The one ``Error:`` line for an SQLite or OS error on the ledger at ``path``."""
    if isinstance(exc, LedgerError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc).strip() or type(exc).__name__
    err_no = getattr(exc, "errno", None)
    copies = _copies(path)
    copy = f"; the pre-migration copy is {copies[-1]}" if copies else ""
    aside = f"move it aside (mv {path} {path}.broken) and re-run — a new ledger starts empty{copy}"
    if err_no in (errno.ENOTDIR, errno.EEXIST):
        return LedgerError(
            f"the ledger {path} cannot be created: {getattr(exc, 'filename', None) or path.parent} "
            "is not a folder",
            "check that path (settings.state_dir): it must be a folder",
            path,
        )
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "database is locked" in text:
        return LedgerLockedError(
            f"the ledger {path} is locked by another process ({text})",
            "wait for the other tableship process to finish, then re-run",
            path,
        )
    if (
        primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
        or "not a database" in text
        or "malformed" in text
    ):
        return LedgerError(f"the ledger {path} is corrupt ({text})", aside, path)
    full = primary == sqlite3.SQLITE_FULL or err_no in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in text
    if not full and (primary == sqlite3.SQLITE_IOERR or err_no == errno.EIO):
        full = _no_space(path.parent)  # SQLite reports a full disk while growing -shm/-wal as an I/O error
    if full:
        return LedgerError(
            f"the ledger {path} cannot be written: the disk is full ({text})",
            f"free space on the file system of {path.parent} (or point settings.state_dir "
            "elsewhere), then re-run",
            path,
        )
    if (
        primary
        in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_AUTH)
        or err_no in (errno.EACCES, errno.EPERM, errno.EROFS)
        or "readonly" in text
    ):
        return LedgerError(
            f"the ledger {path} cannot be written ({text})",
            f"make {path.parent} and the files in it writable by this user (check chmod, "
            "chattr -i and read-only mounts) or point settings.state_dir elsewhere",
            path,
        )
    if primary == sqlite3.SQLITE_IOERR or err_no == errno.EIO:
        return LedgerError(
            f"the ledger {path} failed: I/O error ({text})",
            f"check the disk and free space under {path.parent}; if the file is damaged, {aside}",
            path,
        )
    return LedgerError(
        f"the ledger {path} failed: {text}",
        f"re-run with --debug and report it; if the file is damaged, {aside}",
        path,
    )


def _no_space(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


class LedgerUnreachableError(LedgerError):
    """The PostgreSQL ledger's server cannot be reached now. Exit 75 (temporary)."""

    exit_code = EXIT_LOCKED
    transient = True


def pg_error(exc: BaseException, where: str) -> BaseException:
    """The ledger's error for a psycopg error on ``where`` (a bug — a wrong query, a broken
    constraint — is returned as it is)."""
    if isinstance(exc, (LedgerError, ConfigError)):
        return exc
    if isinstance(exc, ImportError):
        return ConfigError(
            f"settings.state is a PostgreSQL ledger ({where}), which needs the Python package "
            "'psycopg', not installed",
            "install it with: pip install 'tableship[postgres]'",
        )
    try:
        import psycopg  # optional driver (tableship[postgres])
        from psycopg import errors as pe
    except ImportError:
        return exc
    if not isinstance(exc, psycopg.Error):
        return exc
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (pe.LockNotAvailable, pe.QueryCanceled, pe.DeadlockDetected)):
        return LedgerLockedError(
            f"the ledger {where} is locked by another process ({text})",
            "wait for the other tableship process to finish, then re-run",
        )
    if isinstance(exc, pe.DiskFull):
        return LedgerError(
            f"the ledger {where} cannot be written: the server's disk is full ({text})",
            "free space on the PostgreSQL server, then re-run",
        )
    if isinstance(exc, (pe.InsufficientPrivilege, pe.ReadOnlySqlTransaction)):
        return LedgerError(
            f"the ledger {where} cannot be written ({text})",
            "grant this user CREATE and read/write on the ledger's database (or point settings.state "
            "at a primary, not a standby), then re-run",
        )
    if isinstance(exc, (pe.InvalidAuthorizationSpecification, pe.InvalidPassword)):
        return LedgerError(
            f"the ledger {where} refused the login ({text})",
            "check the user and password of settings.state",
        )
    if isinstance(exc, (psycopg.IntegrityError, psycopg.ProgrammingError, psycopg.DataError)):
        return exc  # a bug, not the server's fault
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return LedgerUnreachableError(
            f"the ledger {where} cannot be reached ({text})",
            "check that the PostgreSQL server is up and reachable from this host (settings.state), "
            "then re-run",
        )
    return LedgerError(f"the ledger {where} failed: {text}", "re-run with --debug and report it")
