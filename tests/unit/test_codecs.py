"""Tests for tableship.archive.codecs: compressed writers and readers."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import zstandard

try:
    import tableship  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from tests.servers import ensure_command

from tableship.archive.codecs import (
    CODECS,
    DEFAULT_LEVELS,
    LEVEL_RANGES,
    SUFFIXES,
    check_level,
    open_compressor,
    open_decompressor,
)


def _csv_like(size: int, seed: int = 7) -> bytes:
    """Semi-compressible CSV-ish bytes (several MiB spans the 1 MiB blocks of the threaded writers)."""
    rnd = random.Random(seed)
    words = ["alpha", "beta", "Müller", "東京", "x;y", '"q"', "2024-01-01 00:00:02.123456"]
    parts, total = [], 0
    while total < size:
        line = (
            ";".join(
                [str(rnd.randrange(10**12)), rnd.choice(words), f"{rnd.random():.6f}", rnd.choice(words)]
            )
            + "\n"
        )
        b = line.encode()
        parts.append(b)
        total += len(b)
    return b"".join(parts)[:size]


DATA = _csv_like(3 * 1024 * 1024 + 12345)


class Counting(io.RawIOBase):
    """What another module would wrap around the output file: counts and hashes bytes."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.count = 0
        self.sha = hashlib.sha256()

    def writable(self):
        return True

    def write(self, b):
        b = bytes(b)
        self.count += len(b)
        self.sha.update(b)
        return self.inner.write(b)

    def flush(self):
        self.inner.flush()


class ShortWrites(io.RawIOBase):
    """A raw file that accepts at most 1000 bytes per write call."""

    def __init__(self):
        super().__init__()
        self.buf = bytearray()

    def writable(self):
        return True

    def write(self, b):
        chunk = bytes(memoryview(b)[:1000])
        self.buf += chunk
        return len(chunk)


def _levels():
    out = []
    for codec in CODECS:
        lo, hi = LEVEL_RANGES[codec]
        levels = {lo, hi, DEFAULT_LEVELS[codec]}
        if codec == "gzip":
            levels |= {3, 4}  # last ISA-L level, first zlib-ng level
        for level in sorted(levels):
            out.append((codec, level))
    return out


def _compress(data: bytes, codec: str, level=None, threads: int = 1) -> bytes:
    raw = io.BytesIO()
    out = open_compressor(raw, codec, level, threads)
    view = memoryview(data)
    for i in range(0, len(data), 256 * 1024 + 7):
        out.write(view[i : i + 256 * 1024 + 7])
    out.close()
    assert not raw.closed
    return raw.getvalue()


# --------------------------------------------------------------------------


def test_constants():
    assert CODECS == ("gzip", "zstd", "none")
    assert LEVEL_RANGES == {"gzip": (1, 9), "zstd": (1, 22), "none": (0, 0)}
    for codec in CODECS:
        lo, hi = LEVEL_RANGES[codec]
        assert lo <= DEFAULT_LEVELS[codec] <= hi
    assert [SUFFIXES[c] for c in CODECS] == [".gz", ".zst", ""]


@pytest.mark.parametrize("codec,level", _levels())
@pytest.mark.parametrize("threads", [1, 2])
def test_round_trip(codec, level, threads):
    blob = _compress(DATA, codec, level, threads)
    if codec == "none":
        assert blob == DATA
    else:
        assert len(blob) < len(DATA)
    with open_decompressor(io.BytesIO(blob), codec) as r:
        assert r.read() == DATA


@pytest.mark.parametrize("codec", CODECS)
def test_empty_stream(codec):
    blob = _compress(b"", codec)
    with open_decompressor(io.BytesIO(blob), codec) as r:
        assert r.read() == b""
    if codec == "gzip":
        assert gzip.decompress(blob) == b""


@pytest.mark.parametrize("codec", CODECS)
def test_bad_levels_and_codecs(codec):
    lo, hi = LEVEL_RANGES[codec]
    for bad in (lo - 1, hi + 1, 2.5, True, "3"):
        with pytest.raises(ValueError):
            open_compressor(io.BytesIO(), codec, bad)  # type: ignore[arg-type]
    assert check_level(codec, None) == DEFAULT_LEVELS[codec]
    assert check_level(codec, hi) == hi


def test_unknown_codec():
    for f in (
        lambda: open_compressor(io.BytesIO(), "bzip2"),
        lambda: open_decompressor(io.BytesIO(), "xz"),
    ):
        with pytest.raises(ValueError):
            f()


@pytest.mark.parametrize("level", [1, 2, 3, 4, 6, 9])
@pytest.mark.parametrize("threads", [1, 2])
def test_gzip_is_one_standard_member(level, threads):
    blob = _compress(DATA, "gzip", level, threads)
    assert blob[:3] == b"\x1f\x8b\x08"
    # a reader that stops after the first member still gets everything
    d = zlib.decompressobj(wbits=31)
    assert d.decompress(blob) == DATA
    assert d.eof and d.unused_data == b""
    assert gzip.decompress(blob) == DATA


def test_gzip_is_deterministic():
    for threads in (1, 2):
        assert _compress(DATA, "gzip", 2, threads) == _compress(DATA, "gzip", 2, threads)
    assert _compress(DATA, "gzip", 6, 1) == _compress(DATA, "gzip", 6, 1)


