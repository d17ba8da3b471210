"""Streaming compressed writers and readers for the archive files.

* ``gzip``: always one standard gzip member (``gzip -d``/``zcat`` read it).
  Levels 1–3 use ISA-L (``isal``; gzip level N → ISA-L level N), levels 4–9
  use zlib-ng (``zlib_ng``).  With ``threads > 1`` the pigz-like threaded
  writers of those libraries compress 1 MiB blocks in parallel (still a single
  member, each block primed with the previous 32 KiB, so the ratio barely
  changes); the input is cut into exact 1 MiB blocks whatever the write sizes.
  The header carries no file name and mtime 0, so equal input gives equal bytes
  — the same bytes as the adaptive default's when it used that level throughout.
* ``zstd``: one zstd frame with a content checksum (``zstd -d`` reads it);
  ``threads > 1`` uses that many zstd worker threads.
* ``none``: bytes are passed through.
* no ``level`` (``None``) for gzip or zstd: the adaptive default —
  :class:`tableship.archive.adaptive.BlockCompressor` picks each 1 MiB (zstd: 4 MiB) block's
  level from what the run measures; still one gzip member (or standard zstd frames).

Every stream returned has ``record()``: the manifest's ``compression`` record of what
was actually used (``{"codec", "level"}``; for auto also ``block_bytes`` and
``levels_used``).  :func:`configured_level` is the level as configured (``"auto"``
when unset) — what a run's identity should contain.

:func:`open_compressor` writes into an already-open binary file object and
never closes it: closing the returned stream finishes the compressed stream
and flushes ``raw``, nothing more.  With ``threads > 1`` the gzip writers call
``raw.write`` from a background thread (one at a time, in order).
"""

from __future__ import annotations

# Note on imports: isal, zlib_ng and zstandard are imported where used (marked "lazy"), so a
# run pays the memory of only the codec it uses (docs/performance.md, the memory budget).
import contextlib
import io
import os
from typing import IO, Any, BinaryIO, Protocol, cast

from tableship.archive.adaptive import ISAL_MAX_LEVEL, BlockCompressor, Sink

__all__ = [
    "CODECS",
    "DEFAULT_LEVELS",
    "LEVEL_RANGES",
    "open_compressor",
    "open_decompressor",
    "SUFFIXES",
    "check_level",
    "configured_level",
]

CODECS = ("gzip", "zstd", "none")
# The fixed level used where adaptivity does not apply (codec none) and the floor of
# the adaptive ladders (tableship.archive.adaptive.LADDERS).
# gzip 2 (ISA-L) is the fastest level whose archives stay within ~10 % of
# `gzip -6` on CDR-like CSV (bench/bench_render.py --codecs, ~110 MB of CSV):
# archive size vs gzip -6: level 1 +10.0..+11.0 %, level 2 +8.9..+9.9 %,
# level 3 +7.7..+8.4 %, level 4 (zlib-ng) +1.3..+1.8 %; single-thread speed
# level 1 450-500 MB/s, level 2 380-440, level 3 320-340, level 4 ~110,
# level 6 ~70, gzip -6 CLI 24-31.
DEFAULT_LEVELS = {"gzip": 2, "zstd": 3, "none": 0}
LEVEL_RANGES = {"gzip": (1, 9), "zstd": (1, 22), "none": (0, 0)}
#: the file name extension each codec's archives end with (config validation, restore --to)
SUFFIXES = {"gzip": ".gz", "zstd": ".zst", "none": ""}
#: The threaded gzip writers' block: the adaptive writer's gzip block (adaptive.BLOCK_BYTES;
#: tests/unit/test_codecs_blocks.py checks the two give the same bytes at one level).
THREADED_GZIP_BLOCK = 1 << 20


class CompressedWriter(Protocol):
    """What :func:`open_compressor` returns."""

    def write(self, b: bytes | memoryview, /) -> int: ...

    def close(self) -> None: ...

    def record(self) -> dict: ...


def _check_codec(codec: str) -> None:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")


