"""Adaptive-level block compression: the strongest effort that keeps up with the source.

The CSV bytes are cut into fixed-size blocks (``BLOCK_BYTES[codec]``). Each block is
compressed on a small thread pool (ISA-L, zlib-ng and zstandard release the GIL) at a
level chosen when it is handed over, by :class:`LevelController`, from what the run
measures (see there). The caller's thread writes the compressed blocks, in order, to
the sink — so hashing and counting stay single-threaded.

Output:

* ``gzip``: ONE standard gzip member (RFC 1952). Each block is a run of raw deflate
  blocks ending on a byte boundary (a sync flush), primed with the previous block's
  last 32 KiB, as pigz does; a final empty block, then the CRC-32 and length of the
  whole input. Levels 1–3 are ISA-L's, 4–9 zlib-ng's: deflate blocks from either are
  the same format, so they mix freely in one stream.
* ``zstd``: one standard zstd frame per block (with content size and checksum);
  concatenated frames are one valid ``.zst`` (``zstd -d`` and every reader in
  docs/format.md read them).

:attr:`BlockCompressor.levels_used` counts blocks per level; the manifest records it
with ``block_bytes``, so the record can be checked against the bytes by compressing
each block again (``tests/integration/test_adaptive_readers.py`` does).
"""

from __future__ import annotations

# Note on imports: isal, zlib_ng and zstandard are imported where used (marked "lazy"), so a
# run pays the memory of only the codec it uses (docs/performance.md, the memory budget).
import collections
import io
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

__all__ = [
    "BLOCK_BYTES",
    "COST",
    "LADDERS",
    "BlockCompressor",
    "LevelController",
    "compress_block",
    "cpu_wait_probe",
    "machine_idle_probe",
]

# 1 MiB gzip blocks: a level decision per ~3 ms of ISA-L work, and priming with the
# previous 32 KiB keeps the ratio within ~0.1 % of one unbroken stream. zstd frames do
# not share a window, so larger blocks keep its ratio (and fewer frame headers).
BLOCK_BYTES = {"gzip": 1 << 20, "zstd": 4 << 20}
# The levels the controller moves between, cheapest first. The floor is the fixed
# default's level (2 / 3): when the compressor cannot keep up, auto costs what the old
# default did. gzip stops at 6: zlib-ng 7–9 cost 2–4× the CPU of 6 for < 1 % smaller
# archives; zstd stops at 9, whose context (~20 MiB per thread) still fits the memory
# budget in docs/performance.md.
# Blocks handed over and not yet written are bounded by bytes (at least threads + 1
# blocks): with 1 MiB gzip blocks, 6 in flight absorb a 20,000-row fetch (~2.6 MB of
# CSV) without making the reader wait, for ~8 MiB of memory.
IN_FLIGHT_BYTES = 6 << 20
LADDERS = {"gzip": (2, 3, 4, 5, 6), "zstd": (3, 5, 7, 9)}
_WINDOW = 32 * 1024
#: gzip levels up to this one are ISA-L's (faster), the higher ones zlib-ng's
ISAL_MAX_LEVEL = 3
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown
_DEFLATE_END = b"\x03\x00"  # an empty final fixed-Huffman block


class Sink(Protocol):
    """Where compressed bytes go: any binary file-like with ``write`` (``flush`` is used if present)."""

    def write(self, b: bytes | memoryview, /) -> int | None: ...


_local = threading.local()
log = logging.getLogger(__name__)


def _thread_cache(codec: str) -> dict:
    """This thread's compressors of ``codec`` by level."""
    cache = getattr(_local, codec, None)
    if cache is None:
        cache = {}
        setattr(_local, codec, cache)
    return cache


