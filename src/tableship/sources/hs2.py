"""Impala and Hive sources over the HiveServer2 protocol (impyla).

Connection: impyla ``connect`` with the config's auth mechanism (``nosasl`` → NOSASL,
``plain``/``ldap`` → PLAIN/LDAP with user and password, ``gssapi`` → GSSAPI with the
Kerberos service name), optional TLS (``use_ssl``, ``ca_cert``) and a socket
``timeout`` that bounds the connect and every RPC (so every fetch). One session per
source: ``query_options`` are sent as ``SET k=v`` on it, then ``USE `database```.

Fast path. impyla's ``fetchmany`` turns the server's *columnar* result (HS2 protocol
v6+, every Impala and Hive since 2014) into row tuples and then, with the default type
conversion, parses every DECIMAL/TIMESTAMP/DATE string in Python: that is the known
bottleneck (impyla #221, #406, #447). This source issues ``FetchResults`` itself on
the cursor's operation and turns each returned column straight into an Arrow array:
numbers and booleans from the thrift value lists, strings/decimals/timestamps/dates
from the wire strings (UTF-8 validated, then ``pyarrow.compute.cast`` to
decimal128(p, s) / timestamp[us] / date32 in C++), the null bitmap inverted into an
Arrow validity bitmap. No Python loop runs per value. A server without the columnar
protocol falls back to ``fetchmany``, and so does an impyla whose private API the fast path
needs has changed: every use of it is in ``impyla_adapter.py`` (its canary test names the
version).

Types: BOOLEAN→bool, TINYINT/SMALLINT/INT/BIGINT→int8/16/32/64, FLOAT→float32 (sent
as a double), DOUBLE→float64, DECIMAL(p,s)→decimal128(p,s), DATE→date32,
TIMESTAMP→timestamp[us] (a value with non-zero digits below the microsecond is an
error rather than a silent truncation), BINARY→binary, everything else (STRING,
VARCHAR, CHAR, complex types and intervals as the server renders them)→string.

Errors: a host that does not accept TCP connections, a timeout, or a connection lost
mid-query is transient (the pipeline retries with back-off, on a fresh connection);
a failed handshake (wrong auth mechanism, bad credentials, TLS mismatch), an unknown
table or column and any SQL error are terminal, with the server's message. The
password never appears in a message.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import queue
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tableship.core.errors import ConfigError, SourceError, TransientSourceError
from tableship.core.names import check_identifier
from tableship.core.redact import redact
from tableship.sources.base import Dialect, Query, count_query

# impyla logs failed RPCs with log.exception (tracebacks) and thrift logs connect
# failures at ERROR: tableship reports these itself, as one line.
for _name in ("impala", "thrift", "thrift_sasl"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

import impala.dbapi as _dbapi  # noqa: E402  (heavy driver: this module is imported only when used)
from impala.error import Error as _ImpylaError  # noqa: E402
from thrift.Thrift import TException as _ThriftError  # noqa: E402
from thrift.transport.TTransport import TTransportException  # noqa: E402

from tableship.sources import impyla_adapter  # noqa: E402  (the only module using impyla's private API)

log = logging.getLogger("tableship")

AUTH_MECHANISMS = {"nosasl": "NOSASL", "plain": "PLAIN", "ldap": "LDAP", "gssapi": "GSSAPI"}

_OPTION_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

_FIXED_TYPES: dict[str, pa.DataType] = {
    "BOOLEAN": pa.bool_(),
    "TINYINT": pa.int8(),
    "SMALLINT": pa.int16(),
    "INT": pa.int32(),
    "BIGINT": pa.int64(),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "BINARY": pa.binary(),
}

_TABLE_MISSING = re.compile(
    r"TABLE_OR_VIEW_NOT_FOUND|Table or view not found|Could not resolve table reference|"
    r"Table not found|Table does not exist|SCHEMA_NOT_FOUND|Database does not exist|"
    r"Database '[^']*' not found|cannot be found",
    re.I,
)
_COLUMN_MISSING = re.compile(
    r"UNRESOLVED_COLUMN|cannot resolve|Could not resolve column|Invalid column reference|Invalid "
    r"table alias or column",
    re.I,
)


def arrow_type(hs2_type: str, precision: int | None = None, scale: int | None = None) -> pa.DataType:
    """The Arrow type for a HiveServer2 result column type (as in cursor.description)."""
    t = (hs2_type or "").upper()
    if t == "DECIMAL":
        p = int(precision or 38)
        s = int(scale or 0)
        return pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
    return _FIXED_TYPES.get(t, pa.string())


def column_names(raw: list[str]) -> list[str]:
    """Result column names with HiveServer2's ``table.`` prefix stripped (dups → error)."""
    names = [n.rsplit(".", 1)[-1] if "." in n else n for n in raw]
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    dups = [n for n, k in seen.items() if k > 1]
    if dups:
        raise SourceError(
            f"the result has duplicate column names: {', '.join(dups)}",
            "select distinct column names (alias them) — a CSV with two identical headers cannot be restored",
        )
    return names


