"""``tableship ls``: one row per archive group of the job(s), read from the destination."""

from __future__ import annotations

from tableship.catalog.history import last_status
from tableship.catalog.scan import list_archives, open_job_destination, per_destination
from tableship.config.models import Config
from tableship.config.selection import select_jobs
from tableship.ledger.state import StateStore

LS_COLUMNS = ["job", "destination", "window", "rows", "bytes", "created", "sha256", "state", "verify", "file"]


def ls_rows(config: Config, names: list[str] | None = None) -> list[dict]:
    """``tableship ls``: one row per archive group of the job(s), from the destination."""
    jobs = select_jobs(config, names or [])
    store = StateStore.of(config.settings, readonly=True)
    rows = []
    try:
        for job in [v for n in jobs for v in per_destination(config.jobs[n])]:
            n = job.name
            dest = open_job_destination(config, job)
            try:
                archives = list_archives(config, job, dest, store)
            finally:
                dest.close()
            last = last_status(store, n, job.destination)
            for a in archives:
                d = a.as_dict()
                rec = last.get(a.remote_path)
                d["last_verify"] = {"status": rec[0], "at": rec[2]} if rec and rec[1] == a.sha256 else None
                d["sha256_short"] = a.sha256[:12] if a.sha256 else None
                d.update(window_text=str(a.window) if a.window else None)
                rows.append(d)
    finally:
        store.close()
    return rows


def ls_table_rows(rows: list[dict]) -> list[dict]:
    """The text-table form of :func:`ls_rows`."""
    out = []
    for r in rows:
        state = r["state"] if not r["problems"] else f"{r['state']} ({'; '.join(r['problems'])})"
        created = (r["created_at"] or "").replace("T", " ").replace("+00:00", "Z") or None
        out.append(
            {
                "job": r["job"],
                "destination": r["destination"],
                "window": r["window_text"],
                "rows": r["rows"],
                "bytes": r["archive_bytes"],
                "created": created,
                "sha256": r["sha256_short"],
                "state": state,
                "verify": r["last_verify"]["status"] if r["last_verify"] else None,
                "file": r["remote_path"],
            }
        )
    return out
