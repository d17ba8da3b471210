"""Identifiers and name templates (tableship.core.names), and how config and plan use them.

Everything that reaches SQL or a file path passes through names.py: identifiers must be
plain, templates may only use the documented placeholders, and a rendered name that is
absolute, contains ``..`` or a backslash, or would leave the destination root is refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from tableship.backup.plan import choose_window, make_plan
from tableship.config.loader import parse_config
from tableship.config.spec import resolve_job
from tableship.core.errors import ConfigError
from tableship.core.names import (
    TEMPLATE_FIELDS,
    TemplateValues,
    check_identifier,
    check_job_name,
    check_relative,
    check_template,
    render_relative,
    split_table,
)
from tableship.destinations.base import is_temp, safe_name, temp_name

D = dt.date
VALUES = TemplateValues(
    "daily_cdr", "customer_traffic", "mnaas", D(2026, 6, 1), D(2026, 10, 31), D(2026, 11, 26)
)


# ---------------------------------------------------------------- identifiers


@pytest.mark.parametrize("name", ["a", "_x", "customer_traffic", "T1", "partition_date", "A_b_9"])
def test_plain_identifiers_pass(name):
    assert check_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1abc",
        "x; DROP TABLE y",
        "a b",
        'a"b',
        "a'b",
        "a.b",
        "a-b",
        "a/b",
        "..",
        "a\nb",
        "tåble",
        "x--",
        "a;",
        "`a`",
        "[a]",
        "a)",
        "*",
        "a\0b",
    ],
)
def test_unsafe_identifiers_are_refused(name):
    with pytest.raises(ValueError, match="not a plain identifier"):
        check_identifier(name, "column")


def test_identifier_error_says_what_it_was():
    with pytest.raises(ValueError, match="^column 'a b'"):
        check_identifier("a b", "column")


@pytest.mark.parametrize(
    "table, expected",
    [("mnaas.customer_traffic", ("mnaas", "customer_traffic")), ("tbl", (None, "tbl"))],
)
def test_split_table(table, expected):
    assert split_table(table) == expected


@pytest.mark.parametrize(
    "table", ["x; DROP TABLE y", "a.b.c", ".tbl", "db.", "../etc", "db/tbl", "db.t bl", "", 'db."t"']
)
def test_split_table_refuses_anything_but_plain_parts(table):
    with pytest.raises(ValueError):
        split_table(table)


@pytest.mark.parametrize("name", ["customer_traffic", "cdr-daily", "a.b", "9lives", "a..b"])
def test_job_names(name):
    assert check_job_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "-x", ".hidden", "a/b", "a b", "a\\b", "x" * 101, "é"])
def test_bad_job_names(name):
    with pytest.raises(ValueError, match="job name"):
        check_job_name(name)


# ---------------------------------------------------------------- templates


def test_every_placeholder_renders():
    template = "{job}/{database}/{table}/{start}_{end}_{run_date}"
    assert render_relative(template, VALUES, "remote_dir") == (
        "daily_cdr/mnaas/customer_traffic/2026-06-01_2026-10-31_2026-11-26"
    )
    assert set(TEMPLATE_FIELDS) == {
        "job",
        "table",
        "database",
        "start",
        "end",
        "run_date",
        "chunk_start",
        "chunk_end",
    }
    # outside a chunk, {chunk_start}/{chunk_end} are the window's bounds; in a chunk, the chunk's
    assert render_relative("{chunk_start:%m%Y}_{chunk_end:%d}", VALUES, "f") == "062026_31"
    chunk = dataclasses.replace(VALUES, chunk_start=dt.date(2026, 8, 1), chunk_end=dt.date(2026, 8, 31))
    assert render_relative("{chunk_start:%m%Y}_{chunk_end:%d}", chunk, "f") == "082026_31"


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz", "customer_traffic_20260601_20261031.csv.gz"),
        ("{start:%Y-%m}", "2026-06"),
        ("{end:%d.%m.%Y}", "31.10.2026"),
        ("{run_date:%Y}/{run_date:%j}", "2026/330"),
        ("{start:%b%y}", "Jun26"),
        ("{job}-{start:%Y%m%d}", "daily_cdr-20260601"),
        ("{database}.{table}", "mnaas.customer_traffic"),
        ("{{literal}}{table}", "{literal}customer_traffic"),
        ("{table:>20}", "    customer_traffic"),
        ("plain.csv", "plain.csv"),
    ],
)
def test_template_formats(template, expected):
    assert render_relative(template, VALUES, "file_name") == expected


@pytest.mark.parametrize(
    "template, match",
    [
        ("{tabel}.csv", "unknown placeholder"),
        ("{}.csv", "unknown placeholder"),
        ("{0}.csv", "unknown placeholder"),
        ("{start.year}", "unknown placeholder"),  # attribute access is not a placeholder
        ("{table[0]}", "unknown placeholder"),
        ("{table.__class__}", "unknown placeholder"),
        ("{table!r}", "conversions"),
        ("{start:%Y", "cannot|unmatched|expected"),
    ],
)
def test_bad_templates(template, match):
    with pytest.raises(ValueError, match=match):
        render_relative(template, VALUES, "file_name")


def test_check_template_without_values():
    check_template("{table}_{start:%Y}")
    with pytest.raises(ValueError, match=r"\{job\}.*\{run_date\}"):  # the error lists the known placeholders
        check_template("{nope}")


def test_format_spec_that_does_not_fit_the_value():
    with pytest.raises(ValueError, match="cannot be rendered"):
        render_relative("{table:%Y}", VALUES, "file_name")


# ---------------------------------------------------------------- path escapes


@pytest.mark.parametrize(
    "template, match",
    [
        ("/etc/{table}", "absolute"),
        ("//srv/{table}", "absolute"),
        ("~/{table}", "absolute"),
        ("~root", "absolute"),
        ("..", r"'\.\.'"),
        ("../{table}", r"'\.\.'"),
        ("{table}/../../etc", r"'\.\.'"),
        ("a/./../b", r"'\.\.'"),
        ("{table}/..", r"'\.\.'"),
        ("..\\{table}", "backslash"),
        ("{table}\\..\\..\\x", "backslash"),
        ("C:\\backup", "backslash"),
        ("a\nb", "control"),
        ("a\0b", "control"),
        ("a\tb", "control"),
        # a format spec is just text after rendering: it is checked like the rest
        ("{start:/%Y}", "absolute"),
        ("{start:..}", r"'\.\.'"),
        ("x/{run_date:%Y/../..}", r"'\.\.'"),
        ("{end:%Y\\..}", "backslash"),
    ],
)
def test_path_escape_attempts_are_refused(template, match):
    with pytest.raises(ValueError, match=match):
        render_relative(template, VALUES, "remote_dir")


@pytest.mark.parametrize(
    "text, expected",
    [("a/b", "a/b"), ("./a//b/", "a/b"), (".", ""), ("", ""), ("a..b/c...d", "a..b/c...d"), ("...", "...")],
)
def test_relative_paths_are_normalised(text, expected):
    assert check_relative(text, "remote_dir") == expected


def test_values_cannot_escape_because_identifiers_are_validated(tmp_path):
    """``{table}``, ``{database}`` and ``{job}`` come from validated names: no '/' or '..' can get in."""
    for table in ["../../etc", "db/../x", "..", "a/b", "x\\y", "/abs"]:
        with pytest.raises(ConfigError, match=r"jobs\.j\.table"):
            parse_config(_cfg(tmp_path, table=table), tmp_path / "c.toml")
    for job in ["..", "../x", "a/b", ".x"]:
        raw = _cfg(tmp_path, table="t")
        raw["jobs"] = {job: raw["jobs"]["j"]}
        with pytest.raises(ConfigError, match="job name"):
            parse_config(raw, tmp_path / "c.toml")


def _cfg(tmp_path: Path, **job) -> dict:
    return {
        "sources": {"s": {"type": "duckdb", "path": "w.duckdb"}},
        "destinations": {"d": {"type": "local", "path": "out"}},
        "jobs": {"j": job},
    }


@pytest.mark.parametrize(
    "key, template",
    [
        ("remote_dir", "/abs/{table}"),
        ("remote_dir", "../{table}"),
        ("remote_dir", "{table}\\x"),
        ("file_name", "../{table}.csv.gz"),
        ("file_name", "/tmp/{table}.csv.gz"),
        ("file_name", "sub/{table}.csv.gz"),  # folders belong in remote_dir
        ("file_name", "{start:%Y/%m}.csv.gz"),
        ("file_name", "{nope}.csv.gz"),
    ],
)
def test_config_refuses_escaping_templates(tmp_path, key, template):
    with pytest.raises(ConfigError) as exc:
        parse_config(_cfg(tmp_path, table="db.t", **{key: template}), tmp_path / "c.toml")
    assert any(f"jobs.j.{key}" in p or "jobs.j: " in p for p in exc.value.problems), exc.value.problems


@pytest.mark.parametrize("name", ["", ".", "./"])
def test_config_refuses_an_empty_file_name(tmp_path, name):
    with pytest.raises(ConfigError, match="file_name"):
        parse_config(_cfg(tmp_path, table="db.t", file_name=name), tmp_path / "c.toml")


def test_run_date_dependent_escape_is_caught_when_planning(tmp_path):
    """A format that only escapes for some dates is still refused at plan time (exit 2)."""
    config = parse_config(_cfg(tmp_path, table="db.t", remote_dir="{run_date:%d}"), tmp_path / "c.toml")
    job = config.jobs["j"]
    spec = resolve_job(config, "j")
    plan = make_plan(spec, D(2026, 11, 26), choose_window(job, D(2026, 11, 26), None, None))
    assert plan.remote_dir == "26"
    assert plan.file_name == "t_20260601_20261031.csv.gz"
    assert plan.remote_path == "26/t_20260601_20261031.csv.gz"
    assert plan.staged_path == config.staging_dir / "j" / plan.file_name


def test_plan_with_empty_remote_dir_puts_files_at_the_root(tmp_path):
    config = parse_config(_cfg(tmp_path, table="db.t", remote_dir=""), tmp_path / "c.toml")
    job = config.jobs["j"]
    spec = resolve_job(config, "j")
    plan = make_plan(spec, D(2026, 11, 26), choose_window(job, D(2026, 11, 26), None, None))
    assert plan.remote_path == plan.file_name


# ---------------------------------------------------------------- destination names


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a\\b", ""])
def test_destination_refuses_unsafe_names(name):
    with pytest.raises(ConfigError):
        safe_name(name)


def test_temp_names_are_hidden_in_the_same_folder():
    t = temp_name("dir/file.csv.gz", "job1")
    assert t.startswith("dir/.file.csv.gz.tableship-job1-") and t.endswith(".part")
    base = t.split("/")[-1]
    assert is_temp(base) and is_temp(base, "job1") and not is_temp(base, "job2")
    assert not is_temp("file.csv.gz")
