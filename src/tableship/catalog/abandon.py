"""``tableship abandon JOB --window START..END``: the one explicit way to give a window up.

Without it no window is ever dropped: the next run finishes every unfinished window and
``status`` lists every missing one. Abandoning records the window in the ledger
(``abandoned_windows``), marks its unfinished run ``abandoned`` and removes that run's
leftovers (the staged archive, its remote temporaries, an upload never verified). A
window that already has a verified archive cannot be abandoned (nothing is lost there).
"""

from __future__ import annotations

import datetime as dt
import logging

from tableship.backup.pipeline import Pipeline
from tableship.backup.plan import make_plan
from tableship.config.models import Config
from tableship.config.spec import destination_spec, resolve_job
from tableship.core.errors import UsageError
from tableship.core.log import current_job
from tableship.core.window import Window
from tableship.ledger.state import Phase, Result, StateStore

log = logging.getLogger("tableship")


def abandon_window(config: Config, job_name: str, window: Window, reason: str, wait: float = 0) -> list[str]:
    """Give ``window`` of the job up; returns the lines to print. Holds the job's lock."""
    job = resolve_job(config, job_name)
    start, end = window.start.isoformat(), window.end.isoformat()
    store = StateStore.of(config.settings)
    token = current_job.set(job.name)
    try:
        with store.job_lock(job.name).acquire(wait):
            runs = [r for r in store.runs_of(job.name) if (r.window_start, r.window_end) == (start, end)]
            if any(r.phase == Phase.DONE.value and r.result == Result.SUCCESS.value for r in runs):
                raise UsageError(
                    f"window {window} of {job.name} already has a verified archive: nothing to give up",
                    "use 'tableship prune' to delete archives",
                )
            if (start, end) in store.abandoned_windows(job.name):
                return [f"{job.name} {window}: already abandoned"]
            lines = []
            for run in [r for r in runs if r.unfinished]:
                plan = make_plan(job, dt.date.fromisoformat(run.run_date), window)
                pipeline = Pipeline(plan, store, destinations=lambda n: destination_spec(config, n))
                try:
                    pipeline.discard(run, f"abandoned: {reason}")
                finally:
                    pipeline.close()
                lines.append(
                    f"{job.name} {window}: run {run.id} (phase {run.phase}) abandoned, its leftovers removed"
                )
            store.abandon_window(job.name, start, end, reason, [r.id for r in runs if r.unfinished])
            log.info("window %s of %s abandoned: %s", window, job.name, reason)
            lines.append(
                f"{job.name} {window}: abandoned ({reason}); recorded in the ledger, "
                "later runs and 'status' no longer count it"
            )
            return lines
    finally:
        current_job.reset(token)
        store.close()
