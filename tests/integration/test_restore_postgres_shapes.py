"""``restore --from/--to --load`` into PostgreSQL on shapes test_restore_postgres.py does not
have, from a PostgreSQL source whose URL holds a password: a table named ``Order`` with
reserved-word, mixed-case and spaced column names, TIME, BYTEA, NaN/±Infinity/-0 doubles,
NUMERIC(38,10), a string ``%Y%m%d`` partition column, a null text with no header — equal
(``EXCEPT ALL`` both ways) in a filtered range; and the password appears in no output, log,
ledger row, alert or file of the state folder, a failed restore included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from tests.e2e.helpers import Result, to_toml
from tests.integration.sourcejobs import Site, assert_clean_error

PASSWORD = "Sw0rdfish-PW"  # trust auth: the server accepts any password
TABLE = r"""
CREATE TABLE pshape."Order" AS
SELECT i::bigint AS "Id",
  CASE i % 6 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'a;b"c' WHEN 3 THEN E'cr\r\nlf'
             WHEN 4 THEN '\N' ELSE 'x' END AS "select",
  CASE WHEN i % 4 = 0 THEN NULL ELSE 'sp ' || i END AS "my col",
  CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 1234567.0123456789) END::numeric(38,10) AS "Order",
  TIMESTAMPTZ '2025-01-01 00:00:00+05' + make_interval(secs => i * 3637 + i * 0.000017) AS tz,
  (TIME '00:00:00' + make_interval(secs => i * 97 + i * 0.000013))::time AS t,
  CASE i % 7 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity' WHEN 3 THEN '-0'
             WHEN 4 THEN NULL ELSE i / 3.0 END::float8 AS dbl,
  CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN ''::bytea WHEN 2 THEN '\x00ff0a3b22'::bytea
             ELSE 'abc'::bytea END AS bin,
  to_char(DATE '2025-01-01' + (i % 59), 'YYYYMMDD') AS pday
