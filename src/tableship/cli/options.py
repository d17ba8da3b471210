"""Option helpers the commands share: dates, choices, ``--wait``, files, JSON output, and
writing a new file (``--out``, ``--force``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tableship.core.errors import UsageError
from tableship.core.fsutil import atomic_write_text
from tableship.core.window import parse_date


def date_value(ctx, param, value):
    """An option's YYYY-MM-DD value as a date (click callback: --date, --from, --to)."""
    if value is None:
        return None
    try:
        return parse_date(value, param.opts[0])  # the option as the user typed it: --date, --from, --to
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def echo_json(data) -> None:
    """Print ``data`` as indented JSON (``--json``)."""
    click.echo(json.dumps(data, indent=2, default=str))


def choice_option(name: str, choices: list[str], help: str, **kw):
    """An option taking one of ``choices`` (``--log-format``, ``init --source`` …)."""
    return click.option(name, type=click.Choice(choices), help=help, **kw)


def wait_option(help: str):
    """``--wait SECONDS``: how long a command waits for a job's lock (``run``, ``abandon``)."""
    return click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help=help)


def file_option(name: str, help: str, **kw):
    """An option naming a file (``--out``, ``--properties`` …)."""
    return click.option(name, type=click.Path(dir_okay=False, path_type=Path), help=help, **kw)


def out_option(help: str):
    """``--out FILE`` of the commands that write a config file (see :func:`write_new`)."""
    return file_option("--out", help, default=Path("tableship.toml"), show_default=True)


force_option = click.option("--force", is_flag=True, help="Replace --out if it exists.")


def write_new(out: Path, text: str, force: bool) -> bool:
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
