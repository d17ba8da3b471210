"""The Destination contract (``tableship/destinations/base.py``), checked against every
Destination implementation:

* ``local``         — a folder on this machine;
* ``sftp``          — the real OpenSSH server fixture (tests/servers/sshd.py), large files
  through OpenSSH's ``sftp`` client, small ones through asyncssh (the default);
* ``sftp-asyncssh`` — the same server with every upload on asyncssh (the fallback used
  when the ``sftp`` binary is missing or cannot log in).

The sshd runs on this machine, so each test also looks at the destination's files
directly on disk (``backend.disk``) to prove what a reader on the backup host would see.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tableship.config.models import LocalDestination as LocalConfig
from tableship.config.models import SFTPDestination as SFTPConfig
from tableship.core.errors import ConfigError, DestinationError
from tableship.destinations.base import TMP_RE, Destination, is_temp, temp_name

BIG = 12 * 2**20  # above sftp.OPENSSH_MIN_BYTES: the bulk path


@dataclass
class Backend:
    kind: str
    dest: Destination
    disk: Path  # where the destination root lives on this machine
    make: Callable[[Path], Destination]  # another destination of this kind with another root


@pytest.fixture(params=["local", "sftp", "sftp-asyncssh"])
def backend(request, tmp_path, monkeypatch) -> Backend:
    kind = request.param
    if kind == "local":
        root = tmp_path / "backup"
        root.mkdir()

        def make(path: Path) -> Destination:
            from tableship.destinations.local import LocalDestination

            return LocalDestination("backup", LocalConfig(type="local", path=path))
    else:
        sshd = request.getfixturevalue("sshd")
        import tableship.destinations.sftp as sftp_mod
        import tableship.destinations.sftp.openssh as openssh_mod

        if kind == "sftp-asyncssh":
            monkeypatch.setattr(openssh_mod, "OPENSSH_MIN_BYTES", 1 << 62)
        root = sshd.root_dir / f"contract-{uuid.uuid4().hex[:10]}"
        root.mkdir()

        def make(path: Path) -> Destination:
            cfg = SFTPConfig(
                type="sftp",
                host=sshd.host,
                port=sshd.port,
                user=sshd.user,
                key_file=sshd.client_key,
                known_hosts=sshd.known_hosts,
                path=str(path),
                connect_timeout=10,
            )
            return sftp_mod.SFTPDestination("backup", cfg)

    dest = make(root)
    yield Backend(kind, dest, root, make)
    dest.close()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TMP_RE.match(p.name)) if folder.is_dir() else []


def payload(n: int, seed: bytes) -> bytes:
    block = hashlib.sha256(seed).digest() * (65536 // 32)
    return (block * (n // len(block) + 1))[:n]


# ---------------------------------------------------------------- put / get / sha256 / size


@pytest.mark.parametrize("n", [0, 1000, BIG])
def test_put_creates_folders_and_lands_whole_bytes(backend, tmp_path, n):
    data = payload(n, b"put")
    local = write(tmp_path / "local" / "archive.csv.gz", data)
    backend.dest.put(local, "t/2026/archive.csv.gz", "job1")

    on_disk = backend.disk / "t" / "2026" / "archive.csv.gz"
    assert on_disk.read_bytes() == data
    assert temporaries(on_disk.parent) == []
    assert backend.dest.size("t/2026/archive.csv.gz") == n
    digest = backend.dest.sha256("t/2026/archive.csv.gz")
    assert digest is not None and digest.hex == hashlib.sha256(data).hexdigest()
    assert digest.method in ("local", "sha256sum", "read-back")
    assert local.read_bytes() == data  # the local file is left alone


def test_put_overwrites_the_final_name(backend, tmp_path):
    backend.dest.put(write(tmp_path / "a", b"old content\n"), "t/file", "job1")
    backend.dest.put(write(tmp_path / "b", b"new\n"), "t/file", "job1")
    assert (backend.disk / "t" / "file").read_bytes() == b"new\n"
    assert temporaries(backend.disk / "t") == []


def test_a_reader_never_sees_a_partial_file_under_the_final_name(backend, tmp_path):
    """While a new version is put over an old one, every read of the final name gives the
    whole old bytes or the whole new bytes, never a prefix or a mix."""
    old, new = payload(BIG, b"old"), payload(BIG + 4096, b"new")
    allowed = {hashlib.sha256(old).hexdigest(), hashlib.sha256(new).hexdigest()}
    backend.dest.put(write(tmp_path / "old", old), "t/big.csv.gz", "job1")
    final = backend.disk / "t" / "big.csv.gz"
    stop, seen, bad = threading.Event(), [], []

    def watch() -> None:
        while not stop.is_set():
            try:
                digest = hashlib.sha256(final.read_bytes()).hexdigest()
            except FileNotFoundError:
                bad.append("final name missing during an overwrite")
                continue
            (seen if digest in allowed else bad).append(digest)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(2):
            backend.dest.put(write(tmp_path / "new", new), "t/big.csv.gz", "job1")
            backend.dest.put(write(tmp_path / "old", old), "t/big.csv.gz", "job1")
    finally:
        stop.set()
        watcher.join()
    assert not bad, bad[:3]
    assert seen
    assert final.read_bytes() == old
    assert temporaries(final.parent) == []


def test_a_failed_put_leaves_the_final_name_untouched(backend, tmp_path):
    backend.dest.put_bytes(b"good", "t/x.csv.gz", "job1")
    with pytest.raises(DestinationError):
        backend.dest.put(tmp_path / "no-such-local-file", "t/x.csv.gz", "job1")
    assert (backend.disk / "t" / "x.csv.gz").read_bytes() == b"good"
    assert temporaries(backend.disk / "t") == []


def test_put_bytes(backend):
    backend.dest.put_bytes(b"abc  x.csv.gz\n", "t/x.csv.gz.sha256", "job1")
    backend.dest.put_bytes(b"def  x.csv.gz\n", "t/x.csv.gz.sha256", "job1")
    assert (backend.disk / "t" / "x.csv.gz.sha256").read_bytes() == b"def  x.csv.gz\n"
    assert backend.dest.sha256("t/x.csv.gz.sha256").hex == hashlib.sha256(b"def  x.csv.gz\n").hexdigest()
    backend.dest.put_bytes(b"", "empty.json", "job1")
    assert (backend.disk / "empty.json").read_bytes() == b""
    assert temporaries(backend.disk / "t") == [] and temporaries(backend.disk) == []


@pytest.mark.parametrize("n", [5, BIG])
def test_get_downloads_through_a_temporary(backend, tmp_path, n):
    data = payload(n, b"get")
    write(backend.disk / "t" / "x.bin", data)
    target = tmp_path / "restore" / "x.bin"
    target.parent.mkdir()
    target.write_bytes(b"previous")
    backend.dest.get("t/x.bin", target)
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]


def test_get_missing_is_a_terminal_error(backend, tmp_path):
    with pytest.raises(DestinationError) as err:
        backend.dest.get("t/missing.bin", tmp_path / "x")
    assert not err.value.transient
    assert not (tmp_path / "x").exists()


def test_sha256_and_size_of_missing_names_are_none(backend):
    assert backend.dest.sha256("t/missing.csv.gz") is None
    assert backend.dest.sha256("no/such/folder/x") is None
    assert backend.dest.size("t/missing.csv.gz") is None
    write(backend.disk / "t" / "present", b"12345")
    assert backend.dest.size("t/present") == 5


def test_sha256_sees_a_changed_remote_file(backend):
    write(backend.disk / "x", b"one")
    assert backend.dest.sha256("x").hex == hashlib.sha256(b"one").hexdigest()
    write(backend.disk / "x", b"two")
    assert backend.dest.sha256("x").hex == hashlib.sha256(b"two").hexdigest()


# ---------------------------------------------------------------- list / delete / cleanup


def test_list_gives_files_only_without_temporaries(backend):
    write(backend.disk / "t" / "b.csv.gz", b"b")
    write(backend.disk / "t" / "a.csv.gz", b"a")
    write(backend.disk / "t" / "a.csv.gz.sha256", b"s")
    write(backend.disk / "t" / ".a.csv.gz.tableship-job1-0123abcd.part", b"partial")
    write(backend.disk / "t" / ".a.csv.gz.tableship-other-89abcdef.part", b"partial")
    (backend.disk / "t" / "subfolder").mkdir()
    write(backend.disk / "top.txt", b"t")
    assert backend.dest.list("t") == ["t/a.csv.gz", "t/a.csv.gz.sha256", "t/b.csv.gz"]
    assert backend.dest.list("") == ["top.txt"]
    assert backend.dest.list("no/such/folder") == []


def test_delete(backend):
    write(backend.disk / "t" / "x", b"x")
    write(backend.disk / "t" / "y", b"y")
    backend.dest.delete("t/x")
    backend.dest.delete("t/x")  # missing: not an error
    backend.dest.delete("no/such/folder/x")
    assert sorted(p.name for p in (backend.disk / "t").iterdir()) == ["y"]


def test_cleanup_removes_only_this_owners_temporaries(backend):
    folder = backend.disk / "t"
    mine = [".a.csv.gz.tableship-job1-0123abcd.part", ".a.csv.gz.sha256.tableship-job1-deadbeef.part"]
    others = [
        ".a.csv.gz.tableship-job2-0123abcd.part",  # another job
        ".a.csv.gz.tableship-job1-x-0123abcd.part",  # another job whose name starts like ours
        ".a.csv.gz.tableship-JOB1-0123abcd.part",  # names are case-sensitive
        ".a.csv.gz.part",  # another tool's temporary
        "a.csv.gz.part",
        ".a.csv.gz.tableship-job1-nothex00.part",  # not our pattern
        "a.csv.gz",  # final files
        "a.csv.gz.sha256",
    ]
    for name in mine + others:
        write(folder / name, b"x")
    (folder / ".d.tableship-job1-0123abcd.part").mkdir()  # a folder is never removed
    write(backend.disk / ".top.tableship-job1-0123abcd.part", b"x")  # another folder

    removed = backend.dest.cleanup("t", "job1")
    assert sorted(removed) == sorted(mine)
    assert sorted(p.name for p in folder.iterdir()) == sorted(others + [".d.tableship-job1-0123abcd.part"])
    assert (backend.disk / ".top.tableship-job1-0123abcd.part").exists()
    assert backend.dest.cleanup("t", "job1") == []
    assert backend.dest.cleanup("no/such/folder", "job1") == []
    assert all(is_temp(n, "job1") for n in mine)


def test_temp_names_are_unique_and_recognised():
    a, b = temp_name("t/x.csv.gz", "job1"), temp_name("t/x.csv.gz", "job1")
    assert a != b and a.startswith("t/.x.csv.gz.tableship-job1-") and a.endswith(".part")
    assert is_temp(a.split("/")[-1], "job1") and not is_temp(a.split("/")[-1], "job2")


# ---------------------------------------------------------------- check / close / root / escape


def test_check_reports_every_check_ok(backend):
    results = backend.dest.check()
    assert results and all(isinstance(name, str) and isinstance(detail, str) for name, _, detail in results)
    assert all(ok for _, ok, _ in results), results
    names = [name for name, _, _ in results]
    if backend.kind != "local":
        assert names[:4] == ["connect", "host key", "authentication", "root folder"]
        assert {"write permission", "free space", "verification"} <= set(names)
    assert sorted(os.listdir(backend.disk)) == []  # the write probe left nothing


def test_check_reports_a_missing_root_without_raising(backend, tmp_path):
    dest = backend.make(backend.disk / "missing-root")
    try:
        results = dest.check()
    finally:
        dest.close()
    assert not all(ok for _, ok, _ in results)
    if backend.kind != "local":
        assert any("does not exist" in detail for _, ok, detail in results if not ok), results


def test_a_missing_root_is_a_terminal_error_and_is_never_created(backend, tmp_path):
    root = backend.disk / "missing-root"
    dest = backend.make(root)
    try:
        for call in (
            lambda: dest.put(write(tmp_path / "f", b"x"), "t/f", "job1"),
            lambda: dest.put_bytes(b"x", "f", "job1"),
            lambda: dest.list("t"),
        ):
            with pytest.raises(DestinationError) as err:
                call()
            assert not err.value.transient
            assert "does not exist" in err.value.line()
    finally:
        dest.close()
    assert not root.exists()


def test_close_is_idempotent(backend, tmp_path):
    backend.dest.close()
    backend.dest.close()
    fresh = backend.make(backend.disk)
    fresh.close()
    fresh.close()
    backend.dest.put_bytes(b"after close", "x", "job1")  # a closed destination may be used again
    assert (backend.disk / "x").read_bytes() == b"after close"
    backend.dest.close()


@pytest.mark.parametrize(
    "name",
    ["../escape", "t/../../escape", "/etc/escape", "~/escape", "t/..", "..", "t\\..\\escape", "t/\x00x"],
)
def test_names_escaping_the_root_are_refused(backend, tmp_path, name):
    local = write(tmp_path / "f", b"x")
    before = sorted(os.listdir(backend.disk.parent))
    calls = {
        "put": lambda: backend.dest.put(local, name, "job1"),
        "put_bytes": lambda: backend.dest.put_bytes(b"x", name, "job1"),
        "get": lambda: backend.dest.get(name, tmp_path / "out"),
        "sha256": lambda: backend.dest.sha256(name),
        "size": lambda: backend.dest.size(name),
        "delete": lambda: backend.dest.delete(name),
        "list": lambda: backend.dest.list(name),
        "cleanup": lambda: backend.dest.cleanup(name, "job1"),
    }
    for what, call in calls.items():
        with pytest.raises(ConfigError):
            call()
            pytest.fail(f"{what}({name!r}) was not refused")
    assert sorted(os.listdir(backend.disk.parent)) == before
    assert os.listdir(backend.disk) == []
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- every method translates its errors


def _calls(dest: Destination, local: Path, out: Path) -> dict[str, Callable[[], object]]:
    """Every method of the contract, on names inside the folder ``t``."""
    return {
        "put": lambda: dest.put(local, "t/new", "job1"),
        "put_bytes": lambda: dest.put_bytes(b"x", "t/new2", "job1"),
        "get": lambda: dest.get("t/x", out),
        "sha256": lambda: dest.sha256("t/x"),
        "size": lambda: dest.size("t/x"),
        "list": lambda: dest.list("t"),
        "delete": lambda: dest.delete("t/x"),
        "cleanup": lambda: dest.cleanup("t", "job1"),
    }


def _outcome(call: Callable[[], object]) -> str:
    """ "ok", or "DestinationError: …"; any other exception is a contract violation."""
    try:
        call()
    except DestinationError as exc:
        return f"DestinationError: {exc.line()}"
    except Exception as exc:  # reported, not raised: the caller shows every method's outcome
        return f"ESCAPED {type(exc).__module__}.{type(exc).__name__}: {exc}"
    return "ok"


def _in_child_as(uid: int, gid: int, fn: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Run ``fn`` in a forked child with another uid (root bypasses permission bits)."""
    import json

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.write(w, json.dumps(fn()).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the unprivileged child failed"
    return json.loads(data)


def _sftp_as(sshd, root: Path, user: str, key: Path) -> Destination:
    import tableship.destinations.sftp as sftp_mod

    cfg = SFTPConfig(
        type="sftp",
        host=sshd.host,
        port=sshd.port,
        user=user,
        key_file=key,
        known_hosts=sshd.known_hosts,
        path=str(root),
        connect_timeout=10,
    )
    return sftp_mod.SFTPDestination("backup", cfg)


def test_permission_denied_on_every_method_is_a_destination_error(backend, request):
    """The folder ``t`` belongs to root (mode 0700, holding ``x``); the destination runs
    as another user: the SFTP-only account on sftp, ``nobody`` in a forked child on local
    (root would bypass the permission bits)."""
    import pwd
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="tableship-perm-"))  # under /tmp: reachable by nobody
    os.chmod(base, 0o755)
    local = write(base / "f", b"payload")
    os.chmod(local, 0o644)
    out_dir = base / "out"
    out_dir.mkdir()
    os.chmod(out_dir, 0o777)
    if backend.kind == "local":
        root = base / "backup"
        root.mkdir()
        os.chmod(root, 0o755)
        dest = backend.make(root)
    else:
        sshd = request.getfixturevalue("sshd")
        root = sshd.sftp_root_dir / f"perm-{uuid.uuid4().hex[:8]}"
        root.mkdir()
        pw = pwd.getpwnam(sshd.sftp_user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        dest = _sftp_as(sshd, root, sshd.sftp_user, sshd.sftp_user_key)
    t = root / "t"
    t.mkdir()
    (t / "x").write_bytes(b"not yours")
    os.chmod(t, 0o700)
    try:
        if backend.kind == "local":
            nobody = pwd.getpwnam("nobody")
            outcomes = _in_child_as(
                nobody.pw_uid,
                nobody.pw_gid,
                lambda: {k: _outcome(c) for k, c in _calls(dest, local, out_dir / "got").items()},
            )
        else:
            outcomes = {k: _outcome(c) for k, c in _calls(dest, local, out_dir / "got").items()}
        assert sorted(os.listdir(t)) == ["x"] and not (out_dir / "got").exists()
    finally:
        dest.close()
        shutil.rmtree(base, ignore_errors=True)
        if backend.kind != "local":
            shutil.rmtree(root, ignore_errors=True)
    for method, outcome in outcomes.items():
        assert outcome.startswith("DestinationError:") and "permission denied" in outcome, (method, outcome)


def test_driver_errors_on_every_method_are_destination_errors(backend, tmp_path):
    """``t`` is a regular file, so every call on ``t/…`` makes the OS (local) or the SFTP
    server fail (ENOTDIR, "not a folder"): each method answers as if nothing were there
    or raises a DestinationError; no OSError or asyncssh error escapes."""
    write(backend.disk / "t", b"a file, not a folder")
    local = write(tmp_path / "f", b"payload")
    outcomes = {k: _outcome(c) for k, c in _calls(backend.dest, local, tmp_path / "got").items()}
    for method, outcome in outcomes.items():
        assert not outcome.startswith("ESCAPED"), (method, outcome)
    for method in ("put", "put_bytes", "get"):  # nothing there to write into or read
        assert outcomes[method].startswith("DestinationError:"), (method, outcomes[method])
    assert (backend.disk / "t").read_bytes() == b"a file, not a folder"
