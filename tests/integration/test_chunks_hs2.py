"""Chunked windows against the test HiveServer2 (Spark's Thrift server), through the CLI.
Kept few and small (the server is slow): a chunked window with ``parallel = 2`` holds
exactly the table's rows; with ``layout = "chunk"`` a re-run with nothing changed queries
no chunk, and one changed row in one month (Spark has no UPDATE on these tables: the
day's partition is overwritten with one value changed) re-exports only that month — the
fingerprint is Spark's ``hash`` of every column and its ``isnull`` flag, summed per chunk.

The chunk queries are counted where they arrive: the Thrift server logs every statement it
is given (``SparkExecuteStatementOperation: Submitting query '…'``, impyla substitutes the
bound values client-side, so the chunk's bounds are in the logged text); a chunk query is
the one that selects the table's rows ``WHERE partition_date >= '<first day>' AND …``
(the fingerprint query names the table ``tableship_t``, the count query wraps it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from tests.e2e.helpers import wait_for
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


def site_for(tmp_path, hs2, table: str = "ctest.traffic", **job) -> Site:
    src = {"type": "hive", "host": hs2.host, "port": hs2.port, "auth": "nosasl", "timeout": 60}
    site = Site(tmp_path / "site", src, jobs={"t": {"table": table, **job}})
    site.defaults = {"remote_dir": "t"}
    return site


def log_size(hs2) -> int:
    return len(hs2.log_path.read_text(errors="replace"))


def chunk_queries(hs2, table: str, since: int) -> list[str]:
    """The month (``YYYY-MM``) of every chunk query on ``table`` the server logged after
    offset ``since``, in the order it received them."""
    db, name = table.split(".")
    text = hs2.log_path.read_text(errors="replace")[since:]
    return re.findall(
        rf"Submitting query 'SELECT [^\n]*? FROM `{db}`\.`{name}` WHERE `partition_date` >= "
        rf"'(\d{{4}}-\d{{2}})-\d{{2}}' AND `partition_date` <= '[\d-]+'' with ",
        text,
    )


def test_kill_after_a_chunk_queries_only_the_others(tmp_path, server):
    """``kill -9`` once chunk 0 of 3 is durable: the re-run sends the server only the
    queries of the chunks not staged yet."""
    site = site_for(tmp_path, server, chunk="month")
    site.write()
    holds = tmp_path / "holds"
    holds.mkdir()
    env = dict(os.environ, TABLESHIP_TEST_HOLD="chunk-0", TABLESHIP_TEST_HOLD_DIR=str(holds))
    argv = [sys.executable, "-m", "tableship", "--config", str(site.config), "run", "t"]
    argv += ["--from", "2024-01-01", "--to", "2024-03-31"]
    mark = log_size(server)
    proc = subprocess.Popen(
        argv, cwd=site.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: (holds / "chunk-0").exists() or proc.poll() is not None, 600, what="chunk 0 staged")
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(60)
    assert chunk_queries(server, "ctest.traffic", mark)[0] == "2024-01"
    mark = log_size(server)
    r = site.run("t", "2024-01-01", "2024-03-31")
    assert r.rc == 0, str(r)
    assert chunk_queries(server, "ctest.traffic", mark) == ["2024-02", "2024-03"]
    [archive] = site.archives()
    _, rows = archive_rows(archive)
    assert len(rows) == 1200
    assert [c["seq"] for c in site.manifest(archive)["chunks"]] == [0, 1, 2]


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
    """``layout = "chunk"``, a rolling window whose last month is the current one (its days
    still arriving): nothing changed → no chunk query; one row of a closed month changed →
    that month; a new day in the current month → the current month; a deleted remote
    chunk archive → that chunk."""
    server.execute_many(  # its own table: the days up to 2024-03-30 (March is "current")
        "DROP TABLE IF EXISTS ctest.rolling",
        "CREATE TABLE ctest.rolling USING parquet PARTITIONED BY (partition_date) AS "
        "SELECT * FROM ctest.traffic WHERE partition_date < '2024-03-31'",
    )
    site = site_for(
        tmp_path,
        server,
        "ctest.rolling",
        chunk="month",
        layout="chunk",
        file_name="t_{chunk_start:%m%Y}.csv.gz",
    )
    args = ("2024-01-01", "2024-03-31")

    def run() -> tuple[object, list[str]]:
        mark = log_size(server)
        r = site.run("t", *args)
        assert r.rc == 0, str(r)
        return r, chunk_queries(server, "ctest.rolling", mark)

    r, queried = run()
    assert sorted(queried) == ["2024-01", "2024-02", "2024-03"], str(r)
    files = {p.name: p.stat().st_mtime_ns for p in (site.backup / "t").iterdir()}
    r, queried = run()
    assert queried == [] and "3 unchanged" in r.stdout, str(r)
    assert {p.name: p.stat().st_mtime_ns for p in (site.backup / "t").iterdir()} == files
    server.execute_many(  # (Spark cannot overwrite a partition it reads from: via a copy)
        "DROP TABLE IF EXISTS ctest.day_copy",
        "CREATE TABLE ctest.day_copy USING parquet AS SELECT id, amount, "
        "CASE WHEN id = (SELECT min(id) FROM ctest.rolling WHERE partition_date = '2024-02-10') "
        "THEN 'changed' ELSE note END AS note FROM ctest.rolling WHERE partition_date = '2024-02-10'",
        "INSERT OVERWRITE TABLE ctest.rolling PARTITION (partition_date = '2024-02-10') "
        "SELECT id, amount, note FROM ctest.day_copy",
    )
    r, queried = run()
    assert queried == ["2024-02"] and "1 changed, 2 unchanged" in r.stdout, str(r)
    # a new day in the current month: the current month only
    server.execute(
        "INSERT INTO ctest.rolling SELECT * FROM ctest.traffic WHERE partition_date = '2024-03-31'"
    )
    r, queried = run()
    assert queried == ["2024-03"] and "1 changed, 2 unchanged" in r.stdout, str(r)
    [march] = [p for p in site.archives() if p.name == "t_032024.csv.gz"]
    assert site.manifest(march)["rows"] == len(
        server.execute("SELECT id FROM ctest.traffic WHERE partition_date >= '2024-03-01'")
    )
    # a deleted remote chunk archive: exported again
    (site.backup / "t" / "t_012024.csv.gz").unlink()
    r, queried = run()
    assert queried == ["2024-01"] and "1 exported, 0 changed, 2 unchanged" in r.stdout, str(r)
