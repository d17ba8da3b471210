"""Issue 12 acceptance: a job with two destinations (a local folder and a real sshd) while
the sshd is down → the local copy is verified, the job fails and is alerted once (real
SMTP fixture); with the sshd up again the next run only uploads: no new export, and the
source is not even readable any more (its file moved away), so a query would fail."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

from tableship.cli.demo import create_demo_warehouse

TODAY = dt.date(2026, 6, 15)
ARCHIVE = "customer_traffic_20260501_20260531.csv.gz"
FAST = "{ attempts = 2, initial_delay = 0.1, max_delay = 0.2 }"
ONE_MONTH = 'window = { unit = "month", count = 1 }'
CHUNKS = [
    "mnaas_customer_traffic_032026.csv.gz",
    "mnaas_customer_traffic_042026.csv.gz",
    "mnaas_customer_traffic_052026.csv.gz",
]


def run(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tableship", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "TABLESHIP_CONFIG"},
    )


def show(p: subprocess.CompletedProcess) -> str:
    return f"rc={p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"


def transitions(state: Path) -> list[tuple]:
    db = sqlite3.connect(f"file:{state / 'state.db'}?mode=ro", uri=True)
    try:
        return [
            tuple(r)
            for r in db.execute("SELECT run_id, from_phase, to_phase FROM transitions ORDER BY rowid")
        ]
    finally:
        db.close()


def deliveries(state: Path) -> dict[str, tuple]:
    db = sqlite3.connect(f"file:{state / 'state.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT destination, phase, result, attempts, verified_at FROM deliveries")
        return {r[0]: tuple(r[1:]) for r in rows}
    finally:
        db.close()


def run_with_sshd_down(cfg: Path, sshd) -> str:
    """A run while the sshd is down: exit 1, one ``Error:`` line naming edge2 (returned)."""
    sshd.stop()
    try:
        first = run(cfg, "run", "--date", TODAY.isoformat())
    finally:
        sshd.start()
        assert sshd.wait_ready()
    assert first.returncode == 1, show(first)
    errors = [line for line in first.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "destination edge2" in errors[0], show(first)
    assert "Traceback" not in first.stderr
    return errors[0]


def site(tmp_path: Path, sshd, mail, defaults: str = ONE_MONTH) -> tuple[Path, Path, Path, Path]:
    """A job writing to a local folder and the sshd; (config, warehouse, local folder, remote folder)."""
    warehouse = tmp_path / "wh.duckdb"
    create_demo_warehouse(warehouse, rows=5_000, today=TODAY)
    remote = sshd.root_dir / f"multi-{uuid.uuid4().hex[:8]}"
    remote.mkdir()
    local = tmp_path / "local-backup"
    local.mkdir()
    cfg = tmp_path / "tableship.toml"
    cfg.write_text(f"""
[settings]
state_dir = "state"

[sources.wh]
type = "duckdb"
path = "{warehouse}"

[destinations.local]
type = "local"
path = "{local}"

[destinations.edge2]
type = "sftp"
host = "{sshd.host}"
port = {sshd.port}
user = "{sshd.user}"
key_file = "{sshd.client_key}"
known_hosts = "{sshd.known_hosts}"
path = "{remote}"
connect_timeout = 3
retries = {FAST}

[defaults]
compression = {{ codec = "gzip", level = 1 }}
{defaults}

[jobs.customer_traffic]
table = "mnaas.customer_traffic"
destinations = ["local", "edge2"]

[alerts]
channels = ["mail"]

