"""Restore one archive: download, check, decompress, check, then leave the CSV in a
folder and/or load it into a DuckDB table.

Order of checks (nothing is left or loaded unless all pass):

1. the options (``--load`` spec, target table absent unless ``--replace``, ``--to``
   writable) — before anything is downloaded;
2. the archive is found among the job's archives on the destination and has a manifest;
3. the download (a temporary in the staging folder) has the manifest's sha256 (and the
   ``.sha256`` sidecar's, when present). With several destinations (``destinations = [...]``)
   2 and 3 are tried on each in config order: a destination that is down, lacks the
   archive or holds a damaged copy is logged and the next one used;
4. decompressed, its size is the manifest's ``csv_bytes`` and its header line is the
   manifest's column names;
5. parsed with the manifest's dialect and column types, it has the manifest's row count.

``--to DIR``: the CSV (the archive's name without its compression suffix) is
decompressed into a temporary in DIR and renamed into place only after the checks.

``--load DB[:TABLE]``: one DuckDB transaction creates the table with the manifest's
column names and types and inserts the rows read with ``read_csv`` (explicit columns,
the dialect's delimiter, ``"`` as quote and escape, the null text as ``nullstr`` and
``allow_quoted_nulls = false``, so a quoted ``""`` stays an empty string while the bare
null text is NULL); a parse error or a wrong row count rolls everything back.
BLOB columns (hex in the CSV) go through ``unhex``; TIMESTAMPTZ values (written in UTC
without offset) are read as UTC.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tableship.archive.codecs import SUFFIXES
from tableship.archive.csvrender import CsvDialect, render_value_text
from tableship.catalog.archivecsv import (
    RestoreError,
    decompress_csv,
    duckdb_transaction,
    make_folder,
    manifest_columns,
    manifest_dialect,
    parse_error,
    quote_ident,
    read_csv_sql,
)
from tableship.catalog.manifest import parse_sidecar, read_small
from tableship.catalog.records import Archive
from tableship.catalog.scan import list_archives, open_job_destination, per_destination
from tableship.catalog.verify import NoArchiveError
from tableship.config.models import Config, JobConfig
from tableship.core.errors import JobError, TableshipError, UsageError
from tableship.core.fsutil import file_sha256
from tableship.core.names import check_identifier
from tableship.core.window import parse_window
from tableship.destinations.base import Destination
from tableship.ledger.state import StateStore

log = logging.getLogger("tableship")


@dataclass
class LoadTarget:
    db: Path
    schema: str | None
    table: str

    @property
    def display(self) -> str:
        return f"{self.db}:{self.schema + '.' if self.schema else ''}{self.table}"

    @property
    def sql_name(self) -> str:
        return (f"{quote_ident(self.schema)}." if self.schema else "") + quote_ident(self.table)


@dataclass
class RestoreResult:
    archive: Archive
    rows: int
    csv_path: Path | None = None
    load: LoadTarget | None = None

    def lines(self) -> list[str]:
        a = self.archive
        sha = a.sha256 or ""  # a restored archive has a manifest, so its sha256
        out = [f"restored {a.remote_path} (window {a.window}, {self.rows} rows, sha256 {sha[:12]}… checked)"]
        if self.csv_path:
            out.append(f"  CSV:   {self.csv_path}")
        if self.load:
            out.append(f"  table: {self.load.display} ({self.rows} rows)")
        return out


def parse_load(spec: str, default_table: str) -> LoadTarget:
    """``DB`` or ``DB:TABLE`` or ``DB:SCHEMA.TABLE`` (the table defaults to the source table's name)."""
    path, table = spec, None
    m = re.match(r"^(.*):([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)$", spec)
    if m and m.group(1):
        path, table = m.group(1), m.group(2)
    elif ":" in Path(spec).name:
        raise UsageError(
            f"--load {spec!r}: the table after ':' must be TABLE or SCHEMA.TABLE (letters, digits, _)",
            "write it as DUCKDB_PATH[:TABLE], e.g. restored.duckdb:traffic_2026",
        )
    if not path:
        raise UsageError("--load needs a DuckDB file path", "write it as DUCKDB_PATH[:TABLE]")
    schema, name = table.split(".", 1) if table and "." in table else (None, table or default_table)
    try:
        check_identifier(name, "table")
        if schema:
            check_identifier(schema, "schema")
    except ValueError as exc:
        raise UsageError(f"--load: {exc}", "name the table explicitly: DUCKDB_PATH:TABLE") from None
    return LoadTarget(Path(path).expanduser(), schema, name)


def find_archive(archives: list[Archive], which: str) -> Archive:
    """``which`` is ``START..END`` (the window) or the archive's file name / remote path."""
    if ".." in which and "/" not in which:
        try:
            w = parse_window(which)
        except ValueError:
            w = None
        if w is not None:
            found = [a for a in archives if a.window == w and (a.has_archive or a.has_manifest)]
            if not found:
                raise NoArchiveError(
                    f"no archive for the window {w} on the destination",
                    "run 'tableship ls JOB' to see the windows available",
                )
            found.sort(key=lambda a: (a.manifest is not None and a.has_archive, a.created_at or ""))
            if len(found) > 1:
                log.info("%d archives for %s; restoring the newest, %s", len(found), w, found[-1].remote_path)
            return found[-1]
    found = [a for a in archives if which in (a.remote_path, a.file_name)]
    if not found:
        raise NoArchiveError(
            f"no archive named {which!r} on the destination",
            "pass the window as YYYY-MM-DD..YYYY-MM-DD or a file name shown by 'tableship ls JOB'",
        )
    if len(found) > 1:
        raise UsageError(
            f"{len(found)} archives are named {which!r} ({', '.join(a.remote_path for a in found)})",
            "pass the full remote path shown by 'tableship ls JOB'",
        )
    return found[0]


def _check_to(to: Path, final_name: str, replace: bool) -> Path:
    make_folder(to, f"cannot create the folder {str(to)!r} for --to")
    if not to.is_dir():
        raise RestoreError(f"--to {str(to)!r} is not a folder", "pick a folder you can write to")
    if not os.access(to, os.W_OK | os.X_OK):
        raise RestoreError(f"cannot write to the folder {str(to)!r} (--to)", "pick a folder you can write to")
    target = to / final_name
    if target.exists() and not replace:
        raise UsageError(
            f"{str(target)!r} already exists", "pass --replace to overwrite it, or pick another --to"
        )
    return target


def _open_duckdb(target: LoadTarget):
    import duckdb  # lazily, like archivecsv.duckdb_transaction: heavy, only restore needs it

    try:
        target.db.parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(target.db))
    except (OSError, duckdb.Error) as exc:
        raise RestoreError(
            f"cannot open the DuckDB file {str(target.db)!r}: {str(exc).splitlines()[0]}",
            "check the path, its permissions, and that no other process holds it open",
        ) from None


