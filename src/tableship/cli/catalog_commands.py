"""The commands on the archives at the destinations: ``ls``, ``verify``, ``restore``, ``prune``."""

from __future__ import annotations

import sys

import click

from tableship.catalog.ls import LS_COLUMNS, ls_rows, ls_table_rows
from tableship.catalog.restore import restore as do_restore
from tableship.catalog.retention import exit_code as prune_exit_code
from tableship.catalog.retention import prune_jobs
from tableship.catalog.verify import verify_jobs
from tableship.cli.context import Ctx
from tableship.cli.options import echo_json
from tableship.core.errors import EXIT_JOB_FAILED, UsageError
from tableship.ops.report import format_table
from tableship.ops.wiring import restore_range_with_alerts


@click.command("ls")
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def ls_cmd(obj: Ctx, job, as_json):
    """The archives on the destination of JOB (or of every job), read from their manifests:
    window, rows, archive bytes, created, sha256, and what is missing (incomplete)."""
    rows = ls_rows(obj.config, [job] if job else [])
    if as_json:
        echo_json(rows)
    else:
        click.echo(format_table(ls_table_rows(rows), LS_COLUMNS))


@click.command()
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
        echo_json([d for jv in results for d in jv.as_dicts()])
    else:
        for jv in results:
            click.echo(jv.summary())
    sys.exit(0 if all(jv.ok for jv in results) else EXIT_JOB_FAILED)


@click.command()
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
@click.option(
    "--parallel",
    type=click.IntRange(1, 16),
    metavar="N",
    help="With --from --load: load N archives at once, committed in range order (PostgreSQL and "
    "DuckDB targets; default 4 and 2; the others load one at a time).",
)
@click.pass_obj
def restore(obj: Ctx, job, range_from, to, which, out, load, replace, dry_run, parallel):
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
            parallel=parallel,
            echo=echo if not dry_run else click.echo,
        )
        click.echo(result.summary())
        return
    if parallel is not None:
        raise UsageError("--parallel is for a range's loads", "use it with --from/--to and --load")
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


@click.command()
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
