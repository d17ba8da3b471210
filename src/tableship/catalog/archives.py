"""The archives on the destination: list them from their manifests, verify them, and
keep the verification results in the state store.

What tableship writes under a job's ``remote_dir`` is a *group* of up to three files
sharing one base name: the archive ``<file_name>``, its ``<file_name>.sha256`` sidecar
and its ``<file_name>.manifest.json``. This module reads those groups back from the
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

Verification statuses (:class:`Status`), worst first:

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
import enum
import json
import logging
import posixpath
import re
import string
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tableship.config.models import Config, JobConfig
from tableship.config.selection import select_jobs
from tableship.core.errors import TableshipError, UsageError
from tableship.core.names import render_relative
from tableship.core.window import Window, compute_window, parse_window, previous_month_end
from tableship.destinations.base import Destination, open_destination
from tableship.ledger import deliveries
from tableship.ledger.schema import LedgerError
from tableship.ledger.state import StateStore, now

log = logging.getLogger("tableship")

SHA_SUFFIX = ".sha256"
MANIFEST_SUFFIX = ".manifest.json"
DATE_FIELDS = frozenset({"start", "end", "run_date"})
HORIZON_DAYS = 1100
MAX_FOLDERS = 400
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SIDECAR = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+?)\r?\n?$")


class Status(enum.StrEnum):
    OK = "OK"
    MISMATCH = "MISMATCH"
    MISSING = "MISSING"
    INCOMPLETE = "INCOMPLETE"


# worst first: the order a summary reports them in
SEVERITY = [Status.MISSING, Status.MISMATCH, Status.INCOMPLETE, Status.OK]


def db(store: StateStore):
    """The ledger's connection (its ``verifications`` and ``pruned`` tables: :mod:`.ledger`)."""
    return store.connect()


# ---------------------------------------------------------------- archive records


@dataclass
class Archive:
    """One group of files on the destination (archive, ``.sha256``, ``.manifest.json``)."""

    job: str
    folder: str
    file_name: str
    has_archive: bool = False
    has_manifest: bool = False
    has_sidecar: bool = False
    manifest: dict | None = None
    manifest_problem: str | None = None
    window: Window | None = None
    known_from_run: int | None = None  # not on the destination; the state store's newest successful run
    destination: str | None = None  # the destination it was listed on
    pruning: bool = False  # recorded as pruned, leftovers remain (an interrupted prune)

    @property
    def remote_path(self) -> str:
        return posixpath.join(self.folder, self.file_name) if self.folder else self.file_name

    @property
    def sha256_path(self) -> str:
        return self.remote_path + SHA_SUFFIX

    @property
    def manifest_path(self) -> str:
        return self.remote_path + MANIFEST_SUFFIX

    def _m(self, key: str):
        return self.manifest.get(key) if self.manifest else None

    @property
    def rows(self) -> int | None:
        return self._m("rows")

    @property
    def archive_bytes(self) -> int | None:
        return self._m("archive_bytes")

    @property
    def created_at(self) -> str | None:
        return self._m("created_at")

    @property
    def sha256(self) -> str | None:
        return self._m("sha256")

    @property
    def problems(self) -> list[str]:
        out = []
        if self.known_from_run is not None:
            out.append(f"absent from the destination (written by run {self.known_from_run})")
        elif not self.has_archive:
            out.append("archive missing")
        if not self.has_manifest and self.known_from_run is None:
            out.append("no manifest")
        elif self.manifest_problem:
            out.append(self.manifest_problem)
        if not self.has_sidecar and self.known_from_run is None:
            out.append("no .sha256 sidecar")
        if self.pruning:
            out.append("prune interrupted: run prune again")
        return out

    @property
    def state(self) -> str:
        """``complete``, ``incomplete`` (archive present, a sidecar missing) or ``missing``."""
        if not self.has_archive:
            return "missing"
        if self.manifest is None or not self.has_sidecar:
            return "incomplete"
        return "complete"

    def sort_key(self) -> tuple:
        """Newest last: by window end, window start, creation time, name."""
        w = self.window
        return (
            w.end if w else dt.date.min,
            w.start if w else dt.date.min,
            self.created_at or "",
            self.remote_path,
        )

    def as_dict(self) -> dict:
        return {
            "job": self.job,
            "destination": self.destination,
            "remote_path": self.remote_path,
            "folder": self.folder,
            "file_name": self.file_name,
            "window": {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()}
            if self.window
            else None,
            "rows": self.rows,
            "archive_bytes": self.archive_bytes,
            "created_at": self.created_at,
            "sha256": self.sha256,
            "state": self.state,
            "has_archive": self.has_archive,
            "has_manifest": self.has_manifest,
            "has_sidecar": self.has_sidecar,
            "problems": self.problems,
        }


