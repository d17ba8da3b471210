"""Liveness: a run whose process is gone shows as ``interrupted`` (not ``running``) in
``status``, ``history``, their ``--json`` and the metrics and status files; a live run
still shows as ``running``. The job's lock (held only by a live process) tells which."""

from __future__ import annotations

import json
import signal

from tests.e2e.helpers import ARCHIVE, JOB, RUN_DATE, TABLE, wait_for


def staged_part(ws) -> bool:
    try:
        return (ws.staging / JOB / f"{ARCHIVE}.part").stat().st_size > 1_000_000
    except FileNotFoundError:
        return False


def status_json(ws) -> dict:
    r = ws.cli("status", "--json")
    assert r.rc in (0, 1, 2, 3), str(r)  # v9 status exit codes may flag the unfinished window
    return {row["job"]: row for row in json.loads(r.stdout)}


def metric(text: str, name: str, **labels) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_a_killed_run_shows_as_interrupted_everywhere(big_ws):
    ws = big_ws
    metrics = ws.root / "metrics" / "tableship.prom"
    status_file = ws.root / "metrics" / "status.txt"
    ws.write_config(
        {
            JOB: {"table": TABLE},
            "other": {"table": TABLE, "remote_dir": "other", "window": {"unit": "day", "count": 1}},
        },
        settings={"metrics_file": str(metrics), "status_file": str(status_file)},
    )
    proc = ws.popen("run", JOB, "--date", RUN_DATE)
    try:
        wait_for(lambda: staged_part(ws), proc=proc, what="the export to be under way")
        # alive: the run holds its job's lock
        assert status_json(ws)[JOB]["result"] == "running"
        proc.proc.send_signal(signal.SIGKILL)
        r = proc.wait()
    finally:
        proc.kill()
    assert r.rc == -signal.SIGKILL
    assert ws.runs()[0]["result"] == "running"  # the ledger still says so: the process died without a word

    assert status_json(ws)[JOB]["result"] == "interrupted"
    r = ws.cli("status")
    row = next(line for line in r.stdout.splitlines() if line.startswith(JOB))
    assert "interrupted" in row and "running" not in row, r.stdout
    r = ws.cli("history", "--json")
    assert [h["result"] for h in json.loads(r.stdout)] == ["interrupted"], r.stdout
    r = ws.cli("history", JOB)
    assert "interrupted" in r.stdout and "running" not in r.stdout, r.stdout

    # the metrics and status files, rewritten by a run of another job, say so too
    r = ws.cli("run", "other", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    text = metrics.read_text()
    assert metric(text, "tableship_last_run_result", tableship_job=JOB, result="interrupted") == 1.0, text
    assert metric(text, "tableship_last_run_result", tableship_job=JOB, result="running") == 0.0, text
    assert f"{JOB}.result=interrupted" in status_file.read_text().splitlines()

    # the next run of the job resumes it; it is a success, not interrupted any more
    r = ws.cli("run", JOB, "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert status_json(ws)[JOB]["result"] == "success"
