"""Tests for tableship.cli.demo (demo warehouse + demo config)."""

from __future__ import annotations

import datetime
import hashlib
import tomllib
from pathlib import Path

import duckdb
import pytest

from tableship.cli.demo import DEMO_TABLE, create_demo_warehouse, demo_config_text

TODAY = datetime.date(2025, 3, 17)
ROWS = 20_000

EXPECTED_COLUMNS = [
    ("cdr_id", "BIGINT"),
    ("partition_date", "DATE"),
    ("event_ts", "TIMESTAMP"),
    ("msisdn", "VARCHAR"),
    ("imsi", "VARCHAR"),
    ("customer_name", "VARCHAR"),
    ("service_type", "VARCHAR"),
    ("direction", "VARCHAR"),
    ("duration_sec", "INTEGER"),
    ("bytes_up", "BIGINT"),
    ("bytes_down", "BIGINT"),
    ("charge_amount", "DECIMAL(18,4)"),
    ("cell_id", "VARCHAR"),
    ("roaming", "BOOLEAN"),
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("demo") / "warehouse.duckdb"
    n = create_demo_warehouse(path, rows=ROWS, today=TODAY)
    return path, n


@pytest.fixture()
def con(warehouse):
    c = duckdb.connect(str(warehouse[0]), read_only=True)
    yield c
    c.close()


def _content_hash(path: Path) -> str:
    with duckdb.connect(str(path), read_only=True) as c:
        rows = c.execute(f"SELECT * FROM {DEMO_TABLE} ORDER BY cdr_id").fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_row_count(warehouse, con):
    path, n = warehouse
    assert path.exists()
    assert n >= ROWS
    assert n < ROWS + 400  # at most one extra row per day
    assert con.execute(f"SELECT count(*) FROM {DEMO_TABLE}").fetchone()[0] == n


def test_columns_and_types(con):
    cols = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'mnaas' AND table_name = 'customer_traffic' "
        "ORDER BY ordinal_position"
    ).fetchall()
    assert cols == EXPECTED_COLUMNS


def test_cdr_id_unique_and_insertion_order(warehouse, con):
    n = warehouse[1]
    lo, hi, distinct, bad_order = con.execute(
        f"SELECT min(cdr_id), max(cdr_id), count(DISTINCT cdr_id), "
        f"count(*) FILTER (WHERE rowid + 1 <> cdr_id) FROM {DEMO_TABLE}"
    ).fetchone()
    assert (lo, hi, distinct, bad_order) == (1, n, n, 0)
    # partition_date never decreases in cdr_id order
    assert (
        con.execute(
            f"SELECT count(*) FROM (SELECT partition_date, lag(partition_date) "
            f"OVER (ORDER BY cdr_id) AS prev FROM {DEMO_TABLE}) WHERE prev > partition_date"
        ).fetchone()[0]
        == 0
    )


def test_date_range(warehouse, con):
    first, last, days, per_day_min, per_day_max, outside = con.execute(f"""
        WITH d AS (SELECT partition_date, count(*) AS c FROM {DEMO_TABLE} GROUP BY 1)
        SELECT min(partition_date), max(partition_date), count(*), min(c), max(c),
               (SELECT count(*) FROM {DEMO_TABLE} WHERE CAST(event_ts AS DATE) <> partition_date)
        FROM d""").fetchone()
    assert first == datetime.date(2024, 3, 1)  # 12 whole months before March 2025
    assert last == datetime.date(2025, 3, 16)  # yesterday
    assert days == (last - first).days + 1  # every day present
    assert per_day_min == per_day_max  # evenly spread
    assert outside == 0  # event_ts lies within partition_date


def test_months_parameter(tmp_path):
    path = tmp_path / "w.duckdb"
    n = create_demo_warehouse(path, rows=1_000, today=datetime.date(2025, 1, 1), months=2)
    with duckdb.connect(str(path), read_only=True) as c:
        first, last, count = c.execute(
            f"SELECT min(partition_date), max(partition_date), count(*) FROM {DEMO_TABLE}"
        ).fetchone()
    assert (first, last) == (datetime.date(2024, 11, 1), datetime.date(2024, 12, 31))
    assert count == n >= 1_000


def test_replaces_existing_file(tmp_path):
    path = tmp_path / "w.duckdb"
    create_demo_warehouse(path, rows=2_000, today=TODAY, months=1)
    n = create_demo_warehouse(path, rows=500, today=TODAY, months=1)
    with duckdb.connect(str(path), read_only=True) as c:
        assert c.execute(f"SELECT count(*) FROM {DEMO_TABLE}").fetchone()[0] == n < 2_000


def test_awkward_values_present(con):
    names = [r[0] for r in con.execute(f"SELECT DISTINCT customer_name FROM {DEMO_TABLE}").fetchall()]
    texts = [s for s in names if s is not None]
    assert None in names
    assert "" in names
    assert any(";" in s for s in texts)
    assert any('"' in s for s in texts)
    assert any("\n" in s for s in texts)
    assert any(not s.isascii() for s in texts)
    for expected in ("Müller", "Øster", "東京", "José"):
        assert any(expected in s for s in texts), expected

    total, nulls, empties, awkward = con.execute(f"""
        SELECT count(*),
               count(*) FILTER (WHERE customer_name IS NULL),
               count(*) FILTER (WHERE customer_name = ''),
               count(*) FILTER (WHERE customer_name LIKE '%;%' OR customer_name LIKE '%"%'
                                   OR contains(customer_name, chr(10)))
        FROM {DEMO_TABLE}""").fetchone()
    assert 0.005 < nulls / total < 0.02
    assert 0.001 < empties / total < 0.02
    assert 0.015 < awkward / total < 0.04


