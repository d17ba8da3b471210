"""The commands that set tableship up and check it: ``config validate``, ``init``,
``import-legacy``, ``check-destination``, ``demo``, ``man``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tableship.cli.context import Ctx
from tableship.cli.demo_run import run_demo
from tableship.cli.manpage import man_page, write_pages
from tableship.cli.options import choice_option, file_option, force_option, out_option, write_new
from tableship.config.legacy import import_legacy as build
from tableship.config.starter import starter_config
from tableship.core.errors import EXIT_JOB_FAILED
from tableship.ops.doctor import all_ok, format_checks
from tableship.ops.doctor import check_destination as run_checks
from tableship.ops.validation import validate_config


@click.group("config")
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


@click.command()
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


@click.command("check-destination")
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


@click.command()
@choice_option(
    "--source", ["duckdb", "hive", "impala", "sqlalchemy"], "The source type the config starts with."
)
@choice_option("--destination", ["local", "sftp"], "The destination type the config starts with.")
@out_option("The file to write ('-' prints it).")
@force_option
def init(source, destination, out: Path, force: bool):
    """Write a commented starter config for the source and destination types named.
    Replace its "<...>" placeholders (config validate refuses them until then), then run
    'tableship config validate'."""
    if not write_new(out, starter_config(source, destination), force):
        return
    click.echo(
        f'wrote {out}: fill in the "<...>" placeholders, then run '
        f"'tableship --config {out} config validate'"
    )


@click.command("import-legacy")
@file_option(
    "--properties",
    "The legacy MNAAS_bkp_files_process.properties (read as shell syntax, never run).",
    required=True,
)
@file_option("--tables", "The legacy table list (table_name.txt: one table per line).", required=True)
@out_option("The config file to write ('-' prints it).")
@choice_option(
    "--source-type",
    ["impala", "hive"],
    "What IMPALAD_HOST runs (both speak HiveServer2).",
    default="impala",
    show_default=True,
)
@force_option
def import_legacy(properties: Path, tables: Path, out: Path, source_type: str, force: bool):
    """Write a tableship config that does what the legacy Bash backup job did: its source
    (IMPALAD_HOST), backup servers (backup_server, and edge node 1's when set), window,
    format, environment (ENV_MODE), email alerts (SDP_ticket_cc_email), one job per line of
    the table list. Every value it cannot infer is a "<TODO: ...>" placeholder with a
    '# TODO' comment. See docs/migrating.md."""
    result = build(properties, tables, Path("tableship.toml") if str(out) == "-" else out, source_type)
    if not write_new(out, result.text, force):
        return
    click.echo(
        f"wrote {out}: {len(result.jobs)} job(s), {result.placeholders} placeholder(s) to fill in, "
        f"{len(result.todos) - result.placeholders} value(s) to check (grep TODO {out})"
    )
    for todo in result.todos:
        click.echo(f"  TODO {todo}")


@click.command("man")
@click.argument("command", required=False)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write every page (tableship.1, tableship-run.1, ...) into this folder instead.",
)
@click.pass_context
def man_cmd(ctx: click.Context, command, directory: Path | None):
    """Print the man page of tableship (or of one COMMAND) in roff, generated from the
    commands' help: 'tableship man | man -l -'. With --dir, write every page, e.g. into
    ~/.local/share/man/man1."""
    cli = ctx.find_root().command  # the tableship group (cli/commands.py), which registers this one
    assert isinstance(cli, click.Group)
    if directory is not None:
        for path in write_pages(cli, directory):
            click.echo(f"wrote {path}")
        return
    click.echo(man_page(cli, command), nl=False)
