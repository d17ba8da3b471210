"""The run ledger (SQLite or PostgreSQL, :mod:`.schema`): runs and their phase transitions.

Each run of a job for a window is a row in ``runs``; each transition is committed
(``synchronous=FULL``) before the next phase starts, so after a crash the ledger says
exactly which effects are durable. The tables themselves (these and the others in the
same database) are created and migrated by :mod:`.ledger`.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import socket
from dataclasses import dataclass, fields, replace
from typing import Any

from tableship.ledger.schema import Ledger, now


class Phase(enum.StrEnum):
    """Phases in order. A run's ``phase`` is the last phase whose effect is durable."""

    PLANNED = "planned"
    EXPORTED = "exported"
    UPLOADED = "uploaded"
    VERIFIED = "verified"
    DONE = "done"

    @property
    def rank(self) -> int:
        return list(Phase).index(self)

    def next(self) -> Phase | None:
        order = list(Phase)
        return order[self.rank + 1] if self.rank + 1 < len(order) else None


# The phase a run is *working on* when it is at a given durable phase (for messages).
WORKING_ON = {
    Phase.PLANNED: "export",
    Phase.EXPORTED: "upload",
    Phase.UPLOADED: "verify",
    Phase.VERIFIED: "clean",
    Phase.DONE: "done",
}


class Result(enum.StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    #: never stored: how :meth:`StateStore.history` shows a ``running`` run whose process is gone
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"  # given up: its config changed (identity) or `tableship abandon`


def allowed(current: Phase, target: Phase) -> bool:
    """Forward by exactly one step, or back to any earlier phase (redo after a bad check)."""
    return target.rank == current.rank + 1 or target.rank < current.rank


@dataclass
class Run:
    id: int
    job: str
    window_start: str
    window_end: str
    run_date: str
    phase: str
    result: str
    failed_phase: str | None
    error: str | None
    rows: int | None
    archive_bytes: int | None
    sha256: str | None
    file_name: str | None
    remote_path: str | None
    staged_path: str | None
    manifest: str | None
    verify_method: str | None
    attempts: int
    pid: int | None
    host: str | None
    started_at: str
    updated_at: str
    finished_at: str | None
    # run identity and attempts (issue 9; ledger migration 3)
    fingerprint: str | None = None
    attempt_started_at: str | None = None

    @property
    def window(self) -> str:
        return f"{self.window_start}..{self.window_end}"

    @property
    def duration(self) -> float | None:
        """This attempt's own duration (a resumed run: from its resumption to its end)."""
        if not self.finished_at:
            return None
        a = dt.datetime.fromisoformat(self.attempt_started_at or self.started_at)
        return (dt.datetime.fromisoformat(self.finished_at) - a).total_seconds()

    @property
    def elapsed(self) -> float | None:
        """From the first attempt's start to the end of the last one."""
        if not self.finished_at:
            return None
        a, b = dt.datetime.fromisoformat(self.started_at), dt.datetime.fromisoformat(self.finished_at)
        return (b - a).total_seconds()

    @property
    def unfinished(self) -> bool:
        """Work is left: not done, and not given up."""
        return self.phase != Phase.DONE.value and self.result != Result.ABANDONED.value

    def fingerprint_dict(self) -> dict | None:
        return json.loads(self.fingerprint) if self.fingerprint else None

    def manifest_dict(self) -> dict | None:
        return json.loads(self.manifest) if self.manifest else None

    @property
    def stored_bytes(self) -> int | None:
        """The bytes the run keeps on a destination: its archive, or with layout "chunk" its
        chunk archives plus the window manifest (``archive_bytes`` is then the manifest's own
        size, which is what the upload verifies, but not what a reader of a summary means)."""
        m = self.manifest_dict() or {}
        if m.get("kind") != "window-manifest":
            return self.archive_bytes
        return (self.archive_bytes or 0) + sum(c.get("archive_bytes") or 0 for c in m.get("chunks", []))

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "manifest"}
        d["window"] = self.window
        d["duration"] = self.duration
        d["elapsed"] = self.elapsed
        d.pop("fingerprint", None)
        return d


