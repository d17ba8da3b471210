"""Several destinations per job (issue 12 point 3), on local folders: one export, then
upload + verify + sidecars on each destination, each its own delivery in the ledger; a
failing destination neither redoes the export nor the deliveries that succeeded.
(The same with a real sshd that is down: tests/integration/test_multi_destinations_sftp.py.)"""

from __future__ import annotations

import json
import sqlite3

from tests.e2e.helpers import ARCHIVE, JOB, REMOTE_DIR, RUN_DATE, TABLE, sha256_file


def two(ws):
    ws.second = ws.root / "second-server"
    ws.second.mkdir(exist_ok=True)
    dests = {
        "backup": {"type": "local", "path": "backup-server"},
        "second": {"type": "local", "path": "second-server"},
    }
    ws.write_config({JOB: {"table": TABLE, "destinations": ["backup", "second"]}}, destinations=dests)
    return ws


def deliveries(ws) -> list[dict]:
    db = sqlite3.connect(f"file:{ws.state_dir / 'state.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM deliveries ORDER BY run_id, destination")]
    finally:
        db.close()


def exports(ws, run_id: int) -> int:
    return sum(1 for t in ws.transitions(run_id) if t[1] == "exported" and t[0] == "planned")


def sidecars_ok(folder, name: str = ARCHIVE, dest: str | None = None) -> dict:
    digest = sha256_file(folder / REMOTE_DIR / name)
    assert (folder / REMOTE_DIR / f"{name}.sha256").read_text() == f"{digest}  {name}\n"
    manifest = json.loads((folder / REMOTE_DIR / f"{name}.manifest.json").read_text())
    assert manifest["sha256"] == digest
    if dest:
        assert manifest["destination"] == dest
    return manifest


def test_one_export_two_verified_deliveries(ws):
    two(ws)
    r = ws.cli("config", "validate")
    assert r.rc == 0 and "to backup, second" in r.stdout, str(r)
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert exports(ws, 1) == 1
    m1 = sidecars_ok(ws.dest, dest="backup")
    m2 = sidecars_ok(ws.second, dest="second")
    assert m1["sha256"] == m2["sha256"] and m1["destinations"] == ["backup", "second"]
    got = deliveries(ws)
    assert [(d["destination"], d["phase"], d["result"]) for d in got] == [
        ("backup", "verified", "success"),
        ("second", "verified", "success"),
    ]
    assert all(d["remote_path"] == f"{REMOTE_DIR}/{ARCHIVE}" and d["sha256"] == m1["sha256"] for d in got)
    assert all(d["verified_at"] for d in got)
    assert ws.files(ws.staging) == []  # removed once every delivery is verified


def test_a_failing_destination_keeps_the_other_copy_and_the_next_run_only_delivers_it(ws):
    two(ws)
    blocker = ws.second / REMOTE_DIR
    blocker.write_text("not a folder")  # the second destination cannot take the archive
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 1, str(r)
    errors = r.error_lines
    assert (
        len(errors) == 1 and "destination second" in errors[0] and "1 of 2 destinations verified" in errors[0]
    )
    sidecars_ok(ws.dest, dest="backup")  # the first destination got its verified copy
    run = ws.runs()[0]
    assert (run["phase"], run["result"], run["failed_phase"]) == ("exported", "failed", "upload")
    assert (ws.staging / JOB / ARCHIVE).is_file()  # kept until every delivery is verified
    got = {d["destination"]: d for d in deliveries(ws)}
    assert (got["backup"]["phase"], got["backup"]["result"]) == ("verified", "success")
    assert got["second"]["result"] == "failed" and got["second"]["error"]
    first_verified = got["backup"]["verified_at"]

    blocker.unlink()
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert exports(ws, 1) == 1 and len(ws.runs()) == 1  # no new export
    assert "exporting" not in r.stderr
    got = {d["destination"]: d for d in deliveries(ws)}
    assert got["backup"]["verified_at"] == first_verified and got["backup"]["attempts"] == 1  # untouched
    assert (got["second"]["phase"], got["second"]["attempts"]) == ("verified", 2)
    sidecars_ok(ws.second, dest="second")
    assert ws.runs()[0]["phase"] == "done" and ws.files(ws.staging) == []


def test_a_lost_staged_archive_is_exported_again_for_the_missing_delivery_only(ws):
    two(ws)
    blocker = ws.second / REMOTE_DIR
    blocker.write_text("not a folder")
    assert ws.cli("run", "--date", RUN_DATE).rc == 1
    before = sha256_file(ws.dest / REMOTE_DIR / ARCHIVE)
    (ws.staging / JOB / ARCHIVE).unlink()
    blocker.unlink()
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert exports(ws, 1) == 2  # exported again: the staged copy was gone
    assert sha256_file(ws.dest / REMOTE_DIR / ARCHIVE) == before  # the verified copy is not re-sent
    sidecars_ok(ws.second, dest="second")
    sidecars_ok(ws.dest, dest="backup")


