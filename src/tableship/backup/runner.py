"""Run many jobs: one after another, or up to ``max_jobs`` at once (backup/pool.py); one
lock per job, continue past failures, one summary line per job, one aggregated exit code."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tableship.backup.coverage import WindowGap, coverage
from tableship.backup.hooks import Monitor, RunHooks
from tableship.backup.identity import differences, fingerprint
from tableship.backup.pipeline import DestinationLookup, Pipeline, ProgressLine
from tableship.backup.plan import Plan, choose_window, make_plan
from tableship.backup.pool import run_parallel
from tableship.backup.preflight import preflight
from tableship.backup.query import build_query
from tableship.config.models import Config
from tableship.config.selection import select_jobs
from tableship.config.spec import JobSpec, destination_spec, resolve_job
from tableship.core import interrupts
from tableship.core.errors import (
    EXIT_JOB_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    GapError,
    Interrupted,
    JobError,
    LockedError,
    TableshipError,
)
from tableship.core.log import IN_SUMMARY, current_job, current_run
from tableship.core.units import human_size
from tableship.core.window import Window
from tableship.ledger.errors import LedgerError
from tableship.ledger.state import Result, Run, StateStore
from tableship.sources.base import open_source

log = logging.getLogger("tableship")


@dataclass
class Outcome:
    job: str
    status: str  # "success" | "failed" | "locked" | "planned" | "shared" (done by another host)
    #   | "interrupted" | "not started" (a parallel run stopped by a signal)
    plan: Plan | None = None
    run: Run | None = None
    error: TableshipError | None = None
    detail: str = ""

    def summary(self, detail: bool = True) -> str:
        """One line; ``detail=False`` leaves a failure's error out (``-q``: the CLI's ``Error:``
        line already says it, and a cron mail should say it once)."""
        w = f" {self.plan.window}" if self.plan else ""
        if self.status == "success" and self.run:
            remote = self.run.remote_path or (self.plan.remote_path if self.plan else "")
            return (
                f"{self.job}{w}: OK, {self.run.rows} rows, {human_size(self.run.stored_bytes or 0)} → "
                f"{remote}{_chunk_counts(self.run)} "
                f"(run {self.run.id}, {self.run.duration or 0:.1f}s)"
            )
        if self.status == "locked":
            return f"{self.job}: SKIPPED, {self.error.line() if self.error else 'locked'}"
        if self.status == "shared":
            return f"{self.job}{w}: SKIPPED, {self.detail}"
        if self.status == "planned":
            return f"{self.job}{w}: planned (dry run)"
        if self.status == "interrupted":
            return f"{self.job}{w}: INTERRUPTED (resumes on the next run)"
        if self.status == "not started":
            return f"{self.job}{w}: NOT STARTED (interrupted before its turn)"
        if isinstance(self.error, GapError):
            return f"{self.job}{w}: MISSING: {self.error.message}" if detail else f"{self.job}{w}: MISSING"
        phase = f" in {self.run.failed_phase}" if self.run and self.run.failed_phase else ""
        if not detail and self.error is not None:
            return f"{self.job}{w}: FAILED{phase}"
        return f"{self.job}{w}: FAILED{phase}: {self.error.line() if self.error else self.detail}"


def _chunk_counts(run: Run) -> str:
    """``, chunks: 1 exported, 1 changed, 3 unchanged`` for a run of layout "chunk"."""
    counts = (run.manifest_dict() or {}).get("counts")
    if not counts:
        return ""
    return ", chunks: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("exported", "changed", "unchanged"))


def exit_code(outcomes: list[Outcome]) -> int:
    """1 if a job failed; else 75 if a job was locked and no job ran (nor was found done by
    another host); else 0. A job another process holds is skipped, not failed: with several
    hosts sharing the jobs (docs/scaling.md) most jobs are locked by the others."""
    if any(o.status == "failed" for o in outcomes):
        return EXIT_JOB_FAILED
    if any(o.status == "locked" for o in outcomes) and not any(
        o.status in ("success", "shared") for o in outcomes
    ):
        return EXIT_LOCKED
    return EXIT_OK


def describe_plan(plan: Plan) -> list[str]:
    """The dry-run text of one plan (connects read-only to the source to detect the partition type)."""
    job = plan.job
    source = open_source(job.source.name, job.source.settings)
    try:
        query = build_query(source, plan, source.schema(job.table))
    finally:
        source.close()
    return [
        f"job {job.name}: table {job.table}, window {plan.window} (run date {plan.run_date})",
        f"  query:       {query.display()}",
        f"  archive:     {plan.file_name} ({job.compression.codec})",
        f"  sidecars:    {plan.file_name}.sha256, {plan.file_name}.manifest.json",
        *(f"  destination: {d.describe(plan.remote_path)}" for d in job.destinations),
        f"  staging:     {plan.staged_path}",
    ]


def describe_extra(store: StateStore, plan: Plan) -> list[str]:
    """The dry-run lines for the older windows a scheduled run would do first (``store`` is
    only read: a dry run creates or changes nothing)."""
    extra = extra_plans(store, plan)
    runs = {(r.window_start, r.window_end): r for r in store.unfinished(plan.job.name)}
    lines = []
    for p in extra:
        r = runs.get((p.window.start.isoformat(), p.window.end.isoformat()))
        why = f"unfinished run {r.id} at phase {r.phase}" if r else "missing (catch_up)"
        lines.append(f"  first:       window {p.window} ({why}) → {p.remote_path}")
    return lines


def run_jobs(
    config: Config,
    names: Sequence[str] | None = None,
    *,
    all_jobs: bool = False,
    run_date: dt.date | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    dry_run: bool = False,
    wait: float = 0,
    progress_factory: Callable[[str], ProgressLine | None] | None = None,
    echo: Callable[[str], None] = print,
    quiet: bool = False,
    hooks: RunHooks | None = None,
    max_jobs: int | None = None,
    on_status: Callable[[int, int, int], None] | None = None,
) -> list[Outcome]:
    """Run the jobs; ``quiet`` (``-q``) prints a failure's error only once, in the CLI's ``Error:`` line.

    ``max_jobs`` (default ``settings.max_jobs``) jobs run at once, each on its own thread
    with its own ledger connection; ``on_status(done, running, queued)`` follows the pool.
    A signal stops every job and raises ``Interrupted`` carrying ``outcomes`` (the jobs
    done, interrupted and never started) for the caller's summary.

    Each job is resolved once into its :class:`JobSpec`; nothing below this function sees
    ``config``. ``hooks`` (the monitor, prune after run, status outputs) come from the
    caller: ``tableship.run_jobs`` wires the default ones, ``RunHooks()`` runs none.
    """
    hooks = hooks or RunHooks()
    jobs = select_jobs(config, names, all_jobs)
    specs = {n: resolve_job(config, n) for n in jobs}
    run_date = run_date or dt.date.today()
    plans = {n: make_plan(specs[n], run_date, choose_window(specs[n], run_date, start, end)) for n in jobs}
    if dry_run:
        outcomes = []
        for n in jobs:
            try:
                for line in describe_plan(plans[n]):
                    echo(line)
                if start is None:
                    store = StateStore.of(config.settings, readonly=True)
                    try:
                        for line in describe_extra(store, plans[n]):
                            echo(line)
                    finally:
                        store.close()
                outcomes.append(Outcome(n, "planned", plans[n]))
            except Interrupted:
                raise
            except TableshipError as exc:
                outcomes.append(Outcome(n, "failed", plans[n], error=exc))
                echo(outcomes[-1].summary())
        return outcomes

    store = StateStore.of(config.settings)
    monitor = hooks.monitor(store)
    scheduled = start is None  # an explicit --from/--to run does only the window it names
    batch = Batch(
        store, monitor, hooks, wait, progress_factory, scheduled, lambda n: destination_spec(config, n)
    )
    outcomes = []
    ledger_ok = False
    try:
        try:
            store.connect()  # open (and migrate) the ledger before any job: a broken one stops the batch
            blocked = preflight(specs[n] for n in jobs)  # before any export: seconds, not hours
            workers = max_jobs or config.settings.max_jobs
            if workers > 1 and len(jobs) > 1:
                pool = PoolRun(batch, lambda: StateStore.of(config.settings), echo, quiet)
                outcomes = pool.run(jobs, plans, workers, blocked, on_status)
                jobs = []  # done
            for n in jobs:
                interrupts.checkpoint()  # a signal that something swallowed: the next job never starts
                for outcome in run_job(batch, plans[n], blocked.get(n)):
                    outcomes.append(outcome)
                    echo(outcome.summary(detail=not quiet))
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
            for what, after_batch in hooks.after_batch:
                try:
                    after_batch(store, run_date)
                except Exception as exc:  # status outputs must not change the run's outcome
                    log.warning("could not write %s: %s", what, exc)
        store.close()
    return outcomes


@dataclass(frozen=True)
class Batch:
    """What every job of one ``run_jobs`` call shares."""

    store: StateStore
    monitor: Monitor
    hooks: RunHooks
    wait: float
    progress_factory: Callable[[str], ProgressLine | None] | None
    scheduled: bool
    destinations: DestinationLookup  # any configured destination, by name (abandoned runs)


@dataclass(frozen=True)
class PoolRun:
    """The jobs on worker threads; each thread has its own ledger connection and alert
    monitor (SQLite connections are per thread)."""

    batch: Batch
    open_store: Callable[[], StateStore]  # SQLite or PostgreSQL: one connection per thread
    echo: Callable[[str], None]
    quiet: bool

    def run(
        self,
        jobs: list[str],
        plans: dict[str, Plan],
        workers: int,
        blocked: dict[str, tuple[str, TableshipError]],
        on_status: Callable[[int, int, int], None] | None,
    ) -> list[Outcome]:
        """Outcomes in the order of ``jobs``."""
        printing = threading.Lock()

        def one(name: str) -> list[Outcome]:
            store = self.open_store()
            try:
                store.connect()
                batch = replace(self.batch, store=store, monitor=self.batch.hooks.monitor(store))
                outcomes = run_job(batch, plans[name], blocked.get(name))
            finally:
                store.close()
            with printing:
                for o in outcomes:
                    self.echo(o.summary(detail=not self.quiet))
            return outcomes

        def ordered(result) -> list[Outcome]:
            out: list[Outcome] = []
            for n in jobs:
                if n in result.results:
                    out += result.results[n]
                elif isinstance(result.errors.get(n), Interrupted):
                    out.append(Outcome(n, "interrupted", plans[n]))
                elif n in result.errors:
                    exc = result.errors[n]
                    err = exc if isinstance(exc, TableshipError) else JobError(f"unexpected error: {exc!r}")
                    out.append(Outcome(n, "failed", plans[n], error=err))
                else:
                    out.append(Outcome(n, "not started", plans[n]))
            return out

        try:
            result = run_parallel(
                jobs, workers, one, stop_on=lambda exc: isinstance(exc, LedgerError), on_status=on_status
            )
        except Interrupted as exc:
            exc.outcomes = ordered(exc.pool_result)  # type: ignore[attr-defined]
            raise
        for err in result.errors.values():
            if isinstance(err, LedgerError):
                raise err  # the batch stops as it does one job at a time (run_jobs alerts)
        for n, err in result.errors.items():  # a bug in one job never stops the others
            log.error("job %s: unexpected error: %r", n, err)
        return ordered(result)


def extra_plans(store: StateStore, plan: Plan) -> list[Plan]:
    """The other windows a scheduled run of the job also does, oldest first: every window
    whose newest run is unfinished, then (``catch_up = true``) up to ``catch_up_max``
    missing windows. Oldest first because upstream tables expire their oldest partitions
    first: the oldest unfinished window is the one that can still be lost for good."""
    job = plan.job
    today = (plan.window.start.isoformat(), plan.window.end.isoformat())
    plans: dict[tuple[str, str], Plan] = {}
    for r in store.unfinished(job.name):
        key = (r.window_start, r.window_end)
        if key != today:
            w = Window(dt.date.fromisoformat(r.window_start), dt.date.fromisoformat(r.window_end))
            plans[key] = make_plan(job, dt.date.fromisoformat(r.run_date), w)
    if job.catch_up:
        missing = [
            g
            for g in coverage(job, store, plan.run_date).missing
            if (g.window.start.isoformat(), g.window.end.isoformat()) != today
        ]
        for g in missing[: job.catch_up_max]:
            plans[(g.window.start.isoformat(), g.window.end.isoformat())] = make_plan(job, g.due, g.window)
        if len(missing) > job.catch_up_max:
            log.info(
                "catch_up: %d more missing windows of %s are left for the next runs (catch_up_max = %d)",
                len(missing) - job.catch_up_max,
                job.name,
                job.catch_up_max,
            )
    return [plans[k] for k in sorted(plans)]


def gap_error(job: JobSpec, gaps: list[WindowGap]) -> GapError:
    first = gaps[0]
    listing = ", ".join(f"{g.window} ({g.kind} since {g.due})" for g in gaps[:3])
    more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
    s, e = first.window.start.isoformat(), first.window.end.isoformat()
    return GapError(
        f"{len(gaps)} window{'s' if len(gaps) != 1 else ''} without a verified archive past gap_grace "
        f"({job.gap_grace} day{'s' if job.gap_grace != 1 else ''}): {listing}{more}",
        f"back it up with 'tableship run {job.name} --from {s} --to {e}' (or set catch_up = true), "
        f"or give it up with 'tableship abandon {job.name} --window {s}..{e}'",
    )


def run_job(batch: Batch, plan: Plan, blocked: tuple[str, TableshipError] | None = None) -> list[Outcome]:
    """Every window a run of this job does, under one lock: older unfinished (and, with
    catch_up, missing) windows first, then the requested one. The monitor sees one
    outcome per job: the first failure, else an overdue window, else success.
    ``blocked`` is the preflight's (phase, error): each window fails at once, unexported."""
    job, store, monitor, scheduled = plan.job, batch.store, batch.monitor, batch.scheduled
    token_job = current_job.set(job.name)
    try:
        try:
            lock = store.job_lock(job.name).acquire(batch.wait)
        except LockedError as exc:
            # on a shared ledger another host taking the job is the normal case, not a warning
            log.log(logging.INFO if store.shared else logging.WARNING, "%s", exc.line())
            return [Outcome(job.name, "locked", plan, error=exc)]
        with lock:
            done = done_elsewhere(store, plan) if scheduled else None
            plans = extra_plans(store, plan) if scheduled else []
            if done is not None:
                log.info("%s: %s", job.name, done.detail)
                if not plans:
                    return [done]
            if plans:
                log.info(
                    "%s: also finishing %d older window%s first: %s",
                    job.name,
                    len(plans),
                    "s" if len(plans) != 1 else "",
                    ", ".join(str(p.window) for p in plans),
                )
            monitor.job_started(job, plan)
            todo = plans + ([] if done is not None else [plan])
            outcomes = [run_window(batch, p, blocked) for p in todo]
            outcomes += [done] if done is not None else []
            failed = [o for o in outcomes if o.status == "failed"]
            gaps = [] if failed else coverage(job, store, plan.run_date).overdue
            if failed:
                monitor.job_failed(job, failed[0].plan or plan, failed[0].run, failed[0].error)
            elif gaps and not scheduled:
                # a --from/--to run answers for its own window; the schedule is judged (and
                # alerted on) by scheduled runs, so an open gap incident stays as it is
                log.warning(
                    "%s: %d window%s still overdue (see 'tableship status'); the next scheduled run "
                    "reports %s",
                    job.name,
                    len(gaps),
                    "s" if len(gaps) != 1 else "",
                    "them" if len(gaps) != 1 else "it",
                )
            elif gaps:
                err = gap_error(job, gaps)
                gap_plan = make_plan(job, gaps[0].due, gaps[0].window)
                log.error("%s", err.line(), extra=IN_SUMMARY)
                monitor.job_failed(job, gap_plan, gaps[0].run, err)
                outcomes.append(Outcome(job.name, "failed", gap_plan, gaps[0].run, err))
            else:
                monitor.job_succeeded(job, plan, outcomes[-1].run)
            if outcomes[-1].status == "success":
                # under the job's lock; a failure is logged, the backup stays OK
                _after_job(batch, job)
            return outcomes
    finally:
        current_job.reset(token_job)


