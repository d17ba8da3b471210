"""HiveServer2 export speed: tableship vs the plain impyla loop, against one real server.

Starts a Spark Thrift server (the test fixture's, tests/servers/hs2.py) unless --hs2
HOST:PORT is given, creates CDR-like tables of each --rows size (14 columns, string
``partition_date`` over 30 daily partitions, text with ';', quotes and non-ASCII,
NULLs, DECIMAL(18,4), TIMESTAMP with fractions), then, round-robin in the same run:

* baseline — ``cursor.fetchmany(n)`` with impyla's default type conversion (Decimal,
  datetime, date objects), ``csv.writer`` (';') into ``gzip.open(level 6)``; the cursor's
  arraysize is the same fetch size tableship uses, so both make as many RPCs;
* tableship — ``python -m tableship run JOB --from … --to …`` as a user runs it (config,
  schema checks, export, delivery to a local destination, verification), default gzip.

An unmeasured warm-up pass (both clients, smallest size) runs first: the server's JIT
compiles its result-serialization code on the first big fetches. Each case runs in its
own process; its wall time and peak RSS (ru_maxrss from wait4)
are measured. Prints medians: rows/s both ways, the ratio, peak RSS per size.

Both sides run with ``SET spark.sql.thriftServer.incrementalCollect=true``: Spark then
streams the result partition by partition as it is fetched (as Impala does) instead of
collecting the whole result in its 1 GiB driver before the first fetch. That is a server
setting, identical for both clients.

    python bench/bench_hs2.py                        # 1,000,000 and 2,000,000 rows, 3 rounds
    python bench/bench_hs2.py --rows 1000000 --rounds 1 --hs2 127.0.0.1:10000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "2024-01-01", "2024-01-30"

TABLE_SQL = """
SELECT
  id AS cdr_id,
  TIMESTAMP_MICROS(1704067200000000 + id * 2592000000000 DIV {rows} + id % 1000000) AS event_ts,
  CONCAT('3361', LPAD(CAST(id * 7919 % 100000000 AS STRING), 8, '0')) AS msisdn,
  CONCAT('20801', LPAD(CAST(id * 104729 % 10000000000 AS STRING), 10, '0')) AS imsi,
  CASE id % 7 WHEN 0 THEN NULL WHEN 1 THEN 'Dupont; Jean' WHEN 2 THEN 'O\\'Brien "Bob"'
       WHEN 3 THEN 'Zoë Müller' WHEN 4 THEN '' ELSE CONCAT('Customer ', CAST(id % 5000 AS STRING)) END
       AS customer_name,
  ELT(CAST(id % 4 AS INT) + 1, 'voice', 'sms', 'data', 'mms') AS service_type,
  IF(id % 2 = 0, 'MO', 'MT') AS direction,
  CAST(id % 3600 AS INT) AS duration_sec,
  id * 13 % 1000000 AS bytes_up,
  id * 31 % 10000000 AS bytes_down,
  CAST((id % 100000) / 10000.0 AS DECIMAL(18,4)) AS charge_amount,
  IF(id % 13 = 0, NULL, CONCAT('CELL-', CAST(id % 4000 AS STRING))) AS cell_id,
  id % 5 = 0 AS roaming,
  CAST(DATE_ADD(DATE'{start}', CAST(id * 30 DIV {rows} AS INT)) AS STRING) AS partition_date
FROM range({rows})
"""

BASELINE = r"""
import csv, gzip, sys
from impala.dbapi import connect
host, port, sql, out, fetch = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
conn = connect(host=host, port=port, auth_mechanism="NOSASL", timeout=600)
cur = conn.cursor()                      # impyla's default type conversion
cur.execute("SET spark.sql.thriftServer.incrementalCollect=true")   # same server setting as tableship
cur.arraysize = fetch
cur.execute(sql)
rows = 0
with gzip.open(out, "wt", compresslevel=6, encoding="utf-8", newline="") as f:
    w = csv.writer(f, delimiter=";", lineterminator="\n")
    w.writerow([d[0] for d in cur.description])
    while True:
        batch = cur.fetchmany(fetch)
        if not batch:
            break
        w.writerows(batch)
        rows += len(batch)
print(rows)
"""


def run_with_rss(argv: list[str], cwd: Path) -> tuple[float, float, str, str, int]:
    out_f = tempfile.TemporaryFile("w+")
    err_f = tempfile.TemporaryFile("w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=out_f, stderr=err_f, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    return wall, usage.ru_maxrss / 1024, out_f.read(), err_f.read(), proc.returncode


def label(rnd: int) -> str:
    return "warm-up" if rnd == 0 else f"round {rnd}"


def create_tables(execute, sizes: list[int]) -> None:
    execute("CREATE DATABASE IF NOT EXISTS bench")
    for n in sizes:
        t0 = time.perf_counter()
        execute(f"DROP TABLE IF EXISTS bench.cdr_{n}")
        execute(
            f"CREATE TABLE bench.cdr_{n} USING parquet PARTITIONED BY (partition_date) AS "
            f"SELECT * FROM ({TABLE_SQL.format(rows=n, start=START)}) t DISTRIBUTE BY partition_date"
        )
        print(f"# created bench.cdr_{n} ({n:,} rows) in {time.perf_counter() - t0:.1f}s", flush=True)


def write_config(work: Path, host: str, port: int, sizes: list[int], fetch: int) -> Path:
    jobs = "\n".join(f'[jobs.cdr_{n}]\ntable = "bench.cdr_{n}"\n' for n in sizes)
    text = f"""[settings]
state_dir = "state"

