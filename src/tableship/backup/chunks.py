"""Chunked windows (``chunk = "month" | "day"``): one query per chunk, up to ``parallel``
at once, chunk-level resume, and (``layout = "chunk"``) one archive per chunk re-exported
only when the engine's fingerprint of its rows changed.

How the pieces fit:

- :func:`split` cuts the window into calendar months or days (clipped to the window).
- :class:`Puller` runs the chunk queries on up to ``parallel`` worker threads, each with
  its own source connection (``open_source``: with the source's ``max_connections``,
  each chunk query holds a slot of that process-wide cap, shared with the job pool's
  other jobs — a worker waits for a slot, never exceeds it). Each worker
  writes its chunk, compressed, to its own file in staging (:func:`write_archive`, so it
  is complete or absent); the caller's thread receives the finished chunks **in chunk
  order** — a chunk finished out of order waits on disk, never in memory. Memory is
  therefore ``parallel`` × one export's working set (docs/performance.md).
- :class:`WindowAssembler` (layout ``window``) appends each chunk file to the window's
  staged ``<archive>.part`` — consecutive gzip members (RFC 1952) / zstd frames — fsyncs
  and records the chunk with its byte range (ledger/chunks.py): after ``kill -9`` the
  next attempt truncates the ``.part`` to its last recorded chunk and pulls only the rest.
- :func:`fingerprints` is the one grouped query giving each chunk's row count and the sum
  of its rows' hashes, computed by the engine (``Source.row_hash``).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from tableship.archive.writer import ExportResult
from tableship.core import interrupts
from tableship.core.fsutil import fsync_dir
from tableship.core.window import Window, add_months, month_end
from tableship.ledger.chunks import STAGED, ChunkLedger, ChunkRecord
from tableship.sources.base import Query, Source, fingerprint_query

log = logging.getLogger("tableship")


def split(window: Window, unit: str) -> list[tuple[dt.date, dt.date]]:
    """The calendar months or days of ``window``, each clipped to it, in order."""
    out: list[tuple[dt.date, dt.date]] = []
    day = window.start
    while day <= window.end:
        if unit == "day":
            end = day
        else:
            end = month_end(day.year, day.month)
        end = min(end, window.end)
        out.append((day, end))
        if unit == "day":
            day = end + dt.timedelta(days=1)
        else:
            y, m = add_months(day.year, day.month, 1)
            day = dt.date(y, m, 1)
    return out


def label(start: dt.date, end: dt.date, unit: str) -> str:
    """``2026-06`` for a whole month, ``2026-06-03`` for a day, else ``start..end``."""
    if start == end:
        return start.isoformat()
    if unit == "month" and start.day == 1 and end == month_end(start.year, start.month):
        return start.strftime("%Y-%m")
    return f"{start.isoformat()}..{end.isoformat()}"


def spans(records: list[ChunkRecord], unit: str) -> str:
    """``2026-06..2026-08, 2026-10``: the chunks' labels, consecutive chunks as one span."""
    groups: list[list[ChunkRecord]] = []
    for r in records:
        if groups and groups[-1][-1].seq + 1 == r.seq:
            groups[-1].append(r)
        else:
            groups.append([r])

    def one(r: ChunkRecord) -> str:
        return label(dt.date.fromisoformat(r.chunk_start), dt.date.fromisoformat(r.chunk_end), unit)

    out = []
    for g in groups:
        first, last = one(g[0]), one(g[-1])
        if len(g) == 1:
            out.append(first)
        elif ".." in first + last:  # a clipped chunk's label is a span already: use the days
            out.append(f"{g[0].chunk_start}..{g[-1].chunk_end}")
        else:
            out.append(f"{first}..{last}")
    return ", ".join(out)


@dataclass
class ChunkTask:
    seq: int
    start: dt.date
    end: dt.date
    query: Query
    target: Path  # the chunk's own file in staging (complete or absent)
    header: bool
    outcome: str = "exported"  # "exported" (first time) or "changed" (re-exported)
    file_name: str | None = None  # layout "chunk"
    remote_path: str | None = None
    fingerprint: str | None = None

    def record(self, run_id: int, job: str, result: ExportResult, **more: Any) -> ChunkRecord:
        """This chunk's ledger record after ``result``; ``more``: the other columns."""
        return ChunkRecord(
            run_id=run_id,
            seq=self.seq,
            job=job,
            chunk_start=self.start.isoformat(),
            chunk_end=self.end.isoformat(),
            rows=result.rows,
            csv_bytes=result.csv_bytes,
            **more,
        )


ExportOne = Callable[[Source, ChunkTask], ExportResult]


class Cancelled(Exception):
    """A worker stops because the run is failing elsewhere (never reaches the user)."""


