"""Deliveries: one row per (run, destination) — where the one export of a run was sent.

A run exports once and is delivered to each of its job's destinations: upload, verify,
sidecars. Each delivery records its own phase (``pending`` → ``uploaded`` → ``verified``),
result, remote path, sha256 (of the archive *that* destination holds: an archive exported
again after its staged copy was lost may differ in bytes from one delivered earlier) and
times. A run is done only when every delivery is verified; a re-run skips the verified
ones. Table and migration: :mod:`tableship.ledger.schema` (step 4). Queries are plain SQL
(no upsert syntax): the caller holds the job's lock, so read-then-write cannot race.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any

from tableship.ledger.schema import Ledger

PENDING = "pending"
UPLOADED = "uploaded"
VERIFIED = "verified"


@dataclass(frozen=True)
class Delivery:
    run_id: int
    job: str
    destination: str
    phase: str
    result: str  # running | success | failed
    remote_path: str | None
    sha256: str | None
    verify_method: str | None
    error: str | None
    attempts: int
    started_at: str
    updated_at: str
    verified_at: str | None

    @property
    def verified(self) -> bool:
        return self.phase == VERIFIED

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_COLS = [f.name for f in fields(Delivery)]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def of_run(store: Ledger, run_id: int) -> dict[str, Delivery]:
    """The deliveries of a run by destination name."""
    rows = store.connect().execute(
        f"SELECT {', '.join(_COLS)} FROM deliveries WHERE run_id=? ORDER BY destination", (run_id,)
    )
    return {r["destination"]: Delivery(**dict(r)) for r in rows}


def record(
    store: Ledger, run_id: int, job: str, destination: str, phase: str, result: str, **values: Any
) -> None:
    """Insert or update the delivery of ``run_id`` to ``destination``."""
    bad = set(values) - set(_COLS)
    if bad:
        raise KeyError(f"unknown delivery fields {bad}")
    t = _now()
    db = store.connect()
    found = db.execute(
        "SELECT attempts FROM deliveries WHERE run_id=? AND destination=?", (run_id, destination)
    ).fetchone()
    if found is None:
        cols = {"run_id": run_id, "job": job, "destination": destination, "phase": phase, "result": result}
        cols |= {"attempts": 1, "started_at": t, "updated_at": t, **values}
        db.execute(
            f"INSERT INTO deliveries ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            tuple(cols.values()),
        )
        return
    cols = {"phase": phase, "result": result, "updated_at": t, **values}
    db.execute(
        f"UPDATE deliveries SET {', '.join(f'{k}=?' for k in cols)} WHERE run_id=? AND destination=?",
        (*cols.values(), run_id, destination),
    )


def start_attempt(
    store: Ledger, run_id: int, job: str, destination: str, remote_path: str, sha256: str
) -> None:
    """A delivery is being worked on (a new row, or another attempt of a failed one)."""
    db = store.connect()
    found = db.execute(
        "SELECT phase FROM deliveries WHERE run_id=? AND destination=?", (run_id, destination)
    ).fetchone()
    if found is None:
        record(store, run_id, job, destination, PENDING, "running", remote_path=remote_path, sha256=sha256)
        return
    db.execute(
        "UPDATE deliveries SET result='running', error=NULL, attempts=attempts+1, remote_path=?, sha256=?, "
        "updated_at=? WHERE run_id=? AND destination=?",
        (remote_path, sha256, _now(), run_id, destination),
    )
