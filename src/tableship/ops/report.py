"""Read-only views of the state store: ``status`` and ``history`` rows and their text form."""

from __future__ import annotations

import datetime as dt

from tableship.backup.chunks import spans
from tableship.backup.coverage import LEVEL_NAMES, coverage, level
from tableship.catalog.history import last_verification
from tableship.config.models import Config
from tableship.core.units import human_size
from tableship.ledger import deliveries
from tableship.ledger.chunks import ChunkCopies
from tableship.ledger.state import Run, StateStore
from tableship.ops.alerts.incidents import open_incident_summaries

STATUS_COLUMNS = [
    "job",
    "run",
    "window",
    "phase",
    "result",
    "rows",
    "size",
    "attempts",
    "started",
    "duration",
]


def run_row(job: str, run: Run | None) -> dict:
    if run is None:
        return {
            "job": job,
            "run": None,
            "window": None,
            "phase": None,
            "result": "never run",
            "rows": None,
            "bytes": None,
            "started": None,
            "duration": None,
            "error": None,
        }
    return {
        "job": job,
        "run": run.id,
        "window": run.window,
        "phase": run.phase,
        "result": run.result,
        "rows": run.rows,
        "bytes": run.archive_bytes,  # the file at remote_path, the one sha256 names
        "stored_bytes": run.stored_bytes,  # with layout "chunk": its chunk archives as well
        "size": None if run.stored_bytes is None else human_size(run.stored_bytes),
        "started": run.started_at,
        "host": run.host,
        "pid": run.pid,
        "duration": run.duration,
        "elapsed": run.elapsed,
        "failed_phase": run.failed_phase,
        "error": run.error,
        "attempts": run.attempts,
        "remote_path": run.remote_path,
        "sha256": run.sha256,
        "finished": run.finished_at,
    }


def status_rows(config: Config, store: StateStore, today: dt.date | None = None) -> list[dict]:
    """One row per configured job: its newest run, its unfinished and missing windows
    (docs/resume.md) and its monitoring ``level`` (0 OK, 1 WARNING, 2 CRITICAL)."""
    incidents = open_incident_summaries(store)
    today = today or dt.date.today()
    rows = []
    for job in config.jobs:
        latest = store.latest(job)
        row = run_row(job, latest)
        row["destinations"] = list(config.jobs[job].destinations)
        got = deliveries.of_run(store, latest.id) if latest else {}
        row["deliveries"] = [
            {
                "destination": n,
                "phase": d.phase,
                "result": d.result,
                "error": d.error,
                "verified_at": d.verified_at,
            }
            for n, d in got.items()
        ]
        if len(row["destinations"]) > 1 and latest:
            row["_deliveries"] = f"{job}: run {latest.id} on " + ", ".join(
                f"{n} {got[n].phase}" + (" (failed)" if got[n].result == "failed" else "")
                if n in got
                else f"{n} -"
                for n in row["destinations"]
            )
        missing = ChunkCopies(store).missing(latest.id, row["destinations"]) if latest else {}
        unit = config.jobs[job].chunk
        row["missing_chunks"] = {n: [r.file_name for r in recs] for n, recs in missing.items()}
        if missing:
            row["_missing_chunks"] = (
                f"{job}: chunk archives missing on "
                + "; ".join(f"{n}: {spans(recs, unit)} ({len(recs)})" for n, recs in missing.items())
                + ", kept in staging until delivered (the next run uploads only these)"
            )
        last_ok = store.last_success(job)
        row["last_success"] = last_ok.finished_at if last_ok else None
        row["incident"] = incidents.get(job)
        row["verification"] = last_verification(store, job)
        cov = coverage(config.jobs[job], store, today)
        row["latest_window"] = str(cov.latest)
        row["latest_window_state"] = cov.latest_state
        row["unfinished_windows"] = [g.as_dict() for g in cov.unfinished]
        row["missing_windows"] = [g.as_dict() for g in cov.missing]
        code, reasons = level(cov, bool(row["incident"]))
        row["level"], row["level_name"], row["level_reasons"] = code, LEVEL_NAMES[code], reasons
        row["_gaps"] = [g.describe() for g in cov.unfinished + cov.missing]
        rows.append(row)
    return rows


def status_exit(rows: list[dict]) -> int:
    """The worst level over every job: 0 OK, 1 WARNING, 2 CRITICAL (docs/monitoring.md)."""
    return max((r.get("level", 0) for r in rows), default=0)


def status_summary(rows: list[dict]) -> str:
    """``OK: 2 jobs`` / ``CRITICAL: job: reason; reason | other: reason`` (the monitoring line)."""
    code = status_exit(rows)
    bad = [f"{r['job']}: {'; '.join(r['level_reasons'])}" for r in rows if r.get("level_reasons")]
    n = len(rows)
    return f"{LEVEL_NAMES[code]}: " + (
        " | ".join(bad) if bad else f"{n} job{'s' if n != 1 else ''}, all windows verified"
    )


def incident_line(row: dict) -> str | None:
    """``job: INCIDENT #4 open since …, 3 failures, alerted (ops-mail)`` for an open incident."""
    inc = row.get("incident")
    if not inc:
        return None
    since = str(inc["opened_at"])[:19].replace("T", " ") + "Z"
    alerted = f"alerted ({', '.join(inc['alerted_channels'])})" if inc["alerted"] else "not alerted"
    n = inc["failures"]
    return (
        f"{row['job']}: INCIDENT #{inc['id']} open since {since}, {n} "
        f"failure{'s' if n != 1 else ''}, {alerted}"
    )


def status_lines(rows: list[dict]) -> list[str]:
    """The lines ``status`` prints under its table: where each running job runs, each job's
    last error, its deliveries, its unfinished and missing windows, its open incident and
    its last verification."""
    out = []
    for r in rows:
        if r.get("result") == "running":  # live: its job's lock is held (any host's, on PostgreSQL)
            out.append(
                f"{r['job']}: running on {r.get('host')} (pid {r.get('pid')}) since {r.get('started')}"
            )
        if r.get("error"):
            out.append(f"{r['job']}: last error ({r.get('failed_phase')}): {r['error']}")
        if r.get("_deliveries"):
            out.append(r["_deliveries"])
        if r.get("_missing_chunks"):
            out.append(r["_missing_chunks"])
        out += [f"{r['job']}: {gap}" for gap in r.get("_gaps", [])]
        incident = incident_line(r)
        if incident:
            out.append(incident)
        if r.get("verification"):
            out.append(f"{r['job']}: last verification: {r['verification']['summary']}")
    return out


def history_rows(store: StateStore, job: str | None, limit: int) -> list[dict]:
    return [run_row(r.job, r) for r in store.history(job, limit)]


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "duration":
        return f"{value:.1f}s"
    if key == "rows":
        return f"{value:,}"
    if key == "started":
        return str(value).replace("T", " ").replace("+00:00", "Z")
    return str(value)


def format_table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)
