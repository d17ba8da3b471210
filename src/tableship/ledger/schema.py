"""The ledger: the one SQLite database (``state_dir/state.db``) and every table in it.

This module owns the schema. No other module runs DDL: the tables of the runs
(:mod:`.state`, :mod:`.deliveries`, :mod:`.chunks`), of incidents and the alert outbox
(``ops/alerts/incidents.py``), of verifications and prunes (``catalog/history.py``) and of
restores (``catalog/loadlog.py``) are all created and changed here, by the numbered
steps in :data:`MIGRATIONS`. Those modules keep their own queries on
:meth:`Ledger.connect`'s connection.

Versions. ``PRAGMA user_version`` holds the number of the last step applied. Step 1 is
exactly tableship 0.1.0's schema (0.1.0 never set ``user_version``, so a database with
tables and version 0 is recognised as version 1). Opening a ledger for writing applies
the missing steps once, in order, under an exclusive ``flock`` on ``state.db.lock``,
after copying the old file to ``state.db.v<N>.bak``; each step commits together with its
version number, so an interrupted migration resumes at the step it stopped in.

Read-only opening (``status``, ``history``, ``ls``, ``restore``) never creates,
migrates or writes the file: a missing ledger reads as an empty one (an in-memory
database with the current schema), an older one is copied into memory and migrated
there.

Every SQLite error leaves this module as a :class:`LedgerError` that names the file and
the fix (corrupt, full, read-only, locked, written by a newer tableship): :mod:`.errors`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tableship.core.version import __version__
from tableship.ledger import postgres
from tableship.ledger.errors import (
    LedgerError,
    LedgerLockedError,
    backup_path,
    ledger_error,
    pg_error,
)
from tableship.ledger.lock import JobLock, PgJobLock, flock_within, pg_lock_held, run_alive

log = logging.getLogger("tableship")


def now() -> str:
    """The ledger's timestamp: UTC ISO-8601 with milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


LEDGER_FILE = "state.db"
BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's transaction


# ---------------------------------------------------------------- migrations


def add_columns(*columns: str) -> str:
    """``ALTER TABLE t ADD COLUMN c TYPE;`` for each ``"t.c TYPE"``, one statement a line."""
    out = ""
    for column in columns:
        name, type_ = column.split(" ", 1)
        table, col = name.split(".")
        out += f"ALTER TABLE {table} ADD COLUMN {col} {type_};\n"
    return out


# Version 1: tableship 0.1.0, verbatim (then in its flat modules state.py, archives.py, alerts/incidents.py).
# Never edit it: old databases are recognised by it. Change the schema with a new step.
V1_RUNS = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    run_date TEXT NOT NULL,
    phase TEXT NOT NULL,
    result TEXT NOT NULL,
    failed_phase TEXT,
    error TEXT,
    rows INTEGER,
    archive_bytes INTEGER,
    sha256 TEXT,
    file_name TEXT,
    remote_path TEXT,
    staged_path TEXT,
    manifest TEXT,
    verify_method TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    pid INTEGER,
    host TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS runs_job ON runs(job, id);
CREATE TABLE IF NOT EXISTS transitions (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    at TEXT NOT NULL,
    from_phase TEXT,
    to_phase TEXT NOT NULL,
    note TEXT
);
"""

V1_ARCHIVES = """
CREATE TABLE IF NOT EXISTS verifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch TEXT NOT NULL,
    job TEXT NOT NULL,
    remote_path TEXT NOT NULL,
    window_start TEXT,
    window_end TEXT,
    status TEXT NOT NULL,
    detail TEXT,
    sha256 TEXT,
    method TEXT,
    verified_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verifications_job ON verifications(job, id);
