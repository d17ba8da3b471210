"""Real HDFS with WebHDFS fixture (``webhdfs``): a Hadoop NameNode and DataNode on 127.0.0.1.

No registry this project reaches serves a current Hadoop server (the pyspark wheels of
3.x/4.x ship only the HDFS *client*; Maven Central is not reachable here), so the fixture
runs the last Hadoop whose server jars a PyPI package ships: the ``pyspark==2.4.8``
source distribution carries Hadoop 2.7.3 (``hadoop-hdfs-2.7.3.jar``: NameNode, DataNode
and the WebHDFS REST server) with Jetty 6. Its NameNode's WebHDFS needs Jersey 1, which
Spark leaves out: Debian's ``libjersey1-*-java`` packages supply it. The jars are
extracted once into ``~/.cache/tableship-tests/hadoop-2.7.3`` (pip's own download cache
keeps the 210 MB archive). The web UI's static files are stripped from Spark's copy of
the jar: empty ``webapps/*`` folders stand in (the REST API does not use them).

Started once per session (format, NameNode, DataNode; ~10-20 s, two JVMs of 256 MiB),
permissions off, simple authentication (``user.name``). ``WebHdfsServer.url`` is the
WebHDFS base ``http://127.0.0.1:PORT``; ``rpc`` the ``hdfs://127.0.0.1:PORT`` the Spark
fixture's Hadoop 3 client reads (its shaded ``webhdfs://`` client lacks a Jersey class).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.servers import (
    LOCALHOST,
    apt_install,
    free_port,
    log_tail,
    make_base_dir,
    missing,
    remove_dir,
    spawn,
    stop_process,
    wait_until,
)
from tests.servers.hs2 import _find_java_home

PYSPARK_WITH_HADOOP_SERVER = "pyspark==2.4.8"
CACHE = Path.home() / ".cache" / "tableship-tests" / "hadoop-2.7.3"
JERSEY1 = ("libjersey1-core-java", "libjersey1-server-java", "libjersey1-servlet-java")
JERSEY1_JARS = ("jersey1-core.jar", "jersey1-server.jar", "jersey1-servlet.jar", "jsr311-api.jar")
READY_TIMEOUT = 180.0


@dataclass(frozen=True)
class WebHdfsServer:
    host: str
    http_port: int
    rpc_port: int
    user: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def rpc(self) -> str:
        return f"hdfs://{self.host}:{self.rpc_port}"

    def op(self, method: str, path: str, op: str, **params: str) -> dict:
        """One WebHDFS call (redirects followed), its JSON answer ({} when empty)."""
        query = "&".join(f"{k}={v}" for k, v in {"op": op, "user.name": self.user, **params}.items())
        req = urllib.request.Request(f"{self.url}/webhdfs/v1{path}?{query}", method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else {}

    def listdir(self, path: str) -> list[str]:
        try:
            got = self.op("GET", path, "LISTSTATUS")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        return sorted(s["pathSuffix"] for s in got["FileStatuses"]["FileStatus"])


def _jars() -> list[str]:
    """Hadoop 2.7.3's server jars (from the pyspark 2.4.8 sdist) and Debian's Jersey 1."""
    done = CACHE / ".complete"
    if not done.exists():
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    PYSPARK_WITH_HADOOP_SERVER,
                    "-d",
                    tmp,
                ],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            sdists = glob.glob(f"{tmp}/pyspark-*.tar.gz")
            if proc.returncode != 0 or not sdists:
                missing(f"pip download {PYSPARK_WITH_HADOOP_SERVER} failed: {proc.stderr[-1500:]}")
            CACHE.mkdir(parents=True, exist_ok=True)
            with tarfile.open(sdists[0]) as tar:
                for m in tar.getmembers():
                    if "/deps/jars/" in m.name and m.name.endswith(".jar") and m.isfile():
                        src = tar.extractfile(m)
                        assert src is not None
                        (CACHE / Path(m.name).name).write_bytes(src.read())
        done.touch()
    if not all(Path("/usr/share/java", j).exists() for j in JERSEY1_JARS):
        ok, out = apt_install(*JERSEY1)
        if not ok or not all(Path("/usr/share/java", j).exists() for j in JERSEY1_JARS):
            missing(f"apt-get install {' '.join(JERSEY1)} failed: {out[-1500:]}")
    # Spark's Jersey 2 and JAX-RS 2 would shadow Jersey 1's javax.ws.rs classes
    skip = ("jersey-", "javax.ws.rs-api")
    jars = [str(p) for p in sorted(CACHE.glob("*.jar")) if not p.name.startswith(skip)]
    return jars + [f"/usr/share/java/{j}" for j in JERSEY1_JARS]


def _write_conf(conf: Path, data: Path, ports: dict[str, int]) -> None:
    props = {
        "fs.defaultFS": f"hdfs://{LOCALHOST}:{ports['rpc']}",
        "hadoop.tmp.dir": str(data / "tmp"),
    }
    site = {
        "dfs.namenode.name.dir": str(data / "name"),
        "dfs.datanode.data.dir": str(data / "data"),
        "dfs.replication": "1",
        "dfs.webhdfs.enabled": "true",
        "dfs.permissions.enabled": "false",
        "dfs.namenode.rpc-address": f"{LOCALHOST}:{ports['rpc']}",
        "dfs.namenode.http-address": f"{LOCALHOST}:{ports['http']}",
        "dfs.namenode.secondary.http-address": f"{LOCALHOST}:0",
        "dfs.datanode.address": f"{LOCALHOST}:{ports['dn']}",
        "dfs.datanode.http.address": f"{LOCALHOST}:{ports['dn_http']}",
        "dfs.datanode.ipc.address": f"{LOCALHOST}:{ports['dn_ipc']}",
        "dfs.datanode.hostname": LOCALHOST,
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
        "dfs.datanode.du.reserved": "0",
        "dfs.namenode.resource.du.reserved": "0",
    }

    def xml(values: dict[str, str]) -> str:
        body = "".join(
            f"<property><name>{k}</name><value>{v}</value></property>\n" for k, v in values.items()
        )
        return f"<?xml version='1.0'?>\n<configuration>\n{body}</configuration>\n"

    conf.mkdir(parents=True)
    (conf / "core-site.xml").write_text(xml(props))
    (conf / "hdfs-site.xml").write_text(xml(site))
    (conf / "log4j.properties").write_text(
        "log4j.rootLogger=INFO,console\nlog4j.appender.console=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.console.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.console.layout.ConversionPattern=%d %p %c{1}: %m%n\n"
    )
    for app in ("hdfs", "datanode", "secondary", "static"):  # stripped from Spark's hadoop-hdfs jar
        web = conf / "webapps" / app / "WEB-INF"
        web.mkdir(parents=True)
        (web / "web.xml").write_text('<?xml version="1.0"?><web-app version="2.5"></web-app>\n')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # CREATE answers 307 with the DataNode's address: sent there by hand


def _writable(server: WebHdfsServer) -> bool:
    """A live DataNode: a small file can be created (NameNode out of safe mode, block placed)."""
    opener = urllib.request.build_opener(_NoRedirect)
    url = f"{server.url}/webhdfs/v1/tmp/.probe?op=CREATE&overwrite=true&user.name={server.user}"
    with contextlib.suppress(urllib.error.URLError, OSError):
        try:
            opener.open(urllib.request.Request(url, method="PUT"), timeout=10)
            return False
        except urllib.error.HTTPError as exc:
            if exc.code != 307:
                return False
            location = exc.headers["Location"]
        with opener.open(urllib.request.Request(location, method="PUT", data=b"ok"), timeout=10) as resp:
            return resp.status == 201
    return False


@contextlib.contextmanager
def running_webhdfs() -> Iterator[WebHdfsServer]:
    java = _find_java_home() / "bin" / "java"
    classpath_jars = _jars()
    base = make_base_dir("webhdfs")
    ports = {k: free_port() for k in ("rpc", "http", "dn", "dn_http", "dn_ipc")}
    conf = base / "conf"
    _write_conf(conf, base, ports)
    cp = os.pathsep.join([str(conf), *classpath_jars])
    env = dict(os.environ, HADOOP_CONF_DIR=str(conf))
    jvm = [str(java), "-Xmx256m", "-Djava.net.preferIPv4Stack=true", "-cp", cp]
    procs: list[subprocess.Popen] = []
    t0 = time.monotonic()
    try:
        fmt = subprocess.run(
            [*jvm, "org.apache.hadoop.hdfs.server.namenode.NameNode", "-format", "-nonInteractive"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        if fmt.returncode != 0:
            pytest.fail(f"hdfs namenode -format failed:\n{(fmt.stdout + fmt.stderr)[-3000:]}", pytrace=False)
        for name, cls in (
            ("namenode", "org.apache.hadoop.hdfs.server.namenode.NameNode"),
            ("datanode", "org.apache.hadoop.hdfs.server.datanode.DataNode"),
        ):
            procs.append(spawn([*jvm, cls], base / f"{name}.log", env=env))
        server = WebHdfsServer(LOCALHOST, ports["http"], ports["rpc"], "tableship")
        if not wait_until(
            lambda: _writable(server), READY_TIMEOUT, 0.5, alive=lambda: all(p.poll() is None for p in procs)
        ):
            pytest.fail(
                f"HDFS did not accept a write within {READY_TIMEOUT:.0f}s:\n"
                f"namenode: {log_tail(base / 'namenode.log', 30)}\n"
                f"datanode: {log_tail(base / 'datanode.log', 30)}",
                pytrace=False,
            )
        print(f"\n[webhdfs fixture] ready on {server.url} (rpc {server.rpc}) in {time.monotonic() - t0:.1f}s")
        yield server
    finally:
        for p in reversed(procs):
            stop_process(p)
        remove_dir(base)


@pytest.fixture(scope="session")
def webhdfs() -> Iterator[WebHdfsServer]:
    with running_webhdfs() as server:
        yield server
