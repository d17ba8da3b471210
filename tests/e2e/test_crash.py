"""Crash tests: the CLI killed (SIGKILL) during export and during delivery, and stopped
by SIGTERM. The next run completes, its content equals an uninterrupted run's, and no
partial file ever exists under a final name (staging or destination)."""

from __future__ import annotations

import hashlib
import signal
import subprocess

import pytest
from tests.e2e.helpers import (
    ARCHIVE,
    JOB,
    REMOTE_DIR,
    RUN_DATE,
    Workspace,
    decompress,
    sha256_file,
    wait_for,
)

from tableship.ledger.state import StateStore

PLAIN = ARCHIVE.removesuffix(".gz")  # the archive name with codec "none"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, big_warehouse) -> dict:
    """An uninterrupted run of the big table: the sha256 of its decompressed CSV."""
    ws = Workspace(tmp_path_factory.mktemp("reference") / "ws", big_warehouse)
    ws.write_config()
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    csv = decompress(ws.archive())
    manifest = ws.manifest()
    assert manifest["rows"] > 1_000_000
    return {"csv_sha256": hashlib.sha256(csv).hexdigest(), "rows": manifest["rows"], "csv_bytes": len(csv)}


def staged_part(ws: Workspace, name: str = ARCHIVE):
    """The export's temporary file, once it holds some data."""
    part = ws.staging / JOB / f"{name}.part"
    try:
        return part.stat().st_size > 1_000_000
    except FileNotFoundError:
        return False


def dest_temporary(ws: Workspace):
    folder = ws.dest / REMOTE_DIR
    try:
        return [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".part")]
    except FileNotFoundError:
        return []


def assert_finished_like_reference(ws: Workspace, reference: dict, name: str = ARCHIVE) -> None:
    archive = ws.archive(name)
    csv = decompress(archive)
    assert hashlib.sha256(csv).hexdigest() == reference["csv_sha256"]
    manifest = ws.manifest(name)
    assert manifest["rows"] == reference["rows"] and manifest["sha256"] == sha256_file(archive)
    proc = subprocess.run(["sha256sum", "-c", f"{name}.sha256"], cwd=archive.parent, capture_output=True)
    assert proc.returncode == 0
    assert ws.files(ws.dest) == sorted(
        [f"{REMOTE_DIR}/{name}", f"{REMOTE_DIR}/{name}.manifest.json", f"{REMOTE_DIR}/{name}.sha256"]
    )  # no temporaries left behind
    assert ws.files(ws.staging) == []
    runs = ws.runs()
    assert len(runs) == 1 and (runs[0]["phase"], runs[0]["result"]) == ("done", "success")


def test_sigkill_during_export(big_ws, reference):
    ws = big_ws
    proc = ws.popen("run", "--date", RUN_DATE)
    try:
        wait_for(lambda: staged_part(ws), proc=proc, what="the export to be under way")
        proc.proc.send_signal(signal.SIGKILL)
        r = proc.wait()
    finally:
        proc.kill()
    assert r.rc == -signal.SIGKILL

    run = ws.runs()[0]
    assert (run["phase"], run["result"]) == ("planned", "running")  # died without a word
    assert ws.files(ws.dest) == []
    assert ws.files(ws.staging) == [f"{JOB}/{ARCHIVE}.part"]  # only a temporary name
    ws.assert_no_partial_final_files()

    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert "resuming run 1" in r.stderr and "at phase planned" in r.stderr
    assert ws.runs()[0]["attempts"] == 2
    assert_finished_like_reference(ws, reference)


