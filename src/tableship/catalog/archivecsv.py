"""An archive's CSV as DuckDB reads it back, shared by ``restore --window`` (restore.py),
``restore --from/--to`` (restore_range.py) and the loaders: the manifest's columns as DuckDB
types, its dialect, the ``read_csv`` SQL and its parse errors, decompression with the
longest line measured, the DuckDB transaction helper, and the restore's error class."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tableship.archive.codecs import open_decompressor
from tableship.archive.csvrender import CsvDialect
from tableship.core.errors import JobError

_SIMPLE_TYPES = {
    "BOOLEAN",
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "VARCHAR",
    "BLOB",
    "HUGEINT",
}
_DECIMAL = re.compile(r"^DECIMAL\((\d{1,2}),(\d{1,2})\)$")
_CHUNK = 1 << 20


class RestoreError(JobError):
    """The archive cannot be restored as asked (exit 1); nothing was left or loaded."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def duckdb_transaction(con: Any) -> Iterator[None]:
    """One DuckDB transaction around the block: COMMIT when it ends, ROLLBACK when it raises
    (a failing ROLLBACK, DuckDB having aborted the transaction itself, does not hide its error)."""
    import duckdb  # lazily: a core dependency, but heavy, and no command but restore needs it

    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise


def duckdb_type(t: object) -> str:
    """Check a manifest column type (it goes into SQL) and return it in DuckDB's spelling."""
    t = str(t).upper().replace(" ", "")
    if t in _SIMPLE_TYPES:
        return t
    m = _DECIMAL.match(t)
    if m and 1 <= int(m.group(1)) <= 38 and int(m.group(2)) <= int(m.group(1)):
        return t
    raise ValueError(t)


def manifest_columns(manifest: dict, strict: bool = True) -> list[tuple[str, str]]:
    """(name, DuckDB type) per manifest column; unless ``strict``, an unknown type is read as VARCHAR."""
    cols = manifest.get("columns")
    if not isinstance(cols, list) or not cols:
        raise RestoreError("the manifest lists no columns", "restore with --to DIR and read the CSV yourself")
    out = []
    for c in cols:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise RestoreError(
                "the manifest's columns are malformed", "restore with --to DIR and read the CSV yourself"
            )
        try:
            out.append((c["name"], duckdb_type(c.get("type"))))
        except ValueError:
            if not strict:
                out.append((c["name"], "VARCHAR"))
                continue
            raise RestoreError(
                f"column {c['name']!r} has type {c.get('type')!r}, which --load cannot create",
                "restore with --to DIR and load the CSV yourself",
            ) from None
    return out


def manifest_dialect(manifest: dict) -> CsvDialect:
    f = manifest.get("format") or {}
    try:
        return CsvDialect(
            delimiter=f.get("delimiter", ";"),
            header=f.get("header", True),
            null=f.get("null", ""),
            quoting=f.get("quoting", "minimal"),
        )
    except ValueError as exc:
        raise RestoreError(f"the manifest's format is invalid: {exc}", "restore with --to DIR") from None


def read_csv_sql(columns: list[tuple[str, str]], dialect: CsvDialect, max_line: int) -> tuple[str, dict]:
    """``SELECT <converted columns> FROM read_csv($path, ...)`` and its parameters (path bound later)."""
    read_types = {}
    select = []
    for name, typ in columns:
        q = quote_ident(name)
        if typ == "BLOB":
            read_types[name], expr = "VARCHAR", f"unhex({q})"
        elif typ == "TIMESTAMPTZ":
            read_types[name], expr = "TIMESTAMP", f"timezone('UTC', {q})"
        else:
            read_types[name], expr = typ, q
        select.append(f"{expr} AS {quote_ident(name)}")
    quote = '"' if dialect.quoting == "minimal" else ""
    opts = (
        "columns = $columns, delim = $delim, quote = $quote, escape = $quote, header = $header, "
        "nullstr = $nullstr, allow_quoted_nulls = false, auto_detect = false, strict_mode = true, "
        "new_line = '\\n', null_padding = false, ignore_errors = false"
    )
    params = {
        "columns": read_types,
        "delim": dialect.delimiter,
        "quote": quote,
        "header": dialect.header,
        "nullstr": dialect.null,
    }
    if max_line > (1 << 20):
        size = 2 * max_line + (1 << 20)
        opts += f", max_line_size = {int(size)}, buffer_size = {int(4 * size)}"
    return f"SELECT {', '.join(select)} FROM read_csv($path, {opts})", params


def parse_error(exc: Exception) -> RestoreError:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    why = next(
        (ln for ln in lines[1:] if ln.startswith(("Error when converting", "Could not convert", "Expected"))),
        "",
    )
    if why:
        first = f"{first}: {why}"
    return RestoreError(
        f"the archive's CSV does not parse with its manifest's format and types: {first}",
        "nothing was loaded; check the archive with 'tableship verify' or restore it with --to DIR",
    )


def make_folder(folder: Path, what: str) -> None:
    """Create the folder for restored CSVs (and its parents); else a RestoreError ``what: why``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RestoreError(f"{what}: {exc.strerror}", "pick a folder you can write to") from None


def decompress_csv(
    archive: Path, codec: str, out: Path, sync: bool = True, quoted: bool = True
) -> tuple[int, bytes, int]:
    """Decompress into ``out``; (bytes, first line, longest record).

    The longest record is what DuckDB's ``max_line_size`` must allow: with ``quoted``
    (``quoting = "minimal"``) a line break inside quotes does not end it (a value of many
    short lines is one long record), so only the line breaks after an even number of
    ``"`` count; without, every line break does. ``sync=False`` for a temporary that is
    read and deleted by this process (a range restore's staged CSV): no fsync. A read
    error of the codec is a RestoreError; a write error stays an OSError."""

    def bad(exc: Exception) -> RestoreError:
        return RestoreError(
            f"the archive does not decompress as {codec}: {type(exc).__name__}: {exc}",
            "the archive is inconsistent with its manifest: restore another window",
        )

    total, longest, run, odd = 0, 0, 0, 0  # odd: inside quotes at the chunk's start
    head = b""
    try:
        src = open_decompressor(archive, codec)
    except OSError as exc:
        if exc.errno is not None:
            raise
        raise bad(exc) from None
    with src, open(out, "wb") as dst:
        while True:
            try:
                chunk = src.read(_CHUNK)
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:  # gzip/isal/zlib/zstd each raise their own error types
                raise bad(exc) from None
            if not chunk:
                break
            if b"\n" not in head:
                head = (head + chunk[:65536])[:65536]
            total += len(chunk)
            buf = np.frombuffer(chunk, dtype=np.uint8)
            nl = np.flatnonzero(buf == 10)
            if quoted:
                q = np.flatnonzero(buf == 34)
                if len(q) and len(nl):  # a record ends at a line break outside quotes
                    nl = nl[((np.searchsorted(q, nl) + odd) & 1) == 0]
                odd = (odd + len(q)) & 1
            if len(nl) == 0:
                run += len(chunk)
            else:
                longest = max(longest, run + int(nl[0]) + 1)
                if len(nl) > 1:
                    longest = max(longest, int(np.diff(nl).max()))
                run = len(chunk) - int(nl[-1]) - 1
            dst.write(chunk)
        dst.flush()
        if sync:
            os.fsync(dst.fileno())
    return total, head.split(b"\n", 1)[0], max(longest, run)
