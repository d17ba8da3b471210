"""``tableship restore JOB --from A --to B``: every archive of a date range, verified first,
then loaded into one target table, resumable per archive.

Steps (each archive's load is atomic; nothing is loaded until every archive verified):

1. select (:mod:`.select`): the archives overlapping the range on the job's destinations,
   one archive per day (the newest); ``--dry-run`` prints them and stops;
2. lock the target table (the ledger's job lock ``restore-<hash>``; held: exit 75);
3. check the target: an existing table must have the manifest's columns, and without
   ``--replace`` the range's days must be empty in it — refused before any download;
4. verify every selected archive: downloaded from the first destination holding it
   whose copy has the manifest's sha256 (and its sidecar's; a damaged copy is reported
   and the next destination tried), header checked (``--out``: decompressed, size
   checked); any failure stops here and nothing is loaded;
5. create the table from the manifest's columns when there was none;
6. load (:mod:`.loadorder`): per archive ledger ``loading`` → the loader's atomic load
   (its rows inside its spans replace the spans' rows; rows outside the range are
   filtered out by the partition column) → ledger ``loaded``; loads overlap where the
   target can, commits follow the range's order; ``finish`` (Impala refresh).

On a failure (exit 1) the restore is recorded as failed, an incident is opened and
alerted once (the same policy as backups, job name ``<job>:restore``), and a re-run of
the same command resumes it: archives already loaded are skipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tableship.archive.codecs import SUFFIXES, open_decompressor
from tableship.archive.csvrender import render_value_text
from tableship.catalog import loadlog
from tableship.catalog.archivecsv import (
    RestoreError,
    decompress_csv,
    make_folder,
    manifest_columns,
    manifest_dialect,
)
from tableship.catalog.loaders.base import Loader, LoadSpec, Span, partition_kind
from tableship.catalog.loaders.targets import open_loader
from tableship.catalog.loadorder import load_in_order
from tableship.catalog.manifest import parse_sidecar, read_small
from tableship.catalog.scan import list_archives
from tableship.catalog.select import Pick, Selection, parse_range, select
from tableship.config.models import Config, JobConfig
from tableship.core.errors import JobError, LockedError, TableshipError, UsageError
from tableship.core.fsutil import file_sha256
from tableship.core.redact import Redactor
from tableship.core.window import Window, partition_value
from tableship.destinations.base import open_destination
from tableship.ledger.lock import JobLock, PgJobLock
from tableship.ledger.state import StateStore

log = logging.getLogger("tableship")

VERIFY_WORKERS = 4


def job_destinations(job: JobConfig) -> list[str]:
    """The job's destinations in config order (one today; several with ``destinations = [...]``)."""
    many = getattr(job, "destinations", None)
    return list(many) if many else [job.destination]


@dataclass
class Verified:
    """An archive whose local copy has the manifest's sha256 (and the header line it names)."""

    pick: Pick
    destination: str
    csv: Path | None  # decompressed (``--out``), or None: the loader reads ``archive``
    longest: int
    archive: Path | None = None
    codec: str = "none"


@dataclass
class RangeResult:
    job: str
    range: Window
    target: str | None
    selection: Selection
    loaded: list[tuple[Pick, str, int]] = field(default_factory=list)  # (pick, destination, rows)
    skipped: list[Pick] = field(default_factory=list)  # loaded by an earlier, interrupted run
    csv_paths: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def rows(self) -> int:
        return sum(r for _, _, r in self.loaded)

    def plan_lines(self, loaded: dict[str, str] | None = None) -> list[str]:
        out = []
        for p in self.selection.picks:
            a = p.archive
            how = "whole" if p.whole else f"rows in {p.spans_text()} only (the rest is filtered out)"
            done = " [already loaded]" if loaded and loaded.get(a.remote_path) == a.sha256 else ""
            out.append(
                f"{a.remote_path}  window {a.window}  {a.rows} rows  from {', '.join(p.copies)}: {how}{done}"
            )
        for w in self.selection.uncovered:
            out.append(f"no archive covers {w}")
        for a in self.selection.unusable:
            out.append(f"skipped {a.remote_path}: {'; '.join(a.problems) or 'no readable manifest'}")
        return out

    def summary(self) -> str:
        if self.dry_run:
            return (
                f"{self.job}: restore {self.range}: would use {len(self.selection.picks)} archive(s) "
                f"(dry run, nothing downloaded)"
            )
        if self.target is None:
            folder = self.csv_paths[0].parent if self.csv_paths else "-"
            return (
                f"{self.job}: restore {self.range}: OK, {len(self.csv_paths)} verified CSV file(s) "
                f"(whole archives) in {folder} in {self.seconds:.1f}s"
            )
        dests = sorted({d for _, d, _ in self.loaded})
        into = f" into {self.target}" if self.target else ""
        skipped = f", {len(self.skipped)} already loaded by an earlier run" if self.skipped else ""
        return (
            f"{self.job}: restore {self.range}{into}: OK, {len(self.loaded)} archive(s), {self.rows} rows"
            f"{skipped}{' from ' + ', '.join(dests) if dests else ''} in {self.seconds:.1f}s"
        )


