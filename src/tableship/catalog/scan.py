"""The archives on the destination: list them from their manifests, verify them, and
keep the verification results in the state store.

What tableship writes under a job's ``remote_dir`` is a *group* of up to three files
sharing one base name: the archive ``<file_name>``, its ``<file_name>.sha256`` sidecar
and its ``<file_name>.manifest.json``. These are read back from the
destination itself (the local state store may be lost) and turns them into
:class:`Archive` records:

* a group whose manifest names this job belongs to the job;
* a group without a (readable) manifest belongs to the job when its base name matches
  the job's ``file_name`` template (e.g. an upload interrupted before its sidecars);
  it is listed as ``incomplete`` and is never deleted by ``prune``;
* anything else in the folder (another job's archives, files tableship did not
  write) is ignored.

Which folders are looked at (a destination lists one folder at a time):

* ``remote_dir`` without a date placeholder (the default ``"{table}"``): that folder.
* ``remote_dir`` with ``{start}``, ``{end}`` or ``{run_date}``: every folder the state
  store recorded for the job's runs, plus the folders the job's window schedule renders
  to for each run date over the last :data:`HORIZON_DAYS` days (or ``keep_days`` plus
  the window's length if that is longer), newest first, at most
  :data:`MAX_FOLDERS` folders. An archive written under a date-templated folder by a
  backfill outside that horizon is found only while the state store remembers it.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import tempfile
from pathlib import Path

from tableship.catalog.history import pruned_paths
from tableship.catalog.manifest import manifest_window, parse_manifest, read_small
from tableship.catalog.patterns import NamePattern, template_fields
from tableship.catalog.records import MANIFEST_SUFFIX, SHA_SUFFIX, Archive
from tableship.config.models import Config, JobConfig
from tableship.core.names import render_relative
from tableship.core.window import Window, compute_window, previous_month_end
from tableship.destinations.base import Destination, open_destination
from tableship.ledger.state import StateStore

log = logging.getLogger("tableship")

DATE_FIELDS = frozenset({"start", "end", "run_date"})
HORIZON_DAYS = 1100
MAX_FOLDERS = 400


def _render_dir(job: JobConfig, window: Window, run_date: dt.date) -> str:
    return render_relative(
        job.remote_dir, job.template_values(window.start, window.end, run_date), "remote_dir"
    )


def archive_folders(job: JobConfig, store: StateStore | None, today: dt.date | None = None) -> list[str]:
    """The folders where the job's archives may be (see the module docstring)."""
    today = today or dt.date.today()
    if not (template_fields(job.remote_dir) & DATE_FIELDS):
        return [_render_dir(job, Window(today, today), today)]
    folders: dict[str, None] = {}
    if store is not None and store.exists():
        for path in store.remote_paths(job.name):
            folders.setdefault(posixpath.dirname(path), None)
    keep_days = job.retention.keep_days if job.retention and job.retention.keep_days else 0
    w = compute_window(today, job.window.unit, job.window.count, job.window.lag)
    horizon = max(HORIZON_DAYS, keep_days + w.days + 62)
    # with a monthly window and no {run_date}, every day of a month renders the same folder
    monthly = job.window.unit == "month" and "run_date" not in template_fields(job.remote_dir)
    run_date = today
    while (today - run_date).days <= horizon:
        if len(folders) >= MAX_FOLDERS:
            log.warning("%s: looking at the newest %d folders only", job.name, MAX_FOLDERS)
            break
        rd = run_date
        run_date = previous_month_end(rd) if monthly else rd - dt.timedelta(days=1)
        w = compute_window(rd, job.window.unit, job.window.count, job.window.lag)
        try:
            folders.setdefault(_render_dir(job, w, rd), None)
        except ValueError:
            continue
    return list(folders)


def scan_folder(
    dest: Destination, job: JobConfig, folder: str, tmpdir: Path, pattern: NamePattern | None = None
) -> list[Archive]:
    """The groups in one folder that belong to ``job``."""
    pattern = pattern or NamePattern(job)
    groups: dict[str, dict[str, bool]] = {}
    for name in dest.list(folder):
        base = posixpath.basename(name)
        if base.endswith(MANIFEST_SUFFIX):
            groups.setdefault(base[: -len(MANIFEST_SUFFIX)], {})["manifest"] = True
        elif base.endswith(SHA_SUFFIX):
            groups.setdefault(base[: -len(SHA_SUFFIX)], {})["sidecar"] = True
        else:
            groups.setdefault(base, {})["archive"] = True
    out = []
    for base, kinds in sorted(groups.items()):
        if not base:
            continue
        a = Archive(
            job.name,
            folder,
            base,
            has_archive=kinds.get("archive", False),
            has_manifest=kinds.get("manifest", False),
            has_sidecar=kinds.get("sidecar", False),
        )
        ours = False
        if a.has_manifest:
            data = read_small(dest, a.manifest_path, tmpdir)
            if data is None:
                a.has_manifest = dest.size(a.manifest_path) is not None
                a.manifest_problem = "manifest too big to be one" if a.has_manifest else None
            else:
                m, problem = parse_manifest(data, base)
                if m is not None and m.get("job") != job.name:
                    continue  # another job's archive: not ours to list or touch
                ours = m is not None
                if problem is None and m is not None:
                    a.manifest = m
                    a.window = manifest_window(m)
                else:
                    a.manifest_problem = problem
        if a.manifest is None:
            if not ours and not pattern.matches(base):
                continue  # not written by this job (or by nothing tableship knows)
            a.window = pattern.window(base)
        out.append(a)
    return out


def list_archives(
    config: Config, job: JobConfig, dest: Destination, store: StateStore | None, today: dt.date | None = None
) -> list[Archive]:
    """Every archive group of ``job`` on ``dest``, oldest first."""
    pattern = NamePattern(job)
    pruned = pruned_paths(store, job.name, job.destination)
    seen: dict[str, Archive] = {}
    with tempfile.TemporaryDirectory(prefix="tableship-ls-") as tmp:
        for folder in archive_folders(job, store, today):
            for a in scan_folder(dest, job, folder, Path(tmp), pattern):
                a.pruning = not a.has_archive and a.sha256 in pruned.get(a.remote_path, ())
                a.destination = job.destination
                seen.setdefault(a.remote_path, a)
    return sorted(seen.values(), key=Archive.sort_key)


def open_job_destination(config: Config, job: JobConfig) -> Destination:
    return open_destination(job.destination, config.destinations[job.destination])


def per_destination(job: JobConfig) -> list[JobConfig]:
    """The job as seen on each of its destinations: the same job with that one destination
    (``ls``, ``verify`` and ``prune`` look at each destination's copies on their own)."""
    if len(job.destinations) == 1:
        return [job]
    return [job.model_copy(update={"destinations": (name,)}) for name in job.destinations]


def on_destination(job: JobConfig, multi: bool) -> str:
    """`` on <destination>`` for the lines of a job with several destinations."""
    return f" on {job.destination}" if multi else ""
