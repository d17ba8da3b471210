"""The ledger contract: the same statements behave the same on both backends.

Every test runs against the SQLite ledger under a state_dir and against a PostgreSQL ledger
(a fresh database on the suite's PostgreSQL server, tests/servers/postgres.py).
"""

from __future__ import annotations

import ast
import dataclasses
import signal
from pathlib import Path

import pytest
from tests.servers.postgres import fresh_database

from tableship.core import redact
from tableship.core.errors import Interrupted, LockedError
from tableship.ledger import schema
from tableship.ledger.chunks import DELIVERING, DONE, FAILED, VERIFIED, ChunkCopies, ChunkLedger, ChunkRecord
from tableship.ledger.schema import LATEST, MIGRATIONS, LedgerError
from tableship.ledger.state import Phase, Result, StateStore
from tableship.ops.alerts.incidents import IncidentStore

W = ("2026-06-01", "2026-10-31")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    """(state_dir, url): url None for SQLite."""
    if request.param == "sqlite":
        return tmp_path / "state", None
    server = request.getfixturevalue("postgres")
    return tmp_path / "state", fresh_database(server)


@pytest.fixture
def store(backend):
    s = StateStore(backend[0], url=backend[1])
    yield s
    s.close()


def other(backend, readonly=False) -> StateStore:
    """Another process's view of the same ledger (another connection / session)."""
    return StateStore(backend[0], readonly=readonly, url=backend[1])


def walk_to(store, run, target: Phase):
    while Phase(run.phase) != target:
        run = store.advance(run, Phase(run.phase).next())
    return run


def test_migrated_to_latest_once(store, backend):
    store.connect()
    assert store.version() == LATEST
    logged = [r[0] for r in store.connect().execute("SELECT version FROM migrations ORDER BY version")]
    assert logged == [m.version for m in MIGRATIONS if m.version >= 2]
    again = other(backend)
    try:
        assert again.version() == LATEST  # a second opener finds it migrated and applies nothing
        assert [r[0] for r in again.connect().execute("SELECT version FROM migrations")] == logged
    finally:
        again.close()


def test_runs_round_trip(store):
    a = store.start("job", *W, "2026-11-26", fingerprint='{"x": 1}')
    b = store.start("other", *W, "2026-11-26")
    assert b.id > a.id > 0
    a = store.advance(a, Phase.EXPORTED, "staged", rows=3, archive_bytes=5 * 2**32, sha256="ab" * 32)
    assert (a.phase, a.rows, a.archive_bytes) == ("exported", 3, 5 * 2**32)  # 64-bit integers
    assert store.resumable("job", *W).id == a.id
    a = walk_to(store, a, Phase.DONE)
    a = store.finish(a, Result.SUCCESS)
    assert store.resumable("job", *W) is None
    assert store.last_success("job").id == a.id
    assert [r.id for r in store.history(None, 10)] == [b.id, a.id]
    assert [r.id for r in store.unfinished("other")] == [b.id]
    steps = store.connect().execute(
        "SELECT from_phase, to_phase, host, pid FROM transitions WHERE run_id=? ORDER BY at", (a.id,)
    )
    rows = [tuple(r) for r in steps]
    assert [r[1] for r in rows] == ["planned", "exported", "uploaded", "verified", "done"]
    assert all(r[2] and r[3] for r in rows)  # which host and process recorded each phase
    with pytest.raises(RuntimeError):
        store.advance(a, Phase.DONE)  # no step to the same phase


def test_rows_by_name_and_index(store):
    run = store.start("job", *W, "2026-11-26")
    row = store.connect().execute("SELECT id, job FROM runs WHERE id=?", (run.id,)).fetchone()
    assert row[0] == row["id"] == run.id and dict(row) == {"id": run.id, "job": "job"}
    assert store.connect().execute("SELECT id FROM runs WHERE job=?", ("none",)).fetchone() is None


def test_abandon_and_windows(store):
    run = store.start("job", *W, "2026-11-26")
    run = store.abandon(run, "given up")
    assert run.result == Result.ABANDONED.value and not run.unfinished
    store.abandon_window("job", *W, "gone", [run.id])
    assert store.abandoned_windows("job") == {W}


