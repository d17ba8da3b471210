"""The SFTP destination end to end through the CLI, against the real OpenSSH server
fixture (tests/servers/sshd.py): issue 3's tests 1–6 (7 is
tests/contract/test_destinations.py, which runs the same contract suite on ``local`` and
``sftp``).

The sshd runs on this machine, so the tests read and damage the "remote" files directly
on disk. For a cut in the middle of an upload, the client talks to sshd through a small
throttling TCP proxy (``SlowProxy``): the upload then lasts seconds, long enough for
``sshd.kill_sessions()`` to land during it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.servers import descendants_of, missing

from tableship.cli.demo import create_demo_warehouse
from tableship.destinations.base import TMP_RE

TODAY = dt.date(2026, 6, 15)
RUN_DATE = TODAY.isoformat()
REMOTE_DIR = "customer_traffic"
ARCHIVE = "customer_traffic_20260501_20260531.csv.gz"  # window: month × 1 before RUN_DATE
BIG_ARCHIVE = "customer_traffic_20250601_20260531.csv"  # month × 12, uncompressed: ~14 MB
# an uncompressed archive has a name without a compression extension (config validation)
UNCOMPRESSED = 'compression = { codec = "none" }\nfile_name = "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv"'
FAST_RETRIES = "{ attempts = 2, initial_delay = 0.2, max_delay = 0.5 }"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    create_demo_warehouse(path, rows=20_000, today=TODAY)
    return path


@pytest.fixture(scope="module")
def big_warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("whbig") / "warehouse.duckdb"
    create_demo_warehouse(path, rows=100_000, today=TODAY)
    return path


@pytest.fixture
def remote(sshd) -> Path:
    path = sshd.root_dir / f"backups-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


@dataclass
class Site:
    dir: Path
    cfg: Path
    remote: Path  # the destination's root, as seen on this machine

    @property
    def archive(self) -> Path:
        return self.remote / REMOTE_DIR / ARCHIVE

    @property
    def staging(self) -> Path:
        return self.dir / "state" / "staging"

    def run(self, *args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tableship", "--config", str(self.cfg), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tableship", "--config", str(self.cfg), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def make_site(
    tmp_path: Path,
    sshd,
    warehouse: Path,
    remote: Path,
    *,
    user: str | None = None,
    key: Path | str | None = None,
    known_hosts: Path | None = None,
    port: int | None = None,
    dest_extra: str = "",
    defaults_extra: str = "",
    retries: str = FAST_RETRIES,
    window: str = '{ unit = "month", count = 1 }',
) -> Site:
    cfg = tmp_path / "tableship.toml"
    cfg.write_text(f"""
[settings]
state_dir = "state"
log_file = "state/tableship.core.log"

[sources.wh]
type = "duckdb"
path = "{warehouse}"

[destinations.edgenode2]
type = "sftp"
host = "{sshd.host}"
port = {port or sshd.port}
user = "{user or sshd.user}"
{"" if key == "none" else f'key_file = "{key or sshd.client_key}"'}
known_hosts = "{known_hosts or sshd.known_hosts}"
path = "{remote}"
connect_timeout = 5
retries = {retries}
{dest_extra}

[defaults]
source = "wh"
destination = "edgenode2"
window = {window}
{defaults_extra}

[jobs.customer_traffic]
table = "mnaas.customer_traffic"
""")
    return Site(tmp_path, cfg, remote)


def one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 1, exactly one ``Error: <what> — <what to do>`` line, no traceback."""
    out = f"rc={proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 1, out
    assert "Traceback" not in proc.stderr + proc.stdout, out
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, out
    assert " — " in errors[0], errors[0]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"rc={proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def remote_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def manifest(site: Site, name: str = ARCHIVE) -> dict:
    return json.loads((site.remote / REMOTE_DIR / f"{name}.manifest.json").read_text())


def assert_delivered(site: Site, name: str = ARCHIVE) -> dict:
    """Archive + sidecars under path/remote_dir, nothing else, checksums consistent."""
    folder = site.remote / REMOTE_DIR
    assert sorted(os.listdir(folder)) == sorted([name, f"{name}.sha256", f"{name}.manifest.json"])
    digest = sha256_of(folder / name)
    assert (folder / f"{name}.sha256").read_text() == f"{digest}  {name}\n"
    m = manifest(site, name)
    assert m["sha256"] == digest and m["archive_bytes"] == (folder / name).stat().st_size
    return m


