"""The Loader contract (catalog/loaders/base.py), checked against every loader on a real engine:
``duckdb`` (a DuckDB file), ``sqlite`` (SQLAlchemy, batched executemany), ``postgres``
(SQLAlchemy + psycopg, COPY FROM STDIN) and ``hs2`` (Spark over HiveServer2; marked slow).

One small archive CSV with the awkward values (NULL next to '', ';', quotes, a line
break, decimals, microsecond timestamps, booleans) over two months: created from the
manifest's columns, loaded whole and cut to a span, loaded twice without doubling, a
wrong count leaves the table as it was, an existing table with other columns is refused.
"""

from __future__ import annotations

import datetime as dt
import gzip
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tableship.archive.csvrender import CsvDialect
from tableship.catalog.loaders.base import Loader, LoadError, LoadSpec, Span
from tableship.catalog.loaders.duckdb import DuckDBLoader
from tableship.catalog.loaders.hs2 import HS2Loader, metadata_statement
from tableship.catalog.loaders.sqlalchemy import SQLAlchemyLoader
from tableship.catalog.loadorder import Cancelled, load_in_order
from tableship.config.models import HS2Source

COLUMNS = [
    ("id", "BIGINT"),
    ("txt", "VARCHAR"),
    ("amount", "DECIMAL(18,4)"),
    ("ts", "TIMESTAMP"),
    ("flag", "BOOLEAN"),
    ("partition_date", "DATE"),
]
CSV = (
    "id;txt;amount;ts;flag;partition_date\n"
    '1;"";1.5000;2024-01-01 00:00:01.123456;true;2024-01-01\n'
    "2;;-2.0001;;false;2024-01-02\n"
    '3;"a;b ""q""\nline2";0.0000;2024-01-03 23:59:59.999999;;2024-01-03\n'
    "4;plain;;2024-02-01 00:00:00;true;2024-02-01\n"
)
TXT = {1: "", 2: None, 3: 'a;b "q"\nline2', 4: "plain"}
JAN = Span(dt.date(2024, 1, 1), dt.date(2024, 1, 31), dt.date(2024, 1, 1), dt.date(2024, 1, 31))
FEB = Span(dt.date(2024, 2, 1), dt.date(2024, 2, 29), dt.date(2024, 2, 1), dt.date(2024, 2, 29))


@dataclass
class Engine:
    make: Callable[[str], Loader]  # table name → a new loader on it
    txt: Callable[[str], dict]  # table name → {id: txt}
    setup: Callable[[str, str], None]  # (table, DDL of other columns) → an existing table


def duckdb_engine(tmp: Path) -> Engine:
    db = tmp / "t.duckdb"

    def txt(table: str) -> dict:
        con = duckdb.connect(str(db))
        try:
            return dict(con.execute(f"SELECT id, txt FROM {table}").fetchall())
        finally:
            con.close()

    def setup(table: str, ddl: str) -> None:
        con = duckdb.connect(str(db))
        con.execute(f"CREATE TABLE {table} ({ddl})")
        con.close()

    return Engine(lambda t: DuckDBLoader(db, None, t), txt, setup)


def sqlite_engine(tmp: Path) -> Engine:
    db = tmp / "t.sqlite"

    def txt(table: str) -> dict:
        con = sqlite3.connect(db)
        try:
            return dict(con.execute(f"SELECT id, txt FROM {table}").fetchall())
        finally:
            con.close()

    def setup(table: str, ddl: str) -> None:
        con = sqlite3.connect(db)
        con.execute(f"CREATE TABLE {table} ({ddl})")
        con.commit()
        con.close()

    return Engine(lambda t: SQLAlchemyLoader(f"sqlite:///{db}", None, t), txt, setup)


