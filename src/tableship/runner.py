"""Run many jobs: one after another, one lock per job, continue past failures,
one summary line per job, one aggregated exit code."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Callable

from .alerts import make_monitor
from .config import Config
from .errors import EXIT_JOB_FAILED, JobError, EXIT_LOCKED, EXIT_OK, Interrupted, LockedError, TableshipError, UsageError
from .ledger import LedgerError
from .lock import JobLock
from .log import current_job, current_run
from .pipeline import Pipeline
from .plan import Plan, build_query, choose_window, make_plan
from .sources.base import open_source
from .state import Run, StateStore

log = logging.getLogger("tableship")


@dataclass
class Outcome:
    job: str
    status: str  # "success" | "failed" | "locked" | "planned"
    plan: Plan | None = None
    run: Run | None = None
    error: TableshipError | None = None
    detail: str = ""

    def summary(self) -> str:
        w = f" {self.plan.window}" if self.plan else ""
        if self.status == "success" and self.run:
            return (f"{self.job}{w}: OK, {self.run.rows} rows, {_size(self.run.archive_bytes)} → "
                    f"{self.plan.remote_path} (run {self.run.id}, {self.run.duration or 0:.1f}s)")
        if self.status == "locked":
            return f"{self.job}: SKIPPED, {self.error.line() if self.error else 'locked'}"
        if self.status == "planned":
            return f"{self.job}{w}: planned (dry run)"
        phase = f" in {self.run.failed_phase}" if self.run and self.run.failed_phase else ""
        return f"{self.job}{w}: FAILED{phase}: {self.error.line() if self.error else self.detail}"


def _size(n: int | None) -> str:
    n = n or 0
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def exit_code(outcomes: list[Outcome]) -> int:
    if any(o.status == "failed" for o in outcomes):
        return EXIT_JOB_FAILED
    if any(o.status == "locked" for o in outcomes):
        return EXIT_LOCKED
    return EXIT_OK


def select_jobs(config: Config, names: list[str] | tuple[str, ...] | None, all_jobs: bool = False) -> list[str]:
    """Validate the job names (all when none are given); unknown names raise before anything runs."""
    if names and all_jobs:
        raise UsageError("pass job names or --all, not both", "e.g. 'tableship run JOB' or 'tableship run --all'")
    if not names:
        return list(config.jobs)
    for n in names:
        config.job(n)
    return list(dict.fromkeys(names))


def describe_plan(config: Config, plan: Plan) -> list[str]:
    """The dry-run text of one plan (connects read-only to the source to detect the partition type)."""
    job = plan.job
    source = open_source(job.source, config.sources[job.source])
    try:
        query = build_query(source, plan)
    finally:
        source.close()
    dest = config.destinations[job.destination]
    where = getattr(dest, "path", "")
    if dest.type == "sftp":
        where = f"{dest.user}@{dest.host}:{dest.port}{dest.path}"
    return [
        f"job {job.name}: table {job.table}, window {plan.window} (run date {plan.run_date})",
        f"  query:       {query.display()}",
        f"  archive:     {plan.file_name} ({job.compression.codec})",
        f"  sidecars:    {plan.file_name}.sha256, {plan.file_name}.manifest.json",
        f"  destination: {job.destination} ({dest.type}) {where}/{plan.remote_path}",
        f"  staging:     {plan.staged_path}",
    ]


def run_jobs(
    config: Config,
    names=None,
    *,
    all_jobs: bool = False,
    run_date: dt.date | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    dry_run: bool = False,
    wait: float = 0,
    progress_factory: Callable[[str], Callable[[int, int], None] | None] | None = None,
    echo: Callable[[str], None] = print,
) -> list[Outcome]:
    jobs = select_jobs(config, names, all_jobs)
    run_date = run_date or dt.date.today()
    plans = {n: make_plan(config, config.jobs[n], run_date, choose_window(config.jobs[n], run_date, start, end))
             for n in jobs}
    if dry_run:
        outcomes = []
        for n in jobs:
            try:
                for line in describe_plan(config, plans[n]):
                    echo(line)
                outcomes.append(Outcome(n, "planned", plans[n]))
            except Interrupted:
                raise
            except TableshipError as exc:
                outcomes.append(Outcome(n, "failed", plans[n], error=exc))
                echo(outcomes[-1].summary())
        return outcomes

    store = StateStore(config.settings.state_dir)
    monitor = make_monitor(config, store)
    outcomes = []
    ledger_ok = False
    try:
        try:
            store.connect()  # open (and migrate) the ledger before any job: a broken one stops the batch
            for n in jobs:
                outcome = run_one(config, store, monitor, plans[n], wait, progress_factory)
                outcomes.append(outcome)
                echo(outcome.summary())
            ledger_ok = True
        except LedgerError as exc:
            # Nothing of this job or of the rest of the batch can be recorded: alert directly on
            # every channel (the outbox lives in the ledger), then end with the ledger's Error: line.
            log.error("the ledger cannot be used: %s", exc.message)
            done = {o.job for o in outcomes}
            monitor.ledger_failed([n for n in jobs if n not in done], plans, exc)
            raise
    finally:
        if ledger_ok:
            _write_outputs(config, store)
        store.close()
    return outcomes


def run_one(config, store, monitor, plan: Plan, wait: float, progress_factory) -> Outcome:
    job = plan.job
    token_job = current_job.set(job.name)
    try:
        try:
            lock = JobLock(config.settings.state_dir, job.name).acquire(wait)
        except LockedError as exc:
            log.warning("%s", exc.line())
            return Outcome(job.name, "locked", plan, error=exc)
        with lock:
            pipeline = Pipeline(config, plan, store, progress_factory(job.name) if progress_factory else None)
            run = pipeline.begin()
            token_run = current_run.set(run.id)
            try:
                monitor.job_started(job, plan)
                try:
                    run = pipeline.run()
                except Interrupted:  # a signal ends the whole command (exit 128+N), not just this job
                    log.error("interrupted; the run is recorded as failed and resumes on the next run")
                    raise
                except LedgerError:
                    raise  # nothing can be recorded: the batch stops (run_jobs alerts)
                except TableshipError as exc:
                    log.error("%s", exc.line())
                    log.debug("details", exc_info=True)
                    monitor.job_failed(job, plan, pipeline.run_record, exc)
                    return Outcome(job.name, "failed", plan, pipeline.run_record, exc)
                except Exception as exc:  # a bug must not stop the other jobs of the batch
                    log.error("unexpected error: %r", exc)
                    log.debug("traceback", exc_info=True)
                    err = JobError(f"unexpected error: {exc!r}", "re-run with --debug and report it")
                    monitor.job_failed(job, plan, pipeline.run_record, err)
                    return Outcome(job.name, "failed", plan, pipeline.run_record, err)
                monitor.job_succeeded(job, plan, run)
                if job.prune_after_run:  # under the job's lock; a failure is logged, the backup stays OK
                    _prune_after_run(config, store, job)
                return Outcome(job.name, "success", plan, run)
            finally:
                current_run.reset(token_run)
    finally:
        current_job.reset(token_job)


def _prune_after_run(config: Config, store: StateStore, job) -> None:
    """Pruning after a successful run never aborts the batch nor changes the job's outcome
    (a signal still ends the command: ``Interrupted`` is not an ``Exception``)."""
    from .retention import prune_after_run

    try:
        prune_after_run(config, store, job)
    except Exception as exc:
        log.error("prune after the run failed: unexpected error: %s: %s", type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)


def _write_outputs(config: Config, store: StateStore) -> None:
    try:
        from .outputs import write_outputs
    except ImportError:
        return
    try:
        write_outputs(config, store)
    except Exception as exc:  # status outputs must not change the run's outcome
        log.warning("could not write status outputs: %s", exc)
