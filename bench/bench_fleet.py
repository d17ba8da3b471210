"""A fleet of jobs on one host: ``tableship run --all --jobs N`` vs the legacy fan-out.

Builds a DuckDB warehouse with ``--tables`` (24) copies of the demo table, ~``--rows``
(300k) rows each in the window, starts its own OpenSSH sshd on 127.0.0.1 (the test
fixture's ``tests.servers.sshd.running_sshd``; needs root), and backs every table up to it
(default compression, remote sha256sum verification), from scratch each time, as:

* ``--jobs 1``, ``--jobs 2``, ``--jobs 4``: one ``tableship run --all --jobs N`` process;
* ``legacy``: 24 ``tableship run <job>`` processes started at once by a shell driver,
  like the Bash driver's ``&`` per table line (no limit; the test sshd allows 100
  unauthenticated connections, OpenSSH's default would refuse most above 10).

For each: wall time and the peak RSS of the whole process tree (sampled from /proc every
20 ms: tableship, its threads, OpenSSH clients, the shell driver). Prints the ratios
against ``--jobs 1`` in the same run and checks issue 12's goals: ``--jobs 4`` ≤ 0.8× the
wall of ``--jobs 1``, no N slower than ``--jobs 1``, peak RSS of ``--jobs 4`` ≤ 1.5 GiB.

Usage: python bench/bench_fleet.py [--tables 24] [--rows 300000] [--rounds 1] [--modes 1,2,4,legacy]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.helpers import to_toml  # noqa: E402
from tests.servers import make_base_dir, remove_dir  # noqa: E402
from tests.servers.sshd import running_sshd  # noqa: E402

from tableship.cli.demo import create_demo_warehouse  # noqa: E402

TODAY = dt.date(2026, 11, 26)
RUN_DATE = TODAY.isoformat()
WALL_GOAL = 0.8  # --jobs 4 / --jobs 1
RSS_GOAL_MIB = 1536


def tree_rss_kib(root: int) -> int:
    """Sum of VmRSS over ``root`` and its descendants (0 when it is gone)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE") // 1024
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
        rss[int(name)] = pages * page
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.add(pid)
        todo.extend(p for p, pp in parents.items() if pp == pid)
    return sum(rss.get(p, 0) for p in tree)


