"""Back up months of a partitioned Spark table over HiveServer2 through the CLI, then
``restore --from/--to --load`` a month range into a NEW Spark table over HiveServer2 (the
engine's own CSV reader from ``load_staging``, ``INSERT OVERWRITE`` of the partitions) and
into DuckDB: ``EXCEPT ALL`` both ways against the source is empty. Then ``--replace`` of
one month touches only that month's partitions. The same range staged on a real HDFS
through WebHDFS (``load_staging_webhdfs``, tests/servers/webhdfs.py). Few tests: the
server is slow."""

from __future__ import annotations

import duckdb
import pytest
from tests.integration.sourcejobs import Site, assert_clean_error
from tests.integration.test_hs2 import DDL, SELECT

pytestmark = pytest.mark.slow

RANGE = "partition_date BETWEEN '2024-02-01' AND '2024-03-31'"


@pytest.fixture(scope="module")
def server(hs2):
    hs2.execute_many(
        "CREATE DATABASE IF NOT EXISTS rtest",
        "DROP TABLE IF EXISTS rtest.traffic",
        "DROP TABLE IF EXISTS rtest.traffic_bkp",
        f"CREATE TABLE rtest.traffic ({DDL}, partition_date STRING) USING parquet "
        "PARTITIONED BY (partition_date)",
        f"INSERT INTO rtest.traffic {SELECT}",
    )
    return hs2


def count(hs2, sql: str) -> int:
    return int(hs2.execute(sql)[0][0])


def hive_source(hs2, **more) -> dict:
    """The test HiveServer2 as a configured ``hive`` source, with ``more`` settings."""
    return {"type": "hive", "host": hs2.host, "port": hs2.port, "auth": "nosasl", "timeout": 120, **more}


def assert_range_equals_source(hs2, back: str) -> None:
    """``EXCEPT ALL`` both ways between the source's range and the rows of query ``back``
    (or of table ``back``) is empty."""
    if not back.startswith("SELECT"):
        back = f"SELECT * FROM {back}"
    src_rows = f"SELECT * FROM rtest.traffic WHERE {RANGE}"
    for a, b in ((src_rows, back), (back, src_rows)):
        assert count(hs2, f"SELECT count(*) FROM ({a} EXCEPT ALL {b}) d") == 0


def test_month_range_into_a_new_spark_table_and_duckdb(tmp_path, server):
    staging = tmp_path / "load_staging"
    staging.mkdir()
    src = hive_source(server, load_staging=str(staging))
    site = Site(tmp_path / "site", src, jobs={"traffic": {"table": "rtest.traffic"}})
    for start, end in [("2024-02-01", "2024-02-29"), ("2024-03-01", "2024-03-31")]:
        result = site.run("traffic", start, end)
        assert result.rc == 0, str(result)

    result = site.cli(
        "restore", "traffic", "--from", "2024-02", "--to", "2024-03", "--load", "src:rtest.traffic_bkp"
    )
    assert result.rc == 0, str(result)
    assert "OK, 2 archive(s), 590 rows" in result.stdout
    assert_range_equals_source(server, "rtest.traffic_bkp")
    assert count(server, "SELECT count(*) FROM rtest.traffic_bkp") == 590
    # NULL vs '' and the multi-line, ';' and quote-holding strings survived the engine's CSV reader
    for cond in (
        "note IS NULL",
        "note = ''",
        "note = 'semi;colon'",
        "note = 'say \"hi\"'",
        "note LIKE 'line1%line2'",
    ):
        assert (
            count(server, f"SELECT count(*) FROM rtest.traffic_bkp WHERE {cond}")
            == count(server, f"SELECT count(*) FROM rtest.traffic WHERE {RANGE} AND {cond}")
            > 0
        ), cond
    parts = [r[0] for r in server.execute("SHOW PARTITIONS rtest.traffic_bkp")]
    assert len(parts) == 59 and parts[0] == "partition_date=2024-02-01"
    assert not any(staging.iterdir())  # the staged CSVs are removed

    # --replace of March only: a changed March row and an extra January partition
    server.execute(
        "INSERT INTO rtest.traffic_bkp SELECT id, cell, amount, wide, ratio, roaming, event_day, event_ts, "
        "'changed', partition_date FROM rtest.traffic WHERE partition_date IN ('2024-01-15', '2024-03-05')"
    )
    assert_clean_error(
        site.cli("restore", "traffic", "--from", "2024-03", "--load", "src:rtest.traffic_bkp"), 2
    )
    result = site.cli(
        "restore", "traffic", "--from", "2024-03", "--load", "src:rtest.traffic_bkp", "--replace"
    )
    assert result.rc == 0, str(result)
    assert count(server, "SELECT count(*) FROM rtest.traffic_bkp WHERE note = 'changed'") == 10  # January's
    assert count(server, "SELECT count(*) FROM rtest.traffic_bkp WHERE partition_date = '2024-01-15'") == 10
    assert_range_equals_source(server, f"SELECT * FROM rtest.traffic_bkp WHERE {RANGE}")

    # the same archives into DuckDB (the HS2 archives' types: DECIMAL(38,10), TIMESTAMP, BOOLEAN)
    db = tmp_path / "r.duckdb"
    result = site.cli("restore", "traffic", "--from", "2024-02", "--to", "2024-03", "--load", f"{db}:t")
    assert result.rc == 0, str(result)
    con = duckdb.connect(str(db))
    got = sorted(con.execute("SELECT id, note, partition_date FROM t").fetchall())
    con.close()
    want = sorted(
        tuple(r) for r in server.execute(f"SELECT id, note, partition_date FROM rtest.traffic WHERE {RANGE}")
    )
    assert got == want and len(got) == 590


