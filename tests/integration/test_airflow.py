"""Real Apache Airflow (``airflow dags test`` on SQLite) runs the DAG that
tableship.ops.airflow builds from a config: it backs the DuckDB demo up to a local
destination; a config error fails its task without retries.

Airflow's pins conflict with tableship's test environment, so it runs in a virtualenv of
its own, built once under ``~/.cache/tableship-tests/airflow`` (``pip install
apache-airflow`` + this checkout); the tasks run this environment's tableship."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from tests.servers import missing

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


def dags_test(bindir: Path, home: Path, config: Path, date: str) -> subprocess.CompletedProcess:
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / "tableship_dag.py").write_text(
        "from tableship.ops.airflow import build_dag\n"
        f"dag = build_dag({str(config)!r}, dag_id='tableship', schedule=None, retries=2,\n"
        f"                command=[{sys.executable!r}, '-m', 'tableship'], reschedule_after=5)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TABLESHIP_CONFIG"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
    }
    if not (home / "airflow.db").exists():
        subprocess.run(
            [str(bindir / "airflow"), "db", "migrate"], env=env, capture_output=True, timeout=600, check=True
        )
    return subprocess.run(
        [str(bindir / "airflow"), "dags", "test", "tableship", date],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_dag_backs_up_the_demo(airflow_env, tmp_path):
    demo = tmp_path / "demo"
    subprocess.run(
        [sys.executable, "-m", "tableship", "demo", str(demo)], check=True, capture_output=True, timeout=600
    )
    for old in (demo / "backup-server").rglob("*"):
        if old.is_file():
            old.unlink()
    proc = dags_test(airflow_env, tmp_path / "airflow", demo / "tableship.toml", "2026-11-26")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "state=success" in out, out[-5000:]
    archives = sorted(p.name for p in (demo / "backup-server").rglob("*.csv.gz"))
    assert archives == ["customer_traffic_20260601_20261031.csv.gz"], archives
