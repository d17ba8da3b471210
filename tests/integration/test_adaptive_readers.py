"""The adaptive default's output (many blocks, mixed levels) is read by every reader
named in docs/format.md, and its ``compression`` record matches the bytes.

Archives are written by the real :class:`tableship.archive.adaptive.BlockCompressor` with a
controller that walks the ladder (so one file mixes ISA-L and zlib-ng blocks, or zstd
frames of several levels) and small blocks (so small files have many). Readers: the
``gzip``/``zcat``/``zstd`` CLIs, Python's ``gzip``, ``pyarrow.csv.read_csv``, DuckDB's
``read_csv`` and Spark's CSV reader (the HiveServer2 fixture's Spark).
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from tests.adaptive_check import check_record

from tableship.archive.adaptive import LADDERS, BlockCompressor, LevelController

ROWS = 40_000
HEADER = b"id;name;amount;day\n"
NAMES = ["alpha", "semi;colon", 'say "hi"', "Zoë Müller", "", "東京"]


def _csv() -> bytes:
    out = [HEADER]
    for i in range(ROWS):
        name = NAMES[i % len(NAMES)]
        if ";" in name or '"' in name or name == "":
            name = '"' + name.replace('"', '""') + '"'
        out.append(f"{i};{name};{(i * 7919) % 100000 / 100:.2f};2024-01-{i % 28 + 1:02d}\n".encode())
    return b"".join(out)


CSV = _csv()
ID_SUM = ROWS * (ROWS - 1) // 2


class Walk(LevelController):
    """Every rung of the ladder in turn: a file that mixes all the levels auto can use."""

    def __init__(self, ladder, threads):
        super().__init__(ladder, threads)
        self.n = 0

    def choose(self, backlog, waited=0.0):
        self.n += 1
        return self.ladder[(self.n - 1) % len(self.ladder)]


def _write(path: Path, codec: str, threads: int = 2) -> dict:
    with open(path, "wb") as f:
        out = BlockCompressor(
            f, codec, threads, controller=Walk(LADDERS[codec], threads), block_bytes=64 * 1024
        )
        view = memoryview(CSV)
        for i in range(0, len(CSV), 100_003):
            out.write(view[i : i + 100_003])
        out.close()
    return out.record()


@pytest.fixture(scope="module", params=["gzip", "zstd"])
def archive(request, tmp_path_factory) -> tuple[str, Path, dict]:
    codec = request.param
    path = tmp_path_factory.mktemp("adaptive") / ("mixed.csv.gz" if codec == "gzip" else "mixed.csv.zst")
    record = _write(path, codec)
    return codec, path, record


def test_record_matches_the_bytes(archive):
    codec, path, record = archive
    assert record["codec"] == codec and record["level"] == "auto"
    assert set(record["levels_used"]) == {str(level) for level in LADDERS[codec]}  # really mixed
    assert sum(record["levels_used"].values()) == -(-len(CSV) // record["block_bytes"])
    assert check_record(path.read_bytes(), CSV, record) == record["levels_used"]
    wrong = dict(record, levels_used={"2": sum(record["levels_used"].values())})
    with pytest.raises(AssertionError, match="do not match the record"):
        check_record(path.read_bytes(), CSV, wrong)


def test_gzip_is_one_member(archive):
    codec, path, _ = archive
    if codec != "gzip":
        return
    d = zlib.decompressobj(wbits=31)  # a reader that stops after the first member still gets it all
    assert d.decompress(path.read_bytes()) == CSV and d.eof and d.unused_data == b""


@pytest.mark.parametrize("tool", ["gzip -dc", "zcat", "zstd -dc"])
def test_cli(archive, tool):
    codec, path, _ = archive
    if (tool == "zstd -dc") != (codec == "zstd"):
        return
    argv = tool.split()
    assert shutil.which(argv[0]), f"{argv[0]} is not installed"
    assert subprocess.run([*argv, str(path)], capture_output=True, check=True).stdout == CSV


def test_python_gzip_and_zstandard(archive):
    codec, path, _ = archive
    if codec == "gzip":
        with gzip.open(path, "rb") as f:
            assert f.read() == CSV
    else:
        import zstandard

        with zstandard.open(path, "rb") as f:  # reads across frames
            assert f.read() == CSV


def test_pyarrow_read_csv(archive):
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    _, path, _ = archive
    t = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=";"))
    assert t.num_rows == ROWS
    assert pc.sum(t["id"]).as_py() == ID_SUM
    assert t["name"][2].as_py() == 'say "hi"'


def test_duckdb_read_csv(archive):
    import duckdb

    _, path, _ = archive
    con = duckdb.connect()
    n, s, semi = con.execute(
        "SELECT count(*), sum(id), count(*) FILTER (WHERE name = 'semi;colon') "
        "FROM read_csv(?, delim=';', header=true, quote='\"')",
        [str(path)],
    ).fetchone()
    assert (n, s, semi) == (ROWS, ID_SUM, ROWS // len(NAMES) + (1 if ROWS % len(NAMES) > 1 else 0))


@pytest.mark.slow
def test_spark_csv_reader(archive, hs2):
    codec, path, _ = archive
    conn = hs2.connect()
    try:
        cur = conn.cursor()
        view = f"adaptive_{codec}"
        cur.execute(
            f"CREATE OR REPLACE TEMPORARY VIEW {view} USING csv "
            f"OPTIONS (path 'file://{path}', sep ';', header 'true', quote '\"', escape '\"')"
        )
        cur.execute(f"SELECT count(*), sum(CAST(id AS BIGINT)), max(name) FROM {view}")
        n, s, _ = cur.fetchall()[0]
        cur.close()
    finally:
        conn.close()
    assert (n, s) == (ROWS, ID_SUM)


def test_controller_follows_reader_and_cpu_demand():
    """The controller with an injected clock, schedstat probe and CPU count (no real time)."""
    now = [0.0]
    busy = [0.0, 0.0]  # seconds all threads / the reader thread were on a CPU or waiting for one

    def tick(demand: float, reader: float = 0.2, dt: float = 1.0) -> None:
        now[0] += dt
        busy[0] += demand * dt
        busy[1] += reader * dt

    c = LevelController(
        (2, 4, 6), threads=2, interval=1.0, clock=lambda: now[0], probe=lambda: (busy[0], busy[1]), cpus=2
    )
    assert c.choose(0) == 2  # starts on the floor
    tick(0.5)
    assert c.choose(1) == 4  # the reader mostly sleeps, waiting for the source: one rung up
    tick(0.5)
    assert c.choose(2) == 4  # a block queued behind the busy workers: hold
    tick(0.5)
    assert c.choose(0) == 6
    tick(0.5)
    assert c.choose(0) == 6  # top rung
    tick(1.6)
    assert c.choose(0) == 6  # between idle (1.4) and busy (1.8): hold
    tick(1.95)
    assert c.choose(0) == 4  # the process is CPU-bound: a higher level would slow the source down
    tick(1.0, reader=0.95)
    assert c.choose(0) == 4  # the reader is CPU-bound (DuckDB in the reader's thread): no step up
    tick(0.5, dt=0.5)
    assert c.choose(0, 0.01) == 4  # within an interval: no decision
    tick(0.5, dt=0.5)
    assert c.choose(0, 0.02) == 4  # the reader waited 3 % of the interval: tolerated, but no step up
    tick(0.5)
    assert c.choose(0, 0.2) == 2  # the reader lost 20 % of its time to the compressor: down
    tick(0.5)
    assert c.choose(0, 0.2) == 2  # floor
    assert [d for d, _ in c.demand] == [0.5, 0.5, 0.5, 0.5, 1.6, 1.95, 1.0, 0.5, 0.5, 0.5]
    assert c.demand[6][1] == 0.95


def test_probe_sees_the_reader_thread():
    from tableship.archive.adaptive import cpu_wait_probe

    probe = cpu_wait_probe()
    assert probe is not None, "no /proc/self/task/*/schedstat on this Linux"
    t0, r0 = probe()
    x = 0
    for i in range(2_000_000):  # some CPU in this (the reader) thread
        x += i
    t1, r1 = probe()
    assert r1 > r0 and t1 - t0 >= r1 - r0 - 1e-6  # the reader is one of the threads


def test_auto_output_is_complete_with_real_controller():
    """The real controller (real clock and probe): still one valid stream, honest record."""
    for codec in ("gzip", "zstd"):
        raw = io.BytesIO()
        out = BlockCompressor(raw, codec, 2, block_bytes=64 * 1024)
        out.write(CSV)
        out.close()
        assert check_record(raw.getvalue(), CSV, out.record()) == out.record()["levels_used"]


def test_public_api_fallback_gives_a_valid_stream():
    """If the libraries' C helper ever disappears, the public compressobj path is used:
    the same framing (primed, sync-flushed runs in one member) must still be valid gzip."""
    import struct

    from isal import isal_zlib
    from zlib_ng import zlib_ng

    from tableship.archive.adaptive import _public_api_compressor

    size = 64 * 1024
    out, prev, crc = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"], b"", 0
    for n, i in enumerate(range(0, len(CSV), size)):
        block = CSV[i : i + size]
        lib, level = (isal_zlib, 2) if n % 2 else (zlib_ng, 6)
        data, c = _public_api_compressor(lib, level)(block, memoryview(prev)[-32768:])
        out.append(data)
        crc = isal_zlib.crc32_combine(crc, c, len(block))
        prev = block
    out.append(b"\x03\x00" + struct.pack("<II", crc, len(CSV)))
    assert gzip.decompress(b"".join(out)) == CSV


def test_controller_leaves_the_cpus_a_source_on_this_machine_needs():
    """With the machine's idle CPUs (injected): no step up unless they cover the next rung's
    extra compression CPU plus the reserve; a step down when the machine has none left."""
    now, busy, idle = [0.0], [0.0, 0.0], [0.0]

    def tick(free: float, demand: float = 0.5, reader: float = 0.2) -> None:
        now[0] += 1.0
        busy[0] += demand
        busy[1] += reader
        idle[0] += free

    c = LevelController(
        (2, 3, 4),
        threads=2,
        interval=1.0,
        clock=lambda: now[0],
        probe=lambda: (busy[0], busy[1]),
        machine=lambda: idle[0],
        cpus=2,
    )
    tick(1.0)
    assert c.choose(0) == 3  # 0.3 CPU compressing at 2; 3 costs 36 % more: 0.11 + 0.25 ≤ 1.0 idle
    tick(0.4)
    assert c.choose(0) == 3  # 4 costs 2.75× 3: 0.3 × 1.75 + 0.25 = 0.78 > 0.4 idle: hold
    tick(0.9)
    assert c.choose(0) == 4
    tick(0.1)
    assert c.choose(0) == 3  # the machine's CPUs are all taken (e.g. the source's server): down
    tick(0.0)
    assert c.choose(0) == 2
    assert c.idle_cpus == [1.0, 0.4, 0.9, 0.1, 0.0]


def test_machine_probe_counts_idle_time():
    from tableship.archive.adaptive import machine_idle_probe

    probe = machine_idle_probe()
    assert probe is not None, "no /proc/stat on this Linux"
    a = probe()
    b = probe()
    assert 0 <= a <= b
