"""Logging: stderr + optional rotating log file, every line tagged with job and run id."""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import sys
from pathlib import Path

from tableship.core.redact import RedactingFormatter

current_job: contextvars.ContextVar[str] = contextvars.ContextVar("job", default="-")
current_run: contextvars.ContextVar[int | None] = contextvars.ContextVar("run", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(job)s%(run_tag)s] %(message)s"


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job = current_job.get()
        run = current_run.get()
        record.run_id = run
        record.run_tag = f"#{run}" if run is not None else ""
        return True


# extra= of a log record the run's summary and "Error:" line repeat: -q keeps it out of stderr
IN_SUMMARY = {"in_summary": True}


def _not_in_summary(record: logging.LogRecord) -> bool:
    return not getattr(record, "in_summary", False)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "job": getattr(record, "job", "-"),
            "run_id": getattr(record, "run_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is emitted, so a live progress display that
    redirects stderr (cli/progress.py) prints log lines above its own lines instead of over them."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(
    verbosity: int = 0,
    log_file: Path | None = None,
    *,
    json_format: bool = False,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
) -> None:
    """verbosity: -1 quiet (errors only), 0 info, 1+ debug. The file always gets info+."""
    logger = logging.getLogger("tableship")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    # every line (message, traceback, JSON) goes through the redactor (see redact.py)
    fmt = RedactingFormatter(
        JsonFormatter() if json_format else logging.Formatter(TEXT_FORMAT, "%Y-%m-%d %H:%M:%S")
    )
    stderr = CurrentStderrHandler()
    stderr.setLevel({-1: logging.ERROR, 0: logging.INFO}.get(verbosity, logging.DEBUG))
    stderr.setFormatter(fmt)
    stderr.addFilter(ContextFilter())
    if verbosity < 0:  # -q: a failure is printed once (the "Error:" line), not also as a log line
        stderr.addFilter(_not_in_summary)
    logger.addHandler(stderr)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        fh.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
        fh.setFormatter(fmt)
        fh.addFilter(ContextFilter())
        logger.addHandler(fh)
