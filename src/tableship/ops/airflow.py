"""Apache Airflow as the scheduler: a DAG built from a tableship config (``tableship[airflow]``).

``build_dag(config_path, …)`` returns an Airflow DAG with one task per job; each task runs
``tableship --config PATH run JOB --date {{ ds }}`` in a subprocess (the tableship of the
same environment by default, or ``command=[…]``), so a task is exactly a cron run of one
job: the same lock, ledger, resume and alerts. The tasks share the config's ledger —
with ``settings.state`` on PostgreSQL every Airflow worker sees every run — so Airflow's
retries *resume* a job (at its first phase not done), they never restart it.

Exit codes become task states (:func:`task_outcome`):

* 0 → success;
* 75 (the job's lock is held elsewhere, the ledger is busy or unreachable) →
  ``AirflowRescheduleException``: the task is *rescheduled* after ``reschedule_after``
  (state ``up_for_reschedule``), not failed and not counted against its retries;
* 2 (a usage or config error: retrying cannot help) → ``AirflowFailException``: failed at
  once, no retries;
* 1 (the job failed; its state lets a re-run resume) and anything else (a signal) →
  ``AirflowException``: Airflow's retry policy (``retries``, ``retry_delay``) applies.

Pools: a source or destination with a connection cap (``max_connections``) gets an Airflow
pool ``tableship_<source|destination>_<name>`` of that many slots (:func:`pools`; create
them with ``airflow pools set``). A task has one pool: the source's if it has a cap (the
export holds the source connection longest), else the destination's.

Job sets: ``mapped=True`` makes one mapped task per pool (dynamic task mapping over the
job names read from the config when the DAG *runs*), so jobs added to the config (or to a
``tables_file``) are picked up without changing the DAG file.

This module imports Airflow only inside :func:`build_dag` (an optional extra); the rest
(:func:`dag_plan`, :func:`task_outcome`, :func:`pools`) is plain Python, tested without it.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tableship.config.loader import load_config
from tableship.config.models import Config
from tableship.core.errors import EXIT_JOB_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_USAGE


@dataclass(frozen=True)
class TaskPlan:
    """One Airflow task: its id, the jobs it runs (one, or a mapped set) and its pool."""

    task_id: str
    jobs: tuple[str, ...]
    pool: str | None
    mapped: bool = False


@dataclass(frozen=True)
class DagPlan:
    tasks: list[TaskPlan]
    pools: dict[str, int] = field(default_factory=dict)


def _cap(cfg: Any) -> int | None:
    cap = getattr(cfg, "max_connections", None)
    return int(cap) if cap else None


def pools(config: Config) -> dict[str, int]:
    """Airflow pool name → slots, for each source and destination with a connection cap."""
    out = {}
    for kind, defs in (("source", config.sources), ("destination", config.destinations)):
        for name, cfg in defs.items():
            cap = _cap(cfg)
            if cap:
                out[f"tableship_{kind}_{name}"] = cap
    return out


def job_pool(config: Config, job: str) -> str | None:
    j = config.jobs[job]
    if _cap(config.sources.get(j.source)):
        return f"tableship_source_{j.source}"
    if _cap(config.destinations.get(j.destination)):
        return f"tableship_destination_{j.destination}"
    return None


def _task_id(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name)


def dag_plan(config: Config, mapped: bool = False) -> DagPlan:
    """The tasks of the DAG for ``config`` (no Airflow needed)."""
    if not mapped:
        tasks = [TaskPlan(_task_id(j), (j,), job_pool(config, j)) for j in config.jobs]
        return DagPlan(tasks, pools(config))
    groups: dict[str | None, list[str]] = {}
    for j in config.jobs:
        groups.setdefault(job_pool(config, j), []).append(j)
    tasks = [
        TaskPlan(f"jobs_{pool or 'default_pool'}", tuple(jobs), pool, mapped=True)
        for pool, jobs in groups.items()
    ]
    return DagPlan(tasks, pools(config))


def task_outcome(rc: int) -> str:
    """``ok`` | ``reschedule`` (75) | ``fail`` (2: no retry) | ``retry`` (1, a signal, anything else)."""
    if rc == EXIT_OK:
        return "ok"
    if rc == EXIT_LOCKED:
        return "reschedule"
    if rc == EXIT_USAGE:
        return "fail"
    return "retry"


def run_command(command: Sequence[str], config_path: Path, job: str, run_date: str | None) -> list[str]:
    argv = [*command, "--config", str(config_path), "run", job]
    return argv + (["--date", run_date] if run_date else [])


def run_job(
    command: Sequence[str],
    config_path: str,
    job: str,
    run_date: str | None,
    reschedule_after: float,
) -> None:
    """Run one job as a task; map its exit code onto Airflow (see the module docstring)."""
    try:  # optional extra (tableship[airflow]); Airflow 3 moved them to the task SDK
        from airflow.sdk.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowRescheduleException,
        )
    except ImportError:  # Airflow 2.x
        from airflow.exceptions import (  # type: ignore[no-redef, unused-ignore]
            AirflowException,
            AirflowFailException,
            AirflowRescheduleException,
        )

    argv = run_command(command, Path(config_path), job, run_date)
    print("running:", " ".join(argv), flush=True)
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False)
    outcome = task_outcome(proc.returncode)
    if outcome == "ok":
        return
    if outcome == "reschedule":
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=reschedule_after)
        print(f"tableship exited 75 (locked or busy): rescheduled for {when.isoformat()}", flush=True)
        raise AirflowRescheduleException(when)
    if outcome == "fail":
        raise AirflowFailException(f"tableship run {job} exited 2 (usage or config error): not retried")
    code = proc.returncode
    what = "failed (a re-run resumes it)" if code == EXIT_JOB_FAILED else f"exited {code}"
    raise AirflowException(f"tableship run {job} {what}")


def build_dag(
    config_path: str | Path,
    dag_id: str = "tableship",
    *,
    schedule: str | None = "15 2 * * *",
    start_date: dt.datetime | None = None,
    retries: int = 2,
    retry_delay: dt.timedelta = dt.timedelta(minutes=10),
    reschedule_after: float = 300,
    mapped: bool = False,
    command: Sequence[str] | None = None,
    catchup: bool = False,
    tags: Sequence[str] = ("tableship",),
) -> Any:
    """An Airflow DAG running every job of the config (see the module docstring)."""
    try:
        from airflow.sdk import DAG, task  # Airflow 3 (optional extra)
    except ImportError:  # Airflow 2.x
        from airflow import DAG  # type: ignore[no-redef, unused-ignore]  # (needed only with Airflow installed)
        from airflow.decorators import task  # type: ignore[no-redef, unused-ignore]

    path = Path(config_path).resolve()
    config = load_config(str(path))
    plan = dag_plan(config, mapped)
    cmd = list(command or [sys.executable, "-m", "tableship"])
    start = start_date or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=start,
        catchup=catchup,
        tags=list(tags),
        default_args={"retries": retries, "retry_delay": retry_delay},
    ) as dag:
        for t in plan.tasks:
            extra = {"pool": t.pool} if t.pool else {}
            if not t.mapped:
                job = t.jobs[0]

                @task(task_id=t.task_id, **extra)
                def one(job: str = job, ds: str | None = None) -> None:
                    run_job(cmd, str(path), job, ds, reschedule_after)

                one()
                continue

            pool = t.pool

            @task(task_id=f"list_{t.task_id}")
            def names(pool: str | None = pool) -> list[str]:
                now = load_config(str(path))  # the config as it is when the DAG runs
                return [j for j in now.jobs if job_pool(now, j) == pool]

            @task(task_id=t.task_id, **extra)
            def each(job: str, ds: str | None = None) -> None:
                run_job(cmd, str(path), job, ds, reschedule_after)

            each.expand(job=names())
    return dag