def schema_from_description(description) -> pa.Schema:
    names = column_names([d[0] for d in description])
    return pa.schema(
        [pa.field(n, arrow_type(d[1], d[4], d[5])) for n, d in zip(names, description, strict=True)]
    )


# ----------------------------------------------------------------------------- conversion


def _validity(nulls: bytes | None, n: int) -> pa.Buffer | None:
    """HS2 null bitmap (bit set = NULL, may be short or empty) → Arrow validity bitmap."""
    if not nulls or n == 0:
        return None
    nbytes = (n + 7) // 8
    bits = np.frombuffer(nulls, dtype=np.uint8, count=min(len(nulls), nbytes))
    if not bits.any():
        return None
    out = np.full(nbytes, 0xFF, dtype=np.uint8)
    out[: len(bits)] = ~bits
    return pa.py_buffer(out)


def _column_values(col) -> tuple[list, bytes]:
    values = impyla_adapter.column_values(col)
    if values is None:
        raise SourceError("the server sent a result column of an unknown kind")
    return values


def _texts(values: list, validity: pa.Buffer | None, name: str) -> pa.Array:
    """Wire strings (bytes) → UTF-8 string array with the given validity."""
    n = len(values)
    raw = pa.array(values, pa.binary()) if n else pa.array([], pa.binary())
    arr = pa.Array.from_buffers(pa.binary(), n, [validity, *raw.buffers()[1:]], null_count=-1)
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        # not valid UTF-8: replace the bad bytes (U+FFFD) like impala-shell does
        log.warning(
            "column %s has values that are not valid UTF-8; invalid bytes are replaced by U+FFFD", name
        )
        fixed = [None if v is None else v.decode("utf-8", "replace") for v in arr.to_pylist()]
        return pa.array(fixed, pa.string())


def _parse_timestamps(text: pa.Array, name: str) -> pa.Array:
    try:
        return pc.cast(text, pa.timestamp("us"))
    except pa.ArrowInvalid:
        pass
    # Impala sends 9 fractional digits: drop trailing zeros beyond the microsecond
    trimmed = pc.replace_substring_regex(text, r"(\.\d{6})0+$", r"\1")
    try:
        return pc.cast(trimmed, pa.timestamp("us"))
    except pa.ArrowInvalid:
        pass
    fine = pc.match_substring_regex(text, r"\.\d{7,}$")
    if pc.any(fine).as_py():
        bad = pc.filter(text, fine)[0].as_py()
        raise SourceError(
            f"column {name} has a timestamp with digits below the microsecond ({bad!r}); tableship keeps "
            "timestamps to the microsecond and will not truncate them silently",
            f"select the column truncated or as a string in a view, e.g. CAST({name} AS STRING)",
        )
    for v in text.to_pylist():
        if v is None:
            continue
        try:
            pc.cast(pa.array([v]), pa.timestamp("us"))
        except pa.ArrowInvalid:
            raise SourceError(
                f"column {name} has a timestamp the server wrote as {v!r}, which cannot be parsed"
            ) from None
    raise SourceError(f"column {name}: cannot parse the timestamps the server sent")


