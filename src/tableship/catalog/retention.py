"""Retention: which archives of a job to keep, and ``prune`` to delete the others.

Rules (``retention = { keep_last = N, keep_days = D }`` per job, either or both):

* ``keep_last = N`` keeps the N newest archives. *Newest* is by window (end, then
  start), then by creation time: the data an archive holds, not when it was made, so
  a backfill of an old window does not push the newest months out.
* ``keep_days = D`` keeps every archive whose window ends on or after today − D days.
* An archive is kept when any rule keeps it. With no rule configured nothing is pruned.
* Whatever the rules say, the job's newest *verified* archive is kept: the newest
  complete archive whose last ``tableship verify`` result is OK, or, if ``verify`` never
  checked it, that the run verified on upload (its manifest has ``verified_at``).
* Only groups whose manifest names this job are candidates. An archive without a
  manifest (an upload in progress, or a file tableship did not write) is never touched;
  a manifest whose archive is gone is kept (``verify`` reports it MISSING) unless it is
  the leftover of an interrupted prune, which the next prune finishes.

Deleting a group: it is recorded in the state store's ``pruned`` table first, then the
archive, its ``.sha256`` and finally its manifest are deleted, so an interrupted prune
leaves a manifest that still says whose the files were.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from tableship.catalog.history import last_status, record_pruned
from tableship.catalog.records import Archive
from tableship.catalog.scan import list_archives, open_job_destination, per_destination
from tableship.catalog.verify import is_verified
from tableship.config.models import Config, JobConfig, RetentionSpec
from tableship.config.selection import select_jobs
from tableship.core import holds
from tableship.core.errors import EXIT_JOB_FAILED, EXIT_LOCKED, TableshipError
from tableship.ledger.errors import LedgerError
from tableship.ledger.state import StateStore

log = logging.getLogger("tableship")


@dataclass
class Decision:
    archive: Archive
    keep: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return ", ".join(self.reasons)


def rules_text(spec: RetentionSpec | None) -> str:
    if spec is None or (spec.keep_last is None and spec.keep_days is None):
        return "no retention rules"
    parts = []
    if spec.keep_last is not None:
        parts.append(f"keep_last = {spec.keep_last}")
    if spec.keep_days is not None:
        parts.append(f"keep_days = {spec.keep_days}")
    return ", ".join(parts)


def decide(
    archives: list[Archive], spec: RetentionSpec | None, today: dt.date, verified: Callable[[Archive], bool]
) -> list[Decision]:
    """One decision per archive group, newest first. Pure: no I/O."""
    ordered = sorted(archives, key=Archive.sort_key, reverse=True)
    rules = spec if spec is not None and (spec.keep_last is not None or spec.keep_days is not None) else None
    candidates = [a for a in ordered if a.manifest is not None and a.has_archive and a.window is not None]
    protected = next((a for a in candidates if verified(a)), None)
    # id → (rank, window): every candidate has a window
    rank = {id(a): (i, a.window) for i, a in enumerate(candidates) if a.window is not None}
    out = []
    for a in ordered:
        if a.pruning:
            out.append(Decision(a, False, ["leftover of an interrupted prune"]))
            continue
        if id(a) not in rank:
            why = (
                "no manifest of this job: never touched"
                if a.manifest is None
                else "archive missing: kept for verify"
            )
            out.append(Decision(a, True, [why]))
            continue
        reasons = []
        i, window = rank[id(a)]
        if rules is None:
            reasons.append("no retention rules")
        else:
            if rules.keep_last is not None and i < rules.keep_last:
                reasons.append(f"keep_last {i + 1}/{rules.keep_last}")
            if rules.keep_days is not None and window.end >= today - dt.timedelta(days=rules.keep_days):
                reasons.append(f"keep_days {(today - window.end).days}d <= {rules.keep_days}d")
        if a is protected:
            reasons.append("newest verified archive")
        out.append(Decision(a, bool(reasons), reasons or [f"older than the rules ({rules_text(spec)})"]))
    return out


@dataclass
class PruneResult:
    job: str
    rules: str
    decisions: list[Decision] = field(default_factory=list)
    deleted: list[Decision] = field(default_factory=list)
    dry_run: bool = False
    error: TableshipError | None = None

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.job}: ERROR: {self.error.line()}"
        verb = "would delete" if self.dry_run else "deleted"
        n = sum(1 for d in self.decisions if not d.keep)
        return f"{self.job}: {self.rules}: kept {len(self.kept)}, {verb} {n}"


def delete_group(dest, store: StateStore, a: Archive) -> None:
    record_pruned(store, a)  # first: an interrupted prune is known and finished by the next one
    if a.has_archive:
        dest.delete(a.remote_path)
    dest.delete(a.sha256_path)
    dest.delete(a.manifest_path)


def prune_job(
    config: Config,
    job: JobConfig,
    store: StateStore,
    dry_run: bool = False,
    today: dt.date | None = None,
    echo: Callable[[str], None] | None = None,
) -> PruneResult:
    """Apply the job's retention on each of its destinations (the caller holds the job's lock):
    each destination keeps or deletes its own copies by the same rules."""
    views = per_destination(job)
    results = [_prune_on(config, v, store, dry_run, today, echo, len(views) > 1) for v in views]
    if len(results) == 1:
        return results[0]
    merged = PruneResult(job.name, results[0].rules, dry_run=dry_run)
    for r in results:
        merged.decisions += r.decisions
        merged.deleted += r.deleted
    return merged


def _prune_on(
    config: Config,
    job: JobConfig,
    store: StateStore,
    dry_run: bool,
    today: dt.date | None,
    echo: Callable[[str], None] | None,
    multi: bool,
) -> PruneResult:
    today = today or dt.date.today()
    result = PruneResult(job.name, rules_text(job.retention), dry_run=dry_run)
    dest = open_job_destination(config, job)
    try:
        archives = list_archives(config, job, dest, store, today)
        last = last_status(store, job.name, job.destination)
        result.decisions = decide(archives, job.retention, today, lambda a: is_verified(a, last))
        for d in result.decisions:
            if d.keep:
                continue
            a = d.archive
            w = f" (window {a.window})" if a.window else ""
            w += f" on {job.destination}" if multi else ""
            if dry_run:
                line = f"{job.name}: would delete {a.remote_path}{w}: {d.reason}"
            else:
                holds.hold("prune")
                delete_group(dest, store, a)
                result.deleted.append(d)
                line = f"{job.name}: deleted {a.remote_path}{w} and its sidecars: {d.reason}"
            if echo:
                echo(line)
            else:
                log.info("%s", line)
    finally:
        dest.close()
    return result


def prune_jobs(
    config: Config,
    names: list[str],
    all_jobs: bool = False,
    dry_run: bool = False,
    today: dt.date | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[PruneResult]:
    """``tableship prune``: each job under its lock (exit 75 if a run of it holds the lock)."""
    jobs = select_jobs(config, names, all_jobs)
    store = StateStore.of(config.settings, readonly=dry_run)  # a dry run never writes the ledger
    results = []
    try:
        store.connect()  # a broken ledger is reported before any destination is contacted
        for n in jobs:
            try:
                with store.job_lock(n).acquire(0):
                    results.append(prune_job(config, config.jobs[n], store, dry_run, today, echo))
            except LedgerError:
                raise  # the same for every job: one Error: line, exit 74
            except TableshipError as exc:  # a batch continues past a failing job
                if len(jobs) == 1:
                    raise
                log.error("%s: %s", n, exc.line())
                results.append(
                    PruneResult(n, rules_text(config.jobs[n].retention), dry_run=dry_run, error=exc)
                )
    finally:
        store.close()
    return results


def exit_code(results: list[PruneResult]) -> int:
    """0, or the highest exit code of the jobs that failed (75 when only locks were in the way)."""
    codes = [r.error.exit_code for r in results if r.error is not None]
    if not codes:
        return 0
    return EXIT_JOB_FAILED if any(c != EXIT_LOCKED for c in codes) else EXIT_LOCKED


def prune_after_run(config: Config, store: StateStore, job: JobConfig) -> PruneResult | None:
    """Hook for the runner (under the job's lock, after a successful run): prune if asked to.

    A failure is logged and does not change the outcome of the backup that just succeeded.
    """
    if not job.prune_after_run:
        return None
    try:
        result = prune_job(config, job, store)
    except TableshipError as exc:
        log.error("prune after the run failed: %s", exc.line())
        return None
    except Exception as exc:  # a bug or an unmapped library error: still only logged
        log.error("prune after the run failed: unexpected error: %s: %s", type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
        return None
    log.info("%s", result.summary())
    return result
