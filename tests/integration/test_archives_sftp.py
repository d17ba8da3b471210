"""ls / verify / restore / prune through the SFTP destination, against the real OpenSSH
server fixture (tests/servers/sshd.py). The server runs on this machine, so the test
reaches the remote files directly on disk to damage them."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import duckdb
import pytest
from tests.e2e.test_archives import (
    ARCHIVE,
    WINDOW,
    build_warehouse,
    compare_restored,
    one_error_line,
    tableship,
    write_config,
)


def sftp_destination(sshd, remote: Path, *, sftp_only: bool = False) -> str:
    user = sshd.sftp_user if sftp_only else sshd.user
    key = sshd.sftp_user_key if sftp_only else sshd.client_key
    return f"""[destinations.backup]
type = "sftp"
host = "{sshd.host}"
port = {sshd.port}
user = "{user}"
key_file = "{key}"
known_hosts = "{sshd.known_hosts}"
path = "{remote}"
retries = {{ attempts = 2, initial_delay = 0.1, max_delay = 0.2 }}
"""


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    build_warehouse(path)
    return path


@pytest.fixture
def remote(sshd) -> Path:
    path = sshd.root_dir / f"backup-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


@pytest.fixture
def site(tmp_path, warehouse, sshd, remote):
    os.symlink(warehouse, tmp_path / "warehouse.duckdb")
    cfg = write_config(tmp_path, sftp_destination(sshd, remote))
    proc = tableship(cfg, "run", "events", "--from", "2026-01-01", "--to", "2026-01-31")
    assert proc.returncode == 0, proc.stderr + sshd.log_tail()
    return cfg, tmp_path, remote


def test_round_trip_over_sftp(site, warehouse):
    cfg, tmp, remote = site
    assert (remote / ARCHIVE).is_file()
    ls = json.loads(tableship(cfg, "ls", "events", "--json").stdout)
    assert [r["state"] for r in ls] == ["complete"] and ls[0]["remote_path"] == ARCHIVE
    ver = tableship(cfg, "verify", "events")
    assert ver.returncode == 0, ver.stdout + ver.stderr
    assert ver.stdout.startswith("OK") and "(sha256sum)" in ver.stdout  # hashed on the server
    restored = tmp / "restored.duckdb"
    proc = tableship(
        cfg,
        "restore",
        "events",
        "--window",
        WINDOW,
        "--load",
        f"{restored}:events_jan",
        "--to",
        str(tmp / "out"),
    )
    assert proc.returncode == 0, proc.stderr
    compare_restored(warehouse, restored, "events_jan", "2026-01-01", "2026-01-31")
    assert [p.name for p in (tmp / "out").iterdir()] == ["events_20260101_20260131.csv"]


def test_flipped_byte_and_deleted_sidecar_over_sftp(site):
    cfg, tmp, remote = site
    path = remote / ARCHIVE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    ver = tableship(cfg, "verify", "events")
    assert ver.returncode == 1 and ver.stdout.startswith("MISMATCH"), ver.stdout + ver.stderr
    restored = tmp / "r.duckdb"
    one_error_line(
        tableship(cfg, "restore", "events", "--window", WINDOW, "--load", f"{restored}:t"), 1, "refusing"
    )
    con = duckdb.connect(str(restored))
    assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()[0] == 0
    con.close()
    # re-run the window: the damaged archive is replaced and verifies again
    proc = tableship(cfg, "run", "events", "--from", "2026-01-01", "--to", "2026-01-31")
    assert proc.returncode == 0, proc.stderr
    assert tableship(cfg, "verify", "events").returncode == 0
    (remote / (ARCHIVE + ".sha256")).unlink()
    ver = tableship(cfg, "verify", "events")
    assert ver.returncode == 1 and ver.stdout.startswith("INCOMPLETE")


def test_sftp_only_account(tmp_path, warehouse, sshd):
    """An account that cannot run sha256sum: verification reads the archive back."""
    remote = sshd.sftp_root_dir / f"backup-{uuid.uuid4().hex[:8]}"
    os.symlink(warehouse, tmp_path / "warehouse.duckdb")
    import pwd

    pw = pwd.getpwnam(sshd.sftp_user)
    remote.mkdir()
    os.chown(remote, pw.pw_uid, pw.pw_gid)
    cfg = write_config(tmp_path, sftp_destination(sshd, remote, sftp_only=True))
    assert tableship(cfg, "run", "events", "--from", "2026-01-01", "--to", "2026-01-31").returncode == 0
    ver = tableship(cfg, "verify", "--json")
    assert ver.returncode == 0, ver.stdout + ver.stderr
    result = json.loads(ver.stdout)[0]
    assert result["status"] == "OK" and result["method"] == "read-back", result
    proc = tableship(cfg, "restore", "events", "--window", WINDOW, "--load", f"{tmp_path}/r.duckdb:t")
    assert proc.returncode == 0, proc.stderr
    compare_restored(warehouse, tmp_path / "r.duckdb", "t", "2026-01-01", "2026-01-31")


def test_prune_over_sftp(tmp_path, warehouse, sshd, remote):
    os.symlink(warehouse, tmp_path / "warehouse.duckdb")
    cfg = write_config(
        tmp_path, sftp_destination(sshd, remote), "retention = { keep_last = 1 }\nprune_after_run = true"
    )
    (remote / "events").mkdir()
    (remote / "events" / "notes.txt").write_text("not ours")
    for start, end in [("2025-12-01", "2025-12-31"), ("2026-01-01", "2026-01-31")]:
        proc = tableship(cfg, "run", "events", "--from", start, "--to", end)
        assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (remote / "events").iterdir()) == sorted(
        ["notes.txt"] + [f"events_20260101_20260131.csv.gz{s}" for s in ("", ".sha256", ".manifest.json")]
    )
    cfg.write_text(cfg.read_text().replace("keep_last = 1", "keep_days = 1"))
    proc = tableship(cfg, "prune")
    assert proc.returncode == 0 and "kept 1, deleted 0" in proc.stdout  # the newest verified stays
