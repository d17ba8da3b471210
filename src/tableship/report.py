"""Read-only views of the state store: ``status`` and ``history`` rows and their text form."""

from __future__ import annotations

from .config import Config
from .state import Run, StateStore

STATUS_COLUMNS = ["job", "run", "window", "phase", "result", "rows", "bytes", "started", "duration"]


def run_row(job: str, run: Run | None) -> dict:
    if run is None:
        return {"job": job, "run": None, "window": None, "phase": None, "result": "never run", "rows": None,
                "bytes": None, "started": None, "duration": None, "error": None}
    return {
        "job": job, "run": run.id, "window": run.window, "phase": run.phase, "result": run.result,
        "rows": run.rows, "bytes": run.archive_bytes, "started": run.started_at, "duration": run.duration,
        "failed_phase": run.failed_phase, "error": run.error, "attempts": run.attempts,
        "remote_path": run.remote_path, "sha256": run.sha256, "finished": run.finished_at,
    }


def status_rows(config: Config, store: StateStore) -> list[dict]:
    """One row per configured job (and per job seen in the ledger but no longer configured)."""
    from .alerts.incidents import open_incident_summaries
    from .archives import last_verification

    incidents = open_incident_summaries(store)
    rows = []
    for job in config.jobs:
        row = run_row(job, store.latest(job))
        last_ok = store.last_success(job)
        row["last_success"] = last_ok.finished_at if last_ok else None
        row["incident"] = incidents.get(job)
        row["verification"] = last_verification(store, job)
        rows.append(row)
    return rows


def incident_line(row: dict) -> str | None:
    """``job: INCIDENT #4 open since …, 3 failures, alerted (ops-mail)`` for an open incident."""
    inc = row.get("incident")
    if not inc:
        return None
    since = str(inc["opened_at"])[:19].replace("T", " ") + "Z"
    alerted = f"alerted ({', '.join(inc['alerted_channels'])})" if inc["alerted"] else "not alerted"
    n = inc["failures"]
    return f"{row['job']}: INCIDENT #{inc['id']} open since {since}, {n} failure{'s' if n != 1 else ''}, {alerted}"


def history_rows(store: StateStore, job: str | None, limit: int) -> list[dict]:
    return [run_row(r.job, r) for r in store.history(job, limit)]


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "duration":
        return f"{value:.1f}s"
    if key == "started":
        return str(value).replace("T", " ").replace("+00:00", "Z")
    return str(value)


def format_table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)
