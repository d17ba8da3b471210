"""``tableship restore JOB --from A --to B`` on data shapes and configs the every-type
warehouse of test_archives.py does not have, through the CLI into DuckDB: a table named
``Order`` with reserved-word, mixed-case and spaced column names, string (``%Y%m%d``) and
integer (yyyymmdd) partition columns, the non-default CSV dialects (null text, no header,
tab, ``quoting = "none"``, the impala-shell preset), a value of many short lines longer than
DuckDB's default 2 MB ``max_line_size``; and the ``--load``/``--out`` mistakes that must be
refused before anything is downloaded or written outside ``--out``."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest
from tests.e2e.helpers import to_toml
from tests.e2e.test_archives import one_error_line, tableship

# awkward names and values: NULL vs '', the delimiters, quotes, CR LF, NaN/±inf/-0.0, BLOBs
ORDER = r"""
CREATE SCHEMA IF NOT EXISTS app;
CREATE OR REPLACE TABLE app."Order" AS
SELECT i::BIGINT AS "Id",
  CASE i % 6 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'a;b|c,d"e' || chr(9) || 'f'
             WHEN 3 THEN 'cr' || chr(13) || chr(10) || 'lf' WHEN 4 THEN '\N' ELSE 'x' END AS "select",
  CASE WHEN i % 4 = 0 THEN NULL ELSE 'sp ' || i END AS "my col",
  CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 1234567.0123456789)::DECIMAL(38,10) END AS "Order",
  TIMESTAMPTZ '2025-01-01 00:00:00+05' + INTERVAL (i * 3637) SECOND + INTERVAL (i * 17) MICROSECOND AS "Tz",
  TIME '00:00:00' + INTERVAL (i * 97) SECOND + INTERVAL (i * 13) MICROSECOND AS t,
  CASE i % 7 WHEN 0 THEN 'nan'::DOUBLE WHEN 1 THEN 'inf'::DOUBLE WHEN 2 THEN '-inf'::DOUBLE
             WHEN 3 THEN -0.0::DOUBLE WHEN 4 THEN NULL ELSE i / 3.0 END AS dbl,
  CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN ''::BLOB WHEN 2 THEN '\x00\xFF\x0A;"'::BLOB
             ELSE 'abc'::BLOB END AS bin,
  DATE '2025-01-01' + (i % 90)::INT AS partition_date,
  strftime(DATE '2025-01-01' + (i % 90)::INT, '%Y%m%d') AS pday,
  strftime(DATE '2025-01-01' + (i % 90)::INT, '%Y%m%d')::INTEGER AS iday
FROM range(0, 900) t(i);
CREATE OR REPLACE TABLE app.clean AS
SELECT i::BIGINT AS id, CASE WHEN i % 3 = 0 THEN NULL ELSE 'v' || i END AS v,
  (i * 1.5)::DECIMAL(38,10) AS amt, DATE '2025-01-01' + (i % 90)::INT AS partition_date
FROM range(0, 900) t(i);
CREATE OR REPLACE TABLE app.ts AS
SELECT i::BIGINT AS id, TIMESTAMP '2025-01-01 00:13:00' + INTERVAL (i * 7) HOUR AS ts,
  TIMESTAMPTZ '2025-01-01 00:13:00+00' + INTERVAL (i * 7) HOUR AS tstz
FROM range(0, 200) t(i);
CREATE OR REPLACE TABLE app.big AS
SELECT i::BIGINT AS id,
  CASE WHEN i = 3 THEN repeat('y;"' || chr(10), 800000) ELSE 'short' END AS txt,
  DATE '2025-01-01' + i::INT AS partition_date
