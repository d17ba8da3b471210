"""Incidents and the alert outbox, in the ledger (SQLite; tables created by :mod:`..ledger`).

``incidents``: one row per outage of a job. Opened by the first failure, counted up by
each further failure, closed by the first success. At most one open incident per job
(a partial unique index enforces it).

``alert_messages``: the outbox. Every message the policy decides to send is first
inserted as ``pending`` *in the same transaction* that updates the incident, then moved
to ``sending`` (which also takes its slot in the hourly budget) before the channel is
called, and to ``sent`` / ``failed`` after. A process that dies in between leaves a
``pending`` row (never sent: delivered on the next run of that job) or a ``sending``
row (maybe sent: sent again *once*, as ``resending``; a ``resending`` row found later is
``abandoned``). So a crash can repeat one message once, never more, and never loses one.

States: pending, sending, resending, sent, failed, would_send (not prod), rate_limited,
abandoned. A channel counts as *alerted* for an incident when one of its failure
messages reached ``sending`` or beyond (except ``failed``) or was logged as
``would_send``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import sqlite3
from dataclasses import dataclass

from tableship.ledger.schema import transaction

#: states in which a failure message counts as having alerted its channel
ALERTED = ("sending", "resending", "sent", "would_send", "abandoned")
#: states that took a slot of the hourly budget
COUNTED = ("sending", "resending", "sent", "failed", "would_send", "abandoned")


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="microseconds")


@dataclass
class Incident:
    id: int
    job: str
    opened_at: str
    closed_at: str | None
    failures: int
    first_run_id: int | None
    last_run_id: int | None
    last_failed_at: str | None
    last_phase: str | None
    last_error: str | None
    resolved_run_id: int | None


@dataclass
class Message:
    id: int
    incident_id: int
    job: str
    channel: str
    kind: str
    failures: int
    state: str
    payload: str
    created_at: str
    updated_at: str
    counted_at: str | None
    pid: int | None
    host: str | None
    error: str | None


class IncidentStore:
    """Incident and outbox operations on the state store's connection (autocommit mode)."""

    def __init__(self, store):
        self.db: sqlite3.Connection = store.connect()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """The ledger's :func:`~tableship.ledger.schema.transaction` (several writes as one)."""
        return transaction(self.db)

    # -- incidents
    def open_incident(self, job: str) -> Incident | None:
        row = self.db.execute("SELECT * FROM incidents WHERE job=? AND closed_at IS NULL", (job,)).fetchone()
        return Incident(**dict(row)) if row else None

    def get_incident(self, incident_id: int) -> Incident:
        return Incident(
            **dict(self.db.execute("SELECT * FROM incidents WHERE id=?", (incident_id,)).fetchone())
        )

    def record_failure(
        self, job: str, now: str, run_id: int | None, phase: str | None, error: str | None
    ) -> Incident:
        inc = self.open_incident(job)
        if inc is None:
            cur = self.db.execute(
                "INSERT INTO incidents (job, opened_at, failures, first_run_id, last_run_id, last_failed_at, "
                "last_phase, last_error) VALUES (?,?,1,?,?,?,?,?)",
                (job, now, run_id, run_id, now, phase, error),
            )
            assert cur.lastrowid is not None  # sqlite3 sets it after an INSERT
            return self.get_incident(cur.lastrowid)
        self.db.execute(
            "UPDATE incidents SET failures=failures+1, last_run_id=?, last_failed_at=?, "
            "last_phase=?, last_error=? "
            "WHERE id=?",
            (run_id, now, phase, error, inc.id),
        )
        return self.get_incident(inc.id)

    def close(self, incident_id: int, now: str, run_id: int | None) -> Incident:
        self.db.execute(
            "UPDATE incidents SET closed_at=?, resolved_run_id=? WHERE id=?", (now, run_id, incident_id)
        )
        return self.get_incident(incident_id)

    def open_incidents(self) -> list[Incident]:
        return [
            Incident(**dict(r))
            for r in self.db.execute("SELECT * FROM incidents WHERE closed_at IS NULL ORDER BY opened_at")
        ]

    # -- outbox
    def last_alert(self, incident_id: int, channel: str) -> Message | None:
        """The newest failure message of this incident that alerted ``channel``."""
        row = self.db.execute(
            f"SELECT * FROM alert_messages WHERE incident_id=? AND channel=? AND kind!='resolved' "
            f"AND state IN ({','.join('?' * len(ALERTED))}) ORDER BY id DESC LIMIT 1",
            (incident_id, channel, *ALERTED),
        ).fetchone()
        return Message(**dict(row)) if row else None

    def alerted_channels(self, incident_id: int) -> list[str]:
        rows = self.db.execute(
            f"SELECT DISTINCT channel FROM alert_messages WHERE incident_id=? AND kind!='resolved' "
            f"AND state IN ({','.join('?' * len(ALERTED))})",
            (incident_id, *ALERTED),
        )
        return [r[0] for r in rows]

    def add_message(
        self, incident_id: int, job: str, channel: str, kind: str, failures: int, payload: str, now: str
    ) -> int:
        cur = self.db.execute(
            "INSERT INTO alert_messages (incident_id, job, channel, kind, failures, state, "
            "payload, created_at, "
            "updated_at, pid, host) VALUES (?,?,?,?,?,'pending',?,?,?,?,?)",
            (incident_id, job, channel, kind, failures, payload, now, now, os.getpid(), socket.gethostname()),
        )
        assert cur.lastrowid is not None  # sqlite3 sets it after an INSERT
        return cur.lastrowid

    def message(self, message_id: int) -> Message:
        return Message(
            **dict(self.db.execute("SELECT * FROM alert_messages WHERE id=?", (message_id,)).fetchone())
        )

    def set_state(
        self, message_id: int, state: str, now: str, error: str | None = None, counted_at: str | None = None
    ) -> None:
        self.db.execute(
            "UPDATE alert_messages SET state=?, updated_at=?, error=COALESCE(?, error), "
            "counted_at=COALESCE(?, counted_at), pid=?, host=? WHERE id=?",
            (state, now, error, counted_at, os.getpid(), socket.gethostname(), message_id),
        )

    def unfinished(self, job: str) -> list[Message]:
        rows = self.db.execute(
            "SELECT * FROM alert_messages WHERE job=? AND state IN "
            "('pending','sending','resending') ORDER BY id",
            (job,),
        )
        return [Message(**dict(r)) for r in rows]

    def used_budget(self, channel: str, since: str) -> int:
        return self.db.execute(
            f"SELECT COUNT(*) FROM alert_messages WHERE channel=? AND counted_at >= ? "
            f"AND state IN ({','.join('?' * len(COUNTED))})",
            (channel, since, *COUNTED),
        ).fetchone()[0]

    def counts(self) -> list[tuple[str, str, int]]:
        """(channel, state, messages) over the whole history (for metrics)."""
        return [
            (r[0], r[1], r[2])
            for r in self.db.execute(
                "SELECT channel, state, COUNT(*) FROM alert_messages GROUP BY channel, state"
            )
        ]


def open_incident_summaries(store) -> dict[str, dict]:
    """Open incidents by job, for ``tableship status`` and the status outputs."""
    inc = IncidentStore(store)
    out = {}
    for i in inc.open_incidents():
        channels = inc.alerted_channels(i.id)
        out[i.job] = {
            "id": i.id,
            "opened_at": i.opened_at,
            "failures": i.failures,
            "last_failed_at": i.last_failed_at,
            "last_phase": i.last_phase,
            "last_error": i.last_error,
            "alerted": bool(channels),
            "alerted_channels": channels,
        }
    return out
