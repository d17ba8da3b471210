"""Checks that need more than one key: names that would be misread, clobbered or too long.

Called by :func:`tableship.config.loader.parse_config` once every job parsed, so that every
command (``config validate``, ``run``...) refuses such a config with exit 2 and the key
path, before anything is exported or written. :func:`environment_problems` holds the
checks that depend on this machine rather than on the file (optional drivers installed,
local destination folders present): ``config validate`` reports them; ``run`` checks the
destinations it uses in :mod:`tableship.backup.preflight`.

The rules (docs/configuration.md, "Names the tool refuses"):

- the file name's extension matches the codec: ``gzip`` → ``.gz``, ``zstd`` → ``.zst``,
  ``none`` → no compression extension;
- a file name never looks like the tool's own files: ``*.part`` / ``*.tmp`` temporaries,
  ``.tableship-`` upload temporaries, ``*.sha256`` / ``*.manifest.json`` sidecars —
  clean-up, ``ls`` and ``prune`` would take it for one;
- names stay within NAME_MAX (255 bytes) and paths within PATH_MAX (4096), counting the
  longest temporary and sidecar name the tool derives from them;
- no two jobs can render the same destination path for any run date (see
  :mod:`tableship.core.templates`).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import posixpath
from pathlib import Path
from typing import Any

from tableship.archive.codecs import SUFFIXES
from tableship.core.templates import (
    Pos,
    anything_around,
    anything_then,
    max_bytes,
    normalise_dir,
    overlap,
    pattern,
    segments,
)
from tableship.destinations.base import REGISTRY as DESTS
from tableship.sources.base import REGISTRY as SOURCES

NAME_MAX = 255
PATH_MAX = 4096

COMPRESSED_EXTENSIONS = (
    ".gz",
    ".gzip",
    ".tgz",
    ".zst",
    ".zstd",
    ".bz2",
    ".xz",
    ".lz4",
    ".lzma",
    ".zip",
    ".7z",
    ".Z",
    ".br",
    ".snappy",
)
RESERVED_SUFFIXES = {
    ".part": "the tool's partial files",
    ".tmp": "the tool's temporary files",
    ".sha256": "the .sha256 sidecars",
    ".manifest.json": "the .manifest.json sidecars",
}
RESERVED_INFIX = ".tableship-"
# the longest names derived from an archive name (destinations/base.temp_name, the staged
# archive.writer .part file, the sidecars of backup/delivery.py)
TEMP_EXTRA = len("..tableship--12345678.part")  # + the job name
SIDECAR_EXTRA = len(".manifest.json")
PARTIAL_EXTRA = len(".part")

_SAMPLE = (dt.date(2026, 1, 1), dt.date(2026, 1, 31), dt.date(2026, 2, 1))


def _names(job) -> dict[str, str]:
    return {"job": job.name, "table": job.table_name, "database": job.database or ""}


def _sample(job, template: str) -> str:
    try:
        return template.format(**job.template_values(*_SAMPLE).as_dict())
    except (ValueError, KeyError, IndexError):
        return template


def _ends_with(pat: list[Pos], suffix: str) -> bool:
    """Every rendering ends with ``suffix``."""
    tail = pat[-len(suffix) :] if len(pat) >= len(suffix) else None
    return tail is not None and all(
        not p.optional and p.chars == frozenset(c) for p, c in zip(tail, suffix, strict=True)
    )


def job_problems(job, dest_cfg: Any, staging_dir: Path, dest_name: str | None = None) -> list[str]:
    """The problems of one job's names (``jobs.<name>.<key>: ...``)."""
    key = f"jobs.{job.name}"
    try:
        name_pat = pattern(job.file_name, _names(job))
        dir_pat = normalise_dir(pattern(job.remote_dir, _names(job)))
    except ValueError:
        return []  # reported by the job's own validation (the template cannot be rendered)
    shown = _sample(job, job.file_name)
    problems = []

    codec = job.compression.codec
    ext = SUFFIXES[codec]
    if ext:
        if not _ends_with(name_pat, ext):
            problems.append(
                f"{key}.file_name: {shown!r} does not end with {ext!r} but compression.codec is "
                f"{codec!r}: end file_name with {ext} or change the codec"
            )
    else:
        for ext in COMPRESSED_EXTENSIONS:
            if overlap(name_pat, anything_then(ext)):
                problems.append(
                    f'{key}.file_name: {shown!r} ends with {ext!r} but compression.codec is "none" '
                    f"(the file is not compressed): drop {ext} from file_name or set a codec"
                )
                break

    for suffix, what in RESERVED_SUFFIXES.items():
        if overlap(name_pat, anything_then(suffix)):
            problems.append(
                f"{key}.file_name: {shown!r} can end with {suffix!r}, the name of {what}: clean-up, "
                "ls and prune would take it for one of them; choose another name"
            )
    if overlap(name_pat, anything_around(RESERVED_INFIX)):
        problems.append(
            f"{key}.file_name: {shown!r} can contain {RESERVED_INFIX!r}, the mark of the tool's upload "
            "temporaries: another job's clean-up could delete it; choose another name"
        )

    longest = max_bytes(name_pat)
    derived = longest + max(TEMP_EXTRA + len(job.name.encode()), SIDECAR_EXTRA, PARTIAL_EXTRA)
    if derived > NAME_MAX:
        problems.append(
            f"{key}.file_name: renders names of up to {longest} bytes; with the upload temporary "
            f"'.<name>.tableship-{job.name}-<8 hex>.part' that is {derived} bytes, over the {NAME_MAX}-byte "
            "limit of a file name (NAME_MAX): shorten file_name (or the job name)"
        )
    for seg in segments(dir_pat):
        if max_bytes(seg) > NAME_MAX:
            problems.append(
                f"{key}.remote_dir: a folder name can be {max_bytes(seg)} bytes long, over the "
                f"{NAME_MAX}-byte limit of a file name (NAME_MAX): shorten remote_dir"
            )
            break

    root = _root_text(dest_cfg)
    if root is not None:
        total = (
            len(root.encode()) + 1 + max_bytes(dir_pat) + 1 + longest + TEMP_EXTRA + len(job.name.encode())
        )
        if total >= PATH_MAX:
            problems.append(
                f"{key}.remote_dir: paths on destination {dest_name or job.destination!r} can be "
                f"{total} bytes long, "
                f"over the {PATH_MAX}-byte path limit (PATH_MAX): shorten remote_dir or file_name"
            )
    staged = len(str(Path(staging_dir) / job.name).encode()) + 1 + longest + PARTIAL_EXTRA
    if staged >= PATH_MAX:
        problems.append(
            f"{key}.file_name: staged paths can be {staged} bytes long, over the {PATH_MAX}-byte path "
            "limit (PATH_MAX): shorten file_name or settings.staging_dir"
        )
    return problems