def _gzip_compressor(level: int):
    """A per-thread, per-level deflate compressor: (data, zdict) → (raw deflate, crc32)."""
    cache = _thread_cache("gzip")
    comp = cache.get(level)
    if comp is None:
        cache.clear()  # one compressor (state + 1.1 MiB buffer) per thread: the level changes rarely
        lib: Any  # isal_zlib or zlib_ng: the same zlib-like API
        if level <= ISAL_MAX_LEVEL:
            from isal import isal_zlib  # lazy: see the note on imports

            lib = isal_zlib
        else:
            from zlib_ng import zlib_ng  # lazy: see the note on imports

            lib = zlib_ng
        bufsize = BLOCK_BYTES["gzip"] + BLOCK_BYTES["gzip"] // 10 + 500
        if _private_api_ok(lib):
            # The C helper behind isal.igzip_threaded / zlib_ng.gzip_ng_threaded: one
            # call compresses with a dictionary, sync-flushes and computes the CRC
            # without holding the GIL.
            comp = lib._ParallelCompress(buffersize=bufsize, level=level).compress_and_crc
        else:
            comp = _public_api_compressor(lib, level)
        cache[level] = comp
    return comp


def private_api_problems(lib) -> list[str]:
    """What is wrong with ``lib._ParallelCompress`` (isal_zlib / zlib_ng), the libraries'
    private helper used above: missing, another signature, or output that is not a primed,
    sync-flushed raw deflate of the block with its CRC-32. Empty: usable.
    ``tests/unit/test_compressor_canary.py`` fails on any, naming the installed versions."""
    helper = getattr(lib, "_ParallelCompress", None)
    if helper is None:
        return [f"{lib.__name__}._ParallelCompress is missing"]
    zdict = b"tableship canary dictionary " * 64
    data = zdict[-500:] + b"block data " * 200
    try:
        out = helper(buffersize=64 * 1024, level=1).compress_and_crc(data, memoryview(zdict))
    except Exception as exc:  # another signature or behaviour
        return [
            f"{lib.__name__}._ParallelCompress(buffersize=, level=).compress_and_crc(data, zdict): {exc!r}"
        ]
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], int)):
        return [
            f"{lib.__name__}._ParallelCompress.compress_and_crc returned {type(out).__name__}, "
            "not (bytes, crc)"
        ]
    raw, crc = out
    problems = []
    try:
        d = zlib.decompressobj(-15, zdict=zdict)
        if d.decompress(bytes(raw)) != data:
            problems.append(f"{lib.__name__}._ParallelCompress output does not inflate to the block")
    except zlib.error as exc:
        problems.append(
            f"{lib.__name__}._ParallelCompress output is not raw deflate primed with zdict: {exc}"
        )
    if not bytes(raw).endswith(b"\x00\x00\xff\xff"):
        problems.append(f"{lib.__name__}._ParallelCompress output does not end on a sync flush")
    if crc != zlib.crc32(data):
        problems.append(f"{lib.__name__}._ParallelCompress CRC is not the block's CRC-32")
    return problems


_PRIVATE_OK: dict[str, bool] = {}


def _private_api_ok(lib) -> bool:
    """``private_api_problems`` once per library and process (a changed helper is logged and
    the public API used instead: same bytes, a little slower)."""
    ok = _PRIVATE_OK.get(lib.__name__)
    if ok is None:
        problems = private_api_problems(lib)
        if problems:
            log.warning("%s; using the public zlib-style API instead", "; ".join(problems))
        ok = _PRIVATE_OK[lib.__name__] = not problems
    return ok


def _public_api_compressor(lib, level: int):
    """The same deflate runs through the libraries' public zlib-style API (used if the
    helper above ever disappears): primed, sync-flushed, CRC computed separately."""

    def comp(data, zdict):
        c = (
            lib.compressobj(level, lib.DEFLATED, -15, zdict=bytes(zdict))
            if len(zdict)
            else lib.compressobj(level, lib.DEFLATED, -15)
        )
        return c.compress(data) + c.flush(lib.Z_SYNC_FLUSH), lib.crc32(data)

    return comp


def _zstd_compressor(level: int):
    cache = _thread_cache("zstd")
    cctx = cache.get(level)
    if cctx is None:
        import zstandard  # lazy: see the note on imports

        cache.clear()
        cctx = cache[level] = zstandard.ZstdCompressor(
            level=level, write_checksum=True, write_content_size=True
        )
    return cctx


def compress_block(codec: str, level: int, data: bytes, zdict: bytes | memoryview = b"") -> tuple[bytes, int]:
    """Compress one block as the writer does: (bytes, crc32 — 0 for zstd)."""
    if codec == "gzip":
        return _gzip_compressor(level)(data, zdict)
    return _zstd_compressor(level).compress(data), 0


