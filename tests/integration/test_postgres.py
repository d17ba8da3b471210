"""SQLAlchemy source through the CLI, against a real PostgreSQL (psycopg 3).

Tables in schema ``itest``: ``traffic`` partitioned (by convention) on a string
``partition_date``, ``traffic_by_day`` on a DATE column, both with every type (plus
REAL and TIMESTAMPTZ), NULLs and awkward strings; ``empty_t`` with no rows. Failure
tests: unknown role and unknown database (the server refuses the login: terminal),
server down (retried, then failed), unknown table, ``on_empty``, ``expect_columns`` and
``count_check`` mismatches.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest
from tests.integration.sourcejobs import (
    DataCheckTests,
    Site,
    archive_rows,
    assert_clean_error,
    normalized,
    rendered,
)

COLUMNS = [
    "id",
    "cell",
    "amount",
    "wide",
    "ratio",
    "score",
    "roaming",
    "event_day",
    "event_ts",
    "event_tz",
    "note",
    "partition_date",
]
FLOATS = {COLUMNS.index("ratio"), COLUMNS.index("score")}

SELECT = r"""
SELECT id::bigint,
  (id % 1000)::int AS cell,
  (id / 8.0 - 20)::numeric(18,4) AS amount,
  ((id * 104729)::text || '.' || lpad(((id * 7919) % 10000000000)::text, 10, '0'))::numeric(38,10) AS wide,
  CASE WHEN id % 7 = 0 THEN NULL ELSE id / 3.0 END::double precision AS ratio,
  CASE WHEN id % 9 = 0 THEN NULL ELSE id / 10.0 END::real AS score,
  CASE WHEN id % 5 = 0 THEN NULL ELSE id % 2 = 0 END AS roaming,
  DATE '2024-01-01' + (id % 90)::int AS event_day,
  CASE WHEN id % 11 = 0 THEN NULL
       ELSE TIMESTAMP '2024-01-01 00:00:00' + make_interval(secs => id * 1.234567) END AS event_ts,
  TIMESTAMPTZ '2024-01-01 00:00:00+02' + make_interval(secs => id * 0.5) AS event_tz,
  CASE id % 6 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'semi;colon' WHEN 3 THEN 'say "hi"'
       WHEN 4 THEN E'line1\nline2' ELSE 'ünïcödé ✓ 日本' END AS note,
  to_char(DATE '2024-01-01' + (id % 90)::int, 'YYYY-MM-DD') AS partition_date
