"""The Loader protocol: what ``restore --from/--to --load`` needs from a target engine.

A loader is opened on one target table. The restore calls, in order:

1. ``check(columns, partition_column)`` once, before any archive is downloaded: connect,
   then look the table up. Returns True when it exists with the same column names and
   compatible types, False when there is none; an existing table with other columns is a
   :class:`LoadError` naming the first difference. Changes nothing on the target.
2. ``rows_in(spans)`` (only for an existing table): how many rows it already holds in
   those day spans (the restore refuses to add to them without ``--replace``, before it
   downloads anything).
3. ``create(columns, partition_column)`` once, after every archive of the range was
   verified, when ``check`` found no table: create it from the manifest's columns and
   types (partitioned by the partition column where the engine has partitions).
4. ``load(spec)`` per archive. **Atomic**: the rows of the spans are replaced by the
   archive's rows inside them — the table shows either the old rows or all the new ones,
   never a part (a transaction for SQL databases; for Hive/Spark the archive is counted
   before an ``INSERT OVERWRITE`` of its partitions). A count that is not
   ``spec.expected_rows`` raises :class:`LoadError` and leaves the table as it was.
   Loading the same archive again gives the same table (the resume after a crash relies
   on it). Right before the table changes for others to see (the commit, the overwrite)
   the loader calls ``spec.before_commit()``; the restore uses it to commit the archives
   in range order, and an exception from it must roll the load back. Up to
   ``parallel_loads`` loads run at once, each in its own thread (the loader gives each its
   own connection); returns the rows written (inside the spans).
5. ``finish(created)`` once after the last load (Impala metadata refresh), ``close()``.

Driver errors become :class:`LoadError` (terminal) or :class:`TransientLoadError`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tableship.archive.csvrender import CsvDialect
from tableship.core.errors import JobError


class LoadError(JobError):
    """The target refused the load (exit 1); the archive's rows are not in the table."""


class TransientLoadError(LoadError):
    """The target was unreachable or dropped the connection; a re-run resumes."""

    transient = True


@dataclass(frozen=True)
class Span:
    """A day span of the range as bounds of the partition column (typed for the engine)."""

    start: dt.date
    end: dt.date
    low: Any
    high: Any


@dataclass
class LoadSpec:
    """One archive to load: its CSV, dialect, columns and the spans it supplies.

    The archive's sha256 was checked before any load, so a loader reads its rows straight
    from ``archive`` (``codec``-compressed) where it can — DuckDB's ``read_csv`` and
    PostgreSQL's ``COPY`` are fed from the compressed file, no decompressed copy is written
    — and asks :func:`~tableship.catalog.loaders.csvread.ensure_csv` for a decompressed
    file otherwise (``csv`` is then set, its size checked against ``csv_bytes``)."""

    csv: Path | None  # the decompressed CSV, once there is one
    columns: list[tuple[str, str]]  # (name, DuckDB type spelling as in the manifest)
    dialect: CsvDialect
    expected_rows: int  # the manifest's row count (the whole archive, before filtering)
    partition_column: str
    spans: list[Span]
    whole: bool  # every row of the archive is inside the spans: no filtering needed
    longest_line: int  # 0: not measured (the archive was not decompressed)
    name: str  # the archive's remote path, for messages
    archive: Path | None = None  # the verified compressed archive
    codec: str = "none"
    csv_bytes: int | None = None  # the manifest's decompressed size
    # called right before the load becomes visible; raises to cancel it (rolled back)
    before_commit: Callable[[], None] = field(default=lambda: None)


@runtime_checkable
class Loader(Protocol):
    kind: str
    display: str  # "target NAME:TABLE" for messages and the ledger (no secrets)
    lock_name: str  # one lock per target table
    parallel_loads: int  # how many archives it loads at once

    def check(self, columns: list[tuple[str, str]], partition_column: str) -> bool: ...

    def create(self, columns: list[tuple[str, str]], partition_column: str) -> None: ...

    def rows_in(self, spans: list[Span]) -> int: ...

    def load(self, spec: LoadSpec) -> int: ...

    def finish(self, created: bool) -> None: ...

    def close(self) -> None: ...


class LoaderBase:
    """The defaults most loaders share: one load at a time, nothing to do after the last
    archive (no metadata to refresh)."""

    parallel_loads = 1

    def finish(self, created: bool) -> None:
        pass


def partition_kind(columns: list[tuple[str, str]], partition_column: str) -> str:
    """'date' | 'int' | 'string' for the partition column's manifest type."""
    types = dict(columns)
    if partition_column not in types:
        raise LoadError(
            f"the archive has no column {partition_column!r} (the job's partition_column)",
            "restore it with --window and --out DIR instead",
        )
    t = types[partition_column].upper()
    if t in ("DATE", "TIMESTAMP", "TIMESTAMPTZ"):
        return "date"
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER"):
        return "int"
    return "string"


def count_mismatch(spec: LoadSpec, got: int) -> LoadError:
    return LoadError(
        f"{spec.name}: the CSV holds {got} rows, the manifest says {spec.expected_rows}; "
        "its load was rolled back",
        "the archive is inconsistent with its manifest: re-run the backup of that window",
    )


def check_same(display: str, want: list[tuple[str, str]], have: list[tuple[str, str]], fold=False) -> None:
    """Same column names (in order) and types, else a LoadError naming the first difference."""

    def key(n: str) -> str:
        return n.lower() if fold else n

    if [key(n) for n, _ in want] != [key(n) for n, _ in have]:
        raise LoadError(
            f"{display} exists with the columns ({', '.join(n for n, _ in have)}), the archives have "
            f"({', '.join(n for n, _ in want)})",
            "load into a new table (--load TARGET:OTHER_TABLE), or drop or rename the existing one",
        )
    for (n, w), (_, h) in zip(want, have, strict=True):
        if w != h:
            raise LoadError(
                f"{display} exists but its column {n!r} is {h}, the archives' is {w}",
                "load into a new table (--load TARGET:OTHER_TABLE), or drop or rename the existing one",
            )