def run_measured(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB of the process tree); exits on failure."""
    err = tempfile.TemporaryFile("w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], tree_rss_kib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, _usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        err.seek(0)
        raise SystemExit(f"{' '.join(argv[:8])} failed:\n{err.read()[-3000:]}")
    return wall, peak[0] / 1024


def build_warehouse(path: Path, tables: int, rows: int) -> list[str]:
    import duckdb

    # 5 months of data ending yesterday: the default window (5 whole months before this one)
    # holds all but the current month's days, i.e. ~rows rows per table
    create_demo_warehouse(path, rows=int(rows * 1.2), today=TODAY, months=5)
    names = [f"t{i:02d}" for i in range(tables)]
    con = duckdb.connect(str(path))
    try:
        for n in names:
            con.execute(f"CREATE TABLE mnaas.{n} AS SELECT * FROM mnaas.customer_traffic")
        in_window = con.execute(
            "SELECT count(*) FROM mnaas.customer_traffic "
            "WHERE partition_date BETWEEN '2026-06-01' AND '2026-10-31'"
        ).fetchone()[0]
    finally:
        con.close()
    print(f"warehouse: {tables} tables × {in_window:,} rows in the window", flush=True)
    return names


def write_site(base: Path, mode: str, warehouse: Path, names: list[str], sshd) -> tuple[Path, Path]:
    site = base / f"site-{mode}"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    remote = sshd.root_dir / f"fleet-{mode}"
    if remote.exists():
        shutil.rmtree(remote)
    remote.mkdir()
    doc = {
        "settings": {"state_dir": ".tableship", "log_file": ".tableship/tableship.log"},
        "sources": {"warehouse": {"type": "duckdb", "path": str(warehouse)}},
        "destinations": {
            "edge": {
                "type": "sftp",
                "host": sshd.host,
                "port": sshd.port,
                "user": sshd.user,
                "key_file": str(sshd.client_key),
                "known_hosts": str(sshd.known_hosts),
                "path": str(remote),
            }
        },
        "defaults": {"source": "warehouse", "destination": "edge", "remote_dir": "{job}"},
        "jobs": {n: {"table": f"mnaas.{n}"} for n in names},
    }
    config = site / "tableship.toml"
    config.write_text(to_toml(doc))
    return site, config


def argv_for(mode: str, config: Path, names: list[str]) -> list[str]:
    exe = [sys.executable, "-m", "tableship", "-q", "--config", str(config)]
    if mode == "legacy":  # the Bash driver: one process per table line, all at once, then wait
        line = " ".join(f"{subprocess.list2cmdline([*exe, 'run', n, '--date', RUN_DATE])} &" for n in names)
        return ["bash", "-c", f"{line} fail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail"]
    return [*exe, "run", "--all", "--jobs", mode, "--date", RUN_DATE]


def check(site: Path, names: list[str]) -> None:
    import sqlite3

    db = sqlite3.connect(site / ".tableship" / "state.db")
    try:
        done = {r[0] for r in db.execute("SELECT job FROM runs WHERE phase='done' AND result='success'")}
    finally:
        db.close()
    if done != set(names):
        raise SystemExit(f"{site}: not every job verified: missing {sorted(set(names) - done)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", type=int, default=24)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--modes", default="1,2,4,legacy")
    args = ap.parse_args()
    modes = args.modes.split(",")
    print(f"machine: {os.cpu_count()} CPUs, load average at start {os.getloadavg()}", flush=True)
    base = make_base_dir("bench-fleet")
    try:
        warehouse = base / "warehouse.duckdb"
        names = build_warehouse(warehouse, args.tables, args.rows)
        results: dict[str, dict[str, list[float]]] = {m: {"wall": [], "rss": []} for m in modes}
        with running_sshd() as sshd:
            for rnd in range(1, args.rounds + 1):
                for mode in modes:
                    site, config = write_site(base, mode, warehouse, names, sshd)
                    wall, rss = run_measured(argv_for(mode, config, names), site)
                    check(site, names)
                    results[mode]["wall"].append(wall)
                    results[mode]["rss"].append(rss)
                    label = f"--jobs {mode}" if mode != "legacy" else f"legacy ({len(names)} processes)"
                    print(f"round {rnd} {label:24}: {wall:7.1f} s  peak RSS {rss:6.0f} MiB", flush=True)
        print(f"load average at the end {os.getloadavg()}")
        wall = {m: statistics.median(r["wall"]) for m, r in results.items()}
        rss = {m: max(r["rss"]) for m, r in results.items()}
        ref = wall.get("1")
        print()
        print("| mode | wall s | × --jobs 1 | peak RSS MiB |")
        print("|---|---|---|---|")
        for m in modes:
            label = f"`--jobs {m}`" if m != "legacy" else f"legacy: {len(names)} processes at once"
            ratio = f"{wall[m] / ref:.2f}" if ref else "-"
            print(f"| {label} | {wall[m]:.1f} | {ratio} | {rss[m]:.0f} |")
        if ref and "4" in wall:
            ok_wall = wall["4"] <= WALL_GOAL * ref
            ok_never = all(wall[m] <= ref for m in modes if m not in ("1", "legacy"))
            ok_rss = rss["4"] <= RSS_GOAL_MIB
            verdict = {True: "met", False: "NOT met"}
            print()
            print(f"goal --jobs 4 ≤ {WALL_GOAL}× --jobs 1: {wall['4'] / ref:.2f} {verdict[ok_wall]}")
            print(f"goal no --jobs N slower than --jobs 1: {verdict[ok_never]}")
            print(f"goal --jobs 4 peak RSS ≤ {RSS_GOAL_MIB} MiB: {rss['4']:.0f} {verdict[ok_rss]}")
    finally:
        remove_dir(base)


if __name__ == "__main__":
    main()
