"""Every user mistake listed under **Errors** in the core issue: the exit code (2 for
usage/config, 1 for a job failure), exactly one ``Error: <what> — <what to do>`` line on
stderr, no traceback, and no file left under a final name."""

from __future__ import annotations

import os
import subprocess

import pytest
from tests.e2e.helpers import ARCHIVE, JOB, RUN_DATE, TABLE, assert_clean_error
from tests.servers import ensure_command, missing


def nothing_written(ws) -> None:
    """Nothing at all was run: no ledger row, no staging, nothing on the destination."""
    assert ws.runs() == []
    assert ws.files(ws.dest) == []
    assert ws.files(ws.staging) == []


def nothing_delivered(ws) -> None:
    """A failed job: nothing on the destination, no temporaries anywhere, any staged archive complete."""
    assert ws.files(ws.dest) == [], ws.files(ws.dest)
    assert ws.temporaries() == []
    ws.assert_no_partial_final_files()


# ---------------------------------------------------------------- usage and configuration: exit 2


def test_unknown_job(ws):
    r = ws.cli("run", "nosuch", "--date", RUN_DATE)
    assert_clean_error(r, 2, "unknown job 'nosuch'", JOB)
    nothing_written(ws)


def test_unknown_job_in_history(ws):
    assert_clean_error(ws.cli("history", "nosuch"), 2, "unknown job 'nosuch'")


def test_missing_config_file(ws):
    r = ws.cli("run", config=ws.root / "nope.toml")
    assert_clean_error(r, 2, "nope.toml", "not found", "--config")
    r = ws.cli("status", config=False)  # no --config: ./tableship.toml in the working directory
    assert_clean_error(r, 2, "tableship.toml", "not found")
    r = ws.cli("status", config=False, env={"TABLESHIP_CONFIG": str(ws.root / "env.toml")})
    assert_clean_error(r, 2, "env.toml", "not found")


def test_config_from_the_environment_variable(ws):
    r = ws.cli(
        "run", "--date", RUN_DATE, "--dry-run", config=False, env={"TABLESHIP_CONFIG": str(ws.config_path)}
    )
    assert r.rc == 0, str(r)


def test_malformed_toml_shows_the_line(ws):
    ws.write_text('[settings]\nstate_dir = ".tableship"\n\n[jobs.customer_traffic\ntable = "x"\n')
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 2, "invalid TOML", "line 4")
    nothing_written(ws)


def test_unknown_key(ws):
    ws.write_config({JOB: {"table": TABLE, "keep_locall": True}})
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 2, f"jobs.{JOB}.keep_locall: unknown key")
    nothing_written(ws)


def test_bad_value(ws):
    ws.write_config({JOB: {"table": TABLE, "window": {"unit": "fortnight", "count": 0}}})
    r = ws.cli("run", "--date", RUN_DATE)
    line = assert_clean_error(r, 2, f"jobs.{JOB}.window", "1 more problem")
    assert "config validate" in line
    nothing_written(ws)


def test_config_validate_lists_every_problem(ws):
    ws.write_config(
        {
            JOB: {"table": TABLE, "window": {"unit": "fortnight", "count": 0}, "tabel": "x"},
            "other": {"table": "x; DROP TABLE y"},
        }
    )
    r = ws.cli("config", "validate")
    assert r.rc == 2, str(r)
    keys = sorted(line.split(": ")[2] for line in r.error_lines)
    assert keys == [
        f"jobs.{JOB}.tabel",
        f"jobs.{JOB}.window.count",
        f"jobs.{JOB}.window.unit",
        "jobs.other.table",
    ]
    assert "Traceback" not in r.stderr
    ws.write_config()
    r = ws.cli("config", "validate")
    assert r.rc == 0 and r.stdout.startswith("OK: ") and f"{JOB}: {TABLE}" in r.stdout, str(r)


def test_sql_injection_in_table_is_a_config_error(ws):
    ws.write_config({JOB: {"table": "x; DROP TABLE y"}})
    for args in (["run", "--date", RUN_DATE], ["run", "--dry-run"]):
        r = ws.cli(*args)
        assert_clean_error(r, 2, f"jobs.{JOB}.table", "x; DROP TABLE y", "not a plain identifier")
    r = ws.cli("config", "validate")
    assert r.rc == 2 and len(r.error_lines) == 1 and f"jobs.{JOB}.table" in r.error_lines[0]
    nothing_written(ws)


def test_missing_env_var_is_named(ws):
    ws.write_config(sources={"warehouse": {"type": "duckdb", "path": "${TS_E2E_NOPE}/w.duckdb"}})
    assert "TS_E2E_NOPE" not in os.environ
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 2, "sources.warehouse.path", "environment variable TS_E2E_NOPE is not set")
    nothing_written(ws)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--date", "2026-02-30"], ["--date", "2026-02-30", "not a valid date"]),
        (["--date", "2025-02-29"], ["2025-02-29"]),
        (["--date", "26-11-2026"], ["26-11-2026"]),
        (["--date", "tomorrow"], ["tomorrow"]),
        (["--from", "2026-04-31", "--to", "2026-05-31"], ["--from", "2026-04-31"]),
        (["--from", "2026-04-01", "--to", "2026-13-01"], ["--to", "2026-13-01"]),
        (["--from", "2026-06-01", "--to", "2026-05-31"], ["--from 2026-06-01 is after --to 2026-05-31"]),
        (["--from", "2026-06-01"], ["--from and --to must be given together"]),
        (["--to", "2026-06-01"], ["--from and --to must be given together"]),
        (["--wait", "-1"], ["--wait"]),
        (["--bogus"], ["--bogus"]),
        (["--all", JOB], ["--all"]),
    ],
    ids=[
        "feb-30",
        "not-leap",
        "dmy",
        "word",
        "bad-from",
        "bad-to",
        "from-after-to",
        "from-only",
        "to-only",
        "negative-wait",
        "unknown-option",
        "all-and-job",
    ],
)
def test_bad_command_line(ws, args, needles):
    r = ws.cli("run", *args)
    assert_clean_error(r, 2, *needles)
    nothing_written(ws)