def _listed(config: Config, job: JobConfig, store: StateStore) -> dict[str, list]:
    out: dict[str, list] = {}
    errors: list[TableshipError] = []
    for name in job_destinations(job):
        dest = open_destination(name, config.destinations[name])
        try:
            out[name] = list_archives(config, job, dest, store)
        except TableshipError as exc:  # one destination down: the others may hold every archive
            log.warning("cannot list destination %s: %s", name, exc.line())
            errors.append(exc)
        finally:
            dest.close()
    if not out and errors:
        raise errors[0]
    return out


def _csv_name(file_name: str, codec: str) -> str:
    suffix = SUFFIXES[codec]
    if suffix and file_name.endswith(suffix):
        return file_name[: -len(suffix)]
    return file_name + ".csv" if codec != "none" else file_name


def _verify(
    config: Config, pick: Pick, tmp: Path, say: Callable[[str], None], n: int = 0, decompress: bool = False
) -> Verified:
    """Download the first copy that has the manifest's sha256 and check its header line;
    ``decompress`` (``--out``): decompress it too and check its size. Without it the loader
    reads the compressed copy (its size and row count are checked inside the load's
    transaction, before the commit)."""
    m = pick.archive.manifest or {}
    codec = (m.get("compression") or {}).get("codec", "gzip")
    if codec not in SUFFIXES:
        raise RestoreError(
            f"{pick.archive.remote_path}: the manifest names an unknown codec {codec!r}", "upgrade tableship"
        )
    problems = []
    for name, copy in pick.copies.items():
        local = tmp / f"{n}-{name}-{copy.file_name}"
        dest = open_destination(name, config.destinations[name])
        try:
            say(f"downloading {copy.remote_path} from {name} ({copy.archive_bytes} bytes)")
            dest.get(copy.remote_path, local)
            got = file_sha256(local)
            if got != m["sha256"]:
                problems.append(f"on {name} its sha256 is {got[:12]}…, the manifest's {m['sha256'][:12]}…")
                local.unlink(missing_ok=True)
                continue
            if copy.has_sidecar:
                side = parse_sidecar(read_small(dest, copy.sha256_path, tmp, 64 * 1024))
                if side is not None and side[0] != got:
                    problems.append(f"on {name} its .sha256 sidecar says {side[0][:12]}…")
                    local.unlink(missing_ok=True)
                    continue
        except JobError as exc:
            problems.append(f"on {name}: {exc.line()}")
            local.unlink(missing_ok=True)
            continue
        finally:
            dest.close()
        if problems:
            log.warning("%s: %s; using the copy on %s", pick.archive.remote_path, "; ".join(problems), name)
        if not decompress:
            _check_header(pick, m, _first_line(local, codec))
            return Verified(pick, name, None, 0, local, codec)
        csv = tmp / f"{n}" / _csv_name(copy.file_name, codec)
        csv.parent.mkdir()
        try:
            quoted = manifest_dialect(m).quoting != "none"
            size, header, longest = decompress_csv(local, codec, csv, sync=False, quoted=quoted)
        except OSError as exc:
            raise RestoreError(
                f"cannot write {str(csv)!r}: {exc.strerror}", "free space in the staging folder"
            ) from None
        local.unlink(missing_ok=True)
        if isinstance(m.get("csv_bytes"), int) and size != m["csv_bytes"]:
            raise RestoreError(
                f"{pick.archive.remote_path} decompresses to {size} bytes, the manifest says "
                f"{m['csv_bytes']}; nothing was loaded",
                "the archive is inconsistent with its manifest: re-run the backup of that window",
            )
        _check_header(pick, m, header)
        return Verified(pick, name, csv, longest)
    raise RestoreError(
        f"{pick.archive.remote_path} cannot be used: {'; '.join(problems)}; refusing the whole range, "
        "nothing was loaded",
        "the archive is damaged: re-run the backup of that window, or restore a range without it",
    )