CREATE INDEX IF NOT EXISTS verifications_path ON verifications(job, remote_path, id);
CREATE TABLE IF NOT EXISTS pruned (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    remote_path TEXT NOT NULL,
    window_start TEXT,
    window_end TEXT,
    sha256 TEXT,
    pruned_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pruned_job ON pruned(job, remote_path);
"""

V1_INCIDENTS = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    closed_at TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    first_run_id INTEGER,
    last_run_id INTEGER,
    last_failed_at TEXT,
    last_phase TEXT,
    last_error TEXT,
    resolved_run_id INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open ON incidents(job) WHERE closed_at IS NULL;
CREATE TABLE IF NOT EXISTS alert_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    job TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    failures INTEGER NOT NULL,
    state TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    counted_at TEXT,
    pid INTEGER,
    host TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS alert_messages_incident ON alert_messages(incident_id, channel);
CREATE INDEX IF NOT EXISTS alert_messages_budget ON alert_messages(counted_at);
CREATE INDEX IF NOT EXISTS alert_messages_job_state ON alert_messages(job, state);
"""

V2_MIGRATIONS_LOG = """
CREATE TABLE migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    tableship_version TEXT NOT NULL
);
CREATE INDEX transitions_run ON transitions(run_id);
"""

# Version 3 (issue 9): run identity and attempts; windows given up with `tableship abandon`.
V3_RUN_IDENTITY = (
    "\n"
    + add_columns("runs.fingerprint TEXT", "runs.attempt_started_at TEXT")
    + """CREATE TABLE abandoned_windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT,
    runs TEXT
);
CREATE INDEX abandoned_windows_job ON abandoned_windows(job, window_start, window_end);
"""
)

# Version 4 (issue 15): restores of a date range into a table, and each archive loaded by one.
# Text keys (no AUTOINCREMENT): the same statements run on the PostgreSQL ledger backend.
V4_RESTORE_LOADS = """
CREATE TABLE restores (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    target TEXT NOT NULL,
    range_start TEXT NOT NULL,
    range_end TEXT NOT NULL,
    replace_rows INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    host TEXT,
    pid INTEGER,
    archives INTEGER,
    rows_loaded INTEGER,
    error TEXT
);
CREATE INDEX restores_target ON restores(target, job, range_start, range_end);
CREATE TABLE restore_loads (
    restore_id TEXT NOT NULL REFERENCES restores(id),
    remote_path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    destination TEXT,
    load_start TEXT NOT NULL,
    load_end TEXT NOT NULL,
    state TEXT NOT NULL,
    rows_loaded INTEGER,
    started_at TEXT NOT NULL,
    loaded_at TEXT,
    PRIMARY KEY (restore_id, remote_path)
);
"""

# Version 5 (issue 12): one export delivered to several destinations, each its own record;
# verifications and prunes name the destination they were made on (NULL: the job's first).
V5_DELIVERIES = """
CREATE TABLE deliveries (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    job TEXT NOT NULL,
    destination TEXT NOT NULL,
    phase TEXT NOT NULL,
    result TEXT NOT NULL,
    remote_path TEXT,
    sha256 TEXT,
    verify_method TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    verified_at TEXT,
    PRIMARY KEY (run_id, destination)
);
CREATE INDEX deliveries_job ON deliveries(job, destination);
""" + add_columns("verifications.destination TEXT", "pruned.destination TEXT")

# Version 6 (issue 16): several hosts on one (PostgreSQL) ledger: who holds a job's lock, and
# which host and process recorded each phase.
V6_HOSTS = """
CREATE TABLE job_locks (
    job TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL
);
""" + add_columns("transitions.host TEXT", "transitions.pid INTEGER")

# Version 7 (issue 13): one row per chunk of a chunked run (ledger/chunks.py). A chunk is
# recorded once its effect is durable: appended to the window's staged archive and fsynced
# (layout "window": state "staged", with its byte range), or verified on the destination
# with its sidecars (layout "chunk": state "done"); "unchanged" = skipped, its archive from
# an earlier run verified and its engine fingerprint the same.
V7_CHUNKS = """
CREATE TABLE chunks (
    run_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    job TEXT NOT NULL,
    chunk_start TEXT NOT NULL,
    chunk_end TEXT NOT NULL,
    layout TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    rows INTEGER,
    csv_bytes INTEGER,
    archive_bytes INTEGER,
    byte_offset INTEGER,
    sha256 TEXT,
    file_name TEXT,
    remote_path TEXT,
    fingerprint TEXT,
    identity TEXT,
    manifest TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX chunks_by_job ON chunks(job, chunk_start, chunk_end);
"""

# Version 8 (issue 13): per destination, the stamp of a chunk archive (local destinations:
# device, inode, size, mtime, ctime) when its sha256 was proved there, as JSON
# {"<destination>": "<stamp>"}; a later run finding the same stamp need not read it again.
V8_CHUNK_STAMPS = """
ALTER TABLE chunks ADD COLUMN stamps TEXT;
"""

# Version 9: the copies of a chunk archive (layout "chunk"), one row per (run, chunk,
# destination), as ``deliveries`` is for a run's own archive (ledger/chunks.py). A chunk is
# "done" once every destination of its job holds a verified copy; until then its staged
# archive is kept and a re-run uploads only the missing copies.
V9_CHUNK_DELIVERIES = """
CREATE TABLE chunk_deliveries (
    run_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    job TEXT NOT NULL,
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    sha256 TEXT,
    verify_method TEXT,
    stamp TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    verified_at TEXT,
    PRIMARY KEY (run_id, seq, destination)
);
"""


@dataclass(frozen=True)
class Migration:
    """One forward step: SQL (a script of statements) or a function of the connection.

    It runs inside the transaction that also sets ``user_version`` to ``version``; it must
    not COMMIT itself. Steps never change once released: add a new one instead.
    """

    version: int
    description: str
    apply: str | Callable[[Any], None]


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "tableship 0.1.0 schema: runs, transitions, verifications, pruned, incidents, alert_messages",
        V1_RUNS + V1_ARCHIVES + V1_INCIDENTS,
    ),
    Migration(2, "migrations log; index transitions by run", V2_MIGRATIONS_LOG),
    Migration(3, "run fingerprint and attempt start; abandoned windows", V3_RUN_IDENTITY),
    Migration(4, "restores of a date range and the archives each loaded", V4_RESTORE_LOADS),
    Migration(
        5, "deliveries (one per destination of a run); destination of verifications, prunes", V5_DELIVERIES
    ),
    Migration(6, "job lock holders; host and pid of each transition", V6_HOSTS),
    Migration(7, "chunks of chunked runs", V7_CHUNKS),
    Migration(8, "stamps of chunk archives on their destinations", V8_CHUNK_STAMPS),
    Migration(9, "chunk deliveries (one per destination of a chunk archive)", V9_CHUNK_DELIVERIES),
]

