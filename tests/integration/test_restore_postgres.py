"""Back up months of a real PostgreSQL table through the CLI, then ``restore --from/--to --load``
a month range into (a) a PostgreSQL table (``COPY FROM STDIN``), (b) a DuckDB file and
(c) SQLite through SQLAlchemy (batched ``executemany``): the range comes back equal to the
source — ``EXCEPT ALL`` both ways inside PostgreSQL, value by value for the others —
with NULL vs '', NUMERIC(38,10), REAL, TIMESTAMPTZ, multi-line and ';'-holding strings."""

from __future__ import annotations

import datetime as dt
import sqlite3

import duckdb
import numpy as np
import pytest
from tests.integration.sourcejobs import Site, assert_clean_error
from tests.integration.test_postgres import SELECT

MONTHS = [("2024-01-01", "2024-01-31"), ("2024-02-01", "2024-02-29"), ("2024-03-01", "2024-03-31")]
RANGE = "partition_date BETWEEN '2024-02-01' AND '2024-03-31'"


@pytest.fixture(scope="module")
def server(postgres):
    postgres.psql(
        "SET client_min_messages = warning;"
        "DROP SCHEMA IF EXISTS rtest CASCADE; CREATE SCHEMA rtest;"
        f"CREATE TABLE rtest.traffic AS {SELECT};"
    )
    return postgres


@pytest.fixture
def site(tmp_path, server) -> Site:
    src = {"type": "sqlalchemy", "url": server.url, "timeout": 10}
    site = Site(tmp_path / "site", src, jobs={"traffic": {"table": "rtest.traffic"}})
    for start, end in MONTHS:
        result = site.run("traffic", start, end)
        assert result.rc == 0, str(result)
    return site


