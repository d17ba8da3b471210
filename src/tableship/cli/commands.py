"""Command line: parse options → call one library function → print → exit code. No logic.

Every TableshipError becomes one ``Error: <what> — <what to do>`` line on stderr and its
exit code (see errors.py); tracebacks only with --debug.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import click

from tableship.backup.runner import exit_code as run_exit_code
from tableship.catalog.abandon import abandon_window
from tableship.catalog.ls import LS_COLUMNS, ls_rows, ls_table_rows
from tableship.catalog.restore import restore as do_restore
from tableship.catalog.retention import exit_code as prune_exit_code
from tableship.catalog.retention import prune_jobs
from tableship.catalog.verify import verify_jobs
from tableship.cli.demo_run import run_demo
from tableship.cli.manpage import man_page, write_pages
from tableship.cli.progress import live_progress
from tableship.cli.summary import print_summary
from tableship.config.legacy import import_legacy as build
from tableship.config.loader import load_config
from tableship.config.models import Config
from tableship.config.selection import select_jobs
from tableship.config.starter import starter_config
from tableship.core import interrupts
from tableship.core.errors import (
    EXIT_JOB_FAILED,
    EXIT_USAGE,
    Interrupted,
    TableshipError,
    UsageError,
)
from tableship.core.fsutil import atomic_write_text
from tableship.core.log import setup_logging
from tableship.core.redact import activate, wrap_std_streams
from tableship.core.version import __version__
from tableship.core.window import parse_date, parse_window
from tableship.ledger.migrate import migrate_ledger
from tableship.ledger.state import StateStore
from tableship.ops.doctor import all_ok, format_checks
from tableship.ops.doctor import check_destination as run_checks
from tableship.ops.report import (
    STATUS_COLUMNS,
    format_table,
    history_rows,
    status_exit,
    status_lines,
    status_rows,
    status_summary,
)
from tableship.ops.validation import validate_config
from tableship.ops.wiring import restore_range_with_alerts, run_jobs


def error_text(exc: TableshipError) -> str:
    """An error's line with the one hint every failure without its own gets."""
    if exc.hint:
        return exc.line()
    if exc.exit_code == EXIT_USAGE:
        return f"{exc.line()} — see 'tableship --help'"
    return f"{exc.line()} — fix the cause, then re-run the same command (--debug shows details)"


def debug_requested(argv: list[str] | None) -> bool:
    """Whether the command line asks for ``--debug`` (parsed by the CLI's own options,
    without running anything)."""
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        with cli.make_context("tableship", args, resilient_parsing=True) as ctx:
            return bool(ctx.params.get("debug"))
    except Exception:  # an unparsable command line: click reports it; no traceback wanted
        return False


class Ctx:
    def __init__(self, config: str | None, verbose: int, quiet: bool, log_format: str):
        self.config_arg = config
        self.verbosity = -1 if quiet else verbose
        self.log_format = log_format
        self._config: Config | None = None

    @property
    def config(self):
        return self.load()

    def load(self, log_file: bool = True):
        """Load the config once and start logging.

        Logs go to ``log_file`` unless told not to (dry runs touch nothing).
        """
        if self._config is None:
            self._config = load_config(self.config_arg)
            s = self._config.settings
            setup_logging(
                self.verbosity,
                s.log_file if log_file else None,
                json_format=self.log_format == "json",
                max_bytes=s.log_max_bytes,
                backups=s.log_backups,
            )
        return self._config


def _date(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_date(value, param.opts[0])  # the option as the user typed it: --date, --from, --to
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _choice_option(name: str, choices: list[str], help: str, **kw):
    """An option taking one of ``choices`` (``--log-format``, ``init --source`` …)."""
    return click.option(name, type=click.Choice(choices), help=help, **kw)


def _wait_option(help: str):
    """``--wait SECONDS``: how long a command waits for a job's lock (``run``, ``abandon``)."""
    return click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help=help)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config",
    metavar="PATH",
    help="Config file (default: $TABLESHIP_CONFIG, else ./tableship.toml).",
)
@click.option("-v", "--verbose", count=True, help="More log output (debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary lines.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@_choice_option(
    "--log-format",
    ["text", "json"],
    "Log line format on stderr and in log_file.",
    default="text",
    show_default=True,
)
@click.version_option(__version__, prog_name="tableship")
@click.pass_context
def cli(ctx, config, verbose, quiet, debug, log_format):
    """tableship: back up rolling date-window slices of warehouse tables as verified,
    compressed CSV archives on a backup host — resumable, locked, alerting."""
    # --debug is read by main() itself (debug_requested): it decides how main reports an error
    setup_logging(-1 if quiet else verbose, json_format=log_format == "json")
    ctx.obj = Ctx(config, verbose, quiet, log_format)


