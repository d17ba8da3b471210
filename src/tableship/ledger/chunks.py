"""The chunks of chunked runs (table ``chunks``, ledger migrations 7 and 8) and the copies of
each chunk archive on its job's destinations (table ``chunk_deliveries``, migration 9).

A chunked run (``chunk = "month" | "day"``) records each chunk once its effect is
durable, in the same database as its run:

- layout ``window``: ``staged`` — its gzip member / zstd frames are appended to the run's
  staged ``<archive>.part`` and fsynced; ``byte_offset`` and ``archive_bytes`` are its
  byte range in that file, ``sha256`` the hash of those bytes;
- layout ``chunk``: ``delivering`` — its own archive is staged (complete, fsynced) and
  kept there until every destination holds a verified copy; ``done`` — its archive is
  verified on every destination and its sidecars written there; ``unchanged`` — not
  exported by this run: an earlier run's archive is verified there and the source's
  fingerprint of the chunk has not changed.

Each copy of a chunk archive is a row of ``chunk_deliveries`` (run, chunk, destination:
``verified`` with the sha256 that destination holds and its stamp, or ``failed`` with the
error), as ``deliveries`` is for a run's own archive: a re-run uploads only the copies that
are not verified, from the staged archive, without querying the source for that chunk.

A re-run of the same run skips every recorded chunk (chunk-level resume); a later run of
a window with the same chunk (layout ``chunk``) finds the newest ``done``/``unchanged``
record of it by :meth:`ChunkLedger.last_final`. ``stamps`` (layout ``chunk``): per
destination, the archive's stamp when its sha256 was proved there (local destinations).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, fields

from tableship.ledger.schema import Ledger

STAGED = "staged"
DELIVERING = "delivering"
DONE = "done"
UNCHANGED = "unchanged"
FINAL = (DONE, UNCHANGED)

VERIFIED = "verified"  # chunk_deliveries.state
FAILED = "failed"


@dataclass
class ChunkRecord:
    run_id: int
    seq: int
    job: str
    chunk_start: str
    chunk_end: str
    layout: str
    state: str
    outcome: str | None = None  # exported | changed | unchanged (what this run did)
    rows: int | None = None
    csv_bytes: int | None = None
    archive_bytes: int | None = None
    byte_offset: int | None = None
    sha256: str | None = None
    file_name: str | None = None
    remote_path: str | None = None
    fingerprint: str | None = None
    identity: str | None = None
    manifest: str | None = None
    updated_at: str = ""
    stamps: str | None = None  # JSON {destination: stamp} (migration 8; layout "chunk")

    def stamp_on(self, destination: str) -> str | None:
        """The recorded stamp of this chunk's archive on ``destination`` (None: none recorded)."""
        if not self.stamps:
            return None
        value = json.loads(self.stamps).get(destination)
        return value if isinstance(value, str) else None


