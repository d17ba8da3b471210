"""Throw-away PostgreSQL cluster fixture (``postgres``) on 127.0.0.1.

``initdb`` + ``pg_ctl`` (from PATH or /usr/lib/postgresql/*/bin; Debian's
``postgresql`` package is installed if missing) run as the unprivileged
``postgres`` system user when we are root (PostgreSQL refuses to run as
root).  Trust auth, TCP on 127.0.0.1:PORT, unix socket in the temp dir, a
``warehouse`` database.  Stopped with ``pg_ctl stop -m immediate``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.servers import (
    LOCALHOST,
    apt_install,
    free_port,
    is_root,
    log_tail,
    make_base_dir,
    missing,
    register_cleanup,
    remove_dir,
    unregister_cleanup,
)

PG_OS_USER = "postgres"
SUPERUSER = "postgres"
DBNAME = "warehouse"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    dbname: str
    url: str  # postgresql+psycopg://USER@127.0.0.1:PORT/warehouse
    socket_dir: Path
    data_dir: Path
    bindir: Path
    log_path: Path

    def url_for(self, dbname: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def dsn(self) -> str:
        """libpq connection string (for psycopg.connect)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    def psql(self, sql: str, dbname: str | None = None) -> str:
        """Run SQL with the cluster's own ``psql``; returns stdout."""
        proc = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                dbname or self.dbname,
                "-c",
                sql,
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr}")
        return proc.stdout


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path)) or (0,)


def _find_bindir() -> Path | None:
    candidates: list[Path] = []
    for tool in ("pg_ctl", "initdb"):
        found = shutil.which(tool)
        if found:
            candidates.append(Path(os.path.realpath(found)).parent)
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        candidates.append(Path(d))
    for d in candidates:
        if (d / "initdb").exists() and (d / "pg_ctl").exists() and (d / "postgres").exists():
            return d
    return None


def _ensure_os_user() -> None:
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/sh", PG_OS_USER],
            capture_output=True,
        )
        try:
            pwd.getpwnam(PG_OS_USER)
        except KeyError:
            missing(f"cannot create the unprivileged {PG_OS_USER!r} user to run PostgreSQL")


def _as_pg_user(argv: Sequence[str]) -> list[str]:
    if not is_root():
        return list(argv)
    if shutil.which("runuser"):
        return ["runuser", "-u", PG_OS_USER, "--", *argv]
    import shlex

    return ["su", PG_OS_USER, "-s", "/bin/sh", "-c", shlex.join(argv)]


def _run(argv: Sequence[str], what: str, log: Path, timeout: float = 300) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/", env=_pg_env())
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}\n"
            f"server log tail:\n{log_tail(log)}"
        )


def _pg_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C.UTF-8")
    env["LANG"] = env["LC_ALL"]
    return env


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Session-wide throw-away PostgreSQL with a ``warehouse`` database."""
    try:
        with running_postgres() as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL (the fixture's; benchmarks use it directly). RuntimeError if
    it cannot start."""
    bindir = _find_bindir()
    if bindir is None:
        ok, out = apt_install("postgresql")
        bindir = _find_bindir()
        if bindir is None:
            missing(f"PostgreSQL server binaries not found and not installable: {out[-1500:]}")
    assert bindir is not None
    if is_root():
        _ensure_os_user()

    base = make_base_dir("postgres")
    data = base / "data"
    sock = base / "sock"
    log = base / "postgres.log"
    started = False

    def stop() -> None:
        subprocess.run(
            _as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=120,
            cwd="/",
        )

    try:
        data.mkdir(mode=0o700)
        sock.mkdir(mode=0o755)
        log.touch()
        if is_root():
            pw = pwd.getpwnam(PG_OS_USER)
            for p in (base, data, sock, log):
                os.chown(p, pw.pw_uid, pw.pw_gid)

        t0 = time.monotonic()
        _run(
            _as_pg_user(
                [
                    str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                    "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C",
                ]
            ),
            "initdb",
            log,
        )  # fmt: skip
        for attempt in range(3):  # another process may grab the free port first
            port = free_port()
            opts = (
                f"-c listen_addresses={LOCALHOST} -p {port} -k {sock} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=100 -c shared_buffers=64MB"
            )
            try:
                _run(
                    _as_pg_user(
                        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts,
                         "-w", "-t", "120", "start"]
                    ),
                    "pg_ctl start",
                    log,
                )  # fmt: skip
                break
            except RuntimeError:
                if attempt == 2 or "already in use" not in log_tail(log, 20):
                    raise
        started = True
        register_cleanup(stop)
        createdb = bindir / "createdb"
        _run(
            [str(createdb), "-h", LOCALHOST, "-p", str(port), "-U", SUPERUSER, DBNAME],
            "createdb warehouse",
            log,
        )
        startup = time.monotonic() - t0
        server = PostgresServer(
            host=LOCALHOST,
            port=port,
            user=SUPERUSER,
            dbname=DBNAME,
            url=f"postgresql+psycopg://{SUPERUSER}@{LOCALHOST}:{port}/{DBNAME}",
            socket_dir=sock,
            data_dir=data,
            bindir=bindir,
            log_path=log,
        )
        print(f"\n[postgres fixture] ready on {LOCALHOST}:{port} in {startup:.1f}s")
        yield server
    finally:
        if started:
            stop()
            unregister_cleanup(stop)
        remove_dir(base)


_databases = iter(range(1, 1_000_000))


def fresh_database(server: PostgresServer, prefix: str = "ledger") -> str:
    """A new empty database on ``server``; its libpq URL (``postgresql://user@host:port/name``)."""
    name = f"{prefix}_{os.getpid()}_{next(_databases)}"
    server.psql(f"CREATE DATABASE {name}")
    return f"postgresql://{server.user}@{server.host}:{server.port}/{name}"
