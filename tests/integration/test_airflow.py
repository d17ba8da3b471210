"""Real Apache Airflow (``airflow dags test`` on SQLite) runs the DAG that
tableship.ops.airflow builds from a config: it backs the DuckDB demo up to a local
destination; a config error fails its task without retries.

Airflow's pins conflict with tableship's test environment, so it runs in a virtualenv of
its own, built once under ``~/.cache/tableship-tests/airflow`` (``pip install
apache-airflow`` + this checkout); the tasks run this environment's tableship."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from tests.e2e.helpers import wait_for
from tests.servers import missing

from tableship.ledger.lock import JobLock

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tableship-tests" / "airflow"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def airflow_env() -> Path:
    """The virtualenv's bin folder (created and filled once, reused after)."""
    bindir = CACHE / "bin"
    if not (bindir / "airflow").exists():
        venv.create(CACHE, with_pip=True, clear=True)
        proc = subprocess.run(
            [str(bindir / "pip"), "install", "-q", "apache-airflow>=2.9", str(ROOT)],
            capture_output=True,
            text=True,
            timeout=1500,
        )
        if proc.returncode != 0:
            missing(f"cannot install apache-airflow into {CACHE}: {proc.stderr[-1500:]}")
    else:  # this checkout's tableship, fresh (the DAG module may have changed)
        subprocess.run(
            [str(bindir / "pip"), "install", "-q", "--no-deps", "--force-reinstall", str(ROOT)],
            capture_output=True,
            timeout=600,
            check=True,
        )
    return bindir


@pytest.fixture(scope="session")
def airflow_home(airflow_env, tmp_path_factory) -> Path:
    """One Airflow metadata database (SQLite) for the session, migrated once."""
    home = tmp_path_factory.mktemp("airflow-home")
    subprocess.run(
        [str(airflow_env / "airflow"), "db", "migrate"],
        env=airflow_environ(home, home / "dags"),
        capture_output=True,
        timeout=900,
        check=True,
    )
    return home


def airflow_environ(home: Path, dags: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TABLESHIP_CONFIG"))}
    return env | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
    }


def dag_file(dags: Path, dag_id: str, config: Path, after: str = "") -> None:
    dags.mkdir(parents=True, exist_ok=True)
    (dags / f"{dag_id}.py").write_text(
        "from pathlib import Path\n"
        "from tableship.ops.airflow import build_dag\n"
        f"dag = build_dag({str(config)!r}, dag_id={dag_id!r}, schedule=None, retries=2,\n"
        f"                command=[{sys.executable!r}, '-m', 'tableship'], reschedule_after=3)\n" + after
    )


def start_dags_test(bindir: Path, home: Path, dags: Path, dag_id: str, date: str) -> subprocess.Popen:
    log = open(dags / f"{dag_id}.log", "w")
    return subprocess.Popen(
        [str(bindir / "airflow"), "dags", "test", dag_id, date],
        env=airflow_environ(home, dags),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def task_states(home: Path, dag_id: str) -> list[tuple[str, int]]:
    db = sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True, timeout=30)
    try:
        return [
            (r[0], r[1])
            for r in db.execute("SELECT state, try_number FROM task_instance WHERE dag_id=?", (dag_id,))
        ]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def demo(tmp_path: Path) -> Path:
    """The DuckDB demo (warehouse + config), its first backup removed."""
    folder = tmp_path / "demo"
    subprocess.run(
        [sys.executable, "-m", "tableship", "demo", str(folder)], check=True, capture_output=True, timeout=600
    )
    for old in (folder / "backup-server").rglob("*"):
        if old.is_file():
            old.unlink()
    return folder


def test_the_dag_backs_up_the_demo(airflow_env, airflow_home, tmp_path):
    folder = demo(tmp_path)
    dags = tmp_path / "dags"
    dag_file(dags, "tableship_ok", folder / "tableship.toml")
    proc = start_dags_test(airflow_env, airflow_home, dags, "tableship_ok", "2026-11-26")
    rc = proc.wait(900)
    out = (dags / "tableship_ok.log").read_text(errors="replace")
    assert rc == 0, out[-5000:]
    assert task_states(airflow_home, "tableship_ok") == [("success", 1)], out[-3000:]
    archives = sorted(p.name for p in (folder / "backup-server").rglob("*.csv.gz"))
    assert archives == ["customer_traffic_20260601_20261031.csv.gz"], archives


def test_a_locked_job_is_rescheduled_not_failed(airflow_env, airflow_home, tmp_path):
    folder = demo(tmp_path)
    dags = tmp_path / "dags"
    dag_file(dags, "tableship_locked", folder / "tableship.toml")
    lock = JobLock(folder / ".tableship", "customer_traffic").acquire()  # "another host runs it"
    try:
        proc = start_dags_test(airflow_env, airflow_home, dags, "tableship_locked", "2026-11-26")
        wait_for(
            lambda: (
                task_states(airflow_home, "tableship_locked") == [("up_for_reschedule", 1)]
                or proc.poll() is not None
            ),
            600,
            what="the task rescheduled",
        )
        assert proc.poll() is None, (dags / "tableship_locked.log").read_text(errors="replace")[-5000:]
    finally:
        lock.release()
    rc = proc.wait(900)  # rescheduled after 3 s: now the lock is free, the job runs
    out = (dags / "tableship_locked.log").read_text(errors="replace")
    assert rc == 0, out[-5000:]
    assert "tableship exited 75 (locked or busy): rescheduled" in out
    assert task_states(airflow_home, "tableship_locked") == [("success", 1)]  # no retry was used
    assert list((folder / "backup-server").rglob("*.csv.gz"))


def test_a_config_error_fails_without_retries(airflow_env, airflow_home, tmp_path):
    folder = demo(tmp_path)
    dags = tmp_path / "dags"
    config = folder / "tableship.toml"
    # the config breaks after the DAG was parsed (a typo pushed later): the run exits 2
    dag_file(
        dags,
        "tableship_broken",
        config,
        "cfg = Path(" + repr(str(config)) + ")\n"
        "if 'bogus_key' not in cfg.read_text():\n"
        "    cfg.write_text(cfg.read_text().replace('[settings]', '[settings]\\nbogus_key = 1', 1))\n",
    )
    proc = start_dags_test(airflow_env, airflow_home, dags, "tableship_broken", "2026-11-26")
    rc = proc.wait(900)
    out = (dags / "tableship_broken.log").read_text(errors="replace")
    assert rc != 0, out[-5000:]
    assert "exited 2 (usage or config error): not retried" in out, out[-5000:]
    assert task_states(airflow_home, "tableship_broken") == [("failed", 1)]  # retries = 2, none used
