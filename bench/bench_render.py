#!/usr/bin/env python
"""Benchmark CsvRenderer (+ compression) on a synthetic CDR-like table.

    python bench/bench_render.py                  # 2,000,000 rows, render / render+gzip / pyarrow.csv
    python bench/bench_render.py --rows 500000 --repeat 3
    python bench/bench_render.py --codecs         # codec table on ~100 MB of rendered CSV

Figures are medians over --repeat runs in this process (the machines are shared
and noisy: compare numbers from one run only).  Peak RSS is the process-wide
high-water mark (resource.getrusage), printed after each phase; the generated
table itself is part of it, so the baseline after generation is printed too.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tableship.archive.codecs import DEFAULT_LEVELS, open_compressor  # noqa: E402
from tableship.archive.csvrender import CsvDialect, CsvRenderer  # noqa: E402

MB = 1_000_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class CountingSink:
    """A write-only file object that only counts bytes (no disk noise)."""

    def __init__(self) -> None:
        self.n = 0
        self.closed = False

    def write(self, b) -> int:
        n = len(memoryview(b).cast("B"))
        self.n += n
        return n

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _with_nulls(arr: pa.Array, rng: np.random.Generator, frac: float) -> pa.Array:
    mask = pa.array(rng.random(len(arr)) < frac)
    return pc.if_else(mask, pa.scalar(None, arr.type), arr)


def make_table(rows: int, seed: int = 42) -> pa.Table:
    """14 CDR-like columns: ints, strings (with rare ; " newlines non-ASCII), NULLs,
    decimal(18,4), double, timestamp with fractions, date, bool."""
    rng = np.random.default_rng(seed)
    n = rows
    call_id = pa.array(np.arange(10_000_000_000, 10_000_000_000 + n, dtype=np.int64))
    msisdn_a = pc.binary_join_element_wise(
        "+336", pc.cast(pa.array(rng.integers(10_000_000, 99_999_999, n)), pa.string()), ""
    )
    msisdn_b = pc.binary_join_element_wise(
        "+337", pc.cast(pa.array(rng.integers(10_000_000, 99_999_999, n)), pa.string()), ""
    )
    msisdn_b = _with_nulls(msisdn_b, rng, 0.02)
    cell_id = pa.array(rng.integers(1, 60_000, n, dtype=np.int32))
    base = np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64)
    start_us = base + rng.integers(0, 31 * 86400 * 10**6, n)
    # a third of the timestamps fall on a whole second (no fraction printed)
    whole = rng.random(n) < 0.33
    start_us = np.where(whole, start_us - start_us % 10**6, start_us)
    start_ts = pa.array(start_us, pa.timestamp("us"))
    duration = pa.array(rng.integers(0, 3600, n, dtype=np.int32))
    charge_units = rng.integers(0, 5_000_000, n)  # 0..500.0000
    charge = pa.array(charge_units, pa.int64()).cast(pa.decimal128(19, 0))
    charge = pa.Array.from_buffers(pa.decimal128(18, 4), n, charge.buffers())
    charge = _with_nulls(charge, rng, 0.05)
    data_mb = np.round(rng.exponential(50.0, n), 3)
    data_mb[rng.random(n) < 0.1] = np.floor(data_mb[rng.random(n) < 0.1].mean())
    data_mb = pa.array(data_mb)
    call_date = pa.array((start_us // (86400 * 10**6)).astype(np.int32), pa.date32())
    roaming = pa.array(rng.random(n) < 0.07)
    operators = pa.array(
        ["Orange", "SFR", "Bouygues Télécom", "Free Mobile", "Vodafone; DE", 'O2 "UK"', "Telefónica"]
    )
    operator = operators.take(pa.array(rng.choice(7, n, p=[0.3, 0.25, 0.2, 0.15, 0.04, 0.03, 0.03])))
    call_types = pa.array(["VOICE", "SMS", "DATA", "MMS", ""])
    call_type = call_types.take(pa.array(rng.choice(5, n, p=[0.4, 0.3, 0.25, 0.04, 0.01])))
    notes = pa.array(
        [
            "ok",
            "dropped call",
            "handover to cell 4512",
            'customer said "call me back"',
            "line one\nline two",
            "billing; disputed",
            "réseau saturé — retry",
            "carriage\rreturn",
            "",
        ]
    )
    note = notes.take(pa.array(rng.choice(9, n, p=[0.5, 0.2, 0.15, 0.03, 0.02, 0.03, 0.04, 0.01, 0.02])))
    note = _with_nulls(note, rng, 0.3)
    imei = pc.cast(pa.array(rng.integers(10**14, 10**15 - 1, n)), pa.string())
    imei = _with_nulls(imei, rng, 0.1)
    return pa.table(
        {
            "call_id": call_id,
            "caller": msisdn_a,
            "callee": msisdn_b,
            "cell_id": cell_id,
            "start_ts": start_ts,
            "duration_s": duration,
            "charge": charge,
            "data_mb": data_mb,
            "call_date": call_date,
            "roaming": roaming,
            "operator": operator,
            "call_type": call_type,
            "note": note,
            "imei": imei,
        }
    )


def make_demo_table(rows: int) -> pa.Table:
    """The project's demo CDR table (tableship.cli.demo), read back through DuckDB → Arrow."""
    import datetime

    import duckdb

    from tableship.cli.demo import DEMO_TABLE, create_demo_warehouse

    real_connect = duckdb.connect

    def connect(*args, **kwargs):  # some duckdb versions refuse enable_progress_bar here
        try:
            return real_connect(*args, **kwargs)
        except duckdb.InvalidInputException:
            kwargs.pop("config", None)
            return real_connect(*args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.duckdb"
        duckdb.connect = connect
        try:
            create_demo_warehouse(path, rows=rows, today=datetime.date(2025, 1, 15))
        finally:
            duckdb.connect = real_connect
        con = duckdb.connect(str(path), read_only=True)
        try:
            reader = con.execute(
                f"SELECT * FROM {DEMO_TABLE} ORDER BY cdr_id LIMIT {int(rows)}"
            ).to_arrow_reader(100_000)
            table = reader.read_all()
        finally:
            con.close()
    return table


def load_table(args) -> pa.Table:
    return make_demo_table(args.rows) if args.source == "demo" else make_table(args.rows)


def timed(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def render_only(batches, renderer: CsvRenderer) -> int:
    total = len(renderer.header())
    for b in batches:
        total += len(renderer.render(b))
    return total


def render_compress(batches, renderer: CsvRenderer, codec: str, level, threads: int):
    sink = CountingSink()
    out = open_compressor(sink, codec, level, threads)
    out.write(renderer.header())
    for b in batches:
        out.write(renderer.render(b))
    out.close()
    return sink.n


def pyarrow_csv(batches, schema, delimiter: str) -> int:
    sink = CountingSink()  # not a BufferOutputStream: keep the whole CSV out of RSS
    opts = pacsv.WriteOptions(include_header=True, delimiter=delimiter, quoting_style="needed")
    with pa.PythonFile(sink, mode="w") as f:
        with pacsv.CSVWriter(f, schema, write_options=opts) as w:
            for b in batches:
                w.write_batch(b)
    return sink.n


def bench_render(args) -> None:
    t0 = time.perf_counter()
    table = load_table(args)
    batches = table.to_batches(max_chunksize=args.batch_rows)
    rows = table.num_rows
    print(
        f"{args.source}: {rows:,} rows x {table.num_columns} columns, batches of "
        f"{args.batch_rows:,}, built in {time.perf_counter() - t0:.1f} s; "
        f"peak RSS after building {peak_rss_mb():.0f} MB"
    )
    renderer = CsvRenderer(table.schema, CsvDialect())
    level = DEFAULT_LEVELS["gzip"]
    csv_size = render_only(batches, renderer)  # warm-up, and the CSV size

    cases = {
        "render only": lambda: render_only(batches, renderer),
        f"render + gzip L{level} 1 thread": lambda: render_compress(batches, renderer, "gzip", None, 1),
        f"render + gzip L{level} 2 threads": lambda: render_compress(batches, renderer, "gzip", None, 2),
        "render + zstd L3 2 threads": lambda: render_compress(batches, renderer, "zstd", None, 2),
        "pyarrow.csv (needed), ref.": lambda: pyarrow_csv(batches, table.schema, ";"),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    sizes: dict[str, int] = {}
    rss: dict[str, float] = {}
    # round robin, so that every case sees the same background noise
    for _ in range(args.repeat):
        for name, fn in cases.items():
            t1, c1 = time.perf_counter(), time.process_time()
            sizes[name] = fn()
            times[name].append(time.perf_counter() - t1)
            cpu[name].append(time.process_time() - c1)  # all threads of the process
            rss[name] = peak_rss_mb()
    print(
        f"medians of {args.repeat} rounds; MB/s = MB of *our* CSV ({csv_size / MB:.1f} MB) per second"
        " (pyarrow's own CSV size in parentheses)"
    )
    print(
        f"{'case':32s} {'wall s':>6s} {'MB/s':>7s} {'krows/s':>8s} {'CPU s':>6s} "
        f"{'out MB':>8s} {'peak RSS':>9s}"
    )
    for name in cases:
        s = statistics.median(times[name])
        c = statistics.median(cpu[name])
        out = sizes[name]
        out_txt = f"({out / MB:.1f})" if name.startswith("pyarrow") else f"{out / MB:.1f}"
        print(
            f"{name:32s} {s:6.2f} {csv_size / MB / s:7.1f} {rows / s / 1000:8.0f} {c:6.2f} "
            f"{out_txt:>8s} {rss[name]:7.0f}MB"
        )
    for what, d in (("wall", times), ("CPU", cpu)):
        ours = statistics.median(d["render only"])
        ref = statistics.median(d["pyarrow.csv (needed), ref."])
        print(f"render only vs pyarrow.csv ({what} time): {ref / ours:.2f}x its rows per second")
    print(
        "note: pyarrow.csv quotes every string (quoting_style='needed') and cannot tell"
        " NULL from an empty string; it is a speed reference, not an equivalent output"
    )


def bench_codecs(args) -> None:
    table = load_table(args)
    renderer = CsvRenderer(table.schema, CsvDialect())
    parts = [renderer.header()]
    size = 0
    for b in table.to_batches(max_chunksize=args.batch_rows):
        parts.append(renderer.render(b))
        size += len(parts[-1])
        if size >= args.csv_mb * MB:
            break
    data = b"".join(parts)
    del parts, table
    mv = memoryview(data)
    chunk = 1 << 20
    print(f"codec input: {len(data) / MB:.1f} MB of rendered CDR CSV; medians of {args.repeat}")

    def compress(codec, level, threads):
        sink = CountingSink()
        out = open_compressor(sink, codec, level, threads)
        for i in range(0, len(data), chunk):
            out.write(mv[i : i + chunk])
        out.close()
        return sink.n

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.csv")
        with open(src, "wb") as f:
            f.write(data)

        def cli(cmd):
            with open(src, "rb") as f:
                p = subprocess.run(cmd, stdin=f, stdout=subprocess.PIPE, check=True)
            return len(p.stdout)

        s, ref = timed(lambda: cli(["gzip", "-6", "-c"]), args.repeat)
        results.append(("gzip -6 CLI", s, ref))
        if shutil.which("pigz"):
            s, n = timed(lambda: cli(["pigz", "-6", "-p2", "-c"]), args.repeat)
            results.append(("pigz -6 -p2 CLI", s, n))
        for level in (1, 2, 3, 4, 6, 9):
            for threads in (1, 2):
                s, n = timed(
                    lambda level=level, threads=threads: compress("gzip", level, threads), args.repeat
                )
                lib = "isal" if level <= 3 else "zlib-ng"
                results.append((f"gzip {level} ({lib}) {threads}thr", s, n))
        for threads in (1, 2):
            s, n = timed(lambda threads=threads: compress("zstd", 3, threads), args.repeat)
            results.append((f"zstd 3 {threads}thr", s, n))
    print(f"{'codec':26s} {'MB/s':>8s} {'out MB':>8s} {'ratio':>6s} {'vs gzip -6':>10s}")
    for name, s, n in results:
        print(
            f"{name:26s} {len(data) / MB / s:8.1f} {n / MB:8.2f} {len(data) / n:6.2f} "
            f"{(n / ref - 1) * 100:+9.1f}%"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--batch-rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--source",
        choices=("synthetic", "demo"),
        default="synthetic",
        help="synthetic pyarrow CDR table, or the tableship demo table via DuckDB",
    )
    ap.add_argument("--codecs", action="store_true", help="codec table instead of render bench")
    ap.add_argument("--csv-mb", type=float, default=100.0, help="CSV size for --codecs")
    args = ap.parse_args()
    if args.codecs:
        bench_codecs(args)
    else:
        bench_render(args)


if __name__ == "__main__":
    main()