[sources.hs2]
type = "hive"
host = "{host}"
port = {port}
auth = "nosasl"
timeout = 600
fetch_size = {fetch}
query_options = {{ "spark.sql.thriftServer.incrementalCollect" = "true" }}

[destinations.backup]
type = "local"
path = "backup"

[defaults]
source = "hs2"
destination = "backup"
partition_column = "partition_date"
window = {{ unit = "month", count = 1 }}

{jobs}"""
    (work / "backup").mkdir(exist_ok=True)
    cfg = work / "tableship.toml"
    cfg.write_text(text)
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 2_000_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fetch-size", type=int, default=20_000)
    ap.add_argument("--hs2", help="HOST:PORT of a running NOSASL HiveServer2 (default: start one)")
    ap.add_argument("--skip-create", action="store_true", help="reuse bench.cdr_<rows> tables")
    ap.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the unmeasured first pass (it warms the server's JIT for both clients)",
    )
    args = ap.parse_args()

    server_gen = None
    if args.hs2:
        host, port = args.hs2.rsplit(":", 1)
        port = int(port)
    else:
        sys.path.insert(0, str(ROOT))
        from tests.servers.hs2 import _start_hs2

        server_gen = _start_hs2("NOSASL")
        server = next(server_gen)
        host, port = server.host, server.port
        print(
            f"# started Spark Thrift server {server.spark_version} on {host}:{port} "
            f"in {server.startup_seconds:.0f}s",
            flush=True,
        )
    try:
        from impala.dbapi import connect

        def execute(sql: str) -> None:
            conn = connect(host=host, port=port, auth_mechanism="NOSASL", timeout=3600)
            try:
                cur = conn.cursor()
                cur.execute(sql)
                cur.close()
            finally:
                conn.close()

        if not args.skip_create:
            create_tables(execute, args.rows)
        work = Path(tempfile.mkdtemp(prefix="bench-hs2-"))
        cfg = write_config(work, host, port, args.rows, args.fetch_size)
        results: dict[tuple[int, str], list[tuple[float, float]]] = {}
        for rnd in range(0 if args.warmup else 1, args.rounds + 1):
            for n in args.rows[:1] if rnd == 0 else args.rows:
                sql = (
                    f"SELECT * FROM `bench`.`cdr_{n}` WHERE `partition_date` >= '{START}' "
                    f"AND `partition_date` <= '{END}'"
                )
                out = work / f"baseline_{n}.csv.gz"
                wall, rss, stdout, stderr, rc = run_with_rss(
                    [sys.executable, "-c", BASELINE, host, str(port), sql, str(out), str(args.fetch_size)],
                    work,
                )
                if rc != 0 or int(stdout.strip() or 0) != n:
                    print(f"baseline failed (rc {rc}, rows {stdout.strip()}):\n{stderr[-2000:]}")
                    return 1
                if rnd:
                    results.setdefault((n, "baseline"), []).append((wall, rss))
                print(
                    f"{label(rnd)} {n:>9,} rows  baseline : {wall:7.1f}s {n / wall:10,.0f} rows/s "
                    f"peak RSS {rss:6.0f} MiB  ({out.stat().st_size / 1e6:.1f} MB)",
                    flush=True,
                )
                out.unlink()

                state = work / "state"
                if state.exists():  # a fresh run every round, not a resume
                    subprocess.run(["rm", "-rf", str(state), str(work / "backup")], check=True)
                    (work / "backup").mkdir()
                wall, rss, stdout, stderr, rc = run_with_rss(
                    [
                        sys.executable,
                        "-m",
                        "tableship",
                        "--config",
                        str(cfg),
                        "-q",
                        "run",
                        f"cdr_{n}",
                        "--from",
                        START,
                        "--to",
                        END,
                    ],
                    work,
                )
                if rc != 0:
                    print(f"tableship failed (rc {rc}):\n{stdout}\n{stderr[-2000:]}")
                    return 1
                manifest = next((work / "backup").rglob("*.manifest.json"))
                meta = json.loads(manifest.read_text())
                if meta["rows"] != n:
                    print(f"tableship exported {meta['rows']} rows, expected {n}")
                    return 1
                if rnd:
                    results.setdefault((n, "tableship"), []).append((wall, rss))
                print(
                    f"{label(rnd)} {n:>9,} rows  tableship: {wall:7.1f}s {n / wall:10,.0f} rows/s "
                    f"peak RSS {rss:6.0f} MiB  ({meta['archive_bytes'] / 1e6:.1f} MB)",
                    flush=True,
                )

        print(
            "\n| rows | baseline rows/s | tableship rows/s | ratio | baseline peak RSS | tableship peak RSS |"
        )
        print("|---|---|---|---|---|---|")
        for n in args.rows:
            b = results[(n, "baseline")]
            t = results[(n, "tableship")]
            b_rate = statistics.median(n / w for w, _ in b)
            t_rate = statistics.median(n / w for w, _ in t)
            ratios = [(n / tw) / (n / bw) for (bw, _), (tw, _) in zip(b, t, strict=True)]
            print(
                f"| {n:,} | {b_rate:,.0f} | {t_rate:,.0f} | {statistics.median(ratios):.2f}× "
                f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}) | "
                f"{statistics.median(r for _, r in b):.0f} MiB | "
                f"{statistics.median(r for _, r in t):.0f} MiB |"
            )
        print(f"\nmedians of {args.rounds} round(s); fetch size {args.fetch_size:,}; window {START}..{END}")
        subprocess.run(["rm", "-rf", str(work)])
        return 0
    finally:
        if server_gen is not None:
            server_gen.close()


if __name__ == "__main__":
    sys.exit(main())
