"""The archive's CSV read by DuckDB with the manifest's dialect and types (the same reader
``restore --window`` uses), optionally cut to day spans of the partition column.

Used by the DuckDB loader directly and by the other loaders whenever the rows must be
filtered or re-rendered (a window archive that only overlaps the range, BLOB columns,
a dialect PostgreSQL's COPY cannot read as is)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tableship.catalog.archivecsv import RestoreError, decompress_csv, parse_error, quote_ident, read_csv_sql
from tableship.catalog.loaders.base import LoadError, LoadSpec, Span

# the codecs DuckDB's read_csv decompresses itself (its ``compression`` option)
_DUCKDB_CODECS = {"gzip": "gzip", "zstd": "zstd", "none": "none"}


def span_predicate(column: str, spans: list[Span], params: dict[str, Any]) -> str:
    """``(col BETWEEN $lo0 AND $hi0 OR …)`` with the bounds added to ``params``."""
    parts = []
    for i, s in enumerate(spans):
        params[f"lo{i}"], params[f"hi{i}"] = s.low, s.high
        parts.append(f"{quote_ident(column)} BETWEEN $lo{i} AND $hi{i}")
    return "(" + " OR ".join(parts) + ")" if parts else "false"


def ensure_csv(spec: LoadSpec) -> Path:
    """The archive decompressed next to it (once), its size checked against the manifest's."""
    if spec.csv is not None:
        return spec.csv
    assert spec.archive is not None
    out = spec.archive.with_name(spec.archive.name + ".csv")
    try:
        quoted = spec.dialect.quoting != "none"
        size, _, longest = decompress_csv(spec.archive, spec.codec, out, sync=False, quoted=quoted)
    except RestoreError as exc:
        raise LoadError(f"{spec.name}: {exc.message}", exc.hint) from None
    except OSError as exc:
        raise LoadError(
            f"cannot write {str(out)!r}: {exc.strerror}", "free space in the staging folder"
        ) from None
    if spec.csv_bytes is not None and size != spec.csv_bytes:
        out.unlink(missing_ok=True)
        raise size_mismatch(spec, size)
    spec.csv, spec.longest_line = out, longest
    return out


def size_mismatch(spec: LoadSpec, size: int) -> LoadError:
    return LoadError(
        f"{spec.name} decompresses to {size} bytes, the manifest says {spec.csv_bytes}; "
        "nothing of it was loaded",
        "the archive is inconsistent with its manifest: re-run the backup of that window",
    )


def reads_archive(spec: LoadSpec) -> bool:
    """DuckDB reads the compressed archive itself (no decompressed copy yet)."""
    return spec.csv is None and spec.archive is not None and spec.codec in _DUCKDB_CODECS


def line_too_long(exc: Exception) -> bool:
    """DuckDB refused a line longer than its default ``max_line_size`` (the longest line is
    only known once the archive was decompressed: :func:`ensure_csv` measures it)."""
    return "maximum line size" in str(exc).lower()


def read_sql(spec: LoadSpec, filtered: bool) -> tuple[str, dict[str, Any]]:
    """``SELECT <typed columns> FROM read_csv(...) [WHERE <spans>]`` and its parameters: of the
    compressed archive when DuckDB can decompress it, else of the decompressed CSV."""
    if not reads_archive(spec):
        ensure_csv(spec)
    sql, params = read_csv_sql(spec.columns, spec.dialect, spec.longest_line)
    if spec.csv is None:
        assert spec.archive is not None
        marker = "FROM read_csv($path, "
        assert marker in sql
        sql = sql.replace(marker, marker + "compression = $compression, ", 1)
        params["path"], params["compression"] = str(spec.archive), _DUCKDB_CODECS[spec.codec]
    else:
        params["path"] = str(spec.csv)
    if filtered:
        sql = f"SELECT * FROM ({sql}) WHERE {span_predicate(spec.partition_column, spec.spans, params)}"
    return sql, params


def parse_failed(exc: Exception, spec: LoadSpec) -> LoadError:
    err = parse_error(exc)
    return LoadError(f"{spec.name}: {err.message}", err.hint)
