"""The archive's CSV read by DuckDB with the manifest's dialect and types (the same reader
``restore --window`` uses), optionally cut to day spans of the partition column.

Used by the DuckDB loader directly and by the other loaders whenever the rows must be
filtered or re-rendered (a window archive that only overlaps the range, BLOB columns,
a dialect PostgreSQL's COPY cannot read as is)."""

from __future__ import annotations

from typing import Any

from tableship.catalog.loaders.base import LoadError, LoadSpec, Span
from tableship.catalog.restore import _parse_error, _read_csv_sql, quote_ident


def span_predicate(column: str, spans: list[Span], params: dict[str, Any]) -> str:
    """``(col BETWEEN $lo0 AND $hi0 OR …)`` with the bounds added to ``params``."""
    parts = []
    for i, s in enumerate(spans):
        params[f"lo{i}"], params[f"hi{i}"] = s.low, s.high
        parts.append(f"{quote_ident(column)} BETWEEN $lo{i} AND $hi{i}")
    return "(" + " OR ".join(parts) + ")" if parts else "false"


def read_sql(spec: LoadSpec, filtered: bool) -> tuple[str, dict[str, Any]]:
    """``SELECT <typed columns> FROM read_csv(...) [WHERE <spans>]`` and its parameters."""
    sql, params = _read_csv_sql(spec.columns, spec.dialect, spec.longest_line)
    params["path"] = str(spec.csv)
    if filtered:
        sql = f"SELECT * FROM ({sql}) WHERE {span_predicate(spec.partition_column, spec.spans, params)}"
    return sql, params


def parse_failed(exc: Exception, spec: LoadSpec) -> LoadError:
    err = _parse_error(exc)
    return LoadError(f"{spec.name}: {err.message}", err.hint)
