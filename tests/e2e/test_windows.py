"""No window is ever dropped (issue 9, point 2), through the CLI: a window whose run was
killed is finished by the next run of another window; a window never run is a gap that
``status`` shows (and its exit code says), that opens an incident after ``gap_grace``
and that ``catch_up = true`` fills; ``tableship abandon`` is the only way to give one up."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import signal

import pytest
from tests.e2e.helpers import (
    JOB,
    REMOTE_DIR,
    Workspace,
    assert_clean_error,
    decompress,
    parse_csv_nulls,
    query_rows,
    wait_for,
)

PLAIN = "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv"  # uncompressed: the export is long enough to kill


def name(start: str, end: str, ext: str = ".csv") -> str:
    return f"customer_traffic_{start.replace('-', '')}_{end.replace('-', '')}{ext}"


def csv_sha(path) -> str:
    return hashlib.sha256(decompress(path)).hexdigest()


def kill_during_export(ws: Workspace, run_date: str, archive: str) -> None:
    proc = ws.popen("run", "--date", run_date)
    try:
        part = ws.staging / JOB / f"{archive}.part"
        wait_for(
            lambda: part.exists() and part.stat().st_size > 1_000_000, proc=proc, what="the export under way"
        )
        proc.proc.send_signal(signal.SIGKILL)
        assert proc.wait().rc == -signal.SIGKILL
    finally:
        proc.kill()
    run = ws.runs()[-1]
    assert (run["phase"], run["result"]) == ("planned", "running"), run


def reference_sha(tmp_path, warehouse, window_spec: dict, start: str, end: str) -> str:
    """The decompressed CSV of an uninterrupted run of the window, in a fresh workspace."""
    ref = Workspace(tmp_path / f"ref-{start}", warehouse)
    ref.write_config(defaults={"window": window_spec, "file_name": PLAIN, "compression": {"codec": "none"}})
    r = ref.cli("run", "--from", start, "--to", end)
    assert r.rc == 0, str(r)
    return csv_sha(ref.archive(name(start, end)))


@pytest.mark.parametrize(
    "spec, killed, next_day, old, new",
    [
        (
            {"unit": "month", "count": 2},
            "2026-10-31",
            "2026-11-01",
            ("2026-08-01", "2026-09-30"),
            ("2026-09-01", "2026-10-31"),
        ),
        (
            {"unit": "day", "count": 7},
            "2026-10-15",
            "2026-10-16",
            ("2026-10-08", "2026-10-14"),
            ("2026-10-09", "2026-10-15"),
        ),
    ],
    ids=["month", "day"],
)
def test_killed_window_is_finished_by_the_next_days_run(big_ws, tmp_path, spec, killed, next_day, old, new):
    ws = big_ws
    ws.write_config(defaults={"window": spec, "file_name": PLAIN, "compression": {"codec": "none"}})
    kill_during_export(ws, killed, name(*old))
    st = ws.cli("status", "--date", killed)
    assert st.rc == 1, str(st)  # WARNING: unfinished (interrupted), within gap_grace
    assert f"{old[0]}..{old[1]} unfinished: run 1 interrupted at phase planned" in st.stdout, st.stdout

    r = ws.cli("run", "--date", next_day, "--dry-run")
    assert r.rc == 0, str(r)
    assert f"  first:       window {old[0]}..{old[1]} (unfinished run 1 at phase planned)" in r.stdout, (
        r.stdout
    )
    r = ws.cli("run", "--date", next_day)
    assert r.rc == 0, str(r)
    assert "also finishing 1 older window first" in r.stderr and "resuming run 1" in r.stderr, r.stderr
    assert r.stdout.splitlines()[0].startswith(f"{JOB} {old[0]}..{old[1]}: OK"), r.stdout
    assert r.stdout.splitlines()[1].startswith(f"{JOB} {new[0]}..{new[1]}: OK"), r.stdout
    runs = ws.runs()
    assert [(x["window_start"], x["phase"], x["result"]) for x in runs] == [
        (old[0], "done", "success"),
        (new[0], "done", "success"),
    ]
    # both verified on the destination, each with exactly an uninterrupted run's content
    for w in (old, new):
        archive = ws.archive(name(*w))
        assert csv_sha(archive) == reference_sha(tmp_path, ws.warehouse, spec, *w)
        assert ws.manifest(name(*w))["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert ws.files(ws.staging) == []
    assert ws.cli("status", "--date", next_day).rc == 0


# ---------------------------------------------------------------- gaps


def gap_config(ws: Workspace, **job) -> None:
    ws.write_config(
        jobs={JOB: {"table": "mnaas.customer_traffic", **job}},
        defaults={"window": {"unit": "month", "count": 1}},
        settings={"metrics_file": ".tableship/metrics.prom"},
        alerts={
            "channels": ["hook"],
            "hook": {
                "type": "command",
                "argv": ["sh", "-c", f'echo "$TABLESHIP_EVENT $TABLESHIP_WINDOW" >> {ws.root}/alerts.log'],
            },
        },
    )


def alerts(ws: Workspace) -> list[str]:
    path = ws.root / "alerts.log"
    return path.read_text().splitlines() if path.exists() else []


def gauge(ws: Workspace, metric: str) -> float:
    text = (ws.state_dir / "metrics.prom").read_text()
    m = re.search(rf'^{metric}{{tableship_job="{JOB}"}} (\S+)$', text, re.M)
    assert m, text
    return float(m.group(1))


def test_a_month_without_runs_is_a_gap_until_catch_up_fills_it(ws):
    gap_config(ws)
    r = ws.cli("run", "--date", "2026-09-10")  # August
    assert r.rc == 0, str(r)
    assert ws.cli("status", "--date", "2026-09-10").rc == 0

    # October 1st: September is due, no run yet — listed, but within gap_grace: OK
    st = ws.cli("status", "--date", "2026-10-01")
    assert st.rc == 0, str(st)
    assert "2026-09-01..2026-09-30 missing: no run, expected since 2026-10-01 (within gap_grace)" in st.stdout

    # no run at all in October. November 2nd: September (and October) overdue
    st = ws.cli("status", "--date", "2026-11-02")
    assert st.rc == 2, str(st)
    assert "2026-09-01..2026-09-30 missing: no run, expected since 2026-10-01 (overdue)" in st.stdout
    assert st.stdout.splitlines()[-1].startswith("CRITICAL: customer_traffic: ")
    js = json.loads(ws.cli("status", "--json", "--date", "2026-11-02").stdout)[0]
    assert [g["window"] for g in js["missing_windows"]] == [
        "2026-09-01..2026-09-30",
        "2026-10-01..2026-10-31",
    ]
    assert js["level"] == 2

    # the November run backs October up; September still missing: the job fails, an incident opens
    r = ws.cli("run", "--date", "2026-11-02")
    assert r.rc == 1, str(r)
    assert f"{JOB} 2026-10-01..2026-10-31: OK" in r.stdout
    assert (
        f"{JOB} 2026-09-01..2026-09-30: MISSING: 1 window without a verified archive past gap_grace"
        in r.stdout
    )
    assert_clean_error(r, 1, "2026-09-01..2026-09-30", "tableship abandon", "catch_up")
    assert alerts(ws) == ["failed 2026-09-01..2026-09-30"]
    assert (gauge(ws, "tableship_missing_windows"), gauge(ws, "tableship_overdue_windows")) == (1.0, 1.0)
    assert gauge(ws, "tableship_unfinished_windows") == 0.0
    st = ws.cli("status", "--date", "2026-11-02")
    assert st.rc == 2 and "INCIDENT #1 open" in st.stdout, str(st)

    r = ws.cli("run", "--date", "2026-11-03")  # still missing: counted, not alerted again
    assert r.rc == 1, str(r)
    assert alerts(ws) == ["failed 2026-09-01..2026-09-30"]

    # catch_up fills it: the incident resolves
    gap_config(ws, catch_up=True)
    r = ws.cli("run", "--date", "2026-11-03")
    assert r.rc == 0, str(r)
    assert f"{JOB} 2026-09-01..2026-09-30: OK" in r.stdout
    assert alerts(ws) == ["failed 2026-09-01..2026-09-30", "resolved 2026-10-01..2026-10-31"]
    assert (gauge(ws, "tableship_missing_windows"), gauge(ws, "tableship_overdue_windows")) == (0.0, 0.0)
    st = ws.cli("status", "--date", "2026-11-03")
    assert st.rc == 0, str(st)
    for start, end in (
        ("2026-08-01", "2026-08-31"),
        ("2026-09-01", "2026-09-30"),
        ("2026-10-01", "2026-10-31"),
    ):
        rows = parse_csv_nulls(decompress(ws.archive(name(start, end, ".csv.gz"))).decode())
        _, expected = query_rows(ws.warehouse, dt.date.fromisoformat(start), dt.date.fromisoformat(end))
        assert sorted(rows[1:], key=lambda row: int(row[0])) == expected


def test_catch_up_is_bounded_per_run(ws):
    gap_config(ws, catch_up=True, catch_up_max=1)
    assert ws.cli("run", "--date", "2026-06-05").rc == 0  # May
    r = ws.cli("run", "--date", "2026-09-05")  # June, July missing; August today
    assert [line.split(":")[0] for line in r.stdout.splitlines()] == [
        f"{JOB} 2026-06-01..2026-06-30",
        f"{JOB} 2026-08-01..2026-08-31",
        f"{JOB} 2026-07-01..2026-07-31",
    ]
    assert r.rc == 1  # July is still overdue
    r = ws.cli("run", "--date", "2026-09-05")
    assert r.rc == 0, str(r)
    assert ws.cli("status", "--date", "2026-09-05").rc == 0


def test_abandon_gives_a_window_up(ws):
    gap_config(ws)
    assert ws.cli("run", "--date", "2026-07-05").rc == 0  # June
    blocker = ws.dest / REMOTE_DIR / name("2026-07-01", "2026-07-31", ".csv.gz")
    blocker.mkdir(parents=True)  # July's upload fails: the window is unfinished
    assert ws.cli("run", "--date", "2026-08-05").rc == 1
    assert ws.files(ws.staging) == [f"{JOB}/{name('2026-07-01', '2026-07-31', '.csv.gz')}"]
    st = ws.cli("status", "--date", "2026-08-05")
    assert st.rc == 2 and "2026-07-01..2026-07-31 unfinished: run 2 failed at phase exported" in st.stdout, (
        str(st)
    )

    r = ws.cli("abandon", JOB, "--window", "2026-07-01..2026-07-31", "--reason", "July purged upstream")
    assert r.rc == 0, str(r)
    assert "run 2 (phase exported) abandoned" in r.stdout
    assert ws.files(ws.staging) == []
    assert ws.runs()[1]["result"] == "abandoned"
    blocker.rmdir()
    r = ws.cli("run", "--date", "2026-09-05")  # August; July is not finished any more
    assert r.rc == 0, str(r)
    assert [x["window_start"] for x in ws.runs()] == ["2026-06-01", "2026-07-01", "2026-08-01"]
    st = ws.cli("status", "--date", "2026-09-05")
    assert st.rc == 0 and "2026-07-01" not in st.stdout, str(st)

    assert_clean_error(
        ws.cli("abandon", JOB, "--window", "2026-06-01..2026-06-30"), 2, "already has a verified archive"
    )
    assert_clean_error(ws.cli("abandon", JOB, "--window", "2026-06-01"), 2, "--window")
    assert_clean_error(ws.cli("abandon", "nosuch", "--window", "2026-06-01..2026-06-30"), 2, "unknown job")