# ---------------------------------------------------------------- file-name templates


_STRF = {
    "Y": r"\d{4}",
    "G": r"\d{4}",
    "m": r"\d{2}",
    "d": r"\d{2}",
    "H": r"\d{2}",
    "M": r"\d{2}",
    "S": r"\d{2}",
    "y": r"\d{2}",
    "j": r"\d{3}",
    "U": r"\d{2}",
    "W": r"\d{2}",
    "V": r"\d{2}",
    "u": r"\d",
    "w": r"\d",
    "f": r"\d{6}",
    "b": r"[A-Za-z]+",
    "B": r"[A-Za-z]+",
    "a": r"[A-Za-z]+",
    "A": r"[A-Za-z]+",
    "p": r"[AP]M",
    "%": "%",
}


def _strftime_regex(spec: str) -> str:
    out, i = [], 0
    while i < len(spec):
        c = spec[i]
        if c == "%" and i + 1 < len(spec):
            out.append(_STRF.get(spec[i + 1], ".+?"))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


class NamePattern:
    """Recognise the names a job's ``file_name`` template renders to (and read the window back)."""

    def __init__(self, job: JobConfig):
        fixed = {"job": job.name, "table": job.table_name, "database": job.database or ""}
        parts: list[str] = []
        self._specs: dict[str, str] = {}
        for literal, name, spec, _ in string.Formatter().parse(job.file_name):
            parts.append(re.escape(literal))
            if name is None:
                continue
            if name in fixed:
                parts.append(re.escape(format(fixed[name], spec or "")))
                continue
            regex = _strftime_regex(spec) if spec else r"\d{4}-\d{2}-\d{2}"
            if name not in self._specs:
                self._specs[name] = spec or "%Y-%m-%d"
                parts.append(f"(?P<{name}>{regex})")
            else:
                parts.append(f"(?:{regex})")
        self.regex = re.compile("^" + "".join(parts) + "$")

    def matches(self, base: str) -> bool:
        return bool(self.regex.match(base))

    def window(self, base: str) -> Window | None:
        """The window written in the name, when the template holds both ends to the day."""
        m = self.regex.match(base)
        if not m or "start" not in self._specs or "end" not in self._specs:
            return None
        if not all(("%d" in s or "%j" in s) for n, s in self._specs.items() if n in ("start", "end")):
            return None
        try:
            start = dt.datetime.strptime(m.group("start"), self._specs["start"]).date()
            end = dt.datetime.strptime(m.group("end"), self._specs["end"]).date()
            return Window(start, end)
        except ValueError:
            return None


# ---------------------------------------------------------------- folders


def _render_dir(job: JobConfig, window: Window, run_date: dt.date) -> str:
    return render_relative(
        job.remote_dir, job.template_values(window.start, window.end, run_date), "remote_dir"
    )


def archive_folders(job: JobConfig, store: StateStore | None, today: dt.date | None = None) -> list[str]:
    """The folders where the job's archives may be (see the module docstring)."""
    today = today or dt.date.today()
    if not (_fields(job.remote_dir) & DATE_FIELDS):
        return [_render_dir(job, Window(today, today), today)]
    folders: dict[str, None] = {}
    if store is not None and store.exists():
        rows = store.connect().execute(
            "SELECT remote_path FROM runs WHERE job=? AND remote_path IS NOT NULL ORDER BY id DESC",
            (job.name,),
        )
        for r in rows:
            folders.setdefault(posixpath.dirname(r["remote_path"]), None)
    keep_days = job.retention.keep_days if job.retention and job.retention.keep_days else 0
    w = compute_window(today, job.window.unit, job.window.count, job.window.lag)
    horizon = max(HORIZON_DAYS, keep_days + w.days + 62)
    # with a monthly window and no {run_date}, every day of a month renders the same folder
    monthly = job.window.unit == "month" and "run_date" not in _fields(job.remote_dir)
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


# ---------------------------------------------------------------- reading the destination