def _table_exists(con, target: LoadTarget) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = $s "
        "AND table_name = $t",
        {"s": target.schema or "main", "t": target.table},
    ).fetchone()
    views = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE database_name = current_database() AND schema_name = $s "
        "AND view_name = $t",
        {"s": target.schema or "main", "t": target.table},
    ).fetchone()
    return bool(row[0] or views[0])


def _unlink(p: Path | None) -> None:
    if p is not None:
        p.unlink(missing_ok=True)


@dataclass
class _Scratch:
    """What a restore leaves behind until it ends: removed (or closed) whatever happens."""

    con: Any = None  # the DuckDB connection of --load
    tmpdir: Path | None = None  # in the staging folder: the downloaded archive
    csv_tmp: Path | None = None  # the decompressed CSV until it is published


def restore(
    config: Config,
    job_name: str,
    which: str,
    to: str | Path | None = None,
    load: str | None = None,
    replace: bool = False,
    echo: Callable[[str], None] | None = None,
) -> RestoreResult:
    """``tableship restore``. Raises a TableshipError (nothing left or loaded) on any failed check."""
    job = config.job(job_name)
    say = echo or (lambda s: log.info("%s", s))
    target = parse_load(load, job.table_name) if load else None
    if to is None and target is None:
        to = "."
    store = StateStore.of(config.settings, readonly=True)
    work = _Scratch()
    created_db = target is not None and not target.db.exists()
    done = False
    try:
        # 1. options first: nothing is downloaded for a request that cannot succeed
        if target is not None:
            work.con = _open_target(target, replace)
        checked: dict[str, Any] = {}

        def check(archive: Archive, m: dict, codec: str) -> Path:
            """The options against the archive found (before its download); the scratch folder."""
            checked["dialect"] = manifest_dialect(m)
            checked["columns"] = manifest_columns(m, strict=target is not None)
            checked["csv_name"] = _csv_name(archive.file_name, codec)
            checked["final"] = (
                _check_to(Path(to).expanduser(), checked["csv_name"], replace) if to is not None else None
            )
            if work.tmpdir is None:
                work.tmpdir = _scratch_dir(config.staging_dir / "restore", job.name)
            return work.tmpdir

        # 2. download into the staging folder and check the sha256 before anything else
        archive, m, codec, local = _fetch(config, job, which, store, check, say)
        dialect, columns, csv_name, final = (checked[k] for k in ("dialect", "columns", "csv_name", "final"))
        assert work.tmpdir is not None
        # 3. decompress (into the --to folder when given, so the final rename is atomic)
        if final is not None:
            work.csv_tmp = final.with_name(f".{final.name}.tableship-restore-{secrets.token_hex(4)}.part")
        else:
            work.csv_tmp = work.tmpdir / csv_name
        longest = _decompress_checked(local, codec, work.csv_tmp, m, dialect, columns)
        # 4. parse with the manifest's dialect and types; check the row count
        sql, params = read_csv_sql(columns, dialect, longest)
        params["path"] = str(work.csv_tmp)
        rows = (
            _load(work.con, target, columns, sql, params, m["rows"], replace)
            if target is not None
            else _count(sql, params, len(columns))
        )
        _check_rows(rows, m["rows"])
        # 5. publish the CSV
        if final is not None:
            os.replace(work.csv_tmp, final)
            work.csv_tmp = None
        done = True
        return RestoreResult(archive, rows, final, target)
    finally:
        if work.con is not None:
            work.con.close()
        if target is not None and created_db and not done:  # no empty database file behind a failure
            for p in (target.db, target.db.with_name(target.db.name + ".wal")):
                _unlink(p)
        store.close()
        _unlink(work.csv_tmp)
        if work.tmpdir is not None:
            shutil.rmtree(work.tmpdir, ignore_errors=True)