def test_column_semantics(con):
    assert (
        con.execute(
            f"SELECT count(*) FROM {DEMO_TABLE} WHERE service_type = 'sms' AND duration_sec IS NOT NULL"
        ).fetchone()[0]
        == 0
    )
    assert (
        con.execute(
            f"SELECT count(*) FROM {DEMO_TABLE} WHERE service_type <> 'sms' AND duration_sec IS NULL"
        ).fetchone()[0]
        == 0
    )
    services = {r[0] for r in con.execute(f"SELECT DISTINCT service_type FROM {DEMO_TABLE}").fetchall()}
    assert services == {"voice", "sms", "data", "mms", "roaming"}
    directions = {r[0] for r in con.execute(f"SELECT DISTINCT direction FROM {DEMO_TABLE}").fetchall()}
    assert directions == {"MO", "MT"}

    total, cell_nulls, frac_us, whole_s, bad_msisdn, bad_imsi, roam = con.execute(f"""
        SELECT count(*),
               count(*) FILTER (WHERE cell_id IS NULL),
               count(*) FILTER (WHERE microsecond(event_ts) % 1000000 <> 0),
               count(*) FILTER (WHERE microsecond(event_ts) % 1000000 = 0),
               count(*) FILTER (WHERE NOT regexp_full_match(msisdn, '49[0-9]{{11}}')),
               count(*) FILTER (WHERE NOT regexp_full_match(imsi, '262[0-9]{{12}}')),
               count(*) FILTER (WHERE roaming)
        FROM {DEMO_TABLE}""").fetchone()
    assert 0.01 < cell_nulls / total < 0.03
    assert frac_us > 0 and whole_s > 0
    assert bad_msisdn == 0 and bad_imsi == 0
    assert 0 < roam < total
    # exact decimals with fractional digits, never negative
    charges = con.execute(f"SELECT DISTINCT charge_amount FROM {DEMO_TABLE} LIMIT 200").fetchall()
    assert any(c[0] != c[0].to_integral_value() for c in charges)
    assert con.execute(
        f"SELECT min(charge_amount) >= 0 AND min(bytes_up) >= 0 AND min(bytes_down) >= 0 FROM {DEMO_TABLE}"
    ).fetchone()[0]


def test_deterministic(tmp_path, warehouse):
    again = tmp_path / "again.duckdb"
    assert create_demo_warehouse(again, rows=ROWS, today=TODAY) == warehouse[1]
    assert _content_hash(again) == _content_hash(warehouse[0])

    other = tmp_path / "other.duckdb"
    create_demo_warehouse(other, rows=ROWS, today=TODAY, seed=7)
    assert _content_hash(other) != _content_hash(warehouse[0])


def test_empty_range_rejected(tmp_path):
    with pytest.raises(ValueError):
        create_demo_warehouse(tmp_path / "w.duckdb", rows=10, today=datetime.date(2025, 3, 1), months=0)


def test_config_text_parses():
    text = demo_config_text()
    assert text.count("\n#") > 20  # commented for a new user
    cfg = tomllib.loads(text)
    assert cfg["settings"] == {"state_dir": ".tableship", "log_file": ".tableship/tableship.core.log"}
    assert cfg["sources"] == {"warehouse": {"type": "duckdb", "path": "warehouse.duckdb"}}
    assert cfg["destinations"] == {"backup": {"type": "local", "path": "backup-server"}}
    assert cfg["defaults"] == {
        "source": "warehouse",
        "destination": "backup",
        "partition_column": "partition_date",
        "window": {"unit": "month", "count": 5},
        "file_name": "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz",
        "remote_dir": "{table}",
        "format": {"delimiter": ";", "header": True, "null": "", "quoting": "minimal"},
        "compression": {"codec": "gzip"},
        "keep_local": False,
    }
    assert cfg["jobs"] == {"customer_traffic": {"table": DEMO_TABLE}}
    # commented-out alternatives a user can switch to
    for snippet in (
        'type = "sftp"',
        "known_hosts",
        "key_file",
        'type = "impala"',
        "21050",
        'auth = "nosasl"',
        "${",
    ):
        assert snippet in text, snippet
    # the commented-out example sections become valid TOML when uncommented
    lines, in_block = [], False
    for line in text.splitlines():
        if line.startswith("# ["):
            in_block = True
        elif not line.startswith("# "):
            in_block = False
        lines.append(line[2:] if in_block else line)
    alt = tomllib.loads("\n".join(lines))
    assert alt["sources"]["impala"] == {
        "type": "impala",
        "host": "impala-coordinator.example.com",
        "port": 21050,
        "auth": "nosasl",
    }
    sftp = alt["destinations"]["sftp_backup"]
    assert sftp["type"] == "sftp" and sftp["port"] == 22
    assert {"host", "user", "key_file", "known_hosts", "path"} <= sftp.keys()


def test_config_text_custom_paths():
    cfg = tomllib.loads(demo_config_text(warehouse='C:\\data\\my "wh".duckdb', backup_dir="/srv/bäckup"))
    assert cfg["sources"]["warehouse"]["path"] == 'C:\\data\\my "wh".duckdb'
    assert cfg["destinations"]["backup"]["path"] == "/srv/bäckup"
