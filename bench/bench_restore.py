"""Restore + load speed: ``tableship restore --from/--to --load`` against plain baselines, into
PostgreSQL and into DuckDB, in the same run.

Builds a DuckDB warehouse of CDR-like rows (--rows, default 2,000,000, over --months
monthly partitions: BIGINT, TIMESTAMP with microseconds, DECIMAL(18,4), BOOLEAN, texts
with ';', quotes, line breaks, non-ASCII, NULL next to ''), backs each month up with
``tableship run`` (one gzip archive per month on a local destination; not timed), starts
a throw-away PostgreSQL (tests/servers/postgres.py), then round-robin per round:

* ``pg tableship`` — ``tableship restore JOB --from M1 --to Mn --load pg:bench.t`` into a new
  table: list, download, sha256 and header against the manifest, the table created from
  the manifest, one ``COPY FROM STDIN`` transaction per archive fed as the archive is
  decompressed (size and row count checked before the commit), the ledger records; the
  wall of the whole process;
* ``pg parallel 1`` — the same with ``--parallel 1`` (one archive at a time, as before 0.2);
* ``pg pipeline`` — the same work done by hand, the issue's baseline "including download
  and verification": per archive ``cp`` from the destination, ``sha256sum -c`` against the
  manifest's digest, ``gzip -dc`` to a CSV, then ``psql -c "\\copy bench.p FROM 'month.csv'
  (FORMAT csv, DELIMITER ';', HEADER true, NULL '')"`` into a table created beforehand;
* ``pg load only`` — the ``psql \\copy`` step alone, of CSVs decompressed before timing (a
  stricter baseline: it gets download, verification and decompression for free);
* ``duckdb tableship`` — the same restore with ``--load FILE.duckdb:t`` (a new file; DuckDB's
  ``read_csv`` reads the gzip archives itself);
* ``duckdb parallel 1`` — the same with ``--parallel 1``;
* ``duckdb pipeline`` — ``cp``, ``sha256sum -c``, ``gzip -dc``, then a Python process running
  ``CREATE TABLE t AS SELECT * FROM read_csv([...], delim=';', header=true, columns={...})``;
* ``duckdb load only`` — that Python process alone, on the CSVs decompressed before timing.

Prints the median wall and rows/s of each and the ratios tableship / pipeline (the goal:
≤ 1.3x) and tableship / load only.

    python bench/bench_restore.py                      # 2,000,000 rows, 2 months, 3 rounds
    python bench/bench_restore.py --rows 500000 --rounds 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import postgres as pg_fixture  # noqa: E402  (the fixture's server, outside pytest)

COLUMNS = {
    "cdr_id": "BIGINT",
    "event_ts": "TIMESTAMP",
    "msisdn": "VARCHAR",
    "customer_name": "VARCHAR",
    "service_type": "VARCHAR",
    "duration_sec": "INTEGER",
    "bytes_down": "BIGINT",
    "charge_amount": "DECIMAL(18,4)",
    "cell_id": "VARCHAR",
    "roaming": "BOOLEAN",
    "partition_date": "DATE",
}
PG_DDL = (
    "cdr_id bigint, event_ts timestamp, msisdn text, customer_name text, service_type text, "
    "duration_sec integer, bytes_down bigint, charge_amount numeric(18,4), cell_id text, roaming boolean, "
    "partition_date date"
)


def build(work: Path, rows: int, months: int) -> None:
    con = duckdb.connect(str(work / "warehouse.duckdb"))
    con.execute("CREATE SCHEMA bench")
    con.execute(f"""
        CREATE TABLE bench.cdr AS SELECT
          i AS cdr_id,
          make_date(2024, ((i * {months}) // {rows})::INTEGER + 1, (i % 28)::INTEGER + 1)::TIMESTAMP
            + to_microseconds((i * 7919) % 86400000000) AS event_ts,
          '3361' || lpad(((i * 7919) % 100000000)::VARCHAR, 8, '0') AS msisdn,
          CASE i % 7 WHEN 0 THEN NULL WHEN 1 THEN 'Dupont; Jean' WHEN 2 THEN 'O''Brien "Bob"'
               WHEN 3 THEN 'Zoë Müller' WHEN 4 THEN '' WHEN 5 THEN 'two' || chr(10) || 'lines'
               ELSE 'Customer ' || (i % 5000)::VARCHAR END AS customer_name,
          ['voice', 'sms', 'data', 'mms'][i % 4 + 1] AS service_type,
          (i % 3600)::INTEGER AS duration_sec,
          (i * 31) % 10000000 AS bytes_down,
          ((i % 100000) / 10000.0)::DECIMAL(18,4) AS charge_amount,
          CASE WHEN i % 13 = 0 THEN NULL ELSE 'CELL-' || (i % 4000)::VARCHAR END AS cell_id,
          i % 5 = 0 AS roaming,
          make_date(2024, ((i * {months}) // {rows})::INTEGER + 1, (i % 28)::INTEGER + 1) AS partition_date
        FROM range({rows}) t(i)
    """)
    con.close()


def months_of(months: int) -> list[tuple[str, str]]:
    """(first day, last day) of each month of 2024 the data covers."""
    out = []
    for m in range(1, months + 1):
        last = (dt.date(2024 + m // 12, m % 12 + 1, 1) - dt.timedelta(days=1)).day
        out.append((f"2024-{m:02d}-01", f"2024-{m:02d}-{last:02d}"))
    return out


def write_config(work: Path, pg_url: str) -> Path:
    (work / "backup").mkdir()
    cfg = work / "tableship.toml"
    cfg.write_text(f"""
[settings]
state_dir = "state"

[sources.wh]
type = "duckdb"
path = "warehouse.duckdb"

[sources.pg]
type = "sqlalchemy"
url = "{pg_url}"

[destinations.backup]
type = "local"
path = "backup"

[defaults]
source = "wh"
destination = "backup"
window = {{ unit = "month", count = 1 }}

[jobs.cdr]
table = "bench.cdr"
""")
    return cfg


CPU: dict[str, list[float]] = {}  # case → CPU seconds (user + sys) of its processes, per round


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def tableship(cfg: Path, *args: str) -> float:
    return timed([sys.executable, "-m", "tableship", "--config", str(cfg), "-q", *args])


def timed(argv: list[str], case: str | None = None) -> float:
    """Wall seconds of one process; its CPU seconds are added to ``CPU[case]``'s last entry."""
    t0, c0 = time.perf_counter(), _cpu()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if case is not None:
        CPU[case][-1] += _cpu() - c0
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed:\n{proc.stdout}{proc.stderr}")
    return wall


def pipeline_script(archives: list[Path], digests: list[str], tmp: Path, load: str) -> str:
    """The plain pipeline as one bash script: per archive copy, sha256sum -c, gzip -dc; then ``load``."""
    lines = ["set -euo pipefail", f"rm -rf {tmp} && mkdir {tmp} && cd {tmp}"]
    for a, digest in zip(archives, digests, strict=True):
        lines.append(f"cp {a} {a.name}")
        lines.append(f"echo '{digest}  {a.name}' | sha256sum -c --quiet -")
        lines.append(f"gzip -dc {a.name} > {a.name.removesuffix('.gz')} && rm {a.name}")
    lines.append(load)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--months", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    start_pg = getattr(pg_fixture.postgres, "__wrapped__", None) or pg_fixture.postgres.__pytest_wrapped__.obj
    pg_gen = start_pg()
    server = next(pg_gen)
    work = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    try:
        t0 = time.perf_counter()
        # byte-compile tableship as an installed package is (pip compiles on install): a source
        # checkout under PYTHONDONTWRITEBYTECODE=1 would compile every module in every process
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "tableship")], check=True
        )
        build(work, args.rows, args.months)
        cfg = write_config(work, server.url)
        for start, end in months_of(args.months):
            tableship(cfg, "run", "cdr", "--from", start, "--to", end)
        archives = sorted((work / "backup").rglob("*.csv.gz"))
        digests = [json.loads(a.with_name(a.name + ".manifest.json").read_text())["sha256"] for a in archives]
        csvs = []
        for a in archives:
            out = work / a.name.removesuffix(".gz")
            with gzip.open(a, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            csvs.append(out)
        mb = sum(p.stat().st_size for p in csvs) / 1e6
        print(
            f"# {args.rows:,} rows in {len(archives)} archives ({mb:.0f} MB of CSV), "
            f"set up in {time.perf_counter() - t0:.0f}s; PostgreSQL on port {server.port}",
            flush=True,
        )
        frm, to = "2024-01", f"2024-{args.months:02d}"
        psql = [str(server.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        psql += ["-h", server.host, "-p", str(server.port), "-U", server.user, "-d", server.dbname]
        server.psql("CREATE SCHEMA IF NOT EXISTS bench")
        cols = ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items())
        duck_load = (
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            'con.execute("CREATE TABLE t AS SELECT * FROM read_csv(" + repr(sys.argv[2:]) + '
            f"\", delim=';', header=true, quote='\\\"', escape='\\\"', nullstr='', auto_detect=false, "
            f'columns={{{cols}}})"); con.close()'
        )

        def copy_cmds(table: str, files: list[Path]) -> list[list[str]]:
            return [
                [
                    *psql,
                    "-c",
                    f"\\copy {table} FROM '{c}' WITH (FORMAT csv, DELIMITER ';', HEADER true, NULL '')",
                ]
                for c in files
            ]

        piped = work / "piped"
        piped_csvs = [piped / a.name.removesuffix(".gz") for a in archives]
        pg_pipeline = pipeline_script(
            archives, digests, piped, "\n".join(shlex.join(c) for c in copy_cmds("bench.p", piped_csvs))
        )
        duck_pipeline = pipeline_script(
            archives,
            digests,
            piped,
            shlex.join([sys.executable, "-c", duck_load, str(work / "rp.duckdb"), *map(str, piped_csvs)]),
        )
        cases = [
            "pg tableship",
            "pg parallel 1",
            "pg pipeline",
            "pg load only",
            "duckdb tableship",
            "duckdb parallel 1",
            "duckdb pipeline",
            "duckdb load only",
        ]
        results: dict[str, list[float]] = {k: [] for k in cases}
        for k in results:
            CPU[k] = []
        restore = [sys.executable, "-m", "tableship", "--config", str(cfg), "-q", "restore", "cdr"]
        restore += ["--from", frm, "--to", to, "--load"]
        for rnd in range(1, args.rounds + 1):
            for k in results:
                CPU[k].append(0.0)
            server.psql(
                "DROP TABLE IF EXISTS bench.t; DROP TABLE IF EXISTS bench.s; DROP TABLE IF EXISTS bench.p; "
                "DROP TABLE IF EXISTS bench.b"
            )
            results["pg tableship"].append(timed([*restore, "pg:bench.t"], "pg tableship"))
            results["pg parallel 1"].append(
                timed([*restore, "pg:bench.s", "--parallel", "1"], "pg parallel 1")
            )
            server.psql(f"CREATE TABLE bench.p ({PG_DDL}); CREATE TABLE bench.b ({PG_DDL})")
            results["pg pipeline"].append(timed(["bash", "-c", pg_pipeline], "pg pipeline"))
            t0 = time.perf_counter()
            for c in copy_cmds("bench.b", csvs):
                timed(c, "pg load only")
            results["pg load only"].append(time.perf_counter() - t0)
            for table in ("bench.t", "bench.s", "bench.p", "bench.b"):
                n = int(server.psql(f"SELECT count(*) FROM {table}").strip())
                assert n == args.rows, (table, n)
            for f in work.glob("r*.duckdb*"):
                f.unlink()
            results["duckdb tableship"].append(timed([*restore, f"{work}/r.duckdb:t"], "duckdb tableship"))
            results["duckdb parallel 1"].append(
                timed([*restore, f"{work}/r1.duckdb:t", "--parallel", "1"], "duckdb parallel 1")
            )
            results["duckdb pipeline"].append(timed(["bash", "-c", duck_pipeline], "duckdb pipeline"))
            results["duckdb load only"].append(
                timed(
                    [sys.executable, "-c", duck_load, str(work / "rb.duckdb"), *map(str, csvs)],
                    "duckdb load only",
                )
            )
            shutil.rmtree(piped, ignore_errors=True)
            print(f"# round {rnd}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()), flush=True)
        print(f"\n{'case':<18} {'median wall':>12} {'rows/s':>12} {'client CPU':>11}")
        med = {k: statistics.median(v) for k, v in results.items()}
        cpu = {k: statistics.median(v) for k, v in CPU.items()}
        for k, v in med.items():
            print(f"{k:<18} {v:>11.2f}s {args.rows / v:>12,.0f} {cpu[k]:>10.2f}s")
        load = os.getloadavg()[0]
        print(
            f"# load average at the end: {load:.1f} on {os.cpu_count()} CPUs (wall times include contention)"
        )
        for engine in ("pg", "duckdb"):
            ratio = med[f"{engine} tableship"] / med[f"{engine} pipeline"]
            verdict = "goal met" if ratio <= 1.3 else "goal NOT met"
            strict = med[f"{engine} tableship"] / med[f"{engine} load only"]
            print(
                f"{engine}: tableship / pipeline = {ratio:.2f}x (goal <= 1.3x: {verdict}); "
                f"tableship / load only = {strict:.2f}x"
            )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            next(pg_gen)
        except StopIteration:
            pass


if __name__ == "__main__":
    raise SystemExit(main())
