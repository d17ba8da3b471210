"""``prune_after_run`` can neither abort a batch nor change a successful job's outcome:
an unexpected error inside it (a bug, an unmapped library error) is logged, the backup
stays OK and the next job of the batch runs. A signal still ends the whole command."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sqlite3

import pytest
from tests.e2e.helpers import to_toml

import tableship.catalog.retention as retention
from tableship import run_jobs
from tableship.cli.demo import create_demo_warehouse
from tableship.config.loader import load_config
from tableship.core.errors import Interrupted


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
        "jobs": {
            "first": {
                "table": "mnaas.customer_traffic",
                "remote_dir": "first",
                "prune_after_run": True,
                "retention": {"keep_last": 1},
            },
            "second": {"table": "mnaas.customer_traffic", "remote_dir": "second"},
        },
    }
    path = tmp_path / "tableship.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("boom"),
        sqlite3.OperationalError("disk I/O error"),
        PermissionError(13, "Permission denied"),
    ],
    ids=["bug", "sqlite", "os"],
)
def test_an_unexpected_error_in_prune_after_run_is_only_logged(config, monkeypatch, caplog, error):
    def failing_prune(*args, **kwargs):
        raise error

    monkeypatch.setattr(retention, "prune_job", failing_prune)  # fault injection inside the hook
    with caplog.at_level(logging.ERROR, logger="tableship"):
        outcomes = run_jobs(config, ["first", "second"], run_date=dt.date(2024, 2, 15), echo=lambda s: None)
    assert [(o.job, o.status) for o in outcomes] == [("first", "success"), ("second", "success")]
    assert any("prune after the run failed: unexpected error" in r.getMessage() for r in caplog.records)


def test_a_signal_in_prune_after_run_still_ends_the_command(config, monkeypatch):
    def interrupted_prune(*args, **kwargs):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(retention, "prune_job", interrupted_prune)
    with pytest.raises(Interrupted):
        run_jobs(config, ["first", "second"], run_date=dt.date(2024, 2, 15), echo=lambda s: None)
