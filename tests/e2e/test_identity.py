"""Run identity (issue 9, point 1): a run left unfinished is resumed only under the
config it was planned with. After a config change it is abandoned (recorded, its
leftovers removed) and a fresh run ships what the config says now."""

from __future__ import annotations

import json
import re
import shutil

from tests.e2e.helpers import ARCHIVE, JOB, REMOTE_DIR, RUN_DATE, WINDOW, Workspace, decompress, query_rows

NEW_NAME = "traffic_{start:%Y%m}_{end:%Y%m}.csv.gz"
NEW_ARCHIVE = f"traffic_{WINDOW[0]:%Y%m}_{WINDOW[1]:%Y%m}.csv.gz"
IMPALA = {"preset": "impala-shell"}


def leave_exported(ws: Workspace) -> dict:
    """A run that failed at upload: a plain file stands where the job's remote folder goes."""
    blocker = ws.dest / REMOTE_DIR
    blocker.write_text("not a folder")
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 1, str(r)
    run = ws.runs()[-1]
    assert (run["phase"], run["result"], run["failed_phase"]) == ("exported", "failed", "upload"), run
    assert (ws.staging / JOB / ARCHIVE).is_file()
    blocker.unlink()  # the user fixes the destination...
    return run


def leave_uploaded(ws: Workspace) -> dict:
    """A run that failed at verification: the archive landed, its sidecar cannot be written."""
    (ws.dest / REMOTE_DIR / f"{ARCHIVE}.sha256").mkdir(parents=True)
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 1, str(r)
    run = ws.runs()[-1]
    assert (run["phase"], run["result"], run["failed_phase"]) == ("uploaded", "failed", "verify"), run
    assert ws.archive().is_file()  # under the OLD name, unverified
    shutil.rmtree(ws.dest / REMOTE_DIR / f"{ARCHIVE}.sha256")
    return run


def assert_only_new_archive(ws: Workspace, r) -> None:
    assert r.rc == 0, str(r)
    assert ws.files(ws.dest) == sorted(
        [
            f"{REMOTE_DIR}/{NEW_ARCHIVE}",
            f"{REMOTE_DIR}/{NEW_ARCHIVE}.manifest.json",
            f"{REMOTE_DIR}/{NEW_ARCHIVE}.sha256",
        ]
    )
    assert ws.files(ws.staging) == []
    # the summary names the path that landed
    assert f"→ {REMOTE_DIR}/{NEW_ARCHIVE} (run 2," in r.stdout, r.stdout
    # one log line says why the old run was given up
    lines = [line for line in r.stderr.splitlines() if "abandoning it and starting a fresh run" in line]
    assert len(lines) == 1 and "file_name" in lines[0] and "format" in lines[0], r.stderr
    # the new format: impala-shell has no header and writes NULL
    text = decompress(ws.archive(NEW_ARCHIVE)).decode()
    names, rows = query_rows(ws.warehouse, *WINDOW)
    assert not text.startswith(names[0])
    manifest = ws.manifest(NEW_ARCHIVE)
    assert manifest["rows"] == len(rows) and ";NULL;" in text
    assert manifest["file_name"] == NEW_ARCHIVE and manifest["remote_path"] == f"{REMOTE_DIR}/{NEW_ARCHIVE}"
    assert manifest["format"]["preset"] == "impala-shell" and manifest["format"]["null"] == "NULL"
    runs = ws.runs()
    assert [(x["id"], x["result"]) for x in runs] == [(1, "abandoned"), (2, "success")]
    assert "config changed" in runs[0]["error"] and "file_name" in runs[0]["error"]
    assert runs[1]["file_name"] == NEW_ARCHIVE
    # status and ls name it too
    st = ws.cli("status", "--json")
    assert st.rc == 0, str(st)
    assert f"{REMOTE_DIR}/{NEW_ARCHIVE}" in st.stdout
    ls = ws.cli("ls")
    assert NEW_ARCHIVE in ls.stdout and ARCHIVE not in ls.stdout, ls.stdout


def test_resume_after_config_change_from_exported(ws):
    leave_exported(ws)
    ws.write_config(defaults={"file_name": NEW_NAME, "format": IMPALA})
    assert_only_new_archive(ws, ws.cli("run", "--date", RUN_DATE))


def test_resume_after_config_change_from_uploaded(ws):
    leave_uploaded(ws)
    ws.write_config(defaults={"file_name": NEW_NAME, "format": IMPALA})
    assert_only_new_archive(ws, ws.cli("run", "--date", RUN_DATE))


def test_unchanged_config_still_resumes(ws):
    leave_exported(ws)
    st = ws.cli("status", "--date", RUN_DATE)
    assert st.rc == 2, str(st)  # CRITICAL: the latest scheduled window failed
    assert "latest window 2026-06-01..2026-10-31 failed" in st.stdout.splitlines()[-1]
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert "resuming run 1" in r.stderr and "abandoning" not in r.stderr
    assert [x["result"] for x in ws.runs()] == ["success"]

    # status: rows with thousands separators, size with units, the resumed attempt's own duration
    st = ws.cli("status", "--date", RUN_DATE)
    assert st.rc == 0, str(st)
    run = ws.runs()[0]
    header, line = st.stdout.splitlines()[:2]
    names = header.split()
    starts = [header.index(n) for n in names] + [None]
    cells = {n: line[starts[i] : starts[i + 1]].strip() for i, n in enumerate(names)}
    assert cells["ROWS"] == f"{run['rows']:,}" and "," in cells["ROWS"]
    assert cells["ATTEMPTS"] == "2"
    assert re.fullmatch(r"\d+\.\d (KiB|MiB)", cells["SIZE"]), line
    js = json.loads(ws.cli("status", "--json", "--date", RUN_DATE).stdout)[0]
    assert js["attempts"] == 2 and js["bytes"] == run["archive_bytes"]
    assert js["remote_path"] == f"{REMOTE_DIR}/{ARCHIVE}"
    assert 0 <= js["duration"] < js["elapsed"]  # its own attempt, not since the first start
    assert "fingerprint" not in js


def test_table_changed_to_a_missing_table_fails(ws):
    leave_exported(ws)
    ws.write_config(jobs={JOB: {"table": "mnaas.no_such_table"}})
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 1, str(r)
    assert "OK" not in r.stdout and "FAILED" in r.stdout, r.stdout
    assert "no_such_table" in r.stdout
    assert ws.files(ws.dest) == []  # the old rows never ship
    assert ws.files(ws.staging) == []
    assert [(x["id"], x["result"]) for x in ws.runs()] == [(1, "abandoned"), (2, "failed")]
    assert ws.cli("status", "--date", RUN_DATE).rc == 2


def test_fingerprint_names_no_secret():
    from tableship.backup.identity import destination_target, source_target
    from tableship.config.models import SFTPDestination, SQLAlchemySource

    src = SQLAlchemySource(
        type="sqlalchemy", url="postgresql://backup:s3cr3t@db.example:5432/dwh?password=x2"
    )
    assert source_target(src) == "postgresql://db.example:5432/dwh"
    dst = SFTPDestination(type="sftp", host="bk", user="ship", password="hunter2", path="/srv/backup")
    assert destination_target(dst) == "ship@bk:22/srv/backup"
