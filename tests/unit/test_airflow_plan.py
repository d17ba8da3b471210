"""The Airflow DAG builder's plain part (tableship.ops.airflow), without Airflow: tasks per
job or mapped per pool, pools from connection caps, exit code → task outcome."""

from __future__ import annotations

from pathlib import Path

from tableship.config.loader import load_config
from tableship.ops.airflow import dag_plan, run_command, task_outcome


def config(tmp_path: Path, jobs=("a", "b", "c-d")):
    lines = [
        "[sources.wh]",
        'type = "duckdb"',
        'path = "w.duckdb"',
        "[destinations.backup]",
        'type = "local"',
        'path = "backup"',
        "[defaults]",
        'source = "wh"',
        'destination = "backup"',
        'partition_column = "partition_date"',
    ]
    for j in jobs:
        lines += [f'[jobs."{j}"]', f'table = "s.{j.replace("-", "_")}"', f'remote_dir = "{j}"']
    path = tmp_path / "tableship.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_config(str(path))


def test_one_task_per_job(tmp_path):
    plan = dag_plan(config(tmp_path))
    assert [(t.task_id, t.jobs, t.pool, t.mapped) for t in plan.tasks] == [
        ("a", ("a",), None, False),
        ("b", ("b",), None, False),
        ("c-d", ("c-d",), None, False),
    ]
    assert plan.pools == {}


def test_mapped_jobs_are_one_mapped_task_per_pool(tmp_path):
    plan = dag_plan(config(tmp_path), mapped=True)
    assert [(t.task_id, t.jobs, t.mapped) for t in plan.tasks] == [
        ("jobs_default_pool", ("a", "b", "c-d"), True)
    ]


def test_exit_codes_become_task_outcomes():
    assert task_outcome(0) == "ok"
    assert task_outcome(75) == "reschedule"  # locked elsewhere: rescheduled, not failed
    assert task_outcome(2) == "fail"  # config error: failed without retries
    assert task_outcome(1) == "retry"  # job failed: Airflow's retry policy (a retry resumes)
    assert task_outcome(143) == "retry"


def test_the_task_runs_one_job_for_the_dag_run_date(tmp_path):
    argv = run_command(["tableship"], tmp_path / "t.toml", "a", "2026-11-26")
    assert argv == ["tableship", "--config", str(tmp_path / "t.toml"), "run", "a", "--date", "2026-11-26"]