FROM range(0, 59) t(i);
"""
MONTHS = [("2025-01-01", "2025-01-31"), ("2025-02-01", "2025-02-28")]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute(ORDER)
    con.close()
    return path


def site(tmp: Path, warehouse: Path, **job) -> Path:
    """Job ``j`` (table ``app.Order`` unless given) backed up for January and February."""
    os.symlink(warehouse, tmp / "warehouse.duckdb")
    (tmp / "backup").mkdir()
    cfg = tmp / "tableship.toml"
    doc = {
        "settings": {"state_dir": "state"},
        "sources": {"wh": {"type": "duckdb", "path": "warehouse.duckdb"}},
        "destinations": {"backup": {"type": "local", "path": "backup"}},
        "defaults": {"source": "wh", "destination": "backup", "window": {"unit": "month", "count": 1}},
        "jobs": {"j": {"table": "app.Order"} | job},
    }
    cfg.write_text(to_toml(doc))
    for start, end in MONTHS:
        proc = tableship(cfg, "run", "j", "--from", start, "--to", end)
        assert proc.returncode == 0, proc.stderr
    return cfg


def assert_equal(warehouse: Path, db: Path, source: str, target: str, where: str) -> None:
    """Same column names and types, and EXCEPT ALL both ways empty (NaN equals NaN there)."""
    con = duckdb.connect(str(db))
    try:
        con.execute(f"ATTACH '{warehouse}' AS src (READ_ONLY)")
        src = f"(SELECT * FROM src.{source} WHERE {where})"
        assert con.execute(f"DESCRIBE {target}").fetchall() == con.execute(f"DESCRIBE {src}").fetchall()
        n = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
        assert n > 0 and con.execute(f"SELECT count(*) FROM {target}").fetchone()[0] == n
        assert con.execute(f"SELECT count(*) FROM ({src} EXCEPT ALL SELECT * FROM {target})").fetchone() == (
            0,
        )
        assert con.execute(f"SELECT count(*) FROM (SELECT * FROM {target} EXCEPT ALL {src})").fetchone() == (
            0,
        )
    finally:
        con.close()


# (job settings, source table): every dialect the config allows, each with the partition
# column kinds; quoting = "none" only on clean data (documented: it cannot hold delimiters)
SHAPES = {
    "string %Y%m%d partition": (
        {"partition_column": "pday", "partition_type": "string", "partition_format": "%Y%m%d"},
        'app."Order"',
    ),
    "int yyyymmdd partition": ({"partition_column": "iday"}, 'app."Order"'),
    "null text, no header, tab": (
        {
            "format": {"null": "\\N", "header": False, "delimiter": "\t"},
            "compression": {"codec": "zstd"},
            "file_name": "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.zst",
        },
        'app."Order"',
    ),
    "pipe, null word": ({"format": {"delimiter": "|", "null": "NULL"}}, 'app."Order"'),
    "impala-shell preset": ({"format": {"preset": "impala-shell"}}, 'app."Order"'),
    "quoting none": (
        {
            "table": "app.clean",
            "format": {"quoting": "none", "null": "\\N"},
            "compression": {"codec": "none"},
            "file_name": "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv",
        },
        "app.clean",
    ),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_filtered_range_of_each_shape_equals_the_source(tmp_path, warehouse, shape):
    job, source = SHAPES[shape]
    cfg = site(tmp_path, warehouse, **job)
    db = tmp_path / "r.duckdb"
    proc = tableship(
        cfg, "restore", "j", "--from", "2025-01-20", "--to", "2025-02-10", "--load", f"{db}:bk.Order"
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK, 2 archive(s)" in proc.stdout, proc.stdout
    assert_equal(warehouse, db, source, 'bk."Order"', "partition_date BETWEEN '2025-01-20' AND '2025-02-10'")


@pytest.mark.parametrize("column", ["ts", "tstz"])
def test_a_timestamp_partition_column_keeps_the_last_day_after_midnight(tmp_path, warehouse, column):
    # the range's bounds are days; its last day's rows after 00:00 belong to it (as in the
    # backup's window query): loaded, and replaced (not doubled) by --replace
    cfg = site(tmp_path, warehouse, table="app.ts", partition_column=column)
    db = tmp_path / "r.duckdb"
    where = f"{column} >= '2025-01-20 00:00:00+00' AND {column} < '2025-02-11 00:00:00+00'"
    for extra in ([], ["--replace"]):
        argv = ["restore", "j", "--from", "2025-01-20", "--to", "2025-02-10", "--load", f"{db}:t", *extra]
        proc = tableship(cfg, *argv)
        assert proc.returncode == 0, proc.stderr
        assert_equal(warehouse, db, "app.ts", "t", where)
        con = duckdb.connect(str(db))
        assert con.execute("SELECT count(*) FROM t").fetchone() == (75,)  # nothing outside, no doubles
        con.close()


def test_a_value_of_many_short_lines_over_2_mb_is_restored(tmp_path, warehouse):
    # 3.2 MB in one cell, but its physical lines are 4 bytes: DuckDB's limit is per record
    cfg = site(tmp_path, warehouse, table="app.big")
    db = tmp_path / "r.duckdb"
    proc = tableship(cfg, "restore", "j", "--from", "2025-01", "--load", f"{db}:t")
    assert proc.returncode == 0, proc.stderr
    assert_equal(warehouse, db, "app.big", "t", "partition_date < '2025-02-01'")
    proc = tableship(cfg, "restore", "j", "--from", "2025-01-02", "--to", "2025-01-05", "--load", f"{db}:cut")
    assert proc.returncode == 0, proc.stderr  # filtered: read into a temporary table first
    assert_equal(warehouse, db, "app.big", "cut", "partition_date BETWEEN '2025-01-02' AND '2025-01-05'")
    proc = tableship(cfg, "restore", "j", "--window", "2025-01-01..2025-01-31", "--load", f"{db}:w")
    assert proc.returncode == 0, proc.stderr
    assert_equal(warehouse, db, "app.big", "w", "partition_date < '2025-02-01'")


@pytest.mark.parametrize(
    "target, needle",
    [
        ("mysql+nosuchdriver://u:Hunter2PW@127.0.0.1:1/db#t", "no dialect 'mysql+nosuchdriver'"),
        ("postgres://u:Hunter2PW@127.0.0.1:1/db#t", "no dialect 'postgres'"),
        ("oracle://u:Hunter2PW@127.0.0.1:1/db#t", "driver for 'oracle' is not installed"),
        ("lake:db.t", "'lake' is neither a configured source (wh) nor an existing DuckDB file"),
        ("", "--load is empty"),
    ],
)
def test_a_wrong_load_target_is_refused_before_any_download(tmp_path, warehouse, target, needle):
    cfg = site(tmp_path, warehouse, table="app.clean")
    proc = tableship(cfg, "restore", "j", "--from", "2025-01", "--load", target, cwd=tmp_path)
    one_error_line(proc, 2, needle)
    assert "downloading" not in proc.stderr and "Hunter2PW" not in proc.stderr + proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "backup",
        "state",
        "tableship.toml",
        "warehouse.duckdb",
    ]


def test_out_does_not_write_through_a_symlink_planted_in_the_folder(tmp_path, warehouse):
    cfg = site(tmp_path, warehouse, table="app.clean")
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    # the temporary name the restore used to copy the CSV into (with --load, the CSV is kept)
    os.symlink(outside / "victim", out / ".clean_20250101_20250131.csv.tableship-restore.part")
    db = tmp_path / "r.duckdb"
    proc = tableship(cfg, "restore", "j", "--from", "2025-01", "--out", str(out), "--load", f"{db}:t")
    assert proc.returncode == 0, proc.stderr
    assert (outside / "victim").read_text() == "keep me"
    final = out / "clean_20250101_20250131.csv"
    assert not final.is_symlink() and final.read_text().startswith("id;v;amt;partition_date\n")
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert not [p for p in out.iterdir() if p.name.endswith(".part") and not p.is_symlink()]
