"""Window arithmetic (tableship.core.window) and the partition filter on the three column types.

The window is the ``count`` whole units that end ``lag`` units before the unit holding
the run date, both ends inclusive. The filter ``col >= start AND col <= end`` must select
exactly the window's rows whether the partition column is a DATE, a ``'YYYY-MM-DD'``
string or an integer ``YYYYMMDD`` (detected, or declared with partition_type/format).
"""

from __future__ import annotations

import calendar
import datetime as dt
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tableship.backup.plan import choose_window, make_plan
from tableship.backup.query import build_query
from tableship.config.loader import parse_config
from tableship.config.spec import resolve_job
from tableship.core.errors import ConfigError, SourceError
from tableship.core.window import Window, compute_window, month_end, parse_date, parse_window, partition_value
from tableship.sources.base import Dialect, arrow_partition_type, window_query
from tableship.sources.duckdb import DuckDBSource

D = dt.date
RUN = D(2026, 11, 26)


def w(run, unit, count, lag=0) -> tuple[str, str]:
    win = compute_window(run, unit, count, lag)
    return win.start.isoformat(), win.end.isoformat()


# ---------------------------------------------------------------- the issue's examples


def test_issue_example_five_months():
    assert w(RUN, "month", 5) == ("2026-06-01", "2026-10-31")


def test_issue_example_one_month_lag_four():
    assert w(RUN, "month", 1, lag=4) == ("2026-06-01", "2026-06-30")


def test_issue_example_seven_days():
    assert w(RUN, "day", 7) == ("2026-11-19", "2026-11-25")


# ---------------------------------------------------------------- month ends and leap years


@pytest.mark.parametrize(
    "run, expected",
    [
        (D(2026, 2, 10), ("2026-01-01", "2026-01-31")),
        (D(2026, 3, 10), ("2026-02-01", "2026-02-28")),
        (D(2026, 5, 31), ("2026-04-01", "2026-04-30")),
        (D(2026, 7, 1), ("2026-06-01", "2026-06-30")),
        (D(2026, 10, 15), ("2026-09-01", "2026-09-30")),
        (D(2026, 12, 31), ("2026-11-01", "2026-11-30")),
    ],
)
def test_month_ends(run, expected):
    assert w(run, "month", 1) == expected


@pytest.mark.parametrize(
    "run, end",
    [
        (D(2024, 3, 1), "2024-02-29"),  # leap year
        (D(2023, 3, 31), "2023-02-28"),  # common year
        (D(2000, 3, 5), "2000-02-29"),  # divisible by 400: leap
        (D(2100, 3, 5), "2100-02-28"),  # divisible by 100, not by 400: not leap
        (D(1900, 3, 5), "1900-02-28"),
    ],
)
def test_february_in_leap_and_common_years(run, end):
    start = end[:8] + "01"
    assert w(run, "month", 1) == (start, end)


def test_leap_day_run_date():
    assert w(D(2024, 2, 29), "month", 1) == ("2024-01-01", "2024-01-31")
    assert w(D(2024, 2, 29), "day", 1) == ("2024-02-28", "2024-02-28")
    assert w(D(2024, 3, 1), "day", 2) == ("2024-02-28", "2024-02-29")
    assert w(D(2100, 3, 1), "day", 2) == ("2100-02-27", "2100-02-28")


def test_window_containing_february_spans_whole_months():
    assert w(D(2024, 4, 2), "month", 3) == ("2024-01-01", "2024-03-31")
    assert w(D(2100, 4, 2), "month", 2) == ("2100-02-01", "2100-03-31")


# ---------------------------------------------------------------- year boundaries


def test_january_run_takes_december_of_previous_year():
    assert w(D(2027, 1, 5), "month", 1) == ("2026-12-01", "2026-12-31")
    assert w(D(2027, 1, 1), "month", 3) == ("2026-10-01", "2026-12-31")


def test_window_spanning_a_year_boundary():
    assert w(D(2027, 2, 14), "month", 3) == ("2026-11-01", "2027-01-31")
    assert w(D(2027, 3, 1), "month", 14) == ("2026-01-01", "2027-02-28")


def test_day_window_over_new_year():
    assert w(D(2027, 1, 1), "day", 1) == ("2026-12-31", "2026-12-31")
    assert w(D(2027, 1, 3), "day", 5) == ("2026-12-29", "2027-01-02")


def test_whole_years_of_months():
    assert w(D(2026, 1, 20), "month", 12) == ("2025-01-01", "2025-12-31")
    assert w(D(2026, 1, 20), "month", 24) == ("2024-01-01", "2025-12-31")


# ---------------------------------------------------------------- lag