def _first_line(local: Path, codec: str) -> bytes:
    """The archive's first line, decompressed (at most 64 KiB of it)."""
    head = b""
    try:
        with open_decompressor(local, codec) as src:
            while b"\n" not in head and len(head) < 65536:
                chunk = src.read(65536)
                if not chunk:
                    break
                head += chunk
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # gzip/isal/zstd each raise their own error types
        raise RestoreError(
            f"the archive does not decompress as {codec}: {type(exc).__name__}: {exc}; nothing was loaded",
            "the archive is inconsistent with its manifest: restore another window",
        ) from None
    return head[:65536].split(b"\n", 1)[0]


def _check_header(pick: Pick, m: dict, header: bytes) -> None:
    dialect = manifest_dialect(m)
    cols = manifest_columns(m, strict=False)
    if dialect.header and not any("\n" in n or "\r" in n for n, _ in cols):
        expected = dialect.delimiter.join(render_value_text(n, dialect) for n, _ in cols)
        if header.decode("utf-8", "replace") != expected:
            raise RestoreError(
                f"{pick.archive.remote_path}: the CSV header does not list the manifest's columns; "
                "nothing was loaded",
                "the archive is inconsistent with its manifest: re-run the backup of that window",
            )


def _spans(job: JobConfig, columns: list[tuple[str, str]], pick: Pick) -> list[Span]:
    kind = (
        job.partition_type if job.partition_type != "auto" else partition_kind(columns, job.partition_column)
    )
    ptype = dict(columns).get(job.partition_column, "").upper()
    if kind == "date" and ptype in ("TIMESTAMP", "TIMESTAMPTZ"):
        # as the backup's window query: a DATE end bound would leave out the last day after
        # 00:00 (not loaded, nor deleted by --replace); TIMESTAMPTZ days are UTC days (the
        # archive's values are UTC)
        tz = dt.UTC if ptype == "TIMESTAMPTZ" else None
        return [
            Span(
                w.start,
                w.end,
                dt.datetime.combine(w.start, dt.time.min, tz),
                dt.datetime.combine(w.end, dt.time.max, tz),
            )
            for w in pick.spans
        ]
    return [
        Span(
            w.start,
            w.end,
            partition_value(w.start, kind, job.partition_format),
            partition_value(w.end, kind, job.partition_format),
        )
        for w in pick.spans
    ]


def _lock(store: StateStore, loader: Loader) -> JobLock | PgJobLock:
    """The target table's lock: the ledger's kind of job lock (a ``flock`` in the state folder
    beside an SQLite ledger; a session advisory lock, for every host, on a PostgreSQL one)."""
    key = hashlib.sha256(loader.lock_name.encode()).hexdigest()[:20]
    lock = store.job_lock(f"restore-{key}")
    try:
        return lock.acquire()
    except LockedError:
        o = lock.owner()
        raise LockedError(
            f"another restore into {loader.display} is running (pid {o.get('pid', '?')} on "
            f"{o.get('host', '?')} since {o.get('started', '?')})",
            "wait for it to finish, then re-run",
        ) from None


def restore_range(
    config: Config,
    job_name: str,
    start: str,
    end: str | None,
    load: str | None = None,
    out: str | Path | None = None,
    replace: bool = False,
    dry_run: bool = False,
    echo: Callable[[str], None] | None = None,
    monitor: Any = None,
    parallel: int | None = None,
) -> RangeResult:
    """Restore every archive of ``job_name`` overlapping ``start``..``end`` (months or days);
    ``parallel``: that many loads at once where the target can overlap them (default: the
    loader's ``parallel_loads``)."""
    t0 = time.monotonic()
    job = config.job(job_name)
    say = echo or (lambda s: log.info("%s", s))
    rng = parse_range(start, end)
    if load is not None and not load.strip():
        raise UsageError(
            "--load is empty", "give a target: SOURCE:[SCHEMA.]TABLE, URL#TABLE or DUCKDB_PATH[:TABLE]"
        )
    if load is None and out is None and not dry_run:
        raise UsageError(
            "restore --from/--to needs --load TARGET or --out DIR", "add one (or --dry-run to list)"
        )
    loader = open_loader(config, job, load) if load else None
    if loader is not None and parallel is not None and loader.parallel_loads > 1:
        loader.parallel_loads = parallel  # the targets that load one at a time stay at one
    out_dir = Path(out).expanduser() if out is not None else None
    store = StateStore.of(config.settings, readonly=dry_run)
    try:
        listed = _listed(config, job, store)
        selection = select(listed, rng)
        result = RangeResult(job.name, rng, loader.display if loader else None, selection, dry_run=dry_run)
        if not selection.picks:
            unusable = (
                f" ({len(selection.unusable)} overlapping archive(s) without a usable manifest)"
                if selection.unusable
                else ""
            )
            raise RestoreError(
                f"no archive of job {job.name!r} overlaps {rng} on "
                f"{', '.join(listed) or 'its destinations'}{unusable}",
                "run 'tableship ls JOB' to see the windows available",
            )
        for w in selection.uncovered:
            log.warning("no archive of %s covers %s: those days are not restored", job.name, w)
        if dry_run:
            for line in result.plan_lines():
                say(line)
            return result
        lock = _lock(store, loader) if loader is not None else None
        resume = resume_command(config, job.name, start, end, load, out, replace)
        try:
            return _run(config, job, rng, loader, out_dir, replace, store, result, say, monitor, t0, resume)
        finally:
            if lock is not None:
                lock.release()
    finally:
        store.close()
        if loader is not None:
            loader.close()