def pg_rows(pg, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(pg.dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return conn.execute(sql).fetchall()


SCORE = 5  # a REAL: psycopg gives its shortest text as a float, DuckDB its float32 value widened


def canon(rows) -> list[tuple]:
    """Comparable values: aware datetimes in UTC, REALs as float32, sorted."""
    out = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            if isinstance(v, dt.datetime) and v.tzinfo is not None:
                v = v.astimezone(dt.UTC).replace(tzinfo=None)
            if i == SCORE and v is not None:
                v = float(np.float32(v))
            cells.append(v)
        out.append(tuple(cells))
    return sorted(out, key=lambda r: tuple((v is None, str(v)) for v in r))


def test_month_range_into_postgres_equals_the_source(site, server):
    server.psql("DROP SCHEMA IF EXISTS back CASCADE")
    result = site.cli(
        "restore", "traffic", "--from", "2024-02", "--to", "2024-03", "--load", "src:back.traffic"
    )
    assert result.rc == 0, str(result)
    assert "OK, 2 archive(s), 590 rows" in result.stdout, result.stdout
    src = f"SELECT * FROM rtest.traffic WHERE {RANGE}"
    for a, b in ((src, "SELECT * FROM back.traffic"), ("SELECT * FROM back.traffic", src)):
        assert pg_rows(server, f"SELECT count(*) FROM ({a} EXCEPT ALL {b}) d") == [(0,)]
    assert pg_rows(server, "SELECT count(*) FROM back.traffic") == [(590,)]
    # the explicit cases: NULL vs '' and the awkward strings
    notes = dict(pg_rows(server, "SELECT coalesce(note, '<NULL>'), count(*) FROM back.traffic GROUP BY 1"))
    want = dict(
        pg_rows(
            server, f"SELECT coalesce(note, '<NULL>'), count(*) FROM rtest.traffic WHERE {RANGE} GROUP BY 1"
        )
    )
    assert notes == want and notes[""] > 0 and notes["<NULL>"] > 0 and notes["line1\nline2"] > 0
    types = dict(
        pg_rows(
            server,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'back' "
            "AND table_name = 'traffic'",
        )
    )
    assert types["amount"] == "numeric" and types["event_tz"] == "timestamp with time zone"
    assert types["score"] == "real" and types["ratio"] == "double precision"

    # --replace replaces only the range's rows: February changed, January added by hand stays
    server.psql("UPDATE back.traffic SET note = 'changed' WHERE partition_date = '2024-02-10'")
    server.psql("INSERT INTO back.traffic SELECT * FROM rtest.traffic WHERE partition_date = '2024-01-15'")
    refused = site.cli("restore", "traffic", "--from", "2024-02", "--load", "src:back.traffic")
    assert_clean_error(refused, 2, "already holds", "--replace")
    again = site.cli("restore", "traffic", "--from", "2024-02", "--load", "src:back.traffic", "--replace")
    assert again.rc == 0, str(again)
    assert pg_rows(server, "SELECT count(*) FROM back.traffic WHERE note = 'changed'") == [(0,)]
    assert pg_rows(server, "SELECT count(*) FROM back.traffic WHERE partition_date = '2024-01-15'") == [(10,)]
    back = f"SELECT * FROM back.traffic WHERE {RANGE}"
    for a, b in ((src, back), (back, src)):
        assert pg_rows(server, f"SELECT count(*) FROM ({a} EXCEPT ALL {b}) d") == [(0,)]


def test_month_range_into_duckdb_and_sqlite(site, server, tmp_path):
    want = canon(pg_rows(server, f"SELECT * FROM rtest.traffic WHERE {RANGE}"))
    db = tmp_path / "r.duckdb"
    result = site.cli("restore", "traffic", "--from", "2024-02", "--to", "2024-03", "--load", f"{db}:t")
    assert result.rc == 0, str(result)
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'")
    assert canon(con.execute("SELECT * FROM t").fetchall()) == want
    con.close()

    lite = tmp_path / "r.sqlite"
    result = site.cli(
        "restore", "traffic", "--from", "2024-02", "--to", "2024-03", "--load", f"sqlite:///{lite}#t"
    )
    assert result.rc == 0, str(result)
    con = sqlite3.connect(lite)
    got = con.execute("SELECT * FROM t").fetchall()
    con.close()
    assert len(got) == len(want) == 590
    # SQLite has no exact decimal or timestamp type: compare what it stores as is (ints, texts, NULLs)
    note, pdate = 10, 11
    assert sorted((r[0], r[note], r[pdate]) for r in got) == sorted((r[0], r[note], r[pdate]) for r in want)


def test_a_pg_load_with_a_wrong_count_is_rolled_back(site, server):
    # a manifest saying one row more than the archive holds: the archive verifies (sha256),
    # the COPY loads 310 rows, the count differs, the transaction rolls back
    import json

    server.psql("DROP SCHEMA IF EXISTS back2 CASCADE")
    [jan, *_] = site.archives()
    mpath = jan.with_name(jan.name + ".manifest.json")
    m = json.loads(mpath.read_text())
    m["rows"] += 1
    mpath.write_text(json.dumps(m))
    result = site.cli("restore", "traffic", "--from", "2024-01", "--load", "src:back2.traffic")
    assert_clean_error(result, 1, "the manifest says 311", "rolled back")
    assert pg_rows(server, "SELECT count(*) FROM back2.traffic") == [(0,)]


def test_chunk_layout_range_into_postgres_equals_the_source(tmp_path, server):
    src = {"type": "sqlalchemy", "url": server.url, "timeout": 10}
    job = {
        "table": "rtest.traffic",
        "chunk": "month",
        "layout": "chunk",
        "file_name": "{table}_{chunk_start:%Y%m}.csv.gz",
    }
    site = Site(tmp_path / "site", src, jobs={"traffic": job})
    result = site.run("traffic", "2024-01-01", "2024-03-31")  # one run, one archive per month
    assert result.rc == 0, str(result)
    assert len(site.archives()) == 3
    server.psql("DROP SCHEMA IF EXISTS backc CASCADE")
    result = site.cli(
        "restore", "traffic", "--from", "2024-02", "--to", "2024-03", "--load", "src:backc.traffic"
    )
    assert result.rc == 0, str(result)
    assert "OK, 2 archive(s), 590 rows" in result.stdout
    src_rows = f"SELECT * FROM rtest.traffic WHERE {RANGE}"
    for a, b in ((src_rows, "SELECT * FROM backc.traffic"), ("SELECT * FROM backc.traffic", src_rows)):
        assert pg_rows(server, f"SELECT count(*) FROM ({a} EXCEPT ALL {b}) d") == [(0,)]
