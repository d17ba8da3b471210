"""Errors are what they are: an exception tableship does not map (a bug, an unexpected
library error — ValueError included) fails the job as "unexpected error: …" in the
ledger and the summary, never as "interrupted" and never disguised as a JobError; the
next job of the batch still runs."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from tests.e2e.helpers import to_toml

import tableship.backup.pipeline as pipeline
from tableship import run_jobs
from tableship.cli.demo import create_demo_warehouse
from tableship.config.loader import load_config


@pytest.fixture
def config(tmp_path):
    wh = tmp_path / "warehouse.duckdb"
    create_demo_warehouse(wh, rows=2_000, today=dt.date(2024, 2, 15), months=2)
    (tmp_path / "backup").mkdir()
    doc = {
        "settings": {"state_dir": "state"},
        "sources": {"wh": {"type": "duckdb", "path": str(wh)}},
        "destinations": {"backup": {"type": "local", "path": "backup"}},
        "defaults": {"source": "wh", "destination": "backup", "window": {"unit": "month", "count": 1}},
        "jobs": {j: {"table": "mnaas.customer_traffic", "remote_dir": j} for j in ("first", "second")},
    }
    path = tmp_path / "tableship.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize(
    "error",
    [RuntimeError("boom"), ValueError("a bug, not a user mistake")],
    ids=["RuntimeError", "ValueError"],
)
def test_an_unmapped_exception_is_recorded_as_unexpected(config, monkeypatch, error):
    real = pipeline.write_archive

    def failing_once(*args, **kwargs):
        monkeypatch.setattr(pipeline, "write_archive", real)  # only the first job's export fails
        raise error

    monkeypatch.setattr(pipeline, "write_archive", failing_once)  # fault injection in the export
    outcomes = run_jobs(  # one after the other: "the first job's export" is the first export
        config, ["first", "second"], run_date=dt.date(2024, 2, 15), echo=lambda s: None, max_jobs=1
    )
    assert [(o.job, o.status) for o in outcomes] == [("first", "failed"), ("second", "success")]
    name = type(error).__name__
    assert "unexpected error" in outcomes[0].summary() and name in outcomes[0].summary()
    con = sqlite3.connect(config.settings.state_dir / "state.db")
    try:
        [(result, recorded)] = con.execute("SELECT result, error FROM runs WHERE job = 'first'").fetchall()
    finally:
        con.close()
    assert result == "failed"
    assert recorded == f"unexpected error: {name}: {error}"
    assert "interrupted" not in recorded
