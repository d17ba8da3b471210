"""The text of an ``Error:`` line: the error's own hint, or the one every failure without
its own gets."""

from __future__ import annotations

from tableship.core.errors import EXIT_USAGE, TableshipError


def error_text(exc: TableshipError) -> str:
    """An error's line with the one hint every failure without its own gets."""
    if exc.hint:
        return exc.line()
    if exc.exit_code == EXIT_USAGE:
        return f"{exc.line()} — see 'tableship --help'"
    return f"{exc.line()} — fix the cause, then re-run the same command (--debug shows details)"
