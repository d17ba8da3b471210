"""Several tableship "hosts" on one PostgreSQL ledger (tests/integration/test_hosts.py,
bench/bench_hosts.py): each host is a folder with its own config, state_dir and staging
folder; they share the ledger (``settings.state``), the source (a PostgreSQL database whose
statements the server logs) and the destination folder."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.helpers import to_toml
from tests.servers.postgres import PostgresServer, fresh_database

RUN_DATE = "2026-11-26"
WINDOW = ("2026-10-01", "2026-10-31")  # month × 1 before the run date
ROWS_IN_WINDOW = 155  # 5 rows a day in October


@dataclass
class Estate:
    server: PostgresServer
    root: Path
    ledger_url: str
    source_url: str
    schema: str
    tables: list[str]
    dest: Path
    log_start: int  # offset in the server log where this estate's statements begin

    def table_ref(self, table: str) -> str:
        return f"{self.schema}.{table}"

    def config(self, host: str, alerts: str = "", extra_jobs: dict | None = None) -> Path:
        base = self.root / host
        base.mkdir(parents=True, exist_ok=True)
        jobs = {t: {"table": self.table_ref(t)} for t in self.tables} | (extra_jobs or {})
        doc = {
            "settings": {
                "state_dir": str(base / "state"),
                "staging_dir": str(base / "staging"),
                "log_file": str(base / "tableship.log"),
                "state": self.ledger_url,
                "environment": "prod",
            },
            "sources": {"pg": {"type": "sqlalchemy", "url": self.source_url}},
            "destinations": {"backup": {"type": "local", "path": str(self.dest)}},
            "defaults": {
                "source": "pg",
                "destination": "backup",
                "partition_column": "partition_date",
                "window": {"unit": "month", "count": 1},
                "file_name": "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz",
                "remote_dir": "{table}",
                "compression": {"codec": "gzip", "level": 1},
            },
            "jobs": jobs,
        }
        path = base / "tableship.toml"
        path.write_text(to_toml(doc) + alerts, encoding="utf-8")
        return path

    def export_queries(self) -> collections.Counter:
        """table → how many window queries (SELECT … WHERE partition_date >= …) the source ran."""
        text = Path(self.server.log_path).read_bytes()[self.log_start :].decode("utf-8", "replace")
        found: collections.Counter = collections.Counter()
        pattern = re.compile(rf'FROM "?{self.schema}"?\."?(t\d+)"? WHERE .*partition_date"? >=', re.I)
        for line in text.splitlines():
            if ("statement:" in line or "execute" in line) and "count(" not in line.lower():
                m = pattern.search(line)
                if m:
                    found[m.group(1)] += 1
        return found


def make_estate(server: PostgresServer, root: Path, jobs: int, tag: str) -> Estate:
    """``jobs`` tables ``t01…`` in a schema of a fresh source database (October and
    September rows), a fresh ledger database, an empty destination folder."""
    ledger = fresh_database(server, "ledger")
    source = fresh_database(server, "src")
    dbname = source.rsplit("/", 1)[1]
    schema = f"s_{tag}"
    tables = [f"t{i:02d}" for i in range(1, jobs + 1)]
    ddl = [f"CREATE SCHEMA {schema}"]
    for t in tables:
        ddl.append(
            f"CREATE TABLE {schema}.{t} AS SELECT g AS id, DATE '2026-09-01' + (g % 61) AS partition_date, "
            f"'{t} row ' || g AS note FROM generate_series(0, 304) AS g"
        )
    server.psql("; ".join(ddl), dbname=dbname)
    server.psql(f"ALTER DATABASE {dbname} SET log_statement = 'all'")
    dest = root / "backup-server"
    dest.mkdir(parents=True)
    log_start = Path(server.log_path).stat().st_size
    return Estate(
        server,
        root,
        ledger,
        source.replace("postgresql://", "postgresql+psycopg://", 1),
        schema,
        tables,
        dest,
        log_start,
    )


def start(config: Path, *args: str, env: dict | None = None, name: str = "host") -> subprocess.Popen:
    out = open(config.parent / f"{name}.out", "w")
    err = open(config.parent / f"{name}.err", "w")
    full = {k: v for k, v in os.environ.items() if k != "TABLESHIP_CONFIG"} | (env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "tableship", "--config", str(config), *args],
        stdout=out,
        stderr=err,
        stdin=subprocess.DEVNULL,
        env=full,
        cwd=config.parent,
    )


def output(config: Path, name: str = "host") -> str:
    return (config.parent / f"{name}.out").read_text() + (config.parent / f"{name}.err").read_text()
