"""The Source contract, checked against every Source implementation on a real engine.

Engines: ``duckdb`` (a DuckDB file), ``hs2`` (Spark's HiveServer2 Thrift server through
the impala/hive source; marked slow) and ``postgres`` (PostgreSQL through the
sqlalchemy source). Each loads the *same logical tables* with its own SQL:

* ``contract.golden`` — every type the issue names (BIGINT, INT, DECIMAL(18,4), a wide
  DECIMAL(38,10), DOUBLE, BOOLEAN, DATE, TIMESTAMP with and without fractions, text with
  ``;``, quotes, CR/LF, non-ASCII, NULL vs ``''``), partitioned by a string
  ``partition_date``;
* ``contract.dated`` — partitioned by a DATE column.

The golden test exports the window of ``contract.golden`` from each engine through
``tableship.archive.writer.write_archive`` (codec none) and compares the bytes with one
expected CSV: the same logical rows give the same bytes whatever the engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from tableship.archive.csvrender import CsvDialect
from tableship.archive.writer import write_archive
from tableship.config.models import DuckDBSource, HS2Source, SQLAlchemySource
from tableship.core.errors import SourceError, TransientSourceError
from tableship.sources.base import Query, Source, open_source, window_query

# ---------------------------------------------------------------- the logical tables

# (name, logical type) — the engines spell the types their own way (see TYPES)
COLUMNS = [
    ("id", "bigint"),
    ("n", "int"),
    ("amount", "dec18"),
    ("wide", "dec38"),
    ("ratio", "double"),
    ("flag", "bool"),
    ("day", "date"),
    ("ts", "timestamp"),
    ("txt", "text"),
    ("partition_date", "text"),
]

N = None
# values as the text of a CAST('…' AS type); None is NULL
ROWS = [
    ("1", "0", "0", "0", "0.1", "true", "2024-01-01", "2024-01-01 00:00:00", "plain", "2024-01-01"),
    (
        "9223372036854775807",
        "-2147483648",
        "-12345678901234.5678",
        "12345678901234567890.0123456789",
        "-1.5e-07",
        "false",
        "1999-12-31",
        "2024-02-29 23:59:59.999999",
        'semi;colon "quoted" line1\nline2',
        "2024-01-15",
    ),
    ("-1", "2147483647", "0.0001", "-0.0000000001", "468", N, N, "2024-03-01 12:30:00.5", "", "2024-01-31"),
    ("4", N, N, N, N, N, N, N, N, "2024-01-20"),
    (
        "5",
        "42",
        "99999999999999.9999",
        N,
        "1e300",
        "true",
        "2024-01-31",
        "1970-01-01 00:00:00.000001",
        "ünïcödé ✓ 日本 \r carriage",
        "2024-01-31",
    ),
    ("6", "1", "1", "1", "1", "true", "2024-02-01", "2024-02-01 00:00:00", "after the window", "2024-02-01"),
    ("7", "1", "1", "1", "1", "true", "2023-12-31", "2023-12-31 23:59:59", "before the window", "2023-12-31"),
    ("8", "3", "-0.5", "0.5", "-0", "false", "2024-01-10", "2024-01-10 10:10:10.1", " spaced ", "2024-01-10"),
]
WINDOW = ("2024-01-01", "2024-01-31")  # string partition bounds: rows 1-5 and 8

GOLDEN_CSV = (
    "id;n;amount;wide;ratio;flag;day;ts;txt;partition_date\n"
    '-1;2147483647;0.0001;-0.0000000001;468;;;2024-03-01 12:30:00.500000;"";2024-01-31\n'
    "1;0;0.0000;0.0000000000;0.1;true;2024-01-01;2024-01-01 00:00:00;plain;2024-01-01\n"
    "4;;;;;;;;;2024-01-20\n"
    "5;42;99999999999999.9999;;1e+300;true;2024-01-31;1970-01-01 00:00:00.000001;"
    '"ünïcödé ✓ 日本 \r carriage";2024-01-31\n'
    "8;3;-0.5000;0.5000000000;-0;false;2024-01-10;2024-01-10 10:10:10.100000; spaced ;2024-01-10\n"
    "9223372036854775807;-2147483648;-12345678901234.5678;12345678901234567890.0123456789;-1.5e-7;"
    'false;1999-12-31;2024-02-29 23:59:59.999999;"semi;colon ""quoted"" line1\nline2";2024-01-15\n'
).encode()

EXPECTED_TYPES = {
    "id": pa.int64(),
    "n": pa.int32(),
    "amount": pa.decimal128(18, 4),
    "wide": pa.decimal128(38, 10),
    "ratio": pa.float64(),
    "flag": pa.bool_(),
    "day": pa.date32(),
    "ts": pa.timestamp("us"),
}

TYPES = {
    "duckdb": {
        "bigint": "BIGINT",
        "int": "INTEGER",
        "dec18": "DECIMAL(18,4)",
        "dec38": "DECIMAL(38,10)",
        "double": "DOUBLE",
        "bool": "BOOLEAN",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
        "text": "VARCHAR",
    },
    "postgres": {
        "bigint": "BIGINT",
        "int": "INTEGER",
        "dec18": "NUMERIC(18,4)",
        "dec38": "NUMERIC(38,10)",
        "double": "DOUBLE PRECISION",
        "bool": "BOOLEAN",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
        "text": "TEXT",
    },
    "hs2": {
        "bigint": "BIGINT",
        "int": "INT",
        "dec18": "DECIMAL(18,4)",
        "dec38": "DECIMAL(38,10)",
        "double": "DOUBLE",
        "bool": "BOOLEAN",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
        "text": "STRING",
    },
}


def sql_literal(engine: str, text: str) -> str:
    if engine == "hs2":  # Spark SQL string literals use backslash escapes
        text = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
        return f"'{text}'"
    return "'" + text.replace("'", "''") + "'"


def insert_sql(engine: str, table: str, columns: list[tuple[str, str]], rows: list[tuple]) -> str:
    types = TYPES[engine]
    values = []
    for row in rows:
        cells = [
            f"CAST(NULL AS {types[t]})" if v is None else f"CAST({sql_literal(engine, v)} AS {types[t]})"
            for v, (_, t) in zip(row, columns, strict=True)
        ]
        values.append("(" + ", ".join(cells) + ")")
    return f"INSERT INTO {table} VALUES " + ", ".join(values)


# the DATE-partitioned table: (id, txt, part_day)
DATED_COLUMNS = [("id", "bigint"), ("txt", "text"), ("part_day", "date")]
DATED_ROWS = [
    ("1", "a", "2024-05-31"),
    ("2", "b;c", "2024-06-01"),
    ("3", N, "2024-06-15"),
    ("4", "d", "2024-06-30"),
    ("5", "e", "2024-07-01"),
]


# ---------------------------------------------------------------- engines


@dataclass
class Engine:
    name: str
    make_source: Callable[..., Source]  # make_source(**config overrides)
    execute: Callable[[str], None]
    unreachable: Callable[[], Source] | None  # a source pointing at a closed port


def _create_tables(engine: str, execute: Callable[[str], None]) -> None:
    t = TYPES[engine]
    cols = ", ".join(f"{n} {t[ty]}" for n, ty in COLUMNS)
    dated = ", ".join(f"{n} {t[ty]}" for n, ty in DATED_COLUMNS)
    if engine == "hs2":
        execute("CREATE DATABASE IF NOT EXISTS contract")
        execute("DROP TABLE IF EXISTS contract.golden")
        execute("DROP TABLE IF EXISTS contract.dated")
        execute(f"CREATE TABLE contract.golden ({cols}) USING parquet PARTITIONED BY (partition_date)")
        execute(f"CREATE TABLE contract.dated ({dated}) USING parquet PARTITIONED BY (part_day)")
    else:
        execute("DROP SCHEMA IF EXISTS contract CASCADE")
        execute("CREATE SCHEMA contract")
        execute(f"CREATE TABLE contract.golden ({cols})")
        execute(f"CREATE TABLE contract.dated ({dated})")
    execute(insert_sql(engine, "contract.golden", COLUMNS, ROWS))
    execute(insert_sql(engine, "contract.dated", DATED_COLUMNS, DATED_ROWS))


def _closed_port() -> int:
    from tests.servers import free_port

    return free_port()


ENGINES = ["duckdb", pytest.param("hs2", marks=pytest.mark.slow), "postgres"]


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, tmp_path_factory) -> Engine:
    name = request.param
    if name == "duckdb":
        import duckdb

        path = tmp_path_factory.mktemp("contract-duckdb") / "warehouse.duckdb"
        con = duckdb.connect(str(path))
        _create_tables("duckdb", lambda sql: con.execute(sql))
        con.close()

        def make(**kw):
            return open_source("dk", DuckDBSource.model_validate({"type": "duckdb", "path": str(path), **kw}))

        return Engine(name, make, lambda sql: None, None)

    if name == "postgres":
        pg = request.getfixturevalue("postgres")
        import sqlalchemy as sa

        eng = sa.create_engine(pg.url)

        def execute(sql: str) -> None:
            with eng.begin() as conn:
                conn.exec_driver_sql(sql)

        _create_tables("postgres", execute)
        eng.dispose()

        def make(**kw):
            return open_source(
                "pg", SQLAlchemySource.model_validate({"type": "sqlalchemy", "url": pg.url, **kw})
            )

        def unreachable():
            url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/warehouse"
            return open_source(
                "pg", SQLAlchemySource.model_validate({"type": "sqlalchemy", "url": url, "timeout": 5})
            )

        return Engine(name, make, execute, unreachable)

    hs2 = request.getfixturevalue("hs2")
    _create_tables("hs2", hs2.execute)

    def make(**kw):
        cfg = {"type": "hive", "host": hs2.host, "port": hs2.port, "auth": "nosasl", **kw}
        return open_source("hive", HS2Source.model_validate(cfg))

    def unreachable():
        cfg = {"type": "hive", "host": "127.0.0.1", "port": _closed_port(), "auth": "nosasl", "timeout": 5}
        return open_source("hive", HS2Source.model_validate(cfg))

    return Engine(name, make, hs2.execute, unreachable)


@pytest.fixture
def source(engine):
    src = engine.make_source()
    yield src
    src.close()


def ordered(src: Source, q: Query, column: str = "id") -> Query:
    return Query(f"{q.sql} ORDER BY {src.dialect.ident(column)}", q.params, q.values)


def rows_of(src: Source, q: Query, batch_rows: int = 100_000) -> list[dict]:
    out = []
    for b in src.batches(q, batch_rows):
        assert isinstance(b, pa.RecordBatch)
        out.extend(b.to_pylist())
    return out


# ---------------------------------------------------------------- the contract


def test_golden_csv_is_byte_identical_across_engines(source, tmp_path):
    q = ordered(source, window_query(source.dialect, "contract.golden", "partition_date", *WINDOW))
    target = tmp_path / "golden.csv"
    result = write_archive(
        source.batches(q),
        source.schema("contract.golden"),
        target,
        CsvDialect(delimiter=";", header=True, null="", quoting="minimal"),
        "none",
        None,
    )
    data = target.read_bytes()
    assert data == GOLDEN_CSV, "\n" + data.decode("utf-8", "replace")
    assert result.rows == 6


def test_schema_has_the_logical_arrow_types(source):
    schema = source.schema("contract.golden")
    assert schema.names == [n for n, _ in COLUMNS]
    for name, t in EXPECTED_TYPES.items():
        assert schema.field(name).type == t, name
    assert pa.types.is_string(schema.field("txt").type) or pa.types.is_large_string(schema.field("txt").type)
    assert pa.types.is_date(source.schema("contract.dated").field("part_day").type)


def test_batches_have_the_schema_types(source):
    schema = source.schema("contract.golden")
    q = window_query(source.dialect, "contract.golden", "partition_date", *WINDOW)
    batches = list(source.batches(q))
    assert sum(b.num_rows for b in batches) == 6
    for b in batches:
        assert b.schema.names == schema.names
        assert b.schema.types == schema.types


def test_values_round_trip(source):
    q = ordered(source, window_query(source.dialect, "contract.golden", "partition_date", *WINDOW))
    rows = {r["id"]: r for r in rows_of(source, q)}
    import decimal

    assert rows[1]["amount"] == decimal.Decimal("0.0000")
    assert rows[9223372036854775807]["wide"] == decimal.Decimal("12345678901234567890.0123456789")
    assert rows[9223372036854775807]["ts"] == dt.datetime(2024, 2, 29, 23, 59, 59, 999999)
    assert rows[9223372036854775807]["txt"] == 'semi;colon "quoted" line1\nline2'
    assert rows[-1]["txt"] == "" and rows[4]["txt"] is None
    assert rows[-1]["flag"] is None and rows[8]["flag"] is False
    assert rows[5]["day"] == dt.date(2024, 1, 31)
    assert rows[5]["ratio"] == 1e300


def test_string_partition_window_is_inclusive(source):
    q = window_query(source.dialect, "contract.golden", "partition_date", "2024-01-15", "2024-01-31")
    assert sorted(r["id"] for r in rows_of(source, q)) == [-1, 4, 5, 9223372036854775807]


def test_date_partition_window(source):
    q = window_query(source.dialect, "contract.dated", "part_day", dt.date(2024, 6, 1), dt.date(2024, 6, 30))
    assert sorted(r["id"] for r in rows_of(source, q)) == [2, 3, 4]
    assert source.count(q) == 3


def test_count_matches_rows(source):
    q = window_query(source.dialect, "contract.golden", "partition_date", *WINDOW)
    assert source.count(q) == 6
    empty = window_query(source.dialect, "contract.golden", "partition_date", "2030-01-01", "2030-12-31")
    assert source.count(empty) == 0
    assert list(source.batches(empty)) == [] or all(b.num_rows == 0 for b in source.batches(empty))


def test_many_batches_when_batch_rows_is_small(engine):
    src = engine.make_source(**({} if engine.name == "duckdb" else {"fetch_size": 2}))
    try:
        q = window_query(src.dialect, "contract.golden", "partition_date", *WINDOW)
        batches = list(src.batches(q, 2))
        assert sum(b.num_rows for b in batches) == 6
        assert len(batches) >= 3
    finally:
        src.close()


def test_bound_values_are_not_sql(source):
    sneaky = "2024-01-01' OR '1'='1"
    q = window_query(source.dialect, "contract.golden", "partition_date", sneaky, sneaky)
    assert rows_of(source, q) == []
    backslash = "2024-01-01\\' OR 1=1 --"
    q = window_query(source.dialect, "contract.golden", "partition_date", backslash, backslash)
    assert rows_of(source, q) == []


def test_identifiers_are_validated_and_quoted(source):
    with pytest.raises(ValueError):
        source.dialect.ident("x; DROP TABLE y")
    with pytest.raises(ValueError):
        source.dialect.table("a.b.c")
    assert "golden" in source.dialect.table("contract.golden")


def test_unknown_table_is_a_terminal_source_error(source):
    with pytest.raises(SourceError) as info:
        source.schema("contract.no_such_table")
    assert not info.value.transient
    assert "no_such_table" in info.value.line()
    # the source still works afterwards
    assert source.count(window_query(source.dialect, "contract.golden", "partition_date", *WINDOW)) == 6


def test_unknown_column_is_a_terminal_source_error(source):
    q = window_query(source.dialect, "contract.golden", "no_such_column", *WINDOW)
    with pytest.raises(SourceError) as info:
        list(source.batches(q))
    assert not info.value.transient
    assert "no_such_column" in info.value.line()


def test_close_is_idempotent_and_source_reopens(engine):
    src = engine.make_source()
    q = window_query(src.dialect, "contract.golden", "partition_date", *WINDOW)
    assert src.count(q) == 6
    src.close()
    src.close()
    assert src.count(q) == 6
    src.close()


def test_abandoned_iteration_leaves_the_source_usable(engine):
    src = engine.make_source(**({} if engine.name == "duckdb" else {"fetch_size": 1}))
    try:
        q = window_query(src.dialect, "contract.golden", "partition_date", *WINDOW)
        it = src.batches(q, 1)
        next(it)
        it.close()
        assert src.count(q) == 6
    finally:
        src.close()


SERVERS = [pytest.param("hs2", marks=pytest.mark.slow), "postgres"]  # engines with a server to lose


def _calls(src: Source, table: str) -> dict[str, Callable[[], object]]:
    """Every reading method of the contract, on ``table``."""
    q = window_query(src.dialect, table, "partition_date", *WINDOW)
    return {
        "schema": lambda: src.schema(table),
        "batches": lambda: list(src.batches(q)),
        "count": lambda: src.count(q),
    }


@pytest.mark.parametrize("engine", SERVERS, indirect=True)
def test_unreachable_server_is_transient(engine):
    src = engine.unreachable()
    try:
        for method, call in _calls(src, "contract.golden").items():
            with pytest.raises(TransientSourceError) as info:
                call()
            assert info.value.transient, method
    finally:
        src.close()


def test_driver_error_on_every_method_is_a_source_error(source):
    """The engine refuses the statement (unknown table): a terminal SourceError from every
    method, never the driver's own exception; the source stays usable."""
    for method, call in _calls(source, "contract.no_such_table").items():
        with pytest.raises(SourceError) as info:
            call()
        assert not info.value.transient, method
        assert "no_such_table" in info.value.line(), method
    assert source.count(window_query(source.dialect, "contract.golden", "partition_date", *WINDOW)) == 6