@pytest.mark.parametrize("level,threads", [(None, 1), (None, 2), (1, 1), (3, 2), (4, 2), (6, 1), (9, 1)])
def test_gzip_cli_reads_our_gzip(tmp_path, level, threads):
    ensure_command("gzip", "gzip")
    path = tmp_path / "x.csv.gz"
    with open(path, "wb") as f:
        out = open_compressor(f, "gzip", level, threads)
        out.write(DATA)
        out.close()
        assert not f.closed
    p = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True)
    assert p.stdout == DATA
    subprocess.run(["gzip", "-t", str(path)], check=True)


@pytest.mark.parametrize("threads", [1, 2])
def test_zstd_cli_reads_our_zstd(tmp_path, threads):
    ensure_command("zstd", "zstd")
    path = tmp_path / "x.csv.zst"
    with open(path, "wb") as f:
        out = open_compressor(f, "zstd", None, threads)
        out.write(DATA)
        out.close()
    p = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True)
    assert p.stdout == DATA


@pytest.mark.parametrize("codec,level", _levels())
@pytest.mark.parametrize("threads", [1, 2])
def test_raw_is_not_closed_and_counted(tmp_path, codec, level, threads):
    path = tmp_path / f"out{SUFFIXES[codec]}"
    with open(path, "wb") as f:
        counting = Counting(f)
        with open_compressor(counting, codec, level, threads) as out:
            out.write(DATA[:1_500_000])
            out.write(bytearray(DATA[1_500_000:2_000_000]))
            out.write(memoryview(DATA)[2_000_000:])
            assert out.bytes_in == len(DATA)
        assert out.closed
        assert not counting.closed and not f.closed
        out.close()  # closing twice is harmless
        f.write(b"")  # still usable
    blob = path.read_bytes()
    assert counting.count == len(blob)
    assert counting.sha.hexdigest() == hashlib.sha256(blob).hexdigest()
    with open_decompressor(path, codec) as r:
        assert r.read() == DATA


@pytest.mark.parametrize("codec,threads", [("gzip", 1), ("gzip", 2), ("zstd", 2), ("none", 1)])
def test_short_writes_are_completed(codec, threads):
    raw = ShortWrites()
    out = open_compressor(raw, codec, None, threads)
    out.write(DATA)
    out.close()
    with open_decompressor(io.BytesIO(bytes(raw.buf)), codec) as r:
        assert r.read() == DATA


class Failing(io.RawIOBase):
    def __init__(self, after: int):
        super().__init__()
        self.after = after
        self.n = 0

    def writable(self):
        return True

    def write(self, b):
        self.n += len(b)
        if self.n > self.after:
            raise OSError("disk full")
        return len(b)


@pytest.mark.parametrize(
    "codec,level,threads", [("gzip", 2, 1), ("gzip", 2, 2), ("gzip", 6, 2), ("zstd", 3, 2), ("none", 0, 1)]
)
def test_write_errors_surface(codec, level, threads):
    raw = Failing(after=100_000)
    with pytest.raises(OSError, match="disk full"):
        out = open_compressor(raw, codec, level, threads)
        try:
            for _ in range(4):
                out.write(DATA)
        finally:
            out.close()


def test_flush_does_not_finish_or_close():
    raw = io.BytesIO()
    out = open_compressor(raw, "gzip", 2, 1)
    out.write(DATA[:1000])
    out.flush()
    out.write(DATA[1000:])
    out.close()
    assert gzip.decompress(raw.getvalue()) == DATA


@pytest.mark.parametrize("codec", CODECS)
def test_decompressor_from_file_object_leaves_it_open(codec):
    blob = _compress(DATA, codec)
    raw = io.BytesIO(blob)
    r = open_decompressor(raw, codec)
    first = r.readline()
    assert first == DATA.split(b"\n", 1)[0] + b"\n"
    assert first + r.read() == DATA
    r.close()
    assert not raw.closed


@pytest.mark.parametrize("codec", CODECS)
def test_decompressor_from_path_closes_its_file(tmp_path, codec):
    path = tmp_path / "x"
    path.write_bytes(_compress(DATA, codec))
    r = open_decompressor(str(path), codec)
    lines = sum(1 for _ in r)
    assert lines == DATA.count(b"\n") + (0 if DATA.endswith(b"\n") else 1)
    r.close()
    assert r.closed


def test_gzip_reader_reads_all_members():
    blob = gzip.compress(b"one\n") + gzip.compress(b"two\n")
    with open_decompressor(io.BytesIO(blob), "gzip") as r:
        assert r.read() == b"one\ntwo\n"


def test_gzip_reader_rejects_truncated():
    blob = _compress(DATA, "gzip")
    with pytest.raises(EOFError):
        with open_decompressor(io.BytesIO(blob[:-100]), "gzip") as r:
            r.read()


def test_zstd_has_checksum_and_rejects_corruption():
    blob = bytearray(_compress(DATA, "zstd"))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(zstandard.ZstdError):
        with open_decompressor(io.BytesIO(bytes(blob)), "zstd") as r:
            r.read()