def _run(
    config: Config,
    job: JobConfig,
    rng: Window,
    loader: Loader | None,
    out_dir: Path | None,
    replace: bool,
    store: StateStore,
    result: RangeResult,
    say: Callable[[str], None],
    monitor: Any,
    t0: float,
    resume: str,
) -> RangeResult:
    # the alert policy sees the job under its own incident name (a restore failure is not a backup failure)
    alert_job = job.model_copy(update={"name": f"{job.name}:restore"})
    record = None
    if loader is not None:
        record = loadlog.open_restore(
            store, job.name, loader.display, rng.start.isoformat(), rng.end.isoformat(), replace
        )
        if record.resumed:
            say(
                f"resuming the restore started {record.started_at}: "
                f"{len(record.loaded)} archive(s) already loaded"
            )
    if monitor is not None:
        monitor.job_started(alert_job, None)
    staging = config.staging_dir / "restore"
    tmp: Path | None = None
    phase = "prepare"
    try:
        todo = [
            p
            for p in result.selection.picks
            if not (record and record.loaded.get(p.archive.remote_path) == p.archive.sha256)
        ]
        result.skipped = [p for p in result.selection.picks if p not in todo]
        columns = _check_columns(result.selection.picks)
        # the target first (nothing is downloaded for a restore it refuses)
        exists = False
        if loader is not None:
            assert record is not None  # a loader always has its restore record
            exists = loader.check(columns, job.partition_column)
            if exists and not record.replace:
                _refuse_held_rows(loader, store, record.id, job, columns, todo)
        # verify everything before anything is loaded
        phase = "verify"
        staging.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{job.name}-range-", dir=staging))
        # several archives at once: download, sha256 and decompression release the GIL
        workers = max(1, min(len(todo), os.cpu_count() or 1, VERIFY_WORKERS))
        with ThreadPoolExecutor(workers, thread_name_prefix="verify") as pool:
            verified = list(
                pool.map(
                    lambda ip: _verify(config, ip[1], tmp, say, ip[0], decompress=out_dir is not None),
                    enumerate(todo),
                )
            )
        if out_dir is not None:
            result.csv_paths = _publish(verified, out_dir, replace, keep=loader is not None)
        if loader is None:
            result.seconds = time.monotonic() - t0
            return result
        assert record is not None
        if not exists:
            phase = "prepare"
            loader.create(columns, job.partition_column)
        # load: overlapping where the target can, committed in range order
        phase = "load"
        rid = record.id

        def started(v: Verified) -> None:
            a = v.pick.archive
            loadlog.loading(
                store,
                rid,
                a.remote_path,
                a.sha256 or "",
                v.destination,
                v.pick.first_day.isoformat(),
                v.pick.spans[-1].end.isoformat(),
            )
            say(f"loading {a.remote_path} ({v.pick.spans_text()}) into {loader.display}")

        def committed(v: Verified, rows: int) -> None:
            a = v.pick.archive
            loadlog.loaded(store, rid, a.remote_path, rows)
            result.loaded.append((v.pick, v.destination, rows))
            say(f"loaded {rows} rows of {a.remote_path} (from {v.destination})")
            for done in (v.csv, v.archive):  # the staged copies (a --out CSV stays)
                if done is not None and done.parent != out_dir:
                    done.unlink(missing_ok=True)

        load_in_order(loader, verified, lambda v: _load_spec(job, columns, v), started, committed)
        loader.finish(not exists)
        loadlog.finish(store, record.id, "done", len(result.loaded), result.rows)
        result.seconds = time.monotonic() - t0
        if monitor is not None:
            monitor.job_succeeded(alert_job, None, _alert_run(rng, rows=result.rows, archive_bytes=None))
        return result
    except JobError as exc:
        if record is not None:
            loadlog.finish(store, record.id, "failed", len(result.loaded), result.rows, exc.line())
        if monitor is not None:
            monitor.job_failed(
                alert_job, None, _alert_run(rng, failed_phase=f"restore {phase}", resume_command=resume), exc
            )
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _refuse_held_rows(
    loader: Loader,
    store: StateStore,
    rid: str,
    job: JobConfig,
    columns: list[tuple[str, str]],
    todo: list[Pick],
) -> None:
    """Without ``--replace`` the range's days must be empty in an existing table (an archive
    an interrupted run of this restore left ``loading`` may have its rows there: its load
    replaces them)."""
    pending = {p for p, s, _ in loadlog.loads(store, rid) if s == "loading"}
    for pick in todo:
        if pick.archive.remote_path in pending:
            continue
        n = loader.rows_in(_spans(job, columns, pick))
        if n:
            raise UsageError(
                f"{loader.display} already holds {n} rows in {pick.spans_text()}; nothing was downloaded",
                "pass --replace to replace the range's rows (only those), or load into another table",
            )


