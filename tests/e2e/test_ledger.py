"""The ledger (state.db) through the CLI: a tableship 0.1.0 database migrates and keeps its
history, read-only commands never create or migrate a ledger, and a broken ledger (corrupt,
full, read-only, immutable, locked) ends in one ``Error:`` line naming the file and the fix."""

from __future__ import annotations

import errno
import sqlite3
import subprocess

import pytest
from tests.e2e.helpers import JOB, RUN_DATE, Workspace, assert_clean_error, to_toml
from tests.ledger_v010 import V010_ARCHIVES, V010_INCIDENTS, V010_STATE
from tests.servers import ensure_command, missing

from tableship.ledger.schema import LATEST

OLD_ERROR = "the destination is unreachable (0.1.0 era)"


def make_v010_ledger(ws: Workspace) -> None:
    """A state.db as tableship 0.1.0 left it: two old runs (a failure, then a success), their
    transitions, a closed incident with one sent message, a verification."""
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(ws.state_dir / "state.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V010_STATE)
    db.executescript(V010_ARCHIVES)
    db.executescript(V010_INCIDENTS)
    ins = (
        "INSERT INTO runs (job, window_start, window_end, run_date, phase, result, failed_phase, "
        "error, rows, "
        "archive_bytes, sha256, file_name, remote_path, attempts, pid, host, started_at, "
        "updated_at, finished_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    db.execute(
        ins,
        (
            JOB,
            "2026-05-01",
            "2026-09-30",
            "2026-10-26",
            "exported",
            "failed",
            "upload",
            OLD_ERROR,
            None,
            None,
            None,
            None,
            None,
            1,
            4242,
            "oldhost",
            "2026-10-26T02:00:00+00:00",
            "2026-10-26T02:01:00+00:00",
            "2026-10-26T02:01:00+00:00",
        ),
    )
    db.execute(
        ins,
        (
            JOB,
            "2026-05-01",
            "2026-09-30",
            "2026-10-27",
            "done",
            "success",
            None,
            None,
            11111,
            2222,
            "ab" * 32,
            "customer_traffic_20260501_20260930.csv.gz",
            "customer_traffic/customer_traffic_20260501_20260930.csv.gz",
            1,
            4243,
            "oldhost",
            "2026-10-27T02:00:00+00:00",
            "2026-10-27T02:03:00+00:00",
            "2026-10-27T02:03:00+00:00",
        ),
    )
    for run_id, steps in (
        (1, [(None, "planned"), ("planned", "exported")]),
        (
            2,
            [
                (None, "planned"),
                ("planned", "exported"),
                ("exported", "uploaded"),
                ("uploaded", "verified"),
                ("verified", "done"),
            ],
        ),
    ):
        for a, b in steps:
            db.execute(
                "INSERT INTO transitions VALUES (?,?,?,?,?)", (run_id, "2026-10-27T02:00:00+00:00", a, b, "")
            )
    db.execute(
        "INSERT INTO incidents (job, opened_at, closed_at, failures, first_run_id, last_run_id, last_error, "
        "resolved_run_id) VALUES (?,?,?,?,?,?,?,?)",
        (JOB, "2026-10-26T02:01:00+00:00", "2026-10-27T02:03:00+00:00", 1, 1, 1, OLD_ERROR, 2),
    )
    db.execute(
        "INSERT INTO alert_messages (incident_id, job, channel, kind, failures, state, payload, created_at, "
        "updated_at) VALUES (1, ?, 'ops', 'failed', 1, 'sent', '{}', ?, ?)",
        (JOB, "2026-10-26T02:01:00+00:00", "2026-10-26T02:01:01+00:00"),
    )
    db.execute(
        "INSERT INTO verifications (batch, job, remote_path, status, verified_at) VALUES (?,?,?,?,?)",
        (
            "b1",
            JOB,
            "customer_traffic/customer_traffic_20260501_20260930.csv.gz",
            "OK",
            "2026-10-28T02:00:00+00:00",
        ),
    )
    db.close()


def user_version(path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def count(path, table: str) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def snapshot(folder) -> dict[str, bytes]:
    """The ledger files (SQLite's transient -wal/-shm companions and the log file aside)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name.startswith("state.db") and not p.name.endswith(("-wal", "-shm"))
    }


# ---------------------------------------------------------------- migration


def test_a_v010_ledger_is_read_without_migrating_then_migrated_by_run_keeping_its_history(ws):
    make_v010_ledger(ws)
    db_path = ws.state_dir / "state.db"
    before = snapshot(ws.state_dir)
    assert user_version(db_path) == 0

    # read-only commands read the old ledger as it is: history, status (and --json), nothing written
    r = ws.cli("history")
    assert r.rc == 0, str(r)
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and "2026-05-01..2026-09-30" in lines[1] and "success" in lines[1], str(r)
    assert "failed" in lines[2], str(r)
    r = ws.cli("history", "--json")
    assert r.rc == 0, str(r)
    assert '"error": "the destination is unreachable (0.1.0 era)"' in r.stdout
    r = ws.cli("status", "--date", "2026-10-27")  # as of that run's date: nothing missing yet
    assert r.rc == 0, str(r)
    assert "2026-05-01..2026-09-30" in r.stdout and "success" in r.stdout
    assert "last verification: OK 1/1" in r.stdout, str(r)
    assert snapshot(ws.state_dir) == before, "a read-only command changed the old ledger"
    assert not list(ws.state_dir.glob("*.bak"))

    # a run migrates it once (a copy of the old file kept) and appends to the same history
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert user_version(db_path) == LATEST
    copy = ws.state_dir / "state.db.v1.bak"
    assert copy.is_file()
    assert user_version(copy) == 0 and count(copy, "runs") == 2 and count(copy, "transitions") == 7
    assert (
        f"migrating the ledger {db_path} from schema version 1 to {LATEST}"
        in r.stderr + (ws.state_dir / "tableship.core.log").read_text()
    )
    runs = ws.runs()
    assert [r["result"] for r in runs] == ["failed", "success", "success"]
    assert runs[0]["error"] == OLD_ERROR and runs[1]["rows"] == 11111
    assert count(db_path, "transitions") == 7 + 5
    assert count(db_path, "incidents") == 1 and count(db_path, "alert_messages") == 1
    assert count(db_path, "verifications") == 1

    r = ws.cli("history")
    assert r.rc == 0 and len(r.stdout.splitlines()) == 4, str(r)
    assert "2026-06-01..2026-10-31" in r.stdout.splitlines()[1]

    # the next run finds it current: no second migration, the copy is untouched
    copy_bytes = copy.read_bytes()
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert "migrating the ledger" not in r.stderr
    assert copy.read_bytes() == copy_bytes


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["status", "--json"],
        ["history"],
        ["history", JOB],
        ["ls"],
        ["verify"],
        ["prune", "--dry-run"],
        ["config", "validate"],
    ],
)
def test_read_only_commands_never_create_a_ledger(ws, command):
    r = ws.cli(*command)
    assert r.rc in (0, 1), str(r)  # verify: 1 when there is nothing on the destination? it says so
    assert "Traceback" not in r.stderr, str(r)
    assert not (ws.state_dir / "state.db").exists(), f"{command} created a ledger"
    assert not list(ws.state_dir.glob("state.db*")) if ws.state_dir.exists() else True


def test_status_and_history_without_a_ledger_say_no_runs_yet(ws):
    r = ws.cli("status")
    assert r.rc == 1 and "never run" in r.stdout, str(r)  # WARNING: never run
    r = ws.cli("history")
    assert r.rc == 0 and "no runs yet" in r.stdout, str(r)
    assert not (ws.state_dir / "state.db").exists()


def test_verify_records_into_an_existing_ledger(ws):
    assert ws.cli("run", "--date", RUN_DATE).rc == 0
    r = ws.cli("verify")
    assert r.rc == 0, str(r)
    assert count(ws.state_dir / "state.db", "verifications") == 1


def test_a_ledger_from_a_newer_tableship_is_refused_and_left_alone(ws):
    assert ws.cli("run", "--date", RUN_DATE).rc == 0
    db_path = ws.state_dir / "state.db"
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {LATEST + 5}")
    db.close()
    before = db_path.read_bytes()
    for command in (["status"], ["run", "--date", RUN_DATE]):
        r = ws.cli(*command)
        assert r.rc == 74, str(r)
        errors = r.error_lines
        assert len(errors) == 1 and str(db_path) in errors[0] and "upgrade tableship" in errors[0], str(r)
        assert "Traceback" not in r.stderr
    assert db_path.read_bytes() == before


# ---------------------------------------------------------------- a broken ledger

ALERT_LINE = 'printf "%s|%s\\n" "$TABLESHIP_SUBJECT" "$TABLESHIP_ERROR" >> "$0"'


@pytest.fixture
def aws(ws):
    """A workspace whose log and staging live outside the state dir (which the tests break), with a
    command alert channel appending ``subject|error`` lines to ``ws.alerts``."""
    ws.alerts = ws.root / "alerts.txt"
    ws.doc = ws.config_doc(
        settings={
            "log_file": str(ws.root / "logs" / "tableship.core.log"),
            "staging_dir": str(ws.root / "staging"),
            "environment": "prod",
        },
        alerts={
            "channels": ["pager"],
            "pager": {
                "type": "command",
                "argv": ["sh", "-c", ALERT_LINE, str(ws.alerts)],
                "retries": {"attempts": 1, "initial_delay": 0},
            },
        },
    )
    ws.write_text(to_toml(ws.doc))
    return ws


def alerts(ws) -> list[list[str]]:
    return [line.split("|", 1) for line in ws.alerts.read_text().splitlines()] if ws.alerts.exists() else []


def assert_ledger_error(r, rc: int, path, *needles: str) -> str:
    line = assert_clean_error(r, rc, str(path), *needles)
    assert "unexpected" not in line and "--debug" not in line, line
    return line


def assert_alerted(ws, *needles: str) -> None:
    got = alerts(ws)
    assert len(got) == 1, got
    subject, error = got[0]
    assert subject.startswith(f"[tableship] FAILED {JOB} 2026-06-01..2026-10-31"), subject
    for needle in needles:
        assert needle in error, (needle, error)


def test_a_corrupt_ledger_names_the_file_the_fix_and_the_pre_migration_copy_and_still_alerts(aws):
    make_v010_ledger(aws)
    assert aws.cli("run", "--date", RUN_DATE).rc == 0  # migrates: state.db.v1.bak
    db_path = aws.state_dir / "state.db"
    copy = aws.state_dir / "state.db.v1.bak"
    for p in aws.state_dir.glob("state.db-*"):
        p.unlink()
    db_path.write_bytes(b"this is not an SQLite database, it was overwritten\n" * 100)

    r = aws.cli("run", "--date", RUN_DATE)
    line = assert_ledger_error(r, 74, db_path, "corrupt", "move it aside", str(copy))
    assert_alerted(aws, "corrupt", str(db_path))
    for command in (
        ["status"],
        ["history"],
        ["status", "--json"],
        ["ls"],
        ["verify"],
        ["prune"],
        ["prune", "--dry-run"],
        ["restore", JOB, "--window", "2026-06-01..2026-10-31", "--to", aws.root],
    ):
        r = aws.cli(*command)
        assert assert_ledger_error(r, 74, db_path, "corrupt") == line, str(r)
    assert len(alerts(aws)) == 1  # only run alerts
    # a batch of jobs stops at the ledger too (it is the same for every job): one line, exit 74
    two = aws.doc | {
        "jobs": aws.doc["jobs"] | {"second": {"table": "mnaas.customer_traffic", "remote_dir": "second"}}
    }
    aws.write_text(to_toml(two))
    for command in (["verify"], ["prune"], ["ls"]):
        r = aws.cli(*command)
        assert assert_ledger_error(r, 74, db_path, "corrupt") == line, str(r)
    aws.write_text(to_toml(aws.doc))

    # the fix the line gives works: move it aside, re-run
    db_path.rename(aws.state_dir / "state.db.broken")
    r = aws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)


@pytest.fixture
def tmpfs_state(aws):
    """The state dir on a 2 MiB tmpfs (root: ``mount -t tmpfs``; never skipped under CI)."""
    aws.state_dir.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(aws.state_dir)], capture_output=True, text=True
    )
    if mount.returncode != 0:
        missing(f"cannot mount a small tmpfs for the state dir: {mount.stderr.strip()}")
    yield aws
    subprocess.run(["umount", "-l", str(aws.state_dir)], capture_output=True)


def fill(folder) -> None:
    with open(folder / "filler", "wb", buffering=0) as f:  # unbuffered: close() has nothing left to flush
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_a_full_disk_under_the_ledger_is_one_error_and_the_alert_still_goes_out(tmpfs_state):
    ws = tmpfs_state
    assert ws.cli("run", "--date", RUN_DATE).rc == 0
    fill(ws.state_dir)
    db_path = ws.state_dir / "state.db"
    r = ws.cli("run", "--date", "2026-12-02")  # a new window: its run needs new rows
    assert_ledger_error(r, 74, db_path, "disk is full", "free space")
    got = alerts(ws)
    assert len(got) == 1 and got[0][0].startswith(f"[tableship] FAILED {JOB} 2026-07-01..2026-11-30"), got
    r = ws.cli("status")  # reading still works on a full disk
    assert r.rc == 0 and "2026-06-01..2026-10-31" in r.stdout, str(r)
    (ws.state_dir / "filler").unlink()
    r = ws.cli("run", "--date", "2026-12-02")
    assert r.rc == 0, str(r)


def test_a_read_only_ledger_is_one_error_and_the_alert_still_goes_out(tmpfs_state):
    ws = tmpfs_state
    assert ws.cli("run", "--date", RUN_DATE).rc == 0
    subprocess.run(["mount", "-o", "remount,ro", str(ws.state_dir)], check=True)
    db_path = ws.state_dir / "state.db"
    r = ws.cli("run", "--date", RUN_DATE)
    assert_ledger_error(r, 74, db_path, "cannot be written", "writable")
    assert_alerted(ws, str(db_path))
    r = ws.cli("history")  # a read-only ledger can still be read
    assert r.rc == 0 and "success" in r.stdout, str(r)
    subprocess.run(["mount", "-o", "remount,rw", str(ws.state_dir)], check=True)
    assert ws.cli("run", "--date", RUN_DATE).rc == 0


@pytest.fixture
def chattr(aws):
    ensure_command("chattr", "e2fsprogs")
    return aws


def test_an_immutable_ledger_is_one_error_and_the_alert_still_goes_out(chattr):
    ws = chattr
    assert ws.cli("run", "--date", RUN_DATE).rc == 0
    db_path = ws.state_dir / "state.db"
    proc = subprocess.run(["chattr", "+i", str(db_path)], capture_output=True, text=True)
    if proc.returncode != 0:  # needs root and a file system with the attribute (ext4, xfs, btrfs)
        missing(f"cannot make the ledger immutable with chattr +i: {proc.stderr.strip()}")
    try:
        r = ws.cli("run", "--date", RUN_DATE)
        assert_ledger_error(r, 74, db_path, "cannot be written", "chattr -i")
        assert_alerted(ws, str(db_path))
        r = ws.cli("status")
        assert r.rc == 0 and "success" in r.stdout, str(r)
    finally:
        subprocess.run(["chattr", "-i", str(db_path)], check=True)
    assert ws.cli("run", "--date", RUN_DATE).rc == 0


def test_a_ledger_locked_by_another_process_is_exit_75_and_the_alert_still_goes_out(aws):
    assert aws.cli("run", "--date", RUN_DATE).rc == 0
    db_path = aws.state_dir / "state.db"
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process keeps a write transaction open
    try:
        r = aws.cli("run", "--date", "2026-12-02")
        assert_ledger_error(r, 75, db_path, "locked", "wait")
        got = alerts(aws)
        assert len(got) == 1 and "locked" in got[0][1], got
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert aws.cli("run", "--date", "2026-12-02").rc == 0
