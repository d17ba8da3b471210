"""End to end through the CLI: run → ls → verify → restore (--load / --to) → prune,
on real DuckDB files and a local destination; damaged archives; bad input.

``build_warehouse`` and ``compare_restored`` are reused by the SFTP round trip in
tests/integration/test_archives_sftp.py.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

WINDOW = "2026-01-01..2026-01-31"
ARCHIVE = "events/events_20260101_20260131.csv.gz"

# Every type the CSV contract covers, with the awkward values: NULL next to '', the text
# 'NULL', ';', quotes, CR/LF, leading/trailing spaces, non-ASCII, decimal edges, NaN and
# infinities, timestamps with and without fractions, time zones, empty and binary blobs.
SCHEMA = """
CREATE SCHEMA IF NOT EXISTS app;
CREATE TABLE app.events (
    id BIGINT, partition_date DATE, txt VARCHAR, amount DECIMAL(18,4), big DECIMAL(38,10), ratio DOUBLE,
    small REAL, ts TIMESTAMP, tstz TIMESTAMPTZ, flag BOOLEAN, i32 INTEGER, i16 SMALLINT, i8 TINYINT,
    u64 UBIGINT, payload BLOB, t TIME, d2 DATE
);
"""

SPECIAL_ROWS = r"""
INSERT INTO app.events VALUES
(1, DATE '2026-01-01', 'plain', 1.2345, 12345678901234567890.0123456789, 0.1, 1.5,
 TIMESTAMP '2026-01-01 10:11:12.123456', TIMESTAMPTZ '2026-01-01 10:11:12.5+02', true, 1, 2, 3,
 18446744073709551615, '\xDE\xAD\xBE\xEF'::BLOB, TIME '01:02:03.25', DATE '0001-01-01'),
(2, DATE '2026-01-02', '', -0.0001, 0, 'nan'::DOUBLE, 'inf'::REAL, TIMESTAMP '2026-01-02 00:00:00',
 NULL, false, NULL, NULL, NULL, 0, ''::BLOB, TIME '00:00:00', DATE '9999-12-31'),
(3, DATE '2026-01-03', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL),
(4, DATE '2026-01-04', 'a;b "quoted" ' || chr(10) || 'second line', 99999999999999.9999, -1, '-inf'::DOUBLE,
 -0.0, TIMESTAMP '1970-01-01 00:00:00.000001', TIMESTAMPTZ '2026-06-01 00:00:00+00', true, -2147483648,
 -32768, -128, 5, 'x;y'::BLOB, TIME '23:59:59.999999', DATE '2000-02-29'),
(5, DATE '2026-01-05', 'NULL', 0, 0.0000000001, 1e300, 3.4e38, TIMESTAMP '2026-01-31 23:59:59.999999',
 TIMESTAMPTZ '1999-12-31 23:59:59.123456-05', NULL, 2147483647, 32767, 127, 7, NULL, NULL, NULL),