def _fetch(
    config: Config,
    job: JobConfig,
    which: str,
    store: StateStore,
    check: Callable[[Archive, dict, str], Path],
    say: Callable[[str], None],
) -> tuple[Archive, dict, str, Path]:
    """The archive from the first of the job's destinations (config order) that lists it with
    a manifest and whose copy downloads with the manifest's sha256: a destination that is
    down, lacks the archive or holds a damaged copy is reported and the next one tried.
    ``check`` validates the options against the archive found before it is downloaded (its
    errors are not the destination's: they end the restore). With one destination its
    error is raised as is."""
    failures: list[tuple[str, TableshipError]] = []
    for one in per_destination(job):
        name = one.destination
        try:
            dest = open_job_destination(config, one)
        except JobError as exc:
            failures.append((name, exc))
            continue
        try:
            try:
                archive = find_archive(list_archives(config, one, dest, store), which)
                m, codec = _restorable(archive)
            except (NoArchiveError, JobError) as exc:
                failures.append((name, exc))
                continue
            tmpdir = check(archive, m, codec)
            try:
                local = _download(dest, archive, tmpdir, say)
            except JobError as exc:
                (tmpdir / archive.file_name).unlink(missing_ok=True)
                failures.append((name, exc))
                continue
        finally:
            dest.close()
        if failures:
            log.warning(
                "%s: %s; using the copy on %s",
                which,
                "; ".join(f"on {n}: {e.line()}" for n, e in failures),
                name,
            )
        return archive, m, codec, local
    if len(failures) == 1:
        raise failures[0][1]
    raise RestoreError(
        f"{which} cannot be restored from any of the job's destinations: "
        + "; ".join(f"on {n}: {e.message}" for n, e in failures),
        failures[0][1].hint,
    )


def _open_target(target: LoadTarget, replace: bool):
    """The --load database, opened; refused when the table exists and --replace is not given."""
    con = _open_duckdb(target)
    if _table_exists(con, target) and not replace:
        con.close()
        raise UsageError(
            f"table {target.display} already exists",
            "pass --replace to replace it, or load into another table (DUCKDB_PATH:TABLE)",
        )
    return con


def _restorable(archive: Archive) -> tuple[dict, str]:
    """(manifest, codec) of an archive that can be checked and downloaded, else RestoreError."""
    if archive.manifest is None:
        why = archive.manifest_problem or "it has no manifest"
        raise RestoreError(
            f"{archive.remote_path} cannot be checked: {why}",
            "restore another window; 'tableship ls JOB' shows which are complete",
        )
    if not archive.has_archive:
        raise RestoreError(
            f"{archive.remote_path} is missing on the destination (only its manifest remains)",
            "restore another window; 'tableship verify JOB' reports what is missing",
        )
    m = archive.manifest
    codec = (m.get("compression") or {}).get("codec", "gzip")
    if codec not in SUFFIXES:
        raise RestoreError(f"the manifest names an unknown codec {codec!r}", "upgrade tableship")
    return m, codec


def _csv_name(file_name: str, codec: str) -> str:
    """The decompressed file's name: the archive's without the codec's suffix (else + ``.csv``)."""
    suffix = SUFFIXES[codec]
    if suffix and file_name.endswith(suffix):
        return file_name[: -len(suffix)]
    return file_name + ".csv" if codec != "none" else file_name


