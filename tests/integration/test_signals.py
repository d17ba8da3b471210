"""Signals through the CLI: SIGTERM in every phase (export, upload, verify by local hash,
remote ``sha256sum`` and SFTP read-back) × every source type (DuckDB, Hive over
HiveServer2, PostgreSQL) × every destination (local, SFTP), SIGINT and SIGHUP, and
SIGTERM in ``prune``, ``verify``, ``restore`` and ``ls``.

A phase is reached deterministically with the test-only hold points of
``tableship/holds.py`` (``TABLESHIP_TEST_HOLD``): tableship creates a marker file at the
point and waits there; the test waits for the marker (a condition, no fixed sleep), then
sends the signal. One more case signals a PostgreSQL query that is blocked in the server
(a table lock held by the test), i.e. inside the driver's wait.

Every case asserts: exit 128+N, exactly one ``Error:`` line, no traceback or asyncio
"Task exception" on stderr, the second job of the batch never started, no temporary left
on the destination, and a re-run that finishes with the same content as an uninterrupted
job of the same batch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from tests.e2e.helpers import Result, decompress, to_toml

from tableship.cli.demo import create_demo_warehouse
from tableship.destinations.base import TMP_RE

START, END = "2024-01-01", "2024-01-31"
EARLIER = ("2023-12-01", "2023-12-31")
JOBS = ("first", "second")
SERIAL = ("--jobs", "1")  # one job after the other: the second one never starts (pools: test_pool.py)
BANNED = ("Traceback", "Task exception", "never retrieved", "Exception ignored", "Exception in callback")


# ---------------------------------------------------------------- sources


@pytest.fixture(scope="module")
def duckdb_source(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("sig-wh") / "warehouse.duckdb"
    create_demo_warehouse(path, rows=3_000, today=dt.date(2024, 2, 15), months=3)
    return {"type": "duckdb", "path": str(path)}


PG_TABLE = """
CREATE TABLE sigtest.traffic AS
SELECT id::bigint, md5(id::text) AS note, (id / 7.0)::numeric(12,4) AS amount,
       to_char(DATE '2023-12-01' + (id % 62)::int, 'YYYY-MM-DD') AS partition_date
