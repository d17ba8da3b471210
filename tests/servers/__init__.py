"""Shared helpers for the real-server test fixtures.

Project rule: where a user would use a real server, tests use a real one,
started by these fixtures on 127.0.0.1.  The fixtures install what is missing
(Debian packages through ``apt-get`` when we are root, Python packages through
``pip``).  With ``CI=true`` a missing real component is a test *failure*;
otherwise it is a ``pytest.skip`` with a clear reason.

Every server binds to 127.0.0.1 on a free port, keeps all of its state in a
temporary directory and is stopped at session end (finalizers, plus an
``atexit`` safety net for interrupted runs).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

LOCALHOST = "127.0.0.1"


# --------------------------------------------------------------------------
# CI mode / missing components
# --------------------------------------------------------------------------


def in_ci() -> bool:
    """True when the environment says we run in CI (``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes", "on"}


def missing(reason: str) -> None:
    """Report a missing real component: fail under CI, skip otherwise."""
    if in_ci():
        pytest.fail(f"[CI=true] missing real component: {reason}", pytrace=False)
    pytest.skip(reason)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# --------------------------------------------------------------------------
# Installing what is missing
# --------------------------------------------------------------------------

_install_lock = threading.Lock()
_apt_updated = False


@contextlib.contextmanager
def _no_service_autostart() -> Iterator[None]:
    """Keep Debian maintainer scripts from starting daemons (sshd on :22,
    a postgres cluster on :5432) while we install packages."""
    policy = Path("/usr/sbin/policy-rc.d")
    created = False
    if not policy.exists():
        try:
            policy.write_text("#!/bin/sh\n# added by tableship test fixtures\nexit 101\n")
            policy.chmod(0o755)
            created = True
        except OSError:
            pass
    try:
        yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                policy.unlink()


def apt_install(*packages: str) -> tuple[bool, str]:
    """Install Debian packages.  Returns (ok, output)."""
    if not is_root():
        return False, "not root: cannot apt-get install " + " ".join(packages)
    if not shutil.which("apt-get"):
        return False, "apt-get not available to install " + " ".join(packages)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    out = ""

    def update() -> None:
        global _apt_updated
        nonlocal out
        upd = subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=900)
        out += upd.stdout[-2000:] + upd.stderr[-2000:]
        _apt_updated = True

    with _install_lock, _no_service_autostart():
        if not _apt_updated and _needs_apt_update():
            update()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        out += proc.stdout[-4000:] + proc.stderr[-4000:]
        if proc.returncode != 0 and not _apt_updated:
            update()  # stale package lists are the usual cause
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
            out += proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.returncode == 0, out


def _needs_apt_update() -> bool:
    lists = Path("/var/lib/apt/lists")
    try:
        return not any(p.name.endswith("_Packages") for p in lists.iterdir())
    except OSError:
        return True


def ensure_command(command: str, package: str) -> str:
    """The path of ``command``, ``apt-get install``-ing Debian ``package`` if it is
    missing (a :func:`missing` component if that fails)."""
    path = shutil.which(command)
    if path:
        return path
    ok, out = apt_install(package)
    path = shutil.which(command)
    if not (ok and path):
        missing(
            f"`{command}` is not installed and `apt-get install {package}` did not provide it: {out[-1500:]}"
        )
    return path  # type: ignore[return-value]


def ensure_module(module: str, requirement: str | None = None):
    """Import a Python module, ``pip install``-ing ``requirement`` if missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    req = requirement or module
    with _install_lock:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", req],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(
            f"Python module {module!r} is missing and `pip install {req}` did not provide it "
            f"({exc}); pip said: {(proc.stdout + proc.stderr)[-1500:]}"
        )


# --------------------------------------------------------------------------
# Ports, waiting, temp dirs
# --------------------------------------------------------------------------


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.2,
    alive: Callable[[], bool] | None = None,
) -> bool:
    """Poll ``predicate`` until true or ``timeout``.  Stops early (False) if
    ``alive()`` says the server process has died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except Exception:
            pass
        if alive is not None and not alive():
            # One last look: the process may have exited after becoming ready
            # (e.g. a daemonizing launcher).
            with contextlib.suppress(Exception):
                return bool(predicate())
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, what: str = "", interval: float = 0.02):
    """Poll ``predicate`` until it returns a truthy value (returned); fail the test
    after ``timeout`` seconds.  The timeout is a deadline against hanging, never a
    threshold a test asserts on: keep it generous (a loaded 2-core CI machine)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}")
        time.sleep(interval)


def log_tail(path: Path | str, lines: int = 60) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


_base_dirs: list[Path] = []


def make_base_dir(prefix: str) -> Path:
    """A fresh temp dir that other local users (sshd's sftp-only user, the
    ``postgres`` user) can traverse.  pytest's tmp_path_factory dirs are 0700
    and owned by root, which those users cannot enter."""
    path = Path(tempfile.mkdtemp(prefix=f"tableship-{prefix}-"))
    path.chmod(0o755)
    _base_dirs.append(path)
    return path


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

_processes: list[subprocess.Popen] = []


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
) -> subprocess.Popen:
    """Start a server process in its own session/process group, output to
    ``log_path`` (appended), and register it for cleanup."""
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        log.close()
    _processes.append(proc)
    return proc


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0, group: bool = True) -> None:
    """SIGTERM (the process group), then SIGKILL after ``timeout``."""
    if proc is None:
        return
    if proc.poll() is None:
        _signal(proc, signal.SIGTERM, group)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL, group)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    elif group:
        # Leader gone; make sure nothing it left in its group lingers.
        _signal(proc, signal.SIGKILL, group)
    with contextlib.suppress(ValueError):
        _processes.remove(proc)


def _signal(proc: subprocess.Popen, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..." -- comm may contain spaces/parens.
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) > 1 and int(rest[1]) == pid:
            kids.append(int(entry.name))
    return kids


def descendants_of(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children_of(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


_cleanups: list[Callable[[], None]] = []


def register_cleanup(fn: Callable[[], None]) -> Callable[[], None]:
    """Run ``fn`` at interpreter exit unless :func:`unregister_cleanup` was
    called (safety net for servers that are not our direct children)."""
    _cleanups.append(fn)
    return fn


def unregister_cleanup(fn: Callable[[], None]) -> None:
    with contextlib.suppress(ValueError):
        _cleanups.remove(fn)


@atexit.register
def _cleanup_at_exit() -> None:  # safety net: interrupted sessions
    for fn in reversed(list(_cleanups)):
        with contextlib.suppress(Exception):
            fn()
    for proc in list(_processes):
        with contextlib.suppress(Exception):
            stop_process(proc, timeout=5)
    for path in _base_dirs:
        with contextlib.suppress(Exception):
            remove_dir(path)
