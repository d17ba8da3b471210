"""Per-job locks: ``fcntl.flock`` on ``state_dir/locks/<job>.lock``.

The kernel drops a flock when its process dies, so a crashed run never leaves a stale
lock. The file holds the owner's pid, host and start time for the "held by" message.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .errors import LockedError


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

    def acquire(self, wait: float = 0) -> "JobLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(wait, 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    o = self.owner()
                    holder = f"pid {o.get('pid', '?')} on {o.get('host', '?')} since {o.get('started', '?')}"
                    raise LockedError(
                        f"job {self.job!r} is already running ({holder})",
                        "wait for it to finish, or pass --wait SECONDS",
                    ) from None
                time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "JobLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