def _scratch_dir(staging: Path, job_name: str) -> Path:
    try:
        staging.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{job_name}-", dir=staging))
    except OSError as exc:
        raise RestoreError(
            f"cannot create a temporary folder in {str(staging)!r}: {exc.strerror}",
            "check settings.state_dir / staging_dir",
        ) from None


def _download(dest: Destination, archive: Archive, tmpdir: Path, say: Callable[[str], None]) -> Path:
    """The archive downloaded into ``tmpdir``, its sha256 checked against the manifest and the sidecar."""
    m = archive.manifest or {}
    local = tmpdir / archive.file_name
    say(f"downloading {archive.remote_path} ({archive.archive_bytes} bytes)")
    dest.get(archive.remote_path, local)
    got = file_sha256(local)
    if got != m["sha256"]:
        raise RestoreError(
            f"{archive.remote_path}: sha256 {got[:12]}… differs from the manifest's "
            f"{m['sha256'][:12]}…; refusing to restore it",
            "the archive on the destination is damaged: restore another copy or re-run the backup",
        )
    if archive.has_sidecar:
        side = parse_sidecar(read_small(dest, archive.sha256_path, tmpdir, 64 * 1024))
        if side is not None and side[0] != got:
            raise RestoreError(
                f"{archive.remote_path}: the .sha256 sidecar says {side[0][:12]}…, the archive "
                f"is {got[:12]}…; refusing to restore it",
                "check the destination with 'tableship verify'",
            )
    return local


def _decompress_checked(
    local: Path, codec: str, csv_tmp: Path, m: dict, dialect: CsvDialect, columns: list[tuple[str, str]]
) -> int:
    """Decompress ``local`` into ``csv_tmp`` (removing ``local``); check the size and the header
    against the manifest; returns the longest line's length (for the CSV reader)."""
    try:
        csv_bytes, header, longest = decompress_csv(local, codec, csv_tmp, quoted=dialect.quoting != "none")
    except OSError as exc:
        raise RestoreError(
            f"cannot write {str(csv_tmp)!r}: {exc.strerror}", "free space or pick another --to folder"
        ) from None
    _unlink(local)
    if isinstance(m.get("csv_bytes"), int) and csv_bytes != m["csv_bytes"]:
        raise RestoreError(
            f"the archive decompresses to {csv_bytes} bytes, the manifest says {m['csv_bytes']}",
            "the archive is inconsistent with its manifest: restore another window",
        )
    if dialect.header and not any("\n" in n or "\r" in n for n, _ in columns):
        expected = dialect.delimiter.join(render_value_text(n, dialect) for n, _ in columns)
        if header.decode("utf-8", "replace") != expected:
            raise RestoreError(
                "the CSV header does not list the manifest's columns",
                "the archive is inconsistent with its manifest: restore another window",
            )
    return longest


def _check_rows(rows: int, expected: int) -> None:
    if rows != expected:
        raise RestoreError(
            f"the CSV holds {rows} rows, the manifest says {expected}",
            "nothing was restored; the archive is inconsistent with its manifest",
        )


def _count(sql: str, params: dict, ncols: int) -> int:
    """Parse the whole CSV (every column converted) and count its rows."""
    import duckdb  # lazily, like archivecsv.duckdb_transaction: heavy, only restore needs it

    con = duckdb.connect()
    try:
        aggs = ", ".join(f"count(#{i + 1})" for i in range(ncols))
        row = con.execute(f"SELECT count(*), {aggs} FROM ({sql})", params).fetchone()
        assert row is not None  # an aggregate returns one row
        return int(row[0])
    except duckdb.Error as exc:
        raise parse_error(exc) from None
    finally:
        con.close()


def _load(
    con,
    target: LoadTarget,
    columns: list[tuple[str, str]],
    sql: str,
    params: dict,
    expected: int,
    replace: bool,
) -> int:
    """Create and fill the table in one transaction; roll back on any error or a wrong count."""
    import duckdb  # lazily, like archivecsv.duckdb_transaction: heavy, only restore needs it

    try:
        with duckdb_transaction(con):
            if target.schema:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(target.schema)}")
            if replace:
                con.execute(f"DROP TABLE IF EXISTS {target.sql_name}")
            ddl = ", ".join(f"{quote_ident(n)} {t}" for n, t in columns)
            con.execute(f"CREATE TABLE {target.sql_name} ({ddl})")
            con.execute(f"INSERT INTO {target.sql_name} {sql}", params)
            rows = int(con.execute(f"SELECT count(*) FROM {target.sql_name}").fetchone()[0])
            _check_rows(rows, expected)
            return rows
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.CatalogException) and "already exists" in str(exc):
            raise UsageError(
                f"table {target.display} already exists",
                "pass --replace to replace it, or load into another table",
            ) from None
        raise parse_error(exc) from None
