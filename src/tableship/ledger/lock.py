"""Per-job locks: ``fcntl.flock`` on ``state_dir/locks/<job>.lock`` (an SQLite ledger), or a
PostgreSQL session advisory lock (:class:`PgJobLock`, a ledger shared by several hosts).

The kernel drops a flock when its process dies, so a crashed run never leaves a stale
lock. The file holds the owner's pid, host and start time for the "held by" message.

The lock also tells whether a run recorded as ``running`` is alive (:func:`run_alive`):
a run is live only while its job's lock is held. Whether it is held is read from
``/proc/locks`` — never by trying the lock, which would make a run starting at that
moment see it taken and skip with exit 75. Without ``/proc/locks`` the recorded pid is
checked instead.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from tableship.core.errors import LockedError
from tableship.ledger.postgres import PgConnection, advisory_key


def _held_flocks() -> set[tuple[int, int, int]] | None:
    """(major, minor, inode) of every file with a granted flock, from /proc/locks (None if unreadable)."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    held = set()
    for line in text.splitlines():
        parts = line.split()  # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5343449 0 EOF"; waiters have "->"
        if len(parts) >= 6 and parts[1] == "FLOCK":
            try:
                major, minor, inode = parts[5].split(":")
                held.add((int(major, 16), int(minor, 16), int(inode)))
            except ValueError:
                continue
    return held


def pid_alive(pid: int | None) -> bool:
    """Whether a process ``pid`` exists on this host (one we may not signal counts)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_alive(state_dir: Path, job: str, pid: int | None, host: str | None) -> bool:
    """Whether a run recorded as running (by ``pid`` on ``host``) is still being worked on."""
    if host and host != socket.gethostname():
        return True  # another host's process: nothing here can tell, so trust the ledger
    path = JobLock(state_dir, job).path
    held = _held_flocks()
    if held is None:
        return pid_alive(pid)
    try:
        st = os.stat(path)
    except OSError:
        return False  # no lock file: nobody holds it
    # held by the run's own process, or by a new run of the job about to resume it
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) in held


def flock_within(fd: int, wait: float) -> bool:
    """Take an exclusive ``flock`` on ``fd``, trying for up to ``wait`` seconds (polling:
    a blocking flock could not be given a deadline). False when still held by another."""
    deadline = time.monotonic() + max(wait, 0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))


class JobLock:
    def __init__(self, state_dir: Path, job: str):
        self.path = Path(state_dir) / "locks" / f"{job}.lock"
        self.job = job
        self._fd: int | None = None

    def owner(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self, wait: float = 0) -> JobLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not flock_within(fd, wait):
            os.close(fd)
            o = self.owner()
            holder = f"pid {o.get('pid', '?')} on {o.get('host', '?')} since {o.get('started', '?')}"
            raise LockedError(
                f"job {self.job!r} is already running ({holder})",
                "wait for it to finish, or pass --wait SECONDS",
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JobLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------- PostgreSQL ledgers


def job_key(job: str) -> int:
    return advisory_key("job:" + job)


def pg_lock_held(db: PgConnection, job: str) -> bool:
    """Whether any session (any host) holds the job's advisory lock (read from ``pg_locks``,
    never by trying it: see :func:`run_alive`)."""
    key = job_key(job)
    row = db.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = ? "
        "AND objid::bigint = ? AND objsubid = 1 AND granted",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    ).fetchone()
    return bool(row[0])


class PgJobLock:
    """A job's lock on a PostgreSQL ledger, for every host that shares it.

    A *session* advisory lock (``pg_try_advisory_lock``) held by the process's lock session
    (one connection per process, beside the ledger's own). Chosen over a lease row with a
    heartbeat because the server itself frees it when the session ends — a killed process
    at once (its kernel closes the socket), a vanished host within the keepalive bound of
    :mod:`.postgres` (about 25-30 s) — with no heartbeat thread to keep alive during a long
    export and no clock to trust across hosts. ``job_locks`` records the holder's host, pid
    and start for ``status`` and the "held by" message; a row left by a dead holder is only
    information (the advisory lock is the truth) and is overwritten by the next holder.
    """

    def __init__(self, session: Callable[[], PgConnection], job: str):
        self._session = session
        self.job = job
        self.key = job_key(job)
        self._db: PgConnection | None = None

    def owner(self) -> dict:
        db = self._db or self._session()
        row = db.execute("SELECT host, pid, started_at FROM job_locks WHERE job=?", (self.job,)).fetchone()
        return {"host": row[0], "pid": row[1], "started": row[2]} if row else {}

    def _try(self, db: PgConnection) -> bool:
        if self.key in db.held:
            return False  # another thread of this process holds it
        ok = bool(db.execute("SELECT pg_try_advisory_lock(?)", (self.key,)).fetchone()[0])
        if ok:
            db.held.add(self.key)
        return ok

    def acquire(self, wait: float = 0) -> PgJobLock:
        db = self._session()
        deadline = time.monotonic() + max(wait, 0)
        while not self._try(db):
            if time.monotonic() >= deadline:
                o = self.owner()
                holder = f"pid {o.get('pid', '?')} on {o.get('host', '?')} since {o.get('started', '?')}"
                raise LockedError(
                    f"job {self.job!r} is already running ({holder})",
                    "wait for it to finish, or pass --wait SECONDS",
                )
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
        self._db = db
        try:
            db.execute(
                "INSERT INTO job_locks (job, host, pid, started_at) VALUES (?,?,?,?) ON CONFLICT (job) "
                "DO UPDATE SET host=excluded.host, pid=excluded.pid, started_at=excluded.started_at",
                (
                    self.job,
                    socket.gethostname(),
                    os.getpid(),
                    dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                ),
            )
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        db, self._db = self._db, None
        if db is None or db.closed:
            return
        try:
            db.execute(
                "DELETE FROM job_locks WHERE job=? AND pid=? AND host=?",
                (self.job, os.getpid(), socket.gethostname()),
            )
        finally:
            db.execute("SELECT pg_advisory_unlock(?)", (self.key,))
            db.held.discard(self.key)

    def __enter__(self) -> PgJobLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
