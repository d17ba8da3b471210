"""Configs that would silently produce wrong or clobbered archives are refused — by
``config validate`` and by ``run`` before anything is exported or written — with exit 2
and the key path (issue 9, "What was seen" 4 and 5); an unusable destination costs
seconds, not an export; and the messages name what the user typed."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import duckdb
import pytest
from tests.e2e.helpers import JOB, RUN_DATE, TABLE, assert_clean_error
from tests.servers import ensure_command, missing


def nothing_written(ws) -> None:
    assert ws.runs() == []
    assert ws.files(ws.dest) == []
    assert ws.files(ws.staging) == []


def assert_refused(ws, key: str, *needles: str) -> None:
    """``config validate`` lists the problem under ``key``; ``run`` stops with exit 2 and one
    ``Error:`` line naming it; nothing is exported or written."""
    r = ws.cli("config", "validate")
    assert r.rc == 2, str(r)
    assert "Traceback" not in r.stderr, str(r)
    mine = [line for line in r.error_lines if f": {key}: " in line]
    assert mine, str(r)
    for needle in needles:
        assert any(needle in line for line in mine), (needle, str(r))
    run = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(run, 2, key)
    assert "unexpected" not in run.stderr, str(run)
    nothing_written(ws)


# ---------------------------------------------------------------- codec vs file-name extension


@pytest.mark.parametrize(
    "codec, file_name, needle",
    [
        ("zstd", "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz", "does not end with '.zst'"),
        ("gzip", "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.zst", "does not end with '.gz'"),
        ("gzip", "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv", "does not end with '.gz'"),
        ("none", "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz", "ends with '.gz'"),
        ("none", "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.zst", "ends with '.zst'"),
    ],
    ids=["zstd-gz", "gzip-zst", "gzip-plain", "none-gz", "none-zst"],
)
def test_codec_must_match_the_file_name_extension(ws, codec, file_name, needle):
    ws.write_config({JOB: {"table": TABLE, "file_name": file_name, "compression": {"codec": codec}}})
    assert_refused(ws, f"jobs.{JOB}.file_name", needle, codec)


@pytest.mark.parametrize(
    "codec, file_name",
    [
        ("zstd", "{table}_{start:%Y%m%d}.csv.zst"),
        ("none", "{table}_{start:%Y%m%d}.csv"),
        ("gzip", "{table}_{start:%Y%m%d}.csv.gz"),
    ],
)
def test_matching_extensions_validate(ws, codec, file_name):
    ws.write_config({JOB: {"table": TABLE, "file_name": file_name, "compression": {"codec": codec}}})
    r = ws.cli("config", "validate")
    assert r.rc == 0, str(r)


# ---------------------------------------------------------------- strftime codes


@pytest.mark.parametrize("spec", ["%Q", "%-d", "%c", "%H", "%Y%", "%s", "%Ez"])
def test_date_codes_that_are_not_portable_are_refused(ws, spec):
    ws.write_config({JOB: {"table": TABLE, "file_name": f"{{table}}_{{start:{spec}}}_{{end:%Y%m%d}}.csv.gz"}})
    assert_refused(ws, f"jobs.{JOB}.file_name", "not a portable date code")


def test_date_codes_in_remote_dir_are_checked_too(ws):
    ws.write_config({JOB: {"table": TABLE, "remote_dir": "{table}/{run_date:%Q}"}})
    assert_refused(ws, f"jobs.{JOB}.remote_dir", "%Q")


def test_portable_date_codes_render(ws):
    ws.write_config(
        {
            JOB: {
                "table": TABLE,
                "remote_dir": "{table}/{run_date:%G-W%V}",
                "file_name": "{table}_{start:%b%Y}_{end:%d.%m.%y}_{end:%j}_{end:%%}.csv.gz",
            }
        }
    )
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert (
        ws.dest / TABLE.split(".")[1] / "2026-W48" / "customer_traffic_Jun2026_31.10.26_304_%.csv.gz"
    ).is_file()


# ---------------------------------------------------------------- names shaped like the tool's own files


@pytest.mark.parametrize(
    "file_name, needle",
    [
        (".x{start:%Y}.tableship-otherjob-{end:%Y%m%d}.part", "'.tableship-'"),
        ("{table}_{start:%Y%m%d}.part", "'.part'"),
        ("{table}_{start:%Y%m%d}.tmp", "'.tmp'"),
        ("{table}_{start:%Y%m%d}.csv.sha256", "'.sha256'"),
        ("{table}_{start:%Y%m%d}.csv.manifest.json", "'.manifest.json'"),
        ("x.tableship-{job}-{start:%Y%m%d}.csv", "'.tableship-'"),
    ],
    ids=["issue-example", "part", "tmp", "sha256", "manifest", "infix"],
)
def test_names_shaped_like_temporaries_or_sidecars_are_refused(ws, file_name, needle):
    ws.write_config({JOB: {"table": TABLE, "file_name": file_name, "compression": {"codec": "none"}}})
    assert_refused(ws, f"jobs.{JOB}.file_name", needle)


# ---------------------------------------------------------------- two jobs, one destination path


def test_two_jobs_rendering_the_same_path_are_refused(ws):
    """Same table, same destination, different format: the second would overwrite the first."""
    ws.write_config(
        {"plain": {"table": TABLE}, "impala": {"table": TABLE, "format": {"preset": "impala-shell"}}}
    )
    assert_refused(
        ws,
        "jobs.impala.file_name",
        "'plain' and 'impala'",
        "customer_traffic/customer_traffic_20260101_20260131.csv.gz",
    )


@pytest.mark.parametrize(
    "a, b",
    [
        # different placeholders that can coincide: a day window's run date is its end + 1
        (
            {"file_name": "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz"},
            {
                "file_name": "{table}_{start:%Y%m%d}_{run_date:%Y%m%d}.csv.gz",
                "window": {"unit": "day", "count": 3},
            },
        ),
        # the same folder spelt differently
        ({"remote_dir": "archive/{table}"}, {"remote_dir": "./archive//customer_traffic/"}),
        # two destinations, one inside the other
        ({"remote_dir": "x/{table}"}, {"destination": "nested", "remote_dir": "{table}"}),
        # the table name rendered by a literal
        (
            {"file_name": "{table}_{start:%Y}.csv.gz"},
            {"remote_dir": "customer_traffic", "file_name": "customer_traffic_{end:%Y}.csv.gz"},
        ),
    ],
    ids=["run-date-vs-end", "same-folder-spelt-differently", "nested-destination", "literal-table"],
)
def test_templates_that_can_coincide_for_some_date_are_refused(ws, a, b):
    (ws.dest / "x").mkdir()
    ws.write_config(
        {"a": {"table": TABLE, **a}, "b": {"table": TABLE, **b}},
        destinations={
            "backup": {"type": "local", "path": "backup-server"},
            "nested": {"type": "local", "path": "backup-server/x"},
        },
        defaults={"destination": "backup"},
    )
    r = ws.cli("config", "validate")
    assert r.rc == 2 and any("jobs.b.file_name: jobs 'a' and 'b'" in line for line in r.error_lines), str(r)
    assert_clean_error(ws.cli("run", "--date", RUN_DATE), 2, "jobs.b.file_name")
    assert ws.runs() == [] and ws.files(ws.dest) == []


@pytest.mark.parametrize(
    "b",
    [
        {"file_name": "{job}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz"},  # {job} tells them apart
        {"remote_dir": "{table}/impala"},  # another folder
        {"file_name": "{table}_{start:%Y%m}.csv.gz"},  # 6 digits never equal 8+8
        {"destination": "other"},  # another destination
    ],
    ids=["job", "folder", "shape", "destination"],
)
def test_jobs_whose_paths_cannot_coincide_validate(ws, b):
    (ws.root / "other-server").mkdir()
    ws.write_config(
        {"a": {"table": TABLE}, "b": {"table": TABLE, "format": {"preset": "impala-shell"}, **b}},
        destinations={
            "backup": {"type": "local", "path": "backup-server"},
            "other": {"type": "local", "path": "other-server"},
        },
        defaults={"destination": "backup"},
    )
    r = ws.cli("config", "validate")
    assert r.rc == 0, str(r)


# ---------------------------------------------------------------- NAME_MAX / PATH_MAX


def test_file_names_over_name_max_are_refused(ws):
    ws.write_config({JOB: {"table": TABLE, "file_name": "{table:>300}_{start:%Y%m%d}.csv.gz"}})
    assert_refused(ws, f"jobs.{JOB}.file_name", "NAME_MAX", "255")


def test_a_name_that_only_overflows_with_the_temporary_suffix_is_refused(ws):
    # 240 bytes fit a file name, not its upload temporary '.<name>.tableship-<job>-<hex>.part'
    ws.write_config({JOB: {"table": TABLE, "file_name": "x" * 225 + "_{start:%Y%m%d}.csv.gz"}})
    assert_refused(ws, f"jobs.{JOB}.file_name", "NAME_MAX")


def test_folder_names_over_name_max_are_refused(ws):
    ws.write_config({JOB: {"table": TABLE, "remote_dir": "{table}/" + "d" * 256}})
    assert_refused(ws, f"jobs.{JOB}.remote_dir", "NAME_MAX")


def test_paths_over_path_max_are_refused(ws):
    ws.write_config({JOB: {"table": TABLE, "remote_dir": "/".join(["d" * 200] * 21)}})
    assert_refused(ws, f"jobs.{JOB}.remote_dir", "PATH_MAX", "4096")


# ---------------------------------------------------------------- window, lag and dates out of range


@pytest.mark.parametrize(
    "window, key",
    [
        ({"unit": "month", "count": 30000}, "window.count"),
        ({"unit": "month", "count": 5, "lag": 100000}, "window.lag"),
        ({"unit": "day", "count": 40000}, "window.count"),
        ({"unit": "day", "count": 30000, "lag": 10000}, "window.lag"),
    ],
    ids=["month-count", "month-lag", "day-count", "day-count-plus-lag"],
)
def test_windows_reaching_too_far_back_are_refused(ws, window, key):
    ws.write_config({JOB: {"table": TABLE, "window": window}})
    assert_refused(ws, f"jobs.{JOB}.{key}", "100 years")
    r = ws.cli("config", "validate")
    assert "ValueError" not in r.stderr and "out of range" not in r.stderr, str(r)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--from", "0001-01-01", "--to", "0001-01-31"], ["--from '0001-01-01'", "before 1000-01-01"]),
        (["--from", "2026-01-01", "--to", "0999-01-31"], ["--to '0999-01-31'", "before 1000-01-01"]),
        (["--date", "0474-06-01"], ["--date '0474-06-01'", "before 1000-01-01"]),
        (["--date", "1000-03-15"], ["--date 1000-03-15", "would start before 1000-01-01"]),
    ],
    ids=["from-year-1", "to-year-999", "date-year-474", "window-before-1000"],
)
def test_dates_outside_the_supported_range_are_refused(ws, args, needles):
    r = ws.cli("run", *args)
    line = assert_clean_error(r, 2, *needles)
    assert "ValueError" not in line and "out of range" not in line
    nothing_written(ws)


def test_year_1000_renders_four_digits(ws):
    ws.write_config({JOB: {"table": TABLE, "on_empty": "ok"}})
    r = ws.cli("run", "--from", "1000-01-01", "--to", "1000-01-31")
    assert r.rc == 0, str(r)
    assert (ws.dest / "customer_traffic" / "customer_traffic_10000101_10000131.csv.gz").is_file()


# ---------------------------------------------------------------- format.null


@pytest.mark.parametrize(
    "null, needle",
    [
        ("a;b", "the delimiter"),
        ('"NULL"', "the quote character"),
        ("x\ny", "a line feed"),
        ("x\ry", "a carriage return"),
    ],
    ids=["delimiter", "quote", "lf", "cr"],
)
def test_null_markers_a_reader_cannot_tell_apart_are_refused(ws, null, needle):
    ws.write_config({JOB: {"table": TABLE, "format": {"delimiter": ";", "null": null}}})
    assert_refused(ws, f"jobs.{JOB}.format.null", needle)


def test_null_with_another_delimiter(ws):
    ws.write_config({JOB: {"table": TABLE, "format": {"delimiter": "|", "null": "a|b"}}})
    assert_refused(ws, f"jobs.{JOB}.format.null", "'|'")
    ws.write_config({JOB: {"table": TABLE, "format": {"delimiter": "|", "null": "a;b"}}})
    assert ws.cli("config", "validate").rc == 0


# ---------------------------------------------------------------- missing extras, missing local root


def hide_modules(tmp_path: Path, *modules: str) -> dict:
    """An environment in which ``import <module>`` fails as if the package were not installed."""
    folder = tmp_path / "hide-modules"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        textwrap.dedent(f"""
        import sys

        class _Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {set(modules)!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, _Hide())
    """)
    )
    return {"PYTHONPATH": str(folder)}


SFTP_DEST = {"type": "sftp", "host": "127.0.0.1", "port": 2, "user": "backup", "path": "/srv/backup"}


def test_missing_sftp_extra_is_reported_by_validate_and_stops_run_before_exporting(ws, tmp_path):
    env = hide_modules(tmp_path, "asyncssh")
    ws.write_config(destinations={"backup": SFTP_DEST})
    r = ws.cli("config", "validate", env=env)
    assert r.rc == 2, str(r)
    assert any(
        "destinations.backup.type" in line and "asyncssh" in line and "tableship[sftp]" in line
        for line in r.error_lines
    ), str(r)
    r = ws.cli("run", "--date", RUN_DATE, env=env)
    assert_clean_error(r, 1, "asyncssh", "pip install 'tableship[sftp]'")
    assert "FAILED in upload" in r.stdout and f"exporting {TABLE}" not in r.stderr, str(r)
    assert ws.files(ws.staging) == []  # nothing was exported
    assert [(x["phase"], x["failed_phase"], x["rows"]) for x in ws.runs()] == [("planned", "upload", None)]


def test_missing_hive_extra_is_reported_by_validate_and_stops_run_before_exporting(ws, tmp_path):
    env = hide_modules(tmp_path, "impala")
    ws.write_config(
        {JOB: {"table": TABLE, "source": "hive"}},
        sources={"hive": {"type": "hive", "host": "127.0.0.1", "port": 2}},
    )
    r = ws.cli("config", "validate", env=env)
    assert r.rc == 2, str(r)
    assert any(
        "sources.hive.type" in line and "'impala'" in line and "tableship[hive]" in line
        for line in r.error_lines
    ), str(r)
    r = ws.cli("run", "--date", RUN_DATE, env=env)
    assert_clean_error(r, 1, "impala", "pip install 'tableship[hive]'")
    assert "FAILED in export" in r.stdout, str(r)
    assert ws.files(ws.staging) == [] and ws.files(ws.dest) == []


def test_missing_local_destination_is_reported_by_validate(ws):
    ws.write_config(destinations={"backup": {"type": "local", "path": "no-such-folder"}})
    r = ws.cli("config", "validate")
    assert r.rc == 2, str(r)
    assert any(
        "destinations.backup.path" in line and "does not exist" in line and "mkdir -p" in line
        for line in r.error_lines
    ), str(r)
    assert not (ws.root / "no-such-folder").exists()


def test_run_checks_the_destination_before_exporting(ws):
    ws.write_config(destinations={"backup": {"type": "local", "path": "no-such-folder"}})
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "no-such-folder", "does not exist", "mkdir -p")
    assert f"exporting {TABLE}" not in r.stderr and "FAILED in upload" in r.stdout, str(r)
    assert ws.files(ws.staging) == [] and not (ws.root / "no-such-folder").exists()
    run = ws.runs()[0]
    assert (run["phase"], run["result"], run["failed_phase"], run["rows"]) == (
        "planned",
        "failed",
        "upload",
        None,
    )
    # fixed: the next run resumes the same run and finishes it
    (ws.root / "no-such-folder").mkdir()
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert [(x["id"], x["result"], x["attempts"]) for x in ws.runs()] == [(run["id"], "success", 2)]
    assert [f for f in ws.files(ws.root / "no-such-folder") if "preflight" in f] == []  # the probe is gone


def test_run_checks_the_destination_root_is_writable(ws):
    chattr = ensure_command("chattr", "e2fsprogs")
    proc = subprocess.run([chattr, "+i", str(ws.dest)], capture_output=True, text=True)
    if proc.returncode != 0:
        missing(f"a file system that supports chattr +i: {proc.stderr.strip()}")
    try:
        r = ws.cli("run", "--date", RUN_DATE)
    finally:
        subprocess.run(["chattr", "-i", str(ws.dest)], check=True)
    assert_clean_error(r, 1, "permission denied")
    assert "FAILED in upload" in r.stdout and ws.files(ws.staging) == [], str(r)
    assert f"exporting {TABLE}" not in r.stderr, str(r)


def test_one_unusable_destination_does_not_stop_jobs_on_another(ws):
    ws.write_config(
        {"broken": {"table": TABLE, "destination": "gone"}, "good": {"table": TABLE}},
        destinations={
            "backup": {"type": "local", "path": "backup-server"},
            "gone": {"type": "local", "path": "gone"},
        },
    )
    r = ws.cli("run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "job broken", "gone")
    assert "good 2026-06-01..2026-10-31: OK" in r.stdout, str(r)


# ---------------------------------------------------------------- messages


@pytest.mark.parametrize(
    "args, typed, wrong",
    [
        (["--date", "2026-02-30"], "--date '2026-02-30' is not a valid date", "--run "),
        (
            ["--from", "2026-04-31", "--to", "2026-05-31"],
            "--from '2026-04-31' is not a valid date",
            "--start",
        ),
        (["--from", "2026-04-01", "--to", "2026-13-01"], "--to '2026-13-01' is not a valid date", "--end"),
    ],
    ids=["date", "from", "to"],
)
def test_date_errors_name_the_option_typed(ws, args, typed, wrong):
    line = assert_clean_error(ws.cli("run", *args), 2, typed)
    assert wrong not in line


@pytest.fixture
def int_partitioned(ws, tmp_path) -> Path:
    """A warehouse whose table is partitioned by an INT column holding YYYYMMDD."""
    path = tmp_path / "int.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA mnaas")
    con.execute("CREATE TABLE mnaas.t (partition_date INTEGER, x VARCHAR)")
    con.execute("INSERT INTO mnaas.t VALUES (20260615, 'a'), (20261031, 'b')")
    con.close()
    return path


@pytest.mark.parametrize("declared", ["date", "string"])
def test_partition_type_mismatch_on_an_int_column_is_one_error(ws, int_partitioned, declared):
    ws.write_config(
        {JOB: {"table": "mnaas.t", "partition_type": declared}},
        sources={"warehouse": {"type": "duckdb", "path": str(int_partitioned)}},
    )
    for args in (["run", "--date", RUN_DATE], ["run", "--date", RUN_DATE, "--dry-run"]):
        r = ws.cli(*args)
        assert_clean_error(
            r, 1, f'partition_type = "{declared}"', "int32", 'detected as "int"', 'set partition_type = "int"'
        )
        assert "Binder" not in r.stdout + r.stderr, str(r)
    assert ws.files(ws.dest) == [] and ws.files(ws.staging) == []
    ws.write_config(
        {JOB: {"table": "mnaas.t", "partition_type": "int"}},
        sources={"warehouse": {"type": "duckdb", "path": str(int_partitioned)}},
    )
    assert ws.cli("run", "--date", RUN_DATE).rc == 0


@pytest.mark.parametrize("declared", ["int", "string"])
def test_partition_type_mismatch_on_a_date_column_is_one_error(ws, declared):
    ws.write_config({JOB: {"table": TABLE, "partition_type": declared}})
    assert_clean_error(
        ws.cli("run", "--date", RUN_DATE), 1, f'partition_type = "{declared}"', "date32", 'detected as "date"'
    )


def test_quiet_prints_a_failing_job_error_once(ws):
    ws.write_config({JOB: {"table": "mnaas.dropped_upstream"}})
    r = ws.cli("-q", "run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "mnaas.dropped_upstream")
    out = r.stdout + r.stderr
    assert len(re.findall(r"table mnaas\.dropped_upstream not found", out)) == 1, str(r)
    assert f"{JOB} 2026-06-01..2026-10-31: FAILED in export" in r.stdout, str(r)
    # the log file still has it
    assert "mnaas.dropped_upstream not found" in (ws.state_dir / "tableship.core.log").read_text()


def test_quiet_prints_a_preflight_error_once(ws):
    ws.write_config(destinations={"backup": {"type": "local", "path": "no-such-folder"}})
    r = ws.cli("-q", "run", "--date", RUN_DATE)
    assert_clean_error(r, 1, "no-such-folder")
    assert (r.stdout + r.stderr).count("does not exist") == 1, str(r)


def test_partition_format_codes_are_checked_too(ws):
    ws.write_config({JOB: {"table": TABLE, "partition_type": "string", "partition_format": "%Y-%m-%Q"}})
    assert_refused(ws, f"jobs.{JOB}.partition_format", "%Q", "not a portable date code")
