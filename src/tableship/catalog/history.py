"""The catalog's tables in the ledger, read and written only here: ``verifications``
(every ``verify`` result) and ``pruned`` (the archives ``prune`` deleted or began
deleting). The DDL lives with every other table in :mod:`tableship.ledger.schema`.
"""

from __future__ import annotations

import logging

from tableship.catalog.records import SEVERITY, Archive, JobVerification, Status
from tableship.ledger.state import StateStore, now

log = logging.getLogger("tableship")


def db(store: StateStore):
    """The ledger's connection (the tables' DDL: :mod:`tableship.ledger.schema`)."""
    return store.connect()


def pruned_paths(
    store: StateStore | None, job: str, destination: str | None = None
) -> dict[str, set[str | None]]:
    """remote_path → the sha256s prune deleted (or began deleting) under that name (on
    ``destination``; rows from before destinations were recorded count for every one)."""
    if store is None or not store.exists():
        return {}
    out: dict[str, set[str | None]] = {}
    rows = db(store).execute(
        "SELECT remote_path, sha256 FROM pruned WHERE job=? AND (destination IS NULL OR destination=?)",
        (job, destination or ""),
    )
    for r in rows:
        out.setdefault(r["remote_path"], set()).add(r["sha256"])
    return out


def last_status(
    store: StateStore | None, job: str, destination: str | None = None
) -> dict[str, tuple[str, str | None, str]]:
    """remote_path → (status, sha256, verified_at) of its newest verification on ``destination``
    (rows from before destinations were recorded count for every one)."""
    if store is None or not store.exists():
        return {}
    rows = db(store).execute(
        "SELECT remote_path, status, sha256, verified_at FROM verifications WHERE id IN "
        "(SELECT max(id) FROM verifications WHERE job=? AND (destination IS NULL OR destination=?) "
        "GROUP BY remote_path)",
        (job, destination or ""),
    )
    return {r["remote_path"]: (r["status"], r["sha256"], r["verified_at"]) for r in rows}


def record(store: StateStore, jv: JobVerification) -> None:
    if store.readonly:
        log.info("%s: no ledger at %s: the verification results are not recorded", jv.job, store.where)
        return
    with store.transaction() as con:
        for r in jv.results:
            a = r.archive
            con.execute(
                "INSERT INTO verifications (batch, job, remote_path, window_start, window_end, "
                "status, detail, sha256, "
                "method, verified_at, destination) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    jv.batch,
                    jv.job,
                    a.remote_path,
                    a.window.start.isoformat() if a.window else None,
                    a.window.end.isoformat() if a.window else None,
                    r.status.value,
                    r.detail,
                    r.remote_sha256 or a.sha256,
                    r.method,
                    jv.at,
                    a.destination or jv.destination,
                ),
            )


def last_verification(store: StateStore, job: str) -> dict | None:
    """The job's newest ``verify`` batch: when, how many, per status; for ``status``."""
    if not store.exists():
        return None
    con = db(store)
    row = con.execute(
        "SELECT batch, verified_at FROM verifications WHERE job=? ORDER BY id DESC LIMIT 1", (job,)
    ).fetchone()
    if row is None:
        return None
    counts = {s.value: 0 for s in SEVERITY}
    for r in con.execute(
        "SELECT status, count(*) AS n FROM verifications WHERE batch=? AND job=? GROUP BY status",
        (row["batch"], job),
    ):
        counts[r["status"]] = r["n"]
    total = sum(counts.values())
    bad = [f"{n} {s}" for s, n in counts.items() if n and s != Status.OK.value]
    at = str(row["verified_at"]).replace("T", " ").replace("+00:00", "Z")
    text = (f"OK {total}/{total}" if not bad else ", ".join(bad) + f" of {total}") + f" at {at}"
    return {"at": row["verified_at"], "archives": total, "counts": counts, "ok": not bad, "summary": text}


def record_pruned(store: StateStore, a: Archive) -> None:
    """Record that prune deletes ``a`` (before its files go: an interrupted prune is known)."""
    db(store).execute(
        "INSERT INTO pruned (job, remote_path, window_start, window_end, sha256, pruned_at, destination) "
        "VALUES (?,?,?,?,?,?,?)",
        (
            a.job,
            a.remote_path,
            a.window.start.isoformat() if a.window else None,
            a.window.end.isoformat() if a.window else None,
            a.sha256,
            now(),
            a.destination,
        ),
    )
