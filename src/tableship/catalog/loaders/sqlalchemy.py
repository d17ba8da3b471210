"""Any SQLAlchemy database as a load target; PostgreSQL (psycopg 3) through ``COPY FROM STDIN``.

- The table is created from the manifest's columns with SQLAlchemy's generic types
  (compiled by the URL's dialect: NUMERIC(p,s), DOUBLE PRECISION, TIMESTAMP WITH TIME
  ZONE, BYTEA…), or an existing one is checked column by column (type families: the
  integer width, NUMERIC precision and scale, float, boolean, date, time, timestamp with
  or without time zone, text, binary).
- One transaction per archive: ``DELETE`` of the spans' rows, the rows, the count check.
  PostgreSQL loads up to :data:`PG_PARALLEL_LOADS` archives at once, each on its own
  connection (one ``COPY`` keeps one server process busy; the spans are disjoint, so the
  transactions never wait on each other's rows).
- PostgreSQL, archive inside the range, ``quoting = "minimal"``, no BLOB column: the
  decompressed CSV goes to ``COPY … FROM STDIN (FORMAT csv, DELIMITER, NULL, HEADER)`` as
  is — PostgreSQL's CSV rules are the archive's (a quoted value is never NULL, ``""`` is
  an empty string, quoted line breaks and delimiters are data); TIMESTAMPTZ values
  (written in UTC without offset) are read with ``SET LOCAL TIME ZONE 'UTC'``. Otherwise
  DuckDB reads the archive (typed, cut to the spans) and writes a plain CSV for COPY.
- Other dialects: DuckDB reads the archive (typed, cut to the spans) and the rows go in
  batches to ``executemany`` (SQLAlchemy ``insert()``).
- The URL is only ever shown without its password.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import types as sat
from sqlalchemy.pool import QueuePool

from tableship.archive.codecs import open_decompressor
from tableship.catalog.archivecsv import quote_ident
from tableship.catalog.loaders.base import (
    LoaderBase,
    LoadError,
    LoadSpec,
    Span,
    TransientLoadError,
    check_same,
    count_mismatch,
)
from tableship.catalog.loaders.csvread import ensure_csv, parse_failed, read_sql, size_mismatch
from tableship.core.errors import UsageError
from tableship.core.redact import redact

BATCH_ROWS = 20_000
PG_PARALLEL_LOADS = 4
_COPY_CHUNK = 1 << 20
_DECIMAL = re.compile(r"^DECIMAL\((\d+),(\d+)\)$")


def sa_type(t: str) -> sat.TypeEngine:
    """The SQLAlchemy type for a manifest (DuckDB) type."""
    t = t.upper().replace(" ", "")
    simple: dict[str, sat.TypeEngine] = {
        "BOOLEAN": sat.Boolean(),
        "TINYINT": sat.SmallInteger(),
        "UTINYINT": sat.SmallInteger(),
        "SMALLINT": sat.SmallInteger(),
        "USMALLINT": sat.Integer(),
        "INTEGER": sat.Integer(),
        "UINTEGER": sat.BigInteger(),
        "BIGINT": sat.BigInteger(),
        "UBIGINT": sat.Numeric(20, 0),
        "HUGEINT": sat.Numeric(38, 0),
        "FLOAT": sat.REAL(),
        "DOUBLE": sat.Double(),
        "DATE": sat.Date(),
        "TIME": sat.Time(),
        "TIMESTAMP": sat.DateTime(),
        "TIMESTAMPTZ": sat.DateTime(timezone=True),
        "VARCHAR": sat.Text(),
        "BLOB": sat.LargeBinary(),
    }
    if t in simple:
        return simple[t]
    m = _DECIMAL.match(t)
    if m:
        return sat.Numeric(int(m.group(1)), int(m.group(2)))
    raise LoadError(f"column type {t!r} cannot be created by --load", "restore with --out DIR instead")


def family(t: sat.TypeEngine, tz_types: bool = True) -> str:
    """A comparable name for a (reflected or generic) type."""
    if isinstance(t, sat.Boolean):
        return "boolean"
    if isinstance(t, sat.SmallInteger):
        return "smallint"
    if isinstance(t, sat.BigInteger):
        return "bigint"
    if isinstance(t, sat.Integer):
        return "integer"
    if isinstance(t, sat.Float):
        return "float"
    if isinstance(t, sat.Numeric):
        return f"decimal({t.precision},{t.scale})"
    if isinstance(t, sat.DateTime):
        return "timestamptz" if t.timezone and tz_types else "timestamp"
    if isinstance(t, sat.Date):
        return "date"
    if isinstance(t, sat.Time):
        return "time"
    if isinstance(t, (sat.String, sat.Text)):
        return "text"
    if isinstance(t, (sat.LargeBinary, sat._Binary)):
        return "binary"
    return type(t).__name__.lower()


class SQLAlchemyLoader(LoaderBase):
    kind = "sqlalchemy"

    def __init__(self, url: str, schema: str | None, table: str, name: str | None = None):
        try:
            self.url = sa.engine.make_url(url)
        except (sa_exc.ArgumentError, ValueError):
            raise UsageError(
                "--load: the target is not a valid SQLAlchemy URL",
                "write it as dialect+driver://user@host:port/database#SCHEMA.TABLE",
            ) from None
        self.schema = schema
        self.table_name = table
        where = name or self.url.render_as_string(hide_password=True)
        self.display = f"{where}:{schema + '.' if schema else ''}{table}"
        self.lock_name = f"sql-{self.url.render_as_string(hide_password=True)}-{schema or ''}.{table}"
        self._table: sa.Table | None = None
        self._pc = ""
        self.is_pg = self.url.get_backend_name() == "postgresql" and self.url.get_driver_name() == "psycopg"
        # other databases get executemany batches from one connection (SQLite has one writer)
        self.parallel_loads = PG_PARALLEL_LOADS if self.is_pg else 1
        # no connection yet, but a wrong URL fails here, before anything is downloaded
        self._engine: Any = self._create_engine(where)

    def _create_engine(self, where: str):
        # connections kept for the restore (check, counts, one transaction per archive, one
        # per load running at once): a new connection per step costs more than a small load.
        # No cap on the overflow: ``restore --parallel N`` may run more loads than the pool
        # keeps (set after this engine exists), and a capped pool would make them wait
        try:
            return sa.create_engine(
                self.url, poolclass=QueuePool, pool_size=self.parallel_loads, max_overflow=-1
            )
        except sa_exc.NoSuchModuleError:
            raise UsageError(
                f"--load {where}: SQLAlchemy has no dialect {self.url.drivername!r}",
                "check the URL's dialect+driver prefix (e.g. postgresql+psycopg://), or install the "
                "package that provides it",
            ) from None
        except ImportError as exc:
            module = getattr(exc, "name", None) or str(exc)
            raise UsageError(
                f"--load {where}: the database driver for {self.url.drivername!r} is not "
                f"installed ({module})",
                f"install it (pip install {module}) or use another driver",
            ) from None

    @property
    def table(self) -> sa.Table:
        assert self._table is not None, "prepare() first"
        return self._table

    # -- plumbing
    def _error(self, exc: BaseException, what: str) -> LoadError:
        text = redact(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
        first = text[0] if text else type(exc).__name__
        pw = self.url.password
        if pw:
            first = first.replace(str(pw), "***")
        cls = LoadError
        if isinstance(exc, sa_exc.OperationalError) or type(exc).__name__ == "OperationalError":
            cls = TransientLoadError
        return cls(f"target {self.display}: {what} failed: {first}", "check the target database and re-run")

    def engine(self):
        return self._engine

    def _new_table(self, columns: list[tuple[str, str]]) -> sa.Table:
        cols = [sa.Column(n, sa_type(t)) for n, t in columns]
        return sa.Table(self.table_name, sa.MetaData(), *cols, schema=self.schema)

    # -- Loader protocol
    def check(self, columns: list[tuple[str, str]], partition_column: str) -> bool:
        self._pc = partition_column
        eng = self.engine()
        tz = eng.dialect.name == "postgresql"
        want = [(n, family(sa_type(t), tz)) for n, t in columns]
        self._table = self._new_table(columns)
        try:
            insp = sa.inspect(eng)
            if not insp.has_table(self.table_name, schema=self.schema):
                return False
            have = [
                (c["name"], family(c["type"], tz))
                for c in insp.get_columns(self.table_name, schema=self.schema)
            ]
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, "checking the table") from None
        check_same(self.display, want, have)
        return True

    def create(self, columns: list[tuple[str, str]], partition_column: str) -> None:
        self._pc = partition_column
        eng = self.engine()
        self._table = self._new_table(columns)
        try:
            with eng.begin() as conn:
                if self.schema and eng.dialect.name == "postgresql":
                    conn.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
                self._table.create(conn)
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, "creating the table") from None

    def _where(self, spans: list[Span]):
        col = self.table.c[self._pc]
        return sa.or_(*[col.between(s.low, s.high) for s in spans]) if spans else sa.false()

    def rows_in(self, spans: list[Span]) -> int:
        try:
            with self.engine().connect() as conn:
                q = sa.select(sa.func.count()).select_from(self.table).where(self._where(spans))
                return int(conn.execute(q).scalar_one())
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, "counting the range's rows") from None

    def load(self, spec: LoadSpec) -> int:
        if self.is_pg:
            return self._load_pg(spec)
        ensure_csv(spec)
        total = self._count(spec)
        try:
            with self.engine().begin() as conn:
                conn.execute(self.table.delete().where(self._where(spec.spans)))
                written = 0
                for rows in self._batches(spec):
                    conn.execute(self.table.insert(), rows)
                    written += len(rows)
                if total != spec.expected_rows:
                    raise count_mismatch(spec, total)
                spec.before_commit()
            return written
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, f"loading {spec.name}") from None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- DuckDB reads the archive
    def _count(self, spec: LoadSpec) -> int:
        sql, params = read_sql(spec, filtered=False)
        con = duckdb.connect()
        try:
            return _one(con.execute(f"SELECT count(*) FROM ({sql})", params).fetchone())
        except duckdb.Error as exc:
            raise parse_failed(exc, spec) from None
        finally:
            con.close()

    def _batches(self, spec: LoadSpec):
        sql, params = read_sql(spec, filtered=not spec.whole)
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            reader = con.sql(sql, params=params).to_arrow_reader(BATCH_ROWS)
            for batch in reader or ():
                yield batch.to_pylist()
        except duckdb.Error as exc:
            raise parse_failed(exc, spec) from None
        finally:
            con.close()

    # -- PostgreSQL: COPY FROM STDIN
    def _fast(self, spec: LoadSpec) -> bool:
        d = spec.dialect
        return (
            spec.whole
            and d.quoting == "minimal"
            and d.preset is None
            and all(t != "BLOB" for _, t in spec.columns)
        )

    def _load_pg(self, spec: LoadSpec) -> int:
        import psycopg  # the postgres extra's driver (is_pg means the URL names it)
        from psycopg import sql as pgsql

        target = pgsql.Identifier(*(p for p in (self.schema, self.table_name) if p))
        cols = pgsql.SQL(", ").join(pgsql.Identifier(n) for n, _ in spec.columns)
        pc = pgsql.Identifier(self._pc)
        with contextlib.ExitStack() as stack:
            opts: pgsql.Composable
            total: int | None
            size: int | None = None  # bytes sent, when COPY reads the decompressed archive
            if self._fast(spec):
                d, header, total = spec.dialect, spec.dialect.header, None
                opts = pgsql.SQL(
                    "FORMAT csv, DELIMITER {}, NULL {}, HEADER {}, QUOTE '\"', ESCAPE '\"'"
                ).format(
                    pgsql.Literal(d.delimiter),
                    pgsql.Literal(d.null),
                    pgsql.SQL("true" if header else "false"),
                )
                if spec.csv is None:
                    # stream: decompressed on the fly into COPY (the archive's sha256 was checked
                    # before; its size and row count are checked before the commit)
                    assert spec.archive is not None
                    source = stack.enter_context(open_decompressor(spec.archive, spec.codec))
                    size = 0
                else:
                    source = stack.enter_context(open(spec.csv, "rb"))
            else:
                csv = ensure_csv(spec)
                tmp = Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="tableship-pg-", dir=csv.parent))
                )
                rendered = tmp / "rows.csv"
                total = self._render(spec, rendered)
                source = stack.enter_context(open(rendered, "rb"))
                opts = pgsql.SQL("FORMAT csv, DELIMITER ',', NULL '', HEADER false, QUOTE '\"', ESCAPE '\"'")
            where = pgsql.SQL(" OR ").join(
                pgsql.SQL("{} BETWEEN {} AND {}").format(pc, pgsql.Literal(s.low), pgsql.Literal(s.high))
                for s in spec.spans
            )
            raw = self.engine().raw_connection()
            stack.callback(raw.close)
            conn: psycopg.Connection = raw.driver_connection
            try:
                with conn.cursor() as cur:
                    cur.execute("SET LOCAL TIME ZONE 'UTC'")
                    cur.execute("SET LOCAL DateStyle = 'ISO, YMD'")
                    cur.execute(pgsql.SQL("DELETE FROM {} WHERE {}").format(target, where))
                    stmt = pgsql.SQL("COPY {} ({}) FROM STDIN WITH ({})").format(target, cols, opts)
                    with cur.copy(stmt) as copy:
                        while chunk := _read(source, spec):
                            copy.write(chunk)
                            if size is not None:
                                size += len(chunk)
                    written = cur.rowcount
                if size is not None and spec.csv_bytes is not None and size != spec.csv_bytes:
                    conn.rollback()
                    raise size_mismatch(spec, size)
                got = written if total is None else total
                if got != spec.expected_rows:
                    conn.rollback()
                    raise count_mismatch(spec, got)
                spec.before_commit()  # raises to cancel: rolled back below
                conn.commit()
                return written
            except psycopg.Error as exc:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
                if isinstance(exc, psycopg.DataError):
                    raise LoadError(
                        f"{spec.name}: PostgreSQL refused a value: {redact(str(exc).splitlines()[0])}; "
                        "the load was rolled back",
                        "check the archive with 'tableship verify', or load it into a new table",
                    ) from None
                raise self._error(exc, f"loading {spec.name}") from None
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise

    def _render(self, spec: LoadSpec, out: Path) -> int:
        """The archive's rows inside the spans as a plain CSV for COPY; the archive's total rows."""
        sql, params = read_sql(spec, filtered=False)
        select = ", ".join(
            (f"'\\x' || hex({quote_ident(n)}) AS {quote_ident(n)}" if t == "BLOB" else quote_ident(n))
            for n, t in spec.columns
        )
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"CREATE TEMP TABLE rows AS {sql}", params)
            total = _one(con.execute("SELECT count(*) FROM rows").fetchone())
            fp: dict[str, Any] = {}
            parts = []
            for i, s in enumerate(spec.spans):
                fp[f"lo{i}"], fp[f"hi{i}"] = s.low, s.high
                parts.append(f"{quote_ident(spec.partition_column)} BETWEEN $lo{i} AND $hi{i}")
            pred = " OR ".join(parts) or "false"
            con.execute(
                f"COPY (SELECT {select} FROM rows WHERE {pred}) TO '{_sql_str(str(out))}' "
                "(FORMAT csv, HEADER false, DELIMITER ',', QUOTE '\"', ESCAPE '\"', NULL '')",
                fp,
            )
            return total
        except duckdb.Error as exc:
            raise parse_failed(exc, spec) from None
        finally:
            con.close()


def _read(source: Any, spec: LoadSpec) -> bytes:
    try:
        return source.read(_COPY_CHUNK)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # gzip/isal/zstd each raise their own error types
        raise LoadError(
            f"{spec.name}: the archive does not decompress as {spec.codec}: {type(exc).__name__}: {exc}; "
            "its load was rolled back",
            "the archive is inconsistent with its manifest: re-run the backup of that window",
        ) from None


def _one(row: tuple | None) -> int:
    assert row is not None
    return int(row[0])


def _sql_str(text: str) -> str:
    return text.replace("'", "''")
