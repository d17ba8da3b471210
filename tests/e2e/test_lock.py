"""One lock per job: a second run of the same job exits 75 naming the holder (or waits
with --wait); different jobs never block each other; a dead holder leaves no stale lock."""

from __future__ import annotations

import json
import os
import signal
import socket

from tests.e2e.helpers import ARCHIVE, JOB, RUN_DATE, TABLE, wait_for

from tableship.ledger.lock import JobLock


def lock_owner(ws, job: str = JOB) -> dict:
    try:
        return json.loads((ws.state_dir / "locks" / f"{job}.lock").read_text() or "{}")
    except (OSError, ValueError):
        return {}


def test_two_concurrent_runs_of_one_job(big_ws):
    ws = big_ws
    first = ws.popen("run", "--date", RUN_DATE, name="first")  # ~1.3M rows: a few seconds
    try:
        # the first run holds the lock once its pid is in the lock file
        wait_for(
            lambda: lock_owner(ws).get("pid") == first.pid, proc=first, what="the first run to take the lock"
        )
        second = ws.cli("run", "--date", RUN_DATE)
        assert first.proc.poll() is None, "the first run ended too early for this test"
    finally:
        r1 = first.wait()
    assert r1.rc == 0, str(r1)
    assert second.rc == 75, str(second)
    holder = f"pid {first.pid} on {socket.gethostname()}"
    assert holder in second.stderr and f"{JOB}: SKIPPED" in second.stdout, str(second)
    assert "Traceback" not in second.stderr
    runs = ws.runs()
    assert len(runs) == 1 and runs[0]["pid"] == first.pid  # the skipped run recorded nothing
    assert ws.archive().is_file()


def test_locked_job_exits_75_naming_the_holder(ws):
    lock = JobLock(ws.state_dir, JOB).acquire()  # this test process holds the job's lock
    try:
        r = ws.cli("run", "--date", RUN_DATE)
    finally:
        lock.release()
    assert r.rc == 75, str(r)
    assert f"job '{JOB}' is already running (pid {os.getpid()} on {socket.gethostname()} since " in r.stderr
    assert "--wait" in r.stderr  # what to do
    assert ws.runs() == [] and ws.files(ws.dest) == []


def has_open(pid: int, path) -> bool:
    """Whether process ``pid`` has ``path`` open (it is trying to take that lock)."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_wait_waits_for_the_lock(ws):
    lock = JobLock(ws.state_dir, JOB).acquire()
    proc = ws.popen("run", "--date", RUN_DATE, "--wait", "120")
    try:
        # the waiting run opened the lock file and polls it; it cannot go further while we hold it
        wait_for(lambda: has_open(proc.pid, lock.path), proc=proc, what="the second run to wait for the lock")
        assert proc.proc.poll() is None
        assert ws.runs() == []
    finally:
        lock.release()
    r = proc.wait()
    assert r.rc == 0, str(r)
    assert "SKIPPED" not in r.stdout
    assert ws.runs()[0]["pid"] == proc.pid and ws.archive().is_file()


def test_wait_times_out_with_75(ws):
    lock = JobLock(ws.state_dir, JOB).acquire()
    try:
        r = ws.cli("run", "--date", RUN_DATE, "--wait", "0.5")
    finally:
        lock.release()
    assert r.rc == 75, str(r)
    assert ws.runs() == []


def test_different_jobs_do_not_block_each_other(ws):
    ws.write_config({"a": {"table": TABLE, "remote_dir": "a"}, "b": {"table": TABLE, "remote_dir": "b"}})
    lock = JobLock(ws.state_dir, "a").acquire()
    try:
        r = ws.cli("run", "b", "--date", RUN_DATE)
        assert r.rc == 0, str(r)
        r = ws.cli("run", "--date", RUN_DATE)  # both: a is skipped, b runs again
    finally:
        lock.release()
    assert r.rc == 0, str(r)  # a locked job is skipped, not failed: 75 only when nothing else ran
    assert "a: SKIPPED" in r.stdout and "b 2026-06-01..2026-10-31: OK" in r.stdout
    assert (ws.dest / "b" / ARCHIVE).is_file() and not (ws.dest / "a").exists()


def test_lock_of_a_killed_run_is_not_stale(big_ws):
    ws = big_ws
    proc = ws.popen("run", "--date", RUN_DATE)
    try:
        wait_for(lambda: lock_owner(ws).get("pid") == proc.pid, proc=proc, what="the run to take the lock")
        proc.proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    # the kernel dropped the flock with the process: the lock can be taken at once
    lock = JobLock(ws.state_dir, JOB).acquire()
    lock.release()
