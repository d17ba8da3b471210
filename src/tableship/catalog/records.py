"""What the catalog knows of the files on a destination: an archive group (:class:`Archive`:
the archive, its ``.sha256`` sidecar and its ``.manifest.json``), the verification
statuses (:class:`Status`) and results.
"""

from __future__ import annotations

import datetime as dt
import enum
import posixpath
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tableship.core.errors import TableshipError
from tableship.core.window import Window

T = TypeVar("T")

SHA_SUFFIX = ".sha256"
MANIFEST_SUFFIX = ".manifest.json"


class Status(enum.StrEnum):
    OK = "OK"
    MISMATCH = "MISMATCH"
    MISSING = "MISSING"
    INCOMPLETE = "INCOMPLETE"


# worst first: the order a summary reports them in
SEVERITY = [Status.MISSING, Status.MISMATCH, Status.INCOMPLETE, Status.OK]


class _FromManifest(Generic[T]):
    """A read-only attribute of an :class:`Archive`: its manifest's value of the same name
    (None without a manifest or without that key)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, archive: Archive, owner: type | None = None) -> T | None:
        return archive.manifest.get(self.key) if archive.manifest else None


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

    rows = _FromManifest[int]()  # not annotated: no dataclass field
    archive_bytes = _FromManifest[int]()  # not annotated: no dataclass field
    created_at = _FromManifest[str]()  # not annotated: no dataclass field
    sha256 = _FromManifest[str]()  # not annotated: no dataclass field

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
