"""Compression levels side by side: the adaptive default against fixed gzip levels 1, 2, 6.

In one run, on (a) the test HiveServer2 (a Spark Thrift server started the way
bench/bench_hs2.py starts it, unless --hs2 HOST:PORT is given) and (b) the DuckDB bench
warehouse of bench/bench_export.py, each case is ``python -m tableship run`` as a user
runs it (config, export, delivery to a local destination, verification), in its own
process, rounds interleaved (the case order rotates every round). Per case: wall time,
archive size, peak RSS of the whole process tree — medians of --rounds. Peak RSS is sampled
from /proc every 20 ms: the sum of VmRSS over the tree, and never below the run's own VmHWM
(its high-water mark, which starts afresh at exec — unlike ``ru_maxrss``, which a child
inherits from the forking process: a bench that had created its tables in-process reported
its own size). The bench data are created by child processes before anything is measured.
The archive sizes are compared with ``gzip -6`` of the same CSV bytes (every case's CSV is
checked to be the same bytes).

Goals (issue 14): on (a) auto's archive ≤ 1.03× gzip -6 with wall ≤ 1.05× the fastest
fixed level; on (b) auto's wall ≤ 1.05× level 2 (the old default) with an archive no
larger than level 2's. Peak RSS: (a) ≤ 150 MiB, (b) ≤ 250 MiB.

    python bench/bench_compression.py                          # both, 3 rounds
    python bench/bench_compression.py --only duckdb --rounds 1
    python bench/bench_compression.py --hs2 127.0.0.1:10000 --skip-create
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_hs2  # noqa: E402

CASES = {"auto": None, "level 1": 1, "level 2": 2, "level 6": 6}
RSS_GOAL = {"hs2": 150, "duckdb": 250}


# ---------------------------------------------------------------- measuring a process tree


def _hwm_kib(pid: int) -> int:
    """VmHWM (peak RSS since exec) of ``pid``; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tree_rss_kib(root: int) -> int:
    """Sum of VmRSS over root and its descendants (0 when it is gone)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            with open(f"/proc/{name}/statm", "rb") as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents[int(name)] = ppid
        rss[int(name)] = pages * os.sysconf("SC_PAGE_SIZE") // 1024
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.add(pid)
        todo.extend(p for p, pp in parents.items() if pp == pid)
    return sum(rss.get(p, 0) for p in tree)


def run_measured(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of the process tree, stderr); exits on failure."""
    err = tempfile.TemporaryFile("w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid), _hwm_kib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, _ = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    err.seek(0)
    text = err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed:\n{text[-3000:]}")
    return wall, peak[0] / 1024, text


def _sh(cmd: str) -> str:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, check=True
    ).stdout


def _in_child(code: str):
    """Run ``code`` (with bench_export, bench_hs2 and json imported) in a child Python; its
    last stdout line, as JSON. Creating the bench data there keeps this process small."""
    prelude = (
        f"import sys, json; sys.path[:0] = [{str(ROOT / 'bench')!r}, {str(ROOT)!r}]; "
        "import bench_export, bench_hs2\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", prelude + code], stdout=subprocess.PIPE, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- configs


def jobs_toml(table: str) -> str:
    out = []
    for case, level in CASES.items():
        job = case.replace(" ", "")
        comp = '{ codec = "gzip" }' if level is None else f'{{ codec = "gzip", level = {level} }}'
        out.append(
            f'[jobs.{job}]\ntable = "{table}"\ncompression = {comp}\nfile_name = "{job}.csv.gz"\n'
            f'remote_dir = "{job}"\n'
        )
    return "\n".join(out)


def hs2_config(work: Path, host: str, port: int, rows: int, fetch: int) -> Path:
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

