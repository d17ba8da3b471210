"""Man pages generated from the Click commands' help (click-man), printed by ``tableship man``
or written into a folder by ``tableship man --dir``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
from click_man.core import generate_man_page, write_man_pages

from tableship.core.errors import UsageError
from tableship.core.version import __version__

PROG = "tableship"


def _date() -> str:
    return dt.date.today().strftime("%Y-%m-%d")


def man_page(cli: click.Group, command: str | None = None) -> str:
    """The roff text of ``tableship`` or of ``tableship COMMAND`` (a group's sub-command:
    ``"config validate"``)."""
    ctx = click.Context(cli, info_name=PROG)
    cmd: click.Command = cli
    for part in (command or "").split():
        sub = cmd.commands.get(part) if isinstance(cmd, click.Group) else None
        if sub is None or sub.hidden:
            raise UsageError(f"no command {command!r}", "see 'tableship --help' for the commands")
        cmd = sub
        ctx = click.Context(cmd, info_name=part, parent=ctx)
    return generate_man_page(ctx, version=__version__, date=_date())


def write_pages(cli: click.Group, folder: Path) -> list[Path]:
    """Every page (``tableship.1``, ``tableship-run.1``, ...) into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_man_pages(PROG, cli, version=__version__, target_dir=str(folder), date=_date())
    return sorted(folder.glob(f"{PROG}*.1"))