def test_destination_and_destinations_together_are_refused(ws):
    ws.write_config({JOB: {"table": TABLE, "destination": "backup", "destinations": ["backup"]}})
    r = ws.cli("config", "validate")
    assert r.rc == 2 and any("both 'destination' and 'destinations'" in x for x in r.error_lines), str(r)


def test_the_same_place_twice_is_refused(ws):
    dests = {
        "backup": {"type": "local", "path": "backup-server"},
        "alias": {"type": "local", "path": "backup-server"},
    }
    ws.write_config({JOB: {"table": TABLE, "destinations": ["backup", "alias"]}}, destinations=dests)
    r = ws.cli("config", "validate")
    assert r.rc == 2 and any("are the same place" in x for x in r.error_lines), str(r)


def test_status_ls_verify_prune_name_the_destination(ws):
    two(ws)
    (ws.second / REMOTE_DIR).write_text("not a folder")
    assert ws.cli("run", "--date", RUN_DATE).rc == 1
    r = ws.cli("status", "--date", RUN_DATE)
    assert f"{JOB}: run 1 on backup verified, second pending (failed)" in r.stdout, str(r)
    rows = json.loads(ws.cli("status", "--json", "--date", RUN_DATE).stdout)
    assert rows[0]["destinations"] == ["backup", "second"]
    assert {d["destination"]: d["result"] for d in rows[0]["deliveries"]} == {
        "backup": "success",
        "second": "failed",
    }
    (ws.second / REMOTE_DIR).unlink()
    assert ws.cli("run", "--date", RUN_DATE).rc == 0

    listed = json.loads(ws.cli("ls", "--json").stdout)
    assert sorted((a["destination"], a["remote_path"]) for a in listed) == [
        ("backup", f"{REMOTE_DIR}/{ARCHIVE}"),
        ("second", f"{REMOTE_DIR}/{ARCHIVE}"),
    ]
    text = ws.cli("ls").stdout
    assert "DESTINATION" in text.splitlines()[0] and "second" in text, text

    # a damaged copy on one destination: verify says which
    (ws.second / REMOTE_DIR / ARCHIVE).write_bytes(b"damaged")
    r = ws.cli("verify", JOB)
    assert r.rc == 1, str(r)
    assert f"{JOB} on backup: 1 archive(s): 1 OK" in r.stdout, str(r)
    assert f"{JOB} on second: 1 archive(s):" in r.stdout and "1 OK" not in r.stdout.split("on second")[1], (
        str(r)
    )
    db = sqlite3.connect(ws.state_dir / "state.db")
    got = sorted(db.execute("SELECT destination, status FROM verifications").fetchall())
    db.close()
    assert got[0] == ("backup", "OK") and got[1][0] == "second" and got[1][1] != "OK", got

    # prune with keep_last = 1 after a second window: each destination prunes its own copies
    ws.write_config(
        {JOB: {"table": TABLE, "destinations": ["backup", "second"], "retention": {"keep_last": 1}}},
        destinations={
            "backup": {"type": "local", "path": "backup-server"},
            "second": {"type": "local", "path": "second-server"},
        },
    )
    (ws.second / REMOTE_DIR / ARCHIVE).unlink()
    for suffix in (".sha256", ".manifest.json"):
        (ws.second / REMOTE_DIR / f"{ARCHIVE}{suffix}").unlink()
    assert ws.cli("run", "--date", RUN_DATE).rc == 0  # (the window's run is done: nothing to redo)
    assert ws.cli("run", "--date", "2026-12-26").rc == 0
    r = ws.cli("prune", JOB, "--dry-run")
    assert r.rc == 0, str(r)
    assert f"would delete {REMOTE_DIR}/{ARCHIVE} (window 2026-06-01..2026-10-31) on backup" in r.stdout, str(
        r
    )


def test_a_run_recorded_before_deliveries_existed_resumes(ws):
    """A run left at phase uploaded by a tableship without the deliveries table (ledger
    step 5 adds it; the migrated run has no delivery row) finishes on the next run."""
    (ws.dest / REMOTE_DIR / f"{ARCHIVE}.sha256").mkdir(parents=True)  # the sidecar cannot be written
    assert ws.cli("run", "--date", RUN_DATE).rc == 1
    assert ws.runs()[0]["phase"] == "uploaded"
    db = sqlite3.connect(ws.state_dir / "state.db")
    db.execute("DELETE FROM deliveries")
    db.commit()
    db.close()
    (ws.dest / REMOTE_DIR / f"{ARCHIVE}.sha256").rmdir()
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert "already on the destination with the same sha256" in r.stderr
    assert ws.runs()[0]["phase"] == "done" and len(ws.runs()) == 1
    assert [(d["destination"], d["phase"]) for d in deliveries(ws)] == [("backup", "verified")]
    sidecars_ok(ws.dest, dest="backup")
