"""The phase machine for one run of one job: export → upload → verify → clean.

Each step starts from the last phase recorded as durable in the state store and records
its own phase only after its effect is durable, so a re-run after any failure (or
``kill -9``) resumes at the first phase not done and ends with the same content.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from tableship.archive.writer import BATCH_ROWS, ExportResult, write_archive
from tableship.backup.chunked import ChunkedExport
from tableship.backup.delivery import Delivery, StagedLost, delivery_error, upload_verified, write_sidecars
from tableship.backup.identity import differences, dumps, fingerprint
from tableship.backup.plan import Plan
from tableship.backup.query import build_query
from tableship.config.models import Retry
from tableship.config.spec import DestinationSpec
from tableship.core import holds, interrupts
from tableship.core.errors import (
    DataCheckError,
    Interrupted,
    JobError,
    TableshipError,
)
from tableship.core.fsutil import file_sha256
from tableship.core.log import current_run
from tableship.core.retry import backoff
from tableship.core.version import __version__
from tableship.core.window import Window
from tableship.destinations.base import Destination, open_destination
from tableship.ledger import deliveries
from tableship.ledger.chunks import DELIVERING
from tableship.ledger.errors import LedgerError
from tableship.ledger.state import WORKING_ON, Phase, Result, Run, StateStore
from tableship.sources.base import Query, Source, open_source

log = logging.getLogger("tableship")


class ProgressLine(Protocol):
    """A live progress line for one run (``cli/progress.py``): called with ``(rows, csv_bytes)``
    while exporting; the runner closes it when the run ends."""

    def __call__(self, rows: int, nbytes: int) -> None: ...

    def close(self) -> None: ...


def retrying(policy: Retry | None, what: str):
    """Retry transient TableshipErrors with exponential back-off and jitter."""
    used = policy or Retry(attempts=1)

    def on_retry(attempt: int, exc: BaseException, sleep: float) -> None:
        line = exc.line() if isinstance(exc, TableshipError) else exc
        log.warning(
            "%s failed (attempt %d of %d): %s; retrying in %.1fs", what, attempt, used.attempts, line, sleep
        )

    return backoff(
        used,
        lambda e: isinstance(e, TableshipError) and e.transient and interrupts.pending() is None,
        on_retry,
    )


DestinationLookup = Callable[[str], DestinationSpec | None]


class Pipeline:
    """One run: ``Pipeline(plan, store).run()`` returns the finished Run or raises.

    Everything it needs comes with ``plan.job`` (the resolved job spec);
    ``destinations(name)`` answers for a destination an abandoned run of the job wrote
    to that is not one of the job's own any more (its leftovers are cleaned there too).
    """

    def __init__(
        self,
        plan: Plan,
        store: StateStore,
        progress: ProgressLine | None = None,
        destinations: DestinationLookup | None = None,
    ):
        self.plan = plan
        self.job = plan.job
        self.store = store
        self.progress = progress
        self._lookup = destinations or (lambda name: None)
        self._source: Source | None = None
        self._dests: dict[str, Destination] = {}
        self.run_record: Run | None = None
        self._exported_here = False  # a staged archive written by this process needs no re-hash
        self._staged_checked = False
        self._chunked: ChunkedExport | None = None
        # destinations a delivery failed on in this process (layout "chunk"): not tried again
        # for the next chunks nor for the window manifest; the next run tries them
        self.down: dict[str, TableshipError] = {}

    # -- resources, opened only when a phase needs them
    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = open_source(self.job.source.name, self.job.source.settings)
        return self._source

    @property
    def dest(self) -> Destination:
        """The job's first destination (the one of a single-destination job)."""
        return self.dest_for(self.job.destination.name)

    def dest_spec(self, name: str) -> DestinationSpec | None:
        """One of the job's destinations, else the one configured under ``name`` now (or None)."""
        own = next((d for d in self.job.destinations if d.name == name), None)
        return own or self._lookup(name)

    def dest_for(self, name: str) -> Destination:
        if name not in self._dests:
            spec = self.dest_spec(name)
            if spec is None:
                raise KeyError(name)  # callers ask only for a destination they found configured
            self._dests[name] = open_destination(name, spec.settings)
        return self._dests[name]

    def _close_dest(self, name: str) -> None:
        dest = self._dests.pop(name, None)
        if dest is not None:
            try:
                dest.close()
            except Exception:  # closing must never hide the run's own outcome
                log.debug("close failed", exc_info=True)

    def _dest_retry(self, what: str, name: str | None = None):
        spec = self.dest_spec(name) if name else self.job.destination
        return retrying(spec.retries if spec else None, what)

    def _source_retry(self, what: str):
        return retrying(self.job.source.retries, what)

    def close(self) -> None:
        stop: BaseException | None = None
        for r in (self._source, *self._dests.values()):
            if r is not None:
                try:
                    r.close()
                except Exception:  # closing must never hide the run's own outcome
                    log.debug("close failed", exc_info=True)
                except BaseException as exc:  # a signal while closing: close the other one, then stop
                    stop = stop or exc
        if stop is not None:
            raise stop

    # -- the machine
    def begin(self) -> Run:
        """Resume the window's unfinished run if it has the current config's identity;
        otherwise abandon it (its leftovers removed) and start a fresh run."""
        w = self.plan.window
        fp = fingerprint(self.plan)
        run = self.store.resumable(self.job.name, w.start.isoformat(), w.end.isoformat())
        if run is not None:
            changes = self.identity_changes(run, fp)
            if changes:
                reason = "config changed: " + "; ".join(changes)
                with _run_tag(run.id):
                    log.warning(
                        "run %d of %s for %s was planned under another config (%s): abandoning it and "
                        "starting a fresh run",
                        run.id,
                        self.job.name,
                        w,
                        "; ".join(changes),
                    )
                self.discard(run, reason)
                run = None
        if run is not None:
            if run.fingerprint is None:
                self.store.set_fingerprint(run, dumps(fp))
            run = self.store.resume(run)
            with _run_tag(run.id):
                log.info(
                    "resuming run %d of %s for %s at phase %s (attempt %d)",
                    run.id,
                    self.job.name,
                    w,
                    run.phase,
                    run.attempts,
                )
        else:
            run = self.store.start(
                self.job.name,
                w.start.isoformat(),
                w.end.isoformat(),
                self.plan.run_date.isoformat(),
                dumps(fp),
            )
            with _run_tag(run.id):
                log.info("run %d of %s: window %s, %s", run.id, self.job.name, w, self.plan.remote_path)
        self.run_record = run
        return run

    def identity_changes(self, run: Run, fp: dict) -> list[str]:
        """How the archive ``run`` would ship differs from what the config says now ([] = same)."""
        old = run.fingerprint_dict()
        if old is not None:
            return differences(old, fp)
        # a run recorded before fingerprints existed: its remote path is all we can compare
        if run.remote_path and run.remote_path != fp["remote_path"]:
            return [f"remote_path: {run.remote_path} → {fp['remote_path']}"]
        return []

    def discard(self, run: Run, reason: str) -> Run:
        """Abandon ``run``: record it with ``reason``, remove its staged archive, its remote
        temporaries and an archive it uploaded but never verified. Remote clean-up is best
        effort (a warning): the fresh run does not depend on it."""
        fp = run.fingerprint_dict() or {}
        staging = self.job.staging_dir
        names = {run.staged_path} if run.staged_path else set()
        if fp.get("file_name"):
            names.add(str(staging / fp["file_name"]))
        # layout "chunk": chunk archives kept for a destination that never got them
        names |= {
            str(staging / c.file_name)
            for c in self.chunked.ledger.of_run(run.id)
            if c.state == DELIVERING and c.file_name
        }
        for name in names:
            for path in (Path(name), Path(name + ".part")):
                if path.parent.resolve() == staging.resolve() and path.is_file():
                    path.unlink()
                    log.info("removed staged file %s of abandoned run %d", path.name, run.id)
        try:
            self._discard_remote(run, fp)
        except TableshipError as exc:
            log.warning("could not remove the remote leftovers of abandoned run %d: %s", run.id, exc.line())
        return self.store.abandon(run, reason)

    def _discard_remote(self, run: Run, fp: dict) -> None:
        delivered = deliveries.of_run(self.store, run.id)
        for entry in fp.get("destinations") or [{"name": self.job.destination.name}]:
            name = entry.get("name")
            if name in delivered and delivered[name].verified:
                continue  # a verified copy is a backup: abandoning the run never removes it
            self._discard_remote_on(run, fp, entry)

    def _discard_remote_on(self, run: Run, fp: dict, entry: dict) -> None:
        old_name: str | None = entry.get("name")
        spec = self.dest_spec(old_name) if old_name else None
        if old_name is None or spec is None or ("target" in entry and spec.target != entry["target"]):
            log.warning(
                "abandoned run %d wrote to destination %s, which is no longer configured as it was: "
                "its remote temporaries (if any) are left there",
                run.id,
                old_name,
            )
            return
        dest = self.dest_for(old_name)
        remote = run.remote_path or fp.get("remote_path")
        if not remote:
            return
        folder = remote.rpartition("/")[0]
        for name in dest.cleanup(folder, self.job.name):
            log.info("removed temporary %s/%s of abandoned run %d on %s", folder, name, run.id, old_name)
        if run.phase in (Phase.EXPORTED.value, Phase.UPLOADED.value) and run.sha256 and run.remote_path:
            verified_elsewhere = any(
                r.id != run.id
                and r.phase == Phase.DONE.value
                and r.remote_path == run.remote_path
                and r.sha256 == run.sha256
                for r in self.store.runs_of(self.job.name)
            )
            found = None if verified_elsewhere else dest.sha256(run.remote_path)
            if found is not None and found.hex == run.sha256:
                # uploaded by this run, never verified: not a backup anyone relies on
                for name in (
                    run.remote_path + ".manifest.json",
                    run.remote_path + ".sha256",
                    run.remote_path,
                ):
                    dest.delete(name)
                log.info(
                    "removed unverified archive %s of abandoned run %d on %s",
                    run.remote_path,
                    run.id,
                    old_name,
                )

    def run(self) -> Run:
        run = self.run_record or self.begin()
        steps = {
            Phase.PLANNED: self.export,
            Phase.EXPORTED: self.deliver,
            Phase.UPLOADED: self.deliver,  # a run recorded before deliveries existed
            Phase.VERIFIED: self.clean,
        }
        try:
            while run.phase != Phase.DONE.value:
                interrupts.checkpoint()
                run = steps[Phase(run.phase)](run)
                self.run_record = run
            interrupts.checkpoint()
        except BaseException as caught:
            exc = interrupts.as_interrupt(caught)
            err = _as_job_error(exc)
            run = self.store.get(run.id)
            self.run_record = self.store.finish(
                run, Result.FAILED, _ledger_error(exc, err), WORKING_ON[Phase(run.phase)]
            )
            if err is not None and err is not exc:
                raise err from exc
            if exc is not caught:
                raise exc from caught
            raise
        finally:
            self.close()
        self.run_record = self.store.finish(run, Result.SUCCESS)
        return self.run_record

    # -- phases
    def export(self, run: Run) -> Run:
        job, plan = self.job, self.plan
        schema = self._source_retry(f"reading the columns of {job.table}")(self.source.schema, job.table)
        query = build_query(self.source, plan, schema)
        if job.expect_columns is not None:
            check_columns(job.expect_columns, schema.names)
        if job.chunk != "none":
            return self.export_chunks(run, schema)
        log.info("exporting %s: %s", job.table, query.display())
        result = self._source_retry(f"export of {job.table}")(
            lambda: write_archive(
                holds.after_first(self.source.batches(query, BATCH_ROWS), "export"),
                schema,
                plan.staged_path,
                plan.dialect,
                job.compression.codec,
                job.compression.level,
                self.progress,
            )
        )
        log.info(
            "exported %d rows, %d CSV bytes → %d archive bytes (sha256 %s)",
            result.rows,
            result.csv_bytes,
            result.archive_bytes,
            result.sha256[:12],
        )
        check_rows(
            job, result.rows, lambda: self._source_retry(f"COUNT(*) of {job.table}")(self.source.count, query)
        )
        manifest = self.manifest(run, query, result, plan.window, plan.file_name, plan.remote_path)
        return self.staged(run, "archive staged", result.rows, result.archive_bytes, result.sha256, manifest)

    def staged(
        self,
        run: Run,
        note: str,
        rows: int,
        archive_bytes: int,
        sha256: str,
        manifest: dict,
        names: tuple[str, str, Path] | None = None,
    ) -> Run:
        """``run`` → ``exported``: its archive staged by this process, under the plan's names
        or ``names`` (file name, remote path, staged path)."""
        plan = self.plan
        file_name, remote_path, path = names or (plan.file_name, plan.remote_path, plan.staged_path)
        self._exported_here = True
        return self.store.advance(
            run,
            Phase.EXPORTED,
            note,
            rows=rows,
            archive_bytes=archive_bytes,
            sha256=sha256,
            file_name=file_name,
            remote_path=remote_path,
            staged_path=str(path),
            manifest=manifest,
        )

    def _here(self, staged: str | None) -> bool:
        """Whether a recorded staged archive lies in this host's own staging folder (a run
        resumed from another host's ledger row may name that host's folder)."""
        if not staged:
            return False
        return Path(staged).resolve().is_relative_to(self.job.staging_dir.resolve())

    @property
    def chunked(self) -> ChunkedExport:
        """The chunked export and chunk deliveries of this run (backup/chunked.py)."""
        if self._chunked is None:
            self._chunked = ChunkedExport(self)
        return self._chunked

    def export_chunks(self, run: Run, schema) -> Run:
        """The export phase of a chunked job (backup/chunked.py)."""
        return self.chunked.run(run, schema)

    def check_rows(self, rows: int, query: Query, empty: bool = True) -> None:
        """The data checks of ``rows`` exported by ``query`` (``empty``: ``on_empty`` too)."""
        job = self.job
        if empty:
            self.check_empty(rows)
        check_count(
            job, rows, lambda: self._source_retry(f"COUNT(*) of {job.table}")(self.source.count, query)
        )

    def check_empty(self, rows: int) -> None:
        """``on_empty`` for a window of ``rows`` rows."""
        check_empty(self.job, rows)

    def manifest(
        self, run: Run, query: Query, result: ExportResult, window: Window, file_name: str, remote_path: str
    ) -> dict:
        """An archive's ``.manifest.json`` (a window's, or a chunk's with ``window`` = the chunk)."""
        job, plan = self.job, self.plan
        return {
            "job": job.name,
            "table": job.table,
            "source": {"name": job.source.name, "type": job.source.type},
            "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
            "run_date": plan.run_date.isoformat(),
            "run_id": run.id,
            "query": query.display(),
            "query_sql": query.sql,
            "query_params": [v.isoformat() if isinstance(v, dt.date) else v for v in query.values],
            "rows": result.rows,
            "csv_bytes": result.csv_bytes,
            "columns": result.columns,
            "format": job.format.model_dump(exclude_none=True),
            "compression": result.compression,
            "file_name": file_name,
            "remote_path": remote_path,
            "destination": job.destination.name,
            "destinations": list(job.destination_names),
            "archive_bytes": result.archive_bytes,
            "sha256": result.sha256,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "tableship_version": __version__,
        }

    def _staged_ok(self, run: Run) -> bool:
        if self._staged_checked:
            return True
        path = Path(run.staged_path or self.plan.staged_path)
        if not self._here(str(path)):
            log.warning("staged archive %s is not in this host's staging folder; exporting again", path)
            return False
        if not path.is_file():
            log.warning("staged archive %s is missing; exporting again", path)
            return False
        if not self._exported_here and file_sha256(path) != run.sha256:
            log.warning("staged archive %s does not match its recorded sha256; exporting again", path)
            return False
        self._staged_checked = True
        return True

    def deliver(self, run: Run) -> Run:
        """Upload, verify and write the sidecars on every destination whose delivery is not
        verified yet, each on its own: one destination failing neither stops the others nor
        undoes what they got. The run is verified once every delivery is; else the first
        failure is raised (the run stays exported, its staged archive kept for the next run)."""
        done = deliveries.of_run(self.store, run.id)
        failures: list[tuple[str, TableshipError]] = []
        for name in self.job.destination_names:
            if name in done and done[name].verified:
                continue
            interrupts.checkpoint()
            try:
                try:
                    self._deliver(run, name)
                finally:
                    if len(self.job.destination_names) > 1:
                        # one host's connection is never held while waiting for another's
                        # (max_connections across parallel jobs: no two jobs can deadlock)
                        self._close_dest(name)
            except StagedLost:
                return self.store.advance(run, Phase.PLANNED, "staged archive lost or changed")
            except LedgerError:
                raise  # nothing can be recorded
            except TableshipError as exc:
                deliveries.record(
                    self.store,
                    run.id,
                    self.job.name,
                    name,
                    _phase_of(self.store, run.id, name),
                    "failed",
                    error=exc.line(),
                )
                if len(self.job.destination_names) > 1:
                    log.error("delivery to %s failed: %s", name, exc.line())
                failures.append((name, exc))
        got = deliveries.of_run(self.store, run.id)
        landed = [n for n in self.job.destination_names if n in got and got[n].phase != deliveries.PENDING]
        if run.phase == Phase.EXPORTED.value and len(landed) == len(self.job.destination_names):
            # the run's phase is its least advanced delivery's: uploaded once every copy landed
            run = self.store.advance(run, Phase.UPLOADED, f"uploaded to {', '.join(landed)}")
        if failures:
            raise delivery_error(failures, len(self.job.destination_names))
        methods = sorted({d.verify_method or "unknown" for d in got.values()})
        manifest = run.manifest_dict() or {}
        manifest["verify_method"] = (
            got[self.job.destination.name].verify_method if self.job.destination.name in got else methods[0]
        )
        manifest["verified_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return self.store.advance(
            run,
            Phase.VERIFIED,
            ", ".join(methods),
            verify_method=manifest["verify_method"],
            manifest=manifest,
        )

    def _deliver(self, run: Run, name: str) -> None:
        """One destination: upload (unless it already holds the archive), verify its sha256
        (re-uploading at most twice on a mismatch), then the sidecars."""
        remote, sha256, staged = _exported(run)
        deliveries.start_attempt(self.store, run.id, self.job.name, name, remote, sha256)
        d = self.delivery(name, remote, sha256)

        def upload(attempt: int) -> None:
            if attempt:
                self._staged_checked = False  # the re-upload reads the staged archive again: check it
            if not self._staged_ok(run):
                raise StagedLost()
            d.dest.put(staged, remote, self.job.name)

        def uploaded() -> None:
            deliveries.record(self.store, run.id, self.job.name, name, deliveries.UPLOADED, "running")

        # layout "chunk": the window manifest is rewritten whenever a chunk changed
        window_manifest = (run.manifest_dict() or {}).get("kind") == "window-manifest"
        if window_manifest:
            # its chunk archives first: a destination's window manifest lists only chunks it holds
            self.chunked.deliver_missing(run, name)
        _, digest = upload_verified(d, upload, uploaded, replacing=window_manifest)
        method = digest.method
        log.info("verified %s on %s (%s)", remote, name, method)
        manifest = run.manifest_dict() or {}
        manifest["destination"] = name
        manifest["verify_method"] = method
        manifest["verified_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        # layout "chunk": the chunks carry the manifests; the window manifest gets its .sha256
        write_sidecars(d, run.file_name or remote.rpartition("/")[2], None if window_manifest else manifest)
        deliveries.record(
            self.store,
            run.id,
            self.job.name,
            name,
            deliveries.VERIFIED,
            "success",
            verify_method=method,
            verified_at=manifest["verified_at"],
            error=None,
        )

    def delivery(self, name: str, remote: str, sha256: str) -> Delivery:
        """``sha256``'s archive to ``remote`` on destination ``name``, with its retry policy."""
        where = f" on {name}" if len(self.job.destination_names) > 1 else ""
        return Delivery(
            self.dest_for(name),
            remote,
            sha256,
            self.job.name,
            where,
            lambda what: self._dest_retry(what, name),
        )

    def clean(self, run: Run) -> Run:
        if not self.job.keep_local and run.staged_path and self._here(run.staged_path):
            Path(run.staged_path).unlink(missing_ok=True)
        # partial exports left by a killed run of another window (we hold the job's lock)
        for stale in Path(run.staged_path or self.plan.staged_path).parent.glob("*.part"):
            stale.unlink(missing_ok=True)
            log.info("removed stale partial export %s", stale.name)
        for name in self.job.destination_names:
            try:
                removed = self.dest_for(name).cleanup(self.plan.remote_dir, self.job.name)
                for temp in removed:
                    log.info("removed stale temporary %s/%s on %s", self.plan.remote_dir, temp, name)
            except TableshipError as exc:  # a leftover temporary is not worth failing a verified backup
                log.warning("could not clean stale temporaries on %s: %s", name, exc.line())
        return self.store.advance(run, Phase.DONE, "done")


def _exported(run: Run) -> tuple[str, str, Path]:
    """(remote path, sha256, staged path) of an exported run (recorded with its phase)."""
    if run.remote_path is None or run.sha256 is None or run.staged_path is None:
        raise JobError(
            f"run {run.id} is recorded as {run.phase} without its archive",
            "the ledger was edited by hand: abandon the run (tableship abandon), then re-run",
        )
    return run.remote_path, run.sha256, Path(run.staged_path)


def _phase_of(store: StateStore, run_id: int, name: str) -> str:
    got = deliveries.of_run(store, run_id).get(name)
    return got.phase if got else deliveries.PENDING


@contextlib.contextmanager
def _run_tag(run_id: int):
    """Tag log lines with the run id already while the run is being created (``[job#run]``)."""
    token = current_run.set(run_id)
    try:
        yield
    finally:
        current_run.reset(token)


def check_columns(expected: Sequence[str], actual: Sequence[str]) -> None:
    missing = [c for c in expected if c not in actual]
    extra = [c for c in actual if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise DataCheckError(
            f"column check failed: {'; '.join(parts)}",
            "the table's schema changed upstream: check it, then update expect_columns",
        )


def check_rows(job, rows: int, count: Callable[[], int]) -> None:
    """``on_empty`` for ``rows`` exported, then (``count_check``) ``count()`` == ``rows``."""
    check_empty(job, rows)
    check_count(job, rows, count)


def check_empty(job, rows: int) -> None:
    if rows == 0:
        if job.on_empty == "fail":
            raise DataCheckError(
                f"the window of {job.table} has no rows",
                'check the upstream load; set on_empty = "warn" or "ok" if empty windows are expected',
            )
        if job.on_empty == "warn":
            log.warning("the window of %s has no rows (on_empty = warn)", job.table)


def check_count(job, rows: int, count: Callable[[], int]) -> None:
    if job.count_check:
        expected = count()
        if expected != rows:
            raise DataCheckError(
                f"count check failed: exported {rows} rows but COUNT(*) says {expected}",
                "the table changed during the export; re-run",
            )


def _as_job_error(exc: BaseException) -> TableshipError | None:
    if isinstance(exc, TableshipError):
        return exc
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return JobError(
                f"no space left on the local disk ({exc.filename or 'staging'})",
                "free space in the staging folder, then re-run to resume",
            )
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return JobError(
                f"permission denied: {exc.filename}", "fix the permissions of state_dir / staging"
            )
        return JobError(f"I/O error: {exc}")
    return None  # a signal, or a bug: the runner reports it, the ledger says what it was


def _ledger_error(exc: BaseException, err: TableshipError | None) -> str:
    """What ``runs.error`` records for a failed run: the error's line, the signal, or
    "unexpected error: …" for anything unmapped (never a bug disguised as a signal)."""
    if err is not None:
        return err.line()
    if isinstance(exc, Interrupted):
        return exc.line()
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by SIGINT — re-run the same command to resume where it stopped"
    return f"unexpected error: {type(exc).__name__}: {exc}"