def test_month_lag_crossing_years():
    assert w(D(2026, 2, 3), "month", 1, lag=1) == ("2025-12-01", "2025-12-31")
    assert w(D(2026, 2, 3), "month", 2, lag=12) == ("2024-12-01", "2025-01-31")


def test_day_lag():
    assert w(RUN, "day", 1, lag=0) == ("2026-11-25", "2026-11-25")
    assert w(RUN, "day", 1, lag=1) == ("2026-11-24", "2026-11-24")
    assert w(RUN, "day", 7, lag=3) == ("2026-11-16", "2026-11-22")
    assert w(D(2026, 3, 2), "day", 3, lag=1) == ("2026-02-26", "2026-02-28")


def test_lag_zero_is_the_default():
    assert compute_window(RUN, "month", 5) == compute_window(RUN, "month", 5, 0)


def test_run_date_position_in_month_does_not_matter():
    first = compute_window(D(2026, 11, 1), "month", 5)
    last = compute_window(D(2026, 11, 30), "month", 5)
    assert first == last == compute_window(RUN, "month", 5)


# ---------------------------------------------------------------- invalid specs


@pytest.mark.parametrize(
    "unit, count, lag", [("month", 0, 0), ("day", -1, 0), ("month", 1, -1), ("week", 1, 0)]
)
def test_invalid_window_specs(unit, count, lag):
    with pytest.raises(ValueError):
        compute_window(RUN, unit, count, lag)


def test_window_object():
    win = Window(D(2026, 6, 1), D(2026, 10, 31))
    assert str(win) == "2026-06-01..2026-10-31"
    assert win.days == 153
    assert Window(D(2026, 1, 1), D(2026, 1, 1)).days == 1
    with pytest.raises(ValueError):
        Window(D(2026, 1, 2), D(2026, 1, 1))


def test_month_end():
    assert month_end(2024, 2) == D(2024, 2, 29)
    assert month_end(2100, 2) == D(2100, 2, 28)
    assert month_end(2026, 12) == D(2026, 12, 31)


# ---------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(
    run=st.dates(min_value=D(1901, 1, 1), max_value=D(2999, 12, 31)),
    count=st.integers(1, 36),
    lag=st.integers(0, 24),
)
def test_month_window_properties(run, count, lag):
    win = compute_window(run, "month", count, lag)
    assert win.start.day == 1
    assert win.end.day == calendar.monthrange(win.end.year, win.end.month)[1]
    months = lambda d: d.year * 12 + d.month - 1  # noqa: E731
    assert months(run) - months(win.end) == lag + 1
    assert months(win.end) - months(win.start) + 1 == count
    assert win.end < run


@settings(max_examples=300, deadline=None)
@given(
    run=st.dates(min_value=D(1901, 1, 1), max_value=D(2999, 12, 31)),
    count=st.integers(1, 400),
    lag=st.integers(0, 60),
)
def test_day_window_properties(run, count, lag):
    win = compute_window(run, "day", count, lag)
    assert win.days == count
    assert (run - win.end).days == lag + 1


# ---------------------------------------------------------------- date parsing (CLI values)


@pytest.mark.parametrize("text", ["2026-01-05", "2024-02-29", "2000-02-29", "1999-12-31"])
def test_parse_date_valid(text):
    assert parse_date(text) == D.fromisoformat(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30",
        "2025-02-29",
        "2100-02-29",
        "2026-13-01",
        "2026-00-10",
        "2026-1-5",
        "20260105",
        "26-01-05",
        "2026/01/05",
        "",
        "today",
        "2026-01-05T00:00",
        " 2026-01-05",
    ],
)
def test_parse_date_invalid_names_the_value(text):
    with pytest.raises(ValueError, match="is not a valid date") as exc:
        parse_date(text, "--date")
    assert "--date" in str(exc.value)


def test_parse_window():
    assert parse_window("2026-01-01..2026-01-31") == Window(D(2026, 1, 1), D(2026, 1, 31))
    with pytest.raises(ValueError, match="after its end"):
        parse_window("2026-02-01..2026-01-31")
    with pytest.raises(ValueError, match="must look like"):
        parse_window("2026-01-01")


# ---------------------------------------------------------------- partition values


def test_partition_value_per_type():
    day = D(2026, 6, 1)
    assert partition_value(day, "date", None) == day
    assert partition_value(day, "string", None) == "2026-06-01"
    assert partition_value(day, "string", "%Y%m%d") == "20260601"
    assert partition_value(day, "int", None) == 20260601
    assert partition_value(day, "int", "%Y%m%d") == 20260601
    assert partition_value(day, "int", "%Y%m") == 202606


