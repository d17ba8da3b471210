"""Impala/Hive source through the CLI, against a real HiveServer2 (Spark's Thrift server).

Tables in database ``itest``: ``traffic`` partitioned by a string ``partition_date`` and
``traffic_by_day`` partitioned by a DATE column, both with every type, NULLs and awkward
strings; ``empty_t`` with no rows. Failure tests: wrong auth mechanism, a session the
server refuses for its own reason, server down (retried, then failed), a server that
accepts but never answers (timeout), unknown table, ``on_empty``, ``expect_columns`` and
``count_check`` mismatches.
"""

from __future__ import annotations

import socket
import time

import pytest
from tests.integration.sourcejobs import (
    DataCheckTests,
    Site,
    archive_rows,
    assert_clean_error,
    normalized,
    parse_preset,
    rendered,
)

pytestmark = pytest.mark.slow

COLUMNS = [
    "id",
    "cell",
    "amount",
    "wide",
    "ratio",
    "roaming",
    "event_day",
    "event_ts",
    "note",
    "partition_date",
]
FLOATS = {COLUMNS.index("ratio")}

SELECT = """
SELECT id,
  CAST(id % 1000 AS INT) AS cell,
  CAST(id / 8 - 20 AS DECIMAL(18,4)) AS amount,
  CAST(CONCAT(CAST(id * 104729 AS STRING), '.', LPAD(CAST(id * 7919 % 10000000000 AS STRING), 10, '0'))
       AS DECIMAL(38,10)) AS wide,
  CASE WHEN id % 7 = 0 THEN NULL ELSE id / 3.0 END AS ratio,
  CASE WHEN id % 5 = 0 THEN NULL ELSE id % 2 = 0 END AS roaming,
  DATE_ADD(DATE'2024-01-01', CAST(id % 90 AS INT)) AS event_day,
  CASE WHEN id % 11 = 0 THEN NULL ELSE TIMESTAMP_MICROS(1704067200000000 + id * 1234567) END AS event_ts,
  CASE id % 6 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'semi;colon' WHEN 3 THEN 'say "hi"'
       WHEN 4 THEN 'line1\\nline2' ELSE 'ünïcödé ✓ 日本' END AS note,
  CAST(DATE_ADD(DATE'2024-01-01', CAST(id % 90 AS INT)) AS STRING) AS partition_date
FROM range(900)
"""
DDL = (
    "id BIGINT, cell INT, amount DECIMAL(18,4), wide DECIMAL(38,10), ratio DOUBLE, roaming BOOLEAN, "
    "event_day DATE, event_ts TIMESTAMP, note STRING"
)


@pytest.fixture(scope="module")
def server(hs2):
    hs2.execute_many(
        "CREATE DATABASE IF NOT EXISTS itest",
        "DROP TABLE IF EXISTS itest.traffic",
        "DROP TABLE IF EXISTS itest.traffic_by_day",
        "DROP TABLE IF EXISTS itest.empty_t",
        f"CREATE TABLE itest.traffic ({DDL}, partition_date STRING) USING parquet PARTITIONED BY "
        "(partition_date)",
        f"INSERT INTO itest.traffic {SELECT}",
        "CREATE TABLE itest.traffic_by_day (id BIGINT, cell INT, amount DECIMAL(18,4), wide DECIMAL(38,10), "
        "ratio DOUBLE, roaming BOOLEAN, event_ts TIMESTAMP, note STRING, partition_date STRING, "
        "event_day DATE) "
        "USING parquet PARTITIONED BY (event_day)",
        "INSERT INTO itest.traffic_by_day SELECT id, cell, amount, wide, ratio, roaming, event_ts, note, "
        f"partition_date, event_day FROM ({SELECT}) s",
        f"CREATE TABLE itest.empty_t ({DDL}, partition_date STRING) USING parquet",
    )
    return hs2


def site_for(tmp_path, hs2, **source) -> Site:
    src = {
        "type": "hive",
        "host": hs2.host,
        "port": hs2.port,
        "auth": "nosasl",
        "timeout": 30,
        "retries": {"attempts": 3, "initial_delay": 0.2, "max_delay": 0.5},
        **source,
    }
    return Site(tmp_path / "site", src, jobs={"traffic": {"table": "itest.traffic"}})


def expected(hs2, sql: str) -> list[tuple]:
    rows = hs2.execute(sql)
    return normalized([[rendered(v) for v in row] for row in rows], FLOATS)