def test_incidents_and_outbox(store):
    store.connect()
    inc = IncidentStore(store)
    with inc.transaction():
        first = inc.record_failure("job", "2026-11-26T02:00:00+00:00", 1, "export", "boom")
    again = inc.record_failure("job", "2026-11-26T03:00:00+00:00", 2, "export", "boom")
    assert again.id == first.id and again.failures == 2
    mid = inc.add_message(first.id, "job", "mail", "failed", 2, "{}", "2026-11-26T03:00:00+00:00")
    inc.set_state(mid, "sent", "2026-11-26T03:00:01+00:00", counted_at="2026-11-26T03:00:01+00:00")
    assert inc.used_budget("mail", "2026-11-26T02:30:00+00:00") == 1
    assert inc.used_budget("mail", "2026-11-26T03:30:00+00:00") == 0
    assert inc.alerted_channels(first.id) == ["mail"]
    assert inc.last_alert(first.id, "mail").id == mid
    assert inc.counts() == [("mail", "sent", 1)]
    inc.close(first.id, "2026-11-26T04:00:00+00:00", 3)
    assert inc.open_incident("job") is None
    assert inc.record_failure("job", "2026-11-27T02:00:00+00:00", 4, None, None).id != first.id


def _integrity_errors(store) -> tuple[type[BaseException], ...]:
    import sqlite3

    errors: list[type[BaseException]] = [sqlite3.IntegrityError]
    try:
        import psycopg
    except ImportError:  # the postgres extra is optional
        pass
    else:
        errors.append(psycopg.IntegrityError)
    return tuple(errors)


def test_one_open_incident_per_job_is_a_constraint(store):
    store.connect()
    inc = IncidentStore(store)
    inc.record_failure("job", "2026-11-26T02:00:00+00:00", 1, None, None)
    # sqlite3.IntegrityError / psycopg.IntegrityError (a bug, not a LedgerError); both are DB-API
    # IntegrityErrors, so name the class of whichever driver this backend uses.
    with pytest.raises(_integrity_errors(store)) as caught:
        store.connect().execute(
            "INSERT INTO incidents (job, opened_at, failures) VALUES (?,?,1)", ("job", "2026-11-26")
        )
    assert "unique" in str(caught.value).lower()
    assert not isinstance(caught.value, LedgerError)


def test_write_transactions_are_serial(store, backend):
    """BEGIN IMMEDIATE takes the ledger's write lock on both backends: while one writer's
    transaction is open, another's BEGIN IMMEDIATE waits (here: with no patience, refused)."""
    store.connect()
    second = other(backend)
    db2 = second.connect()
    db2.execute("SET lock_timeout = 50" if backend[1] else "PRAGMA busy_timeout = 0")
    try:
        with store.transaction() as db:
            db.execute(
                "INSERT INTO job_locks (job, host, pid, started_at) VALUES (?,?,?,?)", ("a", "h", 1, "t")
            )
            with pytest.raises(LedgerError) as caught:
                with second.transaction():
                    pass
            assert caught.value.exit_code == 75 and "locked" in caught.value.message
        with second.transaction() as db2:  # free again after the first committed
            db2.execute("DELETE FROM job_locks WHERE job=?", ("a",))
    finally:
        second.close()
    assert store.connect().execute("SELECT count(*) FROM job_locks").fetchone()[0] == 0


def test_job_lock_is_exclusive_and_names_its_holder(store, backend):
    store.connect()
    lock = store.job_lock("job").acquire()
    rival = other(backend)
    try:
        with pytest.raises(LockedError) as caught:
            rival.job_lock("job").acquire(0)
        assert "already running (pid" in caught.value.message
        run = store.start("job", *W, "2026-11-26")
        assert rival.run_alive("job", run.pid, run.host)
        lock.release()
        assert not rival.run_alive("job", run.pid, run.host)
        rival.job_lock("job").acquire(0).release()
    finally:
        lock.release()
        rival.close()


def test_strings_bound_are_redacted(store):
    redact.activate(["Sup3rSecretPw"])
    try:
        run = store.start("job", *W, "2026-11-26")
        store.finish(run, Result.FAILED, "login as u:Sup3rSecretPw failed")
        assert "Sup3rSecretPw" not in (store.get(run.id).error or "")
    finally:
        redact.activate([])