def postgres_engine(pg, schema: str) -> Engine:
    import psycopg

    pg.psql(
        f"SET client_min_messages = warning; DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    )

    def txt(table: str) -> dict:
        with psycopg.connect(pg.dsn) as conn:
            return dict(conn.execute(f"SELECT id, txt FROM {schema}.{table}").fetchall())

    return Engine(
        lambda t: SQLAlchemyLoader(pg.url, schema, t),
        txt,
        lambda t, ddl: pg.psql(f"CREATE TABLE {schema}.{t} ({ddl})"),
    )


def hs2_engine(hs2, tmp: Path) -> Engine:
    staging = tmp / "staging"
    staging.mkdir()
    hs2.execute("CREATE DATABASE IF NOT EXISTS ltest")
    cfg = HS2Source(
        type="hive", host=hs2.host, port=hs2.port, auth="nosasl", timeout=120, load_staging=staging
    )

    def txt(table: str) -> dict:
        return {int(i): t for i, t in hs2.execute(f"SELECT id, txt FROM ltest.{table}")}

    def setup(table: str, ddl: str) -> None:
        hs2.execute(f"DROP TABLE IF EXISTS ltest.{table}")
        hs2.execute(f"CREATE TABLE ltest.{table} ({ddl}) USING parquet")

    return Engine(lambda t: HS2Loader("hs", cfg, f"ltest.{t}"), txt, setup)


ENGINES = ["duckdb", "sqlite", "postgres", pytest.param("hs2", marks=pytest.mark.slow)]


@pytest.fixture(params=ENGINES)
def engine(request, tmp_path) -> Engine:
    if request.param == "duckdb":
        return duckdb_engine(tmp_path)
    if request.param == "sqlite":
        return sqlite_engine(tmp_path)
    if request.param == "postgres":
        return postgres_engine(request.getfixturevalue("postgres"), "ltest")
    hs2 = request.getfixturevalue("hs2")
    for t in ("t_new", "t_other"):
        hs2.execute(f"DROP TABLE IF EXISTS ltest.{t}")
    return hs2_engine(hs2, tmp_path)


@pytest.fixture
def csv_file(tmp_path) -> Path:
    p = tmp_path / "a.csv"
    p.write_bytes(CSV.encode())
    return p


def spec(csv: Path, spans: list[Span], whole: bool, expected: int = 4) -> LoadSpec:
    return LoadSpec(csv, COLUMNS, CsvDialect(), expected, "partition_date", spans, whole, 200, "a.csv.gz")


@pytest.fixture
def opened(engine) -> Iterator[Callable[[str], Loader]]:
    made: list[Loader] = []

    def make(table: str) -> Loader:
        loader = engine.make(table)
        made.append(loader)
        return loader

    yield make
    for loader in made:
        loader.close()


def test_create_load_reload_cut_and_refuse(engine, opened, csv_file):
    loader = opened("t_new")
    assert isinstance(loader, Loader)
    assert loader.check(COLUMNS, "partition_date") is False  # no table yet, and none made by asking
    assert loader.check(COLUMNS, "partition_date") is False
    loader.create(COLUMNS, "partition_date")
    assert loader.rows_in([JAN, FEB]) == 0
    assert loader.load(spec(csv_file, [JAN, FEB], whole=True)) == 4
    assert engine.txt("t_new") == TXT  # NULL vs '', ';', quotes and the line break exactly
    # the same archive again: its spans are replaced, no row doubled
    assert loader.load(spec(csv_file, [JAN, FEB], whole=True)) == 4
    assert loader.rows_in([JAN, FEB]) == 4 and loader.rows_in([FEB]) == 1
    # a wrong count: the table stays as it was
    with pytest.raises(LoadError, match="the manifest says 5"):
        loader.load(spec(csv_file, [JAN, FEB], whole=True, expected=5))
    assert engine.txt("t_new") == TXT
    # cut to January: February's row of the archive is filtered out, February's row in the table stays
    assert loader.load(spec(csv_file, [JAN], whole=False)) == 3
    assert loader.rows_in([JAN]) == 3 and loader.rows_in([FEB]) == 1
    loader.finish(created=True)
    # a second loader on the existing table: same schema, not created again
    again = opened("t_new")
    assert again.check(COLUMNS, "partition_date") is True


def from_archive(archive: Path, spans: list[Span], whole: bool, csv_bytes: int) -> LoadSpec:
    """The restore's spec: no decompressed CSV yet, the sha256-checked gzip archive."""
    s = spec(archive, spans, whole)
    s.csv, s.longest_line, s.archive, s.codec, s.csv_bytes = None, 0, archive, "gzip", csv_bytes
    return s


def test_the_compressed_archive_is_loaded_with_its_size_checked(engine, opened, tmp_path):
    """Loaders read the gzip archive (DuckDB itself, COPY streamed, the others decompress it
    first); a decompressed size other than the manifest's is refused before the commit
    (DuckDB decompressing inside read_csv counts no bytes: its row count still decides)."""
    archive = tmp_path / "a.csv.gz"
    archive.write_bytes(gzip.compress(CSV.encode()))
    loader = opened("t_new")
    loader.check(COLUMNS, "partition_date")
    loader.create(COLUMNS, "partition_date")
    assert loader.load(from_archive(archive, [JAN, FEB], True, len(CSV.encode()))) == 4
    assert engine.txt("t_new") == TXT
    assert loader.load(from_archive(archive, [JAN], False, len(CSV.encode()))) == 3
    if not isinstance(loader, DuckDBLoader):
        with pytest.raises(LoadError, match="decompresses to"):
            loader.load(from_archive(archive, [JAN, FEB], True, len(CSV.encode()) + 1))
        assert engine.txt("t_new") == TXT


def test_duckdb_reads_a_line_longer_than_its_default_limit_from_the_decompressed_archive(tmp_path):
    """read_csv on the compressed archive stops at 2 MB lines (the longest is not known before
    decompressing): the load is rolled back and redone from the decompressed CSV."""
    long = "x" * 3_000_000
    text = CSV.replace(";plain;", f";{long};")
    archive = tmp_path / "a.csv.gz"
    archive.write_bytes(gzip.compress(text.encode()))
    loader = DuckDBLoader(tmp_path / "t.duckdb", None, "t")
    try:
        loader.check(COLUMNS, "partition_date")
        loader.create(COLUMNS, "partition_date")
        s = from_archive(archive, [JAN, FEB], True, len(text.encode()))
        assert loader.load(s) == 4
        assert s.csv is not None and s.longest_line > 3_000_000  # decompressed, its longest line measured
    finally:
        loader.close()
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    assert con.execute("SELECT length(txt) FROM t WHERE id = 4").fetchone()[0] == 3_000_000
    con.close()


def test_an_existing_table_with_other_columns_is_refused(engine, opened):
    engine.setup("t_other", "id BIGINT, other_col BIGINT")
    with pytest.raises(LoadError, match="exists"):
        opened("t_other").check(COLUMNS, "partition_date")


def test_impala_metadata_statements():
    assert metadata_statement("db.t", created=True) == "INVALIDATE METADATA `db`.`t`"
    assert metadata_statement("db.t", created=False) == "REFRESH `db`.`t`"


def test_a_load_cancelled_at_its_commit_point_leaves_the_table_as_it_was(engine, opened, tmp_path, csv_file):
    loader = opened("t_new")
    loader.check(COLUMNS, "partition_date")
    loader.create(COLUMNS, "partition_date")
    assert loader.load(spec(csv_file, [JAN, FEB], whole=True)) == 4
    other = tmp_path / "other.csv"
    other.write_bytes(CSV.replace(";plain;", ";changed;").encode())
    s = spec(other, [JAN, FEB], whole=True)

    def refuse() -> None:
        raise Cancelled(0)

    s.before_commit = refuse
    with pytest.raises(Cancelled):
        loader.load(s)
    assert engine.txt("t_new") == TXT


def test_overlapping_loads_commit_in_range_order(engine, opened, tmp_path):
    """Two archives through ``load_in_order``: with a loader that loads two at once the second
    reaches its commit point first and still commits after the first one."""
    lines = CSV.splitlines(keepends=True)
    header, rows = lines[0], "".join(lines[1:])
    jan_rows, feb_rows = rows.rsplit("4;plain", 1)
    jan, feb = tmp_path / "jan.csv", tmp_path / "feb.csv"
    jan.write_text(header + jan_rows)
    feb.write_text(header + "4;plain" + feb_rows)
    loader = opened("t_new")
    loader.check(COLUMNS, "partition_date")
    loader.create(COLUMNS, "partition_date")
    overlap = loader.parallel_loads >= 2
    feb_waiting = threading.Event()
    events: list[str] = []

    class Gated:
        """The loader, with January held until February waits at its commit point."""

        parallel_loads = loader.parallel_loads

        def load(self, s: LoadSpec) -> int:
            if s.name == "jan" and overlap:
                assert feb_waiting.wait(60), "February never reached its commit point"
            if s.name == "feb":
                inner = s.before_commit

                def gate() -> None:
                    feb_waiting.set()
                    inner()

                s.before_commit = gate
            return loader.load(s)

    def make(path: Path) -> LoadSpec:
        s = spec(path, [JAN] if path == jan else [FEB], whole=True, expected=3 if path == jan else 1)
        s.name = path.stem
        return s

    load_in_order(
        Gated(),  # type: ignore[arg-type]  # only what load_in_order uses of a Loader
        [jan, feb],
        make,
        lambda p: events.append(f"start {p.stem}"),
        lambda p, n: events.append(f"committed {p.stem} {n}"),
    )
    assert [e for e in events if e.startswith("committed")] == ["committed jan 3", "committed feb 1"]
    if overlap:  # two at once: February started before January committed
        assert events.index("start feb") < events.index("committed jan 3")
    assert engine.txt("t_new") == TXT


def test_postgres_gives_every_parallel_load_its_own_connection(postgres):
    """``--parallel N`` is set after the loader (and its pool) exists: N loads at once must each
    get a connection at once, not wait for the pool's timeout."""
    loader = SQLAlchemyLoader(postgres.url, "ltest", "t_new")
    loader.parallel_loads = 7
    pool = loader.engine().pool
    pool._timeout = 1  # a capped pool would raise after 1 s instead of 30
    conns = [loader.engine().raw_connection() for _ in range(loader.parallel_loads + 1)]
    try:
        assert all(c.driver_connection is not None for c in conns)
    finally:
        for c in conns:
            c.close()
        loader.close()