FROM generate_series(0, 589) AS i
"""
RANGE = "pday BETWEEN '20250120' AND '20250210'"


@pytest.fixture(scope="module")
def server(postgres):
    postgres.psql(
        "SET client_min_messages = warning; DROP SCHEMA IF EXISTS pshape CASCADE; CREATE SCHEMA pshape;"
        f"{TABLE}; DROP SCHEMA IF EXISTS pback CASCADE; CREATE SCHEMA pback;"
        "CREATE TABLE pshape.ts AS SELECT i::bigint AS id, "
        "TIMESTAMP '2025-01-01 00:13:00' + make_interval(hours => i * 7) AS ts, "
        "TIMESTAMPTZ '2025-01-01 00:13:00+00' + make_interval(hours => i * 7) AS tstz "
        "FROM generate_series(0, 199) AS i;"
        "CREATE TABLE pback.other (id bigint, v text)"
    )
    return postgres


def cli(root: Path, *args: str) -> Result:
    argv = [sys.executable, "-m", "tableship", "--config", str(root / "tableship.toml"), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=root)
    return Result(argv, proc.returncode, proc.stdout, proc.stderr)


def test_odd_names_and_a_string_partition_into_postgres_and_no_password_anywhere(tmp_path, server):
    url = server.url.replace(f"{server.user}@", f"{server.user}:{PASSWORD}@")
    alerts = tmp_path / "alerts.txt"
    (tmp_path / "alert.sh").write_text(f'#!/bin/sh\n{{ env | grep TABLESHIP_; cat; }} >> "{alerts}"\n')
    (tmp_path / "alert.sh").chmod(0o755)
    (tmp_path / "backup").mkdir()
    doc = {
        "settings": {"state_dir": "state", "log_file": "state/tableship.log", "environment": "prod"},
        "sources": {"pg": {"type": "sqlalchemy", "url": url, "timeout": 10}},
        "destinations": {"backup": {"type": "local", "path": "backup"}},
        "alerts": {"channels": ["cmd"], "cmd": {"type": "command", "argv": [str(tmp_path / "alert.sh")]}},
        "defaults": {"source": "pg", "destination": "backup", "window": {"unit": "month", "count": 1}},
        "jobs": {
            "o": {
                "table": "pshape.Order",
                "partition_column": "pday",
                "partition_type": "string",
                "partition_format": "%Y%m%d",
                "format": {"null": "\\N", "header": False},
            }
        },
    }
    (tmp_path / "tableship.toml").write_text(to_toml(doc))
    outputs = []
    for start, end in (("2025-01-01", "2025-01-31"), ("2025-02-01", "2025-02-28")):
        outputs.append(cli(tmp_path, "run", "o", "--from", start, "--to", end))
        assert outputs[-1].rc == 0, str(outputs[-1])

    # a failed restore (an existing table with other columns): alerted, recorded, resumable
    for target in (f"{url}#pback.other", "pg:pback.other"):  # alerted once: the first
        outputs.append(
            cli(tmp_path, "restore", "o", "--from", "2025-01-20", "--to", "2025-02-10", "--load", target)
        )
        assert_clean_error(outputs[-1], 1, "pback.other exists with the columns (id, v)")
    outputs.append(
        cli(
            tmp_path, "restore", "o", "--from", "2025-01-20", "--to", "2025-02-10", "--load", "pg:pback.Order"
        )
    )
    assert outputs[-1].rc == 0, str(outputs[-1])
    assert "OK, 2 archive(s), 220 rows" in outputs[-1].stdout
    outputs += [cli(tmp_path, "history", "o"), cli(tmp_path, "status")]

    with psycopg.connect(server.dsn) as conn:
        src = f'SELECT * FROM pshape."Order" WHERE {RANGE}'
        back = 'SELECT * FROM pback."Order"'
        for a, b in ((src, back), (back, src)):
            assert conn.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b}) d").fetchone() == (0,)
        assert conn.execute(f"SELECT count(*) FROM ({back}) d").fetchone() == (220,)
        types = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'pback' "
            "AND table_name = 'Order' ORDER BY ordinal_position"
        ).fetchall()
    assert [n for n, _ in types] == ["Id", "select", "my col", "Order", "tz", "t", "dbl", "bin", "pday"]
    assert dict(types)["Order"] == "numeric" and dict(types)["t"] == "time without time zone"

    sent = alerts.read_text()
    assert "Resume with:" in sent
    # the URL target's resume command keeps the URL, its password masked (not the whole URL)
    assert f"--load 'postgresql+psycopg://{server.user}:***@{server.host}:{server.port}/" in sent
    for r in outputs:
        assert PASSWORD not in r.stdout + r.stderr, str(r)
    for path in [alerts, *(tmp_path / "state").rglob("*")]:
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("column", ["ts", "tstz"])
def test_a_timestamp_partition_column_keeps_the_last_day_after_midnight(tmp_path, server, column):
    site = Site(
        tmp_path / "site",
        {"type": "sqlalchemy", "url": server.url, "timeout": 10},
        jobs={"t": {"table": "pshape.ts", "partition_column": column}},
    )
    for start, end in (("2025-01-01", "2025-01-31"), ("2025-02-01", "2025-02-28")):
        assert site.run("t", start, end).rc == 0
    where = f"{column} >= '2025-01-20 00:00:00+00' AND {column} < '2025-02-11 00:00:00+00'"
    with psycopg.connect(server.dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(f"DROP TABLE IF EXISTS pback.ts_{column}")
        conn.commit()
        for extra in ((), ("--replace",)):
            argv = ["restore", "t", "--from", "2025-01-20", "--to", "2025-02-10", *extra]
            result = site.cli(*argv, "--load", f"src:pback.ts_{column}")
            assert result.rc == 0, str(result)
            src, back = f"SELECT * FROM pshape.ts WHERE {where}", f"SELECT * FROM pback.ts_{column}"
            for a, b in ((src, back), (back, src)):
                assert conn.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b}) d").fetchone() == (0,)
            assert conn.execute(f"SELECT count(*) FROM ({back}) d").fetchone() == (75,)