def test_unknown_command(ws):
    assert_clean_error(ws.cli("rn"), 2, "rn")


# ---------------------------------------------------------------- job failures at run time: exit 1


def test_table_not_found_at_run_time_is_a_job_failure(ws):
    ws.write_config({JOB: {"table": "mnaas.dropped_upstream"}})
    assert ws.cli("config", "validate").rc == 0  # a valid configuration...
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "mnaas.dropped_upstream", "not found")  # ...whose table is gone: exit 1
    assert "FAILED" in r.stdout
    run = ws.runs()[0]
    assert (run["result"], run["failed_phase"]) == ("failed", "export")
    nothing_delivered(ws)
    assert ws.files(ws.staging) == []


def test_column_not_found(ws):
    ws.write_config({JOB: {"table": TABLE, "partition_column": "part_date"}})
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "column 'part_date' not found", "partition_column")
    nothing_delivered(ws)
    assert ws.files(ws.staging) == []


def test_column_not_found_with_explicit_type(ws):
    ws.write_config({JOB: {"table": TABLE, "partition_column": "part_date", "partition_type": "date"}})
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "part_date")
    nothing_delivered(ws)
    assert ws.files(ws.staging) == []


def test_source_file_missing(ws):
    ws.write_config(sources={"warehouse": {"type": "duckdb", "path": "no-such-warehouse.duckdb"}})
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, str(ws.root / "no-such-warehouse.duckdb"), "does not exist")
    nothing_delivered(ws)
    r = ws.cli("run", "--date", RUN_DATE, "--dry-run")
    assert r.rc == 1 and len(r.error_lines) == 1 and "Traceback" not in r.stderr, str(r)


def test_source_file_is_not_a_duckdb_database(ws):
    (ws.root / "junk.duckdb").write_bytes(b"this is not a database" * 100)
    ws.write_config(sources={"warehouse": {"type": "duckdb", "path": "junk.duckdb"}})
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "junk.duckdb")
    nothing_delivered(ws)


def test_destination_folder_missing(ws):
    ws.write_config(destinations={"backup": {"type": "local", "path": "no-such-folder"}})
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "no-such-folder", "does not exist", "mkdir -p")
    assert not (ws.root / "no-such-folder").exists()
    nothing_delivered(ws)


def test_destination_is_a_file(ws):
    (ws.root / "a-file").write_text("not a folder")
    ws.write_config(destinations={"backup": {"type": "local", "path": "a-file"}})
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "a-file")
    assert (ws.root / "a-file").read_text() == "not a folder"
    nothing_delivered(ws)


def test_destination_subfolder_blocked_by_a_file(ws):
    (ws.dest / "customer_traffic").write_text("in the way")  # remote_dir cannot be created
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "customer_traffic")
    assert ws.files(ws.dest) == ["customer_traffic"]
    assert ws.temporaries() == []
    ws.assert_no_partial_final_files(ignore=(ws.dest / "customer_traffic",))


@pytest.fixture
def immutable_dest(ws):
    """A destination folder even root cannot write into (ext4 immutable attribute)."""
    ensure_command("chattr", "e2fsprogs")
    folder = ws.dest / "customer_traffic"
    folder.mkdir()
    proc = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if proc.returncode != 0:  # needs root and a file system with the attribute (ext4, xfs, btrfs)
        missing(f"cannot make a folder immutable with chattr +i: {proc.stderr.strip()}")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_destination_not_writable(ws, immutable_dest):
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "permission denied", "writable")
    assert ws.files(immutable_dest) == []
    run = ws.runs()[0]
    assert (run["phase"], run["failed_phase"]) == ("exported", "upload")
    assert ws.temporaries() == []
    ws.assert_no_partial_final_files()  # the staged archive is complete (kept for the resume)
    subprocess.run(["chattr", "-i", str(immutable_dest)], check=True)
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert ws.runs()[0]["attempts"] == 2 and (immutable_dest / ARCHIVE).is_file()


def test_one_failing_job_does_not_stop_the_others(ws):
    ws.write_config(
        {"broken": {"table": "mnaas.nope", "remote_dir": "b"}, "good": {"table": TABLE, "remote_dir": "g"}}
    )
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "broken", "mnaas.nope")
    assert "good 2026-06-01..2026-10-31: OK" in r.stdout
    assert (ws.dest / "g" / ARCHIVE).is_file() and ws.files(ws.dest / "b") == []


def test_debug_shows_the_traceback(ws):
    r = ws.cli("--debug", "run", "nosuch")
    assert r.rc == 2 and "Traceback" in r.stderr and r.error_lines


@pytest.mark.parametrize(
    "settings",
    [{"state_dir": "a-file"}, {"log_file": "a-file/tableship.core.log"}],
    ids=["state_dir", "log_file"],
)
def test_local_paths_that_are_files(ws, settings):
    (ws.root / "a-file").write_text("in the way")
    ws.write_config(settings=settings)
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 74 if "state_dir" in settings else 1, "a-file", "check that path")  # 74: the ledger
    assert "unexpected" not in r.stderr
    assert (ws.root / "a-file").read_text() == "in the way"
    assert ws.files(ws.dest) == []
