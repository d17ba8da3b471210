"""bench_hosts: 24 jobs on one PostgreSQL ledger, 1 process vs 3 processes ("hosts", each
with its own state_dir and staging folder, all started at once with ``run --all``), against
the same 24 jobs on the SQLite ledger (the baseline).

Prints, per setup: wall time; ledger round trips per job (statements sent to PostgreSQL,
from each process's ``ledger …: N round trips`` debug line); and the ledger + lock/claim
overhead per job = (wall on PostgreSQL - wall on SQLite) / 24 for one process, plus the
cost of one PostgreSQL job-lock claim + release measured in-process (goal: ≤ 50 ms per job
over the SQLite ledger). The source is a PostgreSQL database on the same throw-away server
(tests/servers/postgres.py), 24 tables of 155 rows in the window: small, so the figures are
the per-job overhead, not the export.

    .venv/bin/python bench/bench_hosts.py [--jobs 24]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.hosts import RUN_DATE, make_estate, start  # noqa: E402
from tests.servers.postgres import fresh_database, running_postgres  # noqa: E402

from tableship.ledger.state import StateStore  # noqa: E402

TRIPS = re.compile(r"ledger postgresql://\S+: (\d+) round trips")


def sqlite_config(estate, host: str) -> Path:
    path = estate.config(host)
    text = path.read_text().replace(f'state = "{estate.ledger_url}"\n', "")
    path.write_text(text)
    return path


def run_hosts(configs: list[Path]) -> float:
    t0 = time.perf_counter()
    procs = [start(c, "-v", "run", "--all", "--date", RUN_DATE) for c in configs]
    codes = [p.wait(900) for p in procs]
    wall = time.perf_counter() - t0
    if any(rc not in (0, 75) for rc in codes):
        for c in configs:
            print((c.parent / "host.err").read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"a run failed: exit codes {codes}")
    return wall


def round_trips(configs: list[Path]) -> int:
    return sum(
        int(m.group(1))
        for c in configs
        for m in TRIPS.finditer((c.parent / "tableship.log").read_text(errors="replace"))
    )


def lock_claims(url: str, state_dir: Path, n: int) -> tuple[float, float]:
    """Seconds per claim + release: (PostgreSQL advisory lock, SQLite flock)."""
    out = []
    for store in (StateStore(state_dir, url=url), StateStore(state_dir / "sqlite")):
        store.connect()
        store.job_lock("warm").acquire().release()
        t0 = time.perf_counter()
        for i in range(n):
            store.job_lock(f"job{i:03d}").acquire().release()
        out.append((time.perf_counter() - t0) / n)
        store.close()
    return out[0], out[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=24)
    args = ap.parse_args()
    n = args.jobs
    with running_postgres() as server, tempfile.TemporaryDirectory(prefix="bench-hosts-") as tmp:
        root = Path(tmp)
        results = {}
        for label, hosts, backend in (("sqlite, 1 process", 1, "sqlite"), ("postgresql, 1 process", 1, "pg"),
                                      ("postgresql, 3 processes", 3, "pg")):  # fmt: skip
            estate = make_estate(
                server, root / label.replace(", ", "-").replace(" ", "_"), n, f"b{len(results)}"
            )
            if backend == "sqlite":
                configs = [sqlite_config(estate, f"host{i}") for i in range(1, hosts + 1)]
            else:
                configs = [estate.config(f"host{i}") for i in range(1, hosts + 1)]
            wall = run_hosts(configs)
            trips = round_trips(configs) if backend == "pg" else 0
            queries = estate.export_queries()
            assert sum(queries.values()) == n and set(queries.values()) == {1}, queries  # each exported once
            results[label] = (wall, trips)
            print(f"{label:26s} wall {wall:6.2f} s   {wall / n * 1000:6.0f} ms/job   "
                  f"ledger round trips/job {trips / n:5.1f}" if trips else
                  f"{label:26s} wall {wall:6.2f} s   {wall / n * 1000:6.0f} ms/job")  # fmt: skip
        pg_claim, fl_claim = lock_claims(fresh_database(server), root / "locks", 200)
    base = results["sqlite, 1 process"][0]
    one = results["postgresql, 1 process"][0]
    three = results["postgresql, 3 processes"][0]
    overhead = (one - base) / n * 1000
    print(f"ledger overhead per job, PostgreSQL vs SQLite (1 process): {overhead:+.1f} ms "
          f"(goal <= 50 ms: {'met' if overhead <= 50 else 'NOT met'}); ratio {one / base:.3f}x")  # fmt: skip
    print(f"lock claim + release: PostgreSQL {pg_claim * 1000:.2f} ms, SQLite flock {fl_claim * 1000:.3f} ms")
    print(f"3 processes vs 1 on PostgreSQL: wall {three / one:.3f}x ({one:.2f} s → {three:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
