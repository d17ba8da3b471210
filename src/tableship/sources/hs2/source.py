"""``HS2Source``: the Source contract over one HiveServer2 session (``session.py``).

Statements run on the session's cursor; results come through the columnar fast path
(``impyla_adapter`` + ``convert.converter``, fetched one call ahead by ``prefetch``) or,
without it, ``fetchmany`` (``convert.from_python``). Driver errors become ``SourceError``
(terminal) or ``TransientSourceError`` (the connection: timeout, lost), see ``_translate``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
from thrift.transport.TTransport import TTransportException

from tableship.core.errors import SourceError, TransientSourceError
from tableship.sources import impyla_adapter
from tableship.sources.base import Dialect, Query, count_query
from tableship.sources.hs2 import session
from tableship.sources.hs2.columns import schema_from_description
from tableship.sources.hs2.convert import column_values, combine, converter, from_python
from tableship.sources.hs2.errors import clean, statement_hint
from tableship.sources.hs2.prefetch import Prefetcher
from tableship.sources.hs2.session import quietly


class HS2Source:
    """A HiveServer2 endpoint (Impala ``type = "impala"``, Hive ``type = "hive"``)."""

    dialect = Dialect(quote="`", paramstyle="qmark")

    def __init__(self, name: str, cfg):
        self.name = name
        self.cfg = cfg
        self._conn = None
        self._cur = None
        self._schemas: dict[str, pa.Schema] = {}
        self.columnar = True  # use the columnar fast path when the server speaks it
        self._secrets = [cfg.password.get_secret_value()] if getattr(cfg, "password", None) else []

    # -- connection
    @property
    def endpoint(self) -> str:
        return f"{self.cfg.host}:{self.cfg.effective_port}"

    def _where(self) -> str:
        return f"source {self.name!r} ({self.cfg.type} at {self.endpoint})"

    def _clean(self, exc: BaseException) -> str:
        return clean(exc, self._secrets)

    def _session(self):
        if self._cur is not None:
            return self._cur
        kw = session.connect_kwargs(self.name, self.cfg)
        session.check_settings(self.name, self.cfg, self._where())
        session.probe(self.cfg, self._where(), self._secrets)
        conn, cur = session.open_session(self.cfg, kw, self._where(), self._secrets)
        self._conn, self._cur = conn, cur
        try:
            for k, v in self.cfg.query_options.items():
                value = str(v).lower() if isinstance(v, bool) else str(v)
                self._run(f"SET {k}={value}", None, f"SET {k}")
            if self.cfg.database:
                self._run(f"USE {self.dialect.ident(self.cfg.database)}", None, f"USE {self.cfg.database}")
        except Exception:
            self._reset()
            raise
        except BaseException:
            self._abandon()
            raise
        return cur

    def _abandon(self) -> None:
        """Drop the connection without another RPC: after a signal (or an abandoned
        fetch) the Thrift stream may be mid-message, and tableship is about to exit.
        The server ends the session when the socket closes."""
        conn = self._conn
        self._cur = self._conn = None
        if conn is not None:
            quietly(conn.close)  # closes the transport only (no CloseSession RPC)

    def _reset(self) -> None:
        cur, conn = self._cur, self._conn
        self._cur = self._conn = None
        try:
            if cur is not None:
                quietly(cur.close)
        except BaseException:  # Interrupted mid-RPC: no more RPCs on this stream
            self._conn = conn
            self._abandon()
            raise
        if conn is not None:
            quietly(conn.close)

    # -- statements
    def _translate(self, exc: BaseException, what: str) -> SourceError:
        """Driver exception → SourceError (terminal) or TransientSourceError (connection)."""
        if isinstance(exc, (socket.timeout, TimeoutError)) or (
            isinstance(exc, TTransportException) and exc.type == TTransportException.TIMED_OUT
        ):
            self._reset()
            return TransientSourceError(
                f"{self._where()}: {what} timed out (timeout = {self.cfg.timeout:g}s)",
                "the server is slow or unreachable; raise the source's timeout if it is busy",
            )
        if isinstance(exc, (TTransportException, OSError, EOFError)):
            self._reset()
            return TransientSourceError(
                f"{self._where()}: connection lost during {what}: {self._clean(exc)}",
                "check the server; the run is retried",
            )
        msg = self._clean(exc)
        return SourceError(f"{self._where()}: {what} failed: {msg}", statement_hint(msg))

    def _run(self, sql: str, params, what: str):
        cur = self._cur if self._cur is not None else self._session()
        try:
            cur.execute(sql, params if params else None)
        except Exception as exc:
            raise self._translate(exc, what) from None
        except BaseException:  # Interrupted mid-RPC
            self._abandon()
            raise
        return cur

    def _close_operation(self, cur) -> None:
        if cur is not None and impyla_adapter.has_operation(cur):
            try:
                cur.close_operation()
            except Exception:  # closing must never hide the real outcome
                pass
            except BaseException:  # Interrupted mid-RPC
                self._abandon()
                raise

    # -- Source protocol
    def row_hash(self, columns: list[str]) -> str | None:
        """Hive/Spark: ``hash`` (32-bit murmur3) of all columns plus their ``isnull`` flags
        (``hash`` skips a NULL, so the flags keep (NULL, x) and (x, NULL) apart); Impala:
        ``fnv_hash`` (64-bit) of the columns as text, NULL as ``\\N``."""
        cols = [f"tableship_t.{self.dialect.ident(c)}" for c in columns]
        if self.cfg.type == "impala":
            text = ", ".join(f"coalesce(cast({c} AS STRING), '\\\\N')" for c in cols)
            return f"CAST(fnv_hash(concat_ws('|', {text})) AS DECIMAL(38,0))"
        flags = ", ".join(f"isnull({c})" for c in cols)
        return f"CAST(hash({', '.join(cols)}, {flags}) AS BIGINT)"

    def schema(self, table: str) -> pa.Schema:
        if table not in self._schemas:
            sql = f"SELECT * FROM {self.dialect.table(table)} LIMIT 0"
            cur = self._run(sql, None, f"reading the columns of {table}")
            try:
                self._schemas[table] = schema_from_description(cur.description)
            finally:
                self._close_operation(cur)
        return self._schemas[table]

    def batches(self, query: Query, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        cur = self._run(query.sql, query.params, "the query")
        done = False
        try:
            description = cur.description
            schema = schema_from_description(description)
            op = impyla_adapter.columnar_operation(cur) if self.columnar else None
            if op is not None:
                yield from self._columnar(op, schema, batch_rows)
            else:
                yield from self._rows(cur, schema, batch_rows)
            done = True
        except SourceError:
            raise
        except Exception as exc:
            raise self._translate(exc, "fetching rows") from None
        except BaseException:  # Interrupted, or GeneratorExit: the consumer gave up mid-stream
            self._abandon()
            raise
        finally:
            if done or self._cur is not None:
                self._close_operation(cur)

    def _columnar(self, op, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """FetchResults and the conversion to Arrow on a helper thread, so that waiting for
        the server overlaps with rendering and compressing the previous rows."""
        fetcher = Prefetcher(self._fetch_batches(op, schema), self.cfg.timeout)
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        wait = True
        try:
            while True:
                batch = fetcher.get()
                if batch is None:
                    break
                fetcher.next()
                pending.append(batch)
                pending_rows += batch.num_rows
                del batch
                if pending_rows >= batch_rows:
                    yield combine(pending, schema)
                    pending, pending_rows = [], 0
            if pending:
                yield combine(pending, schema)
        except Exception:
            raise
        except BaseException:  # Interrupted / GeneratorExit: do not wait for a fetch in flight
            wait = False
            raise
        finally:
            fetcher.stop(wait)

    def _fetch_batches(self, op, schema: pa.Schema) -> Callable[[], pa.RecordBatch | None]:
        """A call that fetches the next rows and converts them: a record batch, or None at
        the end. It runs on the prefetch thread: the response's Python objects (~12 MiB per
        20,000 rows of 14 columns, 4× their Arrow size) then exist only while that thread
        converts them, never two responses at once (docs/performance.md, Memory budget)."""
        converters = [converter(f.name, f.type) for f in schema]
        fetch = impyla_adapter.fetch_next(op, self.cfg.fetch_size)

        def fetch_batch() -> pa.RecordBatch | None:
            while True:
                resp = fetch()
                columns, more = impyla_adapter.response_columns(resp)
                raw: list[Any] = [column_values(c) for c in columns]
                del resp, columns
                n = len(raw[0][0]) if raw else 0
                if n == 0:
                    # Spark's Thrift server always answers hasMoreRows=false: the end is an empty fetch
                    if more:
                        continue
                    return None
                if len(raw) != len(converters):
                    raise SourceError(
                        f"{self._where()}: the server sent {len(raw)} columns, expected {len(converters)}"
                    )
                arrays = []
                for i, conv in enumerate(converters):
                    values, nulls = raw[i]
                    raw[i] = None  # each column's Python values go as soon as they are converted
                    arrays.append(conv(values, nulls, n))
                    del values, nulls
                return pa.RecordBatch.from_arrays(arrays, schema=schema)

        return fetch_batch

    def _rows(self, cur, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        size = min(batch_rows, self.cfg.fetch_size)
        while True:
            rows = cur.fetchmany(size)
            if not rows:
                break
            cols = list(zip(*rows, strict=True))
            arrays = [from_python(list(c), f.type, f.name) for c, f in zip(cols, schema, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    def count(self, query: Query) -> int:
        q = count_query(self.dialect, query)
        cur = self._run(q.sql, q.params, "the COUNT(*) check")
        try:
            rows = cur.fetchall()
        except Exception as exc:
            raise self._translate(exc, "the COUNT(*) check") from None
        except BaseException:
            self._abandon()
            raise
        finally:
            self._close_operation(cur)
        return int(rows[0][0])

    def close(self) -> None:
        self._reset()
