"""``tableship state migrate --to postgresql://…``: a host's SQLite history moves into a
PostgreSQL ledger; ``status`` and ``history`` read the same before and after (issue 16)."""

from __future__ import annotations

import json

import psycopg
from tests.e2e.helpers import JOB, RUN_DATE, TABLE, assert_clean_error
from tests.servers.postgres import fresh_database

JOBS = {JOB: {"table": TABLE}, "dropped": {"table": "mnaas.dropped_upstream"}}


def views(ws) -> tuple:
    status = ws.cli("status", "--json", "--date", RUN_DATE)
    history = ws.cli("history", "--json", "--limit", "100")
    assert history.rc == 0, str(history)
    return status.rc, json.loads(status.stdout), json.loads(history.stdout)


def test_migrate_keeps_status_and_history(ws, postgres):
    ws.write_config(JOBS)
    assert ws.cli("run", "--date", RUN_DATE).rc == 1  # customer_traffic OK, dropped FAILED
    assert ws.cli("run", JOB, "--date", "2026-11-27").rc == 0
    assert ws.cli("verify", JOB).rc == 0
    before = views(ws)
    assert len(before[2]) == 3
    url = fresh_database(postgres)
    r = ws.cli("state", "migrate", "--to", "${LEDGER_URL}", env={"LEDGER_URL": url})
    assert r.rc == 0, str(r)
    assert "runs: 3 rows" in r.stdout and "verifications:" in r.stdout
    ws.write_config(JOBS, settings={"state": url})
    after = views(ws)
    assert after == before
    # the sequences moved past the copied ids: the next run gets id 4
    assert ws.cli("run", JOB, "--date", "2026-11-28").rc == 0
    with psycopg.connect(url) as con:
        assert [r[0] for r in con.execute("SELECT id FROM runs ORDER BY id")] == [1, 2, 3, 4]
    # a second migration into the same (no longer empty) ledger is refused, nothing copied
    ws.write_config(JOBS)
    r = ws.cli("state", "migrate", "--to", url)
    assert_clean_error(r, 2, "already holds runs")


def test_migrate_refuses_a_url_that_is_not_postgresql(ws):
    r = ws.cli("state", "migrate", "--to", "mysql://u@h/db")
    assert_clean_error(r, 2, "PostgreSQL URL")