def cpu_wait_probe(reader_tid: int | None = None) -> Callable[[], tuple[float, float]] | None:
    """A probe of this process's threads: (seconds all threads were on a CPU or waiting
    for one, the same for the reader thread ``reader_tid`` alone).

    Linux ``/proc/self/task/*/schedstat``; None where it does not exist (then only
    the reader's waits steer the level).
    """
    base = "/proc/self/task"
    if not os.path.isdir(base):
        return None
    reader = str(reader_tid if reader_tid is not None else threading.get_native_id())

    def probe() -> tuple[float, float]:
        total = mine = 0
        try:
            tids = os.listdir(base)
        except OSError:
            return 0.0, 0.0
        for tid in tids:
            try:
                with open(f"{base}/{tid}/schedstat", "rb") as f:
                    fields = f.read().split()
                busy = int(fields[0]) + int(fields[1])
            except (OSError, IndexError, ValueError):
                continue  # the thread ended meanwhile
            total += busy
            if tid == reader:
                mine = busy
        return total / 1e9, mine / 1e9

    try:
        with open(f"{base}/{reader}/schedstat", "rb") as f:
            if len(f.read().split()) < 2:
                return None
    except OSError:
        return None
    return probe


def machine_idle_probe() -> Callable[[], float] | None:
    """A probe of the whole machine: CPU-seconds all CPUs were idle (``idle`` + ``iowait``
    of ``/proc/stat``'s ``cpu`` line) so far. None where that file does not exist.

    What the process itself measures misses a source server on the same host (a test
    HiveServer2, a database next to the backup job): its work competes for the same CPUs,
    and a higher level then slows the source down. Idle CPUs are what compression can
    take for free.
    """
    try:
        tick = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat", "rb") as f:
            if not f.readline().startswith(b"cpu "):
                return None
    except (OSError, ValueError, AttributeError):
        return None

    def probe() -> float:
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()
            return (int(fields[4]) + int(fields[5])) / tick
        except (OSError, IndexError, ValueError):
            return 0.0

    return probe


#: Relative CPU cost per byte of each level (single-thread speeds measured on CDR-like CSV,
#: docs/performance.md): the extra CPU a step up would take is estimated from these.
COST = {
    "gzip": {1: 1 / 282, 2: 1 / 280, 3: 1 / 206, 4: 1 / 75, 5: 1 / 71, 6: 1 / 51},
    "zstd": {3: 1 / 199, 5: 1 / 120, 7: 1 / 80, 9: 1 / 55},
}


