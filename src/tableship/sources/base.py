"""The Source contract, shared query building, and the registry of source types.

A Source reads the rows of one query as Arrow record batches whose Arrow types are the
columns' logical types (DECIMAL as decimal128, TIMESTAMP as timestamp, DATE as date32...)
so that the CSV renderer gives the same bytes for the same logical rows whatever the
engine. Identifiers are validated (names.py) and quoted by the source's dialect; window
bounds are always bound parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from tableship.core.names import check_identifier, split_table
from tableship.core.plugins import instantiate
from tableship.core.slots import Cap, cap


@dataclass(frozen=True)
class Dialect:
    """How an engine quotes identifiers and marks bound parameters."""

    quote: str = '"'
    paramstyle: str = "qmark"  # "qmark" (?), "named" (:p0), "pyformat" (%(p0)s), "numeric" ($1)

    def ident(self, name: str) -> str:
        check_identifier(name)
        return f"{self.quote}{name}{self.quote}"

    def table(self, table: str) -> str:
        db, name = split_table(table)
        return f"{self.ident(db)}.{self.ident(name)}" if db else self.ident(name)

    def marker(self, i: int) -> str:
        return {"qmark": "?", "named": f":p{i}", "pyformat": f"%(p{i})s", "numeric": f"${i + 1}"}[
            self.paramstyle
        ]

    def bind(self, values: list) -> tuple | dict:
        if self.paramstyle in ("named", "pyformat"):
            return {f"p{i}": v for i, v in enumerate(values)}
        return tuple(values)


@dataclass(frozen=True)
class Query:
    sql: str
    params: Any  # tuple or dict, in the dialect's paramstyle
    values: tuple = ()  # the bound values in order, for display

    def display(self) -> str:
        shown = ", ".join(repr(v.isoformat()) if isinstance(v, dt.date) else repr(v) for v in self.values)
        return f"{self.sql}  -- bound: [{shown}]" if self.values else self.sql


def window_query(dialect: Dialect, table: str, column: str, low: Any, high: Any, select: str = "*") -> Query:
    col = dialect.ident(column)
    sql = (
        f"SELECT {select} FROM {dialect.table(table)} WHERE {col} >= {dialect.marker(0)} AND "
        f"{col} <= {dialect.marker(1)}"
    )
    return Query(sql, dialect.bind([low, high]), (low, high))


def fingerprint_query(
    dialect: Dialect, table: str, column: str, bounds: list[tuple[Any, Any]], row_hash: str | None
) -> Query:
    """One grouped query giving, per chunk of the window, its row count and (when the engine
    has a usable hash: ``row_hash``, an expression over the row ``tableship_t``) the sum of
    its rows' hashes — order-independent, computed by the engine. Chunk ``i`` is the rows
    with ``bounds[i][0] <= column <= bounds[i][1]``; every bound is a bound parameter.
    Result rows: ``(tableship_chunk, tableship_rows[, tableship_sum])``."""
    col = dialect.ident(column)
    values: list = []
    cases: list[str] = []
    for low, high in bounds:
        i = len(values)
        cases.append(
            f"WHEN {col} >= {dialect.marker(i)} AND {col} <= {dialect.marker(i + 1)} THEN {len(cases)}"
        )
        values += [low, high]
    i = len(values)
    values += [bounds[0][0], bounds[-1][1]]
    hashed = f", {row_hash} AS tableship_hash" if row_hash else ""
    inner = (
        f"SELECT CASE {' '.join(cases)} END AS tableship_chunk{hashed} "
        f"FROM {dialect.table(table)} tableship_t "
        f"WHERE {col} >= {dialect.marker(i)} AND {col} <= {dialect.marker(i + 1)}"
    )
    total = ", SUM(tableship_hash) AS tableship_sum" if row_hash else ""
    sql = (
        f"SELECT tableship_chunk, COUNT(*) AS tableship_rows{total} FROM ({inner}) tableship_s "
        "GROUP BY tableship_chunk"
    )
    return Query(sql, dialect.bind(values), tuple(values))


def count_query(dialect: Dialect, query: Query) -> Query:
    return Query(f"SELECT COUNT(*) FROM ({query.sql}) AS tableship_count", query.params, query.values)


def arrow_partition_type(t: pa.DataType) -> str:
    """Map the partition column's Arrow type to 'date' | 'string' | 'int'."""
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return "date"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    raise ValueError(f"unsupported partition column type {t}")


def detected_partition_type(t: pa.DataType) -> str | None:
    """:func:`arrow_partition_type`, or None for a type it cannot tell (DECIMAL, DOUBLE...)."""
    try:
        return arrow_partition_type(t)
    except ValueError:
        return None


@runtime_checkable
class Source(Protocol):
    """Contract every source implements (tests/contract/test_sources.py checks it).

    - ``dialect``: how identifiers are quoted and parameters marked.
    - ``schema(table)``: the table's Arrow schema (raises SourceError if it does not
      exist: a job failure, not a configuration error).
    - ``batches(query, batch_rows)``: the rows as Arrow record batches, streaming:
      memory stays flat however big the result.
    - ``count(query)``: number of rows the query returns.
    - ``close()``: release connections; idempotent.
    - optional ``row_hash(columns)``: an SQL expression hashing one row of ``tableship_t``
      (all ``columns``, NULL-safe) into a number the engine can SUM, or None when the engine
      has no usable hash (refresh = "changed" then compares row counts only).
    - optional ``wide()``: a context in which one aggregate query may use more of the
      engine's threads than an export (DuckDB: every core for the fingerprint query).
    Driver exceptions never escape: they become SourceError / TransientSourceError.
    """

    dialect: Dialect

    def schema(self, table: str) -> pa.Schema: ...

    def batches(self, query: Query, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]: ...

    def count(self, query: Query) -> int: ...

    def close(self) -> None: ...


# type → (module, class, extra, driver module to test)
REGISTRY = {
    "duckdb": ("tableship.sources.duckdb", "DuckDBSource", None, None),
    "impala": ("tableship.sources.hs2", "HS2Source", "impala", "impala"),
    "hive": ("tableship.sources.hs2", "HS2Source", "hive", "impala"),
    "sqlalchemy": ("tableship.sources.sqlalchemy", "SQLAlchemySource", "sqlalchemy", "sqlalchemy"),
}


def open_source(name: str, cfg) -> Source:
    """Instantiate the source for config ``cfg`` (lazy-importing its driver); with
    ``max_connections`` its statements take a slot of the source's process-wide cap."""
    source = instantiate("source", REGISTRY, name, cfg)
    limit = cap("source", name, getattr(cfg, "max_connections", None))
    return source if limit is None else CappedSource(source, limit)


class CappedSource:
    """A source whose statements (``schema``, ``count``, a ``batches`` stream from its first
    batch to its end) each hold a slot of ``cap``: the queries the parallel jobs have open
    on one engine never exceed its ``max_connections``."""

    def __init__(self, inner: Source, limit: Cap):
        self._inner = inner
        self._cap = limit
        self.dialect = inner.dialect

    def __getattr__(self, attr: str) -> Any:  # the engine's own extras (e.g. partition detection)
        return getattr(self._inner, attr)

    def schema(self, table: str) -> pa.Schema:
        with self._cap.slot():
            return self._inner.schema(table)

    def batches(self, query: Query, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        with self._cap.slot():
            yield from self._inner.batches(query, batch_rows)

    def count(self, query: Query) -> int:
        with self._cap.slot():
            return self._inner.count(query)

    def close(self) -> None:
        self._inner.close()
