"""Real OpenSSH server fixture (``sshd``) on 127.0.0.1.

``/usr/sbin/sshd`` from Debian's openssh-server runs as root in the
foreground (``-D -e -f CONFIG``) with its own host key, config, pid file and
authorized keys in a temp dir.  Tests log in as ``root`` with a generated
client key.  A second, SFTP-only account (``tsftponly``, ``ForceCommand
internal-sftp``) lets tests check an account that cannot run commands; a third
(``tpassword``) logs in with a password only (``password_user`` / ``password``).

The server can be stopped/started (same port, same keys) and its
per-connection children killed, to test the client's retry behaviour.  An
autouse fixture restarts it after any test that left it stopped.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.servers import (
    LOCALHOST,
    apt_install,
    children_of,
    descendants_of,
    free_port,
    is_root,
    log_tail,
    make_base_dir,
    missing,
    remove_dir,
    spawn,
    stop_process,
)

SSHD = "/usr/sbin/sshd"
SFTP_ONLY_USER = "tsftponly"
#: an account that logs in with a password (PasswordAuthentication only for it); the
#: password has the characters URL and shell parsing trip on
PASSWORD_USER = "tpassword"
PASSWORD = "Sf@tp:pw/P#ss?49 %x"
READY_TIMEOUT = 30.0


def _ensure_openssh() -> None:
    if Path(SSHD).exists() and shutil.which("ssh-keygen") and shutil.which("ssh"):
        return
    ok, out = apt_install("openssh-server", "openssh-client")
    if not (ok and Path(SSHD).exists() and shutil.which("ssh-keygen")):
        missing(f"OpenSSH server ({SSHD}) is not installed and could not be installed: {out[-1500:]}")


def _ensure_privsep_dir() -> None:
    """sshd refuses to start (even ``-t``) without /run/sshd (normally made by
    the init script, which never ran here)."""
    with contextlib.suppress(OSError):
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)


def _ensure_sftp_only_user() -> None:
    try:
        pwd.getpwnam(SFTP_ONLY_USER)
    except KeyError:
        proc = subprocess.run(
            ["useradd", "--system", "--create-home", "--shell", "/usr/sbin/nologin", SFTP_ONLY_USER],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 and proc.returncode != 9:  # 9: already exists (race)
            missing(f"cannot create system user {SFTP_ONLY_USER!r}: {proc.stderr.strip()}")
    _unlock_for_key_login(SFTP_ONLY_USER)


def _ensure_password_user() -> None:
    try:
        pwd.getpwnam(PASSWORD_USER)
    except KeyError:
        proc = subprocess.run(
            ["useradd", "--system", "--create-home", "--shell", "/bin/sh", PASSWORD_USER],
            capture_output=True,
            text=True,
        )
        if proc.returncode not in (0, 9):  # 9: already exists (race)
            missing(f"cannot create system user {PASSWORD_USER!r}: {proc.stderr.strip()}")
    proc = subprocess.run(["chpasswd"], input=f"{PASSWORD_USER}:{PASSWORD}\n", capture_output=True, text=True)
    if proc.returncode != 0:
        missing(f"cannot set the password of {PASSWORD_USER!r}: {proc.stderr.strip()}")


def _unlock_for_key_login(user: str) -> None:
    """With ``UsePAM no`` sshd refuses accounts whose shadow password starts
    with ``!`` (locked), as ``useradd`` leaves them.  ``*`` means "no password
    login" without locking, which is what a key-only account needs."""
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name == user:
                if rest.startswith("!"):
                    subprocess.run(["usermod", "-p", "*", user], check=False, capture_output=True)
                return
    except OSError:
        pass


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    path.chmod(0o600)
    return path.with_suffix(".pub").read_text().strip()


def _pub_without_comment(line: str) -> str:
    return " ".join(line.split()[:2])


