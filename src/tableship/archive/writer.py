"""Export: source batches → CSV dialect → compressor → staged archive.

Rows, CSV bytes, archive bytes and the archive's sha256 are computed while writing (no
second pass). The archive is written under ``<name>.part``, fsynced, then renamed, so
a staged archive under its final name is always complete.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from tableship.archive.codecs import open_compressor
from tableship.archive.csvrender import CsvDialect, CsvRenderer
from tableship.core import interrupts
from tableship.core.fsutil import fsync_dir

BATCH_ROWS = 20_000
# Rendering needs a few times the CSV size of what it renders at once; slicing wide
# batches keeps peak memory flat whatever the row width.
SLICE_BYTES = 2 * 1024 * 1024


def lean_memory() -> None:
    """Allocator settings for a streaming export (process-wide, idempotent).

    * Arrow buffers from the C library's allocator unless ARROW_DEFAULT_MEMORY_POOL says
      otherwise: Arrow's default (mimalloc) keeps the freed pages of short-lived batches
      and casts for reuse (13–25 MiB more peak RSS in an export).
    * glibc: a fixed 256 KiB mmap threshold. By default glibc raises the threshold to
      the size of the largest block freed (up to 32 MiB), after which the 1–2 MiB CSV
      slices and compression blocks come from the heap and fragment it; mapped, they
      go back to the OS when freed (~8 MiB less peak RSS, about 1 % more CPU).
    Numbers in docs/performance.md.
    """
    global _lean
    if _lean:
        return
    _lean = True
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL") and pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
    if not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        try:
            libc = ctypes.CDLL(None)
            libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD
        except (OSError, AttributeError):  # not glibc: nothing to tune
            pass


_lean = False


class HashingWriter:
    """A raw file wrapper that hashes and counts the bytes written through it."""

    def __init__(self, f):
        self._f = f
        self.sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.bytes += len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._f.closed

    def close(self) -> None:  # the owner closes the real file
        pass


@dataclass
class ExportResult:
    rows: int
    csv_bytes: int
    archive_bytes: int
    sha256: str
    columns: list[dict] = field(default_factory=list)
    compression: dict = field(default_factory=dict)  # what was used: codecs' record()


def sql_type(t: pa.DataType) -> str:
    """A portable SQL type name for an Arrow type (manifest ``columns[].type``)."""
    if pa.types.is_dictionary(t):
        return sql_type(t.value_type)
    simple = [
        (pa.types.is_boolean, "BOOLEAN"),
        (pa.types.is_int8, "TINYINT"),
        (pa.types.is_int16, "SMALLINT"),
        (pa.types.is_int32, "INTEGER"),
        (pa.types.is_int64, "BIGINT"),
        (pa.types.is_uint8, "UTINYINT"),
        (pa.types.is_uint16, "USMALLINT"),
        (pa.types.is_uint32, "UINTEGER"),
        (pa.types.is_uint64, "UBIGINT"),
        (pa.types.is_float16, "FLOAT"),
        (pa.types.is_float32, "FLOAT"),
        (pa.types.is_float64, "DOUBLE"),
        (pa.types.is_date, "DATE"),
        (pa.types.is_time, "TIME"),
        (pa.types.is_string, "VARCHAR"),
        (pa.types.is_large_string, "VARCHAR"),
        (pa.types.is_binary, "BLOB"),
        (pa.types.is_large_binary, "BLOB"),
        (pa.types.is_null, "VARCHAR"),
    ]
    for test, name in simple:
        if test(t):
            return name
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    return str(t).upper()


def columns_of(schema: pa.Schema) -> list[dict]:
    return [{"name": f.name, "type": sql_type(f.type)} for f in schema]


def write_archive(
    batches: Iterator[pa.RecordBatch],
    schema: pa.Schema | None,
    target: Path,
    dialect: CsvDialect,
    codec: str,
    level: int | None,  # None: the adaptive default
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Stream ``batches`` into the archive ``target``. ``schema`` is used when there are no rows."""
    lean_memory()
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = csv_bytes = 0
    renderer: CsvRenderer | None = None
    try:
        with open(part, "wb") as raw:
            hashing = HashingWriter(raw)
            out = open_compressor(hashing, codec, level)
            try:
                for batch in batches:
                    interrupts.checkpoint()  # a signal a driver swallowed still stops the export
                    if renderer is None:
                        schema = batch.schema
                        renderer = CsvRenderer(schema, dialect)
                        head = renderer.header()
                        out.write(head)
                        csv_bytes += len(head)
                    for piece in _slices(batch):
                        chunk = renderer.render(piece)
                        out.write(chunk)
                        csv_bytes += len(chunk)
                    rows += batch.num_rows
                    if progress:
                        progress(rows, csv_bytes)
                if renderer is None:  # no rows: still a valid archive with the header
                    if schema is None:
                        raise ValueError("no rows and no schema")
                    renderer = CsvRenderer(schema, dialect)
                    head = renderer.header()
                    out.write(head)
                    csv_bytes += len(head)
            finally:
                out.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(part, target)
        fsync_dir(target.parent)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return ExportResult(
        rows, csv_bytes, hashing.bytes, hashing.sha.hexdigest(), columns_of(schema), out.record()
    )


def _slices(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    n = batch.num_rows
    # get_total_buffer_size, not nbytes: nbytes allocates from Arrow's C++ default pool
    # (mimalloc) whatever lean_memory() chose, and mimalloc's arena costs ~4 MiB of RSS
    step = max(1024, int(SLICE_BYTES / max(batch.get_total_buffer_size() / max(n, 1), 1)))
    if step >= n:
        yield batch
        return
    for offset in range(0, n, step):
        yield batch.slice(offset, step)