def staged_files(site: Site) -> list[Path]:
    return [p for p in site.staging.rglob("*") if p.is_file()] if site.staging.exists() else []


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, capture_output=True
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


class SlowProxy:
    """127.0.0.1 TCP proxy to sshd; client→server bytes limited to ``rate`` bytes/s."""

    def __init__(self, target_port: int, rate: float):
        self.target = ("127.0.0.1", target_port)
        self.rate = rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            self.socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, self.rate), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, rate: float | None) -> None:
        start, sent = time.monotonic(), 0
        try:
            while data := src.recv(16384):
                if rate:
                    sent += len(data)
                    delay = start + sent / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def slow_proxy(sshd, tmp_path):
    proxy = SlowProxy(sshd.port, rate=4 * 2**20)
    known = tmp_path / "known_hosts_proxy"
    known.write_text(f"[127.0.0.1]:{proxy.port} {sshd.host_pub_key}\n")
    proxy.known_hosts = known
    yield proxy
    proxy.close()


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"tableship exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def ended(pid: int) -> bool:
    """The process is gone or a zombie (dead, not yet reaped)."""
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return True


# ---------------------------------------------------------------- 1. end to end


def test_end_to_end_delivery_through_the_cli(tmp_path, sshd, warehouse, remote):
    # a fixed level: only then is a re-export byte-identical (the adaptive default is not, docs/format.md)
    site = make_site(
        tmp_path, sshd, warehouse, remote, defaults_extra='compression = { codec = "gzip", level = 2 }'
    )
    proc = ok(site.run("run", "--date", RUN_DATE))
    assert f"{REMOTE_DIR}/{ARCHIVE}" in proc.stdout

    m = assert_delivered(site)
    assert m["verify_method"] == "sha256sum"
    assert m["window"] == {"start": "2026-05-01", "end": "2026-05-31"} and m["rows"] > 1000
    assert "sha256sum" in proc.stderr  # the log says how it verified
    # the backup host's own sha256sum -c agrees
    check = subprocess.run(
        [*sshd.ssh_args(), f"cd {site.remote / REMOTE_DIR} && sha256sum -c {ARCHIVE}.sha256"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and f"{ARCHIVE}: OK" in check.stdout, check.stdout + check.stderr
    assert staged_files(site) == []

    # check-destination: every check OK
    doc = ok(site.run("check-destination", "edgenode2"))
    lines = doc.stdout.splitlines()
    assert lines and all(ln.startswith("OK  ") for ln in lines), doc.stdout
    for name in (
        "connect",
        "host key",
        "authentication",
        "root folder",
        "write permission",
        "free space",
        "verification",
    ):
        assert any(ln.startswith(f"OK  {name}  ") for ln in lines), (name, doc.stdout)
    assert "sha256sum" in doc.stdout
    assert remote_files(site.remote) == [
        f"{REMOTE_DIR}/{n}" for n in sorted([ARCHIVE, f"{ARCHIVE}.manifest.json", f"{ARCHIVE}.sha256"])
    ]

    # a second run of the same window finds the archive in place and does not upload it again
    again = ok(site.run("run", "--date", RUN_DATE))
    assert "already on the destination with the same sha256" in again.stderr
    assert_delivered(site)


def test_check_destination_reports_failures(tmp_path, sshd, warehouse, remote):
    site = make_site(tmp_path, sshd, warehouse, remote / "no-such-root")
    proc = site.run("check-destination", "edgenode2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"^FAIL root folder .*does not exist", proc.stdout, re.M), proc.stdout
    assert re.search(r"^OK  host key  ", proc.stdout, re.M), proc.stdout
    unknown = site.run("check-destination", "nope")
    assert unknown.returncode == 2 and "unknown destination 'nope'" in unknown.stderr


# ---------------------------------------------------------------- 2. server down, then back


def test_server_down_at_start_then_back_while_retrying(tmp_path, sshd_fresh, warehouse, remote):
    sshd = sshd_fresh
    site = make_site(
        tmp_path, sshd, warehouse, remote, retries="{ attempts = 30, initial_delay = 0.3, max_delay = 0.5 }"
    )
    sshd.stop()
    proc = site.popen("run", "--date", RUN_DATE)
    lines: list[str] = []
    retrying = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "retrying in" in line:
                retrying.set()

    reader = threading.Thread(target=read_stderr)
    reader.start()
    try:
        assert retrying.wait(120), "".join(lines)
        wait_for(lambda: any("(attempt 3 of 30)" in ln for ln in lines), 120, "a few more refused attempts")
        sshd.start()
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join()
    err = "".join(lines)
    assert proc.returncode == 0, out + err
    assert re.search(r"failed \(attempt 1 of 30\): .*connection refused", err), err
    assert_delivered(site)
    assert staged_files(site) == []


# ---------------------------------------------------------------- 3. cut in the middle of an upload


@pytest.mark.parametrize("resume", ["retry-in-run", "next-run"])
def test_connection_cut_mid_upload(tmp_path, sshd_fresh, big_warehouse, remote, slow_proxy, resume):
    sshd = sshd_fresh
    retries = (
        "{ attempts = 3, initial_delay = 0.2, max_delay = 0.5 }"
        if resume == "retry-in-run"
        else "{ attempts = 1, initial_delay = 0.2, max_delay = 0.5 }"
    )
    site = make_site(
        tmp_path,
        sshd,
        big_warehouse,
        remote,
        port=slow_proxy.port,
        known_hosts=slow_proxy.known_hosts,
        retries=retries,
        window='{ unit = "month", count = 12 }',
        defaults_extra=UNCOMPRESSED,
    )
    folder = site.remote / REMOTE_DIR
    final = folder / BIG_ARCHIVE
    proc = site.popen("run", "--date", RUN_DATE)
    try:

        def half_uploaded() -> bool:
            parts = [p for p in folder.glob(".*.part")] if folder.is_dir() else []
            return any(p.stat().st_size > 2 * 2**20 for p in parts)

        wait_for(half_uploaded, 120, "a temporary holding part of the upload", proc)
        assert sshd.kill_sessions(), "no session to kill"
        assert not final.exists(), "the final name appeared before the upload finished"
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()

    if resume == "retry-in-run":
        assert proc.returncode == 0, out + err
        assert "failed (attempt 1 of 3)" in err and "retrying in" in err, err
    else:
        assert proc.returncode == 1, out + err
        assert "Traceback" not in err
        assert not final.exists()
        stale = [p.name for p in folder.iterdir() if TMP_RE.match(p.name)]
        assert all(TMP_RE.match(n).group("owner") == "customer_traffic" for n in stale)
        proc2 = ok(site.run("run", "--date", RUN_DATE))
        assert "resuming run" in proc2.stderr and "exporting" not in proc2.stderr, proc2.stderr
        err = err + proc2.stderr
    assert err.count("exporting mnaas.customer_traffic") == 1, err  # never exported again
    assert_delivered(site, BIG_ARCHIVE)
    assert not any(TMP_RE.match(p.name) for p in folder.iterdir())  # the cut temporary was cleaned
    assert staged_files(site) == []


# ---------------------------------------------------------------- 4. corrupted after a verified upload


def test_remote_archive_corrupted_after_upload_is_detected_and_replaced(tmp_path, sshd, warehouse, remote):
    site = make_site(tmp_path, sshd, warehouse, remote)
    folder = site.remote / REMOTE_DIR
    # Make the run stop after the archive verified, before its sidecars: a folder sits
    # where the .sha256 sidecar must go.
    (folder / f"{ARCHIVE}.sha256").mkdir(parents=True)
    first = site.run("run", "--date", RUN_DATE)
    one_error_line(first, "is a folder")
    assert "FAILED in verify" in first.stdout, first.stdout
    good = sha256_of(folder / ARCHIVE)
    assert staged_files(site), "the staged archive is kept until the remote copy verified"

    (folder / f"{ARCHIVE}.sha256").rmdir()
    data = bytearray((folder / ARCHIVE).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    (folder / ARCHIVE).write_bytes(bytes(data))

    second = ok(site.run("run", "--date", RUN_DATE))
    assert "resuming run" in second.stderr and "exporting" not in second.stderr, second.stderr
    assert re.search(r"verification of .* failed: remote file has sha256", second.stderr), second.stderr
    assert sha256_of(folder / ARCHIVE) == good
    assert assert_delivered(site)["verify_method"] == "sha256sum"
    assert staged_files(site) == []


# ---------------------------------------------------------------- 5. terminal errors


def _assert_terminal(site: Site, proc: subprocess.CompletedProcess, *needles: str) -> str:
    line = one_error_line(proc, *needles)
    assert "retrying in" not in proc.stderr, proc.stderr  # terminal: no retry
    assert "FAILED in upload" in proc.stdout, proc.stdout
    assert remote_files(site.remote) == [], remote_files(site.remote)
    return line


def test_unknown_host_key(tmp_path, sshd, warehouse, remote):
    known = tmp_path / "known_hosts"
    known.write_text("")
    site = make_site(tmp_path, sshd, warehouse, remote, known_hosts=known)
    proc = site.run("run", "--date", RUN_DATE)
    line = _assert_terminal(
        site, proc, f"host key of [127.0.0.1]:{sshd.port} is unknown", "ssh-keyscan -p", "accept-new"
    )
    assert "SHA256:" in line  # the offered fingerprint, to compare with the admin's
    # no known_hosts file at all: the same
    known.unlink()
    _assert_terminal(site, site.run("run", "--date", RUN_DATE), "is unknown")
    assert not known.exists()


def test_changed_host_key(tmp_path, sshd, warehouse, remote):
    other = keygen(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    site = make_site(tmp_path, sshd, warehouse, remote, known_hosts=known)
    _assert_terminal(
        site, site.run("run", "--date", RUN_DATE), "has CHANGED", "ssh-keygen -R", f"[127.0.0.1]:{sshd.port}"
    )
    # accept-new never accepts a changed key
    site = make_site(
        tmp_path, sshd, warehouse, remote, known_hosts=known, dest_extra='host_key_policy = "accept-new"'
    )
    _assert_terminal(site, site.run("run", "--date", RUN_DATE), "has CHANGED")
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {other}\n"


def test_accept_new_records_the_first_key(tmp_path, sshd, warehouse, remote):
    known = tmp_path / "ssh" / "known_hosts"
    site = make_site(
        tmp_path, sshd, warehouse, remote, known_hosts=known, dest_extra='host_key_policy = "accept-new"'
    )
    proc = ok(site.run("run", "--date", RUN_DATE))
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_pub_key}\n"
    assert "recorded the new host key" in proc.stderr
    assert_delivered(site)
    # the recorded key is now the trusted one: strict works with the same file
    strict = make_site(tmp_path, sshd, warehouse, remote, known_hosts=known)
    ok(strict.run("check-destination", "edgenode2"))


def test_wrong_key_and_secrets_stay_out_of_every_output(tmp_path, sshd, warehouse, remote):
    keygen(tmp_path / "stranger")
    secret = "s3cr3t-" + uuid.uuid4().hex
    site = make_site(
        tmp_path,
        sshd,
        warehouse,
        remote,
        key=tmp_path / "stranger",
        dest_extra='password = "${TABLESHIP_TEST_BACKUP_PASSWORD}"',
    )
    proc = site.run("run", "--date", RUN_DATE, env={"TABLESHIP_TEST_BACKUP_PASSWORD": secret})
    _assert_terminal(site, proc, "authentication failed for root@127.0.0.1", "authorized_keys")
    everything = proc.stdout + proc.stderr + (site.dir / "state" / "tableship.core.log").read_text()
    for p in (site.dir / "state").rglob("*"):
        if p.is_file():
            everything += p.read_bytes().decode("latin-1")
    assert secret not in everything
    status = site.run("status", "--json", env={"TABLESHIP_TEST_BACKUP_PASSWORD": secret})
    assert secret not in status.stdout + status.stderr


@pytest.mark.parametrize("how", ["agent", "default-keys"])
def test_login_without_key_file(tmp_path, sshd, big_warehouse, remote, how):
    """No key_file: the SSH agent's keys, else ~/.ssh's default keys. With the agent,
    OpenSSH's client does the bulk upload (the ~14 MB archive) too; with default keys
    under a $HOME that is not the passwd home, it cannot log in and asyncssh uploads."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    env = {"HOME": str(home), "SSH_AUTH_SOCK": ""}
    agent_pid = None
    if how == "agent":
        sock = tmp_path / "agent.sock"
        out = subprocess.run(
            ["ssh-agent", "-a", str(sock)], capture_output=True, text=True, check=True
        ).stdout
        agent_pid = int(re.search(r"SSH_AGENT_PID=(\d+)", out).group(1))
        env["SSH_AUTH_SOCK"] = str(sock)
        subprocess.run(
            ["ssh-add", str(sshd.client_key)], env={**os.environ, **env}, capture_output=True, check=True
        )
    else:
        (home / ".ssh" / "id_ed25519").write_bytes(sshd.client_key.read_bytes())
        (home / ".ssh" / "id_ed25519").chmod(0o600)
    try:
        site = make_site(
            tmp_path,
            sshd,
            big_warehouse,
            remote,
            key="none",
            window='{ unit = "month", count = 12 }',
            defaults_extra=UNCOMPRESSED,
        )
        proc = ok(site.run("-v", "run", "--date", RUN_DATE, env=env))
        if how == "agent":
            assert "via openssh sftp" in proc.stderr, proc.stderr  # the bulk upload logged in the same way
        else:  # OpenSSH reads the passwd home, not $HOME: it cannot log in here, asyncssh takes over
            assert "via asyncssh" in proc.stderr and "failed before uploading" in proc.stderr, proc.stderr
        assert_delivered(site, BIG_ARCHIVE)
    finally:
        if agent_pid:
            os.kill(agent_pid, 15)


def test_permission_denied_on_the_root(tmp_path, sshd, warehouse):
    root = sshd.sftp_root_dir / f"readonly-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o755)  # owned by root: the sftp-only account may not write in it
    site = make_site(tmp_path, sshd, warehouse, root, user=sshd.sftp_user, key=sshd.sftp_user_key)
    _assert_terminal(
        site, site.run("run", "--date", RUN_DATE), "permission denied", f"writable by {sshd.sftp_user}"
    )


def test_missing_root(tmp_path, sshd, warehouse, remote):
    root = remote / "not" / "there"
    site = make_site(tmp_path, sshd, warehouse, root)
    _assert_terminal(
        site, site.run("run", "--date", RUN_DATE), f"remote folder {root} does not exist", f"mkdir -p {root}"
    )
    assert not (remote / "not").exists()  # the root is never created


@pytest.fixture
def tiny_remote(sshd) -> Path:
    """A 1 MiB tmpfs as the destination root: the remote disk fills up."""
    path = sshd.root_dir / f"tiny-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mount.returncode != 0:  # needs root (CAP_SYS_ADMIN), as the sshd fixture does
        missing(f"cannot mount a small tmpfs to fill up: {mount.stderr.strip()}")
    yield path
    subprocess.run(["umount", str(path)], capture_output=True)


@pytest.mark.parametrize("codec", ["none", "gzip"])  # ~14 MB through OpenSSH's sftp, ~3 MB through asyncssh
def test_remote_disk_full(tmp_path, sshd, big_warehouse, tiny_remote, codec):
    site = make_site(
        tmp_path,
        sshd,
        big_warehouse,
        tiny_remote,
        window='{ unit = "month", count = 12 }',
        defaults_extra=UNCOMPRESSED if codec == "none" else f'compression = {{ codec = "{codec}" }}',
    )
    _assert_terminal(
        site, site.run("run", "--date", RUN_DATE), "remote disk full", "free space on the backup host"
    )
    assert staged_files(site), "the staged archive is kept for the next run"


# ---------------------------------------------------------------- 6. no remote commands: read-back


@pytest.fixture
def sftp_only_root(sshd) -> Path:
    root = sshd.sftp_root_dir / f"backups-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    pw = pwd.getpwnam(sshd.sftp_user)
    os.chown(root, pw.pw_uid, pw.pw_gid)
    return root


def test_sftp_only_account_verifies_by_read_back(tmp_path, sshd, warehouse, sftp_only_root):
    site = make_site(tmp_path, sshd, warehouse, sftp_only_root, user=sshd.sftp_user, key=sshd.sftp_user_key)
    proc = ok(site.run("run", "--date", RUN_DATE))
    assert assert_delivered(site)["verify_method"] == "read-back"
    assert re.search(r"verified .* \(read-back\)", proc.stderr), proc.stderr
    doc = ok(site.run("check-destination", "edgenode2"))
    assert "OK  verification  read-back" in doc.stdout

    # corrupt it: the read-back verification of a resumed/new run notices and replaces it
    data = bytearray(site.archive.read_bytes())
    data[10] ^= 0x01
    site.archive.write_bytes(bytes(data))
    assert manifest(site)["sha256"] != sha256_of(site.archive)
    ok(site.run("run", "--date", RUN_DATE))
    assert_delivered(site)


def test_verify_sha256sum_on_an_account_without_commands_is_a_clear_error(
    tmp_path, sshd, warehouse, sftp_only_root
):
    site = make_site(
        tmp_path,
        sshd,
        warehouse,
        sftp_only_root,
        user=sshd.sftp_user,
        key=sshd.sftp_user_key,
        dest_extra='verify = "sha256sum"',
    )
    proc = site.run("run", "--date", RUN_DATE)
    one_error_line(proc, "may not run sha256sum", 'verify = "auto"')


# ---------------------------------------------------------------- the destination object itself


def _dest(sshd, root: Path, **kw):
    from tableship.config.models import SFTPDestination as SFTPConfig
    from tableship.destinations.sftp import SFTPDestination

    cfg = SFTPConfig(
        type="sftp",
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        key_file=sshd.client_key,
        known_hosts=sshd.known_hosts,
        path=str(root),
        connect_timeout=5,
        **kw,
    )
    return SFTPDestination("edgenode2", cfg)


def test_a_dropped_connection_is_transient_and_the_next_call_reconnects(sshd_fresh, remote, tmp_path):
    from tableship.core.errors import TransientDestinationError

    sshd = sshd_fresh
    dest = _dest(sshd, remote)
    try:
        dest.put_bytes(b"one", "t/a", "job1")
        sessions = sshd.kill_sessions()
        assert sessions, "expected the destination's sshd session"
        wait_for(lambda: all(map(ended, sessions)), 60, "the sessions to end")
        try:
            dest.put_bytes(b"two", "t/a", "job1")
        except TransientDestinationError:
            dest.put_bytes(b"two", "t/a", "job1")
        assert (remote / "t" / "a").read_bytes() == b"two"

        sshd.stop()
        with pytest.raises(TransientDestinationError) as err:
            dest.sha256("t/a")  # the open connection was cut: lost / closed / reset
        assert re.search(r"connection (lost|closed|reset|refused)", err.value.line()), err.value.line()
        with pytest.raises(TransientDestinationError) as err:
            dest.sha256("t/a")  # reconnecting: nobody listens
        assert "connection refused" in err.value.line(), err.value.line()
        sshd.start()
        assert dest.sha256("t/a").hex == hashlib.sha256(b"two").hexdigest()
    finally:
        dest.close()


def test_openssh_client_that_cannot_log_in_falls_back_to_asyncssh(sshd, remote, tmp_path, monkeypatch):
    """If OpenSSH's sftp client cannot log in where asyncssh could (an agent-only key, an
    odd ssh_config...), the upload still happens, through asyncssh."""
    import tableship.destinations.sftp.openssh as sftp_mod

    fake = tmp_path / "sftp"
    fake.write_text("#!/bin/sh\necho 'root@127.0.0.1: Permission denied (publickey).' >&2\nexit 255\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sftp_mod.shutil, "which", lambda name: str(fake) if name == "sftp" else None)
    data = os.urandom(sftp_mod.OPENSSH_MIN_BYTES + 12345)
    (tmp_path / "big").write_bytes(data)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # the CLI's logging setup stops propagation, so listen here
    sftp_mod.log.addHandler(handler)
    dest = _dest(sshd, remote)
    try:
        dest.put(tmp_path / "big", "t/big", "job1")
        dest.put(tmp_path / "big", "t/big2", "job1")
    finally:
        dest.close()
        sftp_mod.log.removeHandler(handler)
    assert (remote / "t" / "big").read_bytes() == data == (remote / "t" / "big2").read_bytes()
    warnings = [r for r in records if "failed before uploading" in r.getMessage()]
    assert len(warnings) == 1  # tried once, then remembered


def test_sigterm_mid_upload_stops_the_openssh_client_too(
    tmp_path, sshd_fresh, big_warehouse, remote, slow_proxy
):
    sshd = sshd_fresh
    site = make_site(
        tmp_path,
        sshd,
        big_warehouse,
        remote,
        port=slow_proxy.port,
        known_hosts=slow_proxy.known_hosts,
        window='{ unit = "month", count = 12 }',
        defaults_extra=UNCOMPRESSED,
    )
    folder = site.remote / REMOTE_DIR
    proc = site.popen("run", "--date", RUN_DATE)
    try:
        wait_for(
            lambda: folder.is_dir() and any(p.stat().st_size > 2**20 for p in folder.glob(".*.part")),
            120,
            "the upload",
            proc,
        )
        children = descendants_of(proc.pid)  # OpenSSH's sftp and its ssh
        assert len(children) >= 2, children
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + 15, out + err
    assert "Traceback" not in err
    assert not (folder / BIG_ARCHIVE).exists()
    assert not [
        p.name for p in folder.iterdir() if TMP_RE.match(p.name)
    ]  # removed while the connection was up
    # no orphaned sftp/ssh client keeps uploading (the deadline is against hanging, not a limit)
    wait_for(lambda: all(map(ended, children)), 10, f"the OpenSSH children {children} to end")
    ok(site.run("run", "--date", RUN_DATE))
    assert_delivered(site, BIG_ARCHIVE)
    assert not any(TMP_RE.match(p.name) for p in folder.iterdir())


def test_kill_9_mid_upload_leaves_no_openssh_client_behind(
    tmp_path, sshd_fresh, big_warehouse, remote, slow_proxy
):
    """The OpenSSH sftp client gets PR_SET_PDEATHSIG: after kill -9 of tableship neither
    it nor its ssh lives on uploading (within a second), and a re-run finishes the work."""
    sshd = sshd_fresh
    site = make_site(
        tmp_path,
        sshd,
        big_warehouse,
        remote,
        port=slow_proxy.port,
        known_hosts=slow_proxy.known_hosts,
        window='{ unit = "month", count = 12 }',
        defaults_extra=UNCOMPRESSED,
    )
    folder = site.remote / REMOTE_DIR
    proc = site.popen("run", "--date", RUN_DATE)
    try:
        wait_for(
            lambda: folder.is_dir() and any(p.stat().st_size > 2**20 for p in folder.glob(".*.part")),
            120,
            "the upload",
            proc,
        )
        children = descendants_of(proc.pid)  # OpenSSH's sftp and its ssh
        assert len(children) >= 2, children
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    wait_for(lambda: all(map(ended, children)), 1.0, f"the OpenSSH children {children} to die with tableship")
    ok(site.run("run", "--date", RUN_DATE))
    assert_delivered(site, BIG_ARCHIVE)
    assert not [p for p in folder.iterdir() if TMP_RE.match(p.name)]


def test_accept_new_with_an_unwritable_known_hosts_is_a_clear_error(tmp_path, sshd, remote):
    from tableship.core.errors import DestinationError

    (tmp_path / "file").write_text("a file where the known_hosts folder must be")
    dest = _dest(sshd, remote, host_key_policy="accept-new")
    dest.known_hosts = tmp_path / "file" / "known_hosts"  # cannot be created, even by root
    try:
        with pytest.raises(DestinationError) as err:
            dest.put_bytes(b"x", "t/x", "job1")
    finally:
        dest.close()
    assert not err.value.transient
    assert "cannot record the host key" in err.value.line()
    assert not (remote / "t").exists()


def test_key_file_problems_are_terminal_and_say_which(tmp_path, sshd, remote):
    from tableship.config.models import SFTPDestination as SFTPConfig
    from tableship.core.errors import DestinationError
    from tableship.destinations.sftp import SFTPDestination

    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(locked)], check=True)
    (tmp_path / "garbage").write_text("not a key\n")
    cases = {
        tmp_path / "missing": "does not exist",
        locked: "protected by a passphrase",
        tmp_path / "garbage": "not a usable private key",
    }
    for key, needle in cases.items():
        cfg = SFTPConfig(
            type="sftp",
            host=sshd.host,
            port=sshd.port,
            user=sshd.user,
            key_file=key,
            known_hosts=sshd.known_hosts,
            path=str(remote),
        )
        dest = SFTPDestination("edgenode2", cfg)
        try:
            with pytest.raises(DestinationError) as err:
                dest.size("x")
        finally:
            dest.close()
        assert not err.value.transient and needle in err.value.line(), err.value.line()