def done_elsewhere(store: StateStore, plan: Plan) -> Outcome | None:
    """On a ledger several hosts share: the requested window's newest run, if it already
    succeeded for this run date with the same identity (read after taking the job's lock,
    so a host that got the lock after another host finished the job does not do it again).
    On SQLite (one host) a re-run does the window again, as always."""
    if not store.shared:
        return None
    w = plan.window
    runs = [
        r
        for r in store.runs_of(plan.job.name)
        if (r.window_start, r.window_end) == (w.start.isoformat(), w.end.isoformat())
    ]
    if not runs:
        return None
    last = runs[-1]
    if last.result != Result.SUCCESS.value or last.run_date != plan.run_date.isoformat():
        return None
    old = last.fingerprint_dict()
    if old is None or differences(old, fingerprint(plan)):
        return None  # planned under another config: this run does it again
    return Outcome(
        plan.job.name,
        "shared",
        plan,
        last,
        detail=(
            f"already verified for run date {plan.run_date} by run {last.id} on {last.host} (pid {last.pid})"
        ),
    )


def _after_job(batch: Batch, job: JobSpec) -> None:
    """The after-run hooks (prune after run) never abort the batch nor change the job's
    outcome (a signal still ends the command: ``Interrupted`` is not an ``Exception``)."""
    for what, hook in batch.hooks.after_job:
        try:
            hook(batch.store, job)
        except Exception as exc:
            log.error("%s failed: unexpected error: %s: %s", what, type(exc).__name__, exc)
            log.debug("traceback", exc_info=True)