[alerts.mail]
type = "email"
host = "{mail.host}"
port = {mail.port}
security = "none"
from = "tableship@example.net"
to = ["dataops@example.net"]
retries = {{ attempts = 2, initial_delay = 0.05, max_delay = 0.1 }}
""")
    return cfg, warehouse, local, remote


def test_sshd_down_local_copy_verified_alerted_once_then_only_the_upload(tmp_path, sshd, smtp_factory):
    mail = smtp_factory()
    cfg, warehouse, local, remote = site(tmp_path, sshd, mail)
    state = tmp_path / "state"
    run_with_sshd_down(cfg, sshd)
    # the local copy is there, complete and verified
    folder = local / "customer_traffic"
    assert sorted(os.listdir(folder)) == sorted([ARCHIVE, f"{ARCHIVE}.sha256", f"{ARCHIVE}.manifest.json"])
    assert json.loads((folder / f"{ARCHIVE}.manifest.json").read_text())["destination"] == "local"
    got = deliveries(state)
    assert got["local"][:2] == ("verified", "success") and got["edge2"][1] == "failed", got
    # alerted once, naming the destination
    assert [m.subject for m in mail.messages] == [
        "[tableship] FAILED customer_traffic 2026-05-01..2026-05-31 (upload)"
    ]
    body = mail.messages[0].message.get_content()
    assert "Destination:  local, edge2 (failed: edge2)" in body, body

    # the source becomes unreadable: a second export would fail
    warehouse.rename(tmp_path / "moved-away.duckdb")
    second = run(cfg, "run", "--date", TODAY.isoformat())
    assert second.returncode == 0, show(second)
    assert "exporting" not in second.stderr
    exports = [t for t in transitions(state) if t[1:] == ("planned", "exported")]
    assert len(exports) == 1, transitions(state)
    assert sorted(os.listdir(remote / "customer_traffic")) == sorted(
        [ARCHIVE, f"{ARCHIVE}.sha256", f"{ARCHIVE}.manifest.json"]
    )
    assert (remote / "customer_traffic" / ARCHIVE).read_bytes() == (folder / ARCHIVE).read_bytes()
    after = deliveries(state)
    assert after["local"] == got["local"]  # the verified delivery was not redone
    assert after["edge2"][:2] == ("verified", "success")
    mail.wait_for_messages(2)
    assert mail.messages[1].subject.startswith("[tableship] RESOLVED customer_traffic ")
    assert len(mail.messages) == 2


def test_sshd_down_chunk_archives_kept_then_only_the_missing_copies(tmp_path, sshd, smtp_factory):
    """``layout = "chunk"``: with the sshd down the local folder gets every chunk archive,
    the job fails naming the chunks edge2 misses and is alerted once; with the sshd up the
    next run uploads only those, from staging (the source is gone: no query could run)."""
    mail = smtp_factory()
    cfg, warehouse, local, remote = site(
        tmp_path,
        sshd,
        mail,
        'window = { unit = "month", count = 3 }\nchunk = "month"\nlayout = "chunk"\n'
        'file_name = "mnaas_{table}_{chunk_start:%m%Y}.csv.gz"',
    )
    state = tmp_path / "state"
    line = run_with_sshd_down(cfg, sshd)
    assert "edge2 is missing 3 of 3 chunk archives (2026-03..2026-05), kept in staging" in line, line
    folder = local / "customer_traffic"
    manifest = "customer_traffic_20260301_20260531.chunks.json"
    expected = sorted(
        [manifest, f"{manifest}.sha256"] + [c + s for c in CHUNKS for s in ("", ".sha256", ".manifest.json")]
    )
    assert sorted(os.listdir(folder)) == expected
    assert sorted(os.listdir(state / "staging" / "customer_traffic")) == sorted([*CHUNKS, manifest])
    assert [m.subject for m in mail.messages] == [
        "[tableship] FAILED customer_traffic 2026-03-01..2026-05-31 (upload)"
    ]
    body = mail.messages[0].message.get_content()
    assert "Destination:  local, edge2 (failed: edge2)" in body, body
    before = {n: os.stat(folder / n).st_mtime_ns for n in expected}

    warehouse.rename(tmp_path / "moved-away.duckdb")
    second = run(cfg, "run", "--date", TODAY.isoformat())
    assert second.returncode == 0, show(second)
    assert "querying" not in second.stderr and "exporting" not in second.stderr, show(second)
    assert sorted(os.listdir(remote / "customer_traffic")) == expected
    for c in CHUNKS:
        assert (remote / "customer_traffic" / c).read_bytes() == (folder / c).read_bytes()
    assert {n: os.stat(folder / n).st_mtime_ns for n in expected} == before  # the local copies untouched
    assert os.listdir(state / "staging" / "customer_traffic") == []
    mail.wait_for_messages(2)
    assert mail.messages[1].subject.startswith("[tableship] RESOLVED customer_traffic ")
    assert len(mail.messages) == 2
