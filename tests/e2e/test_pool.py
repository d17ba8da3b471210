"""``tableship run --all --jobs N`` through the CLI against a real OpenSSH server.

The sshd serves SFTP through a wrapper (``Subsystem sftp <wrapper>``) that counts the
SFTP sessions open at once on the SERVER side: under ``flock`` it increments a counter
when a session starts and decrements it when ``sftp-server`` exits, appending
``+ N`` / ``- N`` to an event file. Every connection tableship opens (asyncssh's and
OpenSSH's ``sftp`` for an upload) starts exactly one SFTP session, so the largest ``N``
is the most connections the pool ever had open on the destination.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.helpers import (
    RUN_DATE,
    TABLE,
    Workspace,
    assert_clean_error,
    decompress,
    sha256_file,
    wait_for,
)
from tests.servers import make_base_dir, remove_dir
from tests.servers.sshd import SshServer, running_sshd

GOOD = [f"t{i:02d}" for i in range(12)]
BAD = "broken"  # its table does not exist: the job fails in export
CAP = 2
SFTP_SERVER = "/usr/lib/openssh/sftp-server"

WRAPPER = """#!/bin/sh
# one SFTP session: count it in while sftp-server runs (tests/integration/test_pool.py)
D={folder}
( flock 9; n=$(( $(cat "$D/open") + 1 )); echo "$n" > "$D/open"; echo "+ $n" >> "$D/events" ) 9>"$D/lock"
{server} "$@"
rc=$?
( flock 9; n=$(( $(cat "$D/open") - 1 )); echo "$n" > "$D/open"; echo "- $n" >> "$D/events" ) 9>"$D/lock"
exit $rc
"""


class Counted:
    """The sshd and its session counter."""

    def __init__(self, server: SshServer, folder: Path):
        self.server = server
        self.folder = folder

    def reset(self) -> None:
        (self.folder / "open").write_text("0\n")
        (self.folder / "events").write_text("")

    def peak(self) -> int:
        counts = [int(line.split()[1]) for line in (self.folder / "events").read_text().splitlines()]
        return max(counts, default=0)

    def sessions(self) -> int:
        return sum(1 for line in (self.folder / "events").read_text().splitlines() if line.startswith("+"))


@pytest.fixture(scope="module")
def counted_sshd() -> Iterator[Counted]:
    assert Path(SFTP_SERVER).exists(), f"{SFTP_SERVER} (openssh-sftp-server) is needed by this test"
    folder = make_base_dir("sftp-sessions")
    try:
        wrapper = folder / "sftp-counted"
        wrapper.write_text(WRAPPER.format(folder=folder, server=SFTP_SERVER))
        wrapper.chmod(0o755)
        counted = Counted(None, folder)  # type: ignore[arg-type]
        counted.reset()
        with running_sshd(sftp_subsystem=str(wrapper)) as server:
            counted.server = server
            yield counted
    finally:
        remove_dir(folder)


@pytest.fixture
def fleet(tmp_path, small_warehouse, counted_sshd) -> Workspace:
    """12 good jobs and one failing one on one sftp destination capped at 2 connections."""
    sshd = counted_sshd.server
    ws = Workspace(tmp_path / "fleet", small_warehouse)
    remote = sshd.root_dir / tmp_path.name
    remote.mkdir()
    ws.remote = remote  # type: ignore[attr-defined]
    jobs = {j: {"table": TABLE, "remote_dir": j} for j in GOOD}
    jobs[BAD] = {"table": "mnaas.no_such_table", "remote_dir": BAD}
    ws.write_config(
        jobs,
        destinations={
            "edge": {
                "type": "sftp",
                "host": sshd.host,
                "port": sshd.port,
                "user": sshd.user,
                "key_file": str(sshd.client_key),
                "known_hosts": str(sshd.known_hosts),
                "path": str(remote),
                "connect_timeout": 10,
                "max_connections": CAP,
            }
        },
        defaults={"destination": "edge"},
    )
    counted_sshd.reset()
    return ws


def _done_runs(ws: Workspace) -> dict[str, dict]:
    return {r["job"]: r for r in ws.runs() if r["phase"] == "done" and r["result"] == "success"}


def _assert_verified(ws: Workspace, jobs: list[str]) -> None:
    """Each job's archive on the server is the one its ledger row recorded, with both sidecars."""
    done = _done_runs(ws)
    assert sorted(done) == sorted(jobs)
    for job in jobs:
        run = done[job]
        archive = ws.remote / run["remote_path"]  # type: ignore[attr-defined]
        assert sha256_file(archive) == run["sha256"], job
        assert (archive.parent / (archive.name + ".sha256")).read_text().split()[0] == run["sha256"]
        assert (archive.parent / (archive.name + ".manifest.json")).exists()
        decompress(archive)