def _converter(name: str, t: pa.DataType) -> Callable[[list, bytes, int], pa.Array]:
    """A function (values, nulls, n) → Arrow array of type ``t`` for one result column."""
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or t == pa.float64():

        def fixed(values: list, nulls: bytes, n: int) -> pa.Array:
            data = pa.array(values, t)
            validity = _validity(nulls, n)
            if validity is None:
                return data
            return pa.Array.from_buffers(t, n, [validity, data.buffers()[1]], null_count=-1)

        return fixed
    if t == pa.float32():

        def single(values: list, nulls: bytes, n: int) -> pa.Array:
            data = pa.array(values, pa.float64())
            validity = _validity(nulls, n)
            if validity is not None:
                data = pa.Array.from_buffers(pa.float64(), n, [validity, data.buffers()[1]], null_count=-1)
            return pc.cast(data, pa.float32(), safe=False)

        return single
    if pa.types.is_binary(t):

        def binary(values: list, nulls: bytes, n: int) -> pa.Array:
            raw = pa.array(values, pa.binary())
            return pa.Array.from_buffers(
                pa.binary(), n, [_validity(nulls, n), *raw.buffers()[1:]], null_count=-1
            )

        return binary
    if pa.types.is_string(t):
        return lambda values, nulls, n: _texts(values, _validity(nulls, n), name)
    if pa.types.is_decimal(t):

        def decimal(values: list, nulls: bytes, n: int) -> pa.Array:
            text = _texts(values, _validity(nulls, n), name)
            try:
                return pc.cast(text, t)
            except pa.ArrowInvalid as exc:
                raise SourceError(f"column {name}: a value does not fit {t}: {exc}") from None

        return decimal
    if pa.types.is_timestamp(t):
        return lambda values, nulls, n: _parse_timestamps(_texts(values, _validity(nulls, n), name), name)
    if pa.types.is_date(t):

        def date(values: list, nulls: bytes, n: int) -> pa.Array:
            text = _texts(values, _validity(nulls, n), name)
            try:
                return pc.cast(text, pa.date32())
            except pa.ArrowInvalid as exc:
                raise SourceError(f"column {name}: cannot parse a date the server sent: {exc}") from None

        return date
    raise SourceError(f"column {name}: unsupported type {t}")  # pragma: no cover


def _from_python(values: list, t: pa.DataType, name: str) -> pa.Array:
    """Fallback (row protocol): Python values, or strings for temporal/decimal types."""
    if pa.types.is_decimal(t) or pa.types.is_timestamp(t) or pa.types.is_date(t):
        if any(isinstance(v, (str, bytes)) for v in values):
            text = pa.array(
                [v.decode() if isinstance(v, bytes) else (None if v is None else str(v)) for v in values],
                pa.string(),
            )
            return _parse_timestamps(text, name) if pa.types.is_timestamp(t) else pc.cast(text, t)
    if pa.types.is_string(t):
        values = [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else (None if v is None else str(v))
            for v in values
        ]
    if t == pa.float32():
        return pc.cast(pa.array(values, pa.float64()), t, safe=False)
    return pa.array(values, t)


