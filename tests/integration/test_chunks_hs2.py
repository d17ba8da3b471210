"""Chunked windows against the test HiveServer2 (Spark's Thrift server), through the CLI.
Kept few and small (the server is slow): a chunked window with ``parallel = 2`` holds
exactly the table's rows; with ``layout = "chunk"`` a re-run with nothing changed queries
no chunk, and one changed row in one month (Spark has no UPDATE on these tables: the
day's partition is overwritten with one value changed) re-exports only that month — the
fingerprint is Spark's ``hash`` of every column and its ``isnull`` flag, summed per chunk."""

from __future__ import annotations

import re

import pytest
from tests.integration.sourcejobs import Site, archive_rows, normalized, rendered

pytestmark = pytest.mark.slow

SELECT = """
SELECT id,
  CAST(id / 8 - 20 AS DECIMAL(18,4)) AS amount,
  CASE id % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'semi;colon' WHEN 3 THEN 'line1\\nline2'
       ELSE 'ünïcödé' END AS note,
  CAST(DATE_ADD(DATE'2024-01-01', CAST(id % 91 AS INT)) AS STRING) AS partition_date
FROM range(1200)
"""


@pytest.fixture(scope="module")
def server(hs2):
    hs2.execute_many(
        "CREATE DATABASE IF NOT EXISTS ctest",
        "DROP TABLE IF EXISTS ctest.traffic",
        "CREATE TABLE ctest.traffic (id BIGINT, amount DECIMAL(18,4), note STRING, partition_date STRING) "
        "USING parquet PARTITIONED BY (partition_date)",
        f"INSERT INTO ctest.traffic {SELECT}",
    )
    return hs2


def site_for(tmp_path, hs2, **job) -> Site:
    src = {"type": "hive", "host": hs2.host, "port": hs2.port, "auth": "nosasl", "timeout": 60}
    site = Site(tmp_path / "site", src, jobs={"t": {"table": "ctest.traffic", **job}})
    site.defaults = {"remote_dir": "t"}
    return site


def queried(result) -> list[str]:
    return re.findall(r"chunk (\S+): querying", result.stderr)


def test_chunked_window_parallel(tmp_path, server):
    site = site_for(tmp_path, server, chunk="month", parallel=2)
    r = site.cli("run", "t", "--from", "2024-01-01", "--to", "2024-03-31")
    assert r.rc == 0, str(r)
    [archive] = site.archives()
    _, rows = archive_rows(archive)
    want = server.execute(
        "SELECT * FROM ctest.traffic WHERE partition_date BETWEEN '2024-01-01' AND '2024-03-31'"
    )
    assert len(rows) == len(want) == 1200
    assert normalized(rows, set()) == normalized([[rendered(v) for v in row] for row in want], set())
    assert [c["start"] for c in site.manifest(archive)["chunks"]] == [
        "2024-01-01",
        "2024-02-01",
        "2024-03-01",
    ]


def test_layout_chunk_refresh(tmp_path, server):
    site = site_for(tmp_path, server, chunk="month", layout="chunk", file_name="t_{chunk_start:%m%Y}.csv.gz")
    args = ("run", "t", "--from", "2024-01-01", "--to", "2024-03-31")
    r = site.cli(*args)
    assert r.rc == 0 and sorted(queried(r)) == ["2024-01", "2024-02", "2024-03"], str(r)
    r = site.cli(*args)
    assert r.rc == 0 and queried(r) == [] and "3 unchanged" in r.stdout, str(r)
    server.execute_many(  # (Spark cannot overwrite a partition it reads from: via a copy)
        "DROP TABLE IF EXISTS ctest.day_copy",
        "CREATE TABLE ctest.day_copy USING parquet AS SELECT id, amount, "
        "CASE WHEN id = (SELECT min(id) FROM ctest.traffic WHERE partition_date = '2024-02-10') "
        "THEN 'changed' ELSE note END AS note FROM ctest.traffic WHERE partition_date = '2024-02-10'",
        "INSERT OVERWRITE TABLE ctest.traffic PARTITION (partition_date = '2024-02-10') "
        "SELECT id, amount, note FROM ctest.day_copy",
    )
    r = site.cli(*args)
    assert r.rc == 0 and queried(r) == ["2024-02"] and "1 changed, 2 unchanged" in r.stdout, str(r)