FROM generate_series(0, 899) AS id
"""


@pytest.fixture(scope="module")
def server(postgres):
    postgres.psql(
        "SET client_min_messages = warning;"
        "DROP SCHEMA IF EXISTS itest CASCADE; CREATE SCHEMA itest;"
        f"CREATE TABLE itest.traffic AS {SELECT};"
        "CREATE TABLE itest.traffic_by_day AS SELECT * FROM itest.traffic;"
        "CREATE TABLE itest.empty_t AS SELECT * FROM itest.traffic WHERE false;"
    )
    return postgres


def site_for(tmp_path, pg, url: str | None = None, **source) -> Site:
    src = {
        "type": "sqlalchemy",
        "url": url or pg.url,
        "timeout": 10,
        "retries": {"attempts": 3, "initial_delay": 0.2, "max_delay": 0.5},
        **source,
    }
    return Site(tmp_path / "site", src, jobs={"traffic": {"table": "itest.traffic"}})


def expected(pg, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(pg.dsn) as conn:
        rows = conn.execute(sql).fetchall()
    out = []
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, dt.datetime) and v.tzinfo is not None:
                v = v.astimezone(dt.UTC).replace(tzinfo=None)
            cells.append(rendered(v))
        out.append(cells)
    return normalized(out, FLOATS)


def test_string_partition_export_matches_the_table(tmp_path, server):
    site = site_for(tmp_path, server)
    result = site.run("traffic", "2024-01-01", "2024-01-31")
    assert result.rc == 0, str(result)
    [archive] = site.archives()
    header, rows = archive_rows(archive)
    assert header == COLUMNS
    want = expected(
        server, "SELECT * FROM itest.traffic WHERE partition_date BETWEEN '2024-01-01' AND '2024-01-31'"
    )
    assert len(rows) == len(want) == 310
    assert normalized(rows, FLOATS) == want
    types = {c["name"]: c["type"] for c in site.manifest(archive)["columns"]}
    assert types["amount"] == "DECIMAL(18,4)" and types["wide"] == "DECIMAL(38,10)"
    assert types["score"] == "FLOAT" and types["ratio"] == "DOUBLE"
    assert (
        types["event_ts"] == "TIMESTAMP"
        and types["event_tz"] == "TIMESTAMPTZ"
        and types["event_day"] == "DATE"
    )
    # a REAL renders as its shortest float32 text, a TIMESTAMPTZ in UTC without offset
    by_id = {r[0]: r for r in rows}
    assert by_id["1"][COLUMNS.index("score")] == "0.1"
    assert by_id["1"][COLUMNS.index("event_tz")] == "2023-12-31 22:00:00.500000"
    assert by_id["1"][COLUMNS.index("event_ts")] == "2024-01-01 00:00:01.234567"


def test_date_partition_export(tmp_path, server):
    site = site_for(tmp_path, server)
    site.jobs = {"byday": {"table": "itest.traffic_by_day", "partition_column": "event_day"}}
    result = site.run("byday", "2024-02-01", "2024-02-29")
    assert result.rc == 0, str(result)
    [archive] = site.archives()
    header, rows = archive_rows(archive)
    want = expected(
        server, "SELECT * FROM itest.traffic_by_day WHERE event_day BETWEEN '2024-02-01' AND '2024-02-29'"
    )
    assert len(rows) == len(want) == 290
    assert normalized(rows, FLOATS) == want


@pytest.mark.parametrize(
    "what, make_url, needle",
    [
        (
            "unknown role",
            lambda pg: f"postgresql+psycopg://nobody:s3cret-Pa55@{pg.host}:{pg.port}/warehouse",
            "nobody",
        ),
        (
            "unknown database",
            lambda pg: f"postgresql+psycopg://postgres:s3cret-Pa55@{pg.host}:{pg.port}/nodb",
            "nodb",
        ),
    ],
)
def test_login_refused_is_terminal(tmp_path, server, what, make_url, needle):
    site = site_for(tmp_path, server, url=make_url(server))
    result = site.run("traffic", "2024-01-01", "2024-01-31")
    assert_clean_error(result, 1, needle)
    assert "s3cret-Pa55" not in result.stderr + result.stdout
    assert "retrying" not in result.stderr
    assert site.archives() == []


def test_server_down_is_retried_then_fails(tmp_path, server):
    from tests.servers import free_port

    url = f"postgresql+psycopg://postgres:s3cret-Pa55@127.0.0.1:{free_port()}/warehouse"
    site = site_for(tmp_path, server, url=url)
    result = site.run("traffic", "2024-01-01", "2024-01-31")
    assert_clean_error(result, 1, "Connection refused")
    assert "attempt 1 of 3" in result.stderr and "attempt 2 of 3" in result.stderr
    assert "s3cret-Pa55" not in result.stderr + result.stdout
    assert site.archives() == []


class TestDataChecks(DataCheckTests):
    columns = COLUMNS

    def site(self, tmp_path, server):
        return site_for(tmp_path, server)


def test_count_check(tmp_path, server):
    # a view with one more row per millisecond: COUNT(*), run after the export, sees more rows
    server.psql(
        "CREATE OR REPLACE VIEW itest.growing AS SELECT g AS id, '2024-01-05'::text AS partition_date "
        "FROM generate_series(1, (extract(epoch FROM statement_timestamp()) * 1000)::bigint "
        f"- {int(dt.datetime.now().timestamp() * 1000) - 2000}) AS g"
    )
    site = site_for(tmp_path, server)
    site.jobs = {
        "growing": {"table": "itest.growing", "count_check": True},
        "traffic": {"table": "itest.traffic", "count_check": True},
    }
    result = site.run("growing", "2024-01-01", "2024-01-31")
    assert_clean_error(result, 1, "count check failed")
    assert site.archives() == []
    assert site.run("traffic", "2024-01-01", "2024-01-31").rc == 0


def test_missing_driver_names_what_to_install(tmp_path, server, monkeypatch):
    # Whether or not pg8000 is installed here, the CLI must not find it: a package of that
    # name first on PYTHONPATH fails its import the way a missing package does.
    shim = tmp_path / "no-pg8000" / "pg8000"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'pg8000\'", name="pg8000")\n'
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(shim.parent), os.environ.get("PYTHONPATH")]))
    )
    url = f"postgresql+pg8000://postgres@{server.host}:{server.port}/warehouse"
    site = site_for(tmp_path, server, url=url)
    result = site.run("traffic", "2024-01-01", "2024-01-31")
    line = assert_clean_error(result, 1, "pg8000")  # a job failure: other jobs still run
    assert "pip install" in line
