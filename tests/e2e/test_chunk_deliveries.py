"""Chunk archives (``layout = "chunk"``) of a job with several destinations, through the
CLI, on both ledger backends: each copy of a chunk archive is recorded per destination
(``chunk_deliveries``). A destination that is down does not stop the others from getting
every chunk; its chunks' staged archives are kept; the run fails (exit 1, one alert) naming
the chunks it misses; the re-run uploads only the missing copies, from staging, without a
query to the source and without rewriting the copies the other destination holds.
(The window layout's counterpart: tests/e2e/test_multi_destinations.py.)"""

from __future__ import annotations

import json

import pytest
from tests.e2e.helpers import JOB, REMOTE_DIR, RUN_DATE, TABLE, Workspace, sha256_file
from tests.e2e.test_chunks import (
    CHUNK_NAME,
    MONTHS,
    WINDOW_MANIFEST,
    chunk_file,
    chunk_queries,
    execute,
    kill_at,
    log_text,
    writable_warehouse,
)
from tests.servers.postgres import fresh_database

NEXT_DAY = "2026-11-27"  # the next daily run: the same month window
ALL_FILES = sorted(
    [WINDOW_MANIFEST, WINDOW_MANIFEST + ".sha256"]
    + [chunk_file(m) + s for m in MONTHS for s in ("", ".sha256", ".manifest.json")]
)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request) -> dict:
    """The ``[settings]`` of the ledger backend: the SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return {}
    return {"state": fresh_database(request.getfixturevalue("postgres"))}


def two_destinations(ws: Workspace, ledger: dict) -> Workspace:
    ws = writable_warehouse(ws)  # its own copy: a test moves it away
    ws.second = ws.root / "second-server"
    ws.second.mkdir(exist_ok=True)
    write_config(ws, ledger)
    return ws


def write_config(ws: Workspace, ledger: dict, file_name: str = CHUNK_NAME) -> None:
    """Monthly chunk archives named ``file_name`` to two local folders, alerts to a file."""
    ws.write_config(
        {JOB: {"table": TABLE, "destinations": ["backup", "second"]}},
        settings=ledger,
        sources={"warehouse": {"type": "duckdb", "path": str(ws.warehouse)}},
        destinations={
            "backup": {"type": "local", "path": "backup-server"},
            "second": {"type": "local", "path": "second-server"},
        },
        defaults={"chunk": "month", "layout": "chunk", "file_name": file_name},
        alerts={
            "channels": ["hook"],
            "hook": {
                "type": "command",
                "argv": [
                    "sh",
                    "-c",
                    f'echo "$TABLESHIP_EVENT $TABLESHIP_FAILED_DESTINATIONS" >> {ws.root}/alerts.log',
                ],
            },
        },
    )


def files(folder) -> dict[str, tuple[int, int]]:
    """name → (inode, mtime_ns) of every file in ``folder/REMOTE_DIR``: what a rewrite changes."""
    base = folder / REMOTE_DIR
    if not base.is_dir():
        return {}
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in base.iterdir()}


def status(ws: Workspace) -> dict:
    r = ws.cli("status", "--json", "--date", RUN_DATE)
    return json.loads(r.stdout)[0]


def alerts(ws: Workspace) -> list[str]:
    path = ws.root / "alerts.log"
    return path.read_text().splitlines() if path.exists() else []


def copies_ok(folder, dest: str, like=None) -> None:
    """Every chunk archive in ``folder`` with its sidecars naming ``dest`` (the same bytes as ``like``)."""
    for m in MONTHS:
        name = chunk_file(m)
        digest = sha256_file(folder / REMOTE_DIR / name)
        assert (folder / REMOTE_DIR / f"{name}.sha256").read_text() == f"{digest}  {name}\n"
        manifest = json.loads((folder / REMOTE_DIR / f"{name}.manifest.json").read_text())
        assert manifest["sha256"] == digest and manifest["destination"] == dest
        if like is not None:
            assert digest == sha256_file(like / REMOTE_DIR / name)


def test_a_destination_down_gets_only_its_missing_chunk_archives_on_the_rerun(ws, ledger):
    ws = two_destinations(ws, ledger)
    blocker = ws.second / REMOTE_DIR
    blocker.write_text("not a folder")  # the second destination cannot take any chunk archive
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 1, str(r)
    assert len(r.error_lines) == 1 and "Traceback" not in r.stderr, str(r)
    line = r.error_lines[0]
    assert "destination second:" in line and "1 of 2 destinations verified" in line, line
    assert "second is missing 5 of 5 chunk archives (2026-06..2026-10), kept in staging" in line, line
    assert chunk_queries(log_text(ws)) == ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
    # the good destination holds every chunk, verified, and the window manifest
    assert sorted(files(ws.dest)) == ALL_FILES
    copies_ok(ws.dest, "backup")
    # the chunks' staged archives are kept until the second destination has them
    assert sorted(ws.files(ws.staging)) == sorted(
        [f"{JOB}/{chunk_file(m)}" for m in MONTHS] + [f"{JOB}/{WINDOW_MANIFEST}"]
    )
    # status says which destination misses which chunks, in one line
    st = ws.cli("status", "--date", RUN_DATE)
    missing = [x for x in st.stdout.splitlines() if "chunk archives missing" in x]
    assert missing == [
        f"{JOB}: chunk archives missing on second: 2026-06..2026-10 (5), kept in staging until "
        "delivered (the next run uploads only these)"
    ], st.stdout
    row = status(ws)
    assert row["missing_chunks"] == {"second": [chunk_file(m) for m in MONTHS]}
    assert (row["phase"], row["result"], row["failed_phase"]) == ("exported", "failed", "upload")
    assert {d["destination"]: d["result"] for d in row["deliveries"]} == {
        "backup": "success",
        "second": "failed",
    }
    assert alerts(ws) == ["failed second"]  # alerted once, naming the destination
    before = files(ws.dest)

    # the destination is back; the source is gone: any query would fail the run
    blocker.unlink()
    ws.warehouse.rename(ws.root / "moved-away.duckdb")
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    again = log_text(ws)[mark:]
    assert chunk_queries(again) == [] and "fingerprint" not in again, again
    assert again.count("missing copy delivered (uploaded on second") == 5, again
    assert files(ws.dest) == before  # not one file of the good destination rewritten
    assert sorted(files(ws.second)) == ALL_FILES
    copies_ok(ws.second, "second", like=ws.dest)
    assert ws.files(ws.staging) == []
    row = status(ws)
    assert row["missing_chunks"] == {} and (row["phase"], row["result"]) == ("done", "success")
    assert alerts(ws) == ["failed second", "resolved "]


def test_kill_between_the_two_uploads_of_a_chunk_resumes_with_the_missing_copy(ws, ledger):
    """``kill -9`` once chunk 2 is verified on the first destination, before the second:
    the re-run uploads chunk 2 to the second destination only, from staging, and queries
    only the chunks that were never exported."""
    ws = two_destinations(ws, ledger)
    first = kill_at(ws, "chunk-2-backup", "chunk 2 verified on backup")
    assert chunk_queries(first)[:3] == ["2026-06", "2026-07", "2026-08"]
    aug = chunk_file("082026")
    assert (ws.dest / REMOTE_DIR / aug).is_file() and not (ws.second / REMOTE_DIR / aug).exists()
    assert (ws.staging / JOB / aug).is_file()  # kept: the second destination has no copy yet
    before = files(ws.dest)

    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    again = log_text(ws)[len(first) :]
    assert chunk_queries(again) == ["2026-09", "2026-10"], again
    after = files(ws.dest)
    assert {n: after[n] for n in before} == before  # chunks 0-2 on backup not rewritten
    assert sorted(after) == ALL_FILES and sorted(files(ws.second)) == ALL_FILES
    copies_ok(ws.dest, "backup")
    copies_ok(ws.second, "second", like=ws.dest)
    assert ws.files(ws.staging) == []
    row = status(ws)
    assert (row["run"], row["phase"], row["result"]) == (1, "done", "success")
    assert "chunks: 5 exported, 0 changed, 0 unchanged" in r.stdout, str(r)


def test_a_lost_staged_chunk_is_exported_again_alone(ws, ledger):
    """A kept staged chunk archive deleted before the re-run: that chunk alone is queried
    again; the destination that holds it keeps its copy (same bytes: not re-sent)."""
    ws = two_destinations(ws, ledger)
    blocker = ws.second / REMOTE_DIR
    blocker.write_text("not a folder")
    assert ws.cli("run", "--date", RUN_DATE).rc == 1
    jul = chunk_file("072026")
    (ws.staging / JOB / jul).unlink()
    blocker.unlink()
    before = files(ws.dest)
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert chunk_queries(log_text(ws)[mark:]) == ["2026-07"]
    assert files(ws.dest)[jul] == before[jul]
    copies_ok(ws.second, "second", like=ws.dest)
    assert ws.files(ws.staging) == []


def test_a_daily_run_with_a_destination_down_exports_only_the_changed_chunk(ws, ledger):
    """The rolling window's next run while the second destination's mount is gone: the
    unchanged chunks are proved on the first destination (the second is checked again by
    a later run), the one changed month is exported and reaches the first destination,
    the job fails naming that month; with the mount back the re-run only uploads it."""
    ws = two_destinations(ws, ledger)
    assert ws.cli("run", "--date", RUN_DATE).rc == 0
    execute(
        ws,
        f"UPDATE {TABLE} SET bytes_up = bytes_up + 1 WHERE cdr_id = "
        f"(SELECT min(cdr_id) FROM {TABLE} WHERE partition_date = DATE '2026-08-14')",
    )
    away = ws.root / "second-away"
    ws.second.rename(away)
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", NEXT_DAY)  # the same window (a new run even on a shared ledger)
    assert r.rc == 1, str(r)
    assert chunk_queries(log_text(ws)[mark:]) == ["2026-08"]
    line = r.error_lines[0]
    assert "destination second:" in line and "second is missing 1 of 5 chunk archives (2026-08)" in line, line
    assert status(ws)["missing_chunks"] == {"second": [chunk_file("082026")]}
    before = files(ws.dest)
    copies_ok(ws.dest, "backup")

    away.rename(ws.second)
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", NEXT_DAY)
    assert r.rc == 0, str(r)
    again = log_text(ws)[mark:]
    assert chunk_queries(again) == [] and again.count("missing copy delivered") == 1, again
    assert files(ws.dest) == before
    copies_ok(ws.second, "second", like=ws.dest)
    assert ws.files(ws.staging) == []


def test_an_abandoned_run_leaves_no_kept_chunk_archive_in_staging(ws, ledger):
    """A run waiting for a destination, then abandoned by a config change (another file
    name): its kept chunk archives leave staging; the copies the first destination verified
    stay there (a verified copy is a backup)."""
    ws = two_destinations(ws, ledger)
    (ws.second / REMOTE_DIR).write_text("not a folder")
    assert ws.cli("run", "--date", RUN_DATE).rc == 1
    (ws.second / REMOTE_DIR).unlink()
    write_config(ws, ledger, "{table}_{chunk_start:%Y%m}.csv.gz")
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0 and "abandoning it" in r.stderr, str(r)
    assert ws.files(ws.staging) == []
    assert all((ws.dest / REMOTE_DIR / chunk_file(m)).is_file() for m in MONTHS)
    assert sorted(p for p in files(ws.second) if p.endswith(".csv.gz")) == [
        f"customer_traffic_2026{m[:2]}.csv.gz" for m in MONTHS
    ]