def test_reader_of_a_missing_ledger_creates_nothing(backend):
    reader = other(backend, readonly=True)
    try:
        assert reader.history() == [] and reader.version() == LATEST
    finally:
        reader.close()
    writer = other(backend)
    try:
        # nothing was created by the reader: the first writer migrates from scratch
        assert writer.version() == LATEST
    finally:
        writer.close()


class SignalAtBegin:
    """The store's connection, but a termination signal (``Interrupted``) arrives just as its
    first ``BEGIN`` returns, the statement run: the point between a transaction's BEGIN and the
    code that would roll it back. Injected, not timed: no signal, no sleep."""

    def __init__(self, db):
        self._db = db
        self.fired = False

    def execute(self, sql, *params):
        cur = self._db.execute(sql, *params)
        if not self.fired and sql.strip().upper().startswith("BEGIN"):
            self.fired = True
            raise Interrupted(signal.SIGTERM)
        return cur

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_a_signal_just_after_begin_leaves_no_transaction_open(store, backend, monkeypatch):
    run = store.start("job", *W, "2026-11-26")
    conn = SignalAtBegin(store.connect())
    monkeypatch.setattr(store, "connect", lambda: conn)
    with pytest.raises(Interrupted):
        store.advance(run, Phase.EXPORTED, "staged", rows=3)
    assert conn.fired
    assert not conn.in_transaction  # rolled back: the write lock is not held either
    # what the runner does next, on the same connection: record the run as ended
    store.finish(run, Result.FAILED, "interrupted by SIGTERM", "planned")
    seen = other(backend, readonly=True)
    try:
        (again,) = [r for r in seen.runs_of("job") if r.id == run.id]
        assert (again.result, again.phase, again.error) == ("failed", "planned", "interrupted by SIGTERM")
    finally:
        seen.close()


def test_only_the_transaction_helper_begins_a_transaction():
    """No ledger module opens a transaction itself (``execute("BEGIN …")``) but
    ``schema.transaction``: there BEGIN is inside the try that rolls it back."""
    root = Path(schema.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        if path.name == "postgres.py":  # the backend translating BEGIN, not a writer
            continue
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "execute"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).strip().upper().startswith("BEGIN")
                    and not (path.name == "schema.py" and fn.name == "transaction")
                ):
                    offenders.append(f"{path.name}:{node.lineno} in {fn.name}()")
    assert offenders == []


def test_chunk_deliveries_round_trip(store):
    """A chunk archive's copies, one per destination (migration 9): recorded, re-recorded
    (attempts counted), and the chunks each destination still misses."""
    run = store.start("job", *W, "2026-11-26")
    chunks, copies = ChunkLedger(store), ChunkCopies(store)
    recs = [
        chunks.record(
            ChunkRecord(
                run.id, seq, "job", start, end, "chunk", DELIVERING, sha256=f"{seq:064x}", file_name=f"c{seq}"
            )
        )
        for seq, (start, end) in enumerate([("2026-06-01", "2026-06-30"), ("2026-07-01", "2026-07-31")])
    ]
    copies.record(recs[0], "a", VERIFIED, sha256=recs[0].sha256, stamp="1:2", verified_at="t")
    copies.record(recs[0], "b", FAILED, error="down")
    copies.record(recs[1], "a", VERIFIED, sha256="f" * 64)  # another version: not a copy of this one
    assert {n: [r.seq for r in v] for n, v in copies.missing(run.id, ["a", "b"]).items()} == {
        "a": [1],
        "b": [0, 1],
    }
    copies.record(recs[0], "b", VERIFIED, sha256=recs[0].sha256)
    got = copies.of_run(run.id)
    assert (got[0]["b"].state, got[0]["b"].attempts, got[0]["b"].error) == (VERIFIED, 2, None)
    assert (got[0]["a"].stamp, got[0]["a"].attempts) == ("1:2", 1)
    chunks.record(dataclasses.replace(recs[0], state=DONE))
    assert {n: [r.seq for r in v] for n, v in copies.missing(run.id, ["a", "b"]).items()} == {
        "a": [1],
        "b": [1],
    }