def _assert_nothing_partial(ws: Workspace) -> None:
    """Under the remote root and staging: temporaries, or complete files the ledger recorded."""
    recorded = {r["file_name"]: r["sha256"] for r in ws.runs() if r["sha256"]}
    for base in (ws.remote, ws.staging):  # type: ignore[attr-defined]
        for rel in ws.files(base):
            path = base / rel
            if path.name.endswith(".part") or path.name.startswith("."):
                continue  # a temporary name, never read as an archive
            name = path.name.removesuffix(".sha256").removesuffix(".manifest.json")
            assert name in recorded, f"unexpected file under a final name: {path}"
            if path.name == name:
                assert sha256_file(path) == recorded[name], f"partial archive under a final name: {path}"


def test_a_pool_of_13_jobs_with_4_at_once_keeps_the_destination_cap(fleet, counted_sshd):
    result = fleet.cli("run", "--all", "--jobs", "4", "--date", RUN_DATE, timeout=900)
    # one job failed: exit 1, its one Error: line, the others all verified on the server
    assert_clean_error(result, 1, BAD)
    _assert_verified(fleet, GOOD)
    [bad] = [r for r in fleet.runs() if r["job"] == BAD]
    assert bad["result"] == "failed" and bad["failed_phase"] == "export"
    # the cap held on the server side, and it was reached (several jobs did wait for it)
    assert counted_sshd.sessions() >= len(GOOD)
    assert counted_sshd.peak() == CAP, (fleet.remote, (counted_sshd.folder / "events").read_text())
    assert "waiting for a free connection to destination edge (max_connections = 2)" in result.stderr
    # one summary line per job, then one summary table (one row per job)
    lines = result.stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.split()[:3] == ["JOB", "WINDOW", "RESULT"]]
    assert len(header) == 1, result.stdout
    rows = lines[header[0] + 1 :]
    assert sorted(r.split()[0] for r in rows) == sorted([*GOOD, BAD])
    assert all(" OK " in r for r in rows if r.split()[0] in GOOD)
    assert [r for r in rows if r.startswith(BAD)][0].split()[2] == "FAILED"
    for job in GOOD:
        assert sum(1 for line in lines[: header[0]] if line.startswith(f"{job} ") and ": OK, " in line) == 1
    # every log line of a job's run carries its tag
    for job in GOOD:
        run_id = _done_runs(fleet)[job]["id"]
        assert f"[{job}#{run_id}] verified " in result.stderr


def test_sigterm_stops_the_pool_and_a_rerun_finishes_everything(fleet, counted_sshd):
    holds = fleet.root / "holds"
    holds.mkdir()
    env = {"TABLESHIP_TEST_HOLD": "upload", "TABLESHIP_TEST_HOLD_DIR": str(holds)}
    proc = fleet.popen("run", "--all", "--jobs", "4", "--date", RUN_DATE, env=env, name="pool")
    # the first upload has its remote temporary: the pool is mid-run, the other jobs queued
    wait_for(lambda: (holds / "upload").exists(), timeout=300, proc=proc, what="the first upload")
    os.kill(proc.pid, signal.SIGTERM)
    result = proc.wait(timeout=300)
    assert_clean_error(result, 128 + signal.SIGTERM, "interrupted by SIGTERM")
    runs = fleet.runs()
    started = {r["job"] for r in runs}
    assert 1 <= len(started) <= 4, runs  # at most the 4 running jobs ever started
    for r in runs:
        if r["job"] != BAD:
            assert r["result"] == "failed" and "interrupted by SIGTERM" in r["error"], r
    assert "INTERRUPTED" in result.stdout and "NOT STARTED" in result.stdout
    _assert_nothing_partial(fleet)

    (holds / "upload").unlink(missing_ok=True)
    again = fleet.cli("run", "--all", "--jobs", "4", "--date", RUN_DATE, timeout=900)
    assert_clean_error(again, 1, BAD)
    _assert_verified(fleet, GOOD)
    resumed = [r for r in fleet.runs() if r["job"] in started and r["job"] != BAD]
    assert all(r["attempts"] >= 2 for r in resumed), resumed  # the interrupted runs resumed
    _assert_nothing_partial(fleet)
    assert not [p for p in fleet.files(fleet.remote) if p.rsplit("/", 1)[-1].startswith(".")]
    assert counted_sshd.peak() <= CAP
