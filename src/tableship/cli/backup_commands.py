"""The commands of backup runs and their ledger: ``run``, ``status``, ``history``,
``abandon``, ``state migrate``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from tableship.backup.runner import exit_code as run_exit_code
from tableship.catalog.abandon import abandon_window
from tableship.cli.context import Ctx
from tableship.cli.errors import error_text
from tableship.cli.options import date_value, echo_json, wait_option
from tableship.cli.progress import live_progress
from tableship.cli.summary import print_summary
from tableship.config.models import Config
from tableship.config.selection import select_jobs
from tableship.core.errors import Interrupted, UsageError
from tableship.core.redact import activate
from tableship.core.window import parse_window
from tableship.ledger.migrate import migrate_ledger
from tableship.ledger.state import StateStore
from tableship.ops.report import (
    STATUS_COLUMNS,
    format_table,
    history_rows,
    status_exit,
    status_lines,
    status_rows,
    status_summary,
)
from tableship.ops.wiring import run_jobs


@click.command()
@click.argument("jobs", nargs=-1)
@click.option(
    "--all", "all_jobs", is_flag=True, help="Run every configured job (the default when no JOB is named)."
)
@click.option(
    "--date",
    "run_date",
    callback=date_value,
    metavar="YYYY-MM-DD",
    help="Run date the window is computed from (default: today).",
)
@click.option(
    "--from",
    "start",
    callback=date_value,
    metavar="YYYY-MM-DD",
    help="Explicit window start (inclusive); needs --to.",
)
@click.option(
    "--to",
    "end",
    callback=date_value,
    metavar="YYYY-MM-DD",
    help="Explicit window end (inclusive); needs --from.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (window, SQL and bound values, files, destination); touch nothing.",
)
@wait_option("Wait up to SECONDS for a job's lock held by another run (default: skip at once, exit 75).")
@click.option(
    "--jobs",
    "max_jobs",
    type=click.IntRange(min=1, max=64),
    default=None,
    metavar="N",
    help="Run up to N jobs at once (default: settings.max_jobs); 1 runs them one after another.",
)
@click.pass_obj
def run(obj: Ctx, jobs, all_jobs, run_date, start, end, dry_run, wait, max_jobs):
    """Back up the named JOBs (or all), up to --jobs N at once; one summary line per job
    as it ends, and after several jobs at once one summary table.

    Exit codes: 0 all succeeded, 1 a job failed, 2 usage/config error, 74 the ledger
    (state.db) cannot be used, 75 a job was skipped because another run holds its lock
    (and no job failed or ran), 128+N stopped by signal N (143 SIGTERM, 130 SIGINT).
    """
    config = obj.load(log_file=not dry_run)
    workers = max_jobs or config.settings.max_jobs
    table = not dry_run and workers > 1 and len(select_jobs(config, list(jobs), all_jobs)) > 1
    try:
        with live_progress(obj.verbosity) as progress:
            outcomes = run_jobs(
                config,
                list(jobs),
                all_jobs=all_jobs,
                run_date=run_date,
                start=start,
                end=end,
                dry_run=dry_run,
                wait=wait,
                progress_factory=progress,
                echo=click.echo,
                quiet=obj.verbosity < 0,
                max_jobs=workers,
                on_status=progress.pool_status if progress is not None and table else None,
            )
    except Interrupted as exc:
        if table:
            print_summary(getattr(exc, "outcomes", []), click.echo)
        raise
    if table:
        print_summary(outcomes, click.echo)
    for o in outcomes:  # each failed job also ends in one "Error:" line on stderr (cron mails, scripts)
        if o.status == "failed" and o.error is not None:
            click.echo(f"Error: job {o.job}: {error_text(o.error)}", err=True)
    sys.exit(run_exit_code(outcomes))


def _from_ledger(config: Config, read: Callable[[StateStore], list[dict]]) -> list[dict]:
    """What ``read`` finds in the ledger, opened read-only (never created or migrated)."""
    store = StateStore.of(config.settings, readonly=True)
    try:
        return read(store)
    finally:
        store.close()


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--date",
    "today",
    callback=date_value,
    metavar="YYYY-MM-DD",
    help="Judge the schedule as of this date (default: today).",
)
@click.pass_obj
def status(obj: Ctx, as_json, today):
    """One row per job: last run, window, phase, result, rows, size, attempts, start, duration;
    then each job's unfinished and missing windows and one monitoring line.

    Exit codes (Nagios-style, so 'tableship status' can be a monitoring check): 0 OK,
    1 WARNING (a window unfinished within gap_grace, a job never run), 2 CRITICAL (a job's
    latest scheduled window failed, a window unfinished or missing past gap_grace, an
    open incident). A config error also exits 2.
    """
    config = obj.config
    rows = _from_ledger(config, lambda store: status_rows(config, store, today))
    if as_json:
        echo_json([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    else:
        click.echo(format_table(rows, STATUS_COLUMNS))
        for line in status_lines(rows):
            click.echo(line)
        click.echo(status_summary(rows))
    sys.exit(status_exit(rows))


@click.command()
@click.argument("job")
@click.option(
    "--window",
    required=True,
    metavar="START..END",
    help="The window to give up (YYYY-MM-DD..YYYY-MM-DD), as 'status' lists it.",
)
@click.option("--reason", default="given up by the user", show_default=True, help="Recorded in the ledger.")
@wait_option("Wait up to SECONDS for the job's lock held by a run (default: exit 75 at once).")
@click.pass_obj
def abandon(obj: Ctx, job, window, reason, wait):
    """Give up one unfinished or missing WINDOW of JOB for good: its unfinished run is
    recorded as abandoned (its staged archive, remote temporaries and unverified upload
    removed) and the window is no longer finished by later runs, listed as a gap, or
    alerted on. Recorded in the ledger. Verified archives are never touched."""
    try:
        w = parse_window(window)
    except ValueError as exc:
        raise UsageError(f"--window: {exc}", "e.g. --window 2026-10-01..2026-10-31") from None
    for text in abandon_window(obj.config, job, w, reason, wait):
        click.echo(text)


@click.command()
@click.argument("job", required=False)
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Number of runs to show."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history(obj: Ctx, job, limit, as_json):
    """Past runs, newest first (of one JOB, or all)."""
    config = obj.config
    if job:
        config.job(job)
    rows = _from_ledger(config, lambda store: history_rows(store, job, limit))
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo("no runs yet")
    else:
        click.echo(format_table(rows, STATUS_COLUMNS))


@click.group("state")
def state_group():
    """The ledger itself (docs/scaling.md)."""


@state_group.command("migrate")
@click.option(
    "--to",
    "to_url",
    required=True,
    metavar="URL",
    help="The PostgreSQL ledger to copy into (postgresql://user:password@host:5432/db; $VAR is expanded).",
)
@click.pass_obj
def state_migrate(obj: Ctx, to_url):
    """Copy this host's SQLite ledger (state_dir/state.db: every run, transition, incident, alert,
    verification and prune) into an empty PostgreSQL ledger, then point settings.state at it.
    The SQLite file is only read."""
    config = obj.config
    url = os.path.expandvars(to_url)
    activate([*config.secrets, url])  # the URL's password is a secret like the config's
    migrate_ledger(config.settings, url, click.echo)
