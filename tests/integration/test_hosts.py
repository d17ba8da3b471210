"""Several hosts, one PostgreSQL ledger (issue 16): three tableship processes, each with its
own state_dir and staging folder, run ``run --all`` at once over 12 jobs and split them —
every window verified exactly once, none exported twice (asserted on the destination, the
ledger and the source server's statement log); a process killed with ``kill -9`` in the
middle of an export leaves its job to a later run of another process; an incident is
messaged once whichever hosts fail."""

from __future__ import annotations

import gzip
import os
import signal
import socket
from pathlib import Path

import psycopg
import pytest
from tests.e2e.helpers import wait_for
from tests.integration.hosts import ROWS_IN_WINDOW, RUN_DATE, WINDOW, make_estate, output, start

ARCHIVE = "{t}_20261001_20261031.csv.gz"


def ledger_rows(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as con:
        return [tuple(r) for r in con.execute(sql, params).fetchall()]


def assert_each_window_verified_once(estate, expect_queries: dict[str, int] | None = None) -> None:
    for t in estate.tables:
        folder = estate.dest / t
        names = sorted(p.name for p in folder.iterdir())
        archive = ARCHIVE.format(t=t)
        assert names == [archive, archive + ".manifest.json", archive + ".sha256"], (t, names)
        lines = gzip.decompress((folder / archive).read_bytes()).decode().splitlines()
        assert len(lines) == 1 + ROWS_IN_WINDOW, t  # header + the October rows
    runs = ledger_rows(estate.ledger_url, "SELECT job, phase, result, window_start, window_end FROM runs")
    by_job: dict[str, list] = {}
    for job, phase, result, ws, we in runs:
        by_job.setdefault(job, []).append((phase, result, (ws, we)))
    assert sorted(by_job) == estate.tables
    for job, rs in by_job.items():
        assert rs == [("done", "success", WINDOW)], (job, rs)  # one run per job: no job done twice
    queries = estate.export_queries()
    want = {t: 1 for t in estate.tables} | (expect_queries or {})
    assert dict(queries) == want, queries


@pytest.fixture
def estate(postgres, tmp_path):
    return make_estate(postgres, tmp_path, 12, f"h{os.getpid()}_{tmp_path.name[-12:].replace('-', '_')}")


def test_three_hosts_split_twelve_jobs(estate):
    configs = [estate.config(f"host{i}") for i in (1, 2, 3)]
    procs = [start(c, "run", "--all", "--date", RUN_DATE) for c in configs]
    codes = [p.wait(600) for p in procs]
    logs = [output(c) for c in configs]
    assert all(rc in (0, 75) for rc in codes), "\n".join(logs)
    assert 0 in codes, logs
    assert_each_window_verified_once(estate)
    # each host's staging folder is its own, and nothing is left in any
    for c in configs:
        staging = c.parent / "staging"
        assert not staging.exists() or not [p for p in staging.rglob("*") if p.is_file()]
    # a job another host held or had already done is reported as SKIPPED, never as FAILED
    assert "FAILED" not in "".join(logs)
    # status (from any host) shows every window verified
    status = start(configs[0], "status", name="status")
    assert status.wait(300) == 0, output(configs[0], "status")


def test_a_host_killed_mid_export_leaves_its_job_to_another(estate, tmp_path):
    alerts_file = tmp_path / "alerts.log"
    alerts = f"""
[alerts]
channels = ["pager"]
[alerts.pager]
type = "command"
argv = ["sh", "-c", "echo \\"$TABLESHIP_EVENT $TABLESHIP_JOB\\" >> \\"$1\\"", "pager", "{alerts_file}"]
"""
    configs = [estate.config(f"host{i}", alerts) for i in (1, 2, 3)]
    holds = tmp_path / "holds"
    holds.mkdir()
    env = {"TABLESHIP_TEST_HOLD": "export", "TABLESHIP_TEST_HOLD_DIR": str(holds)}
    victim = start(configs[0], "run", "t01", "--date", RUN_DATE, env=env, name="victim")
    marker = holds / "export"
    wait_for(lambda: marker.exists() or victim.poll() is not None, 300, what="host1 holding in the export")
    assert victim.poll() is None, output(configs[0], "victim")
    others = [start(c, "run", "--all", "--date", RUN_DATE) for c in configs[1:]]
    codes = [p.wait(600) for p in others]
    assert all(rc == 0 for rc in codes), [output(c) for c in configs[1:]]
    assert not (estate.dest / "t01" / ARCHIVE.format(t="t01")).exists()
    # status, from another host, says which host runs t01
    status = start(configs[2], "status", "--date", RUN_DATE, name="status")
    status.wait(300)
    assert f"t01: running on {socket.gethostname()} (pid {victim.pid}) since" in output(configs[2], "status")
    os.kill(victim.pid, signal.SIGKILL)  # mid-export: the staged archive is a .part on host1
    assert victim.wait(60) == -signal.SIGKILL
    # a later run of another host finishes t01 (the others are found done)
    later = start(configs[1], "run", "--all", "--date", RUN_DATE, name="later")
    assert later.wait(600) == 0, output(configs[1], "later")
    assert "t01" in output(configs[1], "later")
    assert_each_window_verified_once(estate, {"t01": 2})  # host1's interrupted export + host2's
    run_id, attempts, host_pid = ledger_rows(
        estate.ledger_url, "SELECT id, attempts, pid FROM runs WHERE job='t01'"
    )[0]
    assert attempts == 2  # the same run, resumed by another process
    steps = ledger_rows(
        estate.ledger_url,
        "SELECT to_phase, note, pid FROM transitions WHERE run_id=%s ORDER BY at",
        (run_id,),
    )
    assert steps[0][:2] == ("planned", "planned") and steps[0][2] == victim.pid
    assert {s[2] for s in steps[1:]} == {host_pid} != {victim.pid}  # the rest by host2's process
    # nothing failed, so nothing was alerted; the lock rows are gone
    assert not alerts_file.exists() or alerts_file.read_text() == ""
    assert ledger_rows(estate.ledger_url, "SELECT job FROM job_locks") == []
    Path(holds / "export").unlink(missing_ok=True)


def test_an_incident_is_opened_and_messaged_once_across_hosts(estate, tmp_path):
    alerts_file = tmp_path / "alerts.log"
    alerts = f"""
[alerts]
channels = ["pager"]
[alerts.pager]
type = "command"
argv = ["sh", "-c", "echo \\"$TABLESHIP_EVENT $TABLESHIP_JOB\\" >> \\"$1\\"", "pager", "{alerts_file}"]
"""
    broken = {"gone": {"table": f"{estate.schema}.dropped_upstream"}}
    configs = [estate.config(f"host{i}", alerts, broken) for i in (1, 2, 3)]
    procs = [start(c, "run", "gone", "--date", RUN_DATE) for c in configs]
    codes = [p.wait(600) for p in procs]
    logs = [output(c) for c in configs]
    assert all(rc in (1, 75) for rc in codes) and 1 in codes, logs
    assert alerts_file.read_text().splitlines() == ["failed gone"]  # one message, whoever failed
    incidents = ledger_rows(estate.ledger_url, "SELECT job, failures, closed_at FROM incidents")
    assert len(incidents) == 1 and incidents[0][0] == "gone" and incidents[0][2] is None
    failures = incidents[0][1]
    assert failures == codes.count(1)
    # the table comes back; any host's success resolves it once
    estate.server.psql(
        f"CREATE TABLE {estate.schema}.dropped_upstream AS SELECT * FROM {estate.schema}.t01",
        dbname=estate.source_url.rsplit("/", 1)[1],
    )
    procs = [start(c, "run", "gone", "--date", RUN_DATE, name="again") for c in configs]
    codes = [p.wait(600) for p in procs]
    assert 0 in codes and all(rc in (0, 75) for rc in codes), [output(c, "again") for c in configs]
    assert alerts_file.read_text().splitlines() == ["failed gone", "resolved gone"]
    assert ledger_rows(estate.ledger_url, "SELECT count(*) FROM incidents WHERE closed_at IS NOT NULL") == [
        (1,)
    ]


def test_a_run_uploaded_by_a_dead_host_is_verified_by_another_without_exporting(postgres, tmp_path):
    """Resume on another host: host1 dies after the upload (holding in the verification's
    sha256); host2 finishes the run with verify + sidecars only — its staged archive was on
    host1, and is not needed."""
    estate = make_estate(postgres, tmp_path, 1, f"r{os.getpid()}_{tmp_path.name[-12:].replace('-', '_')}")
    c1, c2 = estate.config("host1"), estate.config("host2")
    holds = tmp_path / "holds"
    holds.mkdir()
    env = {"TABLESHIP_TEST_HOLD": "sha256", "TABLESHIP_TEST_HOLD_DIR": str(holds)}
    victim = start(c1, "run", "--all", "--date", RUN_DATE, env=env, name="victim")
    marker = holds / "sha256"

    def verifying() -> bool:
        """Held in a sha256 after the upload (an earlier one — "already there?" before the
        upload — is let go)."""
        if victim.poll() is not None:
            return True
        if not marker.exists():
            return False
        if ledger_rows(estate.ledger_url, "SELECT phase FROM deliveries") == [("uploaded",)]:
            return True
        marker.unlink()
        return False

    wait_for(verifying, 300, what="host1 verifying")
    assert victim.poll() is None, output(c1, "victim")
    phase = ledger_rows(estate.ledger_url, "SELECT phase FROM deliveries")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(60)
    assert phase == [("uploaded",)]  # on the destination, not verified yet
    later = start(c2, "run", "--all", "--date", RUN_DATE, name="later")
    assert later.wait(600) == 0, output(c2, "later")
    assert_each_window_verified_once(estate)  # one export: host1's
    run_id, attempts = ledger_rows(estate.ledger_url, "SELECT id, attempts FROM runs")[0]
    steps = ledger_rows(
        estate.ledger_url, "SELECT to_phase, pid FROM transitions WHERE run_id=%s ORDER BY at", (run_id,)
    )
    by: dict[str, int] = {}
    for phase, pid in steps:
        by.setdefault(phase, pid)  # who first recorded it (host2's "resumed" repeats "uploaded")
    assert by["exported"] == victim.pid
    assert by["verified"] == by["done"] != victim.pid  # verified and finished by host2's process
    assert attempts == 2
    (holds / "sha256").unlink(missing_ok=True)