# ----------------------------------------------------------------------------- the source


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
        text = str(exc) or type(exc).__name__
        if isinstance(exc, TTransportException) and not str(exc):
            text = f"transport error (type {exc.type})"
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        first = lines[0] if lines else type(exc).__name__
        return redact(_server_message(first))[:500]  # redacted before cutting: no secret half left

    def _connect_kwargs(self) -> dict[str, Any]:
        cfg = self.cfg
        kw: dict[str, Any] = dict(
            host=cfg.host,
            port=cfg.effective_port,
            timeout=cfg.timeout,
            auth_mechanism=AUTH_MECHANISMS[cfg.auth],
            use_ssl=cfg.use_ssl,
        )
        if cfg.use_ssl:
            if cfg.ca_cert is not None:
                kw["ca_cert"] = str(cfg.ca_cert)
            if "verify_cert" in inspect.signature(_dbapi.connect).parameters:
                kw["verify_cert"] = True  # without ca_cert: the system's trusted CAs
        if cfg.auth in ("plain", "ldap"):
            if not cfg.user or cfg.password is None:
                raise ConfigError(
                    f"sources.{self.name}: auth = {cfg.auth!r} needs 'user' and 'password'",
                    'add them to the source (password = "${ENV_VAR}" keeps it out of the file)',
                )
            kw["user"] = cfg.user
            kw["password"] = cfg.password.get_secret_value()
        elif cfg.user:
            kw["user"] = cfg.user
        if cfg.auth == "gssapi":
            kw["kerberos_service_name"] = cfg.kerberos_service_name or (
                "impala" if cfg.type == "impala" else "hive"
            )
        return kw

    def _probe(self) -> None:
        """TCP connect first: an unreachable server is transient, a refused handshake is not."""
        try:
            with socket.create_connection((self.cfg.host, self.cfg.effective_port), timeout=self.cfg.timeout):
                pass
        except OSError as exc:
            what = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else self._clean(exc)
            raise TransientSourceError(
                f"{self._where()}: cannot connect: {what}",
                "check that the server is up and reachable from this host (host, port, firewall)",
            ) from None

    def _session(self):
        if self._cur is not None:
            return self._cur
        kw = self._connect_kwargs()
        for k, v in self.cfg.query_options.items():
            if not _OPTION_KEY.match(str(k)) or any(c in str(v) for c in ";\r\n`'\""):
                raise ConfigError(
                    f"sources.{self.name}.query_options: {k!r} = {v!r} is not a plain option name and value",
                    "use option names like MEM_LIMIT and values without quotes, ';' or line breaks",
                )
        if self.cfg.database:
            try:
                check_identifier(self.cfg.database, "database")
            except ValueError as exc:
                raise ConfigError(f"sources.{self.name}.database: {exc}") from None
        if self.cfg.auth == "gssapi" and importlib.util.find_spec("kerberos") is None:
            raise SourceError(
                f"{self._where()}: auth = 'gssapi' needs the Python package 'kerberos', which is "
                "not installed",
                "pip install kerberos (it builds against the system's Kerberos libraries, e.g. libkrb5-dev)",
            )
        self._probe()
        try:
            conn = _dbapi.connect(**kw)
            try:
                cur = conn.cursor(user=self.cfg.user, convert_types=False, convert_strings_to_unicode=False)
            except BaseException:
                _quietly(conn.close)
                raise
        except TimeoutError as exc:
            raise TransientSourceError(
                f"{self._where()}: timed out opening a session", "check the server's load; raise timeout"
            ) from exc
        except TTransportException as exc:
            if exc.type == TTransportException.TIMED_OUT:
                raise TransientSourceError(
                    f"{self._where()}: timed out opening a session: {self._clean(exc)}"
                ) from None
            raise self._handshake_error(exc) from None
        except (_ImpylaError, _ThriftError, OSError, ImportError, ValueError, EOFError) as exc:
            raise self._handshake_error(exc) from None
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

    def _handshake_error(self, exc: BaseException) -> SourceError:
        mech = AUTH_MECHANISMS[self.cfg.auth]
        return SourceError(
            f"{self._where()}: the server refused the connection handshake (auth = {self.cfg.auth!r}, "
            f"mechanism {mech}{', TLS' if self.cfg.use_ssl else ''}): {self._clean(exc)}",
            "check that auth matches the server's authentication (NOSASL vs SASL PLAIN/LDAP vs Kerberos), "
            "the user and password, and use_ssl",
        )

    def _abandon(self) -> None:
        """Drop the connection without another RPC: after a signal (or an abandoned
        fetch) the Thrift stream may be mid-message, and tableship is about to exit.
        The server ends the session when the socket closes."""
        conn = self._conn
        self._cur = self._conn = None
        if conn is not None:
            _quietly(conn.close)  # closes the transport only (no CloseSession RPC)

    def _reset(self) -> None:
        cur, conn = self._cur, self._conn
        self._cur = self._conn = None
        try:
            if cur is not None:
                _quietly(cur.close)
        except BaseException:  # Interrupted mid-RPC: no more RPCs on this stream
            self._conn = conn
            self._abandon()
            raise
        if conn is not None:
            _quietly(conn.close)

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
        hint = None
        if _TABLE_MISSING.search(msg):
            hint = "check the job's table name, or whether the table was dropped upstream"
        elif _COLUMN_MISSING.search(msg):
            hint = "check the job's partition_column and expect_columns against the table"
        return SourceError(f"{self._where()}: {what} failed: {msg}", hint)

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
        fetcher = _Prefetcher(self._fetch_batches(op, schema), self.cfg.timeout)
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
                    yield _combine(pending, schema)
                    pending, pending_rows = [], 0
            if pending:
                yield _combine(pending, schema)
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
        converters = [_converter(f.name, f.type) for f in schema]
        fetch = impyla_adapter.fetch_next(op, self.cfg.fetch_size)

        def fetch_batch() -> pa.RecordBatch | None:
            while True:
                resp = fetch()
                columns, more = impyla_adapter.response_columns(resp)
                raw: list[Any] = [_column_values(c) for c in columns]
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
            arrays = [_from_python(list(c), f.type, f.name) for c, f in zip(cols, schema, strict=True)]
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


