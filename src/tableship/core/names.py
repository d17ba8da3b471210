"""Identifier validation and name templates.

Everything that ends up in SQL or in a file path passes through here first: table and
column identifiers are checked against a strict pattern (then quoted by each source's
dialect), and rendered file names are checked to stay inside their root folder.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from dataclasses import dataclass
from pathlib import PurePosixPath

from tableship.core.templates import DATE_FIELDS, check_date_spec

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JOB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

TEMPLATE_FIELDS = ("job", "table", "database", "start", "end", "run_date", "chunk_start", "chunk_end")
#: the fields only a ``layout = "chunk"`` file name may use (one archive per chunk)
CHUNK_FIELDS = ("chunk_start", "chunk_end")


def check_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise ValueError."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(
            f"{what} {name!r} is not a plain identifier (letters, digits and _ only, not starting "
            "with a digit)"
        )
    return name


def split_table(table: str) -> tuple[str | None, str]:
    """``"db.tbl"`` → ``("db", "tbl")``; ``"tbl"`` → ``(None, "tbl")``; validated."""
    parts = table.split(".") if isinstance(table, str) else [table]
    if len(parts) > 2:
        raise ValueError(f"table {table!r} must be 'table' or 'database.table'")
    for p in parts:
        check_identifier(p, "table name part")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def check_job_name(name: str) -> str:
    if not _JOB.match(name):
        raise ValueError(
            f"job name {name!r} must start with a letter or digit and contain only letters, digits, "
            "'_', '.', '-'"
        )
    return name


@dataclass(frozen=True)
class TemplateValues:
    job: str
    table: str
    database: str
    start: dt.date
    end: dt.date
    run_date: dt.date
    chunk_start: dt.date | None = None  # layout = "chunk": the chunk's first and last day
    chunk_end: dt.date | None = None

    def as_dict(self) -> dict:
        d = {f: getattr(self, f) for f in TEMPLATE_FIELDS}
        # outside a chunk (remote_dir, a window's names) a chunk field renders as the window's bound
        d["chunk_start"] = self.chunk_start or self.start
        d["chunk_end"] = self.chunk_end or self.end
        return d


def check_template(template: str) -> None:
    """Raise ValueError if the template uses unknown fields, conversions, or a date code
    that is not portable (see templates.CODES)."""
    for _, field, spec, conv in string.Formatter().parse(template):
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            raise ValueError(
                f"unknown placeholder {{{field}}} in {template!r} (known: "
                f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})"
            )
        if conv:
            raise ValueError(f"conversions like !{conv} are not allowed in {template!r}")
        if field in DATE_FIELDS and spec:
            check_date_spec(spec, f"{{{field}:{spec}}} of {template!r}")


def render_relative(template: str, values: TemplateValues, what: str) -> str:
    """Render a path template and prove the result is a relative path without ``..``.

    The result is a POSIX relative path that cannot escape the folder it is joined to.
    """
    check_template(template)
    try:
        text = template.format(**values.as_dict())
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"{what} template {template!r} cannot be rendered: {exc}") from None
    return check_relative(text, what)


def check_relative(text: str, what: str) -> str:
    if "\\" in text or "\0" in text or any(ord(c) < 32 for c in text):
        raise ValueError(f"{what} {text!r} contains a backslash or control character")
    path = PurePosixPath(text)
    if path.is_absolute() or text.startswith("~"):
        raise ValueError(f"{what} {text!r} is absolute; it must stay inside the destination folder")
    if any(part == ".." for part in path.parts):
        raise ValueError(f"{what} {text!r} contains '..'; it must stay inside the destination folder")
    parts = [p for p in path.parts if p not in (".", "")]
    return "/".join(parts)