def test_chunk_layout_range_into_a_new_spark_table(tmp_path, server):
    staging = tmp_path / "load_staging"
    staging.mkdir()
    src = {"type": "hive", "host": server.host, "port": server.port, "auth": "nosasl", "timeout": 120}
    src["load_staging"] = str(staging)
    job = {"table": "rtest.traffic", "chunk": "month", "layout": "chunk"}
    job["file_name"] = "{table}_{chunk_start:%Y%m}.csv.gz"
    site = Site(tmp_path / "site", src, jobs={"traffic": job})
    result = site.run("traffic", "2024-02-01", "2024-03-31")
    assert result.rc == 0, str(result)
    server.execute("DROP TABLE IF EXISTS rtest.traffic_chunks")
    result = site.cli(
        "restore", "traffic", "--from", "2024-02", "--to", "2024-03", "--load", "src:rtest.traffic_chunks"
    )
    assert result.rc == 0, str(result)
    assert "OK, 2 archive(s), 590 rows" in result.stdout
    assert_range_equals_source(server, "rtest.traffic_chunks")


def test_month_range_staged_on_hdfs_through_webhdfs(tmp_path, server, webhdfs):
    """``load_staging_webhdfs``: the CSVs go to HDFS over WebHDFS, Spark reads them from the
    NameNode (``load_staging_uri = hdfs://…``), the staged folders are deleted afterwards."""
    src = hive_source(
        server,
        load_staging_webhdfs=f"webhdfs://{webhdfs.host}:{webhdfs.http_port}/staging/restore",
        load_staging_user=webhdfs.user,
        load_staging_uri=f"{webhdfs.rpc}/staging/restore",
    )
    server.execute("DROP TABLE IF EXISTS rtest.traffic_hdfs")
    site = Site(tmp_path / "site", src, jobs={"traffic": {"table": "rtest.traffic"}})
    for start, end in [("2024-02-01", "2024-02-29"), ("2024-03-01", "2024-03-31")]:
        assert site.run("traffic", start, end).rc == 0
    result = site.cli(
        "restore", "traffic", "--from", "2024-02", "--to", "2024-03", "--load", "src:rtest.traffic_hdfs"
    )
    assert result.rc == 0, str(result)
    assert "OK, 2 archive(s), 590 rows" in result.stdout
    assert_range_equals_source(server, "rtest.traffic_hdfs")
    assert webhdfs.listdir("/staging/restore") == []  # each archive's folder was deleted after its load

    # a NameNode that does not answer: a clean temporary error (exit 1), the table untouched
    down = dict(src, load_staging_webhdfs="webhdfs://127.0.0.1:9/staging/restore")
    site2 = Site(tmp_path / "site2", down, jobs={"traffic": {"table": "rtest.traffic"}})
    assert site2.run("traffic", "2024-02-01", "2024-02-29").rc == 0
    result = site2.cli(
        "restore", "traffic", "--from", "2024-02", "--load", "src:rtest.traffic_hdfs", "--replace"
    )
    assert_clean_error(result, 1)
    assert "HDFS staging" in result.stderr, result.stderr
    assert count(server, "SELECT count(*) FROM rtest.traffic_hdfs") == 590
