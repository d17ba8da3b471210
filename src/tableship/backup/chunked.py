"""The export phase of a chunked run (``chunk = "month" | "day"``), both layouts.

``layout = "window"``: the chunks are pulled (up to ``parallel`` at once) and appended in
order to the window's one archive; the run then goes on as an unchunked one (upload,
verify, sidecars). ``layout = "chunk"``: each chunk is its own archive, exported,
uploaded, verified and given its sidecars here, one after another in chunk order while
the next chunks are pulled; the run's own "archive" is then the *window manifest*
(``<job>_<start>_<end>.chunks.json``, listing the chunks), which the usual phases upload
and verify — byte-identical when nothing changed, so nothing is uploaded again.

Each finished chunk is recorded in the ledger (ledger/chunks.py) before the next one is
handed over, so a re-run after ``kill -9`` queries and uploads only the others; with
``refresh = "changed"`` a later run skips every chunk whose archive is verified on the
destination and whose engine fingerprint (:func:`chunks.fingerprints`) is unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import threading
from typing import Any

import pyarrow as pa

from tableship.archive.writer import BATCH_ROWS, ExportResult, columns_of, write_archive
from tableship.backup.chunks import (
    ChunkTask,
    Puller,
    WindowAssembler,
    chunk_entry,
    fingerprints,
    label,
    split,
)
from tableship.backup.delivery import upload_verified, write_sidecars
from tableship.backup.identity import dumps
from tableship.backup.query import partition_bounds, range_query
from tableship.core import holds
from tableship.core.fsutil import fsync_dir
from tableship.core.names import render_relative
from tableship.core.redact import redact_bytes
from tableship.core.version import __version__
from tableship.core.window import Window
from tableship.ledger.chunks import DONE, FINAL, UNCHANGED, ChunkLedger, ChunkRecord
from tableship.ledger.state import Run
from tableship.sources.base import open_source

log = logging.getLogger("tableship")

WINDOW_MANIFEST = "{job}_{start:%Y%m%d}_{end:%Y%m%d}.chunks.json"


def window_manifest_name(job_name: str, window: Window) -> str:
    return WINDOW_MANIFEST.format(job=job_name, start=window.start, end=window.end)


class ChunkedExport:
    """``ChunkedExport(pipeline).run(run, schema)`` → the run advanced to ``exported``.

    ``pipeline`` is the run's :class:`~tableship.backup.pipeline.Pipeline` (its source,
    destination, retry policies, store, progress and connection slot)."""

    def __init__(self, pipeline: Any):
        self.p = pipeline
        self.job = pipeline.job
        self.plan = pipeline.plan
        self.store = pipeline.store
        self.ledger = ChunkLedger(pipeline.store)
        self.staging = self.plan.staged_path.parent
        self._progress_lock = threading.Lock()
        self._progress: dict[int, tuple[int, int]] = {}
        self.counts = {"exported": 0, "changed": 0, "unchanged": 0}

    # -- shared
    def _query(self, schema: pa.Schema, start: dt.date, end: dt.date):
        return range_query(self.p.source, self.job, schema, start, end)

    def _progress_for(self, seq: int):
        if self.p.progress is None:
            return None

        def report(rows: int, csv_bytes: int) -> None:
            with self._progress_lock:
                self._progress[seq] = (rows, csv_bytes)
                total = [sum(v) for v in zip(*self._progress.values(), strict=True)]
            self.p.progress(total[0], total[1])

        return report

    def _pull(self, tasks: list[ChunkTask], schema: pa.Schema, on_done) -> None:
        job = self.job
        src = job.source
        puller = Puller(lambda: open_source(src.name, src.settings), job.parallel, shared=self.p.source)
        dialect = self.plan.dialect

        def export_one(src, task: ChunkTask) -> ExportResult:
            d = dataclasses.replace(dialect, header=task.header)
            log.info("chunk %s: querying %s", label(task.start, task.end, job.chunk), task.query.display())
            return self.p._source_retry(
                f"export of {job.table} chunk {label(task.start, task.end, job.chunk)}"
            )(
                lambda: write_archive(
                    holds.after_first(puller.guard(src.batches(task.query, BATCH_ROWS)), "export"),
                    schema,
                    task.target,
                    d,
                    job.compression.codec,
                    job.compression.level,
                    self._progress_for(task.seq),
                )
            )

        if job.keep_local and job.layout == "chunk":
            puller.kept = {t.seq for t in tasks}
        try:
            puller.run(tasks, export_one, on_done)
        finally:
            puller.close()

    def run(self, run: Run, schema: pa.Schema) -> Run:
        chunks = split(self.plan.window, self.job.chunk)
        if self.job.layout == "window":
            return self._window(run, schema, chunks)
        return self._chunks(run, schema, chunks)

    # -- layout "window"
    def _window(self, run: Run, schema: pa.Schema, chunks: list[tuple[dt.date, dt.date]]) -> Run:
        job, plan = self.job, self.plan
        asm = WindowAssembler(self.ledger, run.id, job.name, plan.staged_path)
        first = asm.resume()
        if first:
            log.info("resuming the export: %d of %d chunks already staged", first, len(chunks))
        tasks = [
            ChunkTask(
                seq,
                start,
                end,
                self._query(schema, start, end),
                self.staging / f"{plan.file_name}.chunk{seq:05d}.part",  # a temporary name
                header=seq == 0 and plan.dialect.header,
            )
            for seq, (start, end) in enumerate(chunks)
            if seq >= first
        ]

        def on_done(task: ChunkTask, result: ExportResult) -> None:
            rec = asm.append(task, result)
            log.info(
                "chunk %s: exported, %d rows, %d archive bytes at offset %d",
                label(task.start, task.end, job.chunk),
                rec.rows,
                rec.archive_bytes,
                rec.byte_offset,
            )
            self.counts["exported"] += 1
            holds.hold(f"chunk-{task.seq}")

        self._pull(tasks, schema, on_done)
        done = asm.finish()
        query = self._query(schema, plan.window.start, plan.window.end)
        self.p.check_rows(done.rows, query)
        result = ExportResult(
            done.rows, done.csv_bytes, done.archive_bytes, done.sha256, columns_of(schema), done.compression
        )
        manifest = self.p.manifest(run, query, result, plan.window, plan.file_name, plan.remote_path)
        manifest["layout"] = "window"
        manifest["chunk"] = job.chunk
        manifest["chunks"] = done.chunks
        log.info(
            "exported %d rows in %d chunks, %d CSV bytes → %d archive bytes (sha256 %s)",
            done.rows,
            len(chunks),
            done.csv_bytes,
            done.archive_bytes,
            done.sha256[:12],
        )
        note = f"archive staged ({len(chunks)} chunks)"
        return self.p.staged(run, note, done.rows, done.archive_bytes, done.sha256, manifest)

    # -- layout "chunk"
    def identity(self) -> str:
        """What a chunk archive of an earlier run must share to be reused (no window, no secret)."""
        job = self.job
        return dumps(
            {
                "source": {"name": job.source.name, "target": job.source.target},
                "table": job.table,
                "partition": [job.partition_column, job.partition_type, job.partition_format],
                "format": job.format.model_dump(mode="json", exclude_none=True),
                "compression": [job.compression.codec, job.compression.level],
                "file_name": job.file_name,
                "destinations": [[d.name, d.target] for d in job.destinations],
            }
        )

    def _names(self, start: dt.date, end: dt.date) -> tuple[str, str]:
        w, rd = self.plan.window, self.plan.run_date
        name = render_relative(
            self.job.file_name, self.job.template_values(w.start, w.end, rd, start, end), "file_name"
        )
        remote = f"{self.plan.remote_dir}/{name}" if self.plan.remote_dir else name
        return name, remote

    def _chunks(self, run: Run, schema: pa.Schema, chunks: list[tuple[dt.date, dt.date]]) -> Run:
        job, plan = self.job, self.plan
        refresh = job.effective_refresh
        identity = self.identity()
        fps: dict[int, str] = {}
        if refresh == "changed":
            bounds = [partition_bounds(self.p.source, job, schema, s, e) for s, e in chunks]
            fps = self.p._source_retry(f"fingerprints of {job.table}")(
                lambda: fingerprints(
                    self.p.source,
                    job.table,
                    job.partition_column,
                    bounds,
                    schema,
                    job.source.type,
                )
            )
        this_run = {r.seq: r for r in self.ledger.of_run(run.id) if r.state in FINAL}
        records: dict[int, ChunkRecord] = {}
        tasks: list[ChunkTask] = []
        for seq, (start, end) in enumerate(chunks):
            name, remote = self._names(start, end)
            what = label(start, end, job.chunk)
            mine = this_run.get(seq)
            if mine is not None and mine.remote_path == remote:
                records[seq] = mine  # finished by an earlier attempt of this run
                self.counts[mine.outcome or "exported"] = self.counts.get(mine.outcome or "exported", 0) + 1
                log.info("chunk %s: %s by an earlier attempt of this run", what, mine.outcome)
                continue
            fp = fps.get(seq)
            prev = self.ledger.last_final(job.name, start.isoformat(), end.isoformat(), identity)
            outcome = "exported"
            if prev is not None and prev.remote_path == remote:
                if not (refresh == "never" or (refresh == "changed" and prev.fingerprint == fp)):
                    outcome = "changed"  # exported again whatever the destinations hold
                elif (found := self._still_there(prev, remote)) is not None:
                    stamps, how = found
                    rec = dataclasses.replace(
                        prev,
                        run_id=run.id,
                        seq=seq,
                        state=UNCHANGED,
                        outcome="unchanged",
                        layout="chunk",
                        stamps=stamps,
                    )
                    records[seq] = self.ledger.record(rec)
                    self.counts["unchanged"] += 1
                    log.info("chunk %s: unchanged (%s verified on %s)", what, remote, how)
                    continue
                else:
                    log.warning("chunk %s: %s is missing or different on a destination", what, remote)
            tasks.append(
                ChunkTask(
                    seq,
                    start,
                    end,
                    self._query(schema, start, end),
                    self.staging / name,
                    header=plan.dialect.header,
                    outcome=outcome,
                    file_name=name,
                    remote_path=remote,
                    fingerprint=fp,
                )
            )

        # on_empty = "fail" refuses an empty window before anything reaches a destination, as
        # the unchunked export does: while no chunk has rows, finished (header-only) chunks wait
        # in staging; the first chunk with rows releases them
        held: list[tuple[ChunkTask, ExportResult]] = []
        seen = sum(r.rows or 0 for r in records.values())

        def deliver(task: ChunkTask, result: ExportResult) -> None:
            records[task.seq] = self._deliver(run, task, result)
            self.counts[task.outcome] += 1
            holds.hold(f"chunk-{task.seq}")

        def on_done(task: ChunkTask, result: ExportResult) -> None:
            nonlocal seen
            # count_check per chunk: a chunk archive is checked before it is delivered
            self.p.check_rows(result.rows, task.query, empty=False)
            seen += result.rows
            held.append((task, result))
            if seen or job.on_empty != "fail":
                while held:
                    deliver(*held.pop(0))

        try:
            self._pull(tasks, schema, on_done)
            self.p.check_empty(seen)
        finally:
            for task, _ in held:  # an empty window refused (or a failure) before delivery
                task.target.unlink(missing_ok=True)
        ordered = [records[seq] for seq in range(len(chunks))]
        return self._stage_window_manifest(run, schema, ordered)

    def _still_there(self, prev: ChunkRecord, remote: str) -> tuple[str | None, str] | None:
        """Whether ``prev``'s archive is still at ``remote`` on every destination of the job:
        (the stamps to record, how each was checked), or None. A destination that gives a
        stamp (local) whose stamp is the one recorded when the sha256 was proved is not read
        again (no write reached the file since); any other is hashed."""
        stamps: dict[str, str] = {}
        how = []
        for n in self.job.destination_names:
            dest = self.p.dest_for(n)
            stamp_of = getattr(dest, "stamp", None)  # optional: destinations that can vouch for a file
            recorded = prev.stamp_on(n)
            retry = self.p._dest_retry(f"checking {remote} on {n}", n)
            if recorded is not None and stamp_of is not None and retry(stamp_of, remote) == recorded:
                stamps[n] = recorded
                how.append(f"{n}: unchanged file since its sha256 was proved")
                continue
            digest = retry(dest.sha256, remote)
            if digest is None or digest.hex != prev.sha256:
                return None
            if digest.stamp is not None:
                stamps[n] = digest.stamp
            how.append(f"{n}: sha256")
        return (json.dumps(stamps, sort_keys=True) if stamps else None), ", ".join(how)

    def _deliver(self, run: Run, task: ChunkTask, result: ExportResult) -> ChunkRecord:
        """Upload one chunk archive to every destination, prove its bytes there, write its
        sidecars, then record it ``done``."""
        job = self.job
        remote = task.remote_path or ""
        what = label(task.start, task.end, job.chunk)
        notes = []
        stamps: dict[str, str] = {}
        for name in job.destination_names:
            note, stamp = self._deliver_to(name, run, task, result)
            notes.append(note)
            if stamp is not None:
                stamps[name] = stamp
        rec = self.ledger.record(
            task.record(
                run.id,
                job.name,
                result,
                layout="chunk",
                state=DONE,
                outcome=task.outcome,
                archive_bytes=result.archive_bytes,
                sha256=result.sha256,
                file_name=task.file_name,
                remote_path=remote,
                fingerprint=task.fingerprint,
                identity=self.identity(),
                stamps=json.dumps(stamps, sort_keys=True) if stamps else None,
            )
        )
        if not job.keep_local:
            task.target.unlink(missing_ok=True)
        shown = "changed, re-exported" if task.outcome == "changed" else "exported"
        log.info("chunk %s: %s, %d rows → %s (%s)", what, shown, result.rows, remote, "; ".join(notes))
        return rec

    def _deliver_to(
        self, name: str, run: Run, task: ChunkTask, result: ExportResult
    ) -> tuple[str, str | None]:
        """(what was done, the archive's stamp there when its sha256 was proved)."""
        job = self.job
        d = self.p.delivery(name, task.remote_path or "", result.sha256)
        note, digest = upload_verified(
            d, lambda _: d.dest.put(task.target, d.remote, job.name), replacing=task.outcome == "changed"
        )
        method = digest.method
        manifest = self.p.manifest(
            run, task.query, result, Window(task.start, task.end), task.file_name, d.remote
        )
        manifest.update(
            layout="chunk",
            chunk={
                "seq": task.seq,
                "unit": job.chunk,
                "start": task.start.isoformat(),
                "end": task.end.isoformat(),
            },
            job_window={"start": self.plan.window.start.isoformat(), "end": self.plan.window.end.isoformat()},
            window_manifest=window_manifest_name(job.name, self.plan.window),
            fingerprint=task.fingerprint,
            destination=name,
            verify_method=method,
            verified_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        write_sidecars(d, task.file_name or "", manifest)
        return f"{note}{d.where}, {method}", digest.stamp

    def _stage_window_manifest(self, run: Run, schema: pa.Schema, ordered: list[ChunkRecord]) -> Run:
        """The window manifest, staged: the same bytes whenever the chunks are the same."""
        job, plan = self.job, self.plan
        name = window_manifest_name(job.name, plan.window)
        remote = f"{plan.remote_dir}/{name}" if plan.remote_dir else name
        rows = sum(r.rows or 0 for r in ordered)
        manifest = {
            "job": job.name,
            "table": job.table,
            "layout": "chunk",
            "kind": "window-manifest",
            "chunk": job.chunk,
            "window": {"start": plan.window.start.isoformat(), "end": plan.window.end.isoformat()},
            "rows": rows,
            "columns": columns_of(schema),
            "format": job.format.model_dump(exclude_none=True),
            "codec": job.compression.codec,
            "chunks": [chunk_entry(r) for r in ordered],
            "tableship_version": __version__,
        }
        body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        body = redact_bytes(body)
        target = self.staging / name
        part = target.with_name(target.name + ".part")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, target)
        fsync_dir(target.parent)
        c = self.counts
        log.info(
            "window %s: %d chunks: %d exported, %d changed (re-exported), %d unchanged; %d rows",
            plan.window,
            len(ordered),
            c["exported"],
            c["changed"],
            c["unchanged"],
            rows,
        )
        return self.p.staged(
            run,
            f"{len(ordered)} chunk archives verified; window manifest staged",
            rows,
            len(body),
            hashlib.sha256(body).hexdigest(),
            dict(manifest, counts=dict(c)),
            (name, remote, target),
        )
