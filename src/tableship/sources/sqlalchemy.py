"""Any SQL database SQLAlchemy can reach (``type = "sqlalchemy"``, ``url = "..."``).

- One connection per source (NullPool). The window query runs with
  ``stream_results=True`` + ``yield_per``: a server-side cursor where the driver has
  one (psycopg, mysqlclient, ...), so memory stays flat however big the window.
- Identifiers are validated (letters, digits, ``_``) and quoted by SQLAlchemy's own
  identifier preparer for the URL's dialect; window bounds are ``text()`` binds
  (``:p0``, ``:p1``), converted by SQLAlchemy to the driver's paramstyle.
- Column types: the table's declared types (reflection) when the result has the
  table's columns, else the DB-API description (PostgreSQL type OIDs, precision and
  scale) or, failing that, the values of the first batch. Each batch of rows is
  turned into Arrow arrays of those types: NUMERIC(p, s) → decimal128(p, s) (exact,
  from the driver's Decimal values), TIMESTAMP → timestamp[us] (WITH TIME ZONE →
  UTC), DATE → date32, REAL → float32, DOUBLE → float64, unconstrained NUMERIC,
  UUID, JSON, intervals and other types → their text.
- Errors: cannot connect / timeout / connection lost → transient; authentication,
  unknown database, table or column, SQL errors → terminal, with the database's
  message. The URL is shown without its password.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import types as sat
from sqlalchemy.pool import NullPool

from tableship.core.errors import ConfigError, MissingExtraError, SourceError, TransientSourceError
from tableship.core.names import check_identifier, split_table
from tableship.core.redact import MASK, SECRET_QUERY_KEY, Redactor, split_userinfo
from tableship.sources.base import Dialect, Query, count_query

# (dialect, driver) → (extra, module) for the drivers tableship ships an extra for
_EXTRAS = {("postgresql", "psycopg"): ("postgres", "psycopg")}


@dataclass(frozen=True)
class SQLAlchemyDialect(Dialect):
    """Quotes identifiers with the URL dialect's own identifier preparer."""

    preparer: Any = field(default=None, compare=False, repr=False)

    def ident(self, name: str) -> str:
        check_identifier(name)
        # quote() quotes when the dialect needs it (reserved words, case): the same
        # convention SQLAlchemy's reflection uses, so names match across dialects
        return self.preparer.quote(name) if self.preparer is not None else super().ident(name)


# ----------------------------------------------------------------------------- types


def arrow_type(t: sat.TypeEngine) -> pa.DataType:
    """Arrow type for a reflected SQLAlchemy column type."""
    if isinstance(t, sat.Boolean):
        return pa.bool_()
    if isinstance(t, sat.SmallInteger):
        return pa.int16()
    if isinstance(t, sat.BigInteger):
        return pa.int64()
    if isinstance(t, sat.Integer):
        return (
            pa.int32() if type(t).__name__.upper() in ("INTEGER", "INT", "INT4", "MEDIUMINT") else pa.int64()
        )
    if isinstance(t, sat.Float):
        return (
            pa.float32()
            if isinstance(t, sat.REAL) or (t.precision is not None and t.precision <= 24)
            else pa.float64()
        )
    if isinstance(t, sat.Numeric):
        return _decimal(t.precision, t.scale)
    if isinstance(t, sat.DateTime):
        return pa.timestamp("us", tz="UTC") if getattr(t, "timezone", False) else pa.timestamp("us")
    if isinstance(t, sat.Date):
        return pa.date32()
    if isinstance(t, sat.Time):
        return pa.time64("us")
    if isinstance(t, sat._Binary):
        return pa.binary()
    return pa.string()


def _decimal(precision: int | None, scale: int | None) -> pa.DataType:
    if precision is None or precision <= 0 or precision > 76:
        return pa.string()  # unconstrained NUMERIC: keep the exact text
    scale = scale or 0
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


# PostgreSQL type OIDs (psycopg / psycopg2 / pg8000 / asyncpg descriptions)
_PG_OIDS: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    26: pa.int64(),
    700: pa.float32(),
    701: pa.float64(),
    1082: pa.date32(),
    1083: pa.time64("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    17: pa.binary(),
}


def _from_description(entry, dialect_name: str) -> pa.DataType | None:
    code = entry[1]
    if dialect_name == "postgresql" and isinstance(code, int):
        if code == 1700:
            precision, scale = entry[4], entry[5]
            return _decimal(precision, scale)
        return _PG_OIDS.get(code, pa.string())
    return None