# ---------------------------------------------------------------- all three column types, end to end

# One table per partition column representation, each holding one row per day from
# 2025-11-20 to 2027-01-10, so that the days just outside every window are present.
FIRST, LAST = D(2025, 11, 20), D(2027, 1, 10)
TABLES = {
    "t_date": "DATE",  # partition_date DATE
    "t_ts": "TIMESTAMP",  # partition_date TIMESTAMP at 00:00 (and 12:00 / 23:59:59 below)
    "t_string": "VARCHAR",  # 'YYYY-MM-DD'
    "t_compact": "VARCHAR",  # 'YYYYMMDD' text
    "t_int": "INTEGER",  # YYYYMMDD
    "t_bigint": "BIGINT",  # YYYYMMDD
}
_EXPR = {
    "t_date": "d",
    "t_ts": "d::TIMESTAMP",
    "t_string": "strftime(d, '%Y-%m-%d')",
    "t_compact": "strftime(d, '%Y%m%d')",
    "t_int": "CAST(strftime(d, '%Y%m%d') AS INTEGER)",
    "t_bigint": "CAST(strftime(d, '%Y%m%d') AS BIGINT)",
}


@pytest.fixture(scope="module")
def typed_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("typed") / "typed.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA wh")
    for name, typ in TABLES.items():
        con.execute(
            f"CREATE TABLE wh.{name} (id INTEGER, day DATE, partition_date {typ}, note VARCHAR, ratio DOUBLE)"
        )
        con.execute(
            f"INSERT INTO wh.{name} SELECT row_number() OVER (ORDER BY d)::INTEGER, d, "
            f"{_EXPR[name]}, 'row ' || d, 0.5 "
            f"FROM (SELECT unnest(generate_series(DATE '{FIRST}', DATE '{LAST}', INTERVAL 1 DAY))::DATE AS d)"
        )
    # Rows later in the day: a TIMESTAMP partition column must still include the window's last day.
    con.execute(
        "INSERT INTO wh.t_ts SELECT 100000 + id, day, partition_date + INTERVAL 12 HOUR, note || ' "
        "noon', ratio FROM wh.t_ts"
    )
    con.execute(
        "INSERT INTO wh.t_ts SELECT 200000 + id, day, partition_date + INTERVAL 86399999999 MICROSECOND, "
        "note || ' late', ratio FROM wh.t_ts WHERE id < 100000"
    )
    con.close()
    return path


def _config(db: Path, tmp: Path, **job) -> dict:
    return {
        "sources": {"wh": {"type": "duckdb", "path": str(db)}},
        "destinations": {"out": {"type": "local", "path": str(tmp / "out")}},
        "jobs": {"j": job},
    }


def _window_days(db: Path, tmp: Path, run_date: D, start=None, end=None, **job) -> list[D]:
    config = parse_config(_config(db, tmp, **job), tmp / "tableship.toml")
    jc = config.jobs["j"]
    plan = make_plan(resolve_job(config, "j"), run_date, choose_window(jc, run_date, start, end))
    src = DuckDBSource("wh", config.sources["wh"])
    try:
        query = build_query(src, plan)
        days = []
        for batch in src.batches(query):
            days += batch.column("day").to_pylist()
    finally:
        src.close()
    return sorted(days)


def _days(a: D, b: D) -> list[D]:
    return [a + dt.timedelta(days=i) for i in range((b - a).days + 1)]


CASES = [
    # (job keys, run date, expected first day, expected last day)
    ({"window": {"unit": "month", "count": 5}}, RUN, D(2026, 6, 1), D(2026, 10, 31)),
    ({"window": {"unit": "month", "count": 1, "lag": 4}}, RUN, D(2026, 6, 1), D(2026, 6, 30)),
    ({"window": {"unit": "day", "count": 7}}, RUN, D(2026, 11, 19), D(2026, 11, 25)),
    ({"window": {"unit": "month", "count": 2}}, D(2027, 1, 9), D(2026, 11, 1), D(2026, 12, 31)),
    ({"window": {"unit": "month", "count": 1}}, D(2026, 1, 2), D(2025, 12, 1), D(2025, 12, 31)),
    ({"window": {"unit": "day", "count": 3}}, D(2026, 3, 1), D(2026, 2, 26), D(2026, 2, 28)),
]