LATEST = MIGRATIONS[-1].version


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script (so a step can run inside one transaction)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()


def _check_steps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1)), (
        "migrations must be 1, 2, 3…"
    )


_check_steps()

#: table → its identity column on PostgreSQL (for ``cursor.lastrowid``), from every step's DDL
IDENTITY = postgres.identity_columns(m.apply for m in MIGRATIONS if isinstance(m.apply, str))


_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


class _Connection(sqlite3.Connection):
    """A connection whose errors name the ledger file and the fix (see :func:`ledger_error`)."""

    ledger_path: Path = Path(LEDGER_FILE)

    def execute(self, *args, **kwargs):
        try:
            return super().execute(*args, **kwargs)
        except _BUGS:
            raise  # a wrong query or a constraint broken by the code: a bug, not the file's fault
        except sqlite3.Error as exc:
            raise ledger_error(exc, self.ledger_path) from exc

    def executemany(self, *args, **kwargs):
        try:
            return super().executemany(*args, **kwargs)
        except _BUGS:
            raise
        except sqlite3.Error as exc:
            raise ledger_error(exc, self.ledger_path) from exc


def _connect(target: str, path: Path, uri: bool = False) -> _Connection:
    db = sqlite3.connect(target, timeout=BUSY_TIMEOUT, isolation_level=None, uri=uri, factory=_Connection)
    db.ledger_path = path
    db.row_factory = sqlite3.Row
    return db