def _root_text(dest_cfg: Any) -> str | None:
    if dest_cfg is None:
        return None
    if dest_cfg.type == "local":
        return os.path.normpath(str(Path(dest_cfg.path).resolve()))
    return posixpath.normpath(dest_cfg.path)


def _place(dest_cfg: Any) -> str | None:
    """Where a destination writes, as text: equal (or nested) places share files."""
    root = _root_text(dest_cfg)
    if root is None:
        return None
    if dest_cfg.type == "local":
        return "local:" + root.rstrip("/")
    return f"sftp://{dest_cfg.host.lower()}:{dest_cfg.port}" + root.rstrip("/")


def full_pattern(job, dest_cfg: Any) -> list[Pos] | None:
    place = _place(dest_cfg)
    if place is None:
        return None
    try:
        dir_pat = normalise_dir(pattern(job.remote_dir, _names(job)))
        name_pat = pattern(job.file_name, _names(job))
    except ValueError:
        return None
    slash = [Pos(frozenset("/"))]
    return [Pos(frozenset(c)) for c in place] + slash + (dir_pat + slash if dir_pat else []) + name_pat


def collision_problems(jobs: dict, dests: dict) -> list[str]:
    """Any two jobs whose destination paths can be the same text for some run dates (on any
    of their destinations: a job delivering to two hosts is checked on both)."""
    problems = []
    pats = {
        name: [(d, p) for d in job.destinations if (p := full_pattern(job, dests.get(d))) is not None]
        for name, job in jobs.items()
    }
    names = [n for n in jobs if pats[n]]
    for n in names:
        same = [(x, y) for i, (x, px) in enumerate(pats[n]) for y, py in pats[n][i + 1 :] if overlap(px, py)]
        if same:
            problems.append(
                f"jobs.{n}.destinations: {same[0][0]!r} and {same[0][1]!r} are the same place: the "
                "second delivery would overwrite the first; list each backup host once"
            )
    for i, b in enumerate(names):
        for a in names[:i]:
            hit = next(
                ((da, db) for da, pa in pats[a] for db, pb in pats[b] if overlap(pa, pb)),
                None,
            )
            if hit is None:
                continue
            ja, jb = jobs[a], jobs[b]
            ex_a = posixpath.join(_sample(ja, ja.remote_dir), _sample(ja, ja.file_name))
            where = (
                f"both write {ex_a!r}"
                if dests[hit[0]] == dests[hit[1]]
                and ex_a == posixpath.join(_sample(jb, jb.remote_dir), _sample(jb, jb.file_name))
                else "their remote_dir/file_name templates can render the same path"
            )
            problems.append(
                f"jobs.{b}.file_name: jobs {a!r} and {b!r} can write the same destination file "
                f"for some run dates ({where}): one would overwrite the other's "
                "archive; give one of them another remote_dir or file_name (e.g. with {job} or {table})"
            )
            break
    return problems


