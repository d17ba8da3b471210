"""The alert event: what happened, and its rendering as subject, text body, JSON and env.

An :class:`Event` is built once by the incident policy, stored as JSON in the outbox
(so that a message replayed after a crash is the same message) and rendered by each
channel. Secrets are removed before an event is built (see :mod:`.redact`).

Event kinds:

* ``failed`` — first alert of an incident (or first one a channel could deliver);
* ``still_failing`` — a reminder: the incident is still open after ``realert_after``;
* ``resolved`` — the job succeeded again; the incident is closed.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from tableship.core.version import __version__

#: the event kinds (see the module doc)
Kind = Literal["failed", "still_failing", "resolved"]


def to_datetime(value: str) -> dt.datetime:
    """A ledger timestamp (ISO 8601; naive ones are UTC) as an aware datetime."""
    t = dt.datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def parse_ts(value: str | None) -> dt.datetime | None:
    return to_datetime(value) if value else None


def short_ts(value: str | None) -> str:
    """``2026-11-26T02:00:03+00:00`` → ``2026-11-26 02:00:03Z``."""
    t = parse_ts(value)
    if t is None:
        return "-"
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def resume_command(config_path: str, job: str, start: str | None, end: str | None) -> str:
    argv = ["tableship", "--config", config_path, "run", job]
    if start and end:
        argv += ["--from", start, "--to", end]
    return " ".join(shlex.quote(a) for a in argv)


@dataclass
class Event:
    kind: Kind
    job: str
    table: str
    window_start: str | None
    window_end: str | None
    host: str
    environment: str
    incident_id: int
    opened_at: str
    failures: int  # failures in the incident so far
    failures_since_last_alert: int  # failures this channel has not been told about yet
    run_id: int | None = None
    attempts: int | None = None
    phase: str | None = None  # failing phase (failed / still_failing)
    error: str | None = None
    last_failed_at: str | None = None
    resolved_at: str | None = None
    outage_seconds: float | None = None
    rows: int | None = None  # resolved: rows of the successful run
    archive_bytes: int | None = None
    remote_path: str | None = None
    resume_command: str | None = None
    destinations: list[str] = field(default_factory=list)  # the job's, in order
    failed_destinations: list[str] = field(default_factory=list)  # those whose delivery failed
    config_path: str | None = None
    log_tail: list[str] = field(default_factory=list)
    realert_after_seconds: float | None = None
    created_at: str = ""

    # -- serialisation (the outbox stores events as JSON)
    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Event:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    # -- rendering
    @property
    def window(self) -> str:
        return f"{self.window_start}..{self.window_end}" if self.window_start else "-"

    @property
    def destination_text(self) -> str:
        """``edge1, edge2 (failed: edge2)``; ``-`` for an event stored before destinations were."""
        if not self.destinations:
            return "-"
        failed = [d for d in self.destinations if d in self.failed_destinations]
        return ", ".join(self.destinations) + (f" (failed: {', '.join(failed)})" if failed else "")

    @property
    def dedup_key(self) -> str:
        """Stable per incident: ticket systems can group every message of one incident."""
        return f"tableship/{self.host}/{self.job}/{self.incident_id}"

    @property
    def subject(self) -> str:
        if self.kind == "resolved":
            return (
                f"[tableship] RESOLVED {self.job} {self.window} after {human_duration(self.outage_seconds)} "
                f"({_n(self.failures, 'failure')})"
            )
        phase = f" ({self.phase})" if self.phase else ""
        if self.kind == "still_failing":
            return (
                f"[tableship] STILL FAILING {self.job} {self.window}{phase}: "
                f"{_n(self.failures, 'failure')} since {short_ts(self.opened_at)}"
            )
        return f"[tableship] FAILED {self.job} {self.window}{phase}"

    def text(self) -> str:
        """The plain-text body (email, command stdin, ping body)."""
        if self.kind == "resolved":
            return self._resolved_text()
        lines = [
            f"tableship backup job {self.job} "
            + ("FAILED" if self.kind == "failed" else "is STILL FAILING")
            + (f" in phase {self.phase}." if self.phase else "."),
            "",
            f"Job:          {self.job}",
            f"Table:        {self.table}",
            f"Window:       {self.window}",
            f"Phase:        {self.phase or '-'}",
            f"Destination:  {self.destination_text}",
            f"Error:        {self.error or '-'}",
            f"Host:         {self.host}",
            f"Run id:       {self.run_id if self.run_id is not None else '-'} (attempt {self.attempts or 1})",
            f"Incident:     #{self.incident_id}, open since {short_ts(self.opened_at)}, "
            f"{_n(self.failures, 'failure')} ({self.failures_since_last_alert} since the last alert)",
            f"Environment:  {self.environment}",
            "",
            "Resume with:",
            f"  {self.resume_command}",
            "",
        ]
        if self.log_tail:
            n = len(self.log_tail)
            lines.append(f"Last {n} log line{'' if n == 1 else 's'} of this run:")
            lines += [f"  {line}" for line in self.log_tail]
            lines.append("")
        lines += [
            "--",
            f"tableship {__version__} on {self.host}. Further failures of {self.job} are counted but not "
            f"alerted again until it succeeds (a RESOLVED message follows) or "
            f"{human_duration(self.realert_after_seconds)} have passed (alerts.realert_after).",
        ]
        return "\n".join(lines) + "\n"

    def _resolved_text(self) -> str:
        lines = [
            f"tableship backup job {self.job} succeeded again: incident #{self.incident_id} is resolved.",
            "",
            f"Job:          {self.job}",
            f"Table:        {self.table}",
            f"Outage:       {human_duration(self.outage_seconds)} "
            f"(from {short_ts(self.opened_at)} to {short_ts(self.resolved_at)})",
            f"Failures:     {self.failures}",
            f"Last error:   {self.error or '-'}",
            f"Successful run: {self.run_id} (attempt {self.attempts or 1}), window {self.window}, "
            f"{self.rows if self.rows is not None else '-'} rows, "
            f"{self.archive_bytes if self.archive_bytes is not None else '-'} archive bytes"
            + (f" → {self.remote_path}" if self.remote_path else ""),
            f"Host:         {self.host}",
            f"Environment:  {self.environment}",
            "",
            "--",
            f"tableship {__version__} on {self.host}.",
        ]
        return "\n".join(lines) + "\n"

    def payload(self) -> dict:
        """The webhook JSON body (documented in docs/alerts.md)."""
        return {
            "source": "tableship",
            "version": __version__,
            "event": self.kind,
            "status": "resolved" if self.kind == "resolved" else "failing",
            "subject": self.subject,
            "text": self.text(),
            "dedup_key": self.dedup_key,
            "incident_id": self.incident_id,
            "job": self.job,
            "table": self.table,
            "window": {"start": self.window_start, "end": self.window_end},
            "phase": self.phase,
            "error": self.error,
            "destinations": list(self.destinations),
            "failed_destinations": list(self.failed_destinations),
            "host": self.host,
            "environment": self.environment,
            "run_id": self.run_id,
            "attempts": self.attempts,
            "failures": self.failures,
            "failures_since_last_alert": self.failures_since_last_alert,
            "opened_at": self.opened_at,
            "last_failed_at": self.last_failed_at,
            "resolved_at": self.resolved_at,
            "outage_seconds": self.outage_seconds,
            "rows": self.rows,
            "archive_bytes": self.archive_bytes,
            "remote_path": self.remote_path,
            "resume_command": self.resume_command,
            "log_tail": list(self.log_tail),
            "created_at": self.created_at,
        }

    def environ(self) -> dict[str, str]:
        """``TABLESHIP_*`` environment variables for the command channel."""
        values = {
            "EVENT": self.kind,
            "STATUS": "resolved" if self.kind == "resolved" else "failing",
            "SUBJECT": self.subject,
            "JOB": self.job,
            "TABLE": self.table,
            "WINDOW": self.window,
            "WINDOW_START": self.window_start,
            "WINDOW_END": self.window_end,
            "PHASE": self.phase,
            "DESTINATIONS": ",".join(self.destinations),
            "FAILED_DESTINATIONS": ",".join(self.failed_destinations),
            "ERROR": self.error,
            "HOST": self.host,
            "ENVIRONMENT": self.environment,
            "RUN_ID": self.run_id,
            "ATTEMPTS": self.attempts,
            "INCIDENT_ID": self.incident_id,
            "DEDUP_KEY": self.dedup_key,
            "FAILURES": self.failures,
            "FAILURES_SINCE_LAST_ALERT": self.failures_since_last_alert,
            "OPENED_AT": self.opened_at,
            "RESOLVED_AT": self.resolved_at,
            "OUTAGE_SECONDS": None if self.outage_seconds is None else int(round(self.outage_seconds)),
            "RESUME_COMMAND": self.resume_command,
            "LOG_TAIL": "\n".join(self.log_tail),
            "JSON": json.dumps(self.payload(), ensure_ascii=False),
        }
        return {f"TABLESHIP_{k}": "" if v is None else str(v) for k, v in values.items()}


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
