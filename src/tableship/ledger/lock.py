"""Per-job locks: ``fcntl.flock`` on ``state_dir/locks/<job>.lock``.

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
from pathlib import Path

from tableship.core.errors import LockedError


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
