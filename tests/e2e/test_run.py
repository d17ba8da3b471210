"""``tableship run`` end to end on real DuckDB files: the archive, its sidecars, the
ledger, dry runs, backfills, status/history, staging, re-runs and codecs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pty
import re
import select
import subprocess
import sys

import pytest
from tests.e2e.helpers import (
    ARCHIVE,
    JOB,
    REMOTE_DIR,
    RUN_DATE,
    TABLE,
    WINDOW,
    Workspace,
    decompress,
    parse_csv_module,
    parse_csv_nulls,
    query_rows,
    screen,
    sha256_file,
)

LOG_TAG = re.compile(r"\[customer_traffic#(\d+)\]")


def run_ok(ws, *args):
    r = ws.cli("run", *args)
    assert r.rc == 0, str(r)
    assert not r.error_lines and "Traceback" not in r.stderr, str(r)
    return r


# ---------------------------------------------------------------- the archive and its sidecars


@pytest.fixture(scope="module")
def done(tmp_path_factory, small_warehouse):
    """One default run, shared by the tests that only inspect its outcome."""
    ws = Workspace(tmp_path_factory.mktemp("done") / "ws", small_warehouse)
    ws.write_config()
    return ws, run_ok(ws, "--date", RUN_DATE)


def test_archive_content_equals_the_window_rows(done, tmp_path):
    ws, r = done
    archive = ws.archive()
    assert sorted(ws.files(ws.dest)) == [
        f"{REMOTE_DIR}/{ARCHIVE}",
        f"{REMOTE_DIR}/{ARCHIVE}.manifest.json",
        f"{REMOTE_DIR}/{ARCHIVE}.sha256",
    ]

    # the system gzip decompresses it (into a file, like a user would)
    copy = tmp_path / ARCHIVE
    copy.write_bytes(archive.read_bytes())
    subprocess.run(["gzip", "-d", str(copy)], check=True)
    raw = (tmp_path / ARCHIVE.removesuffix(".gz")).read_bytes()
    assert raw == decompress(archive)
    text = raw.decode("utf-8")

    names, expected = query_rows(ws.warehouse, *WINDOW)
    expected.sort(key=lambda row: int(row[0]))

    # Python's csv module with the declared dialect: exactly the window's rows
    rows = parse_csv_module(text)
    assert rows[0] == names  # header
    body = sorted(rows[1:], key=lambda row: int(row[0]))
    assert [row[0] for row in body] == [row[0] for row in expected]  # ids
    assert body == [["" if v is None else v for v in row] for row in expected]  # values

    # NULL stays apart from the empty string: NULL is an unquoted empty field, '' is ""
    strict = parse_csv_nulls(text)
    assert strict[0] == names
    assert sorted(strict[1:], key=lambda row: int(row[0])) == expected

    # the data really exercised the awkward cases
    name_col = names.index("customer_name")
    values = [row[name_col] for row in expected]
    assert None in values and "" in values
    assert any(v and ";" in v for v in values)
    assert any(v and '"' in v for v in values)
    assert any(v and "\n" in v for v in values)
    assert any(v and not v.isascii() for v in values)
    assert '""' in text and ";;" in text  # an empty string and a NULL as they are written

    # the summary line
    assert re.search(
        rf"^{JOB} 2026-06-01..2026-10-31: OK, {len(expected)} rows, .* → {REMOTE_DIR}/{ARCHIVE} \(run 1,",
        r.stdout,
        re.M,
    ), r.stdout


def test_sha256_sidecar_passes_sha256sum_c(done):
    ws, _ = done
    folder = ws.archive().parent
    sidecar = (folder / f"{ARCHIVE}.sha256").read_text()
    assert sidecar == f"{sha256_file(ws.archive())}  {ARCHIVE}\n"
    proc = subprocess.run(
        ["sha256sum", "-c", f"{ARCHIVE}.sha256"], cwd=folder, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"{ARCHIVE}: OK"


def test_manifest(done):
    ws, _ = done
    m = ws.manifest()
    archive = ws.archive()
    names, expected = query_rows(ws.warehouse, *WINDOW)
    assert m["rows"] == len(expected)
    assert m["sha256"] == sha256_file(archive)
    assert m["archive_bytes"] == archive.stat().st_size
    assert m["csv_bytes"] == len(decompress(archive))
    assert m["job"] == JOB and m["table"] == TABLE
    assert m["window"] == {"start": "2026-06-01", "end": "2026-10-31"}
    assert [c["name"] for c in m["columns"]] == names
    types = {c["name"]: c["type"] for c in m["columns"]}
    assert types["cdr_id"] == "BIGINT" and types["partition_date"] == "DATE"
    assert types["charge_amount"] == "DECIMAL(18,4)" and types["roaming"] == "BOOLEAN"
    assert m["format"] == {"delimiter": ";", "header": True, "null": "", "quoting": "minimal"}
    assert m["compression"] == {"codec": "gzip", "level": 6}
    assert "partition_date" in m["query"] and "2026-06-01" in m["query"] and "2026-10-31" in m["query"]
    assert m["query_params"] == ["2026-06-01", "2026-10-31"]
    assert m["file_name"] == ARCHIVE
    dt.datetime.fromisoformat(m["created_at"])
    from tableship.core.version import __version__

    assert m["tableship_version"] == __version__


def test_ledger_log_lines_and_no_progress_when_not_a_tty(done):
    ws, r = done
    runs = ws.runs()
    assert len(runs) == 1
    run = runs[0]
    assert (run["phase"], run["result"], run["attempts"]) == ("done", "success", 1)
    assert [t[1] for t in ws.transitions(run["id"])] == [
        "planned",
        "exported",
        "uploaded",
        "verified",
        "done",
    ]
    # every log line of the run carries [job#run]; not a terminal: plain lines, no progress display
    log_lines = [
        line for line in r.stderr.splitlines() if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ ", line)
    ]
    assert len(log_lines) >= 4 and log_lines == [line for line in r.stderr.splitlines() if line.strip()]
    assert all(LOG_TAG.search(line) and LOG_TAG.search(line).group(1) == "1" for line in log_lines), log_lines
    assert "\r" not in r.stderr and "MiB/s" not in r.stderr
    assert "\r" not in r.stdout
    # the log file gets the same tagged lines
    log_file = (ws.state_dir / "tableship.core.log").read_text()
    assert "[customer_traffic#1] exported" in log_file


def test_progress_display_on_a_terminal(ws):
    """On a terminal the export shows a progress display (rows, bytes, rate), cleared at its end."""
    pid, fd = pty.fork()
    if pid == 0:  # child: stdin/stdout/stderr are the pty
        os.chdir(ws.cwd)
        os.execv(sys.executable, ws.argv(["run", "--date", RUN_DATE]))
    chunks = []
    while True:
        try:
            ready, _, _ = select.select([fd], [], [], 120)
            if not ready:
                break
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert re.search(r"customer_traffic: [\d,]+ rows, [\d.,]+ MiB CSV, [\d.,]+ MiB/s", out), out
    # the live line is erased when the export ends: the screen keeps the log and summary lines only
    shown = screen(out)
    assert shown and not any("MiB/s" in line for line in shown), shown
    assert any("exported" in line for line in shown) and any(
        "customer_traffic" in line for line in shown[-3:]
    )


# ---------------------------------------------------------------- dry run


def test_dry_run_prints_the_plan_and_touches_nothing(ws):
    r = run_ok(ws, "--date", RUN_DATE, "--dry-run")
    out = r.stdout
    assert "window 2026-06-01..2026-10-31" in out
    assert (
        'SELECT * FROM "mnaas"."customer_traffic" WHERE "partition_date" >= ? AND "partition_date" <= ?'
        in out
    )
    assert "'2026-06-01', '2026-10-31'" in out  # the bound values
    assert ARCHIVE in out and f"{ARCHIVE}.sha256" in out and f"{ARCHIVE}.manifest.json" in out
    assert f"{ws.dest}/{REMOTE_DIR}/{ARCHIVE}" in out
    assert ws.runs() == []
    assert ws.files(ws.dest) == []
    # no ledger, no lock, no staging, no log file
    assert not ws.state_dir.exists() or ws.files(ws.state_dir) == []


def test_dry_run_of_a_backfill_window(ws):
    r = run_ok(ws, "--from", "2026-02-01", "--to", "2026-02-28", "--dry-run")
    assert "window 2026-02-01..2026-02-28" in r.stdout
    assert "customer_traffic_20260201_20260228.csv.gz" in r.stdout
    assert ws.runs() == [] and ws.files(ws.dest) == []


# ---------------------------------------------------------------- backfill


def test_backfill_from_to(ws):
    run_ok(ws, "--from", "2026-02-01", "--to", "2026-03-15")
    name = "customer_traffic_20260201_20260315.csv.gz"
    _, expected = query_rows(ws.warehouse, dt.date(2026, 2, 1), dt.date(2026, 3, 15))
    m = ws.manifest(name)
    assert m["window"] == {"start": "2026-02-01", "end": "2026-03-15"} and m["rows"] == len(expected)
    rows = parse_csv_nulls(decompress(ws.archive(name)).decode())
    assert sorted(rows[1:], key=lambda row: int(row[0])) == expected
    assert {row[1] for row in rows[1:]} >= {"2026-02-01", "2026-03-15"}
    run = ws.runs()[-1]
    assert (run["window_start"], run["window_end"]) == ("2026-02-01", "2026-03-15")


def test_single_day_backfill(ws):
    run_ok(ws, "--from", "2026-02-28", "--to", "2026-02-28")
    rows = parse_csv_nulls(decompress(ws.archive("customer_traffic_20260228_20260228.csv.gz")).decode())
    assert {row[1] for row in rows[1:]} == {"2026-02-28"}


# ---------------------------------------------------------------- status and history


def test_status_and_history(ws):
    assert ws.cli("status").rc == 1  # WARNING: never run
    r = ws.cli("status", "--json")
    assert r.rc == 1, str(r)
    assert json.loads(r.stdout)[0]["result"] == "never run"

    run_ok(ws, "--date", RUN_DATE)
    run_ok(ws, "--from", "2026-01-01", "--to", "2026-01-31")
    r = ws.cli("status", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    header, line = r.stdout.splitlines()[:2]
    assert header.split() == [
        "JOB",
        "RUN",
        "WINDOW",
        "PHASE",
        "RESULT",
        "ROWS",
        "SIZE",
        "ATTEMPTS",
        "STARTED",
        "DURATION",
    ]
    assert line.split()[:5] == [JOB, "2", "2026-01-01..2026-01-31", "done", "success"]
    assert r.stdout.splitlines()[-1] == "OK: 1 job, all windows verified"

    rows = json.loads(ws.cli("status", "--json", "--date", RUN_DATE).stdout)
    assert len(rows) == 1
    s = rows[0]
    runs = ws.runs()
    assert (s["job"], s["run"], s["phase"], s["result"]) == (JOB, 2, "done", "success")
    assert s["rows"] == runs[1]["rows"] and s["bytes"] == runs[1]["archive_bytes"] > 0
    assert s["window"] == "2026-01-01..2026-01-31" and s["started"] and s["duration"] is not None

    h = json.loads(ws.cli("history", "--json").stdout)
    assert [x["run"] for x in h] == [2, 1]  # newest first
    assert h[1]["window"] == "2026-06-01..2026-10-31" and h[1]["rows"] == runs[0]["rows"]
    h = json.loads(ws.cli("history", JOB, "--limit", "1", "--json").stdout)
    assert [x["run"] for x in h] == [2]
    text = ws.cli("history", JOB).stdout.splitlines()
    assert len(text) == 3 and text[1].split()[1] == "2" and text[2].split()[1] == "1"


# ---------------------------------------------------------------- staging


def test_staging_is_empty_after_success(done):
    ws, _ = done
    assert ws.files(ws.staging) == []


def test_keep_local_keeps_the_staged_archive(ws):
    ws.write_config(defaults={"keep_local": True})
    run_ok(ws, "--date", RUN_DATE)
    staged = ws.staging / JOB / ARCHIVE
    assert ws.files(ws.staging) == [f"{JOB}/{ARCHIVE}"]
    assert staged.read_bytes() == ws.archive().read_bytes()


# ---------------------------------------------------------------- re-runs and resume


def test_rerun_of_a_done_window_starts_a_new_run_with_the_same_content(ws):
    run_ok(ws, "--date", RUN_DATE)
    first = decompress(ws.archive())
    sha1 = ws.manifest()["sha256"]
    r = run_ok(ws, "--date", "2026-11-30")  # same window, another day of the month
    runs = ws.runs()
    assert [(x["id"], x["phase"], x["result"]) for x in runs] == [
        (1, "done", "success"),
        (2, "done", "success"),
    ]
    assert runs[0]["window_start"] == runs[1]["window_start"]
    assert decompress(ws.archive()) == first
    assert "run 2 of customer_traffic" in r.stderr
    # the compression is deterministic: identical archive, so the upload is skipped
    assert ws.manifest()["sha256"] == sha1 == runs[1]["sha256"]
    assert "already on the destination with the same sha256" in r.stderr


def block_upload(ws):
    """A file where the job's remote folder must go: the export succeeds, the upload fails
    (a missing destination root is caught before exporting: see test_validation.py)."""
    (ws.dest / REMOTE_DIR).write_text("in the way")


def unblock_upload(ws):
    (ws.dest / REMOTE_DIR).unlink()


def test_failed_upload_resumes_without_exporting_again(ws):
    block_upload(ws)
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 1, str(r)
    run = ws.runs()[0]
    assert (run["phase"], run["result"], run["failed_phase"]) == ("exported", "failed", "upload")
    staged = ws.staging / JOB / ARCHIVE
    assert staged.is_file() and sha256_file(staged) == run["sha256"]

    unblock_upload(ws)
    r = run_ok(ws, "--date", RUN_DATE)
    assert "resuming run 1" in r.stderr and "at phase exported" in r.stderr
    runs = ws.runs()
    assert len(runs) == 1 and (runs[0]["phase"], runs[0]["result"], runs[0]["attempts"]) == (
        "done",
        "success",
        2,
    )
    assert [t[:2] for t in ws.transitions(1)] == [  # not exported again
        (None, "planned"),
        ("planned", "exported"),
        ("exported", "exported"),  # (resumed)
        ("exported", "uploaded"),
        ("uploaded", "verified"),
        ("verified", "done"),
    ]
    assert ws.transitions(1)[2][2] == "resumed"
    assert "exporting" not in r.stderr
    archive = ws.archive()
    assert sha256_file(archive) == runs[0]["sha256"]
    assert not staged.exists()  # and the staging was cleaned


def test_changed_staged_archive_is_exported_again(ws):
    block_upload(ws)
    assert ws.cli("run", "--date", RUN_DATE).rc == 1
    staged = ws.staging / JOB / ARCHIVE
    staged.write_bytes(b"corrupted")
    unblock_upload(ws)
    r = run_ok(ws, "--date", RUN_DATE)
    assert "does not match its recorded sha256; exporting again" in r.stderr
    names, expected = query_rows(ws.warehouse, *WINDOW)
    rows = parse_csv_nulls(decompress(ws.archive()).decode())
    assert sorted(rows[1:], key=lambda row: int(row[0])) == expected


def test_a_different_window_starts_fresh_and_finishes_the_old_one(ws):
    ws.write_config(destinations={"backup": {"type": "local", "path": "missing-folder"}})
    assert ws.cli("run", "--date", RUN_DATE).rc == 1  # run 1 fails for June..October
    (ws.root / "missing-folder").mkdir()
    r = run_ok(ws, "--date", "2026-12-01")  # July..November: a new run, and run 1 is finished first
    runs = ws.runs()
    assert [(x["id"], x["window_start"], x["phase"]) for x in runs] == [
        (1, "2026-06-01", "done"),
        (2, "2026-07-01", "done"),
    ]
    assert "resuming run 1" in r.stderr
    assert r.stderr.index("resuming run 1") < r.stderr.index("run 2 of")  # oldest window first


# ---------------------------------------------------------------- codecs


def test_codecs_give_identical_csv_bytes(ws):
    jobs = {
        "gz": {"table": TABLE, "compression": {"codec": "gzip", "level": 1}, "file_name": "{job}.csv.gz"},
        "gz9": {"table": TABLE, "compression": {"codec": "gzip", "level": 9}, "file_name": "{job}.csv.gz"},
        "zst": {"table": TABLE, "compression": {"codec": "zstd", "level": 3}, "file_name": "{job}.csv.zst"},
        "plain": {"table": TABLE, "compression": {"codec": "none"}, "file_name": "{job}.csv"},
    }
    ws.write_config(jobs, defaults={"remote_dir": "{job}"})
    r = run_ok(ws, "--date", RUN_DATE)  # no job named: all of them
    assert r.stdout.count(": OK,") == 4
    contents = {
        job: decompress(ws.dest / job / spec["file_name"].replace("{job}", job), spec["compression"]["codec"])
        for job, spec in jobs.items()
    }
    assert len({hashlib.sha256(c).hexdigest() for c in contents.values()}) == 1
    assert ws.manifest("plain.csv", "plain")["sha256"] == hashlib.sha256(contents["plain"]).hexdigest()
    for job, spec in jobs.items():
        name = spec["file_name"].replace("{job}", job)
        proc = subprocess.run(["sha256sum", "-c", f"{name}.sha256"], cwd=ws.dest / job, capture_output=True)
        assert proc.returncode == 0
        assert ws.manifest(name, job)["compression"]["codec"] == spec["compression"]["codec"]


# ---------------------------------------------------------------- several jobs, selection


def test_named_jobs_and_all(ws):
    jobs = {"a": {"table": TABLE, "remote_dir": "a"}, "b": {"table": TABLE, "remote_dir": "b"}}
    ws.write_config(jobs)
    r = run_ok(ws, "b", "--date", RUN_DATE)
    assert r.stdout.startswith("b 2026-06-01..2026-10-31: OK") and ws.files(ws.dest / "a") == []
    r = run_ok(ws, "--all", "--date", RUN_DATE)
    summaries = [line.split()[0] for line in r.stdout.splitlines() if ": OK, " in line]
    assert sorted(summaries) == ["a", "b"]  # both ran (at once: settings.max_jobs = 2), then the table
    assert (ws.dest / "a" / ARCHIVE).is_file()


def test_empty_window_fails_unless_allowed(ws):
    r = ws.cli("run", "--from", "2020-01-01", "--to", "2020-01-31")
    assert r.rc == 1 and "has no rows" in r.stderr, str(r)
    ws.write_config(defaults={"on_empty": "ok"})
    run_ok(ws, "--from", "2020-01-01", "--to", "2020-01-31")
    text = decompress(ws.archive("customer_traffic_20200101_20200131.csv.gz")).decode()
    assert text.count("\n") == 1 and text.startswith("cdr_id;partition_date;")  # header only
    assert ws.manifest("customer_traffic_20200101_20200131.csv.gz")["rows"] == 0


# ---------------------------------------------------------------- partition column types


def test_partition_column_types_through_the_cli(ws):
    """DATE, 'YYYY-MM-DD' text and YYYYMMDD integer partition columns (detected, and declared)
    select the same rows of a copy of the demo table."""
    import duckdb

    wh = ws.root / "typed.duckdb"
    con = duckdb.connect(str(wh))
    try:
        con.execute(f"ATTACH '{ws.warehouse}' AS src (READ_ONLY)")
        con.execute("CREATE SCHEMA t")
        con.execute("CREATE TABLE t.as_date AS SELECT * FROM src.mnaas.customer_traffic")
        con.execute(
            "CREATE TABLE t.as_text AS SELECT * REPLACE (strftime(partition_date, '%Y-%m-%d') AS "
            "partition_date) "
            "FROM src.mnaas.customer_traffic"
        )
        con.execute(
            "CREATE TABLE t.as_int AS SELECT * REPLACE (CAST(strftime(partition_date, '%Y%m%d') AS INTEGER) "
            "AS partition_date) FROM src.mnaas.customer_traffic"
        )
    finally:
        con.close()
    jobs = {
        "date": {"table": "t.as_date"},
        "text": {"table": "t.as_text"},
        "int": {"table": "t.as_int"},
        "int_declared": {"table": "t.as_int", "partition_type": "int", "partition_format": "%Y%m%d"},
        "text_declared": {"table": "t.as_text", "partition_type": "string", "partition_format": "%Y-%m-%d"},
    }
    ws.write_config(
        jobs,
        sources={"warehouse": {"type": "duckdb", "path": "typed.duckdb"}},
        defaults={
            "remote_dir": "{job}",
            "file_name": "{job}.csv.gz",
            "window": {"unit": "month", "count": 1},
        },
    )
    r = run_ok(ws, "--date", "2026-03-10")  # February 2026
    assert r.stdout.count(": OK,") == 5
    _, expected = query_rows(ws.warehouse, dt.date(2026, 2, 1), dt.date(2026, 2, 28))
    ids = sorted(int(row[0]) for row in expected)
    for job in jobs:
        rows = parse_csv_nulls(decompress(ws.dest / job / f"{job}.csv.gz").decode())[1:]
        assert sorted(int(row[0]) for row in rows) == ids, job
    bound = {job: ws.manifest(f"{job}.csv.gz", job)["query_params"] for job in jobs}
    assert bound["date"] == ["2026-02-01", "2026-02-28"]
    assert bound["text"] == bound["text_declared"] == ["2026-02-01", "2026-02-28"]
    assert bound["int"] == bound["int_declared"] == [20260201, 20260228]
