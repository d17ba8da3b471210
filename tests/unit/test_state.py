"""The SQLite run ledger (tableship.ledger.state): phases, transitions, resume lookup, history."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3

import pytest

from tableship.ledger.state import WORKING_ON, Phase, Result, StateStore, allowed

W = ("2026-06-01", "2026-10-31")


@pytest.fixture
def store(tmp_path):
    s = StateStore(tmp_path / "state")
    yield s
    s.close()


def walk_to(store: StateStore, run, target: Phase):
    while Phase(run.phase) != target:
        run = store.advance(run, Phase(run.phase).next())
    return run


def test_phase_order():
    assert [p.value for p in Phase] == ["planned", "exported", "uploaded", "verified", "done"]
    assert Phase.PLANNED.next() is Phase.EXPORTED
    assert Phase.DONE.next() is None
    assert [p.rank for p in Phase] == [0, 1, 2, 3, 4]
    assert set(WORKING_ON) == set(Phase)


@pytest.mark.parametrize(
    "current, target, ok",
    [
        (Phase.PLANNED, Phase.EXPORTED, True),
        (Phase.EXPORTED, Phase.UPLOADED, True),
        (Phase.VERIFIED, Phase.DONE, True),
        (Phase.PLANNED, Phase.UPLOADED, False),  # no skipping
        (Phase.PLANNED, Phase.DONE, False),
        (Phase.EXPORTED, Phase.EXPORTED, False),
        (Phase.DONE, Phase.DONE, False),
        (Phase.UPLOADED, Phase.EXPORTED, True),  # back: re-upload after a failed verification
        (Phase.EXPORTED, Phase.PLANNED, True),  # back: re-export a lost staged archive
    ],
)
def test_allowed_transitions(current, target, ok):
    assert allowed(current, target) is ok


def test_new_run_is_planned_and_running(store, tmp_path):
    run = store.start("job", *W, "2026-11-26")
    assert (run.phase, run.result, run.attempts) == ("planned", "running", 1)
    assert run.window == "2026-06-01..2026-10-31"
    assert run.pid == os.getpid() and run.host
    assert run.finished_at is None and run.duration is None
    assert (tmp_path / "state" / "state.db").is_file()


def test_full_walk_and_finish(store):
    run = store.start("job", *W, "2026-11-26")
    run = store.advance(
        run,
        Phase.EXPORTED,
        "archive staged",
        rows=10,
        archive_bytes=123,
        sha256="ab" * 32,
        file_name="f.csv.gz",
        remote_path="t/f.csv.gz",
        staged_path="/s/f.csv.gz",
        manifest={"rows": 10, "window": {"start": W[0]}},
    )
    assert (run.phase, run.rows, run.archive_bytes, run.file_name) == ("exported", 10, 123, "f.csv.gz")
    assert run.manifest_dict() == {"rows": 10, "window": {"start": W[0]}}
    run = walk_to(store, run, Phase.DONE)
    run = store.finish(run, Result.SUCCESS)
    assert (run.phase, run.result, run.error, run.failed_phase) == ("done", "success", None, None)
    assert run.duration is not None and run.duration >= 0
    d = run.as_dict()
    assert d["window"] == run.window and "manifest" not in d and d["duration"] == run.duration


def test_illegal_transitions_are_refused_and_change_nothing(store):
    run = store.start("job", *W, "2026-11-26")
    with pytest.raises(RuntimeError, match="illegal phase transition planned -> uploaded"):
        store.advance(run, Phase.UPLOADED)
    with pytest.raises(KeyError, match="unknown run fields"):
        store.advance(run, Phase.EXPORTED, bogus=1)
    assert store.get(run.id).phase == "planned"


def test_transitions_are_logged(store):
    run = store.start("job", *W, "2026-11-26")
    run = walk_to(store, run, Phase.UPLOADED)
    run = store.advance(run, Phase.EXPORTED, "remote mismatch")
    db = store.connect()
    rows = db.execute(
        "SELECT from_phase, to_phase, note FROM transitions WHERE run_id=? ORDER BY rowid", (run.id,)
    ).fetchall()
    assert [tuple(r) for r in rows] == [
        (None, "planned", "planned"),
        ("planned", "exported", ""),
        ("exported", "uploaded", ""),
        ("uploaded", "exported", "remote mismatch"),
    ]


def test_resumable_finds_the_unfinished_run_of_the_same_window(store):
    assert store.resumable("job", *W) is None
    run = store.start("job", *W, "2026-11-26")
    run = store.advance(run, Phase.EXPORTED)
    store.finish(run, Result.FAILED, "boom", "upload")
    found = store.resumable("job", *W)
    assert found is not None and found.id == run.id and found.phase == "exported"
    assert store.resumable("job", "2026-07-01", "2026-11-30") is None  # another window starts fresh
    assert store.resumable("other", *W) is None  # another job too


def test_a_running_run_left_by_a_crash_is_resumable(store):
    run = store.start("job", *W, "2026-11-26")
    store.advance(run, Phase.EXPORTED)  # and then the process died: result still 'running'
    found = store.resumable("job", *W)
    assert found.id == run.id and found.result == "running"


def test_done_window_is_not_resumable(store):
    run = walk_to(store, store.start("job", *W, "2026-11-26"), Phase.DONE)
    store.finish(run, Result.SUCCESS)
    assert store.resumable("job", *W) is None


def test_resume_counts_attempts_and_clears_the_error(store):
    run = store.start("job", *W, "2026-11-26")
    run = store.finish(store.advance(run, Phase.EXPORTED), Result.FAILED, "disk full", "upload")
    assert (run.result, run.error, run.failed_phase) == ("failed", "disk full", "upload")
    assert run.finished_at is not None
    again = store.resume(run)
    assert (again.id, again.phase, again.result, again.attempts) == (run.id, "exported", "running", 2)
    assert again.error is None and again.failed_phase is None and again.finished_at is None


def test_history_latest_and_last_success(store):
    a = store.finish(walk_to(store, store.start("a", *W, "2026-11-26"), Phase.DONE), Result.SUCCESS)
    b = store.finish(store.start("b", *W, "2026-11-26"), Result.FAILED, "x", "export")
    a2 = store.finish(
        store.start("a", "2026-07-01", "2026-11-30", "2026-12-01"), Result.FAILED, "y", "export"
    )
    assert [r.id for r in store.history()] == [a2.id, b.id, a.id]  # newest first
    assert [r.id for r in store.history("a")] == [a2.id, a.id]
    assert [r.id for r in store.history(limit=1)] == [a2.id]
    assert store.latest("a").id == a2.id
    assert store.last_success("a").id == a.id
    assert store.last_success("b") is None
    assert store.latest("never") is None


def test_state_survives_reopening(tmp_path):
    s1 = StateStore(tmp_path)
    run = s1.advance(s1.start("job", *W, "2026-11-26"), Phase.EXPORTED, sha256="f" * 64)
    s1.close()
    s2 = StateStore(tmp_path)
    try:
        again = s2.get(run.id)
        assert (again.phase, again.sha256) == ("exported", "f" * 64)
        mode = s2.connect().execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        s2.close()


def test_manifest_is_stored_as_json(store):
    run = store.advance(store.start("job", *W, "2026-11-26"), Phase.EXPORTED, manifest={"b": 1, "a": [1, 2]})
    raw = store.connect().execute("SELECT manifest FROM runs WHERE id=?", (run.id,)).fetchone()[0]
    assert json.loads(raw) == {"a": [1, 2], "b": 1}


def _writer(path: str, job: str, n: int) -> None:
    s = StateStore(path)
    for _ in range(n):
        run = s.start(job, *W, "2026-11-26")
        run = walk_to(s, run, Phase.DONE)
        s.finish(run, Result.SUCCESS)
    s.close()


def test_several_processes_write_the_same_ledger(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), f"job{i}", 10)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        assert (
            db.execute("SELECT count(*) FROM runs WHERE phase='done' AND result='success'").fetchone()[0]
            == 30
        )
        assert db.execute("SELECT count(*) FROM transitions").fetchone()[0] == 30 * 5
    finally:
        db.close()


def test_a_running_run_is_live_only_while_its_jobs_lock_is_held(store, tmp_path):
    from tableship.ledger.lock import JobLock

    run = store.start("job", *W, "2026-11-26")
    assert [r.result for r in store.history("job")] == ["interrupted"]  # nobody holds the lock
    with JobLock(store.state_dir, "job").acquire():
        assert [r.result for r in store.history("job")] == ["running"]
        assert store.latest("job").result == "running"
    assert store.latest("job").result == "interrupted"
    assert store.get(run.id).result == "running"  # a view: the ledger itself is unchanged
    store.finish(run, Result.FAILED, "x", "export")
    assert store.latest("job").result == "failed"
