"""The export phase of a chunked run (``chunk = "month" | "day"``), both layouts.

``layout = "window"``: the chunks are pulled (up to ``parallel`` at once) and appended in
order to the window's one archive; the run then goes on as an unchunked one (upload,
verify, sidecars). ``layout = "chunk"``: each chunk is its own archive, exported,
uploaded, verified and given its sidecars here, one after another in chunk order while
the next chunks are pulled; the run's own "archive" is then the *window manifest*
(``<job>_<start>_<end>.chunks.json``, listing the chunks), which the usual phases upload
and verify — byte-identical when nothing changed, so nothing is uploaded again.

Each finished chunk is recorded in the ledger (ledger/chunks.py) before the next one is
handed over, so a re-run after ``kill -9`` queries and uploads only the others. With
several destinations each copy of a chunk archive is recorded on its own
(``chunk_deliveries``): a destination that fails is not tried again by this process, the
others go on getting every chunk, and the chunk's staged archive is kept (state
``delivering``) until every destination holds a verified copy; the run's delivery phase
(backup/pipeline.py) then uploads a destination's missing copies before its window
manifest — so a re-run uploads only those, from staging, without querying the source. With
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
    spans,
    split,
)
from tableship.backup.delivery import StagedLost, delivery_error, upload_verified, write_sidecars
from tableship.backup.identity import dumps
from tableship.backup.query import partition_bounds, range_query
from tableship.core import holds
from tableship.core.errors import DestinationError, JobError, TableshipError
from tableship.core.fsutil import file_sha256, fsync_dir
from tableship.core.names import render_relative
from tableship.core.redact import redact_bytes
from tableship.core.version import __version__
from tableship.core.window import Window
from tableship.ledger.chunks import (
    DELIVERING,
    DONE,
    FAILED,
    FINAL,
    UNCHANGED,
    VERIFIED,
    ChunkCopies,
    ChunkCopy,
    ChunkLedger,
    ChunkRecord,
)
from tableship.ledger.errors import LedgerError
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
        self.copies = ChunkCopies(pipeline.store)
        self.staging = self.plan.staged_path.parent
        self._kept: set[int] = set()  # chunks whose staged archive must outlive a failure
        self._intact: set[int] = set()  # chunks whose staged archive was checked (or written) here
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
            self._kept.update(t.seq for t in tasks)
        puller.kept = self._kept
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
        this_run = {r.seq: r for r in self.ledger.of_run(run.id) if r.state in (*FINAL, DELIVERING)}
        records: dict[int, ChunkRecord] = {}
        waiting: list[ChunkRecord] = []  # exported by an earlier attempt, copies missing
        tasks: list[ChunkTask] = []
        for seq, (start, end) in enumerate(chunks):
            name, remote = self._names(start, end)
            what = label(start, end, job.chunk)
            mine = this_run.get(seq)
            if mine is not None and mine.remote_path == remote:
                if mine.state == DELIVERING and not self._staged_intact(mine):
                    log.warning(
                        "chunk %s: its staged archive %s is missing or changed: exporting it again",
                        what,
                        name,
                    )
                else:
                    records[seq] = mine  # finished (or exported) by an earlier attempt of this run
                    self.counts[mine.outcome or "exported"] = (
                        self.counts.get(mine.outcome or "exported", 0) + 1
                    )
                    if mine.state == DELIVERING:
                        waiting.append(mine)
                        log.info("chunk %s: exported by an earlier attempt of this run, staged", what)
                    else:
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

        for rec in waiting:  # no query: their staged archives go to the destinations missing them
            self._kept.add(rec.seq)
            records[rec.seq] = self._deliver_copies(run, rec)
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
            recorded = prev.stamp_on(n)
            if n in self.p.down:
                # down in this run (its window manifest fails, the run with it): the copy it
                # proved before is checked again by the next run
                if recorded is not None:
                    stamps[n] = recorded
                how.append(f"{n}: not checked, down")
                continue
            try:
                found = self._proved_on(n, prev, remote, recorded)
            except LedgerError:
                raise
            except TableshipError as exc:
                if len(self.job.destination_names) == 1:
                    raise
                log.error("checking %s on %s failed: %s", remote, n, exc.line())
                self.p.down[n] = exc
                if all(d in self.p.down for d in self.job.destination_names):
                    raise delivery_error(
                        [(d, self.p.down[d]) for d in self.job.destination_names], len(self.p.down)
                    ) from exc
                if recorded is not None:
                    stamps[n] = recorded
                how.append(f"{n}: not checked, down")
                continue
            if found is None:
                return None
            stamp, note = found
            if stamp is not None:
                stamps[n] = stamp
            how.append(f"{n}: {note}")
        return (json.dumps(stamps, sort_keys=True) if stamps else None), ", ".join(how)

    def _proved_on(
        self, n: str, prev: ChunkRecord, remote: str, recorded: str | None
    ) -> tuple[str | None, str] | None:
        """(its stamp, how it was checked) if ``prev``'s archive is at ``remote`` on ``n``, else None."""
        dest = self.p.dest_for(n)
        stamp_of = getattr(dest, "stamp", None)  # optional: destinations that can vouch for a file
        retry = self.p._dest_retry(f"checking {remote} on {n}", n)
        if recorded is not None and stamp_of is not None and retry(stamp_of, remote) == recorded:
            return recorded, "unchanged file since its sha256 was proved"
        digest = retry(dest.sha256, remote)
        if digest is None or digest.hex != prev.sha256:
            return None
        return digest.stamp, "sha256"

    def _deliver(self, run: Run, task: ChunkTask, result: ExportResult) -> ChunkRecord:
        """A chunk archive just exported: recorded ``delivering`` (staged, with the manifest
        its destinations get), then copied to every destination (:meth:`_deliver_copies`)."""
        job = self.job
        manifest = self.p.manifest(
            run, task.query, result, Window(task.start, task.end), task.file_name, task.remote_path
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
        )
        rec = self.ledger.record(
            task.record(
                run.id,
                job.name,
                result,
                layout="chunk",
                state=DELIVERING,
                outcome=task.outcome,
                archive_bytes=result.archive_bytes,
                sha256=result.sha256,
                file_name=task.file_name,
                remote_path=task.remote_path or "",
                fingerprint=task.fingerprint,
                identity=self.identity(),
                manifest=json.dumps(manifest, sort_keys=True),
            )
        )
        self._kept.add(task.seq)  # from here on the staged archive is the chunk's only copy
        self._intact.add(task.seq)
        return self._deliver_copies(run, rec)

    def _deliver_copies(self, run: Run, rec: ChunkRecord) -> ChunkRecord:
        """Copy ``rec``'s staged archive to each destination without a verified copy of it.
        A destination that fails is recorded so and not tried again by this process (the
        others go on); the error is raised only when no destination is left. Returns the
        record, ``done`` once every destination holds a verified copy."""
        job = self.job
        what = label(dt.date.fromisoformat(rec.chunk_start), dt.date.fromisoformat(rec.chunk_end), job.chunk)
        earlier = self.copies.of_run(run.id).get(rec.seq, {})
        notes = []
        for name in job.destination_names:
            if _holds(earlier.get(name), rec) or name in self.p.down:
                continue
            try:
                notes.append(self._copy_to(name, run, rec, replacing=name in earlier))
            except LedgerError:
                raise  # nothing can be recorded
            except StagedLost:
                raise JobError(
                    f"the staged chunk archive {rec.file_name} changed on disk while it was uploaded",
                    "re-run: the chunk is exported again",
                ) from None
            except TableshipError as exc:
                self.copies.record(rec, name, FAILED, error=exc.line())
                self.p.down[name] = exc
                if len(job.destination_names) > 1:
                    log.error(
                        "chunk %s: delivery to %s failed: %s (its staged archive is kept for the next run)",
                        what,
                        name,
                        exc.line(),
                    )
        done = self._finish_if_complete(rec)
        shown = "changed, re-exported" if rec.outcome == "changed" else "exported"
        if done.state == DONE:
            log.info(
                "chunk %s: %s, %d rows → %s (%s)",
                what,
                shown,
                rec.rows or 0,
                rec.remote_path,
                "; ".join(notes),
            )
            return done
        lacking = [n for n in job.destination_names if n in self.p.down]
        log.info(
            "chunk %s: %s, %d rows → %s (%s); not on %s yet: its staged archive is kept",
            what,
            shown,
            rec.rows or 0,
            rec.remote_path,
            "; ".join(notes) or "no destination",
            ", ".join(lacking),
        )
        if len(lacking) == len(job.destination_names):
            raise delivery_error([(n, self.p.down[n]) for n in lacking], len(lacking))
        return done

    def _copy_to(self, name: str, run: Run, rec: ChunkRecord, replacing: bool) -> str:
        """Upload ``rec``'s staged archive to ``name`` (unless it is there), prove it, write its
        sidecars, record the copy ``verified``. Returns what was done."""
        job = self.job
        d = self.p.delivery(name, rec.remote_path or "", rec.sha256 or "")
        staged = self.staging / (rec.file_name or "")

        def upload(attempt: int) -> None:
            if attempt:
                self._intact.discard(rec.seq)  # a re-upload reads the staged archive again: check it
            if not self._staged_intact(rec):
                raise StagedLost()
            d.dest.put(staged, d.remote, job.name)

        note, digest = upload_verified(d, upload, replacing=replacing or rec.outcome == "changed")
        at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        manifest = json.loads(rec.manifest or "{}")
        manifest.update(destination=name, verify_method=digest.method, verified_at=at)
        write_sidecars(d, rec.file_name or "", manifest)
        self.copies.record(
            rec,
            name,
            VERIFIED,
            sha256=rec.sha256,
            verify_method=digest.method,
            stamp=digest.stamp,
            verified_at=at,
        )
        holds.hold(f"chunk-{rec.seq}-{name}")
        return f"{note}{d.where}, {digest.method}"

    def _finish_if_complete(self, rec: ChunkRecord) -> ChunkRecord:
        """``rec`` recorded ``done`` (with each copy's stamp) once every destination holds a
        verified copy; then its staged archive is removed (unless ``keep_local``)."""
        copies = self.copies.of_run(rec.run_id).get(rec.seq, {})
        if not all(_holds(copies.get(n), rec) for n in self.job.destination_names):
            return rec
        stamps = {n: c.stamp for n, c in copies.items() if c.stamp and n in self.job.destination_names}
        done = self.ledger.record(
            dataclasses.replace(
                rec, state=DONE, stamps=json.dumps(stamps, sort_keys=True) if stamps else None
            )
        )
        if not self.job.keep_local:
            (self.staging / (rec.file_name or "")).unlink(missing_ok=True)
            self._kept.discard(rec.seq)
        return done

    def _staged_intact(self, rec: ChunkRecord) -> bool:
        """Whether ``rec``'s staged archive is there with its recorded sha256 (read once)."""
        if rec.seq in self._intact:
            return True
        path = self.staging / (rec.file_name or "")
        if not rec.file_name or not path.is_file() or file_sha256(path) != rec.sha256:
            return False
        self._intact.add(rec.seq)
        return True

    def deliver_missing(self, run: Run, name: str) -> None:
        """The delivery phase, before the window manifest goes to ``name``: the chunk
        archives ``name`` has no verified copy of, uploaded from staging. Raises the
        destination's error (naming the chunks still missing there), or :class:`StagedLost`
        when a staged archive is gone (the run then exports that chunk again)."""
        missing = self.copies.missing(run.id, [name]).get(name, [])
        try:
            if name in self.p.down:  # failed in this process already: not tried again
                raise self.p.down[name]
            for rec in missing:
                if not self._staged_intact(rec):
                    log.warning(
                        "staged chunk archive %s is missing or changed: exporting it again", rec.file_name
                    )
                    raise StagedLost()
                what = label(
                    dt.date.fromisoformat(rec.chunk_start),
                    dt.date.fromisoformat(rec.chunk_end),
                    self.job.chunk,
                )
                try:
                    note = self._copy_to(name, run, rec, replacing=False)
                except TableshipError as exc:
                    if not isinstance(exc, LedgerError):
                        self.copies.record(rec, name, FAILED, error=exc.line())
                    raise
                every = self._finish_if_complete(rec).state == DONE
                log.info(
                    "chunk %s: missing copy delivered (%s)%s",
                    what,
                    note,
                    "; on every destination now, its staged archive released" if every else "",
                )
        except LedgerError:
            raise
        except TableshipError as exc:
            raise self.missing_error(run, name, exc) from exc

    def missing_error(self, run: Run, name: str, exc: TableshipError) -> TableshipError:
        """``exc`` (a delivery to ``name`` failed), saying which chunk archives ``name`` lacks."""
        left = self.copies.missing(run.id, [name]).get(name, [])
        if not left:
            return exc
        total = len(split(self.plan.window, self.job.chunk))
        err = DestinationError(
            f"{exc.message}; {name} is missing {len(left)} of {total} chunk archives "
            f"({spans(left, self.job.chunk)}), kept in staging until delivered",
            exc.hint,
        )
        err.transient = exc.transient
        return err

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
        waiting = sum(1 for r in ordered if r.state == DELIVERING)
        note = f"{len(ordered)} chunk archives verified"
        if waiting:
            note = f"{len(ordered) - waiting} of {len(ordered)} chunk archives verified everywhere"
        return self.p.staged(
            run,
            f"{note}; window manifest staged",
            rows,
            len(body),
            hashlib.sha256(body).hexdigest(),
            dict(manifest, counts=dict(c)),
            (name, remote, target),
        )


def _holds(copy: ChunkCopy | None, rec: ChunkRecord) -> bool:
    """Whether ``copy`` is a verified copy of ``rec``'s archive (the same bytes)."""
    return copy is not None and copy.state == VERIFIED and copy.sha256 == rec.sha256