FROM generate_series(0, 2999) AS id
"""


@pytest.fixture(scope="module")
def postgres_source(postgres) -> dict:
    postgres.psql(
        "SET client_min_messages = warning; DROP SCHEMA IF EXISTS sigtest CASCADE; CREATE SCHEMA sigtest;"
        + PG_TABLE
        + ";"
    )
    return {"type": "sqlalchemy", "url": postgres.url, "timeout": 10}


@pytest.fixture(scope="module")
def hive_source(hs2) -> dict:
    hs2.execute_many(
        "CREATE DATABASE IF NOT EXISTS sigtest",
        "DROP TABLE IF EXISTS sigtest.traffic",
        "CREATE TABLE sigtest.traffic (id BIGINT, note STRING, partition_date STRING) USING parquet",
        "INSERT INTO sigtest.traffic SELECT id, md5(CAST(id AS STRING)), "
        "CAST(DATE_ADD(DATE'2023-12-01', CAST(id % 62 AS INT)) AS STRING) FROM range(600)",
    )
    return {"type": "hive", "host": hs2.host, "port": hs2.port, "auth": "nosasl", "timeout": 30}


SOURCES = {
    "duckdb": ("duckdb_source", "mnaas.customer_traffic"),
    "postgres": ("postgres_source", "sigtest.traffic"),
    "hive": ("hive_source", "sigtest.traffic"),
}


def source_param(name: str):
    return pytest.param(name, id=name, marks=[pytest.mark.slow] if name == "hive" else [])


# ---------------------------------------------------------------- destinations and sites


@dataclass
class Site:
    root: Path
    source: dict
    table: str
    dest: dict
    remote: Path  # the destination's root as seen on this machine
    job_extra: dict = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "tableship.toml"

    @property
    def holds(self) -> Path:
        return self.root / "holds"

    @property
    def ledger(self) -> Path:
        return self.root / "state" / "state.db"

    def write(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.holds.mkdir(exist_ok=True)
        jobs = {j: {"table": self.table, "remote_dir": j, **self.job_extra} for j in JOBS}
        doc = {
            "settings": {"state_dir": "state"},
            "sources": {"src": self.source},
            "destinations": {"dst": self.dest},
            "defaults": {"source": "src", "destination": "dst", "window": {"unit": "month", "count": 1}},
            "jobs": jobs,
        }
        self.config.write_text(to_toml(doc), encoding="utf-8")

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tableship", "--config", str(self.config), *args]

    def cli(self, *args: str, timeout: float = 600) -> Result:
        proc = subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, cwd=self.root, env=_env()
        )
        return Result(self.argv(*args), proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: str, hold: str | None = None) -> subprocess.Popen:
        env = _env()
        if hold is not None:
            env.update(TABLESHIP_TEST_HOLD=hold, TABLESHIP_TEST_HOLD_DIR=str(self.holds))
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
            env=env,
        )

    def interrupt_at(self, point: str, *args: str, sig: int = signal.SIGTERM) -> Result:
        """Run ``args`` until it waits at hold ``point``, send ``sig``, collect the result."""
        marker = self.holds / point
        marker.unlink(missing_ok=True)
        proc = self.start(*args, hold=point)
        try:
            wait_for(marker.exists, 300, f"hold point {point!r}", proc)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            marker.unlink(missing_ok=True)
        return Result(self.argv(*args), proc.returncode, out, err)

    # -- inspection
    def runs(self, job: str) -> list[sqlite3.Row]:
        if not self.ledger.exists():
            return []
        con = sqlite3.connect(self.ledger)
        con.row_factory = sqlite3.Row
        try:
            return con.execute("SELECT * FROM runs WHERE job = ? ORDER BY id", (job,)).fetchall()
        finally:
            con.close()

    def archives(self, job: str) -> list[Path]:
        folder = self.remote / job
        return sorted(folder.glob("*.csv.gz")) if folder.is_dir() else []

    def temporaries(self) -> list[Path]:
        return [p for p in self.remote.rglob(".*") if TMP_RE.match(p.name)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TABLESHIP_TEST_HOLD", None)
    env.pop("TABLESHIP_TEST_HOLD_DIR", None)
    return env


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Wait for a condition; the deadline only guards against hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"tableship exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def make_site(request, tmp_path):
    def make(source: str, dest: str, verify: str = "auto", **job_extra) -> Site:
        fixture, table = SOURCES[source]
        src = request.getfixturevalue(fixture)
        root = tmp_path / f"site-{source}-{dest}"
        if dest == "local":
            remote = root / "backup"
            remote.mkdir(parents=True)
            cfg = {"type": "local", "path": str(remote)}
        else:
            sshd = request.getfixturevalue("sshd")
            remote = sshd.root_dir / f"sig-{uuid.uuid4().hex[:8]}"
            remote.mkdir()
            cfg = {
                "type": "sftp",
                "host": sshd.host,
                "port": sshd.port,
                "user": sshd.user,
                "key_file": str(sshd.client_key),
                "known_hosts": str(sshd.known_hosts),
                "path": str(remote),
                "connect_timeout": 5,
                "verify": verify,
            }
        site = Site(root, src, table, cfg, remote, job_extra)
        site.write()
        return site

    return make


# ---------------------------------------------------------------- assertions


def assert_interrupted(result: Result, sig: int = signal.SIGTERM) -> None:
    name = signal.Signals(sig).name
    assert result.rc == 128 + sig, str(result)
    assert result.error_lines == [
        f"Error: interrupted by {name} — re-run the same command to resume where it stopped"
    ], str(result)
    for word in BANNED:
        assert word not in result.stderr and word not in result.stdout, str(result)


def assert_batch_stopped(site: Site, sig: int = signal.SIGTERM) -> None:
    """The interrupted job is recorded as interrupted (resumable); the next one never started."""
    [run] = site.runs("first")
    assert run["result"] == "failed" and f"interrupted by {signal.Signals(sig).name}" in run["error"], dict(
        run
    )
    assert site.runs("second") == []
    assert site.archives("second") == []


def assert_resumes(site: Site) -> None:
    result = site.cli("run", *JOBS, "--from", START, "--to", END)
    assert result.rc == 0, str(result)
    [a] = site.archives("first")
    [b] = site.archives("second")
    content = decompress(a)
    assert content == decompress(b) and content.count(b"\n") > 100  # same rows as the uninterrupted job
    for job in JOBS:
        assert [r["result"] for r in site.runs(job)] == ["success"]
    assert site.temporaries() == []


# ---------------------------------------------------------------- the run matrix

# (phase, destination, verify, hold point)
PHASES = [
    ("export", "local", "auto", "export"),
    ("export", "sftp", "auto", "export"),
    ("upload", "local", "auto", "upload"),
    ("upload", "sftp", "auto", "upload"),
    ("verify", "local", "auto", "sha256"),
    ("verify-sha256sum", "sftp", "sha256sum", "sha256"),
    ("verify-read-back", "sftp", "read-back", "read-back"),
]


@pytest.mark.parametrize("source", [source_param(s) for s in SOURCES])
@pytest.mark.parametrize("phase,dest,verify,point", PHASES, ids=[f"{p}-{d}" for p, d, _, _ in PHASES])
def test_sigterm_in_each_phase(make_site, source, phase, dest, verify, point):
    site = make_site(source, dest, verify)
    result = site.interrupt_at(point, "run", *JOBS, *SERIAL, "--from", START, "--to", END)
    assert_interrupted(result)
    assert_batch_stopped(site)
    if phase in ("export", "upload"):
        assert site.archives("first") == []  # nothing under a final name that is not complete
    assert site.temporaries() == []  # the connection was up: the temporary was removed
    assert_resumes(site)


@pytest.mark.parametrize(
    "sig,point,dest",
    [
        (signal.SIGINT, "export", "local"),
        (signal.SIGHUP, "upload", "sftp"),
        (signal.SIGINT, "sha256", "sftp"),
    ],
    ids=["SIGINT-export-local", "SIGHUP-upload-sftp", "SIGINT-sha256sum-sftp"],
)
def test_other_signals(make_site, sig, point, dest):
    site = make_site("duckdb", dest)
    result = site.interrupt_at(point, "run", *JOBS, *SERIAL, "--from", START, "--to", END, sig=sig)
    assert_interrupted(result, sig)
    assert_batch_stopped(site, sig)
    assert site.temporaries() == []
    assert_resumes(site)


def test_sigterm_while_postgres_blocks_in_the_server(make_site, postgres):
    """The export query waits for a table lock the test holds: the signal lands inside the
    driver's wait for the server, and tableship still stops at once, without waiting for
    the lock."""
    import psycopg

    site = make_site("postgres", "local")
    with (
        psycopg.connect(postgres.dsn, autocommit=False) as locker,
        psycopg.connect(postgres.dsn, autocommit=True) as watcher,
    ):  # a fresh stats snapshot per poll
        locker.execute("LOCK TABLE sigtest.traffic IN ACCESS EXCLUSIVE MODE")

        def query_waits() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                ("%sigtest%traffic%",),
            ).fetchone()
            return row[0] > 0

        proc = site.start("run", *JOBS, *SERIAL, "--from", START, "--to", END)
        try:
            wait_for(query_waits, 120, "the export query to wait for the lock", proc)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)  # still holding the lock
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        locker.rollback()
    result = Result(site.argv("run"), proc.returncode, out, err)
    assert_interrupted(result)
    assert_batch_stopped(site)
    assert_resumes(site)


# ---------------------------------------------------------------- prune, verify, restore, ls


def backed_up(make_site, dest: str, **job_extra) -> Site:
    site = make_site("duckdb", dest, **job_extra)
    for start, end in (EARLIER, (START, END)):
        result = site.cli("run", "first", "--from", start, "--to", end)
        assert result.rc == 0, str(result)
    assert len(site.archives("first")) == 2
    return site


@pytest.mark.parametrize("dest", ["local", "sftp"])
def test_sigterm_in_verify(make_site, dest):
    site = backed_up(make_site, dest)
    assert_interrupted(site.interrupt_at("sha256", "verify", "first"))
    result = site.cli("verify", "first")
    assert result.rc == 0 and result.stdout.count("OK ") >= 2, str(result)


@pytest.mark.parametrize("dest", ["local", "sftp"])
def test_sigterm_in_restore(make_site, dest, tmp_path):
    site = backed_up(make_site, dest)
    out = tmp_path / "restored"
    out.mkdir()
    point = "get" if dest == "local" else "read-back"
    assert_interrupted(
        site.interrupt_at(point, "restore", "first", "--window", f"{START}..{END}", "--to", str(out))
    )
    assert list(out.iterdir()) == []  # no partial CSV left behind
    result = site.cli("restore", "first", "--window", f"{START}..{END}", "--to", str(out))
    assert result.rc == 0, str(result)
    [csv] = list(out.iterdir())
    assert csv.read_bytes() == decompress(site.archives("first")[-1])


def test_sigterm_in_a_range_restore_rolls_the_overlapping_load_back(make_site, tmp_path):
    """SIGTERM after the first archive committed, the second loading beside it (DuckDB loads two
    at once): exit 143, the second one rolled back, and the re-run loads it, no row twice."""
    site = backed_up(make_site, "local")
    db = tmp_path / "r.duckdb"
    args = ("restore", "first", "--from", EARLIER[0][:7], "--to", START[:7], "--load", f"{db}:t")
    assert_interrupted(site.interrupt_at("restore-next", *args))
    con = duckdb.connect(str(db))
    first = con.execute("SELECT count(*) FROM t").fetchone()[0]
    con.close()
    result = site.cli(*args)
    assert result.rc == 0 and "1 already loaded by an earlier run" in result.stdout, str(result)
    manifests = [json.loads(Path(f"{a}.manifest.json").read_text()) for a in site.archives("first")]
    con = duckdb.connect(str(db))
    total, distinct = con.execute("SELECT count(*), count(DISTINCT t) FROM t").fetchone()
    con.close()
    assert 0 < first < total == sum(m["rows"] for m in manifests)
    assert distinct == total  # no row twice


@pytest.mark.parametrize("dest", ["local", "sftp"])
def test_sigterm_in_ls(make_site, dest):
    site = backed_up(make_site, dest)
    assert_interrupted(site.interrupt_at("list", "ls", "first"))
    result = site.cli("ls", "first")
    assert result.rc == 0 and "20240101" in result.stdout, str(result)


@pytest.mark.parametrize("dest", ["local", "sftp"])
def test_sigterm_in_prune(make_site, dest):
    site = backed_up(make_site, dest, retention={"keep_last": 1})
    assert_interrupted(site.interrupt_at("prune", "prune", "first"))
    assert len(site.archives("first")) == 2  # stopped before deleting anything
    result = site.cli("prune", "first")
    assert result.rc == 0, str(result)
    [kept] = site.archives("first")
    assert "20240101" in kept.name
    assert sorted(p.name for p in kept.parent.iterdir()) == sorted(
        [kept.name, kept.name + ".sha256", kept.name + ".manifest.json"]
    )