class _SshdProcess:
    """Mutable state behind the frozen :class:`SshServer`."""

    def __init__(self, config: Path, log: Path, host: str, port: int) -> None:
        self.config = config
        self.log = log
        self.host = host
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.lock = threading.RLock()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with self.lock:
            if self.running():
                return
            _ensure_privsep_dir()
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                self.proc = spawn([SSHD, "-D", "-e", "-f", str(self.config)], self.log)
                if self.wait_ready(timeout=max(1.0, deadline - time.monotonic())):
                    return
                # The port may still be held briefly after a stop; retry.
                if self.proc.poll() is None or time.monotonic() >= deadline:
                    stop_process(self.proc)
                    raise RuntimeError(
                        f"sshd did not become ready on {self.host}:{self.port}; log tail:\n"
                        + log_tail(self.log)
                    )
                time.sleep(0.3)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            if _read_banner(self.host, self.port):
                return True
            time.sleep(0.1)
        return False

    def kill_sessions(self, sig: int = signal.SIGKILL) -> list[int]:
        """Kill the per-connection sshd children (and their descendants), not
        the listener.  Returns the killed pids."""
        if not self.running():
            return []
        assert self.proc is not None
        killed = []
        for child in children_of(self.proc.pid):
            for pid in [*descendants_of(child), child]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
                    killed.append(pid)
        return killed

    def stop(self, kill_sessions: bool = True) -> None:
        with self.lock:
            if kill_sessions:
                self.kill_sessions()
            # group=False: the listener's children are in their own sessions
            # anyway; kill_sessions handles them.
            stop_process(self.proc, timeout=10, group=False)
            if kill_sessions:
                # Connections accepted while we were stopping.
                if self.proc is not None:
                    for pid in descendants_of(self.proc.pid):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(pid, signal.SIGKILL)


def _read_banner(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 512:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"SSH-2.0")
    except OSError:
        return False


@dataclass(frozen=True)
class SshServer:
    """A running OpenSSH server for tests.

    ``client_key`` logs in as ``user`` (root); ``sftp_user_key`` logs in as
    ``sftp_user``, which can only speak SFTP.  ``known_hosts`` holds the
    ``[127.0.0.1]:PORT ssh-ed25519 ...`` line for the host key.
    """

    host: str
    port: int
    user: str
    client_key: Path
    client_pub_key: str
    host_pub_key: str
    known_hosts: Path
    root_dir: Path
    sftp_user: str
    sftp_user_key: Path
    sftp_root_dir: Path
    password_user: str
    password: str
    config_path: Path
    log_path: Path
    base_dir: Path
    _ctl: _SshdProcess = field(repr=False, compare=False)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        """Start sshd again (same port, same keys); no-op if running."""
        self._ctl.start()

    def stop(self, kill_sessions: bool = True) -> None:
        """Stop the listener (and, by default, all open sessions)."""
        self._ctl.stop(kill_sessions=kill_sessions)

    def kill_sessions(self) -> list[int]:
        """Kill per-connection sshd children, leaving the listener up."""
        return self._ctl.kill_sessions()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        """Poll TCP connect until the ``SSH-2.0`` banner is read."""
        return self._ctl.wait_ready(timeout)

    @property
    def running(self) -> bool:
        return self._ctl.running()

    @property
    def pid(self) -> int | None:
        return self._ctl.proc.pid if self._ctl.running() else None

    # -- client helpers --------------------------------------------------
    def ssh_args(self, user: str | None = None, key: Path | None = None) -> list[str]:
        """``ssh`` argv prefix (up to and including ``user@host``)."""
        if key is None:
            key = self.sftp_user_key if user == self.sftp_user else self.client_key
        return [
            "ssh",
            "-i", str(key),
            "-p", str(self.port),
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=10",
            "-F", "/dev/null",
            f"{user or self.user}@{self.host}",
        ]  # fmt: skip

    def log_tail(self, lines: int = 60) -> str:
        return log_tail(self.log_path, lines)


_SSHD_CONFIG = """\
# tableship test sshd -- generated by tests/servers/sshd.py
ListenAddress {host}
Port {port}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {base}/authorized_keys/%u
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
PrintMotd no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 64
LoginGraceTime 30
LogLevel VERBOSE
Subsystem sftp {sftp_subsystem}
{extra}
Match User {sftp_user}
    ForceCommand internal-sftp
    AllowTcpForwarding no
    X11Forwarding no
Match User {password_user}
    PasswordAuthentication yes
"""