class _Prefetcher:
    """Runs ``fetch`` on a daemon thread, one call ahead of the consumer.

    The thread starts the first fetch at once; ``get()`` waits for its result (raising
    the fetch's exception); ``next()`` lets the thread make the following call while the
    consumer works on this result. So at most two results exist at a time, and only this
    thread touches the connection until ``stop()`` has joined it.
    """

    def __init__(self, fetch: Callable[[], Any], timeout: float):
        self._fetch = fetch
        self._timeout = timeout
        self._results: queue.Queue = queue.Queue(maxsize=1)
        self._go = threading.Semaphore(1)
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="tableship-hs2-fetch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            if self._stopped:
                return
            item: tuple[Any, BaseException | None]
            try:
                item = (self._fetch(), None)
            except BaseException as exc:  # handed to the consumer
                item = (None, exc)
            self._results.put(item)
            if item[1] is not None:
                return

    def get(self):
        resp, exc = self._results.get()
        if exc is not None:
            raise exc
        return resp

    def next(self) -> None:
        self._go.release()

    def stop(self, wait: bool = True) -> None:
        """Stop the thread; ``wait=False`` (the connection is being abandoned) returns at
        once, leaving a fetch in flight to end with the daemon thread."""
        self._stopped = True
        self._go.release()
        if wait:
            self._thread.join(timeout=self._timeout + 5)


_JAVA_EXCEPTION = re.compile(r"\b(?:[a-z_][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error)\b:?\s*")
_NOISE = re.compile(
    r"\b(?:Error while compiling statement|Error running query|Error while processing statement)"
    r"(?::\s*FAILED)?:\s*|^(?:AnalysisException|ParseException|FAILED):\s*"
)


def _server_message(text: str) -> str:
    """The useful part of a server error: without Java exception class names and the
    'Error running query:' wrappers, and without a repeated [ERROR_CLASS] tag."""
    text = _JAVA_EXCEPTION.sub("", text)
    text = _NOISE.sub("", text)
    text = re.sub(r"(\[[A-Z_.]+\])\s*\1", r"\1", text)
    return " ".join(text.split()) or "unknown error"


def _combine(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches, schema=schema).combine_chunks().to_batches()[0]


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # closing must never hide the real outcome
        pass
