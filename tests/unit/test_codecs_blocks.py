"""Fixed gzip levels on threads cut the input into exact blocks: the archive's bytes depend on the
input alone (not on the write sizes), and equal the adaptive writer's at that level."""

from __future__ import annotations

import gzip
import io
import random
import threading

import pytest

from tableship.archive import adaptive
from tableship.archive.codecs import THREADED_GZIP_BLOCK, open_compressor


class Always:
    """A controller that keeps one level."""

    def __init__(self, level: int):
        self.level = level

    def choose(self, backlog: int, waited: float = 0.0) -> int:
        return self.level


def csv_like(n: int) -> bytes:
    rnd = random.Random(7)
    rows = [
        f"{i};{rnd.randint(0, 10**6)};cell-{rnd.choice('abcdef') * rnd.randint(1, 9)}\n" for i in range(n)
    ]
    return "".join(rows).encode()


def written(data: bytes, make, sizes) -> bytes:
    buf = io.BytesIO()
    out = make(buf)
    off, i = 0, 0
    while off < len(data):
        step = sizes[i % len(sizes)]
        out.write(data[off : off + step])
        off += step
        i += 1
    out.close()
    return buf.getvalue()


@pytest.mark.parametrize("level", [2, 6])
def test_fixed_level_bytes_do_not_depend_on_write_sizes_and_equal_the_adaptive_writers(level):
    assert THREADED_GZIP_BLOCK == adaptive.BLOCK_BYTES["gzip"]
    data = csv_like(120_000)  # ~3.5 MB: several blocks and a partial tail
    fixed = lambda buf: open_compressor(buf, "gzip", level, threads=2)  # noqa: E731
    a = written(data, fixed, [2_000_003])
    b = written(data, fixed, [300_001, 77, 1 << 20, 5])
    auto = written(
        data, lambda buf: adaptive.BlockCompressor(buf, "gzip", 2, controller=Always(level)), [65_537]
    )
    assert gzip.decompress(a) == data == gzip.decompress(auto)
    assert a == b
    # the same deflate stream and trailer; the 10-byte headers differ only in bytes 8-9 (the
    # threaded writers put OS 255 where RFC 1952 has XFL, and XFL 0 where it has OS)
    assert len(a) == len(auto) and a[10:] == auto[10:]
    assert a[:8] == auto[:8]


def test_blocks_in_flight_are_bounded_by_in_flight_bytes(monkeypatch):
    """The adaptive writer hands at most IN_FLIGHT_BYTES of blocks to its pool: with the
    compression held back, the writer waits for the oldest block instead of queueing more
    (the memory budget in docs/performance.md counts on it)."""
    block = adaptive.BLOCK_BYTES["gzip"]
    limit = adaptive.IN_FLIGHT_BYTES // block
    release = threading.Event()
    real = adaptive.compress_block

    def held(*args):
        assert release.wait(60), "the writer never filled its pool"
        return real(*args)

    monkeypatch.setattr(adaptive, "compress_block", held)
    backlogs: list[int] = []

    class Recording(Always):
        def choose(self, backlog: int, waited: float = 0.0) -> int:
            backlogs.append(backlog)
            if backlog >= limit - 1:
                release.set()  # the pool is full: let compression go on
            return self.level

    data = csv_like(700_000)  # ~20 MB: 3x the bound
    out = written(
        data, lambda buf: adaptive.BlockCompressor(buf, "gzip", 2, controller=Recording(2)), [block]
    )
    assert gzip.decompress(out) == data
    assert len(backlogs) > 2 * limit
    assert max(backlogs) == limit - 1  # blocks already in flight when one more is handed over
    assert limit * block <= adaptive.IN_FLIGHT_BYTES