def test_sigkill_during_delivery(big_ws, reference):
    """Killed while the archive is being copied to the destination (phase 'exported')."""
    ws = big_ws
    # an uncompressed archive is the biggest: its copy takes the longest, easy to hit
    ws.write_config(
        defaults={"compression": {"codec": "none"}, "file_name": "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv"}
    )
    proc = ws.popen("run", "--date", RUN_DATE)
    try:
        temps = wait_for(
            lambda: dest_temporary(ws), proc=proc, what="the upload to be under way", interval=0.002
        )
        proc.proc.send_signal(signal.SIGKILL)
        r = proc.wait()
    finally:
        proc.kill()
    assert r.rc == -signal.SIGKILL

    run = ws.runs()[0]
    assert (run["phase"], run["result"]) == ("exported", "running")
    staged = ws.staging / JOB / PLAIN
    assert sha256_file(staged) == run["sha256"]  # the staged archive is whole
    assert not ws.archive(PLAIN).exists()  # the final name never held a partial file
    assert dest_temporary(ws) == temps  # only the temporary, under its temporary name
    ws.assert_no_partial_final_files()

    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert "resuming run 1" in r.stderr and "at phase exported" in r.stderr
    assert "exporting" not in r.stderr  # the staged archive was reused
    assert "removed stale temporary" in r.stderr
    assert_finished_like_reference(ws, reference, PLAIN)


def test_sigterm_exits_143_with_a_resumable_state(big_ws):
    ws = big_ws
    proc = ws.popen("run", "--date", RUN_DATE)
    try:
        wait_for(lambda: staged_part(ws), proc=proc, what="the export to be under way")
        proc.proc.send_signal(signal.SIGTERM)
        r = proc.wait()
    finally:
        proc.kill()
    assert r.rc == 128 + signal.SIGTERM, str(r)
    assert r.error_lines == [
        "Error: interrupted by SIGTERM — re-run the same command to resume where it stopped"
    ], str(r)
    assert "Traceback" not in r.stderr

    run = ws.runs()[0]
    assert (run["phase"], run["result"], run["failed_phase"]) == ("planned", "failed", "export")
    assert "interrupted by SIGTERM" in run["error"]
    assert ws.files(ws.staging) == [] and ws.files(ws.dest) == []  # the temporary was removed on the way out
    # resumable: the next run of this window picks run 1 up again (a resumed export is
    # checked end to end by test_sigkill_during_export)
    store = StateStore(ws.state_dir)
    try:
        again = store.resumable(JOB, "2026-06-01", "2026-10-31")
    finally:
        store.close()
    assert again is not None and again.id == run["id"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_other_signals_exit_128_plus_n(big_ws, sig):
    ws = big_ws
    proc = ws.popen("run", "--date", RUN_DATE)
    try:
        wait_for(lambda: staged_part(ws), proc=proc, what="the export to be under way")
        proc.proc.send_signal(sig)
        r = proc.wait()
    finally:
        proc.kill()
    name = signal.Signals(sig).name
    assert r.rc == 128 + sig, str(r)
    assert r.error_lines == [
        f"Error: interrupted by {name} — re-run the same command to resume where it stopped"
    ], str(r)
    assert "Traceback" not in r.stderr
    run = ws.runs()[0]
    assert (run["phase"], run["result"], run["failed_phase"]) == ("planned", "failed", "export")
    assert ws.files(ws.staging) == [] and ws.files(ws.dest) == []


def test_partial_export_of_an_abandoned_window_is_removed(big_ws):
    """Killed during the export of one window; the next run is for another window (the
    month rolled over): after its success no partial export is left in staging."""
    ws = big_ws
    proc = ws.popen("run", "--date", RUN_DATE)
    try:
        wait_for(lambda: staged_part(ws), proc=proc, what="the export to be under way")
        proc.proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    assert ws.files(ws.staging) == [f"{JOB}/{ARCHIVE}.part"]
    r = ws.cli("run", "--from", "2026-11-01", "--to", "2026-11-02")
    assert r.rc == 0, str(r)
    assert "removed stale partial export" in r.stderr
    assert ws.files(ws.staging) == []
    assert [(x["id"], x["phase"]) for x in ws.runs()] == [(1, "planned"), (2, "done")]