TYPE_VARIANTS = [
    pytest.param("t_date", {}, id="date-detected"),
    pytest.param("t_date", {"partition_type": "date"}, id="date-explicit"),
    pytest.param("t_string", {}, id="string-detected"),
    pytest.param(
        "t_string", {"partition_type": "string", "partition_format": "%Y-%m-%d"}, id="string-explicit"
    ),
    pytest.param(
        "t_compact", {"partition_type": "string", "partition_format": "%Y%m%d"}, id="compact-string-explicit"
    ),
    pytest.param("t_int", {}, id="int-detected"),
    pytest.param("t_int", {"partition_type": "int", "partition_format": "%Y%m%d"}, id="int-explicit"),
    pytest.param("t_int", {"partition_type": "int"}, id="int-explicit-default-format"),
    pytest.param("t_bigint", {}, id="bigint-detected"),
]


@pytest.mark.parametrize("table, extra", TYPE_VARIANTS)
@pytest.mark.parametrize("window, run_date, first, last", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_partition_column_types_select_exactly_the_window(
    typed_db, tmp_path, table, extra, window, run_date, first, last
):
    days = _window_days(typed_db, tmp_path, run_date, table=f"wh.{table}", **window, **extra)
    assert days == _days(first, last)


@pytest.mark.parametrize("table, extra", TYPE_VARIANTS)
def test_partition_column_types_with_explicit_backfill(typed_db, tmp_path, table, extra):
    days = _window_days(typed_db, tmp_path, RUN, D(2026, 2, 27), D(2026, 3, 2), table=f"wh.{table}", **extra)
    assert days == _days(D(2026, 2, 27), D(2026, 3, 2))


def test_timestamp_partition_column_includes_the_whole_last_day(typed_db, tmp_path):
    rows = _window_days(typed_db, tmp_path, RUN, D(2026, 10, 30), D(2026, 10, 31), table="wh.t_ts")
    # three rows per day: 00:00, 12:00 and 23:59:59.999999 — all of both days, nothing of Nov 1st
    assert rows == [D(2026, 10, 30)] * 3 + [D(2026, 10, 31)] * 3


def test_detected_types(typed_db):
    con = duckdb.connect(str(typed_db), read_only=True)
    try:
        for table, expected in [
            ("t_date", "date"),
            ("t_string", "string"),
            ("t_int", "int"),
            ("t_bigint", "int"),
        ]:
            field = con.sql(f"SELECT partition_date FROM wh.{table} LIMIT 0").to_arrow_table().schema.field(0)
            assert arrow_partition_type(field.type) == expected
    finally:
        con.close()


def test_bound_values_match_the_column_type(typed_db, tmp_path):
    expected = {
        "t_date": (D(2026, 6, 1), D(2026, 10, 31)),
        "t_string": ("2026-06-01", "2026-10-31"),
        "t_int": (20260601, 20261031),
    }
    for table, values in expected.items():
        config = parse_config(_config(typed_db, tmp_path, table=f"wh.{table}"), tmp_path / "t.toml")
        jc = config.jobs["j"]
        plan = make_plan(resolve_job(config, "j"), RUN, choose_window(jc, RUN, None, None))
        src = DuckDBSource("wh", config.sources["wh"])
        try:
            q = build_query(src, plan)
        finally:
            src.close()
        assert q.values == values
        assert q.sql == (
            f'SELECT * FROM "wh"."{table}" WHERE "partition_date" >= ? AND "partition_date" <= ?'
        )
        assert "2026" not in q.sql  # values are bound, never formatted into SQL


def test_missing_partition_column_is_a_job_error(typed_db, tmp_path):
    with pytest.raises(SourceError, match="column 'nosuch' not found"):
        _window_days(typed_db, tmp_path, RUN, table="wh.t_date", partition_column="nosuch")


def test_unsupported_partition_column_type_asks_for_explicit_type(typed_db, tmp_path):
    with pytest.raises(ConfigError, match="unsupported partition column type double") as exc:
        _window_days(typed_db, tmp_path, RUN, table="wh.t_date", partition_column="ratio")
    assert "set partition_type and partition_format explicitly" in exc.value.line()


def test_window_query_quotes_identifiers_and_binds_values():
    q = window_query(Dialect(), "db.tbl", "part", 1, 2)
    assert q.sql == 'SELECT * FROM "db"."tbl" WHERE "part" >= ? AND "part" <= ?'
    assert q.params == (1, 2)
    named = window_query(Dialect(paramstyle="named"), "tbl", "part", "a", "b")
    assert named.sql.endswith('"part" >= :p0 AND "part" <= :p1')
    assert named.params == {"p0": "a", "p1": "b"}
    with pytest.raises(ValueError):
        window_query(Dialect(), "x; DROP TABLE y", "part", 1, 2)
    with pytest.raises(ValueError):
        window_query(Dialect(), "t", 'p" OR 1=1 --', 1, 2)
