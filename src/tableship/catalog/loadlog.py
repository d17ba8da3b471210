"""The ledger's ``restores`` and ``restore_loads`` tables (DDL: :mod:`tableship.ledger.schema`, step 4).

A restore of a range into a target is one ``restores`` row (``running`` → ``done`` or
``failed``). Each archive it loads is one ``restore_loads`` row: ``loading`` is written
*before* the archive's load starts, ``loaded`` after the target committed it. A re-run of
the same job, target and range whose last restore is not ``done`` resumes it: archives
``loaded`` are skipped; an archive left ``loading`` (a crash between the target's commit
and the ledger's) is loaded again, which replaces its spans and so never doubles a row.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from tableship.ledger.state import StateStore, now


@dataclass
class RestoreRecord:
    id: str
    state: str
    replace: bool
    loaded: dict[str, str]  # remote path → sha256 of the archives it loaded
    started_at: str

    @property
    def resumed(self) -> bool:
        return bool(self.loaded)


def open_restore(
    store: StateStore, job: str, target: str, start: str, end: str, replace: bool
) -> RestoreRecord:
    """The unfinished restore of (job, target, range) to resume, or a new one."""
    db = store.connect()
    row = db.execute(
        "SELECT id, state, replace_rows, started_at FROM restores WHERE job = ? AND target = ? AND "
        "range_start = ? AND range_end = ? ORDER BY started_at DESC, id DESC LIMIT 1",
        (job, target, start, end),
    ).fetchone()
    if row is not None and row[1] != "done":
        rid = row[0]
        loaded = dict(
            db.execute(
                "SELECT remote_path, sha256 FROM restore_loads WHERE restore_id = ? AND state = 'loaded'",
                (rid,),
            ).fetchall()
        )
        with store.transaction() as tx:
            tx.execute(
                "UPDATE restores SET state = 'running', pid = ?, host = ?, error = NULL WHERE id = ?",
                (os.getpid(), socket.gethostname(), rid),
            )
        return RestoreRecord(rid, "running", bool(row[2]) or replace, loaded, row[3])
    rid = uuid.uuid4().hex
    ts = now()
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO restores (id, job, target, range_start, range_end, replace_rows, state, started_at, "
            "host, pid) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
            (rid, job, target, start, end, 1 if replace else 0, ts, socket.gethostname(), os.getpid()),
        )
    return RestoreRecord(rid, "running", replace, {}, ts)


def loading(
    store: StateStore, rid: str, remote_path: str, sha256: str, destination: str, start: str, end: str
) -> None:
    with store.transaction() as tx:
        tx.execute("DELETE FROM restore_loads WHERE restore_id = ? AND remote_path = ?", (rid, remote_path))
        tx.execute(
            "INSERT INTO restore_loads (restore_id, remote_path, sha256, destination, load_start, load_end, "
            "state, started_at) VALUES (?, ?, ?, ?, ?, ?, 'loading', ?)",
            (rid, remote_path, sha256, destination, start, end, now()),
        )


def loaded(store: StateStore, rid: str, remote_path: str, rows: int) -> None:
    with store.transaction() as tx:
        tx.execute(
            "UPDATE restore_loads SET state = 'loaded', rows_loaded = ?, loaded_at = ? "
            "WHERE restore_id = ? AND remote_path = ?",
            (rows, now(), rid, remote_path),
        )


def finish(
    store: StateStore, rid: str, state: str, archives: int, rows: int, error: str | None = None
) -> None:
    with store.transaction() as tx:
        tx.execute(
            "UPDATE restores SET state = ?, finished_at = ?, archives = ?, rows_loaded = ?, error = ? "
            "WHERE id = ?",
            (state, now(), archives, rows, error, rid),
        )


def loads(store: StateStore, rid: str) -> list[tuple[str, str, int | None]]:
    """(remote path, state, rows) of a restore's archives, in load order."""
    return [
        tuple(r)
        for r in store.connect()
        .execute(
            "SELECT remote_path, state, rows_loaded FROM restore_loads WHERE restore_id = ? "
            "ORDER BY load_start",
            (rid,),
        )
        .fetchall()
    ]
