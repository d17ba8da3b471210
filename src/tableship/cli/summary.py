"""The summary table printed after a parallel run: one row per job window (job, window,
result, rows, size, destination(s), duration) — a rich table on a terminal, the plain
aligned table of ``status`` otherwise (cron mail, scripts)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from tableship.backup.runner import Outcome
from tableship.core.units import human_size
from tableship.ops.report import format_table

COLUMNS = ["job", "window", "result", "rows", "size", "destination", "duration"]

_RESULT = {
    "success": "OK",
    "failed": "FAILED",
    "locked": "SKIPPED (locked)",
    "interrupted": "INTERRUPTED",
    "not started": "NOT STARTED",
    "planned": "planned",
}


def summary_rows(outcomes: list[Outcome]) -> list[dict]:
    rows = []
    for o in outcomes:
        run = o.run if o.status in ("success", "failed") else None
        job = o.plan.job if o.plan else None
        dests = list(job.destination_names) if job else []
        result = _RESULT.get(o.status, o.status)
        if o.status == "failed" and run is not None and run.failed_phase:
            result += f" in {run.failed_phase}"
        rows.append(
            {
                "job": o.job,
                "window": str(o.plan.window) if o.plan else None,
                "result": result,
                "rows": run.rows if run is not None and run.rows is not None else None,
                "size": human_size(run.stored_bytes) if run is not None and run.stored_bytes else None,
                "destination": ", ".join(dests) or None,
                "duration": run.duration if run is not None else None,
            }
        )
    return rows


def print_summary(outcomes: list[Outcome], echo: Callable[[str], None], tty: bool | None = None) -> None:
    """Print the table (nothing for no outcomes)."""
    if not outcomes:
        return
    rows = summary_rows(outcomes)
    if tty is None:
        tty = sys.stdout.isatty()
    if not tty:
        echo(format_table(rows, COLUMNS))
        return
    table = Table(box=None, header_style="bold")
    for c in COLUMNS:  # the result and destinations may wrap; names, windows and numbers never do
        table.add_column(c.upper(), no_wrap=c not in ("result", "destination"))
    for r in rows:
        table.add_row(
            *[
                "-"
                if r[c] is None
                else f"{r[c]:,}"
                if c == "rows"
                else f"{r[c]:.1f}s"
                if c == "duration"
                else str(r[c])
                for c in COLUMNS
            ]
        )
    Console().print(table)