class Puller:
    """Chunk queries on up to ``parallel`` threads; results handed over in chunk order."""

    def __init__(
        self,
        open_source: Callable[[], Source],
        parallel: int,
        shared: Source | None = None,
    ):
        """``shared``: the run's own source, used by the only worker when ``parallel`` is 1."""
        self.open_source = open_source
        self.shared = shared
        self.kept: set[int] = set()  # chunks whose file is kept on purpose (keep_local)
        self.parallel = max(1, parallel)
        self.cancel = threading.Event()
        self._local = threading.local()
        self._sources: list[Source] = []
        self._lock = threading.Lock()

    def _source(self) -> Source:
        if self.parallel == 1 and self.shared is not None:
            return self.shared
        src = getattr(self._local, "source", None)
        if src is None:
            src = self.open_source()
            self._local.source = src
            with self._lock:
                self._sources.append(src)
        return src

    def guard(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``batches``, stopped between two batches once the run is cancelled."""
        for b in batches:
            if self.cancel.is_set():
                raise Cancelled()
            yield b

    def _work(self, export_one: ExportOne, task: ChunkTask) -> ExportResult:
        if self.cancel.is_set():
            raise Cancelled()
        return export_one(self._source(), task)

    def run(
        self,
        tasks: list[ChunkTask],
        export_one: ExportOne,
        on_done: Callable[[ChunkTask, ExportResult], None],
    ):
        """Export every task; ``on_done`` runs on the caller's thread, in ``tasks`` order.
        At most ``2 × parallel`` chunks are queued or finished ahead of the next in order."""
        if not tasks:
            return
        ahead = 2 * self.parallel
        pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="tableship-chunk")
        futures: dict[int, Future] = {}
        nxt = 0  # next task to submit
        try:
            for i, task in enumerate(tasks):
                while nxt < len(tasks) and nxt < i + ahead:
                    # each chunk thread runs in a copy of the caller's context, so its log
                    # lines keep the caller's [job#run] tag (contextvars do not cross threads)
                    ctx = contextvars.copy_context()
                    futures[nxt] = pool.submit(ctx.run, self._work, export_one, tasks[nxt])
                    nxt += 1
                fut = futures.pop(i)
                while True:  # wake up regularly: a signal must stop the run promptly
                    interrupts.checkpoint()
                    done, _ = wait([fut], timeout=0.2, return_when=FIRST_COMPLETED)
                    if done:
                        break
                on_done(task, fut.result())
        except BaseException:
            self.cancel.set()
            for f in futures.values():
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            for t in tasks[:nxt]:  # chunk files nobody took over (a failure, a signal)
                if t.seq not in self.kept:
                    t.target.unlink(missing_ok=True)
            raise
        pool.shutdown(wait=True)

    def close(self) -> None:
        for src in self._sources:
            try:
                src.close()
            except Exception:  # closing must never hide the run's own outcome
                log.debug("close failed", exc_info=True)
        self._sources.clear()


# ---------------------------------------------------------------- layout "window"


@dataclass
class Assembled:
    rows: int = 0
    csv_bytes: int = 0
    archive_bytes: int = 0
    sha256: str = ""
    compression: dict = field(default_factory=dict)
    chunks: list[dict] = field(default_factory=list)


class WindowAssembler:
    """Appends chunk files, in order, to the window's ``<archive>.part``; each append is
    fsynced and then recorded (state ``staged``, its byte range) before the next."""

    def __init__(self, ledger: ChunkLedger, run_id: int, job: str, target: Path):
        self.ledger = ledger
        self.run_id = run_id
        self.job = job
        self.target = target
        self.part = target.with_name(target.name + ".part")
        self.sha = hashlib.sha256()
        self.records: list[ChunkRecord] = []
        self.compression: dict = {}

    def resume(self) -> int:
        """Keep the recorded chunks whose bytes are intact in the ``.part``; drop the rest
        (records and bytes). Returns how many chunks are kept (the next chunk's seq)."""
        recorded = self.ledger.of_run(self.run_id)
        if not self.part.is_file() and self.target.is_file() and recorded:
            os.replace(self.target, self.part)  # killed between the rename and its record
        if not self.part.is_file():
            if recorded:
                log.warning(
                    "staged %s is missing: exporting its %d chunk(s) again", self.part.name, len(recorded)
                )
            self.ledger.forget(self.run_id)
            self.part.parent.mkdir(parents=True, exist_ok=True)
            self.part.write_bytes(b"")
            return 0
        kept: list[ChunkRecord] = []
        offset = 0
        with open(self.part, "rb") as f:
            for rec in recorded:
                if rec.seq != len(kept) or rec.state != STAGED or rec.byte_offset != offset:
                    break
                h = hashlib.sha256()
                left = rec.archive_bytes or 0
                while left:
                    data = f.read(min(left, 1 << 20))
                    if not data:
                        break
                    h.update(data)
                    self.sha.update(data)
                    left -= len(data)
                if left or h.hexdigest() != rec.sha256:
                    break
                kept.append(rec)
                offset += rec.archive_bytes or 0
        if len(kept) < len(recorded):
            log.warning(
                "staged %s holds %d of the %d recorded chunks intact: exporting the others again",
                self.part.name,
                len(kept),
                len(recorded),
            )
            self.ledger.forget(self.run_id, len(kept))
            if len(kept) < len(recorded):  # bytes hashed past the intact prefix: hash it again
                self.sha = hashlib.sha256()
                with open(self.part, "rb") as f:
                    left = offset
                    while left:
                        data = f.read(min(left, 1 << 20))
                        self.sha.update(data)
                        left -= len(data)
        with open(self.part, "r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
        self.records = kept
        if kept and kept[0].manifest:
            self.compression = json.loads(kept[0].manifest).get("compression", {})
        return len(kept)

    @property
    def offset(self) -> int:
        return sum(r.archive_bytes or 0 for r in self.records)

    def append(self, task: ChunkTask, result: ExportResult) -> ChunkRecord:
        offset = self.offset
        h = hashlib.sha256()
        size = 0
        # an empty chunk after the first adds no bytes (no empty gzip member / zstd frame)
        empty = result.rows == 0 and not task.header
        with open(self.part, "ab") as out:
            if not empty:
                with open(task.target, "rb") as f:
                    while data := f.read(1 << 20):
                        out.write(data)
                        h.update(data)
                        self.sha.update(data)
                        size += len(data)
            out.flush()
            os.fsync(out.fileno())
        if not self.compression:
            self.compression = result.compression
        rec = task.record(
            self.run_id,
            self.job,
            result,
            layout="window",
            state=STAGED,
            outcome="exported",
            archive_bytes=size,
            byte_offset=offset,
            sha256=h.hexdigest(),
            manifest=json.dumps({"compression": result.compression}, sort_keys=True),
        )
        self.ledger.record(rec)
        self.records.append(rec)
        task.target.unlink(missing_ok=True)
        return rec

    def finish(self) -> Assembled:
        """The ``.part`` renamed to the archive's name (it holds every chunk)."""
        with open(self.part, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.part, self.target)
        fsync_dir(self.target.parent)
        return Assembled(
            rows=sum(r.rows or 0 for r in self.records),
            csv_bytes=sum(r.csv_bytes or 0 for r in self.records),
            archive_bytes=self.offset,
            sha256=self.sha.hexdigest(),
            compression={**self.compression, "members": sum(1 for r in self.records if r.archive_bytes)},
            chunks=[chunk_entry(r) for r in self.records],
        )


def chunk_entry(r: ChunkRecord) -> dict:
    """A chunk as the manifests list it."""
    d: dict = {
        "seq": r.seq,
        "start": r.chunk_start,
        "end": r.chunk_end,
        "rows": r.rows,
        "csv_bytes": r.csv_bytes,
        "archive_bytes": r.archive_bytes,
        "sha256": r.sha256,
    }
    if r.layout == "window":
        d["offset"] = r.byte_offset
    else:
        d["file_name"] = r.file_name
        d["remote_path"] = r.remote_path
        d["fingerprint"] = r.fingerprint
    return d


# ---------------------------------------------------------------- fingerprints


def fingerprints(
    source: Source, table: str, column: str, bounds: list[tuple], schema: pa.Schema, engine: str
) -> dict[int, str]:
    """seq → ``rows=N;sum=S;by=ENGINE`` (``sum`` left out where the engine has no usable
    hash), for every chunk of ``bounds`` — one grouped query over the whole window."""
    row_hash = getattr(source, "row_hash", None)
    expr = None
    if row_hash is not None:
        try:
            expr = row_hash(schema.names)
        except ValueError as exc:  # a column name the dialect cannot quote safely
            log.warning("fingerprints by row count only: %s", exc)
    query = fingerprint_query(source.dialect, table, column, bounds, expr)
    found: dict[int, tuple[int, str | None]] = {}
    wide = getattr(source, "wide", None)  # an engine that can run this one query on more cores
    with wide() if wide is not None else contextlib.nullcontext():
        for batch in source.batches(query, 10_000):
            cols = batch.to_pydict()
            sums = cols.get("tableship_sum") or [None] * batch.num_rows
            for k, n, s in zip(cols["tableship_chunk"], cols["tableship_rows"], sums, strict=True):
                if k is not None:
                    found[int(k)] = (int(n), None if s is None else str(int(s)))
    by = engine if expr else f"{engine}:count"
    out = {}
    for seq in range(len(bounds)):
        n, s = found.get(seq, (0, None))
        out[seq] = f"rows={n};sum={s or 0};by={by}" if expr else f"rows={n};by={by}"
    return out
