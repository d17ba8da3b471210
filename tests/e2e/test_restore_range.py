"""``tableship restore JOB --from A --to B`` through the CLI, into DuckDB, from monthly and
overlapping window archives of the every-type warehouse of test_archives.py: the range
equals the source (EXCEPT ALL both ways), dry run, no archive, a damaged archive stops
before anything is loaded, a crash mid-range resumes without loading an archive twice,
``--replace`` touches only the range's rows, a schema mismatch is refused."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from tests.e2e.test_archives import (
    build_warehouse,
    compare_restored,
    local_destination,
    one_error_line,
    tableship,
    write_config,
)
from tests.servers import wait_for
from tests.servers.postgres import fresh_database

MONTHS = [("2025-11-01", "2025-11-30"), ("2025-12-01", "2025-12-31"), ("2026-01-01", "2026-01-31")]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    build_warehouse(path)
    return path


def make_site(tmp: Path, warehouse: Path, windows=MONTHS) -> Path:
    os.symlink(warehouse, tmp / "warehouse.duckdb")
    cfg = write_config(tmp, local_destination(tmp))
    for start, end in windows:
        proc = tableship(cfg, "run", "events", "--from", start, "--to", end)
        assert proc.returncode == 0, proc.stderr
    return cfg


@pytest.fixture
def site(tmp_path, warehouse) -> Path:
    return make_site(tmp_path, warehouse)


def two_destination_site(tmp: Path, warehouse: Path) -> Path:
    """A config whose job ``events`` delivers to two local destinations, ``a`` then ``b``."""
    os.symlink(warehouse, tmp / "warehouse.duckdb")
    for d in ("a", "b"):
        (tmp / d).mkdir()
    cfg = tmp / "tableship.toml"
    cfg.write_text(
        '[settings]\nstate_dir = "state"\n[sources.wh]\ntype = "duckdb"\npath = "warehouse.duckdb"\n'
        '[destinations.a]\ntype = "local"\npath = "a"\n[destinations.b]\ntype = "local"\npath = "b"\n'
        '[defaults]\nwindow = { unit = "month", count = 1 }\n'
        '[jobs.events]\ntable = "app.events"\ndestinations = ["a", "b"]\n'
    )
    return cfg


@contextlib.contextmanager
def held_restore(cfg: Path, db: Path, holds: Path) -> Iterator[subprocess.Popen]:
    """A ``restore events --from 2026-01 --load DB:t`` held at its first load (the target
    lock taken); on leaving, it is let go on and waited for (``.stderr_text`` kept)."""
    holds.mkdir()
    argv = [sys.executable, "-m", "tableship", "--config", str(cfg), "restore", "events", "--from", "2026-01"]
    argv += ["--load", f"{db}:t"]
    env = dict(os.environ, TABLESHIP_TEST_HOLD="restore-load", TABLESHIP_TEST_HOLD_DIR=str(holds))
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (holds / "restore-load").exists() or first.poll() is not None, 120, "the first load")
        assert first.poll() is None
        yield first
        (holds / "restore-load").unlink()  # let the first one go on
        _, first.stderr_text = first.communicate(timeout=120)  # kept for the assertion message
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()


def tables(db: Path) -> list[str]:
    if not db.exists():
        return []
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    finally:
        con.close()


def loads(tmp: Path) -> list[tuple]:
    con = sqlite3.connect(tmp / "state" / "state.db")
    try:
        return con.execute(
            "SELECT l.remote_path, l.state, r.state FROM restore_loads l "
            "JOIN restores r ON r.id = l.restore_id ORDER BY r.started_at, l.load_start"
        ).fetchall()
    finally:
        con.close()


def test_month_range_into_duckdb_equals_the_source(site, warehouse, tmp_path):
    db = tmp_path / "r.duckdb"
    dry = tableship(site, "restore", "events", "--from", "2025-12", "--to", "2026-01", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "events_20251201_20251231.csv.gz" in dry.stdout and "events_20260101_20260131.csv.gz" in dry.stdout
    assert "20251101" not in dry.stdout and "would use 2 archive(s)" in dry.stdout
    assert not db.exists()
    proc = tableship(site, "restore", "events", "--from", "2025-12", "--to", "2026-01", "--load", f"{db}:t")
    assert proc.returncode == 0, proc.stderr
    assert "OK, 2 archive(s)" in proc.stdout and "from backup" in proc.stdout
    compare_restored(warehouse, db, "t", "2025-12-01", "2026-01-31")
    assert [s for _, s, _ in loads(tmp_path)] == ["loaded", "loaded"]


def test_days_of_an_overlapping_window_archive_are_filtered(tmp_path, warehouse):
    # one archive holding December and January; the range asks for 2025-12-20..2026-01-10
    cfg = make_site(tmp_path, warehouse, [("2025-12-01", "2026-01-31")])
    db = tmp_path / "r.duckdb"
    dry = tableship(cfg, "restore", "events", "--from", "2025-12-20", "--to", "2026-01-10", "--dry-run")
    assert "filtered out" in dry.stdout, dry.stdout
    proc = tableship(
        cfg, "restore", "events", "--from", "2025-12-20", "--to", "2026-01-10", "--load", f"{db}:t"
    )
    assert proc.returncode == 0, proc.stderr
    compare_restored(warehouse, db, "t", "2025-12-20", "2026-01-10")


def test_newest_archive_supplies_each_day_once(tmp_path, warehouse):
    # monthly archives, then a newer two-month window over Dec-Jan: each day comes from one archive
    cfg = make_site(tmp_path, warehouse, [*MONTHS, ("2025-12-01", "2026-01-31")])
    db = tmp_path / "r.duckdb"
    proc = tableship(cfg, "restore", "events", "--from", "2025-11", "--to", "2026-01", "--load", f"{db}:t")
    assert proc.returncode == 0, proc.stderr
    assert "OK, 2 archive(s)" in proc.stdout
    compare_restored(warehouse, db, "t", "2025-11-01", "2026-01-31")


def test_a_range_without_archives_is_a_clear_error(site, tmp_path):
    proc = tableship(
        site, "restore", "events", "--from", "2024-01", "--to", "2024-03", "--load", f"{tmp_path}/r.db"
    )
    one_error_line(proc, 1, "no archive", "2024-01-01..2024-03-31")
    assert not (tmp_path / "r.db").exists()
    one_error_line(tableship(site, "restore", "events", "--from", "2024-13", "--load", "x.db"), 2, "--from")
    one_error_line(tableship(site, "restore", "events", "--from", "2026-01"), 2, "--load")


def test_parallel_is_for_a_range_and_at_least_one(site, tmp_path):
    one_error_line(tableship(site, "restore", "events", "--window", "x", "--parallel", "2"), 2, "--parallel")
    proc = tableship(
        site, "restore", "events", "--from", "2025-11", "--load", f"{tmp_path}/r.duckdb:t", "--parallel", "0"
    )
    assert proc.returncode == 2 and "--parallel" in proc.stderr and "Traceback" not in proc.stderr


def test_a_damaged_archive_stops_the_range_before_anything_is_loaded(site, tmp_path):
    archive = tmp_path / "backup" / "events" / "events_20260101_20260131.csv.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    db = tmp_path / "r.duckdb"
    proc = tableship(site, "restore", "events", "--from", "2025-11", "--to", "2026-01", "--load", f"{db}:t")
    one_error_line(proc, 1, "events_20260101_20260131.csv.gz", "nothing was loaded")
    assert "t" not in tables(db)  # not even created: the November and December archives were fine
    assert not any((tmp_path / "state" / "staging" / "restore").iterdir())


@pytest.mark.parametrize("parallel", [None, "1"])
def test_a_crash_mid_range_resumes_without_loading_an_archive_twice(site, warehouse, tmp_path, parallel):
    db = tmp_path / "r.duckdb"
    holds = tmp_path / "holds"
    holds.mkdir()
    argv = [
        sys.executable,
        "-m",
        "tableship",
        "--config",
        str(site),
        "restore",
        "events",
        "--from",
        "2025-11",
    ]
    argv += ["--to", "2026-01", "--load", f"{db}:t"] + (["--parallel", parallel] if parallel else [])
    env = dict(os.environ, TABLESHIP_TEST_HOLD="restore-next", TABLESHIP_TEST_HOLD_DIR=str(holds))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (holds / "restore-next").exists() or proc.poll() is not None, 120, "the first load")
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)  # a crash: no cleanup, the ledger says 1 loaded
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    # DuckDB loads two archives at once: the second one was started, never committed
    # (--parallel 1: one at a time, the second one not started)
    assert [s for _, s, _ in loads(tmp_path)] == (["loaded"] if parallel else ["loaded", "loading"])
    again = tableship(site, "restore", "events", "--from", "2025-11", "--to", "2026-01", "--load", f"{db}:t")
    assert again.returncode == 0, again.stderr
    assert (
        "resuming" in again.stderr
        and "1 already loaded" in again.stdout
        and "OK, 2 archive(s)" in again.stdout
    )
    assert [ln.split()[1] for ln in again.stderr.splitlines() if ln.startswith("loading ")] == [
        "events/events_20251201_20251231.csv.gz",
        "events/events_20260101_20260131.csv.gz",
    ]
    compare_restored(warehouse, db, "t", "2025-11-01", "2026-01-31")
    assert [(p.rsplit("/", 1)[1][7:15], s) for p, s, _ in loads(tmp_path)] == [
        ("20251101", "loaded"),
        ("20251201", "loaded"),
        ("20260101", "loaded"),
    ]
    # the finished restore is not resumed: the same command again refuses to add the rows twice
    one_error_line(
        tableship(site, "restore", "events", "--from", "2025-11", "--to", "2026-01", "--load", f"{db}:t"),
        2,
        "already holds",
        "--replace",
    )


def test_a_crash_between_commit_and_ledger_reloads_that_archive_without_doubling(site, warehouse, tmp_path):
    db = tmp_path / "r.duckdb"
    holds = tmp_path / "holds"
    holds.mkdir()
    argv = [
        sys.executable,
        "-m",
        "tableship",
        "--config",
        str(site),
        "restore",
        "events",
        "--from",
        "2025-12",
    ]
    argv += ["--to", "2026-01", "--load", f"{db}:t"]
    env = dict(os.environ, TABLESHIP_TEST_HOLD="restore-loaded", TABLESHIP_TEST_HOLD_DIR=str(holds))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (holds / "restore-loaded").exists() or proc.poll() is not None, 120, "the commit")
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the table has the first archive's rows, the ledger does not know (the second archive,
    # loading beside it, waited for its turn to commit)
    assert [s for _, s, _ in loads(tmp_path)] == ["loading", "loading"]
    again = tableship(site, "restore", "events", "--from", "2025-12", "--to", "2026-01", "--load", f"{db}:t")
    assert again.returncode == 0, again.stderr
    compare_restored(warehouse, db, "t", "2025-12-01", "2026-01-31")  # no row twice


def test_replace_touches_only_the_range(site, warehouse, tmp_path):
    db = tmp_path / "r.duckdb"
    proc = tableship(site, "restore", "events", "--from", "2025-11", "--to", "2026-01", "--load", f"{db}:t")
    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM t WHERE partition_date BETWEEN '2025-12-10' AND '2025-12-20'")
    con.execute("UPDATE t SET txt = 'changed' WHERE partition_date = DATE '2026-01-05'")
    con.execute("UPDATE t SET txt = 'kept' WHERE partition_date = DATE '2025-11-05'")
    kept = con.execute("SELECT count(*) FROM t WHERE txt = 'kept'").fetchone()[0]
    con.close()
    refused = tableship(
        site, "restore", "events", "--from", "2025-12", "--to", "2026-01", "--load", f"{db}:t"
    )
    one_error_line(refused, 2, "already holds", "nothing was downloaded")
    assert "downloading" not in refused.stderr  # the target is checked before any archive is fetched
    proc = tableship(
        site, "restore", "events", "--from", "2025-12", "--to", "2026-01", "--load", f"{db}:t", "--replace"
    )
    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(db))
    con.execute(f"ATTACH '{warehouse}' AS src (READ_ONLY)")
    rng = "partition_date BETWEEN DATE '2025-12-01' AND DATE '2026-01-31'"
    diff = f"SELECT * FROM src.app.events WHERE {rng} EXCEPT ALL SELECT * FROM t WHERE {rng}"
    assert con.execute(f"SELECT count(*) FROM ({diff})").fetchone()[0] == 0
    back = f"SELECT * FROM t WHERE {rng} EXCEPT ALL SELECT * FROM src.app.events WHERE {rng}"
    assert con.execute(f"SELECT count(*) FROM ({back})").fetchone()[0] == 0
    assert (
        con.execute("SELECT count(*) FROM t WHERE txt = 'kept'").fetchone()[0] == kept > 0
    )  # November untouched
    con.close()


def test_an_existing_table_with_other_columns_is_refused(site, tmp_path):
    db = tmp_path / "r.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE t (id BIGINT, partition_date DATE)")
    con.close()
    proc = tableship(site, "restore", "events", "--from", "2026-01", "--load", f"{db}:t")
    one_error_line(proc, 1, "exists with the columns")


def test_a_damaged_copy_on_one_destination_is_taken_from_the_next(tmp_path, warehouse):
    cfg = two_destination_site(tmp_path, warehouse)
    proc = tableship(cfg, "run", "events", "--from", "2026-01-01", "--to", "2026-01-31")
    assert proc.returncode == 0, proc.stderr
    archive = tmp_path / "a" / "events" / "events_20260101_20260131.csv.gz"
    data = bytearray(archive.read_bytes())
    data[100] ^= 0x01
    archive.write_bytes(bytes(data))
    db = tmp_path / "r.duckdb"
    proc = tableship(cfg, "restore", "events", "--from", "2026-01", "--load", f"{db}:t")
    assert proc.returncode == 0, proc.stderr
    assert "from b" in proc.stdout and "on a its sha256" in proc.stderr, proc.stdout + proc.stderr
    compare_restored(warehouse, db, "t", "2026-01-01", "2026-01-31")


def test_a_failed_restore_opens_one_incident_and_alerts_once(tmp_path, warehouse):
    os.symlink(warehouse, tmp_path / "warehouse.duckdb")
    tickets = tmp_path / "tickets"
    alerts = (
        '\n[alerts]\nchannels = ["pager"]\n[alerts.pager]\ntype = "command"\n'
        f'argv = ["sh", "-c", "echo \\"$TABLESHIP_EVENT $TABLESHIP_JOB\\" >> {tickets}; '
        f'echo \\"$TABLESHIP_RESUME_COMMAND\\" > {tickets}.resume; cat > {tickets}.text"]\n'
    )
    cfg = write_config(tmp_path, local_destination(tmp_path), alerts)
    for start, end in MONTHS[1:]:
        assert tableship(cfg, "run", "events", "--from", start, "--to", end).returncode == 0
    archive = tmp_path / "backup" / "events" / "events_20260101_20260131.csv.gz"
    good = archive.read_bytes()
    archive.write_bytes(good[:-8] + bytes(8))
    db = tmp_path / "r.duckdb"
    for _ in range(2):
        proc = tableship(
            cfg, "restore", "events", "--from", "2025-12", "--to", "2026-01", "--load", f"{db}:t"
        )
        one_error_line(proc, 1, "sha256")
    assert tickets.read_text().splitlines() == ["failed events:restore"]  # two failures, one alert
    # the alert names the command that resumes the restore (not a backup's 'tableship run')
    resume = shlex.split(Path(f"{tickets}.resume").read_text())
    want = ["restore", "events", "--from", "2025-12", "--to", "2026-01", "--load", f"{db}:t"]
    assert resume == ["tableship", "--config", str(cfg), *want], resume
    assert f"Resume with:\n  {shlex.join(resume)}\n" in Path(f"{tickets}.text").read_text()
    archive.write_bytes(good)
    proc = tableship(cfg, *resume[3:])
    assert proc.returncode == 0, proc.stderr
    assert tickets.read_text().splitlines() == ["failed events:restore", "resolved events:restore"]


def test_out_leaves_the_verified_csvs_of_the_range(site, tmp_path):
    out = tmp_path / "out"
    proc = tableship(site, "restore", "events", "--from", "2025-12", "--to", "2026-01", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "OK, 2 verified CSV file(s)" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "events_20251201_20251231.csv",
        "events_20260101_20260131.csv",
    ]
    one_error_line(
        tableship(site, "restore", "events", "--from", "2025-12", "--to", "2026-01", "--out", str(out)),
        2,
        "--replace",
    )


def test_a_second_restore_into_the_same_table_is_locked_out(site, warehouse, tmp_path):
    db = tmp_path / "r.duckdb"
    with held_restore(site, db, tmp_path / "holds") as first:
        one_error_line(
            tableship(site, "restore", "events", "--from", "2026-01", "--load", f"{db}:t"), 75, "another"
        )
    assert first.returncode == 0, first.stderr_text
    compare_restored(warehouse, db, "t", "2026-01-01", "2026-01-31")


def test_the_target_lock_is_the_postgresql_ledgers_for_every_host(tmp_path, warehouse, postgres):
    """With ``settings.state`` on PostgreSQL the target table's lock is a session advisory lock
    of the shared ledger: a restore into the same table from another host (here: another
    state folder, so another flock file) is refused while the first holds it."""
    url = fresh_database(postgres)
    cfg = make_site(tmp_path, warehouse, MONTHS[2:])
    text = cfg.read_text().replace('state_dir = "state"', f'state_dir = "state"\nstate = "{url}"', 1)
    cfg.write_text(text)
    other = tmp_path / "other.toml"  # the second host: its own state folder, the same ledger
    other.write_text(text.replace('state_dir = "state"', 'state_dir = "state-other"', 1))
    db = tmp_path / "r.duckdb"
    with held_restore(cfg, db, tmp_path / "holds") as first:
        line = one_error_line(
            tableship(other, "restore", "events", "--from", "2026-01", "--load", f"{db}:t"), 75, "another"
        )
        assert f"pid {first.pid} on" in line, line
    assert first.returncode == 0, first.stderr_text
    assert not list((tmp_path / "state").glob("**/restore-*"))  # no flock file: the ledger's lock
    # released: the other host can restore into it now
    proc = tableship(other, "restore", "events", "--from", "2026-01", "--load", f"{db}:t", "--replace")
    assert proc.returncode == 0, proc.stderr
    compare_restored(warehouse, db, "t", "2026-01-01", "2026-01-31")


def test_one_window_falls_back_to_the_next_destination(tmp_path, warehouse):
    """``restore --window`` (one archive) reads the job's destinations in order: an archive
    missing on the first, or damaged there, comes from the next; damaged everywhere, one
    error line naming each destination."""
    cfg = two_destination_site(tmp_path, warehouse)
    for start, end in MONTHS[1:]:
        assert tableship(cfg, "run", "events", "--from", start, "--to", end).returncode == 0
    # December: the archive (and its sidecars) gone from a
    for f in (tmp_path / "a" / "events").glob("events_20251201_20251231.*"):
        f.unlink()
    db = tmp_path / "r.duckdb"
    proc = tableship(cfg, "restore", "events", "--window", "2025-12-01..2025-12-31", "--load", f"{db}:dec")
    assert proc.returncode == 0, proc.stderr
    assert "using the copy on b" in proc.stderr, proc.stderr
    compare_restored(warehouse, db, "dec", "2025-12-01", "2025-12-31")
    # January: a damaged copy on a
    jan = tmp_path / "a" / "events" / "events_20260101_20260131.csv.gz"
    good = jan.read_bytes()
    data = bytearray(good)
    data[100] ^= 0x01
    jan.write_bytes(bytes(data))
    proc = tableship(cfg, "restore", "events", "--window", "2026-01-01..2026-01-31", "--load", f"{db}:jan")
    assert proc.returncode == 0, proc.stderr
    assert "on a:" in proc.stderr and "sha256" in proc.stderr and "using the copy on b" in proc.stderr
    compare_restored(warehouse, db, "jan", "2026-01-01", "2026-01-31")
    # damaged on both: nothing restored, one error line naming both
    (tmp_path / "b" / "events" / jan.name).write_bytes(bytes(data))
    out = tmp_path / "out"
    line = one_error_line(
        tableship(cfg, "restore", "events", "--window", "2026-01-01..2026-01-31", "--out", str(out)),
        1,
        "on a",
    )
    assert "on b" in line and "any of the job's destinations" in line, line
    assert not out.exists() or not any(out.iterdir())