_COLS = [f.name for f in fields(Run)]


class StateStore(Ledger):
    """The runs of the ledger in ``state_dir/state.db`` (schema and connection: :mod:`.ledger`).

    ``readonly=True`` for commands that only read: they never create or migrate the file.
    """

    # -- queries
    def get(self, run_id: int) -> Run:
        row = self.connect().execute(f"SELECT {', '.join(_COLS)} FROM runs WHERE id=?", (run_id,)).fetchone()
        return Run(**dict(row))

    def resumable(self, job: str, start: str, end: str) -> Run | None:
        """The newest unfinished run of ``job`` for exactly this window, if any."""
        row = (
            self.connect()
            .execute(
                f"SELECT {', '.join(_COLS)} FROM runs WHERE job=? AND window_start=? AND window_end=? "
                "ORDER BY id DESC LIMIT 1",
                (job, start, end),
            )
            .fetchone()
        )
        if row is None:
            return None
        run = Run(**dict(row))
        return run if run.unfinished else None

    def runs_of(self, job: str) -> list[Run]:
        """Every run of ``job``, oldest first."""
        return [
            Run(**dict(r))
            for r in self.connect().execute(
                f"SELECT {', '.join(_COLS)} FROM runs WHERE job=? ORDER BY id", (job,)
            )
        ]

    def remote_paths(self, job: str) -> list[str]:
        """Where the job's runs put their archives, newest run first (one path per run)."""
        rows = self.connect().execute(
            "SELECT remote_path FROM runs WHERE job=? AND remote_path IS NOT NULL ORDER BY id DESC", (job,)
        )
        return [r["remote_path"] for r in rows]

    def unfinished(self, job: str) -> list[Run]:
        """The newest run of each window of ``job`` whose newest run is unfinished, oldest window first."""
        newest: dict[tuple[str, str], Run] = {}
        for r in self.runs_of(job):
            newest[(r.window_start, r.window_end)] = r
        return sorted(
            (r for r in newest.values() if r.unfinished), key=lambda r: (r.window_start, r.window_end)
        )

    def abandoned_windows(self, job: str) -> set[tuple[str, str]]:
        rows = self.connect().execute(
            "SELECT window_start, window_end FROM abandoned_windows WHERE job=?", (job,)
        )
        return {(r[0], r[1]) for r in rows}

    def abandon_window(self, job: str, start: str, end: str, reason: str, run_ids: list[int]) -> None:
        """Record that the user gave up a window (``tableship abandon``): it is no gap any more."""
        self.connect().execute(
            "INSERT INTO abandoned_windows (job, window_start, window_end, at, reason, runs) "
            "VALUES (?,?,?,?,?,?)",
            (job, start, end, now(), reason, json.dumps(run_ids)),
        )

    def abandon(self, run: Run, reason: str) -> Run:
        """Give up an unfinished run: it keeps its phase, ``result = abandoned``, the reason as its error."""
        t = now()
        db = self.connect()
        db.execute(
            "UPDATE runs SET result=?, error=?, finished_at=COALESCE(finished_at, ?), updated_at=? "
            "WHERE id=?",
            (Result.ABANDONED.value, reason, t, t, run.id),
        )
        self._log(run.id, Phase(run.phase), Phase(run.phase), f"abandoned: {reason}")
        return self.get(run.id)

    def history(self, job: str | None = None, limit: int = 20) -> list[Run]:
        """Runs, newest first; a ``running`` run whose process is gone shows as ``interrupted``."""
        return [self.liveness(r) for r in self._history(job, limit)]

    def liveness(self, run: Run) -> Run:
        """``run``, its result ``interrupted`` if it is recorded as running but its job's lock is free
        (the process died: ``kill -9``, a crash, a reboot). The next run of the job resumes it."""
        if run.result == Result.RUNNING.value and not self.run_alive(run.job, run.pid, run.host):
            return replace(run, result=Result.INTERRUPTED.value)
        return run

    def _history(self, job: str | None = None, limit: int = 20) -> list[Run]:
        sql = f"SELECT {', '.join(_COLS)} FROM runs"
        args: tuple = ()
        if job:
            sql += " WHERE job=?"
            args = (job,)
        sql += " ORDER BY id DESC LIMIT ?"
        return [Run(**dict(r)) for r in self.connect().execute(sql, (*args, limit))]

    def latest(self, job: str) -> Run | None:
        runs = self.history(job, 1)
        return runs[0] if runs else None

    def last_success(self, job: str) -> Run | None:
        row = (
            self.connect()
            .execute(
                f"SELECT {', '.join(_COLS)} FROM runs WHERE job=? AND result='success' ORDER BY id "
                "DESC LIMIT 1",
                (job,),
            )
            .fetchone()
        )
        return Run(**dict(row)) if row else None

    # -- transitions
    def start(self, job: str, start: str, end: str, run_date: str, fingerprint: str | None = None) -> Run:
        t = now()
        cur = self.connect().execute(
            "INSERT INTO runs (job, window_start, window_end, run_date, phase, result, pid, host, "
            "started_at, updated_at, "
            "fingerprint, attempt_started_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                job,
                start,
                end,
                run_date,
                Phase.PLANNED.value,
                Result.RUNNING.value,
                os.getpid(),
                socket.gethostname(),
                t,
                t,
                fingerprint,
                t,
            ),
        )
        assert cur.lastrowid is not None  # sqlite3 sets it after an INSERT
        self._log(cur.lastrowid, None, Phase.PLANNED, "planned")
        return self.get(cur.lastrowid)

    def resume(self, run: Run) -> Run:
        self.connect().execute(
            "UPDATE runs SET result=?, attempts=attempts+1, pid=?, host=?, error=NULL, failed_phase=NULL, "
            "finished_at=NULL, updated_at=?, attempt_started_at=? WHERE id=?",
            (Result.RUNNING.value, os.getpid(), socket.gethostname(), t := now(), t, run.id),
        )
        self._log(run.id, Phase(run.phase), Phase(run.phase), "resumed")
        return self.get(run.id)

    def set_fingerprint(self, run: Run, fingerprint: str) -> None:
        """Record the fingerprint of a run planned before its ledger kept one."""
        self.connect().execute("UPDATE runs SET fingerprint=? WHERE id=?", (fingerprint, run.id))

    def advance(self, run: Run, target: Phase, note: str = "", **values: Any) -> Run:
        """Record that ``target``'s effect is durable, with any run fields to update."""
        current = Phase(run.phase)
        if not allowed(current, target):
            raise RuntimeError(f"illegal phase transition {current.value} -> {target.value}")
        bad = set(values) - set(_COLS)
        if bad:
            raise KeyError(f"unknown run fields {bad}")
        if "manifest" in values and isinstance(values["manifest"], dict):
            values["manifest"] = json.dumps(values["manifest"], sort_keys=True)
        sets = ", ".join(f"{k}=?" for k in values)
        with self.transaction() as db:
            db.execute(
                f"UPDATE runs SET phase=?, updated_at=?{', ' + sets if sets else ''} WHERE id=?",
                (target.value, now(), *values.values(), run.id),
            )
            self._log(run.id, current, target, note)
        return self.get(run.id)

    def finish(
        self, run: Run, result: Result, error: str | None = None, failed_phase: str | None = None
    ) -> Run:
        self.connect().execute(
            "UPDATE runs SET result=?, error=?, failed_phase=?, finished_at=?, updated_at=? WHERE id=?",
            (result.value, error, failed_phase, now(), now(), run.id),
        )
        return self.get(run.id)

    def _log(self, run_id: int, from_phase: Phase | None, to_phase: Phase, note: str) -> None:
        self.connect().execute(
            "INSERT INTO transitions (run_id, at, from_phase, to_phase, note, host, pid) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                run_id,
                now(),
                from_phase.value if from_phase else None,
                to_phase.value,
                note,
                socket.gethostname(),
                os.getpid(),
            ),
        )