# type → (driver module, extra); mirrors the REGISTRY of sources/base.py and destinations/base.py
def _drivers() -> dict[tuple[str, str], tuple[str, str]]:
    return {("source", t): (d, e) for t, (_m, _c, e, d) in SOURCES.items() if d and e} | {
        ("destination", t): (d, e) for t, (_m, _c, e, d) in DESTS.items() if d and e
    }


def missing_driver(kind: str, type_: str) -> tuple[str, str] | None:
    """(module, extra) when the optional driver of a source/destination type is not installed."""
    entry = _drivers().get((kind, type_))
    if entry is None:
        return None
    module, extra = entry
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else entry


def environment_problems(config) -> list[str]:
    """What this machine lacks for the config: optional drivers, local destination folders."""
    problems = []
    for kind, section, items in (
        ("source", "sources", config.sources),
        ("destination", "destinations", config.destinations),
    ):
        for name, cfg in items.items():
            missing = missing_driver(kind, cfg.type)
            if missing:
                problems.append(
                    f"{section}.{name}.type: {cfg.type!r} needs the Python package {missing[0]!r}, "
                    f"which is not installed: pip install 'tableship[{missing[1]}]'"
                )
    if getattr(config.settings, "state", None) is not None and importlib.util.find_spec("psycopg") is None:
        problems.append(
            "settings.state: a PostgreSQL ledger needs the Python package 'psycopg', which is not "
            "installed: pip install 'tableship[postgres]'"
        )
    for name, cfg in config.destinations.items():
        if cfg.type == "local" and not Path(cfg.path).is_dir():
            what = "is not a folder" if Path(cfg.path).exists() else "does not exist"
            problems.append(
                f"destinations.{name}.path: folder {str(cfg.path)!r} {what}: create it "
                f"(mkdir -p {cfg.path}) or fix the path (a missing mount is never created)"
            )
    return problems