def _in_child_as_nobody(fn: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Run ``fn`` in a forked child as ``nobody`` (root would bypass permission bits)."""
    import json
    import os
    import pwd

    pw = pwd.getpwnam("nobody")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
            os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
            os.write(w, json.dumps(fn()).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the unprivileged child failed"
    return json.loads(data)


def _outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except SourceError as exc:
        return f"SourceError: {exc.line()}"
    except Exception as exc:  # reported, not raised: the test shows every method's outcome
        return f"ESCAPED {type(exc).__module__}.{type(exc).__name__}: {exc}"
    return "ok"


@pytest.mark.parametrize("engine", ["duckdb", "postgres"], indirect=True)
def test_permission_denied_on_every_method_is_a_source_error(engine, request):
    """DuckDB: the database file cannot be reached by this user (``nobody`` in a forked
    child); PostgreSQL: a role without any privilege on the schema. Every method raises a
    terminal SourceError saying so (PostgreSQL's catalog answers ``schema`` for anyone, so
    there it may succeed). Spark's Thrift server has no authorization to refuse with."""
    if engine.name == "duckdb":
        src = engine.make_source()
        try:
            outcomes = _in_child_as_nobody(
                lambda: {k: _outcome(c) for k, c in _calls(src, "contract.golden").items()}
            )
        finally:
            src.close()
    else:
        import sqlalchemy as sa

        pg = request.getfixturevalue("postgres")
        engine.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'contract_noperm') "
            "THEN CREATE ROLE contract_noperm LOGIN; END IF; END $$"
        )
        engine.execute("REVOKE ALL ON SCHEMA contract FROM PUBLIC")
        url = sa.engine.make_url(pg.url).set(username="contract_noperm").render_as_string(hide_password=False)
        src = open_source("pg", SQLAlchemySource.model_validate({"type": "sqlalchemy", "url": url}))
        try:
            outcomes = {k: _outcome(c) for k, c in _calls(src, "contract.golden").items()}
        finally:
            src.close()
        assert outcomes["schema"] == "ok" or outcomes["schema"].startswith("SourceError:"), outcomes
        del outcomes["schema"]
    for method, outcome in outcomes.items():
        assert outcome.startswith("SourceError:") and "permission denied" in outcome.lower(), (
            method,
            outcome,
        )