def _infer(values: list) -> pa.DataType:
    sample = next((v for v in values if v is not None), None)
    if sample is None:
        return pa.string()
    if isinstance(sample, bool):
        return pa.bool_()
    if isinstance(sample, int):
        return pa.int64()
    if isinstance(sample, float):
        return pa.float64()
    if isinstance(sample, dt.datetime):
        return pa.timestamp("us", tz="UTC") if sample.tzinfo is not None else pa.timestamp("us")
    if isinstance(sample, dt.date):
        return pa.date32()
    if isinstance(sample, dt.time):
        return pa.time64("us")
    if isinstance(sample, (bytes, bytearray, memoryview)):
        return pa.binary()
    return pa.string()  # Decimal of unknown scale included: exact text


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, uuid.UUID):
        return str(v)
    return str(v)


def _column(values: list, t: pa.DataType, name: str) -> pa.Array:
    try:
        if pa.types.is_string(t):
            try:
                return pa.array(values, t)
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                return pa.array([_text(v) for v in values], t)
        if pa.types.is_binary(t):
            return pa.array([bytes(v) if isinstance(v, memoryview) else v for v in values], t)
        if pa.types.is_timestamp(t) and t.tz is None:
            if any(isinstance(v, dt.datetime) and v.tzinfo is not None for v in values):
                values = [
                    v.astimezone(dt.UTC).replace(tzinfo=None) if v is not None else None for v in values
                ]
        if pa.types.is_floating(t) and t.bit_width == 32:
            return pc.cast(pa.array(values, pa.float64()), t, safe=False)
        return pa.array(values, t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, decimal.InvalidOperation) as exc:
        bad = next((v for v in values if v is not None and _unconvertible(v, t)), None)
        shown = f" (value {bad!r})" if bad is not None else ""
        raise SourceError(f"column {name}: cannot convert a value to {t}{shown}: {exc}") from None


def _unconvertible(v: Any, t: pa.DataType) -> bool:
    try:
        pa.array([v], t)
        return False
    except Exception:
        return True


# ----------------------------------------------------------------------------- errors

_TERMINAL = re.compile(
    r"authentication|password|pg_hba|permission denied|access denied|role .* does not exist|"
    r"database .* does not exist|unknown database|does not exist|no such table|no such column|"
    r"unknown column|doesn't exist|syntax error|undefined",
    re.I,
)
_TRANSIENT = re.compile(
    r"could not connect|connection refused|connection reset|connection timed out|timeout expired|timed out|"
    r"server closed the connection|terminating connection|connection is closed|connection already closed|"
    r"lost connection|broken pipe|could not receive data|could not send data|no route to host|"
    r"network is unreachable|the database system is (starting up|shutting down|in recovery mode)|"
    r"too many connections|remaining connection slots|temporary failure in name resolution",
    re.I,
)
_TRANSIENT_SQLSTATE = ("08", "57P", "53", "40001", "40P01")


def _sqlstate(orig: BaseException | None) -> str | None:
    for attr in ("sqlstate", "pgcode"):
        code = getattr(orig, attr, None)
        if isinstance(code, str) and code:
            return code
    diag = getattr(orig, "diag", None)
    code = getattr(diag, "sqlstate", None)
    return code if isinstance(code, str) and code else None


# ----------------------------------------------------------------------------- the source


