"""DuckDB target: one transaction per archive (delete the spans' rows, insert the archive's
rows read by ``read_csv`` with the manifest's dialect and types, check the count).

Two archives load at once, each on its own cursor (a connection of the same database):
``read_csv`` decompresses a gzip archive on one thread, so a second archive keeps the
other core busy; their spans are disjoint, so the transactions never touch the same rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tableship.catalog.archivecsv import duckdb_transaction, duckdb_type, quote_ident
from tableship.catalog.loaders.base import (
    LoaderBase,
    LoadError,
    LoadSpec,
    Span,
    check_same,
    count_mismatch,
)
from tableship.catalog.loaders.csvread import (
    ensure_csv,
    line_too_long,
    parse_failed,
    read_sql,
    span_predicate,
)

_INFO_TYPES = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ", "TIME WITH TIME ZONE": "TIMETZ"}


def _norm(t: str) -> str:
    t = str(t).upper().replace(" ", "") if "TIME ZONE" not in str(t).upper() else _INFO_TYPES[str(t).upper()]
    return t


class DuckDBLoader(LoaderBase):
    kind = "duckdb"
    parallel_loads = 2

    def __init__(self, path: Path, schema: str | None, table: str):
        self.path = path
        self.schema = schema
        self.table = table
        self.display = f"{path}:{schema + '.' if schema else ''}{table}"
        self.lock_name = f"duckdb-{path.resolve()}-{schema or 'main'}.{table}"
        self.sql_name = (f"{quote_ident(schema)}." if schema else "") + quote_ident(table)
        self._con: Any = None
        self._pc = ""

    def _connect(self):
        import duckdb  # a core dependency, imported where used like the source

        if self._con is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                con = duckdb.connect(str(self.path))
                # a restore promises the rows, not their order: without the ordering DuckDB's
                # threads append their parts of the CSV as they finish (bench_restore: the load
                # takes about 25 % less wall on 2 cores)
                con.execute("SET GLOBAL preserve_insertion_order = false")
                self._con = con
            except (OSError, duckdb.Error) as exc:
                raise LoadError(
                    f"cannot open the DuckDB file {str(self.path)!r}: {str(exc).splitlines()[0]}",
                    "check the path, its permissions, and that no other process holds it open",
                ) from None
        return self._con

    def existing_columns(self) -> list[tuple[str, str]] | None:
        rows = (
            self._connect()
            .execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = "
                "current_database() AND table_schema = $s AND table_name = $t ORDER BY ordinal_position",
                {"s": self.schema or "main", "t": self.table},
            )
            .fetchall()
        )
        return [(n, _norm(t)) for n, t in rows] or None

    def check(self, columns: list[tuple[str, str]], partition_column: str) -> bool:
        self._pc = partition_column
        have = self.existing_columns()
        if have is None:
            return False
        check_same(self.display, [(n, duckdb_type(t)) for n, t in columns], have)
        return True

    def create(self, columns: list[tuple[str, str]], partition_column: str) -> None:
        self._pc = partition_column
        want = [(n, duckdb_type(t)) for n, t in columns]
        con = self._connect()
        if self.schema:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
        ddl = ", ".join(f"{quote_ident(n)} {t}" for n, t in want)
        con.execute(f"CREATE TABLE {self.sql_name} ({ddl})")

    def rows_in(self, spans: list[Span]) -> int:
        params: dict[str, Any] = {}
        pred = span_predicate(self._pc, spans, params)
        return int(
            self._connect()
            .execute(f"SELECT count(*) FROM {self.sql_name} WHERE {pred}", params)
            .fetchone()[0]
        )

    def load(self, spec: LoadSpec) -> int:
        try:
            return self._load(spec)
        except _LineTooLong:
            ensure_csv(spec)  # measures the longest line: read_csv is told its size
            return self._load(spec)

    def _load(self, spec: LoadSpec) -> int:
        import duckdb  # a core dependency, imported where used like the source

        con = self._connect().cursor()  # this thread's own connection to the database
        try:
            with duckdb_transaction(con):
                params: dict[str, Any] = {}
                con.execute(
                    f"DELETE FROM {self.sql_name} WHERE {span_predicate(self._pc, spec.spans, params)}",
                    params,
                )
                if spec.whole:
                    sql, params = read_sql(spec, filtered=False)
                    total = written = int(
                        con.execute(f"INSERT INTO {self.sql_name} {sql}", params).fetchone()[0]
                    )
                else:
                    sql, params = read_sql(spec, filtered=False)
                    con.execute(f"CREATE TEMP TABLE _tableship_load AS {sql}", params)
                    total = int(con.execute("SELECT count(*) FROM _tableship_load").fetchone()[0])
                    fp: dict[str, Any] = {}
                    pred = span_predicate(spec.partition_column, spec.spans, fp)
                    written = int(
                        con.execute(
                            f"INSERT INTO {self.sql_name} SELECT * FROM _tableship_load WHERE {pred}", fp
                        ).fetchone()[0]
                    )
                    con.execute("DROP TABLE _tableship_load")
                if total != spec.expected_rows:
                    raise count_mismatch(spec, total)
                spec.before_commit()
            return written
        except duckdb.Error as exc:
            if spec.csv is None and line_too_long(exc):
                raise _LineTooLong from None
            raise parse_failed(exc, spec) from None
        finally:
            con.close()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


class _LineTooLong(Exception):
    """The compressed archive has a line longer than read_csv's default limit."""
