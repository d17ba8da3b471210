"""Chunked windows against a real PostgreSQL, through the CLI (issue 13).

The queries are counted where they arrive: the database ``chunks`` logs every statement
(``log_statement = all``) to the server's log, and a chunk query is recognised there by
its bound values (``DETAIL: parameters: $1 = '2024-02-01', $2 = '2024-02-29'``). The
fingerprint of ``refresh = "changed"`` is PostgreSQL's own ``md5`` of each row's text,
summed per chunk in one grouped query.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from tests.e2e.helpers import wait_for
from tests.integration.sourcejobs import Site, archive_rows, normalized

SELECT = r"""
SELECT id::bigint,
  (id / 8.0 - 20)::numeric(18,4) AS amount,
  CASE WHEN id % 7 = 0 THEN NULL ELSE id / 3.0 END::double precision AS ratio,
  CASE id % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'semi;colon' WHEN 3 THEN E'line1\nline2'
       ELSE 'ünïcödé' END AS note,
  to_char(DATE '2024-01-01' + (id % 91)::int, 'YYYY-MM-DD') AS partition_date
FROM generate_series(0, 2999) AS id
"""
MONTHS = {"2024-01-01": "012024", "2024-02-01": "022024", "2024-03-01": "032024"}


@pytest.fixture(scope="module")
def pg(postgres):
    postgres.psql("DROP DATABASE IF EXISTS chunks")
    postgres.psql("CREATE DATABASE chunks")
    postgres.psql("ALTER DATABASE chunks SET log_statement = 'all'")
    postgres.psql(
        f"SET client_min_messages = warning; CREATE SCHEMA ctest; CREATE TABLE ctest.traffic AS {SELECT};",
        dbname="chunks",
    )
    return postgres


def site_for(tmp_path, pg, table: str = "ctest.traffic", **job) -> Site:
    src = {"type": "sqlalchemy", "url": pg.url_for("chunks"), "timeout": 10}
    site = Site(tmp_path / "site", src, jobs={"t": {"table": table, **job}})
    site.defaults = {"remote_dir": "t", "compression": {"codec": "gzip", "level": 6}}
    return site


def chunk_queries(pg, since: int) -> list[str]:
    """The first day bound of every chunk query the server logged after offset ``since``."""
    text = pg.log_path.read_text(errors="replace")[since:]
    return re.findall(r"parameters: \$1 = '(\d{4}-\d{2}-01)', \$2 = '\d{4}-\d{2}-\d{2}'\s*$", text, re.M)


def log_size(pg) -> int:
    return len(pg.log_path.read_text(errors="replace"))


def test_chunked_window_equals_unchunked(tmp_path, pg):
    plain = site_for(tmp_path / "plain", pg)
    assert plain.run("t", "2024-01-01", "2024-03-31").rc == 0
    [archive] = plain.archives()
    _, want = archive_rows(archive)
    site = site_for(tmp_path / "chunked", pg, chunk="month", parallel=2)
    mark = log_size(pg)
    r = site.run("t", "2024-01-01", "2024-03-31")
    assert r.rc == 0, str(r)
    assert sorted(chunk_queries(pg, mark)) == sorted(MONTHS)
    [archive] = site.archives()
    _, rows = archive_rows(archive)
    assert len(rows) == 3000 and normalized(rows, {2}) == normalized(want, {2})
    assert sum(c["rows"] for c in site.manifest(archive)["chunks"]) == 3000


def test_layout_chunk_refresh(tmp_path, pg):
    """A rolling window whose last month (March) is the current one, its days still arriving."""
    pg.psql(
        "DROP TABLE IF EXISTS ctest.rolling; "
        "CREATE TABLE ctest.rolling AS SELECT * FROM ctest.traffic WHERE partition_date < '2024-03-31'",
        dbname="chunks",
    )
    site = site_for(
        tmp_path,
        pg,
        "ctest.rolling",
        chunk="month",
        layout="chunk",
        file_name="mnaas_{table}_{chunk_start:%m%Y}.csv.gz",
    )
    mark = log_size(pg)
    r = site.run("t", "2024-01-01", "2024-03-31")
    assert r.rc == 0, str(r)
    assert sorted(chunk_queries(pg, mark)) == sorted(MONTHS)
    assert "fingerprint" in site.manifest(site.archives()[0])
    # nothing changed: no chunk query, nothing uploaded
    files = {p.name: p.stat().st_mtime_ns for p in (site.backup / "t").iterdir()}
    mark = log_size(pg)
    r = site.run("t", "2024-01-01", "2024-03-31")
    assert r.rc == 0 and "chunks: 0 exported, 0 changed, 3 unchanged" in r.stdout, str(r)
    assert chunk_queries(pg, mark) == []
    assert {p.name: p.stat().st_mtime_ns for p in (site.backup / "t").iterdir()} == files
    # one row of February updated (same row count): February only
    pg.psql("UPDATE ctest.rolling SET note = 'changed' WHERE id = 40", dbname="chunks")
    mark = log_size(pg)
    r = site.run("t", "2024-01-01", "2024-03-31")
    assert r.rc == 0 and "chunks: 0 exported, 1 changed, 2 unchanged" in r.stdout, str(r)
    assert chunk_queries(pg, mark) == ["2024-02-01"]
    # a new day in the current month: the current month only
    pg.psql(
        "INSERT INTO ctest.rolling SELECT * FROM ctest.traffic WHERE partition_date = '2024-03-31'",
        dbname="chunks",
    )
    mark = log_size(pg)
    r = site.run("t", "2024-01-01", "2024-03-31")
    assert r.rc == 0 and "chunks: 0 exported, 1 changed, 2 unchanged" in r.stdout, str(r)
    assert chunk_queries(pg, mark) == ["2024-03-01"]
    march = site.manifest(site.backup / "t" / "mnaas_rolling_032024.csv.gz")
    assert march["rows"] == sum(1 for i in range(3000) if 60 <= i % 91)  # 2024-03-01..31
    # a deleted remote chunk archive: exported again
    (site.backup / "t" / "mnaas_rolling_012024.csv.gz").unlink()
    mark = log_size(pg)
    r = site.run("t", "2024-01-01", "2024-03-31")
    assert r.rc == 0, str(r)
    assert chunk_queries(pg, mark) == ["2024-01-01"]


def test_kill_after_a_chunk_queries_only_the_others(tmp_path, pg):
    site = site_for(tmp_path, pg, chunk="month")
    site.write()
    holds = tmp_path / "holds"
    holds.mkdir()
    env = dict(os.environ, TABLESHIP_TEST_HOLD="chunk-0", TABLESHIP_TEST_HOLD_DIR=str(holds))
    mark = log_size(pg)
    argv = [sys.executable, "-m", "tableship", "--config", str(site.config), "run", "t"]
    argv += ["--from", "2024-01-01", "--to", "2024-03-31"]
    proc = subprocess.Popen(
        argv, cwd=site.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: (holds / "chunk-0").exists() or proc.poll() is not None, what="chunk 0 staged")
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(60)
    assert "2024-01-01" in chunk_queries(pg, mark)
    mark = log_size(pg)
    r = site.run("t", "2024-01-01", "2024-03-31")
    assert r.rc == 0, str(r)
    assert sorted(chunk_queries(pg, mark)) == ["2024-02-01", "2024-03-01"]
    [archive] = site.archives()
    _, rows = archive_rows(archive)
    assert len(rows) == 3000
