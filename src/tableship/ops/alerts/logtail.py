"""The tail of a run's log, for the alert body.

One in-memory handler on the ``tableship`` logger keeps, per job, the last N formatted
lines logged while that job was the current one (``log.current_job``). The runner runs
one job at a time per process, so the lines buffered for a job between two of its
events are exactly the lines of its current run — also when no ``log_file`` is
configured, and without re-reading a rotated file.
"""

from __future__ import annotations

import collections
import logging
import threading

from tableship.core.log import TEXT_FORMAT, ContextFilter, current_job

MAX_LINE = 1000  # characters kept of one log line


class TailHandler(logging.Handler):
    def __init__(self, lines: int):
        super().__init__(logging.INFO)
        self.lines = max(lines, 0)
        self.buffers: dict[str, collections.deque[str]] = {}
        self._buf_lock = threading.Lock()
        self.setFormatter(logging.Formatter(TEXT_FORMAT, "%Y-%m-%d %H:%M:%S"))
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        if self.lines == 0:
            return
        job = current_job.get()
        if job == "-":
            return
        try:
            text = self.format(record)
        except Exception:  # never let the tail break logging
            return
        with self._buf_lock:
            buf = self.buffers.setdefault(job, collections.deque(maxlen=self.lines))
            for line in text.splitlines() or [""]:
                buf.append(line if len(line) <= MAX_LINE else line[:MAX_LINE] + " …")

    def take(self, job: str) -> list[str]:
        """The buffered lines of ``job`` (and forget them)."""
        with self._buf_lock:
            buf = self.buffers.pop(job, None)
        return list(buf) if buf else []

    def clear(self, job: str) -> None:
        with self._buf_lock:
            self.buffers.pop(job, None)


def install(lines: int) -> TailHandler:
    """The tail handler on the ``tableship`` logger (added once; setup_logging removes it)."""
    logger = logging.getLogger("tableship")
    for h in logger.handlers:
        if isinstance(h, TailHandler):
            h.lines = max(lines, 0)
            return h
    h = TailHandler(lines)
    logger.addHandler(h)
    return h