def check_level(codec: str, level: int | None) -> int:
    """Return the effective level for codec (default when None); ValueError if out of range."""
    _check_codec(codec)
    if level is None:
        return DEFAULT_LEVELS[codec]
    if isinstance(level, bool) or not isinstance(level, int):
        raise ValueError(f"{codec} level must be an integer, got {level!r}")
    lo, hi = LEVEL_RANGES[codec]
    if not lo <= level <= hi:
        raise ValueError(f"{codec} level must be between {lo} and {hi}, got {level}")
    return level


def configured_level(level: int | None) -> int | str:
    """The level as configured: the integer, or ``"auto"`` when none is set."""
    return "auto" if level is None else level


class _KeepOpen(io.RawIOBase):
    """Writes everything to raw (looping over short writes); close() only flushes raw."""

    def __init__(self, raw: Sink):
        super().__init__()
        self._raw = raw

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        n = view.nbytes
        done = 0
        while done < n:
            w = self._raw.write(view[done:])
            if w is None:  # file-likes that do not report a count wrote it all
                break
            if w <= 0:
                raise OSError(f"short write to {self._raw!r}")
            done += w
        return n

    def flush(self) -> None:
        flush = getattr(self._raw, "flush", None)
        if flush is not None and not getattr(self._raw, "closed", False):
            flush()

    def close(self) -> None:
        if not self.closed:
            try:
                self.flush()
            finally:
                super().close()


class _Compressor(io.BufferedIOBase):
    """The stream handed to callers: write() plain bytes, close() finishes the stream."""

    def __init__(self, inner, sink: _KeepOpen, codec: str, level: int, threads: int):
        super().__init__()
        self._inner = inner
        self._sink = sink
        self.codec = codec
        self.level = level
        self.threads = threads
        self.bytes_in = 0  # uncompressed bytes accepted
        # The threaded gzip writers compress each write they are handed as its own block (up to
        # their block size): cut the input into exact blocks, so the archive's bytes depend on
        # the input alone, not on how it was written — and equal the adaptive writer's
        # (adaptive.py, the same blocks) when it used this level throughout.
        self._block = THREADED_GZIP_BLOCK if codec == "gzip" and threads > 1 else 0
        self._partial = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.closed:
            raise ValueError("write to a closed compressor")
        n = len(memoryview(b).cast("B")) if not isinstance(b, bytes) else len(b)
        if not n:
            return 0
        self.bytes_in += n
        if not self._block:
            self._inner.write(b)
            return n
        view, bs, off = memoryview(b).cast("B"), self._block, 0
        if self._partial:  # top up the partial block first
            off = min(n, bs - len(self._partial))
            self._partial += view[:off]
            if len(self._partial) < bs:
                return n
            self._inner.write(bytes(self._partial))
            self._partial.clear()
        while n - off >= bs:
            self._inner.write(view[off : off + bs])
            off += bs
        self._partial += view[off:]
        return n

    def flush(self) -> None:
        # Deliberately does not flush the compressor: a sync flush would end a
        # deflate/zstd block and cost ratio.  Data reaches raw as the compressor
        # emits it, and all of it on close().
        if not self.closed and not self._sink.closed:
            self._sink.flush()

    def record(self) -> dict:
        """The manifest's ``compression`` record: the one fixed level used (none: no level)."""
        return {"codec": "none"} if self.codec == "none" else {"codec": self.codec, "level": self.level}

    def close(self) -> None:
        if self.closed:
            return
        with contextlib.ExitStack() as closing:  # last in, first closed; each even if one fails
            closing.callback(super().close)
            closing.callback(self._sink.close)
            if self._partial:
                self._inner.write(bytes(self._partial))
                self._partial.clear()
            if self._inner is not self._sink:
                self._inner.close()