def read_small(dest: Destination, name: str, tmpdir: Path, limit: int = MAX_MANIFEST_BYTES) -> bytes | None:
    """Download a small remote file (manifest, sidecar); None if it is gone or too big."""
    size = dest.size(name)
    if size is None or size > limit:
        return None
    local = tmpdir / f"f{uuid.uuid4().hex}"
    try:
        dest.get(name, local)
        return local.read_bytes()
    except TableshipError:
        if dest.size(name) is None:  # removed meanwhile
            return None
        raise
    finally:
        local.unlink(missing_ok=True)


def parse_manifest(data: bytes, file_name: str) -> tuple[dict | None, str | None]:
    """(manifest, None) when usable, else (None or partial dict, problem)."""
    try:
        m = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"manifest unreadable ({type(exc).__name__})"
    if not isinstance(m, dict):
        return None, "manifest is not a JSON object"
    problems = []
    if not isinstance(m.get("job"), str):
        problems.append("no job")
    w = m.get("window")
    try:
        Window(dt.date.fromisoformat(w["start"]), dt.date.fromisoformat(w["end"]))
    except (TypeError, KeyError, ValueError):
        problems.append("no valid window")
    if not isinstance(m.get("sha256"), str) or not _HEX64.match(m["sha256"]):
        problems.append("no valid sha256")
    if not isinstance(m.get("rows"), int) or isinstance(m.get("rows"), bool) or m["rows"] < 0:
        problems.append("no valid rows")
    if m.get("file_name") not in (None, file_name):
        problems.append(f"names another file ({m.get('file_name')!r})")
    if problems:
        return (m if isinstance(m.get("job"), str) else None), "manifest invalid: " + ", ".join(problems)
    return m, None


def parse_sidecar(data: bytes | None) -> tuple[str, str] | None:
    """``(hex, file name)`` from ``<hex>  <file_name>``; None if unreadable."""
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) != 1:
        return None
    m = _SIDECAR.match(lines[0])
    return (m.group(1).lower(), m.group(2)) if m else None


def _manifest_window(m: dict) -> Window | None:
    try:
        return Window(dt.date.fromisoformat(m["window"]["start"]), dt.date.fromisoformat(m["window"]["end"]))
    except (TypeError, KeyError, ValueError):
        return None


def pruned_paths(
    store: StateStore | None, job: str, destination: str | None = None
) -> dict[str, set[str | None]]:
    """remote_path → the sha256s prune deleted (or began deleting) under that name (on
    ``destination``; rows from before destinations were recorded count for every one)."""
    if store is None or not store.exists():
        return {}
    out: dict[str, set[str | None]] = {}
    rows = db(store).execute(
        "SELECT remote_path, sha256 FROM pruned WHERE job=? AND (destination IS NULL OR destination=?)",
        (job, destination or ""),
    )
    for r in rows:
        out.setdefault(r["remote_path"], set()).add(r["sha256"])
    return out


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
                if problem is None:
                    a.manifest = m
                    a.window = _manifest_window(m)
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


# ---------------------------------------------------------------- verification records


@dataclass
class Verification:
    archive: Archive
    status: Status
    detail: str = ""
    remote_sha256: str | None = None
    method: str | None = None

    def as_dict(self) -> dict:
        d = self.archive.as_dict()
        d.update(
            status=self.status.value, detail=self.detail, remote_sha256=self.remote_sha256, method=self.method
        )
        return d


@dataclass
class JobVerification:
    job: str
    results: list[Verification] = field(default_factory=list)
    batch: str = ""
    at: str = ""
    error: TableshipError | None = None  # the job could not be verified at all (destination down...)
    destination: str | None = None
    multi: bool = False  # the job has several destinations: lines name the destination

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.status is Status.OK for r in self.results)

    def counts(self) -> dict[str, int]:
        c = {s.value: 0 for s in SEVERITY}
        for r in self.results:
            c[r.status.value] += 1
        return c

    def as_dicts(self) -> list[dict]:
        if self.error is not None:
            return [
                {
                    "job": self.job,
                    "destination": self.destination,
                    "status": "ERROR",
                    "detail": self.error.line(),
                }
            ]
        return [r.as_dict() for r in self.results]

    def summary(self) -> str:
        on = f" on {self.destination}" if self.multi and self.destination else ""
        if self.error is not None:
            return f"{self.job}{on}: ERROR: {self.error.line()}"
        if not self.results:
            return f"{self.job}{on}: no archives on the destination"
        c = self.counts()
        parts = [f"{n} {s}" for s, n in c.items() if n]
        return f"{self.job}{on}: {len(self.results)} archive(s): {', '.join(parts)}"