{jobs_toml(f"bench.cdr_{rows}")}"""
    cfg = work / "tableship.toml"
    cfg.write_text(text)
    return cfg


def duckdb_config(work: Path, warehouse: Path) -> Path:
    text = (
        textwrap.dedent(f"""\
        [settings]
        state_dir = "state"
        [sources.wh]
        type = "duckdb"
        path = "{warehouse}"
        [destinations.backup]
        type = "local"
        path = "backup"
        [defaults]
        source = "wh"
        destination = "backup"
        """)
        + "\n"
        + jobs_toml("mnaas.customer_traffic")
    )
    cfg = work / "tableship.toml"
    cfg.write_text(text)
    return cfg


# ---------------------------------------------------------------- one source


def run_cases(name: str, cfg: Path, lo: str, hi: str, rounds: int) -> dict:
    work = cfg.parent
    res: dict[str, dict] = {c: {"wall": [], "rss": [], "size": None, "levels": None} for c in CASES}
    csv_digest: dict[str, str] = {}
    order = list(CASES)
    for rnd in range(1, rounds + 1):
        for case in order[rnd - 1 :] + order[: rnd - 1]:
            job = case.replace(" ", "")
            shutil.rmtree(work / "state", ignore_errors=True)
            shutil.rmtree(work / "backup", ignore_errors=True)
            (work / "backup").mkdir()
            wall, rss, _ = run_measured(
                [
                    sys.executable,
                    "-m",
                    "tableship",
                    "-q",
                    "--config",
                    str(cfg),
                    "run",
                    job,
                    "--from",
                    lo,
                    "--to",
                    hi,
                ],
                work,
            )
            archive = work / "backup" / job / f"{job}.csv.gz"
            meta = json.loads((work / "backup" / job / f"{job}.csv.gz.manifest.json").read_text())
            r = res[case]
            r["wall"].append(wall)
            r["rss"].append(rss)
            r["size"] = archive.stat().st_size
            r["rows"] = meta["rows"]
            r["csv_bytes"] = meta["csv_bytes"]
            if CASES[case] is None:
                r["levels"] = meta["compression"].get("levels_used")
                r.setdefault("levels_rounds", []).append(meta["compression"].get("levels_used"))
            if rnd == 1:  # through pipes: this process stays small (its RSS is what a child starts from)
                csv_digest[case] = _sh(f"gzip -dc '{archive}' | sha256sum").split()[0]
                if case == order[0]:
                    res["_gzip6"] = int(_sh(f"gzip -dc '{archive}' | gzip -6 -c | wc -c"))
            print(
                f"{name} round {rnd} {case:8}: {wall:7.2f} s  peak RSS {rss:5.0f} MiB  "
                f"archive {r['size'] / 1e6:7.2f} MB"
                + (f"  levels {r['levels']}" if CASES[case] is None else ""),
                flush=True,
            )
    if len(set(csv_digest.values())) != 1:
        raise SystemExit(f"{name}: the cases' CSV bytes differ: {csv_digest}")
    return res


def report(name: str, res: dict, rounds: int) -> list[str]:
    g6 = res["_gzip6"]
    cases = {c: res[c] for c in CASES}
    med = {c: statistics.median(r["wall"]) for c, r in cases.items()}
    first = cases["auto"]
    print(
        f"\n### {name}: {first['rows']:,} rows, {first['csv_bytes'] / 1e6:.1f} MB of CSV; "
        f"gzip -6 of it: {g6 / 1e6:.2f} MB; medians of {rounds} round(s)\n"
    )
    print("| case | wall s (rounds) | archive MB | × gzip -6 | peak RSS MiB (max) |")
    print("|---|---|---|---|---|")
    for c, r in cases.items():
        rounds_txt = ", ".join(f"{w:.2f}" for w in r["wall"])
        print(
            f"| {c} | {med[c]:.2f} ({rounds_txt}) | {r['size'] / 1e6:.2f} | {r['size'] / g6:.3f} | "
            f"{statistics.median(r['rss']):.0f} ({max(r['rss']):.0f}) |"
        )
    print(f"\nauto's blocks per level, by round: {first.get('levels_rounds')}")
    verdicts = []
    size_ratio = first["size"] / g6
    if name == "hs2":
        fastest = min((c for c in CASES if c != "auto"), key=lambda c: med[c])
        wall_ratio = med["auto"] / med[fastest]
        verdicts.append(
            f"(a) size auto / gzip -6 = {size_ratio:.3f} (goal ≤ 1.03): "
            f"{'MET' if size_ratio <= 1.03 else 'NOT MET'}"
        )
        verdicts.append(
            f"(a) wall auto / fastest fixed ({fastest}) = {wall_ratio:.3f} (goal ≤ 1.05): "
            f"{'MET' if wall_ratio <= 1.05 else 'NOT MET'}"
        )
    else:
        wall_ratio = med["auto"] / med["level 2"]
        size_vs_2 = first["size"] / cases["level 2"]["size"]
        verdicts.append(
            f"(b) wall auto / level 2 = {wall_ratio:.3f} (goal ≤ 1.05): "
            f"{'MET' if wall_ratio <= 1.05 else 'NOT MET'}"
        )
        verdicts.append(
            f"(b) size auto / level 2 = {size_vs_2:.4f} "
            f"({first['size'] - cases['level 2']['size']:+,} bytes; "
            f"goal ≤ 1): {'MET' if size_vs_2 <= 1 else 'NOT MET'}"
            f"; auto / gzip -6 = {size_ratio:.3f}"
        )
    peak = max(max(r["rss"]) for r in cases.values())
    verdicts.append(
        f"peak RSS, any case, any round: {peak:.0f} MiB (goal ≤ {RSS_GOAL[name]}): "
        f"{'MET' if peak <= RSS_GOAL[name] else 'NOT MET'}"
    )
    print()
    for v in verdicts:
        print(v)
    return verdicts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["hs2", "duckdb"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hs2-rows", type=int, default=1_000_000)
    ap.add_argument("--duckdb-rows", type=int, default=2_000_000)
    ap.add_argument("--fetch-size", type=int, default=20_000)
    ap.add_argument("--hs2", help="HOST:PORT of a running NOSASL HiveServer2 (default: start one)")
    ap.add_argument("--skip-create", action="store_true", help="reuse the bench.cdr_<rows> table")
    args = ap.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
        f"{args.rounds} round(s)",
        flush=True,
    )
    verdicts: list[str] = []

    if args.only in (None, "duckdb"):
        warehouse, lo, hi = _in_child(
            f"w = bench_export.warehouse({args.duckdb_rows}); lo, hi, _ = bench_export.window_of(w); "
            "print(json.dumps([str(w), lo, hi]))"
        )
        warehouse = Path(warehouse)
        work = Path(tempfile.mkdtemp(prefix="bench-cmp-duckdb-"))
        res = run_cases("duckdb", duckdb_config(work, warehouse), lo, hi, args.rounds)
        verdicts += report("duckdb", res, args.rounds)
        shutil.rmtree(work, ignore_errors=True)

    if args.only in (None, "hs2"):
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
            print(f"# started Spark Thrift server {server.spark_version} on {host}:{port}", flush=True)
        try:
            if not args.skip_create:  # in a child: this process stays small
                _in_child(
                    "from impala.dbapi import connect\n"
                    "def execute(sql):\n"
                    f"    conn = connect(host={host!r}, port={port}, auth_mechanism='NOSASL', timeout=3600)\n"
                    "    try:\n"
                    "        cur = conn.cursor(); cur.execute(sql); cur.close()\n"
                    "    finally:\n"
                    "        conn.close()\n"
                    f"bench_hs2.create_tables(execute, [{args.hs2_rows}])\n"
                    "print('null')"
                )
            work = Path(tempfile.mkdtemp(prefix="bench-cmp-hs2-"))
            cfg = hs2_config(work, host, port, args.hs2_rows, args.fetch_size)
            # one unmeasured pass: the server's JIT compiles its serialization code first
            (work / "backup").mkdir(exist_ok=True)
            run_measured(
                [
                    sys.executable,
                    "-m",
                    "tableship",
                    "-q",
                    "--config",
                    str(cfg),
                    "run",
                    "level2",
                    "--from",
                    bench_hs2.START,
                    "--to",
                    bench_hs2.END,
                ],
                work,
            )
            shutil.rmtree(work / "state", ignore_errors=True)
            res = run_cases("hs2", cfg, bench_hs2.START, bench_hs2.END, args.rounds)
            verdicts += report("hs2", res, args.rounds)
            shutil.rmtree(work, ignore_errors=True)
        finally:
            if server_gen is not None:
                server_gen.close()

    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