@contextlib.contextmanager
def transaction(db: Any) -> Iterator[Any]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on ``db`` (``ROLLBACK`` on any exception, signals included).

    The one way the ledger's writers group statements: the write lock is taken up front, so two
    processes never both read-then-write, and nothing half-done survives an error or a signal.
    ``BEGIN`` is inside the ``try``: a signal (``Interrupted``) arriving just as it returns
    must not leave the transaction open (the run's later "interrupted" update would go into
    it and be lost with it, the run left "running").
    """
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            # the first error is the one raised; a failing ROLLBACK must not hide it
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
        raise


# ---------------------------------------------------------------- the ledger


class Ledger:
    """The ledger: ``state_dir/state.db`` (SQLite; safe for several processes of one host: WAL,
    busy timeout), or a PostgreSQL database when ``url`` is given (``settings.state``; shared
    by several hosts, see :mod:`.postgres`).

    ``readonly=True``: never creates, migrates or writes it (see the module docstring).
    """

    def __init__(self, state_dir: Path, readonly: bool = False, url: str | None = None):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LEDGER_FILE
        self.readonly = readonly
        self.url = url or None
        #: how messages name the ledger (a PostgreSQL URL without its password)
        self.where = postgres.display_url(self.url) if self.url else str(self.path)
        self._db: Any = None
        self._lock_session: postgres.PgConnection | None = None

    @classmethod
    def of(cls, settings: Any, readonly: bool = False):
        """The ledger ``settings`` (the config's ``[settings]``) name: ``state`` or ``state_dir``."""
        state: Any = getattr(settings, "state", None)  # a SecretStr, a plain URL or None
        url = state.get_secret_value() if hasattr(state, "get_secret_value") else state
        return cls(settings.state_dir, readonly=readonly, url=url)

    @property
    def shared(self) -> bool:
        """Whether other hosts may use this ledger too (PostgreSQL)."""
        return self.url is not None

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def exists(self) -> bool:
        """Whether there is a ledger to read (a PostgreSQL ledger always is: it may be empty)."""
        return True if self.url else self.path.exists()

    def connect(self) -> Any:
        """The connection (``sqlite3.Connection``, or a :class:`.postgres.PgConnection` with the
        same methods). Opening a writable ledger migrates it."""
        if self._db is None:
            if self.url:
                self._db = self._open_pg()
                return self._db
            try:
                self._db = self._open_readonly() if self.readonly else self._open_writable()
            except (sqlite3.Error, OSError) as exc:
                raise ledger_error(exc, self.path) from exc
        return self._db

    def close(self) -> None:
        trips = sum(getattr(db, "round_trips", 0) for db in (self._db, self._lock_session) if db is not None)
        if trips:
            log.debug("ledger %s: %d round trips in this process", self.where, trips)
        for attr in ("_db", "_lock_session"):
            db = getattr(self, attr)
            if db is not None:
                setattr(self, attr, None)
                with contextlib.suppress(sqlite3.Error):
                    db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """:func:`transaction` on this ledger's connection (on PostgreSQL it also takes the
        ledger-wide write lock for the transaction, see :mod:`.postgres`)."""
        with transaction(self.connect()) as db:
            yield db

    def version(self) -> int:
        db = self.connect()
        if isinstance(db, postgres.PgConnection):
            return _pg_version(db)
        return db.execute("PRAGMA user_version").fetchone()[0]

    # -- locks
    def job_lock(self, job: str) -> JobLock | PgJobLock:
        """The job's lock: a ``flock`` beside an SQLite ledger, a session advisory lock on a
        PostgreSQL one (:class:`.lock.PgJobLock`: held by this process's lock session)."""
        if self.url:
            return PgJobLock(self._locks, job)
        return JobLock(self.state_dir, job)

    def _locks(self) -> postgres.PgConnection:
        if self._lock_session is None or self._lock_session.closed:
            self.connect()  # migrated first: the lock rows live in job_locks
            self._lock_session = postgres.connect(self.url or "", self.where, IDENTITY, pg_error)
        return self._lock_session

    def run_alive(self, job: str, pid: int | None, host: str | None) -> bool:
        """Whether a run recorded as running (by ``pid`` on ``host``) is still being worked on:
        its job's lock is held (on PostgreSQL: by any host's session)."""
        if self.url:
            db = self.connect()
            if not isinstance(db, postgres.PgConnection):
                return False  # an empty PostgreSQL ledger read through memory: nothing runs
            return pg_lock_held(db, job)
        return run_alive(self.state_dir, job, pid, host)

    # -- opening
    def _open_pg(self) -> Any:
        db = postgres.connect(self.url or "", self.where, IDENTITY, pg_error, readonly=self.readonly)
        try:
            found = _pg_version(db)
            if found > LATEST:
                raise LedgerError(
                    f"the ledger {self.where} has schema version {found}, newer than this tableship "
                    f"knows ({LATEST})",
                    "upgrade tableship (or point settings.state elsewhere)",
                )
            if found == LATEST:
                return db
            if self.readonly:
                if found == 0:  # nothing there yet: reads as an empty ledger, nothing is created
                    db.close()
                    return _memory(Path(self.where))
                raise LedgerError(
                    f"the ledger {self.where} has schema version {found}, older than this tableship's "
                    f"({LATEST}); a reading command does not migrate it",
                    "run 'tableship run' (or 'tableship state migrate --to' the same URL) with this "
                    "tableship once: a writing command migrates it",
                )
            _apply_pg(db, self.where)
        except BaseException:
            db.close()
            raise
        return db

    def _open_writable(self) -> _Connection:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        db = _connect(str(self.path), self.path)
        try:
            if _version(db) != LATEST:  # the common case costs one PRAGMA
                self._migrate_locked(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        except BaseException:
            db.close()
            raise
        return db

    def _open_readonly(self) -> _Connection:
        if not self.path.exists():
            return _memory(self.path)
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        db = _connect(uri, self.path, uri=True)
        try:
            try:
                found = _recognise(db, self.path)
            except LedgerError as exc:
                # A read-only folder or an immutable file: SQLite cannot create the WAL index
                # (-shm). Nobody can write such a file either, so reading it as immutable is safe.
                if not isinstance(
                    exc.__cause__, sqlite3.Error
                ) or exc.__cause__.sqlite_errorcode & 0xFF not in (
                    sqlite3.SQLITE_CANTOPEN,
                    sqlite3.SQLITE_READONLY,
                    sqlite3.SQLITE_IOERR,
                ):
                    raise
                db.close()
                db = _connect(uri + "&immutable=1", self.path, uri=True)
                found = _recognise(db, self.path)
            if found == LATEST:
                return db
            if found == 0:  # an empty file reads as an empty ledger
                db.close()
                return _memory(self.path)
            # an older ledger is read through a migrated copy in memory; the file stays as it is
            mem = _memory(self.path, migrate=False)
            db.backup(mem)
            _apply(mem, found, self.path, log_steps=False)
        except BaseException:
            db.close()
            raise
        db.close()
        return mem

    def _migrate_locked(self, db: _Connection) -> None:
        with _flock(self.lock_path, self.path):
            found = _recognise(db, self.path)
            if found == LATEST:
                return  # another process migrated it while we waited
            if found > 0:
                copy = backup_path(self.path, found)
                if not copy.exists():  # an earlier, interrupted migration's copy is the older one: keep it
                    _backup(db, copy, self.path)
                log.info(
                    "migrating the ledger %s from schema version %d to %d (copy of the old file: %s)",
                    self.path,
                    found,
                    LATEST,
                    copy,
                )
            _apply(db, found, self.path)


def _version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def _recognise(db: sqlite3.Connection, path: Path) -> int:
    """The schema version of ``db``: ``user_version``, or 1 for tableship 0.1.0's (0 = empty)."""
    v = _version(db)
    if v > LATEST:
        raise LedgerError(
            f"the ledger {path} has schema version {v}, newer than this tableship knows ({LATEST})",
            "upgrade tableship (or point settings.state_dir elsewhere)",
            path,
        )
    if v == 0:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        tables.discard("sqlite_sequence")
        if not tables:
            return 0
        if "runs" not in tables:
            raise LedgerError(
                f"{path} is not a tableship ledger (tables: {', '.join(sorted(tables))})",
                f"move it aside (mv {path} {path}.foreign) or point settings.state_dir elsewhere",
                path,
            )
        return 1  # 0.1.0 did not set user_version
    return v


def _apply(db: sqlite3.Connection, found: int, path: Path, log_steps: bool = True) -> None:
    """Apply the steps after ``found``, each in its own transaction with its version number.

    Version 1 is applied even to a recognised 0.1.0 database (``found == 1`` from version 0):
    its ``IF NOT EXISTS`` DDL adds the tables 0.1.0 created only on first use.
    """
    first = 1 if _version(db) == 0 else found + 1
    for step in MIGRATIONS[first - 1 :]:
        with transaction(db):
            if callable(step.apply):
                step.apply(db)
            else:
                for stmt in _statements(step.apply):
                    db.execute(stmt)
            if log_steps and step.version >= 2:  # the log itself arrives in step 2
                db.execute(
                    "INSERT INTO migrations VALUES (?,?,?,?)",
                    (step.version, step.description, now(), __version__),
                )
            db.execute(f"PRAGMA user_version = {int(step.version)}")


def _memory(path: Path, migrate: bool = True) -> _Connection:
    db = _connect(":memory:", path)
    if migrate:
        _apply(db, 0, path, log_steps=False)
    return db


def _backup(db: sqlite3.Connection, copy: Path, path: Path) -> None:
    """A consistent copy of the ledger (SQLite's online backup), written under a temporary name."""
    tmp = copy.with_name(copy.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        out = sqlite3.connect(tmp)
        try:
            db.backup(out)
        finally:
            out.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, copy)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _flock(lock_path: Path, path: Path, wait: float = BUSY_TIMEOUT) -> Iterator[None]:
    """Exclusive ``flock`` on the ledger's sibling lock file (migrations run once)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not flock_within(fd, wait):
            raise LedgerLockedError(
                f"the ledger {path} is being migrated by another process "
                f"(lock {lock_path} held for over {wait:.0f}s)",
                "wait for it to finish, then re-run",
                path,
            )
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------- PostgreSQL

#: the schema version of a PostgreSQL ledger (there is no PRAGMA user_version): one row
PG_VERSION_TABLE = "tableship_schema"


def _pg_version(db: Any) -> int:
    row = db.execute(f"SELECT to_regclass('{PG_VERSION_TABLE}') IS NOT NULL AS present").fetchone()
    if not row[0]:
        return 0
    row = db.execute(f"SELECT max(version) FROM {PG_VERSION_TABLE}").fetchone()
    return int(row[0] or 0)


def _apply_pg(db: Any, where: str) -> None:
    """Apply the missing steps, each in its own transaction under the ledger's write lock
    (``BEGIN IMMEDIATE`` → ``pg_advisory_xact_lock``): concurrent writers on other hosts wait,
    then find the step applied and skip it. PostgreSQL's DDL is transactional, so a step is
    applied whole or not at all."""
    for step in MIGRATIONS:
        with transaction(db):
            db.execute(f"CREATE TABLE IF NOT EXISTS {PG_VERSION_TABLE} (version INTEGER NOT NULL)")
            if _pg_version(db) >= step.version:
                continue
            if step.version == 1 or step.version == LATEST:
                log.info("migrating the ledger %s to schema version %d", where, step.version)
            if callable(step.apply):
                step.apply(db)
            else:
                for stmt in _statements(step.apply):
                    db.execute(stmt)
            if step.version >= 2:
                db.execute(
                    "INSERT INTO migrations VALUES (?,?,?,?)",
                    (step.version, step.description, now(), __version__),
                )
            db.execute(f"DELETE FROM {PG_VERSION_TABLE}")
            db.execute(f"INSERT INTO {PG_VERSION_TABLE} (version) VALUES (?)", (step.version,))