def _write_config(path: Path, **kw: object) -> None:
    """Write the config; drop optional newer-OpenSSH options this sshd lacks."""
    # Newer OpenSSH (9.8+) penalises sources that fail auth or drop
    # connections; tests do exactly that from 127.0.0.1 on purpose.
    candidates = ["PerSourcePenalties no"]
    extra: list[str] = []
    for opt in candidates:
        path.write_text(_SSHD_CONFIG.format(extra="\n".join([*extra, opt]), **kw))
        if subprocess.run([SSHD, "-t", "-f", str(path)], capture_output=True).returncode == 0:
            extra.append(opt)
    path.write_text(_SSHD_CONFIG.format(extra="\n".join(extra), **kw))
    check = subprocess.run([SSHD, "-t", "-f", str(path)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"sshd -t rejected the generated config: {check.stderr}")


def _write_config_or_fail(path: Path, **kw: object) -> None:
    try:
        _write_config(path, **kw)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


_active: SshServer | None = None


@contextlib.contextmanager
def running_sshd(sftp_subsystem: str = "internal-sftp") -> Iterator[SshServer]:
    """Start a real OpenSSH server on 127.0.0.1 in a fresh temp dir; stop and remove
    it on exit.  Used by the ``sshd`` fixture and by ``bench/bench_sftp.py``.
    ``sftp_subsystem``: the command serving SFTP (e.g. a wrapper that counts sessions)."""
    if not is_root():
        missing("the sshd fixture needs root (sshd privilege separation, root login, useradd)")
    _ensure_openssh()
    _ensure_privsep_dir()
    _ensure_sftp_only_user()
    _ensure_password_user()
    _unlock_for_key_login("root")

    base = make_base_dir("sshd")
    try:
        keys = base / "keys"
        keys.mkdir(mode=0o755)
        auth = base / "authorized_keys"
        auth.mkdir(mode=0o755)

        host_pub = _pub_without_comment(_keygen(keys / "ssh_host_ed25519_key", "tableship-test-host"))
        client_key = keys / "client_ed25519"
        client_pub = _keygen(client_key, "tableship-test-client")
        sftp_key = keys / "sftponly_ed25519"
        sftp_pub = _keygen(sftp_key, "tableship-test-sftponly")

        (auth / "root").write_text(client_pub + "\n")
        (auth / SFTP_ONLY_USER).write_text(sftp_pub + "\n")
        for f in auth.iterdir():
            f.chmod(0o644)

        root_dir = base / "root"
        root_dir.mkdir(mode=0o755)
        sftp_root = base / "sftponly"
        sftp_root.mkdir(mode=0o755)
        pw = pwd.getpwnam(SFTP_ONLY_USER)
        os.chown(sftp_root, pw.pw_uid, pw.pw_gid)

        port = free_port()
        known_hosts = base / "known_hosts"
        known_hosts.write_text(f"[{LOCALHOST}]:{port} {host_pub}\n")

        config = base / "sshd_config"
        _write_config_or_fail(
            config,
            host=LOCALHOST,
            port=port,
            host_key=keys / "ssh_host_ed25519_key",
            pid_file=base / "sshd.pid",
            base=base,
            sftp_user=SFTP_ONLY_USER,
            password_user=PASSWORD_USER,
            sftp_subsystem=sftp_subsystem,
        )
        log = base / "sshd.log"
        ctl = _SshdProcess(config, log, LOCALHOST, port)
        server = SshServer(
            host=LOCALHOST,
            port=port,
            user="root",
            client_key=client_key,
            client_pub_key=client_pub,
            host_pub_key=host_pub,
            known_hosts=known_hosts,
            root_dir=root_dir,
            sftp_user=SFTP_ONLY_USER,
            sftp_user_key=sftp_key,
            sftp_root_dir=sftp_root,
            password_user=PASSWORD_USER,
            password=PASSWORD,
            config_path=config,
            log_path=log,
            base_dir=base,
            _ctl=ctl,
        )
        try:
            ctl.start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server
    finally:
        with contextlib.suppress(NameError):
            ctl.stop(kill_sessions=True)
        remove_dir(base)


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """Session-wide real OpenSSH server on 127.0.0.1 (login as root)."""
    global _active
    with running_sshd() as server:
        _active = server
        try:
            yield server
        finally:
            _active = None


@pytest.fixture
def sshd_fresh(sshd: SshServer) -> Iterator[SshServer]:
    """The session sshd, guaranteed running before the test and after it."""
    sshd.start()
    yield sshd
    sshd.start()


@pytest.fixture(autouse=True)
def _sshd_left_running() -> Iterator[None]:
    """If a test stopped the session sshd, start it again for the next one."""
    yield
    server = _active
    if server is not None and not server.running:
        server.start()
