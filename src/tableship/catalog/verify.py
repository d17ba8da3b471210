"""``tableship verify``: re-hash every archive of the jobs and record the results
(:mod:`.history`).

Verification statuses (:class:`~.records.Status`), worst first:

* ``MISSING``: the archive is gone but its manifest or sidecar is still there, or the
  job's newest successful run (per the state store) left an archive that is absent.
* ``MISMATCH``: the archive's sha256 (or size) differs from its manifest or sidecar,
  or the manifest and the sidecar disagree.
* ``INCOMPLETE``: the archive is there but its manifest or its sidecar is missing or
  unreadable, so it cannot be fully checked.
* ``OK``: the remote sha256 equals both the manifest's and the sidecar's.

Verification only reads; results go to the ``verifications`` table of the state store.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from tableship.catalog.history import pruned_paths, record
from tableship.catalog.manifest import parse_sidecar, read_small
from tableship.catalog.records import Archive, JobVerification, Status, Verification
from tableship.catalog.scan import list_archives, on_destination, open_job_destination, per_destination
from tableship.config.models import Config, JobConfig
from tableship.config.selection import select_jobs
from tableship.core.errors import TableshipError, UsageError
from tableship.core.window import Window, parse_window
from tableship.destinations.base import Destination
from tableship.ledger import deliveries
from tableship.ledger.errors import LedgerError
from tableship.ledger.state import StateStore, now

log = logging.getLogger("tableship")


def is_verified(a: Archive, last: dict[str, tuple[str, str | None, str]]) -> bool:
    """Whether ``a`` counts as verified: its newest ``verify`` result for the same sha256 is OK,
    or, never checked since, the run verified it on upload (``verified_at``) and it is complete."""
    if a.state != "complete":
        return False
    rec = last.get(a.remote_path)
    if rec is not None and rec[1] == a.sha256:
        return rec[0] == Status.OK.value
    return bool(a.manifest and a.manifest.get("verified_at"))


def verify_one(dest: Destination, a: Archive, tmpdir: Path) -> Verification:
    if a.known_from_run is not None:
        return Verification(
            a, Status.MISSING, f"run {a.known_from_run} wrote it, the destination no longer has it"
        )
    if not a.has_archive:
        return Verification(
            a,
            Status.MISSING,
            "the archive is gone; its "
            + " and ".join(x for x, h in (("manifest", a.has_manifest), (".sha256", a.has_sidecar)) if h)
            + " remain",
        )
    found = dest.sha256(a.remote_path)
    if found is None:
        return Verification(a, Status.MISSING, "the archive disappeared during verification")
    remote, method = found.hex, found.method
    mismatch: list[str] = []
    incomplete: list[str] = []
    m = a.manifest
    if m is not None:
        if remote != m["sha256"]:
            mismatch.append(f"sha256 {remote[:12]}… differs from the manifest's {m['sha256'][:12]}…")
        size = dest.size(a.remote_path)
        if isinstance(m.get("archive_bytes"), int) and size is not None and size != m["archive_bytes"]:
            mismatch.append(f"size {size} differs from the manifest's {m['archive_bytes']}")
    else:
        incomplete.append(a.manifest_problem or "no manifest")
    if a.has_sidecar:
        side = parse_sidecar(read_small(dest, a.sha256_path, tmpdir, 64 * 1024))
        if side is None:
            incomplete.append(".sha256 sidecar unreadable")
        else:
            hexd, name = side
            if hexd != remote:
                mismatch.append(f"sha256 {remote[:12]}… differs from the .sha256 sidecar's {hexd[:12]}…")
            if m is not None and hexd != m["sha256"]:
                mismatch.append("the manifest and the .sha256 sidecar disagree")
            if name.lstrip("*") != a.file_name:
                mismatch.append(f"the .sha256 sidecar names {name!r}")
    else:
        incomplete.append("no .sha256 sidecar")
    if mismatch:
        return Verification(a, Status.MISMATCH, "; ".join(dict.fromkeys(mismatch)), remote, method)
    if incomplete:
        return Verification(a, Status.INCOMPLETE, "; ".join(incomplete), remote, method)
    return Verification(a, Status.OK, f"sha256 {remote[:12]}… ({method})", remote, method)


def known_missing(
    store: StateStore | None, job: str, present: Iterable[Archive], destination: str | None = None
) -> Archive | None:
    """The archive of the job's newest successful run, if the destination no longer has it
    (and prune did not delete it)."""
    if store is None or not store.exists():
        return None
    run = store.last_success(job)
    if run is None or not run.remote_path:
        return None
    delivered = deliveries.of_run(store, run.id)
    if delivered and destination not in delivered:
        return None  # the run never delivered to this destination (added to the job later)
    paths = {a.remote_path for a in present if a.has_archive or a.has_manifest or a.has_sidecar}
    pruned = pruned_paths(store, job, destination)
    manifest = run.manifest_dict() or {}
    if manifest.get("kind") == "window-manifest":
        # layout "chunk": the run's archives are its chunks (the window manifest is no archive)
        for c in manifest.get("chunks") or []:
            path = c.get("remote_path")
            if path and path not in paths and c.get("sha256") not in pruned.get(path, ()):
                folder, name = posixpath.split(path)
                a = Archive(job, folder, name, known_from_run=run.id)
                a.manifest = {"job": job, "rows": c.get("rows"), "sha256": c.get("sha256"), "file_name": name}
                a.window = Window(dt.date.fromisoformat(c["start"]), dt.date.fromisoformat(c["end"]))
                a.destination = destination
                return a
        return None
    if run.remote_path in paths or run.sha256 in pruned.get(run.remote_path, ()):
        return None
    folder, name = posixpath.split(run.remote_path)
    a = Archive(job, folder, name, known_from_run=run.id)
    a.manifest = manifest or None
    a.window = Window(dt.date.fromisoformat(run.window_start), dt.date.fromisoformat(run.window_end))
    a.destination = destination
    return a


def in_window(a: Archive, w: Window | None) -> bool:
    """``--window`` filter: the archive's whole window lies within ``w``."""
    if w is None:
        return True
    return a.window is not None and w.start <= a.window.start and a.window.end <= w.end