def open_compressor(raw: Sink, codec: str, level: int | None = None, threads: int = 2) -> CompressedWriter:
    """Return a binary stream that compresses into raw; its close() does not close raw.

    ``level=None`` means the adaptive default for gzip and zstd (see the module doc).
    """
    threads = max(1, int(threads or 1))
    if level is None and codec in ("gzip", "zstd"):
        return BlockCompressor(raw, codec, threads)
    level = check_level(codec, level)
    sink = _KeepOpen(raw)
    inner: Any  # the codec's file object (no common base class)
    if codec == "none":
        inner = sink
    elif codec == "gzip":
        if level <= ISAL_MAX_LEVEL:
            if threads > 1:
                from isal import igzip_threaded  # lazy: see the note on imports

                inner = igzip_threaded.open(
                    sink, "wb", compresslevel=level, threads=threads, block_size=THREADED_GZIP_BLOCK
                )
            else:
                from isal import igzip  # lazy: see the note on imports

                inner = igzip.IGzipFile(filename="", mode="wb", compresslevel=level, fileobj=sink, mtime=0)
        else:
            if threads > 1:
                from zlib_ng import gzip_ng_threaded  # lazy: see the note on imports

                inner = gzip_ng_threaded.open(
                    sink, "wb", compresslevel=level, threads=threads, block_size=THREADED_GZIP_BLOCK
                )
            else:
                from zlib_ng import gzip_ng  # lazy: see the note on imports

                inner = gzip_ng.GzipNGFile(filename="", mode="wb", compresslevel=level, fileobj=sink, mtime=0)
    else:  # zstd
        import zstandard  # lazy: see the note on imports

        cctx = zstandard.ZstdCompressor(
            level=level, threads=threads if threads > 1 else 0, write_checksum=True
        )
        # zstandard only calls write() and flush() on it
        inner = cctx.stream_writer(cast(IO[bytes], sink), closefd=False)
    return _Compressor(inner, sink, codec, level, threads)


def _readinto(f: Any, b: Any) -> int:
    """``f.readinto(b)``, or ``f.read`` into ``b`` for file objects without ``readinto``."""
    readinto = getattr(f, "readinto", None)
    if readinto is not None:
        return readinto(b)
    data = f.read(len(b))
    n = len(data)
    memoryview(b).cast("B")[:n] = data
    return n


class _Reader(io.RawIOBase):
    """Raw reader over a decompressing stream; closes the file only if it opened it."""

    def __init__(self, inner, owned_file=None):
        super().__init__()
        self._inner = inner
        self._owned = owned_file

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return _readinto(self._inner, b)

    def close(self) -> None:
        if self.closed:
            return
        with contextlib.ExitStack() as closing:  # last in, first closed; each even if one fails
            closing.callback(super().close)
            if self._owned is not None:
                closing.callback(self._owned.close)
            # IGzipFile and zstd readers never close the file they read from,
            # and a _CallerFile leaves the caller's file open.
            if self._inner is not self._owned:
                closing.callback(self._inner.close)


class _CallerFile(io.RawIOBase):
    """Read-through view of a caller's file object that close() leaves open."""

    def __init__(self, raw):
        super().__init__()
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return _readinto(self._raw, b)

    def read(self, size=-1):
        return self._raw.read(size)


def open_decompressor(raw_or_path, codec: str) -> BinaryIO:
    """Return a buffered binary reader of the decompressed bytes.

    raw_or_path is a path (the file is opened, and closed with the reader) or an
    open binary file object (left open when the reader is closed).
    """
    _check_codec(codec)
    source: Any  # a file, or the caller's file object
    inner: Any  # the codec's reader (no common base class)
    if isinstance(raw_or_path, (str, bytes, os.PathLike)):
        source = open(raw_or_path, "rb")
        owned = source
    else:
        source = _CallerFile(raw_or_path)
        owned = None
    try:
        if codec == "none":
            inner = source
        elif codec == "gzip":
            from isal import igzip  # lazy: see the note on imports

            inner = igzip.IGzipFile(fileobj=source, mode="rb")
        else:
            import zstandard  # lazy: see the note on imports

            inner = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True, closefd=False)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    return io.BufferedReader(_Reader(inner, owned), buffer_size=1 << 20)