@pytest.mark.parametrize("engine", SERVERS, indirect=True)  # DuckDB renames duplicates itself
def test_duplicate_result_column_names_are_an_error(engine):
    src = engine.make_source()
    try:
        ident = src.dialect.ident
        q = Query(f"SELECT {ident('id')}, {ident('id')} FROM {src.dialect.table('contract.golden')}", None)
        with pytest.raises(SourceError) as info:
            list(src.batches(q))
        assert "duplicate" in info.value.line() and "id" in info.value.line()
    finally:
        src.close()


@pytest.mark.parametrize("engine", [pytest.param("hs2", marks=pytest.mark.slow)], indirect=True)
def test_hs2_row_protocol_fallback_gives_the_same_bytes(engine, tmp_path):
    """Servers without the columnar protocol (HS2 < v6) go through impyla's fetchmany."""
    src = engine.make_source(fetch_size=4)
    src.columnar = False
    try:
        q = ordered(src, window_query(src.dialect, "contract.golden", "partition_date", *WINDOW))
        target = tmp_path / "golden.csv"
        write_archive(src.batches(q, 4), src.schema("contract.golden"), target, CsvDialect(), "none", None)
        assert target.read_bytes() == GOLDEN_CSV
    finally:
        src.close()


@pytest.mark.parametrize(
    "column, declared, detected",
    [("n", "date", "int"), ("partition_date", "int", "string"), ("day", "string", "date")],
)
def test_declared_partition_type_that_does_not_fit_names_both(source, column, declared, detected):
    """partition_type = "date" on an INT column (etc.) is one error naming partition_type and
    the column's detected type, for every engine: the check reads the source's own schema."""
    from tableship.backup.plan import Plan
    from tableship.backup.query import build_query
    from tableship.config.models import JobConfig
    from tableship.core.errors import ConfigError
    from tableship.core.window import Window

    job = JobConfig(
        name="j",
        source="s",
        destination="d",
        table="contract.golden",
        partition_column=column,
        partition_type=declared,
    )
    plan = Plan(
        job, dt.date(2024, 2, 1), Window(dt.date(2024, 1, 1), dt.date(2024, 1, 31)), "f.csv.gz", "", Path("x")
    )
    with pytest.raises(ConfigError) as exc:
        build_query(source, plan)
    line = exc.value.line()
    assert f'jobs.j.partition_type = "{declared}"' in line and f'detected as "{detected}"' in line, line
    assert f'set partition_type = "{detected}"' in line, line