_COLS = [f.name for f in fields(ChunkRecord)]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class ChunkLedger:
    """Reads and writes ``chunks`` on a ledger's connection (the caller's thread only)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def of_run(self, run_id: int) -> list[ChunkRecord]:
        rows = self.ledger.connect().execute(
            f"SELECT {', '.join(_COLS)} FROM chunks WHERE run_id=? ORDER BY seq", (run_id,)
        )
        return [ChunkRecord(**dict(r)) for r in rows]

    def record(self, rec: ChunkRecord) -> ChunkRecord:
        """Insert or replace the row of ``(run_id, seq)`` in one transaction (portable SQL)."""
        rec.updated_at = _now()
        with self.ledger.transaction() as db:
            db.execute("DELETE FROM chunks WHERE run_id=? AND seq=?", (rec.run_id, rec.seq))
            db.execute(
                f"INSERT INTO chunks ({', '.join(_COLS)}) VALUES ({', '.join('?' for _ in _COLS)})",
                tuple(getattr(rec, c) for c in _COLS),
            )
        return rec

    def forget(self, run_id: int, from_seq: int = 0) -> None:
        """Drop the records of ``run_id`` from chunk ``from_seq`` on (their bytes were lost)."""
        self.ledger.connect().execute("DELETE FROM chunks WHERE run_id=? AND seq>=?", (run_id, from_seq))

    def last_final(self, job: str, start: str, end: str, identity: str) -> ChunkRecord | None:
        """The newest ``done``/``unchanged`` chunk archive of ``job`` for exactly these days,
        written under the same identity (name, format, codec, source)."""
        row = (
            self.ledger.connect()
            .execute(
                f"SELECT {', '.join(_COLS)} FROM chunks WHERE job=? AND chunk_start=? AND chunk_end=? "
                "AND layout='chunk' AND identity=? AND state IN (?, ?) ORDER BY run_id DESC LIMIT 1",
                (job, start, end, identity, DONE, UNCHANGED),
            )
            .fetchone()
        )
        return ChunkRecord(**dict(row)) if row else None


@dataclass(frozen=True)
class ChunkCopy:
    """One chunk archive's copy on one destination (a row of ``chunk_deliveries``)."""

    run_id: int
    seq: int
    job: str
    destination: str
    state: str  # verified | failed
    sha256: str | None = None  # of the archive that destination holds (verified)
    verify_method: str | None = None
    stamp: str | None = None  # the file's stamp when its sha256 was proved (local destinations)
    error: str | None = None
    attempts: int = 0
    updated_at: str = ""
    verified_at: str | None = None


_COPY_COLS = [f.name for f in fields(ChunkCopy)]


class ChunkCopies:
    """Reads and writes ``chunk_deliveries`` on a ledger's connection (the caller's thread)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def of_run(self, run_id: int) -> dict[int, dict[str, ChunkCopy]]:
        """seq → destination → its copy, for every chunk of ``run_id`` with a recorded copy."""
        rows = self.ledger.connect().execute(
            f"SELECT {', '.join(_COPY_COLS)} FROM chunk_deliveries WHERE run_id=? ORDER BY seq, destination",
            (run_id,),
        )
        out: dict[int, dict[str, ChunkCopy]] = {}
        for r in rows:
            copy = ChunkCopy(**dict(r))
            out.setdefault(copy.seq, {})[copy.destination] = copy
        return out

    def record(self, rec: ChunkRecord, destination: str, state: str, **values: str | None) -> None:
        """The copy of ``rec``'s chunk on ``destination`` is ``state`` now (one transaction)."""
        t = _now()
        with self.ledger.transaction() as db:
            found = db.execute(
                "SELECT attempts FROM chunk_deliveries WHERE run_id=? AND seq=? AND destination=?",
                (rec.run_id, rec.seq, destination),
            ).fetchone()
            attempts = (found[0] if found else 0) + 1
            db.execute(
                "DELETE FROM chunk_deliveries WHERE run_id=? AND seq=? AND destination=?",
                (rec.run_id, rec.seq, destination),
            )
            copy = ChunkCopy(
                rec.run_id, rec.seq, rec.job, destination, state, attempts=attempts, updated_at=t, **values
            )
            db.execute(
                f"INSERT INTO chunk_deliveries ({', '.join(_COPY_COLS)}) "
                f"VALUES ({', '.join('?' for _ in _COPY_COLS)})",
                tuple(getattr(copy, c) for c in _COPY_COLS),
            )

    def missing(self, run_id: int, destinations: list[str]) -> dict[str, list[ChunkRecord]]:
        """destination → the chunks of ``run_id`` still waiting for a verified copy there
        (state ``delivering``), in chunk order; destinations missing none are left out."""
        waiting = [r for r in ChunkLedger(self.ledger).of_run(run_id) if r.state == DELIVERING]
        if not waiting:
            return {}
        copies = self.of_run(run_id)
        out: dict[str, list[ChunkRecord]] = {}
        for name in destinations:
            for rec in waiting:
                got = copies.get(rec.seq, {}).get(name)
                if got is None or got.state != VERIFIED or got.sha256 != rec.sha256:
                    out.setdefault(name, []).append(rec)
        return out
