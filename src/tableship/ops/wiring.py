"""The default hooks around a run, and the library's ``run_jobs`` that uses them.

``backup.runner.run_jobs`` takes its monitor and after-run hooks from the caller; this
module is that caller for the package root (``from tableship import run_jobs``) and the
CLI: the incident-policy monitor (``ops.alerts``), prune after a successful run
(``catalog.retention``, only for jobs with ``prune_after_run = true``) and the status
outputs (``ops.outputs``) after the batch. Likewise ``restore --from/--to`` with the monitor
(:func:`restore_range_with_alerts`: a failed range restore opens an incident and alerts).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tableship.backup import runner
from tableship.backup.hooks import RunHooks
from tableship.catalog.restore_range import RangeResult, restore_range
from tableship.catalog.retention import prune_after_run
from tableship.config.models import Config
from tableship.config.spec import JobSpec
from tableship.ledger.state import StateStore
from tableship.ops.alerts import make_monitor
from tableship.ops.outputs import write_outputs


def default_hooks(config: Config) -> RunHooks:
    """Alerts around each job, prune after run, status outputs after the batch."""

    def prune(store: StateStore, job: JobSpec) -> None:
        prune_after_run(config, store, config.jobs[job.name])

    def outputs(store: StateStore, today: dt.date) -> None:
        write_outputs(config, store, today)

    return RunHooks(
        monitor=lambda store: make_monitor(config, store),
        after_job=(("prune after the run", prune),),
        after_batch=(("status outputs", outputs),),
    )


def run_jobs(config: Config, names: Any = None, **kwargs: Any) -> list[runner.Outcome]:
    """:func:`tableship.backup.runner.run_jobs` with :func:`default_hooks` (unless ``hooks`` is given)."""
    kwargs.setdefault("hooks", default_hooks(config))
    return runner.run_jobs(config, names, **kwargs)


def restore_range_with_alerts(
    config: Config, job: str, start: str, end: str | None, *, dry_run: bool = False, **kwargs: Any
) -> RangeResult:
    """:func:`tableship.catalog.restore_range.restore_range` with the incident-policy monitor
    on the ledger; a dry run (it downloads and writes nothing) alerts nothing."""
    if dry_run:
        return restore_range(config, job, start, end, dry_run=True, **kwargs)
    store = StateStore.of(config.settings)
    try:
        return restore_range(config, job, start, end, monitor=make_monitor(config, store), **kwargs)
    finally:
        store.close()