@cli.command()
@click.argument("jobs", nargs=-1)
@click.option(
    "--all", "all_jobs", is_flag=True, help="Run every configured job (the default when no JOB is named)."
)
@click.option(
    "--date",
    "run_date",
    callback=_date,
    metavar="YYYY-MM-DD",
    help="Run date the window is computed from (default: today).",
)
@click.option(
    "--from",
    "start",
    callback=_date,
    metavar="YYYY-MM-DD",
    help="Explicit window start (inclusive); needs --to.",
)
@click.option(
    "--to", "end", callback=_date, metavar="YYYY-MM-DD", help="Explicit window end (inclusive); needs --from."
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (window, SQL and bound values, files, destination); touch nothing.",
)
@_wait_option("Wait up to SECONDS for a job's lock held by another run (default: skip at once, exit 75).")
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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--date",
    "today",
    callback=_date,
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
        _json([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    else:
        click.echo(format_table(rows, STATUS_COLUMNS))
        for line in status_lines(rows):
            click.echo(line)
        click.echo(status_summary(rows))
    sys.exit(status_exit(rows))


@cli.command()
@click.argument("job")
@click.option(
    "--window",
    required=True,
    metavar="START..END",
    help="The window to give up (YYYY-MM-DD..YYYY-MM-DD), as 'status' lists it.",
)
@click.option("--reason", default="given up by the user", show_default=True, help="Recorded in the ledger.")
@_wait_option("Wait up to SECONDS for the job's lock held by a run (default: exit 75 at once).")
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


@cli.command()
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
        _json(rows)
    elif not rows:
        click.echo("no runs yet")
    else:
        click.echo(format_table(rows, STATUS_COLUMNS))


@cli.group("state")
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


@cli.group("config")
def config_group():
    """Inspect the configuration."""


@config_group.command("validate")
@click.pass_obj
def config_validate(obj: Ctx):
    """Validate the config file and print every problem found (exit 2 if any): also the
    optional drivers its sources and destinations need, and its local destination folders."""
    report = validate_config(obj.config_arg)
    for problem in report.problems:
        click.echo(f"Error: {problem}", err=True)
    for line in report.lines:
        click.echo(line)
    sys.exit(report.exit_code)


@cli.command()
@click.argument("directory", default="tableship-demo", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--rows",
    type=click.IntRange(min=1000),
    default=600_000,
    show_default=True,
    help="Rows in the demo table.",
)
@click.pass_obj
def demo(obj: Ctx, directory: Path, rows: int):
    """Create DIRECTORY with a DuckDB demo warehouse and a commented tableship.toml,
    then back up the demo table into DIRECTORY/backup-server/."""
    code = run_demo(directory, rows, echo=click.echo, verbosity=obj.verbosity)
    sys.exit(code)


@cli.command("ls")
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def ls_cmd(obj: Ctx, job, as_json):
    """The archives on the destination of JOB (or of every job), read from their manifests:
    window, rows, archive bytes, created, sha256, and what is missing (incomplete)."""
    rows = ls_rows(obj.config, [job] if job else [])
    if as_json:
        _json(rows)
    else:
        click.echo(format_table(ls_table_rows(rows), LS_COLUMNS))


@cli.command()
@click.argument("jobs", nargs=-1)
@click.option(
    "--all", "all_jobs", is_flag=True, help="Verify every configured job (the default when no JOB is named)."
)
@click.option("--window", metavar="START..END", help="Only the archives whose window lies within START..END.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def verify(obj: Ctx, jobs, all_jobs, window, as_json):
    """Re-hash each archive on the destination and compare it with its manifest and .sha256
    sidecar: OK / MISMATCH / MISSING / INCOMPLETE. Exit 0 only if all are OK, else 1.
    Results are recorded in the state store (see 'status'); nothing is deleted or rewritten."""

    def line(v):
        if not as_json:
            click.echo(
                f"{v.status.value:<10} {v.archive.job}  {v.archive.window or '-'}  {v.archive.remote_path}"
                f"{'  ' + v.detail if v.detail else ''}"
            )

    results = verify_jobs(obj.config, list(jobs), all_jobs, window, echo=line)
    if as_json:
        _json([d for jv in results for d in jv.as_dicts()])
    else:
        for jv in results:
            click.echo(jv.summary())
    sys.exit(0 if all(jv.ok for jv in results) else EXIT_JOB_FAILED)


@cli.command()
@click.argument("job")
@click.option(
    "--from",
    "range_from",
    metavar="YYYY-MM[-DD]",
    help="Restore every archive overlapping this month or day … (with --to: … up to that month or day).",
)
@click.option(
    "--to",
    "to",
    metavar="YYYY-MM[-DD]",
    help="The range's last month or day (with --from; default: --from). With --window: the CSV folder "
    "(old spelling of --out).",
)
@click.option(
    "--window",
    "which",
    metavar="START..END|FILE_NAME",
    help="One archive: its window (YYYY-MM-DD..YYYY-MM-DD) or its file name.",
)
@click.option(
    "--out",
    "out",
    metavar="DIR",
    help="Leave the decompressed CSV(s) in DIR (with --window: the default is the current folder "
    "unless --load is given).",
)
@click.option(
    "--load",
    metavar="TARGET",
    help="Load the rows into a table typed from the manifest: SOURCE:[SCHEMA.]TABLE (a configured "
    "duckdb, sqlalchemy or hive source), URL#[SCHEMA.]TABLE (SQLAlchemy) or DUCKDB_PATH[:TABLE].",
)
@click.option(
    "--replace",
    is_flag=True,
    help="With --from: replace the range's rows (partitions) in an existing table, nothing else. "
    "With --window: replace the target table or CSV file.",
)
@click.option(
    "--dry-run", is_flag=True, help="With --from: list the archives it would use, download nothing."
)
@click.pass_obj
def restore(obj: Ctx, job, range_from, to, which, out, load, replace, dry_run):
    """Download archives of JOB, check them against their manifests (sha256, size, header,
    row count), then leave the CSV in a folder or load the rows into DuckDB, PostgreSQL (or
    any SQLAlchemy database) or Hive/Spark. With --from/--to: every archive of a month or day
    range, all verified before any is loaded, loaded in order, resumable per archive (rows
    outside the range are filtered out). Any failed check: nothing is left or loaded."""
    echo = None if obj.verbosity < 0 else lambda s: click.echo(s, err=True)
    if range_from is not None:
        if which is not None:
            raise UsageError(
                "--from and --window are exclusive", "pass a range (--from/--to) or one --window"
            )
        result = restore_range_with_alerts(
            obj.load(log_file=not dry_run),
            job,
            range_from,
            to,
            load=load,
            out=out,
            replace=replace,
            dry_run=dry_run,
            echo=echo if not dry_run else click.echo,
        )
        click.echo(result.summary())
        return
    if which is None:
        raise UsageError(
            "restore needs --from (a range) or --window (one archive)", "see 'tableship restore --help'"
        )
    if dry_run:
        raise UsageError("--dry-run lists a range's archives", "use it with --from/--to")
    if to is not None and out is not None:
        raise UsageError("--to and --out both name the CSV folder", "pass only --out DIR")
    restored = do_restore(
        obj.config, job, which, to=out if out is not None else to, load=load, replace=replace, echo=echo
    )
    for text in restored.lines():
        click.echo(text)


@cli.command()
@click.argument("jobs", nargs=-1)
@click.option(
    "--all", "all_jobs", is_flag=True, help="Prune every configured job (the default when no JOB is named)."
)
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted.")
@click.pass_obj
def prune(obj: Ctx, jobs, all_jobs, dry_run):
    """Delete the archives (with their sidecars) that no retention rule of the job keeps,
    printing each. The newest verified archive and files without a manifest of the job are
    never deleted."""
    results = prune_jobs(obj.config, list(jobs), all_jobs, dry_run, echo=click.echo)
    for result in results:
        click.echo(result.summary())
    sys.exit(prune_exit_code(results))


@cli.command("check-destination")
@click.argument("name")
@click.pass_obj
def check_destination(obj: Ctx, name):
    """Connect to destination NAME and check it: host key, login, root folder, write
    permission, free space, verification method. One OK/FAIL line per check; exit 0
    if all are OK, else 1."""
    results = run_checks(obj.config, name)
    for line in format_checks(results):
        click.echo(line)
    sys.exit(0 if all_ok(results) else EXIT_JOB_FAILED)


def _file_option(name: str, help: str, **kw):
    """An option naming a file (``--out``, ``--properties`` …)."""
    return click.option(name, type=click.Path(dir_okay=False, path_type=Path), help=help, **kw)


def _out_option(help: str):
    """``--out FILE`` of the commands that write a config file (see :func:`_write_new`)."""
    return _file_option("--out", help, default=Path("tableship.toml"), show_default=True)


_force_option = click.option("--force", is_flag=True, help="Replace --out if it exists.")


def _write_new(out: Path, text: str, force: bool) -> bool:
    """``--out -``: print ``text`` (False). Else write ``out`` whole (temporary name + rename;
    an existing file only with --force) and return True."""
    if str(out) == "-":
        click.echo(text, nl=False)
        return False
    if out.exists() and not force:
        raise UsageError(f"{out} already exists", "pass --force to replace it, or --out ANOTHER_FILE")
    if not out.parent.is_dir():
        raise UsageError(f"folder {out.parent} does not exist", "create it, or pass another --out")
    atomic_write_text(out, text)
    return True


@cli.command()
@_choice_option(
    "--source", ["duckdb", "hive", "impala", "sqlalchemy"], "The source type the config starts with."
)
@_choice_option("--destination", ["local", "sftp"], "The destination type the config starts with.")
@_out_option("The file to write ('-' prints it).")
@_force_option
def init(source, destination, out: Path, force: bool):
    """Write a commented starter config for the source and destination types named.
    Replace its "<...>" placeholders (config validate refuses them until then), then run
    'tableship config validate'."""
    if not _write_new(out, starter_config(source, destination), force):
        return
    click.echo(
        f'wrote {out}: fill in the "<...>" placeholders, then run '
        f"'tableship --config {out} config validate'"
    )


@cli.command("import-legacy")
@_file_option(
    "--properties",
    "The legacy MNAAS_bkp_files_process.properties (read as shell syntax, never run).",
    required=True,
)
@_file_option("--tables", "The legacy table list (table_name.txt: one table per line).", required=True)
@_out_option("The config file to write ('-' prints it).")
@_choice_option(
    "--source-type",
    ["impala", "hive"],
    "What IMPALAD_HOST runs (both speak HiveServer2).",
    default="impala",
    show_default=True,
)
@_force_option
def import_legacy(properties: Path, tables: Path, out: Path, source_type: str, force: bool):
    """Write a tableship config that does what the legacy Bash backup job did: its source
    (IMPALAD_HOST), backup servers (backup_server, and edge node 1's when set), window,
    format, environment (ENV_MODE), email alerts (SDP_ticket_cc_email), one job per line of
    the table list. Every value it cannot infer is a "<TODO: ...>" placeholder with a
    '# TODO' comment. See docs/migrating.md."""
    result = build(properties, tables, Path("tableship.toml") if str(out) == "-" else out, source_type)
    if not _write_new(out, result.text, force):
        return
    click.echo(
        f"wrote {out}: {len(result.jobs)} job(s), {result.placeholders} placeholder(s) to fill in, "
        f"{len(result.todos) - result.placeholders} value(s) to check (grep TODO {out})"
    )
    for todo in result.todos:
        click.echo(f"  TODO {todo}")


@cli.command("man")
@click.argument("command", required=False)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write every page (tableship.1, tableship-run.1, ...) into this folder instead.",
)
def man_cmd(command, directory: Path | None):
    """Print the man page of tableship (or of one COMMAND) in roff, generated from the
    commands' help: 'tableship man | man -l -'. With --dir, write every page, e.g. into
    ~/.local/share/man/man1."""
    if directory is not None:
        for path in write_pages(cli, directory):
            click.echo(f"wrote {path}")
        return
    click.echo(man_page(cli, command), nl=False)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: the one place errors become ``Error:`` lines."""
    interrupts.install()
    debug = debug_requested(argv)
    # everything printed — Error: lines, summaries, --debug tracebacks — is redacted (redact.py)
    wrap_std_streams()
    try:
        cli.main(args=argv, prog_name="tableship", standalone_mode=False)
        code = 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        msg = " ".join(exc.format_message().split())
        click.echo(f"Error: {msg} — see 'tableship --help'", err=True)
        code = EXIT_USAGE
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        click.echo(
            "Error: interrupted by SIGINT — re-run the same command to resume where it stopped", err=True
        )
        code = 128 + signal.SIGINT
    except Interrupted as exc:  # a BaseException: never caught on the way up, always exit 128+N
        interrupts.quiet()
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {exc.line()}", err=True)
        code = exc.exit_code
    except TableshipError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {error_text(exc)}", err=True)  # every Error: line says what to do
        code = exc.exit_code
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except OSError as exc:  # a local path that cannot be used (state_dir or log_file is a file, read-only...)
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(
            f"Error: {exc.strerror or exc}{where} — check that path (settings.state_dir, staging_dir, "
            "log_file) and its permissions",
            err=True,
        )
        code = EXIT_JOB_FAILED
    except Exception as exc:  # a bug: still one line, traceback only with --debug
        if debug:
            raise
        click.echo(
            f"Error: unexpected {type(exc).__name__}: {exc} — re-run with --debug and report it", err=True
        )
        code = EXIT_JOB_FAILED
    sig = interrupts.pending()
    if sig is not None and code != 128 + sig:
        # a signal that a library swallowed on its way up: the command still ends as interrupted
        interrupts.quiet()
        click.echo(f"Error: {Interrupted(sig).line()}", err=True)
        code = 128 + sig
    interrupts.quiet()
    sys.exit(code)
