"""``restore --from/--to --load`` into a NEW Spark table over HiveServer2 on shapes
test_restore_hs2.py does not have: archives of a DuckDB table with reserved-word and
mixed-case column names (``Id``, ``select``, ``Order``), NULL vs '', ``;``/quotes/CR LF,
DECIMAL(38,10), TIMESTAMPTZ, NaN/±inf, BLOB, partitioned by a string ``%Y%m%d`` column,
written with a null text and no header; a range cut out of two monthly archives comes
back equal value by value. One test: the server is slow."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import subprocess
import sys

import duckdb
import pytest
from tests.e2e.helpers import to_toml
from tests.integration.test_restore_hs2 import hive_source

pytestmark = pytest.mark.slow

TABLE = r"""
CREATE SCHEMA app;
CREATE TABLE app.shapes AS
SELECT i::BIGINT AS "Id",
  CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'a;b"c'
             WHEN 3 THEN 'cr' || chr(13) || chr(10) || 'lf' ELSE 'x' END AS "select",
  CASE WHEN i % 6 = 0 THEN NULL ELSE (i * 1234567.0123456789)::DECIMAL(38,10) END AS "Order",
  TIMESTAMPTZ '2025-01-01 00:00:00+05' + INTERVAL (i * 3637) SECOND + INTERVAL (i * 17) MICROSECOND AS tz,
  CASE i % 7 WHEN 0 THEN 'nan'::DOUBLE WHEN 1 THEN 'inf'::DOUBLE WHEN 2 THEN '-inf'::DOUBLE
             WHEN 3 THEN NULL ELSE i / 3.0 END AS dbl,
  CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN ''::BLOB WHEN 2 THEN '\x00\xFF\x0A;"'::BLOB
             ELSE 'abc'::BLOB END AS bin,
  strftime(DATE '2025-01-01' + (i % 59)::INT, '%Y%m%d') AS pday
FROM range(0, 236) t(i)
"""


def canon(row) -> tuple:
    out = []
    for v in row:
        if isinstance(v, dt.datetime) and v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        if isinstance(v, float):
            v = "nan" if math.isnan(v) else repr(v)
        if isinstance(v, decimal.Decimal):
            v = v.normalize()
        out.append(v)
    return tuple(out)


def lake_site(tmp_path, hs2, wh, jobs: dict, table: str):
    """A config backing ``wh`` up to a local folder and loading into ``rshape.<table>`` on
    the test Spark server (dropped first); returns a function running the CLI on it."""
    staging = tmp_path / "load_staging"
    staging.mkdir()
    (tmp_path / "backup").mkdir()
    hs2.execute_many("CREATE DATABASE IF NOT EXISTS rshape", f"DROP TABLE IF EXISTS rshape.{table}")
    doc = {
        "settings": {"state_dir": "state"},
        "sources": {
            "wh": {"type": "duckdb", "path": str(wh)},
            "lake": hive_source(hs2, load_staging=str(staging)),
        },
        "destinations": {"backup": {"type": "local", "path": "backup"}},
        "defaults": {"source": "wh", "destination": "backup", "window": {"unit": "month", "count": 1}},
        "jobs": jobs,
    }
    cfg = tmp_path / "tableship.toml"
    cfg.write_text(to_toml(doc))

    def cli(*args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "tableship", "--config", str(cfg), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=tmp_path)

    return cli


def test_odd_names_and_a_string_partition_into_a_new_spark_table(tmp_path, hs2):
    wh = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(wh))
    con.execute(TABLE)
    con.execute("SET TimeZone = 'UTC'")
    want = sorted(
        (
            canon(r)
            for r in con.execute(
                "SELECT * FROM app.shapes WHERE pday BETWEEN '20250120' AND '20250210'"
            ).fetchall()
        ),
        key=lambda r: r[0],
    )
    con.close()
    jobs = {
        "s": {
            "table": "app.shapes",
            "partition_column": "pday",
            "partition_type": "string",
            "partition_format": "%Y%m%d",
            "format": {"null": "\\N", "header": False},
        }
    }
    cli = lake_site(tmp_path, hs2, wh, jobs, "back")
    for start, end in (("2025-01-01", "2025-01-31"), ("2025-02-01", "2025-02-28")):
        proc = cli("run", "s", "--from", start, "--to", end)
        assert proc.returncode == 0, proc.stderr
    proc = cli("restore", "s", "--from", "2025-01-20", "--to", "2025-02-10", "--load", "lake:rshape.back")
    assert proc.returncode == 0, proc.stderr
    assert "OK, 2 archive(s)" in proc.stdout, proc.stdout
    rows = hs2.execute(
        "SELECT Id, `select`, CAST(`Order` AS STRING), CAST(tz AS STRING), CAST(dbl AS STRING), hex(bin), "
        "pday FROM rshape.back ORDER BY Id"
    )
    got = []
    for i, sel, order, tz, dbl, bin_, pday in rows:
        got.append(
            canon(
                (
                    int(i),
                    sel,
                    None if order is None else decimal.Decimal(order),
                    None if tz is None else dt.datetime.fromisoformat(tz),
                    None if dbl is None else float(dbl),
                    None if bin_ is None else bytes.fromhex(bin_),
                    pday,
                )
            )
        )
    assert got == want


def test_a_timestamp_partition_column_keeps_the_last_day_after_midnight(tmp_path, hs2):
    wh = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(wh))
    con.execute(
        "CREATE TABLE ts AS SELECT i::BIGINT AS id, "
        "TIMESTAMP '2025-01-01 00:13:00' + INTERVAL (i * 7) HOUR AS ts FROM range(0, 200) t(i)"
    )
    con.close()
    cli = lake_site(tmp_path, hs2, wh, {"t": {"table": "ts", "partition_column": "ts"}}, "back_ts")
    for start, end in (("2025-01-01", "2025-01-31"), ("2025-02-01", "2025-02-28")):
        assert cli("run", "t", "--from", start, "--to", end).returncode == 0
    for extra in ((), ("--replace",)):
        proc = cli(
            "restore",
            "t",
            "--from",
            "2025-01-20",
            "--to",
            "2025-02-10",
            "--load",
            "lake:rshape.back_ts",
            *extra,
        )
        assert proc.returncode == 0, proc.stderr
        # 2025-01-20 06:13 .. 2025-02-10 20:13: the last day's rows after midnight included, none doubled
        rows = hs2.execute("SELECT count(*), min(id), max(id) FROM rshape.back_ts")
        assert [tuple(int(v) for v in r) for r in rows or []] == [(75, 66, 140)]