def run_window(batch: Batch, plan: Plan, blocked: tuple[str, TableshipError] | None = None) -> Outcome:
    """One window's run (resumed or fresh); a TableshipError or a bug becomes a failed
    Outcome, a signal ends the whole command."""
    job, store = plan.job, batch.store
    line = batch.progress_factory(job.name) if batch.progress_factory else None
    if line is not None and hasattr(line, "set_total"):
        # the ETA of a rolling window: about as many rows as the job's last successful run
        last = store.last_success(job.name)
        if last is not None and last.rows:
            line.set_total(last.rows)
    pipeline = Pipeline(plan, store, line, batch.destinations)
    run = pipeline.begin()
    token_run = current_run.set(run.id)
    try:
        if blocked is not None:
            return _blocked(store, pipeline, plan, run, blocked)
        try:
            run = pipeline.run()
        except Interrupted:  # a signal ends the whole command (exit 128+N), not just this job
            log.error("interrupted; the run is recorded as failed and resumes on the next run")
            raise
        except LedgerError:
            raise  # nothing can be recorded: the batch stops (run_jobs alerts)
        except TableshipError as exc:
            log.error("%s", exc.line(), extra=IN_SUMMARY)
            log.debug("details", exc_info=True)
            return Outcome(job.name, "failed", plan, pipeline.run_record, exc)
        except Exception as exc:  # a bug must not stop the other jobs of the batch
            log.error("unexpected error: %r", exc, extra=IN_SUMMARY)
            log.debug("traceback", exc_info=True)
            err = JobError(f"unexpected error: {exc!r}", "re-run with --debug and report it")
            return Outcome(job.name, "failed", plan, pipeline.run_record, err)
        return Outcome(job.name, "success", plan, run)
    finally:
        if line is not None:
            line.close()  # the live line goes when its run ends
        current_run.reset(token_run)


def _blocked(
    store: StateStore, pipeline: Pipeline, plan: Plan, run: Run, blocked: tuple[str, TableshipError]
) -> Outcome:
    """Record a run the preflight stopped as failed in the phase whose work cannot be done
    (nothing was exported); the next run resumes it."""
    phase, error = blocked
    log.error("%s (checked before exporting)", error.line(), extra=IN_SUMMARY)
    record = store.finish(run, Result.FAILED, error.line(), phase)
    pipeline.run_record = record
    return Outcome(plan.job.name, "failed", plan, record, error)