def test_string_partition_export_matches_the_table(tmp_path, server):
    site = site_for(tmp_path, server, query_options={"spark.sql.shuffle.partitions": 2})
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
    manifest = site.manifest(archive)
    assert manifest["rows"] == 310
    types = {c["name"]: c["type"] for c in manifest["columns"]}
    assert types["amount"] == "DECIMAL(18,4)" and types["wide"] == "DECIMAL(38,10)"
    assert types["event_ts"] == "TIMESTAMP" and types["event_day"] == "DATE" and types["ratio"] == "DOUBLE"
    assert "`partition_date` >= '2024-01-01'" in manifest["query"] or "2024-01-01" in manifest["query"]
    assert "`itest`.`traffic`" in manifest["query_sql"]
    # awkward strings made it through intact
    notes = {r[COLUMNS.index("note")] for r in rows}
    assert {"semi;colon", 'say "hi"', "line1\nline2", "ünïcödé ✓ 日本", "", None} <= notes


def test_date_partition_export(tmp_path, server):
    site = site_for(tmp_path, server)
    site.jobs = {"byday": {"table": "itest.traffic_by_day", "partition_column": "event_day"}}
    result = site.run("byday", "2024-02-01", "2024-02-29")
    assert result.rc == 0, str(result)
    [archive] = site.archives()
    header, rows = archive_rows(archive)
    assert header[-1] == "event_day"
    want = expected(
        server,
        "SELECT * FROM itest.traffic_by_day WHERE event_day BETWEEN DATE'2024-02-01' AND DATE'2024-02-29'",
    )
    assert len(rows) == len(want) == 290
    assert normalized(rows, {header.index("ratio")}) == want


def test_impala_shell_preset(tmp_path, server):
    site = site_for(tmp_path, server)
    site.jobs = {
        "traffic": {
            "table": "itest.traffic",
            "format": {"preset": "impala-shell"},
            "compression": {"codec": "none"},
            "file_name": "{table}_{start:%Y%m%d}.csv",
        }
    }
    result = site.run("traffic", "2024-01-01", "2024-01-31")
    assert result.rc == 0, str(result)
    [archive] = site.archives()
    text = archive.read_text(encoding="utf-8")
    rows = parse_preset(archive)
    assert len(rows) == 310 and rows[0][0] != "id"  # no header
    by_id = {int(r[0]): r for r in rows}
    assert by_id[0][COLUMNS.index("note")] == "NULL" and by_id[0][COLUMNS.index("ratio")] == "NULL"
    assert by_id[3][COLUMNS.index("ratio")] == "1.0"  # Python str() of a double, like impala-shell
    assert by_id[2][COLUMNS.index("note")] == "semi;colon"
    assert '"semi;colon"' in text and '"say ""hi"""' in text  # quoted like csv.QUOTE_MINIMAL
    assert by_id[1][COLUMNS.index("event_ts")] == "2024-01-01 00:00:01.234567000"  # 9 fraction digits


def test_wrong_auth_mechanism_fails_at_once(tmp_path, server):
    site = site_for(tmp_path, server, auth="plain", user="svc_backup", password="s3cret-Pa55")
    result = site.run("traffic", "2024-01-01", "2024-01-31")
    line = assert_clean_error(result, 1, "handshake", "plain")
    assert "s3cret-Pa55" not in result.stderr + result.stdout
    # "at once": the first attempt fails on the handshake itself (no retry, no timeout)
    assert "retrying" not in result.stderr and "attempt 1 of" not in result.stderr
    assert "timed out" not in line
    assert site.archives() == []
    assert "auth" in line


def test_a_server_side_session_failure_quotes_the_server(tmp_path, server):
    """OpenSession refused for the server's own reason (here: it cannot create the session's
    resources folder) is not an auth problem: the line quotes the reason, the hint points at
    the server's log and configuration, and the job runs once the server is fixed."""
    site = site_for(tmp_path, server)
    with server.refusing_sessions():
        result = site.run("traffic", "2024-01-01", "2024-01-31")
    line = assert_clean_error(result, 1, "could not open a session: Couldn't create directory")
    assert str(server.resources_dir) in line
    assert "handshake" not in line and "check that auth" not in line
    assert "server's log and configuration" in line
    assert "retrying" not in result.stderr and "attempt 1 of" not in result.stderr  # terminal
    assert site.archives() == []
    assert site.run("traffic", "2024-01-01", "2024-01-31").rc == 0


