"""Real HiveServer2 endpoint fixture (``hs2``): Spark's Thrift server.

The pip ``pyspark`` package ships ``spark-submit`` and the
``spark-hive-thriftserver`` jar (pyspark 3.5.x and 4.x both do), so this is
a real HS2 Thrift endpoint speaking the protocol impyla uses, started as::

    spark-submit --class org.apache.spark.sql.hive.thriftserver.HiveThriftServer2 \\
        spark-internal --hiveconf hive.server2.thrift.bind.host=127.0.0.1 ...

with a temp warehouse dir and a temp embedded Derby metastore.  Started once
per test session (it takes seconds and ~1 GiB).  ``hs2`` uses
``hive.server2.authentication=NOSASL`` (impyla ``auth_mechanism="NOSASL"``);
``hs2_sasl`` (only started if a test asks for it) uses ``NONE``, i.e. SASL
PLAIN with any user/password (impyla ``auth_mechanism="PLAIN"``).

Connecting with the wrong mechanism fails fast on both: impyla raises
``thrift.transport.TTransport.TTransportException: TSocket read 0 bytes``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.servers import (
    LOCALHOST,
    apt_install,
    ensure_module,
    free_port,
    log_tail,
    make_base_dir,
    missing,
    remove_dir,
    spawn,
    stop_process,
    tcp_open,
    wait_until,
)

READY_TIMEOUT = 180.0
THRIFT_SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


@dataclass(frozen=True)
class Hs2Server:
    host: str
    port: int
    auth_mechanism: str  # "NOSASL" for hs2, "PLAIN" for hs2_sasl
    hive_authentication: str  # the server's hive.server2.authentication
    user: str | None  # what to pass to impyla (PLAIN needs some user)
    password: str | None
    warehouse_dir: Path
    log_path: Path
    resources_dir: Path  # where each session's downloaded-resources folder is made
    startup_seconds: float
    spark_version: str
    _proc: Any = field(repr=False, compare=False)

    def connect(self, **kwargs: Any):
        """A new impyla DB-API connection to this server."""
        from impala.dbapi import connect

        params: dict[str, Any] = dict(
            host=self.host, port=self.port, auth_mechanism=self.auth_mechanism, timeout=60
        )
        if self.user is not None:
            params.update(user=self.user, password=self.password)
        params.update(kwargs)
        return connect(**params)

    def execute(self, sql: str, parameters: Any = None) -> list[tuple] | None:
        """Run one statement; return its rows, or None for DDL/DML."""
        conn = self.connect()
        try:
            cur = conn.cursor()
            try:
                cur.execute(sql, parameters)
                if not cur.description:
                    return None
                try:
                    return list(cur.fetchall())
                except IndexError:
                    # Spark answers DDL/DML with a one-column ("Result")
                    # schema but a rowset with zero columns, on which
                    # impyla's fetch raises IndexError: no rows.
                    return None
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def execute_many(self, *statements: str) -> None:
        for sql in statements:
            self.execute(sql)

    @contextlib.contextmanager
    def refusing_sessions(self) -> Iterator[None]:
        """Inside, every new session fails on the server's side for a reason that is not
        authentication: the folder sessions make their resources folder in is a file, so
        OpenSession answers ``Failed to open new session: … Couldn't create directory …``.
        Sessions opened before are not touched; the folder is back on leaving."""
        aside = self.resources_dir.with_name(self.resources_dir.name + ".aside")
        self.resources_dir.mkdir(exist_ok=True)
        self.resources_dir.rename(aside)
        self.resources_dir.write_text("a file where HiveServer2 wants a folder\n")
        try:
            yield
        finally:
            self.resources_dir.unlink()
            aside.rename(self.resources_dir)

    def log_tail(self, lines: int = 80) -> str:
        return log_tail(self.log_path, lines)

    @property
    def running(self) -> bool:
        return self._proc.poll() is None


def _find_spark() -> tuple[Path, str]:
    pyspark = ensure_module("pyspark", "pyspark>=3.5")
    home = Path(pyspark.__file__).resolve().parent
    version = getattr(pyspark, "__version__", "?")
    submit = home / "bin" / "spark-submit"
    if not submit.exists():
        missing(f"pyspark {version} at {home} has no bin/spark-submit")
    if not glob.glob(str(home / "jars" / "spark-hive-thriftserver*.jar")):
        missing(
            f"pyspark {version} at {home} does not ship spark-hive-thriftserver*.jar; "
            "install a pyspark that does (3.5.x and 4.x do)"
        )
    return home, version


def _find_java_home() -> Path:
    java = shutil.which("java")
    if java is None and os.environ.get("JAVA_HOME"):
        cand = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        if cand.exists():
            java = str(cand)
    if java is None:
        ok, out = apt_install("openjdk-17-jre-headless")
        java = shutil.which("java")
        if java is None:
            missing(f"no `java` on PATH and openjdk-17-jre-headless could not be installed: {out[-1500:]}")
    assert java is not None
    return Path(os.path.realpath(java)).parent.parent


def _query_ok(host: str, port: int, mechanism: str, user: str | None, password: str | None) -> bool:
    from impala.dbapi import connect

    kw: dict[str, Any] = dict(host=host, port=port, auth_mechanism=mechanism, timeout=30)
    if user is not None:
        kw.update(user=user, password=password)
    conn = connect(**kw)
    try:
        cur = conn.cursor()
        try:
            cur.execute("SELECT 1")
            return cur.fetchall() == [(1,)]
        finally:
            with contextlib.suppress(Exception):
                cur.close()
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _start_hs2(authentication: str) -> Iterator[Hs2Server]:
    spark_home, version = _find_spark()
    java_home = _find_java_home()
    ensure_module("impala.dbapi", "impyla>=0.19")

    mechanism = "NOSASL" if authentication == "NOSASL" else "PLAIN"
    user, password = (None, None) if mechanism == "NOSASL" else ("tableship", "unused-password")

    base = make_base_dir(f"hs2-{authentication.lower()}")
    proc = None
    try:
        tmp = base / "tmp"
        warehouse = base / "warehouse"
        conf_dir = base / "conf"
        for d in (tmp, warehouse, conf_dir, base / "derby", base / "local"):
            d.mkdir()
        log = base / "hs2.log"
        resources = tmp / "hive-resources"
        port = free_port()

        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SPARK_", "PYSPARK_", "HADOOP_", "HIVE_"))
        }
        env.update(
            SPARK_HOME=str(spark_home),
            JAVA_HOME=str(java_home),
            SPARK_CONF_DIR=str(conf_dir),  # ignore any user/site spark config
            SPARK_LOCAL_IP=LOCALHOST,
            SPARK_LOCAL_HOSTNAME="localhost",
            SPARK_NO_DAEMONIZE="1",
        )
        env["PATH"] = f"{java_home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        java_opts = (
            f"-Dderby.system.home={base / 'derby'} -Djava.io.tmpdir={tmp} -XX:-UsePerfData -XX:+UseSerialGC"
        )
        argv = [
            str(spark_home / "bin" / "spark-submit"),
            "--master", "local[2]",
            "--name", f"tableship-test-hs2-{authentication.lower()}",
            "--driver-memory", "1g",
            "--conf", "spark.ui.enabled=false",
            "--conf", f"spark.sql.warehouse.dir={warehouse}",
            "--conf", f"spark.local.dir={base / 'local'}",
            "--conf", f"spark.driver.extraJavaOptions={java_opts}",
            "--conf", "spark.driver.bindAddress=127.0.0.1",
            "--conf", "spark.driver.host=127.0.0.1",
            "--conf", "spark.sql.shuffle.partitions=2",
            "--conf", "spark.sql.session.timeZone=UTC",
            "--class", THRIFT_SERVER_CLASS,
            "spark-internal",
            "--hiveconf", f"hive.server2.thrift.bind.host={LOCALHOST}",
            "--hiveconf", f"hive.server2.thrift.port={port}",
            "--hiveconf", f"hive.server2.authentication={authentication}",
            "--hiveconf", "hive.server2.transport.mode=binary",
            "--hiveconf", f"hive.exec.scratchdir={tmp / 'hive-scratch'}",
            "--hiveconf", f"hive.exec.local.scratchdir={tmp / 'hive-local'}",
            # one folder per session (Hive's default shape): closing a session deletes its folder,
            # and a shared one raced with the next session's creation (a killed client's cleanup)
            "--hiveconf",
            f"hive.downloaded.resources.dir={resources}/" "${hive.session.id}_resources",
        ]  # fmt: skip

        t0 = time.monotonic()
        proc = spawn(argv, log, env=env, cwd=base)
        alive = lambda: proc.poll() is None  # noqa: E731
        if not wait_until(lambda: tcp_open(LOCALHOST, port), READY_TIMEOUT, 0.5, alive):
            _fail(f"HiveServer2 ({authentication}) did not open {LOCALHOST}:{port}", proc, log, t0)
        remaining = max(10.0, READY_TIMEOUT - (time.monotonic() - t0))
        if not wait_until(
            lambda: _query_ok(LOCALHOST, port, mechanism, user, password), remaining, 1.0, alive
        ):
            _fail(f"HiveServer2 ({authentication}) did not answer SELECT 1", proc, log, t0)
        startup = time.monotonic() - t0
        print(f"\n[hs2 fixture] {authentication} HiveServer2 (pyspark {version}) ready on "
              f"{LOCALHOST}:{port} in {startup:.1f}s")  # fmt: skip
        yield Hs2Server(
            host=LOCALHOST,
            port=port,
            auth_mechanism=mechanism,
            hive_authentication=authentication,
            user=user,
            password=password,
            warehouse_dir=warehouse,
            log_path=log,
            resources_dir=resources,
            startup_seconds=startup,
            spark_version=version,
            _proc=proc,
        )
    finally:
        stop_process(proc, timeout=30)
        remove_dir(base)


def _fail(what: str, proc, log: Path, t0: float) -> None:
    state = "running" if proc.poll() is None else f"exited with {proc.returncode}"
    pytest.fail(
        f"{what} after {time.monotonic() - t0:.0f}s (process {state}); log {log} tail:\n{log_tail(log, 80)}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def hs2() -> Iterator[Hs2Server]:
    """Session-wide real HiveServer2 (Spark Thrift server), NOSASL auth."""
    yield from _start_hs2("NOSASL")


@pytest.fixture(scope="session")
def hs2_sasl() -> Iterator[Hs2Server]:
    """A second HiveServer2 with ``hive.server2.authentication=NONE`` (SASL
    PLAIN, any user/password).  Only started when a test asks for it."""
    yield from _start_hs2("NONE")