class LevelController:
    """Chooses each block's level from how far the compressor is behind the reader.

    Evaluated once per ``interval`` seconds, when a block is handed over:

    * reader wait — the share of the interval the reader spent waiting for a free slot
      in the pool (``IN_FLIGHT_BYTES`` in flight). Above ``max_wait`` the compressor
      is behind: one rung down. Short waits are tolerated: the sources fetch one batch
      ahead, so a wait shorter than a fetch costs nothing.
    * reader busy — the share of the interval the reader thread was on a CPU or waiting
      for one (Linux schedstat). A reader that is busy most of the time is CPU-bound
      (DuckDB scanning and the renderer run in it): a higher level would only compete
      with it. A reader that mostly sleeps is waiting for the source (a remote
      HiveServer2, PostgreSQL): compression has slack.
    * CPU demand — the same for all of this process's threads, on average: above
      ``busy`` × CPUs the process is CPU-bound as a whole (e.g. DuckDB scan threads):
      one rung down.

    * machine idle — (with ``machine``, see :func:`machine_idle_probe`) the CPUs the whole
      machine left idle during the interval. Below half of ``reserve`` CPUs something else
      (e.g. the source's server on this host) wants every CPU: one rung down.

    One rung up when the reader was busy less than ``reader_idle`` of the interval,
    demand is below ``idle`` × CPUs, the reader waited less than half of ``max_wait``,
    no block is queued behind the ones being compressed, and — with ``machine`` — the
    idle CPUs cover what the next rung would add to the compression threads' CPU (from
    ``cost``) plus ``reserve``. Starts on the floor: a run that is CPU-bound from its first
    byte never pays for a probe upward. ``clock``, ``probe``, ``machine`` and ``cpus`` are
    injectable for tests.
    """

    def __init__(
        self,
        ladder: tuple[int, ...],
        threads: int,
        *,
        interval: float = 0.1,
        busy: float = 0.9,
        idle: float = 0.7,
        reader_idle: float = 0.6,
        max_wait: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[], tuple[float, float]] | None = None,
        cpus: int | None = None,
        machine: Callable[[], float] | None = None,
        reserve: float = 0.25,
        cost: dict[int, float] | None = None,
    ):
        self.ladder = ladder
        self.threads = threads
        self.interval = interval
        self.cpus = cpus or _usable_cpus()
        self.busy = busy * self.cpus
        self.idle = idle * self.cpus
        self.reader_idle = reader_idle
        self.max_wait = max_wait
        self._clock = clock
        self._probe = probe
        self._i = 0
        self._t0 = clock()
        self._p0 = probe() if probe else (0.0, 0.0)
        self._waited = 0.0
        self._machine = machine
        self._m0 = machine() if machine else 0.0
        self.reserve = reserve
        self.cost = cost or COST["gzip"]
        self.demand: list[tuple[float, float]] = []  # (process, reader) per interval, for the log and tests
        self.idle_cpus: list[float] = []  # the machine's idle CPUs per interval (with ``machine``)

    @property
    def level(self) -> int:
        return self.ladder[self._i]

    def choose(self, backlog: int, waited: float = 0.0) -> int:
        """The level for the next block. backlog: blocks in flight; waited: seconds the
        reader just waited for the pool before handing this block over."""
        self._waited += waited
        now = self._clock()
        span = now - self._t0
        if span < self.interval:
            return self.level
        if self._probe is None:
            demand = reader = 0.0  # no CPU signal: the reader's wait alone decides
        else:
            p = self._probe()
            # (max: a thread that ended drops out of the sum)
            demand = max(0.0, p[0] - self._p0[0]) / span
            reader = max(0.0, p[1] - self._p0[1]) / span
            self._p0 = p
            self.demand.append((round(demand, 2), round(reader, 2)))
        free = headroom = None
        if self._machine is not None:
            m = self._machine()
            free = max(0.0, m - self._m0) / span
            self._m0 = m
            self.idle_cpus.append(round(free, 2))
            if self._i + 1 < len(self.ladder):
                # the compression threads' CPU (all threads but the reader) times the next
                # rung's extra cost per byte, plus the reserve
                here, up = self.ladder[self._i], self.ladder[self._i + 1]
                extra = self.cost.get(up, 2.0) / self.cost.get(here, 1.0) - 1
                headroom = max(0.0, demand - reader) * max(0.0, extra) + self.reserve
        wait_share = self._waited / span
        self._t0, self._waited = now, 0.0
        starved = free is not None and free < self.reserve / 2
        if wait_share > self.max_wait or demand > self.busy or starved:
            self._i = max(0, self._i - 1)
        elif (
            reader < self.reader_idle
            and demand < self.idle
            and wait_share < self.max_wait / 2
            and backlog < self.threads
            and (free is None or headroom is None or free >= headroom)
        ):
            self._i = min(len(self.ladder) - 1, self._i + 1)
        return self.level


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class BlockCompressor(io.BufferedIOBase):
    """write() CSV bytes; close() finishes the stream. Never closes ``sink``.

    At most ``IN_FLIGHT_BYTES`` (and at least ``threads + 1`` blocks) are in flight
    (handed over and not yet written), so memory stays flat whatever the table size.
    """

    def __init__(
        self,
        sink: Sink,
        codec: str,
        threads: int = 2,
        *,
        controller: LevelController | None = None,
        block_bytes: int | None = None,
    ):
        super().__init__()
        if codec not in LADDERS:
            raise ValueError(f"no adaptive level for codec {codec!r}")
        self.codec = codec
        self.level = "auto"
        self.threads = max(1, int(threads or 1))
        self.block_bytes = block_bytes or BLOCK_BYTES[codec]
        if codec == "gzip" and not 0 < self.block_bytes <= BLOCK_BYTES["gzip"]:
            raise ValueError(f"gzip blocks are at most {BLOCK_BYTES['gzip']} bytes (the compressors' buffer)")
        self.controller = controller or LevelController(
            LADDERS[codec],
            self.threads,
            probe=cpu_wait_probe(),
            machine=machine_idle_probe(),
            cost=COST[codec],
        )  # the caller's thread is the reader
        self.levels_used: collections.Counter[int] = collections.Counter()
        self.bytes_in = 0
        self._sink = sink
        self._buf = bytearray()
        self._prev = b""
        self._crc = 0
        self._pending: collections.deque[tuple[Future, int]] = collections.deque()  # (future, block length)
        self._max_pending = max(self.threads + 1, IN_FLIGHT_BYTES // self.block_bytes)
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="tableship-compress")
        if codec == "gzip":
            self._write_out(_GZIP_HEADER)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.closed:
            raise ValueError("write to a closed compressor")
        view = memoryview(b).cast("B")
        n = view.nbytes
        if not n:
            return 0
        self.bytes_in += n
        bs = self.block_bytes
        off = 0
        if self._buf:  # top up the partial block first
            off = min(n, bs - len(self._buf))
            self._buf += view[:off]
            if len(self._buf) < bs:
                return n
            self._submit(bytes(self._buf))
            self._buf.clear()
        # whole blocks straight from the caller's buffer: one copy each, no staging
        while n - off >= bs:
            self._submit(bytes(view[off : off + bs]))
            off += bs
        self._buf += view[off:]
        return n

    def _submit(self, block: bytes) -> None:
        self._collect_done()
        waited = 0.0
        if len(self._pending) >= self._max_pending:
            t0 = time.monotonic()
            self._write_next()
            waited = time.monotonic() - t0
        level = self.controller.choose(len(self._pending), waited)
        self.levels_used[level] += 1
        zdict = memoryview(self._prev)[-_WINDOW:] if self.codec == "gzip" else b""
        self._prev = block
        self._pending.append((self._pool.submit(compress_block, self.codec, level, block, zdict), len(block)))

    def _collect_done(self) -> None:
        while self._pending and self._pending[0][0].done():
            self._write_next()

    def _write_next(self) -> None:
        fut, length = self._pending.popleft()
        data, crc = fut.result()
        if self.codec == "gzip":  # the CRC of the whole input, block by block in order
            from isal import isal_zlib  # lazy: see the note on imports

            self._crc = isal_zlib.crc32_combine(self._crc, crc, length)
        self._write_out(data)

    def _write_out(self, data) -> None:
        view = memoryview(data).cast("B")
        done = 0
        while done < view.nbytes:
            w = self._sink.write(view[done:])
            if w is None:
                break
            if w <= 0:
                raise OSError(f"short write to {self._sink!r}")
            done += w

    def flush(self) -> None:
        # No compressor flush here (it would end a block early and cost ratio).
        if not self.closed:
            flush = getattr(self._sink, "flush", None)
            if flush is not None and not getattr(self._sink, "closed", False):
                flush()

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._buf or (self.codec == "zstd" and not self.levels_used):
                # the tail block (a zstd archive always holds at least one frame)
                tail = bytes(self._buf)
                self._buf.clear()
                self._submit(tail)
            while self._pending:
                self._write_next()
            c = self.controller
            log.debug(
                "adaptive %s: blocks per level %s; CPU demand per interval (of %d CPUs): %s; "
                "machine idle CPUs: %s",
                self.codec,
                dict(sorted(self.levels_used.items())),
                getattr(c, "cpus", 0),
                getattr(c, "demand", [])[:200],
                getattr(c, "idle_cpus", [])[:200],
            )
            if self.codec == "gzip":
                self._write_out(_DEFLATE_END + struct.pack("<II", self._crc, self.bytes_in & 0xFFFFFFFF))
            self.flush()
        finally:
            for fut, _ in self._pending:
                fut.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True)
            super().close()

    def record(self) -> dict:
        """The manifest's ``compression`` record for this stream."""
        return {
            "codec": self.codec,
            "level": "auto",
            "block_bytes": self.block_bytes,
            "levels_used": {str(k): v for k, v in sorted(self.levels_used.items())},
        }