def test_server_down_is_retried_then_fails(tmp_path, server):
    from tests.servers import free_port

    site = site_for(tmp_path, server, port=free_port())
    result = site.run("traffic", "2024-01-01", "2024-01-31")
    assert_clean_error(result, 1, "cannot connect")
    assert "attempt 1 of 3" in result.stderr and "attempt 2 of 3" in result.stderr
    assert site.archives() == []
    # the same job runs once the server is back (here: pointed at the live one)
    site.source["port"] = server.port
    assert site.run("traffic", "2024-01-01", "2024-01-31").rc == 0


def test_silent_server_times_out_transiently(tmp_path, server):
    """A server that accepts connections but never answers: timeout → transient → retried."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        site = site_for(
            tmp_path,
            server,
            port=listener.getsockname()[1],
            timeout=1,
            retries={"attempts": 2, "initial_delay": 0.1, "max_delay": 0.1},
        )
        result = site.run("traffic", "2024-01-01", "2024-01-31", timeout=120)
        assert_clean_error(result, 1, "timed out")
        assert "attempt 1 of 2" in result.stderr
    finally:
        listener.close()


class TestDataChecks(DataCheckTests):
    columns = COLUMNS

    def site(self, tmp_path, server):
        return site_for(tmp_path, server)


def test_count_check(tmp_path, server):
    # a view that grows by one row per millisecond: COUNT(*), run after the export, sees more rows
    t0 = int(time.time() * 1000) - 2000
    server.execute(
        "CREATE OR REPLACE VIEW itest.growing AS SELECT id, '2024-01-05' AS partition_date "
        f"FROM range(10000000) WHERE id < unix_millis(current_timestamp()) - {t0}"
    )
    site = site_for(tmp_path, server)
    site.jobs = {
        "growing": {"table": "itest.growing", "count_check": True},
        "traffic": {"table": "itest.traffic", "count_check": True},
    }
    result = site.run("growing", "2024-01-01", "2024-01-31")
    assert_clean_error(result, 1, "count check failed")
    assert site.archives() == []
    result = site.run("traffic", "2024-01-01", "2024-01-31")
    assert result.rc == 0, str(result)


def test_dry_run_shows_backtick_quoting_and_bound_values(tmp_path, server):
    site = site_for(tmp_path, server)
    result = site.run("traffic", "2024-01-01", "2024-01-31", "--dry-run")
    assert result.rc == 0, str(result)
    assert "`itest`.`traffic`" in result.stdout and "2024-01-31" in result.stdout


def test_sasl_plain_server(tmp_path, hs2_sasl):
    """A SASL server (hive.server2.authentication=NONE): auth = "plain" with user and password
    works; auth = "nosasl" is the wrong mechanism and fails at once."""
    hs2_sasl.execute_many(
        "CREATE DATABASE IF NOT EXISTS itest",
        "CREATE TABLE IF NOT EXISTS itest.small (id BIGINT, txt STRING, partition_date STRING) USING parquet",
        "INSERT OVERWRITE itest.small VALUES (1, 'a;b', '2024-01-02'), (2, NULL, '2024-01-03')",
    )
    site = Site(
        tmp_path / "sasl",
        {
            "type": "hive",
            "host": hs2_sasl.host,
            "port": hs2_sasl.port,
            "auth": "plain",
            "user": "svc_backup",
            "password": "s3cret-Pa55",
            "database": "itest",
            "retries": {"attempts": 3, "initial_delay": 0.2, "max_delay": 0.5},
        },
        jobs={"small": {"table": "small"}},
    )
    result = site.run("small", "2024-01-01", "2024-01-31")
    assert result.rc == 0, str(result)
    [archive] = site.archives()
    assert archive_rows(archive) == (
        ["id", "txt", "partition_date"],
        [["1", "a;b", "2024-01-02"], ["2", None, "2024-01-03"]],
    ) or sorted(archive_rows(archive)[1]) == [["1", "a;b", "2024-01-02"], ["2", None, "2024-01-03"]]
    site.source["auth"] = "nosasl"
    result = site.run("small", "2024-01-01", "2024-01-31")
    assert_clean_error(result, 1, "handshake", "nosasl")
    assert "retrying" not in result.stderr and "s3cret-Pa55" not in result.stderr + result.stdout
