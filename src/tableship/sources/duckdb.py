"""DuckDB source: a local DuckDB database file, opened read-only."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import duckdb
import pyarrow as pa

from tableship.core.errors import SourceError
from tableship.core.redact import redact
from tableship.sources.base import Dialect, Query, count_query

#: Everything DuckDB, its Arrow stream and the OS may raise while reading.
_ERRORS = (duckdb.Error, pa.ArrowException, OSError)


class DuckDBSource:
    dialect = Dialect(quote='"', paramstyle="qmark")

    def __init__(self, name: str, cfg):
        self.name = name
        self.cfg = cfg
        self._con: duckdb.DuckDBPyConnection | None = None

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            path = self.cfg.path
            try:
                exists = path.exists()
            except OSError as exc:
                raise SourceError(
                    f"source {self.name!r}: cannot reach {str(path)!r}: {exc.strerror}",
                    "check the permissions of the folders on that path",
                ) from None
            if not exists:
                raise SourceError(
                    f"source {self.name!r}: DuckDB file {str(path)!r} does not exist",
                    f"check sources.{self.name}.path in the config",
                )
            # DuckDB's buffer pool would otherwise keep every block it scanned (RSS grows
            # with the table); an export is one streaming scan, so a small pool costs nothing.
            # (enable_progress_bar cannot be passed in the connect config: DuckDB refuses it
            # as a global option; it is SET on the connection below.)
            # One scan thread by default: the renderer and the compressors need the other
            # cores, and a second scan thread doubles DuckDB's working memory (pinned blocks
            # ≈ threads × columns × 256 KiB: 32MB on one thread reads 150 columns, as 64MB did on two) —
            # docs/performance.md has the memory budget.
            config = {"memory_limit": self.cfg.memory_limit, "threads": self.cfg.threads or 1}
            try:
                self._con = duckdb.connect(str(path), read_only=True, config=config)
                self._con.execute("SET enable_progress_bar = false")
            except _ERRORS as exc:
                raise SourceError(
                    f"source {self.name!r}: cannot open {str(path)!r}: {_msg(exc)}",
                    "check that it is a DuckDB database and no other process holds it for writing",
                ) from None
        return self._con

    @contextlib.contextmanager
    def wide(self) -> Iterator[None]:
        """One aggregate query (the chunk fingerprints) on every core: it scans the whole
        window but keeps one row per chunk, so the extra threads cost no memory to speak of
        (the exports stay on ``threads``; see the comment in ``_connect``)."""
        con = self._connect()
        configured = self.cfg.threads or 1
        cores = os.cpu_count() or 1
        if cores <= configured:
            yield
            return
        con.execute(f"SET threads = {int(cores)}")
        try:
            yield
        finally:
            con.execute(f"SET threads = {int(configured)}")

    def row_hash(self, columns: list[str]) -> str | None:
        """DuckDB's ``hash`` of all columns (NULL hashes to a constant), summed as HUGEINT."""
        cols = ", ".join(f"tableship_t.{self.dialect.ident(c)}" for c in columns)
        return f"CAST(hash({cols}) AS HUGEINT)"

    def schema(self, table: str) -> pa.Schema:
        try:
            return (
                self._connect()
                .sql(f"SELECT * FROM {self.dialect.table(table)} LIMIT 0")
                .to_arrow_table()
                .schema
            )
        except duckdb.CatalogException as exc:
            raise SourceError(
                f"source {self.name!r}: table {table} not found: {_msg(exc)}",
                "check the job's table name, or whether the table was dropped upstream",
            ) from None
        except _ERRORS as exc:
            raise SourceError(f"source {self.name!r}: {_msg(exc)}") from None

    def batches(self, query: Query, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        try:
            reader = self._connect().sql(query.sql, params=query.params).to_arrow_reader(batch_rows)
            for batch in reader:
                if batch.num_rows:
                    yield batch
        except _ERRORS as exc:
            raise SourceError(f"source {self.name!r}: query failed: {_msg(exc)}") from None

    def count(self, query: Query) -> int:
        q = count_query(self.dialect, query)
        try:
            return int(self._connect().execute(q.sql, q.params).fetchall()[0][0])
        except _ERRORS as exc:
            raise SourceError(f"source {self.name!r}: count failed: {_msg(exc)}") from None

    def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            try:
                con.close()
            except _ERRORS:  # closing never hides the run's outcome
                pass


def _msg(exc: Exception) -> str:
    return redact(" ".join(str(exc).split()))[:500]  # redacted before cutting: no secret half left