def parse_window_option(text: str | None) -> Window | None:
    if text is None:
        return None
    try:
        return parse_window(text)
    except ValueError as exc:
        raise UsageError(f"--window: {exc}", "write it as YYYY-MM-DD..YYYY-MM-DD") from None


def verify_job(
    config: Config,
    job: JobConfig,
    store: StateStore,
    window: Window | None = None,
    echo: Callable[[Verification], None] | None = None,
) -> JobVerification:
    dest = open_job_destination(config, job)
    jv = JobVerification(job.name, batch=uuid.uuid4().hex, at=now(), destination=job.destination)
    try:
        archives = [a for a in list_archives(config, job, dest, store) if in_window(a, window)]
        gone = known_missing(store, job.name, archives, job.destination)
        if gone is not None and in_window(gone, window):
            archives.append(gone)
        with tempfile.TemporaryDirectory(prefix="tableship-verify-") as tmp:
            for a in archives:
                if a.pruning:
                    continue  # an interrupted prune's leftovers: prune finishes them
                v = verify_one(dest, a, Path(tmp))
                jv.results.append(v)
                if echo:
                    echo(v)
    finally:
        dest.close()
    record(store, jv)
    return jv


def verify_jobs(
    config: Config,
    names: list[str],
    all_jobs: bool = False,
    window: str | None = None,
    echo: Callable[[Verification], None] | None = None,
) -> list[JobVerification]:
    """``tableship verify``: re-hash every archive of the jobs; results recorded in the state store."""
    w = parse_window_option(window)
    jobs = select_jobs(config, names, all_jobs)
    # verify records its results in an existing ledger; it never creates one (nothing ran here yet)
    store = StateStore.of(config.settings)
    if not store.exists():
        store = StateStore.of(config.settings, readonly=True)
    out = []
    try:
        store.connect()  # a broken ledger is reported before any destination is contacted
        views = [v for n in jobs for v in per_destination(config.jobs[n])]
        for view in views:
            n, multi = view.name, len(config.jobs[view.name].destinations) > 1
            try:
                jv = verify_job(config, view, store, w, echo)
                jv.multi = multi
                out.append(jv)
            except LedgerError:
                raise  # the same for every job: one Error: line, exit 74
            except TableshipError as exc:  # one unreachable destination must not hide the other jobs
                if len(views) == 1:
                    raise
                log.error("%s%s: %s", n, on_destination(view, multi), exc.line())
                out.append(JobVerification(n, error=exc, destination=view.destination, multi=multi))
    finally:
        store.close()
    if w is not None and not any(jv.results or jv.error for jv in out):
        raise NoArchiveError(
            f"no archive of {', '.join(jobs)} lies within the window {w}",
            "run 'tableship ls' to see the windows on the destination",
        )
    return out


class NoArchiveError(TableshipError):
    """The destination has no archive matching the request (exit 1)."""
