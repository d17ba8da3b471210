"""Benchmark for issue #2: `tableship run` vs DuckDB's own COPY … (COMPRESSION gzip).

Measured in one run, on this machine, whole processes (wall time and peak RSS via wait4):

  * tableship `run` with its default settings (gzip via ISA-L, columnar CSV renderer)
  * DuckDB `COPY (SELECT … window …) TO 'x.csv.gz' (DELIMITER ';', HEADER, COMPRESSION gzip)`
    with `SET threads=1` — the baseline named in the issue (goal: tableship ≤ 1/4 of it)
  * archive size next to `gzip -6` of the same CSV bytes

Usage: python bench/bench_export.py [--rows 2000000 8000000] [--repeat 3] [--skip-baseline-for-big]
The warehouses are generated once into bench/out/ (ignored by git).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
TODAY = "2026-11-26"


def timed(argv: list[str], **kw) -> tuple[float, float]:
    """Run argv; return (wall seconds, peak RSS MiB) of that process tree's main process."""
    t = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:4]} failed:\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def warehouse(rows: int) -> Path:
    path = OUT / f"wh_{rows}.duckdb"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        import datetime as dt

        from tableship.cli.demo import create_demo_warehouse

        print(f"generating {rows:,} rows into {path} …", flush=True)
        create_demo_warehouse(path, rows=rows, today=dt.date.fromisoformat(TODAY), months=6)
    return path


def window_of(path: Path) -> tuple[str, str, int]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    lo, hi, n = con.execute(
        "SELECT min(partition_date), max(partition_date), count(*) FROM mnaas.customer_traffic"
    ).fetchone()
    con.close()
    return lo.isoformat(), hi.isoformat(), n


def config_for(path: Path, work: Path) -> Path:
    (work / "backup").mkdir(parents=True, exist_ok=True)
    cfg = work / "tableship.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [settings]
        state_dir = "state"
        [sources.wh]
        type = "duckdb"
        path = "{path}"
        [destinations.backup]
        type = "local"
        path = "backup"
        [jobs.traffic]
        table = "mnaas.customer_traffic"
    """)
    )
    return cfg


def run_tableship(cfg: Path, lo: str, hi: str) -> tuple[float, float, Path]:
    import shutil

    work = cfg.parent
    shutil.rmtree(work / "state", ignore_errors=True)
    shutil.rmtree(work / "backup", ignore_errors=True)
    (work / "backup").mkdir()
    wall, rss = timed(
        [
            sys.executable,
            "-m",
            "tableship",
            "-q",
            "--config",
            str(cfg),
            "run",
            "traffic",
            "--from",
            lo,
            "--to",
            hi,
        ]
    )
    archive = next((work / "backup").rglob("*.csv.gz"))
    return wall, rss, archive


def run_duckdb_copy(path: Path, lo: str, hi: str, target: Path) -> tuple[float, float]:
    code = textwrap.dedent(f"""
        import duckdb
        con = duckdb.connect({str(path)!r}, read_only=True)
        con.execute("SET threads=1")
        con.execute("COPY (SELECT * FROM mnaas.customer_traffic WHERE partition_date >= DATE '{lo}' "
                    "AND partition_date <= DATE '{hi}') TO '{target}' "
                    "(DELIMITER ';', HEADER, COMPRESSION gzip)")
    """)
    target.unlink(missing_ok=True)
    return timed([sys.executable, "-c", code])


def gzip6_size(archive: Path) -> tuple[int, int]:
    """(CSV bytes, gzip -6 bytes) of the archive's content."""
    z = subprocess.Popen(["gzip", "-dc", str(archive)], stdout=subprocess.PIPE)
    g = subprocess.Popen(["gzip", "-6", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    csv_bytes = 0
    import threading

    out = [0]

    def drain():
        while chunk := g.stdout.read(1 << 20):
            out[0] += len(chunk)

    t = threading.Thread(target=drain)
    t.start()
    while chunk := z.stdout.read(1 << 20):
        csv_bytes += len(chunk)
        g.stdin.write(chunk)
    g.stdin.close()
    t.join()
    z.wait()
    g.wait()
    return csv_bytes, out[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[2_000_000, 8_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--baseline-rows",
        type=int,
        default=2_000_000,
        help="only compare with DuckDB COPY at these row counts (it is slow)",
    )
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; medians of {args.repeat} run(s)\n")
    rows_out = []
    for rows in args.rows:
        path = warehouse(rows)
        lo, hi, n = window_of(path)
        work = OUT / f"work_{rows}"
        work.mkdir(parents=True, exist_ok=True)
        cfg = config_for(path, work)
        ts, base = [], []
        for _ in range(args.repeat):
            wall, rss, archive = run_tableship(cfg, lo, hi)
            ts.append((wall, rss))
            if rows == args.baseline_rows:
                base.append(run_duckdb_copy(path, lo, hi, work / "duckdb_copy.csv.gz"))
        csv_bytes, g6 = gzip6_size(archive)
        arch = archive.stat().st_size
        t_wall = statistics.median(w for w, _ in ts)
        t_rss = max(r for _, r in ts)
        line = {
            "rows": n,
            "csv_mb": csv_bytes / 1e6,
            "tableship_s": t_wall,
            "tableship_rss_mb": t_rss,
            "archive_mb": arch / 1e6,
            "gzip6_mb": g6 / 1e6,
        }
        if base:
            line["duckdb_s"] = statistics.median(w for w, _ in base)
            line["duckdb_rss_mb"] = max(r for _, r in base)
            line["duckdb_archive_mb"] = (work / "duckdb_copy.csv.gz").stat().st_size / 1e6
        rows_out.append(line)
        print(
            f"{n:>10,} rows, {csv_bytes / 1e6:7.1f} MB CSV: tableship {t_wall:6.2f} s "
            f"({csv_bytes / 1e6 / t_wall:5.1f} MB/s), peak RSS {t_rss:5.0f} MiB; archive "
            f"{arch / 1e6:6.1f} MB "
            f"vs gzip -6 {g6 / 1e6:6.1f} MB ({arch / g6:.3f}×)",
            flush=True,
        )
        if base:
            print(
                f"{'':>10}  DuckDB COPY gzip threads=1: {line['duckdb_s']:6.2f} s, peak RSS "
                f"{line['duckdb_rss_mb']:5.0f} MiB, archive {line['duckdb_archive_mb']:6.1f} MB  →  "
                f"tableship / DuckDB = {t_wall / line['duckdb_s']:.3f} (goal ≤ 0.25)",
                flush=True,
            )
    print(
        "\nRSS goal: < 400 MiB at every size:",
        "MET" if all(r["tableship_rss_mb"] < 400 for r in rows_out) else "NOT MET",
    )


if __name__ == "__main__":
    main()
