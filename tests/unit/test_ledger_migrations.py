"""The ledger module: versions, migrations once under a lock, interrupted migrations, foreign files."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest
from tests.ledger_v010 import V010_ARCHIVES, V010_INCIDENTS, V010_STATE

from tableship.ledger import schema as ledger
from tableship.ledger.schema import LATEST, MIGRATIONS, Ledger, LedgerError, Migration
from tableship.ledger.state import StateStore


def make_v010(folder, runs: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / "state.db", isolation_level=None)
    db.executescript(V010_STATE)  # 0.1.0 created the alert and archive tables only when first used
    for i in range(runs):
        db.execute(
            "INSERT INTO runs (job, window_start, window_end, run_date, phase, result, started_at, "
            "updated_at) "
            "VALUES ('j', ?, ?, '2026-11-26', 'done', 'success', 't', 't')",
            (f"2026-0{i + 1}-01", f"2026-0{i + 1}-28"),
        )
    db.close()


def tables(path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()


def test_steps_are_numbered_in_order_and_v1_is_0_1_0s_schema_verbatim():
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    assert MIGRATIONS[0].apply == V010_STATE + V010_ARCHIVES + V010_INCIDENTS


def test_a_new_ledger_gets_every_step(tmp_path):
    s = Ledger(tmp_path)
    assert s.version() == LATEST
    s.close()
    assert {
        "runs",
        "transitions",
        "incidents",
        "alert_messages",
        "verifications",
        "pruned",
        "migrations",
    } <= tables(tmp_path / "state.db")
    assert not list(tmp_path.glob("*.bak"))  # nothing to keep a copy of


def test_a_partial_0_1_0_ledger_is_recognised_as_v1_and_completed(tmp_path):
    make_v010(tmp_path)
    s = StateStore(tmp_path)
    assert s.version() == LATEST
    assert [r.window_start for r in s.history("j")] == ["2026-03-01", "2026-02-01", "2026-01-01"]
    assert {"incidents", "verifications"} <= tables(tmp_path / "state.db")
    s.close()
    assert tables(tmp_path / "state.db.v1.bak") == {"runs", "transitions", "sqlite_sequence"}


def _open(path: str) -> None:
    s = StateStore(path)
    s.history()
    s.close()


def test_several_processes_opening_an_old_ledger_migrate_it_once(tmp_path):
    make_v010(tmp_path)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_open, args=(str(tmp_path),)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST
        assert [r[0] for r in db.execute("SELECT version FROM migrations ORDER BY version")] == list(
            range(2, LATEST + 1)
        )  # each step once
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 3
    finally:
        db.close()


def test_an_interrupted_migration_rolls_its_step_back_and_resumes_there(tmp_path, monkeypatch):
    make_v010(tmp_path)

    def boom(db):
        db.execute("ALTER TABLE runs ADD COLUMN half_done TEXT")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the step

    steps = MIGRATIONS + [Migration(LATEST + 1, "test step", boom)]
    monkeypatch.setattr(ledger, "MIGRATIONS", steps)
    monkeypatch.setattr(ledger, "LATEST", LATEST + 1)
    with pytest.raises(KeyboardInterrupt):
        StateStore(tmp_path).connect()
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST  # the steps before it are kept
    assert "half_done" not in [r[1] for r in db.execute("PRAGMA table_info(runs)")]  # the step is not
    db.close()
    steps[-1] = Migration(LATEST + 1, "test step", "ALTER TABLE runs ADD COLUMN half_done TEXT")
    s = StateStore(tmp_path)
    assert s.version() == LATEST + 1
    s.close()
    # the copy from before the first attempt is kept; the resumed one keeps its own starting point
    assert sorted(p.name for p in tmp_path.glob("*.bak")) == ["state.db.v1.bak", f"state.db.v{LATEST}.bak"]
    assert tables(tmp_path / "state.db.v1.bak") == {"runs", "transitions", "sqlite_sequence"}


def test_read_only_opening_never_creates_and_reads_an_old_file_as_is(tmp_path):
    s = StateStore(tmp_path / "none", readonly=True)
    assert s.history() == [] and s.version() == LATEST
    s.close()
    assert not (tmp_path / "none").exists()
    make_v010(tmp_path / "old")
    before = (tmp_path / "old" / "state.db").read_bytes()
    s = StateStore(tmp_path / "old", readonly=True)
    assert len(s.history()) == 3
    s.close()
    assert (tmp_path / "old" / "state.db").read_bytes() == before


def test_a_foreign_sqlite_file_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("CREATE TABLE photos (id INTEGER)")
    db.close()
    with pytest.raises(LedgerError, match="is not a tableship ledger"):
        Ledger(tmp_path).connect()