class SQLAlchemySource:
    def __init__(self, name: str, cfg):
        self.name = name
        self.cfg = cfg
        raw_url = cfg.url.get_secret_value()
        self._redact = Redactor([raw_url])
        try:
            self.url = sa.engine.make_url(_reencode_userinfo(raw_url))
        except (sa_exc.ArgumentError, ValueError) as exc:
            raise ConfigError(
                f"sources.{name}.url: not a valid SQLAlchemy URL: {self._redact(str(exc))}",
                "use dialect+driver://user@host:port/database (percent-encode special "
                "characters of the password)",
            ) from None
        self._engine = self._make_engine()
        preparer = self._engine.dialect.identifier_preparer
        self.dialect = SQLAlchemyDialect(quote=preparer.initial_quote, paramstyle="named", preparer=preparer)
        self._conn: sa.Connection | None = None
        self._schemas: dict[str, pa.Schema] = {}
        # everything the driver stack may raise: SQLAlchemy's own errors (DBAPIError and
        # the rest), the DBAPI module's errors it did not wrap, and the OS's
        dbapi_error = getattr(getattr(self._engine.dialect, "dbapi", None), "Error", None)
        self._errors: tuple[type[BaseException], ...] = (sa_exc.SQLAlchemyError, OSError) + (
            (dbapi_error,) if isinstance(dbapi_error, type) and issubclass(dbapi_error, Exception) else ()
        )

    # -- engine and connection
    def _shown_url(self) -> str:
        """The URL without its password nor secret query values (``?password=…``)."""
        query = {k: (MASK if SECRET_QUERY_KEY.search(k) else v) for k, v in self.url.query.items()}
        return self.url.set(query=query).render_as_string(hide_password=True)

    def _where(self) -> str:
        return f"source {self.name!r} ({self._shown_url()})"

    def _make_engine(self) -> sa.Engine:
        backend = self.url.get_backend_name()
        connect_args: dict[str, Any] = {}
        if backend in ("postgresql", "mysql", "mariadb"):
            connect_args["connect_timeout"] = max(1, int(round(self.cfg.timeout)))
        try:
            return sa.create_engine(self.url, poolclass=NullPool, connect_args=connect_args)
        except sa_exc.NoSuchModuleError as exc:
            raise ConfigError(
                f"sources.{self.name}.url: SQLAlchemy has no dialect for {self.url.drivername!r}: {exc}",
                "check the URL's dialect+driver prefix, or install the package that provides it",
            ) from None
        except ImportError as exc:
            module = getattr(exc, "name", None) or str(exc)
            if (backend, self.url.get_driver_name()) in _EXTRAS:
                extra, _ = _EXTRAS[(backend, self.url.get_driver_name())]
                raise MissingExtraError(
                    f"source {self.name!r} ({self.url.drivername})", extra, module
                ) from None
            raise ConfigError(
                f"source {self.name!r}: the database driver for {self.url.drivername!r} is not "
                f"installed ({module})",
                f"install it, e.g. pip install {module}",
            ) from None

    def _connection(self) -> sa.Connection:
        if self._conn is None:
            try:
                self._conn = self._engine.connect()
            except ImportError as exc:  # a driver imported lazily at connect time
                raise ConfigError(f"source {self.name!r}: missing database driver: {exc}") from None
            except self._errors as exc:
                raise self._translate(exc, "connecting", connecting=True) from None
        return self._conn

    def _reset(self) -> None:
        """Drop the connection without talking to the server (also after a signal,
        when a query may still be running on it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:
                pass

    def _message(self, exc: BaseException) -> str:
        orig = getattr(exc, "orig", None) or exc
        text = str(orig) or type(orig).__name__
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        # keep the primary message and psycopg's/libpq's DETAIL or HINT line, not the SQL
        keep = [
            ln
            for ln in lines[:3]
            if not ln.startswith(("LINE ", "^", "[SQL:", "[parameters:", "(Background"))
        ]
        return self._redact(" ".join(keep) or type(orig).__name__)[:500]

    def _translate(self, exc: BaseException, what: str, connecting: bool = False) -> SourceError:
        msg = self._message(exc)
        state = _sqlstate(getattr(exc, "orig", None))
        invalidated = bool(getattr(exc, "connection_invalidated", False))
        terminal_state = state is not None and state[:2] in ("28", "3D", "42", "22", "23", "0A", "3F")
        if terminal_state:
            transient = False
        elif invalidated or (state is not None and state.startswith(_TRANSIENT_SQLSTATE)):
            transient = True
        elif _TERMINAL.search(msg):  # login refused, unknown object, SQL error
            transient = False
        else:
            transient = bool(_TRANSIENT.search(msg)) or (
                isinstance(exc, sa_exc.OperationalError) and connecting
            )
        hint: str | None
        if transient:
            self._reset()
            hint = (
                "check that the database is up and reachable from this host"
                if connecting
                else "the connection was lost; the run is retried"
            )
            return TransientSourceError(f"{self._where()}: {what} failed: {msg}", hint)
        hint = None
        if state in ("42P01", "3F000") or re.search(
            r"relation .* does not exist|no such table|doesn't exist", msg, re.I
        ):
            hint = "check the job's table name, or whether the table was dropped upstream"
        elif state == "42703" or re.search(
            r"column .* does not exist|no such column|unknown column", msg, re.I
        ):
            hint = "check the job's partition_column and expect_columns against the table"
        elif connecting:
            hint = "check the URL's user, password and database"
        return SourceError(f"{self._where()}: {what} failed: {msg}", hint)

    # -- Source protocol
    def row_hash(self, columns: list[str]) -> str | None:
        """PostgreSQL: the first 64 bits of ``md5`` of the row's text form (NULL and ``""``
        differ there), as BIGINT; other dialects: None (row counts only)."""
        if self._engine.dialect.name != "postgresql":
            return None
        return "CAST(CAST(('x' || substr(md5(CAST(tableship_t AS text)), 1, 16)) AS bit(64)) AS bigint)"

    def schema(self, table: str) -> pa.Schema:
        if table in self._schemas:
            return self._schemas[table]
        db, name = split_table(table)
        conn = self._connection()
        try:
            cols = sa.inspect(conn).get_columns(name, schema=db)
        except sa_exc.NoSuchTableError:
            self._end_transaction()
            raise SourceError(
                f"{self._where()}: table {table} not found",
                "check the job's table name, or whether the table was dropped upstream",
            ) from None
        except self._errors as exc:
            self._end_transaction()
            raise self._translate(exc, f"reading the columns of {table}") from None
        except BaseException:  # Interrupted
            self._reset()
            raise
        self._end_transaction()
        schema = pa.schema([pa.field(c["name"], arrow_type(c["type"])) for c in cols])
        self._schemas[table] = schema
        return schema

    def _end_transaction(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction():
            try:
                conn.rollback()
            except Exception:
                self._reset()
            except BaseException:
                self._reset()
                raise

    def _result_schema(self, result, first_rows: Sequence) -> pa.Schema:
        names = list(result.keys())
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise SourceError(
                f"{self._where()}: the result has duplicate column names: {', '.join(dups)}",
                "alias the columns so that every name is unique",
            )
        for schema in self._schemas.values():
            if schema.names == names:
                return schema
        description = result.cursor.description if result.cursor is not None else None
        backend = self.url.get_backend_name()
        types = []
        for i in range(len(names)):
            t = _from_description(description[i], backend) if description else None
            if t is None:
                t = _infer([row[i] for row in first_rows])
            types.append(t)
        return pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])

    def batches(self, query: Query, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        size = max(1, min(batch_rows, self.cfg.fetch_size))
        conn = self._connection()
        result = None
        try:
            try:
                result = conn.execution_options(stream_results=True, yield_per=size).execute(
                    sa.text(query.sql), query.params or {}
                )
                schema = None
                for rows in result.partitions(size):
                    if not rows:
                        continue
                    if schema is None:
                        schema = self._result_schema(result, rows)
                    columns = list(zip(*rows, strict=True)) if schema.names else []
                    arrays = [
                        _column(list(col), f.type, f.name) for col, f in zip(columns, schema, strict=True)
                    ]
                    del rows, columns
                    yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            except SourceError:
                raise
            except self._errors as exc:
                raise self._translate(exc, "the query") from None
            except BaseException:  # Interrupted, or the consumer gave up: the query may still run
                self._reset()
                raise
        finally:
            if result is not None and self._conn is not None:
                try:
                    result.close()
                except Exception:
                    self._reset()
                except BaseException:
                    self._reset()
                    raise
            self._end_transaction()

    def count(self, query: Query) -> int:
        q = count_query(self.dialect, query)
        conn = self._connection()
        try:
            value = conn.execute(sa.text(q.sql), q.params or {}).scalar_one()
        except self._errors as exc:
            raise self._translate(exc, "the COUNT(*) check") from None
        except BaseException:
            self._reset()
            raise
        finally:
            self._end_transaction()
        return int(value)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
        finally:
            try:
                self._engine.dispose()
            except Exception:
                pass


def _reencode_userinfo(raw: str) -> str:
    """The URL with its user and password percent-encoded, the password running to the last
    ``@`` before the host (SQLAlchemy's own parser stops at the first ``@``, so
    ``user:Pa@ss@host`` would log in as ``Pa`` on host ``ss@host``). Encoded input stays
    as it was meant: it is decoded first."""
    parts = split_userinfo(raw)
    if parts is None:
        return raw
    scheme, user, password, rest = parts
    userinfo = quote(unquote(user), safe="")
    if password is not None:
        userinfo += ":" + quote(unquote(password), safe="")
    return f"{scheme}://{userinfo}@{rest}"