def _load_spec(job: JobConfig, columns: list[tuple[str, str]], v: Verified) -> LoadSpec:
    manifest = v.pick.archive.manifest or {}
    return LoadSpec(
        csv=v.csv,
        columns=columns,
        dialect=manifest_dialect(manifest),
        expected_rows=int(manifest["rows"]),
        partition_column=job.partition_column,
        spans=_spans(job, columns, v.pick),
        whole=v.pick.whole,
        longest_line=v.longest,
        name=v.pick.archive.remote_path,
        archive=v.archive,
        codec=v.codec,
        csv_bytes=manifest["csv_bytes"] if isinstance(manifest.get("csv_bytes"), int) else None,
    )


def resume_command(
    config: Config,
    job: str,
    start: str,
    end: str | None,
    load: str | None,
    out: str | Path | None,
    replace: bool,
) -> str:
    """The command that resumes this restore (archives already loaded are skipped), for the alert."""
    argv = ["tableship", "--config", str(config.path), "restore", job, "--from", start]
    argv += ["--to", end] if end else []
    # a URL's password masked here, as a password the user fills in: left to the output's
    # redactor, a URL that is also a configured source's would be masked whole ('***#TABLE')
    argv += ["--load", Redactor()(load)] if load else []
    argv += ["--out", str(out)] if out is not None else []
    argv += ["--replace"] if replace else []
    return " ".join(shlex.quote(a) for a in argv)


def _alert_run(rng: Window, **kw: Any) -> SimpleNamespace:
    """What the alert policy reads of a run (a restore has no backup run: no id, the range as window)."""
    base: dict[str, Any] = dict(
        id=None, window_start=rng.start.isoformat(), window_end=rng.end.isoformat(), attempts=None, host=None
    )
    return SimpleNamespace(**(base | kw))


def _check_columns(picks: list[Pick]) -> list[tuple[str, str]]:
    """The archives' common columns (a range whose archives differ cannot go into one table)."""
    first = None
    for p in picks:
        cols = manifest_columns(p.archive.manifest or {}, strict=True)
        if first is None:
            first = (p, cols)
        elif cols != first[1]:
            raise RestoreError(
                f"{p.archive.remote_path} has other columns than {first[0].archive.remote_path}; "
                "nothing was loaded",
                "restore the two parts of the range separately, into different tables",
            )
    return first[1] if first else []


def _publish(verified: list[Verified], out_dir: Path, replace: bool, keep: bool) -> list[Path]:
    """``--out DIR``: the verified CSVs (whole archives) under their names in DIR."""
    make_folder(out_dir, f"cannot create {str(out_dir)!r}")
    paths = []
    for v in verified:
        assert v.csv is not None  # --out: verified with decompress=True
        final = out_dir / v.csv.name
        if final.exists() and not replace:
            raise UsageError(
                f"{str(final)!r} already exists", "pass --replace to overwrite it, or pick another --out"
            )
        # a fresh temporary of our own (O_EXCL): a fixed name could be a planted symlink that
        # copying would follow out of DIR
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tableship-restore.part", dir=out_dir)
        part = Path(name)
        try:
            if keep:
                with open(v.csv, "rb") as src, os.fdopen(fd, "wb") as dst:
                    fd = -1
                    shutil.copyfileobj(src, dst, 1 << 20)
                    os.chmod(dst.fileno(), os.stat(v.csv).st_mode & 0o777)  # mkstemp's is 0600
            else:
                os.close(fd)
                fd = -1
                shutil.move(v.csv, part)
            os.replace(part, final)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            part.unlink(missing_ok=True)
            raise
        if not keep:
            v.csv = final
        paths.append(final)
    return paths
