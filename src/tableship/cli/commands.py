"""Command line: parse options → call one library function → print → exit code. No logic.

The ``tableship`` group and its global options; the commands come from one module per area
(``backup_commands``, ``catalog_commands``, ``setup_commands``). ``main()`` is the one place
every TableshipError becomes one ``Error: <what> — <what to do>`` line on stderr and its exit
code (see core/errors.py); tracebacks only with --debug.
"""

from __future__ import annotations

import signal
import sys
import traceback

import click

from tableship.cli import backup_commands, catalog_commands, setup_commands
from tableship.cli.context import Ctx
from tableship.cli.errors import error_text
from tableship.cli.options import choice_option
from tableship.core import interrupts
from tableship.core.errors import EXIT_JOB_FAILED, EXIT_USAGE, Interrupted, TableshipError
from tableship.core.log import setup_logging
from tableship.core.redact import wrap_std_streams
from tableship.core.version import __version__


def debug_requested(argv: list[str] | None) -> bool:
    """Whether the command line asks for ``--debug`` (parsed by the CLI's own options,
    without running anything)."""
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        with cli.make_context("tableship", args, resilient_parsing=True) as ctx:
            return bool(ctx.params.get("debug"))
    except Exception:  # an unparsable command line: click reports it; no traceback wanted
        return False


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
@choice_option(
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


# The command modules never import this group (no cycle, no registration as a side effect
# of an import): the group is assembled here, from the list.
COMMANDS = [
    backup_commands.run,
    backup_commands.status,
    backup_commands.history,
    backup_commands.abandon,
    backup_commands.state_group,
    catalog_commands.ls_cmd,
    catalog_commands.verify,
    catalog_commands.restore,
    catalog_commands.prune,
    setup_commands.config_group,
    setup_commands.init,
    setup_commands.import_legacy,
    setup_commands.check_destination,
    setup_commands.demo,
    setup_commands.man_cmd,
]
for _command in COMMANDS:
    cli.add_command(_command)


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