def last_status(
    store: StateStore | None, job: str, destination: str | None = None
) -> dict[str, tuple[str, str | None, str]]:
    """remote_path → (status, sha256, verified_at) of its newest verification on ``destination``
    (rows from before destinations were recorded count for every one)."""
    if store is None or not store.exists():
        return {}
    rows = db(store).execute(
        "SELECT remote_path, status, sha256, verified_at FROM verifications WHERE id IN "
        "(SELECT max(id) FROM verifications WHERE job=? AND (destination IS NULL OR destination=?) "
        "GROUP BY remote_path)",
        (job, destination or ""),
    )
    return {r["remote_path"]: (r["status"], r["sha256"], r["verified_at"]) for r in rows}


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
    remote, method = found
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


def record(store: StateStore, jv: JobVerification) -> None:
    if store.readonly:
        log.info("%s: no ledger at %s: the verification results are not recorded", jv.job, store.where)
        return
    with store.transaction() as con:
        for r in jv.results:
            a = r.archive
            con.execute(
                "INSERT INTO verifications (batch, job, remote_path, window_start, window_end, "
                "status, detail, sha256, "
                "method, verified_at, destination) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    jv.batch,
                    jv.job,
                    a.remote_path,
                    a.window.start.isoformat() if a.window else None,
                    a.window.end.isoformat() if a.window else None,
                    r.status.value,
                    r.detail,
                    r.remote_sha256 or a.sha256,
                    r.method,
                    jv.at,
                    a.destination or jv.destination,
                ),
            )


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


def last_verification(store: StateStore, job: str) -> dict | None:
    """The job's newest ``verify`` batch: when, how many, per status; for ``status``."""
    if not store.exists():
        return None
    con = db(store)
    row = con.execute(
        "SELECT batch, verified_at FROM verifications WHERE job=? ORDER BY id DESC LIMIT 1", (job,)
    ).fetchone()
    if row is None:
        return None
    counts = {s.value: 0 for s in SEVERITY}
    for r in con.execute(
        "SELECT status, count(*) AS n FROM verifications WHERE batch=? AND job=? GROUP BY status",
        (row["batch"], job),
    ):
        counts[r["status"]] = r["n"]
    total = sum(counts.values())
    bad = [f"{n} {s}" for s, n in counts.items() if n and s != Status.OK.value]
    at = str(row["verified_at"]).replace("T", " ").replace("+00:00", "Z")
    text = (f"OK {total}/{total}" if not bad else ", ".join(bad) + f" of {total}") + f" at {at}"
    return {"at": row["verified_at"], "archives": total, "counts": counts, "ok": not bad, "summary": text}


# ---------------------------------------------------------------- ls


LS_COLUMNS = ["job", "destination", "window", "rows", "bytes", "created", "sha256", "state", "verify", "file"]


def ls_rows(config: Config, names: list[str] | None = None) -> list[dict]:
    """``tableship ls``: one row per archive group of the job(s), from the destination."""
    jobs = select_jobs(config, names or [])
    store = StateStore.of(config.settings, readonly=True)
    rows = []
    try:
        for job in [v for n in jobs for v in per_destination(config.jobs[n])]:
            n = job.name
            dest = open_job_destination(config, job)
            try:
                archives = list_archives(config, job, dest, store)
            finally:
                dest.close()
            last = last_status(store, n, job.destination)
            for a in archives:
                d = a.as_dict()
                rec = last.get(a.remote_path)
                d["last_verify"] = {"status": rec[0], "at": rec[2]} if rec and rec[1] == a.sha256 else None
                d["sha256_short"] = a.sha256[:12] if a.sha256 else None
                d.update(window_text=str(a.window) if a.window else None)
                rows.append(d)
    finally:
        store.close()
    return rows


def ls_table_rows(rows: list[dict]) -> list[dict]:
    """The text-table form of :func:`ls_rows`."""
    out = []
    for r in rows:
        state = r["state"] if not r["problems"] else f"{r['state']} ({'; '.join(r['problems'])})"
        created = (r["created_at"] or "").replace("T", " ").replace("+00:00", "Z") or None
        out.append(
            {
                "job": r["job"],
                "destination": r["destination"],
                "window": r["window_text"],
                "rows": r["rows"],
                "bytes": r["archive_bytes"],
                "created": created,
                "sha256": r["sha256_short"],
                "state": state,
                "verify": r["last_verify"]["status"] if r["last_verify"] else None,
                "file": r["remote_path"],
            }
        )
    return out
