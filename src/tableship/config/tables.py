"""Table lists: one ``[jobs.<block>]`` with ``tables = [...]`` or ``tables_file = "..."``
stands for one job per table.

Each expanded job is named ``<block>.<table>`` — the block's key, a dot, then the table
exactly as listed (``database.table`` or ``table``). The name depends on nothing but the
block and that line, so adding, removing or reordering other lines never renames a job:
its lock, ledger rows, incidents and archives stay its own. A name that is not a valid job
name (over 100 characters...) is an error naming the line, never silently shortened.

``tables_file`` is read relative to the config file's folder: one table per line, ``#``
starts a comment (whole line or after the name), blank lines are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tableship.core.names import check_job_name, split_table

LIST_KEYS = ("tables", "tables_file")


@dataclass(frozen=True)
class Listed:
    """One table of a list and where it came from (for messages)."""

    table: str
    where: str  # 'table_name.txt line 3' or 'tables[2]'


def expanded_name(block: str, table: str) -> str:
    """The stable name of the job ``table`` of block ``block`` stands for."""
    return f"{block}.{table}"


def read_tables_file(path: Path, shown: str, problems: list[str]) -> list[Listed]:
    """The tables of a table-list file; each bad line is a problem naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"tables_file {shown!r}: file {str(path)!r} not found")
        return []
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"tables_file {shown!r}: cannot read {str(path)!r}: {exc}")
        return []
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if name:
            out.append(Listed(name, f"{path} line {number}"))
    return out


def expand(block: str, body: dict[str, Any], base: Path, problems: list[str]) -> dict[str, dict[str, Any]]:
    """``{job name: job body}`` for a block; a block without a list is returned as it is.

    ``problems`` get ``jobs.<block>.<key>: ...`` lines; a bad entry drops only that table.
    """
    if not any(k in body for k in LIST_KEYS):
        return {block: body}
    key = f"jobs.{block}"
    start = len(problems)
    given = [k for k in (*LIST_KEYS, "table") if k in body]
    if len(given) > 1:
        problems.append(
            f"{key}: {' and '.join(repr(k) for k in given)} are given: use exactly one of "
            "'table', 'tables' or 'tables_file'"
        )
        return {}
    rest = {k: v for k, v in body.items() if k not in LIST_KEYS}
    if "tables" in body:
        value = body["tables"]
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            problems.append(f'{key}.tables: must be a list of table names, e.g. ["db.a", "db.b"]')
            return {}
        listed = [Listed(t.strip(), f"{key}.tables[{i}]") for i, t in enumerate(value)]
        label = f"{key}.tables"
    else:
        value = body["tables_file"]
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{key}.tables_file: must be a file name (one table per line)")
            return {}
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        before = len(problems)
        listed = read_tables_file(path, value, problems)
        problems[before:] = [f"{key}.{p}" for p in problems[before:]]
        label = f"{key}.tables_file"
    if not listed and len(problems) == start:
        problems.append(f"{label}: the list has no table: add one table per line")
    jobs: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}
    for item in listed:
        try:
            split_table(item.table)
            name = check_job_name(expanded_name(block, item.table))
        except ValueError as exc:
            problems.append(f"{label}: {item.where}: {exc}")
            continue
        if item.table in seen:
            problems.append(
                f"{label}: {item.where}: table {item.table!r} is listed twice (first: {seen[item.table]})"
            )
            continue
        seen[item.table] = item.where
        jobs[name] = {**rest, "table": item.table}
    return jobs