(6, DATE '2026-01-06', 'ünïcödé ☃ 🚀 "', -99999999999999.9999, 99999999999999999999999999.9999999999,
 -0.0, 1e-7, TIMESTAMP '2026-01-06 12:00:00.5', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(7, DATE '2026-01-07', ' lead and trail ', 5, 5, 2.2250738585072014e-308, 5, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL),
(8, DATE '2026-01-08', chr(13) || chr(10), 5, 5, 5, 5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL),
(9, DATE '2026-01-09', '"', 5, 5, 5, 5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(10, DATE '2026-01-10', ';', 5, 5, 5, 5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(11, DATE '2026-01-11', '""', 5, 5, 5, 5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(12, DATE '2026-01-31', 'last day', 5, 5, 5, 5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(13, DATE '2025-12-31', 'before the window', 5, 5, 5, 5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL),
(14, DATE '2026-02-01', 'after the window', 5, 5, 5, 5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL);
"""

# Bulk rows over several months (the same awkward texts, spread around).
BULK_ROWS = r"""
INSERT INTO app.events
SELECT 1000 + i,
       DATE '2025-11-01' + (i % 120)::INTEGER,
       CASE i % 9 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'x;y' WHEN 3 THEN 'say "hi"'
                  WHEN 4 THEN 'multi' || chr(10) || 'line' WHEN 5 THEN 'NULL' ELSE 'row ' || i::VARCHAR END,
       ((i * 7919) % 100000000)::DECIMAL(18,4) / 10000,
       CASE WHEN i % 11 = 0 THEN NULL ELSE (i::DECIMAL(38,10) / 7) END,
       CASE WHEN i % 13 = 0 THEN NULL ELSE i / 3.0 END,
       (i / 7.0)::REAL,
       TIMESTAMP '2025-11-01 00:00:00' + to_microseconds(i * 1234567),
       CASE WHEN i % 5 = 0 THEN NULL
            ELSE TIMESTAMPTZ '2025-11-01 00:00:00+00' + to_microseconds(i * 7654321) END,
       CASE i % 3 WHEN 0 THEN NULL WHEN 1 THEN true ELSE false END,
       (i * 31) % 2147483647, (i % 30000)::SMALLINT, (i % 100)::TINYINT, i::UBIGINT * 1000003,
       CASE WHEN i % 4 = 0 THEN NULL ELSE encode('b' || i::VARCHAR) END,
       TIME '00:00:00' + to_microseconds((i * 999983) % 86400000000),
       DATE '2025-11-01' + (i % 1000)::INTEGER
FROM range(4000) t(i);
"""


def build_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    con.execute(SPECIAL_ROWS)
    con.execute(BULK_ROWS)
    con.close()


def write_config(tmp: Path, destination: str, extra_job: str = "") -> Path:
    cfg = tmp / "tableship.toml"
    cfg.write_text(f"""
[settings]
state_dir = "state"

[sources.wh]
type = "duckdb"
path = "warehouse.duckdb"

{destination}

[defaults]
window = {{ unit = "month", count = 1 }}

[jobs.events]
table = "app.events"
{extra_job}
""")
    return cfg


def local_destination(tmp: Path) -> str:
    (tmp / "backup").mkdir(exist_ok=True)
    return '[destinations.backup]\ntype = "local"\npath = "backup"'


def compare_restored(warehouse: Path, restored: Path, table: str, start: str, end: str) -> int:
    """Assert the restored table equals the source window value by value; return its row count."""
    con = duckdb.connect(str(restored))
    try:
        con.execute(f"ATTACH '{warehouse}' AS src (READ_ONLY)")
        src = f"(SELECT * FROM src.app.events WHERE partition_date BETWEEN DATE '{start}' AND DATE '{end}')"
        # same column names and types
        types = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall()
        src_types = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {src})").fetchall()
        assert types == src_types
        n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert n == con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
        # every value, NULLs included (set operations treat NULLs as equal, NaN equals NaN)
        assert con.execute(f"SELECT * FROM {src} EXCEPT ALL SELECT * FROM {table}").fetchall() == []
        assert con.execute(f"SELECT * FROM {table} EXCEPT ALL SELECT * FROM {src}").fetchall() == []
        # NULL vs '' explicitly, per column, per row
        cols = [c for c, _ in types]
        null_pattern = " || ".join(f"(CASE WHEN {c} IS NULL THEN 'N' ELSE 'v' END)" for c in cols)
        a = con.execute(f"SELECT id, {null_pattern} FROM {table} ORDER BY id").fetchall()
        b = con.execute(f"SELECT id, {null_pattern} FROM {src} ORDER BY id").fetchall()
        assert a == b
        empties = con.execute(f"SELECT id FROM {table} WHERE txt = '' ORDER BY id").fetchall()
        assert empties == con.execute(f"SELECT id FROM {src} WHERE txt = '' ORDER BY id").fetchall()
        # floats bit for bit (sign of zero included), and the ordering of rows
        a = con.execute(
            f"SELECT id, ratio::VARCHAR, small::VARCHAR, payload FROM {table} ORDER BY id"
        ).fetchall()
        b = con.execute(
            f"SELECT id, ratio::VARCHAR, small::VARCHAR, payload FROM {src} ORDER BY id"
        ).fetchall()
        assert a == b
        return n
    finally:
        con.close()


def tableship(cfg: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tableship", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def one_error_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert " — " in errors[0], errors[0]
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    build_warehouse(path)
    return path


@pytest.fixture
def site(tmp_path, warehouse):
    """A config, the warehouse beside it, and January 2026 exported to the local destination."""
    os.symlink(warehouse, tmp_path / "warehouse.duckdb")
    cfg = write_config(tmp_path, local_destination(tmp_path))
    proc = tableship(cfg, "run", "events", "--from", "2026-01-01", "--to", "2026-01-31")
    assert proc.returncode == 0, proc.stderr
    return cfg, tmp_path, tmp_path / "backup"


def staging_clean(tmp: Path) -> bool:
    restore_dir = tmp / "state" / "staging" / "restore"
    return not restore_dir.exists() or not any(restore_dir.iterdir())


# ---------------------------------------------------------------- the happy path


def test_round_trip_every_type(site, warehouse):
    cfg, tmp, backup = site
    ls = tableship(cfg, "ls", "events")
    assert ls.returncode == 0, ls.stderr
    assert WINDOW in ls.stdout and "complete" in ls.stdout and ARCHIVE in ls.stdout
    rows = json.loads(tableship(cfg, "ls", "--json").stdout)
    assert len(rows) == 1
    manifest = json.loads((backup / (ARCHIVE + ".manifest.json")).read_text())
    con = duckdb.connect(str(warehouse), read_only=True)
    expected = con.execute(
        "SELECT count(*) FROM app.events WHERE partition_date BETWEEN '2026-01-01' AND '2026-01-31'"
    )
    assert rows[0]["rows"] == manifest["rows"] == expected.fetchone()[0] > 1000
    con.close()
    assert rows[0]["sha256"] == manifest["sha256"] and rows[0]["state"] == "complete"

    ver = tableship(cfg, "verify", "events")
    assert ver.returncode == 0, ver.stdout + ver.stderr
    assert ver.stdout.startswith("OK") and "1 OK" in ver.stdout
    status = tableship(cfg, "status")
    assert "events: last verification: OK 1/1" in status.stdout
    status_json = json.loads(tableship(cfg, "status", "--json").stdout)
    assert status_json[0]["verification"]["ok"] is True

    restored = tmp / "restored.duckdb"
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--load", f"{restored}:events_jan")
    assert proc.returncode == 0, proc.stderr
    assert "events_jan" in proc.stdout
    n = compare_restored(warehouse, restored, "events_jan", "2026-01-01", "2026-01-31")
    assert n == manifest["rows"]
    assert staging_clean(tmp)

    # --to leaves exactly the archive's CSV (atomically: no temporary left)
    out = tmp / "out"
    proc = tableship(
        cfg, "restore", "events", "--window", "events_20260101_20260131.csv.gz", "--to", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    csv = out / "events_20260101_20260131.csv"
    assert csv.read_bytes() == gzip.decompress((backup / ARCHIVE).read_bytes())
    assert sorted(p.name for p in out.iterdir()) == [csv.name]
    # the default table name is the source table's, into a schema when asked
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--load", f"{restored}:back.events")
    assert proc.returncode == 0, proc.stderr
    compare_restored(warehouse, restored, "back.events", "2026-01-01", "2026-01-31")
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--load", str(tmp / "plain.duckdb"))
    assert proc.returncode == 0, proc.stderr
    compare_restored(warehouse, tmp / "plain.duckdb", "events", "2026-01-01", "2026-01-31")


def test_demo_table_round_trip(tmp_path):
    from tableship.cli.demo import DEMO_TABLE, create_demo_warehouse
    from tableship.core.window import month_end

    create_demo_warehouse(tmp_path / "warehouse.duckdb", rows=30_000)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    first = con.execute(f"SELECT min(partition_date) FROM {DEMO_TABLE}").fetchone()[0]
    con.close()
    start = first.replace(day=1)
    end = month_end(start.year, start.month)
    (tmp_path / "backup").mkdir()
    cfg = tmp_path / "tableship.toml"
    cfg.write_text(f"""
[settings]
state_dir = "state"
[sources.wh]
type = "duckdb"
path = "warehouse.duckdb"
[destinations.backup]
type = "local"
path = "backup"
[jobs.traffic]
table = "{DEMO_TABLE}"
""")
    assert tableship(cfg, "run", "--from", str(start), "--to", str(end)).returncode == 0
    proc = tableship(
        cfg, "restore", "traffic", "--window", f"{start}..{end}", "--load", f"{tmp_path}/r.duckdb:t"
    )
    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(tmp_path / "r.duckdb"))
    con.execute(f"ATTACH '{tmp_path / 'warehouse.duckdb'}' AS src (READ_ONLY)")
    src = f"(SELECT * FROM src.{DEMO_TABLE} WHERE partition_date BETWEEN DATE '{start}' AND DATE '{end}')"
    assert (
        con.execute("SELECT count(*) FROM t").fetchone()[0]
        == con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
    )
    assert con.execute(f"SELECT * FROM {src} EXCEPT ALL SELECT * FROM t").fetchall() == []
    assert con.execute(f"SELECT * FROM t EXCEPT ALL SELECT * FROM {src}").fetchall() == []
    assert con.execute("SELECT count(*) FROM t WHERE customer_name = ''").fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM t WHERE customer_name IS NULL").fetchone()[0] > 0


# ---------------------------------------------------------------- damaged archives


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_is_a_mismatch_and_restore_refuses_it(site):
    cfg, tmp, backup = site
    flip_byte(backup / ARCHIVE)
    ver = tableship(cfg, "verify", "events")
    assert ver.returncode == 1
    assert ver.stdout.startswith("MISMATCH") and "1 MISMATCH" in ver.stdout
    assert "events: last verification: 1 MISMATCH of 1" in tableship(cfg, "status").stdout
    assert (backup / ARCHIVE).exists()  # verify never deletes or rewrites
    restored = tmp / "r.duckdb"
    proc = tableship(
        cfg, "restore", "events", "--window", WINDOW, "--load", f"{restored}:t", "--to", str(tmp / "out")
    )
    one_error_line(proc, 1, "sha256", "refusing")
    assert not restored.exists()  # the database file it would have created is not left behind
    assert list((tmp / "out").iterdir()) == []
    assert staging_clean(tmp)
    # the damaged archive no longer protects itself from prune as "the newest verified"
    js = json.loads(tableship(cfg, "verify", "--json").stdout)
    assert js[0]["status"] == "MISMATCH" and js[0]["remote_path"] == ARCHIVE


def test_deleted_sidecar_is_incomplete(site):
    cfg, tmp, backup = site
    (backup / (ARCHIVE + ".sha256")).unlink()
    ver = tableship(cfg, "verify")
    assert ver.returncode == 1 and ver.stdout.startswith("INCOMPLETE") and "no .sha256 sidecar" in ver.stdout
    ls = tableship(cfg, "ls")
    assert "incomplete (no .sha256 sidecar)" in ls.stdout
    # the manifest still proves the bytes: restore works
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--to", str(tmp / "out"))
    assert proc.returncode == 0, proc.stderr


def test_deleted_manifest_is_incomplete_and_cannot_be_restored(site):
    cfg, tmp, backup = site
    (backup / (ARCHIVE + ".manifest.json")).unlink()
    ver = tableship(cfg, "verify")
    assert ver.returncode == 1 and ver.stdout.startswith("INCOMPLETE") and "no manifest" in ver.stdout
    assert "incomplete (no manifest)" in tableship(cfg, "ls").stdout
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--to", str(tmp / "out"))
    one_error_line(proc, 1, "no manifest")


def test_missing_archive(site):
    cfg, tmp, backup = site
    (backup / ARCHIVE).unlink()
    ver = tableship(cfg, "verify", "events")
    assert ver.returncode == 1 and ver.stdout.startswith("MISSING")
    # the whole folder gone: the state store still knows the newest run wrote it
    for p in (backup / "events").iterdir():
        p.unlink()
    ver = tableship(cfg, "verify", "events")
    assert ver.returncode == 1 and ver.stdout.startswith("MISSING") and "run 1" in ver.stdout


def test_sidecar_disagreeing_with_manifest_is_a_mismatch(site):
    cfg, tmp, backup = site
    side = backup / (ARCHIVE + ".sha256")
    side.write_text("0" * 64 + "  events_20260101_20260131.csv.gz\n")
    ver = tableship(cfg, "verify")
    assert ver.returncode == 1 and ver.stdout.startswith("MISMATCH")
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--to", str(tmp / "out"))
    one_error_line(proc, 1, "sidecar")


def tamper_manifest(backup: Path, **changes) -> None:
    p = backup / (ARCHIVE + ".manifest.json")
    m = json.loads(p.read_text())
    m.update(changes)
    p.write_text(json.dumps(m))


def test_row_count_mismatch_loads_nothing(site):
    cfg, tmp, backup = site
    m = json.loads((backup / (ARCHIVE + ".manifest.json")).read_text())
    tamper_manifest(backup, rows=m["rows"] + 1)
    restored = tmp / "r.duckdb"
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--load", f"{restored}:t")
    one_error_line(proc, 1, "rows")
    con = duckdb.connect(str(restored))
    assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()[0] == 0
    con.close()
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--to", str(tmp / "out"))
    one_error_line(proc, 1, "rows")
    assert list((tmp / "out").iterdir()) == []


def test_parse_error_loads_nothing_and_keeps_the_old_table(site):
    cfg, tmp, backup = site
    restored = tmp / "r.duckdb"
    con = duckdb.connect(str(restored))
    con.execute("CREATE TABLE t AS SELECT 42 AS answer")
    con.close()
    m = json.loads((backup / (ARCHIVE + ".manifest.json")).read_text())
    cols = [dict(c, type="INTEGER") if c["name"] == "txt" else c for c in m["columns"]]
    tamper_manifest(backup, columns=cols)
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--load", f"{restored}:t", "--replace")
    one_error_line(proc, 1, "does not parse", "txt")
    con = duckdb.connect(str(restored))
    assert con.execute("SELECT * FROM t").fetchall() == [(42,)]
    con.close()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args",
    [
        ["ls", "nope"],
        ["verify", "nope"],
        ["restore", "nope", "--window", WINDOW],
        ["prune", "nope"],
    ],
)
def test_unknown_job(site, args):
    cfg, tmp, backup = site
    one_error_line(tableship(cfg, *args), 2, "unknown job 'nope'")


def test_window_with_no_archive(site):
    cfg, tmp, backup = site
    proc = tableship(cfg, "restore", "events", "--window", "2025-01-01..2025-01-31", "--to", str(tmp / "out"))
    one_error_line(proc, 1, "no archive for the window 2025-01-01..2025-01-31", "tableship ls")
    proc = tableship(cfg, "restore", "events", "--window", "nothing.csv.gz")
    one_error_line(proc, 1, "no archive named 'nothing.csv.gz'")
    proc = tableship(cfg, "verify", "events", "--window", "2025-01-01..2025-01-31")
    one_error_line(proc, 1, "no archive")
    proc = tableship(cfg, "restore", "events", "--window", "2026-01-31..2026-01-01")
    one_error_line(proc, 1)  # not a window (start after end) and not a file name either
    proc = tableship(cfg, "verify", "events", "--window", "2026-13-01..2026-01-31")
    one_error_line(proc, 2, "--window")


def test_unwritable_to(site):
    cfg, tmp, backup = site
    afile = tmp / "a-file"
    afile.write_text("x")
    for target in (afile, afile / "sub"):
        proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--to", str(target))
        one_error_line(proc, 1, str(target))
    assert afile.read_text() == "x"
    assert not (tmp / "state" / "staging" / "restore").exists()  # refused before downloading


def test_existing_target_table_needs_replace(site, warehouse):
    cfg, tmp, backup = site
    restored = tmp / "r.duckdb"
    con = duckdb.connect(str(restored))
    con.execute("CREATE TABLE events_jan AS SELECT 1 AS x")
    con.close()
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--load", f"{restored}:events_jan")
    one_error_line(proc, 2, "already exists", "--replace")
    con = duckdb.connect(str(restored))
    assert con.execute("SELECT * FROM events_jan").fetchall() == [(1,)]
    con.close()
    proc = tableship(
        cfg, "restore", "events", "--window", WINDOW, "--load", f"{restored}:events_jan", "--replace"
    )
    assert proc.returncode == 0, proc.stderr
    compare_restored(warehouse, restored, "events_jan", "2026-01-01", "2026-01-31")
    # an existing CSV in --to also needs --replace
    out = tmp / "out"
    assert tableship(cfg, "restore", "events", "--window", WINDOW, "--to", str(out)).returncode == 0
    one_error_line(tableship(cfg, "restore", "events", "--window", WINDOW, "--to", str(out)), 2, "--replace")
    assert (
        tableship(cfg, "restore", "events", "--window", WINDOW, "--to", str(out), "--replace").returncode == 0
    )


def test_bad_load_spec(site):
    cfg, tmp, backup = site
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--load", f"{tmp}/r.duckdb:bad-name")
    one_error_line(proc, 2, "--load")


# ---------------------------------------------------------------- prune through the CLI


def test_prune_after_run_and_prune_command(tmp_path, warehouse):
    os.symlink(warehouse, tmp_path / "warehouse.duckdb")
    cfg = write_config(
        tmp_path, local_destination(tmp_path), "retention = { keep_last = 2 }\nprune_after_run = true"
    )
    folder = tmp_path / "backup" / "events"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not ours")
    for start, end in [
        ("2025-11-01", "2025-11-30"),
        ("2025-12-01", "2025-12-31"),
        ("2026-01-01", "2026-01-31"),
    ]:
        proc = tableship(cfg, "run", "events", "--from", start, "--to", end)
        assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        ["notes.txt"]
        + [
            f"events_{w}.csv.gz{s}"
            for w in ("20251201_20251231", "20260101_20260131")
            for s in ("", ".sha256", ".manifest.json")
        ]
    )
    # the prune command: dry run prints, deletes nothing
    cfg.write_text(
        cfg.read_text().replace("keep_last = 2", "keep_last = 1").replace("prune_after_run = true", "")
    )
    dry = tableship(cfg, "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "events: would delete events/events_20251201_20251231.csv.gz" in dry.stdout
    assert len(list(folder.iterdir())) == 7
    real = tableship(cfg, "prune", "events")
    assert real.returncode == 0 and "deleted events/events_20251201_20251231.csv.gz" in real.stdout
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["notes.txt"] + [f"events_20260101_20260131.csv.gz{s}" for s in ("", ".sha256", ".manifest.json")]
    )
    assert "kept 1, deleted 1" in real.stdout


def test_help_texts():
    for cmd in ("ls", "verify", "restore", "prune"):
        proc = subprocess.run(
            [sys.executable, "-m", "tableship", cmd, "--help"], capture_output=True, text=True
        )
        assert proc.returncode == 0 and len(proc.stdout.splitlines()) > 4


# ---------------------------------------------------------------- codecs and dialects


@pytest.mark.parametrize(
    "extra, suffix",
    [
        (
            'compression = { codec = "zstd", level = 3 }\nfile_name = '
            '"{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.zst"',
            ".zst",
        ),
        ('compression = { codec = "none" }\nfile_name = "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv"', ""),
        ('format = { null = "\\\\N" }', ".gz"),
    ],
)
def test_other_codecs_and_null_text_round_trip(tmp_path, warehouse, extra, suffix):
    os.symlink(warehouse, tmp_path / "warehouse.duckdb")
    cfg = write_config(tmp_path, local_destination(tmp_path), extra)
    assert tableship(cfg, "run", "events", "--from", "2026-01-01", "--to", "2026-01-31").returncode == 0
    assert tableship(cfg, "verify").returncode == 0
    proc = tableship(
        cfg,
        "restore",
        "events",
        "--window",
        WINDOW,
        "--load",
        f"{tmp_path}/r.duckdb:t",
        "--to",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 0, proc.stderr
    compare_restored(warehouse, tmp_path / "r.duckdb", "t", "2026-01-01", "2026-01-31")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["events_20260101_20260131.csv"]


def test_impala_shell_preset_round_trip(tmp_path):
    """No quoting, no header, NULL written as NULL: restores exactly when the data is clean."""
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(
        "CREATE SCHEMA app; CREATE TABLE app.events (id BIGINT, partition_date DATE, txt VARCHAR, "
        "amount DECIMAL(10,2), ts TIMESTAMP)"
    )
    con.execute(
        "INSERT INTO app.events SELECT i, DATE '2026-01-01' + (i % 31)::INTEGER, "
        "CASE WHEN i % 3 = 0 THEN NULL WHEN i % 3 = 1 THEN '' ELSE 'v' || i END, i / 100, "
        "TIMESTAMP '2026-01-01 00:00:00.25' + to_seconds(i) FROM range(500) t(i)"
    )
    con.close()
    cfg = write_config(tmp_path, local_destination(tmp_path), 'format = { preset = "impala-shell" }')
    assert tableship(cfg, "run", "events", "--from", "2026-01-01", "--to", "2026-01-31").returncode == 0
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--load", f"{tmp_path}/r.duckdb:t")
    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(tmp_path / "r.duckdb"))
    con.execute(f"ATTACH '{tmp_path / 'warehouse.duckdb'}' AS src (READ_ONLY)")
    assert con.execute("SELECT * FROM src.app.events EXCEPT ALL SELECT * FROM t").fetchall() == []
    assert con.execute("SELECT * FROM t EXCEPT ALL SELECT * FROM src.app.events").fetchall() == []
    assert con.execute("SELECT count(*) FROM t WHERE txt IS NULL").fetchone()[0] == 167
    assert con.execute("SELECT count(*) FROM t WHERE txt = ''").fetchone()[0] == 167


def test_consistent_but_corrupt_archive_is_refused(site):
    """Archive, manifest and sidecar all rewritten to agree on damaged bytes: decompression catches it."""
    import hashlib

    cfg, tmp, backup = site
    flip_byte(backup / ARCHIVE, 40)
    data = (backup / ARCHIVE).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    tamper_manifest(backup, sha256=sha)
    (backup / (ARCHIVE + ".sha256")).write_text(f"{sha}  events_20260101_20260131.csv.gz\n")
    proc = tableship(
        cfg, "restore", "events", "--window", WINDOW, "--to", str(tmp / "out"), "--load", f"{tmp}/r.duckdb:t"
    )
    one_error_line(proc, 1)
    assert list((tmp / "out").iterdir()) == []
    assert staging_clean(tmp)


def test_verify_all_continues_past_an_unreachable_destination(site):
    cfg, tmp, backup = site
    text = (
        cfg.read_text() + '\n[destinations.gone]\ntype = "local"\npath = "no-such-folder"\n'
        '\n[jobs.lost]\ntable = "app.events"\ndestination = "gone"\n'
    )
    cfg.write_text(text.replace("[jobs.events]\n", '[jobs.events]\ndestination = "backup"\n'))
    proc = tableship(cfg, "verify", "--all")
    assert proc.returncode == 1
    assert "events: 1 archive(s): 1 OK" in proc.stdout and "lost: ERROR:" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_date_templated_remote_dir_found_without_the_state_store(tmp_path, warehouse):
    import shutil

    os.symlink(warehouse, tmp_path / "warehouse.duckdb")
    # keep_days widens the schedule horizon the folders are derived from (whatever today is)
    cfg = write_config(
        tmp_path,
        local_destination(tmp_path),
        'remote_dir = "{table}/{start:%Y}"\nretention = { keep_days = 36500 }',
    )
    for start, end in [("2025-12-01", "2025-12-31"), ("2026-01-01", "2026-01-31")]:
        assert tableship(cfg, "run", "events", "--from", start, "--to", end).returncode == 0
    listed = lambda: sorted(r["remote_path"] for r in json.loads(tableship(cfg, "ls", "--json").stdout))  # noqa: E731
    expected = ["events/2025/events_20251201_20251231.csv.gz", "events/2026/events_20260101_20260131.csv.gz"]
    assert listed() == expected
    shutil.rmtree(tmp_path / "state")  # the machine that made the backups is gone
    assert listed() == expected
    ver = tableship(cfg, "verify")
    assert ver.returncode == 0 and "2 OK" in ver.stdout
    proc = tableship(
        cfg, "restore", "events", "--window", "2025-12-01..2025-12-31", "--load", f"{tmp_path}/r.duckdb:t"
    )
    assert proc.returncode == 0, proc.stderr
    compare_restored(warehouse, tmp_path / "r.duckdb", "t", "2025-12-01", "2025-12-31")
