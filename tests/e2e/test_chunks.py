"""Chunked windows through the CLI on DuckDB (issue 13): ``chunk = "month" | "day"``,
``layout = "window" | "chunk"``, ``parallel``, chunk-level resume after ``kill -9``, and
``refresh = "changed"`` re-exporting only the chunks whose engine fingerprint changed.

A chunked archive must hold exactly the rows of the unchunked one; the queries a run sends
are counted from its log (DuckDB runs inside the process; the PostgreSQL tests count what
the server received)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import re
import shutil
import signal

import duckdb
import pytest
from tests.e2e.helpers import (
    ARCHIVE,
    JOB,
    REMOTE_DIR,
    RUN_DATE,
    TABLE,
    Workspace,
    assert_clean_error,
    decompress,
    parse_csv_module,
    sha256_file,
    wait_for,
)

MONTHS = ["062026", "072026", "082026", "092026", "102026"]
CHUNK_NAME = "mnaas_{table}_{chunk_start:%m%Y}.csv.gz"
WINDOW_MANIFEST = f"{JOB}_20260601_20261031.chunks.json"


def chunk_file(month: str) -> str:
    return f"mnaas_customer_traffic_{month}.csv.gz"


def log_text(ws: Workspace) -> str:
    return (ws.state_dir / "tableship.core.log").read_text()


def chunk_queries(text: str) -> list[str]:
    """The chunks the runs in ``text`` queried, in order (``chunk 2026-06: querying ...``)."""
    return re.findall(r"chunk (\S+): querying", text)


def kill_at(ws: Workspace, point: str, what: str) -> str:
    """Run the job until it reaches hold point ``point``, ``kill -9`` it there; its log so far."""
    holds = ws.root / "holds"
    holds.mkdir(exist_ok=True)
    env = {"TABLESHIP_TEST_HOLD": point, "TABLESHIP_TEST_HOLD_DIR": str(holds)}
    proc = ws.popen("run", "--date", RUN_DATE, env=env)
    wait_for(lambda: (holds / point).exists(), proc=proc, what=what)
    proc.proc.send_signal(signal.SIGKILL)
    proc.wait()
    return log_text(ws)


def sorted_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    return [lines[0], *sorted(lines[1:])]


@pytest.fixture
def unchunked(ws) -> bytes:
    """The decompressed CSV of an unchunked run of the same window (header first)."""
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    data = decompress(ws.archive())
    ws.unchunked_rows = ws.manifest()["rows"]
    shutil.rmtree(ws.dest / REMOTE_DIR)
    shutil.rmtree(ws.state_dir)
    return data


@pytest.mark.parametrize(
    "chunk,codec,parallel",
    [("month", "gzip", 1), ("day", "zstd", 3), ("month", "none", 2)],
)
def test_layout_window_equals_unchunked(ws, unchunked, chunk, codec, parallel):
    ext = {"gzip": ".gz", "zstd": ".zst", "none": ""}[codec]
    name = ARCHIVE.removesuffix(".gz") + ext
    ws.write_config(
        defaults={
            "chunk": chunk,
            "parallel": parallel,
            "compression": {"codec": codec} | ({"level": 3} if codec != "none" else {}),
            "file_name": "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv" + ext,
        }
    )
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    archive = ws.archive(name)
    data = decompress(archive, codec)
    # same rows, same header; in chunk order each chunk's rows as the source returned them
    assert sorted_lines(data) == sorted_lines(unchunked)
    manifest = ws.manifest(name)
    n = 5 if chunk == "month" else 153
    assert manifest["layout"] == "window" and len(manifest["chunks"]) == n
    assert manifest["rows"] == sum(c["rows"] for c in manifest["chunks"]) == ws.unchunked_rows
    raw = archive.read_bytes()
    offset = 0
    for c in manifest["chunks"]:  # the byte ranges tile the archive; each one decodes alone
        assert c["offset"] == offset
        piece = raw[offset : offset + c["archive_bytes"]]
        assert hashlib.sha256(piece).hexdigest() == c["sha256"]
        if codec == "gzip" and c["archive_bytes"]:
            rows = parse_csv_module(gzip.decompress(piece).decode())
            assert len(rows) == c["rows"] + (1 if c["seq"] == 0 else 0)
        offset += c["archive_bytes"]
    assert offset == len(raw) == manifest["archive_bytes"]
    assert sha256_file(archive) == manifest["sha256"]
    assert len(chunk_queries(log_text(ws))) == n
    assert ws.temporaries() == []


def test_kill_after_some_chunks_resumes_the_others(big_ws):
    """``kill -9`` once chunk 2 (of 5) is durable: the re-run queries chunks 3 and 4 only."""
    ws = big_ws
    ws.write_config(defaults={"chunk": "month"})
    first = kill_at(ws, "chunk-2", "chunk 2 to be staged")
    assert chunk_queries(first)[:3] == ["2026-06", "2026-07", "2026-08"]
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    again = chunk_queries(log_text(ws)[len(first) :])
    assert again == ["2026-09", "2026-10"], again
    manifest = ws.manifest()
    assert [c["seq"] for c in manifest["chunks"]] == [0, 1, 2, 3, 4]
    con = duckdb.connect(str(ws.warehouse), read_only=True)
    try:
        (count,) = con.execute(
            f"SELECT count(*) FROM {TABLE} WHERE partition_date BETWEEN '2026-06-01' AND '2026-10-31'"
        ).fetchone()
    finally:
        con.close()
    assert manifest["rows"] == count
    assert len(parse_csv_module(decompress(ws.archive()).decode())) == count + 1
    assert ws.temporaries() == []
    runs = ws.runs()
    assert len(runs) == 1 and runs[0]["phase"] == "done"


# ---------------------------------------------------------------- layout "chunk"


def writable_warehouse(ws: Workspace) -> Workspace:
    """The workspace on its own copy of the warehouse (these tests change rows)."""
    copy = ws.root / "warehouse.duckdb"
    shutil.copy(ws.warehouse, copy)
    ws.warehouse = copy
    return ws


def chunk_config(ws: Workspace, **more) -> None:
    ws.write_config(
        sources={"warehouse": {"type": "duckdb", "path": str(ws.warehouse)}},
        defaults={"chunk": "month", "layout": "chunk", "file_name": CHUNK_NAME} | more,
    )


def remote_state(ws: Workspace) -> dict[str, tuple[int, int]]:
    """name → (inode, mtime_ns) of every file on the destination: what a re-upload changes."""
    out = {}
    for p in (ws.dest / REMOTE_DIR).iterdir():
        st = p.stat()
        out[p.name] = (st.st_ino, st.st_mtime_ns)
    return out


def execute(ws: Workspace, sql: str) -> None:
    con = duckdb.connect(str(ws.warehouse))
    try:
        con.execute(sql)
    finally:
        con.close()


def test_layout_chunk_rolling_refresh(ws, unchunked):
    ws = writable_warehouse(ws)
    chunk_config(ws)
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert "chunks: 5 exported, 0 changed, 0 unchanged" in r.stdout, str(r)
    files = sorted(p.name for p in (ws.dest / REMOTE_DIR).iterdir())
    expected = sorted(
        [WINDOW_MANIFEST, WINDOW_MANIFEST + ".sha256"]
        + [chunk_file(m) + s for m in MONTHS for s in ("", ".sha256", ".manifest.json")]
    )
    assert files == expected
    # every chunk archive is complete on its own (header + its rows) and they add up to the window
    header, *rows = unchunked.rstrip(b"\n").split(b"\n")
    got = []
    wm = json.loads((ws.dest / REMOTE_DIR / WINDOW_MANIFEST).read_text())
    assert [c["file_name"] for c in wm["chunks"]] == [chunk_file(m) for m in MONTHS]
    assert wm["rows"] == sum(c["rows"] for c in wm["chunks"]) == ws.unchunked_rows
    for m, c in zip(MONTHS, wm["chunks"], strict=True):
        data = decompress(ws.dest / REMOTE_DIR / chunk_file(m)).rstrip(b"\n").split(b"\n")
        assert data[0] == header
        got += data[1:]
        manifest = ws.manifest(chunk_file(m))
        assert manifest["window"] == {"start": c["start"], "end": c["end"]}
        assert manifest["sha256"] == c["sha256"] == sha256_file(ws.dest / REMOTE_DIR / chunk_file(m))
    assert sorted(got) == sorted(rows)
    before = remote_state(ws)

    # nothing changed: nothing exported, nothing uploaded
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert "chunks: 0 exported, 0 changed, 5 unchanged" in r.stdout, str(r)
    assert chunk_queries(log_text(ws)[mark:]) == []
    assert remote_state(ws) == before

    # one row of one closed month updated: exactly that month is re-exported
    execute(
        ws,
        f"UPDATE {TABLE} SET bytes_up = bytes_up + 1 WHERE cdr_id = "
        f"(SELECT min(cdr_id) FROM {TABLE} WHERE partition_date = DATE '2026-08-14')",
    )
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert "chunks: 0 exported, 1 changed, 4 unchanged" in r.stdout, str(r)
    assert chunk_queries(log_text(ws)[mark:]) == ["2026-08"]
    after = remote_state(ws)
    changed = {n for n in after if after[n] != before.get(n)}
    assert {chunk_file("082026"), chunk_file("082026") + ".sha256"} <= changed
    assert not any(m in n for n in changed for m in MONTHS if m != "082026")

    # a new day in the last (current) month: only that month
    execute(
        ws,
        f"INSERT INTO {TABLE} SELECT * REPLACE (DATE '2026-10-31' AS partition_date, "
        f"cdr_id + 100000000 AS cdr_id) FROM {TABLE} WHERE partition_date = DATE '2026-10-30'",
    )
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert chunk_queries(log_text(ws)[mark:]) == ["2026-10"]

    # a deleted remote chunk archive is exported again
    (ws.dest / REMOTE_DIR / chunk_file("062026")).unlink()
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert chunk_queries(log_text(ws)[mark:]) == ["2026-06"]
    assert "chunks: 1 exported, 0 changed, 4 unchanged" in r.stdout, str(r)

    # refresh = "always": every chunk again; "never": none, even after a change
    chunk_config(ws, refresh="never")
    execute(ws, f"UPDATE {TABLE} SET bytes_up = bytes_up + 1 WHERE partition_date = DATE '2026-07-02'")
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0 and chunk_queries(log_text(ws)[mark:]) == [], str(r)
    chunk_config(ws, refresh="always")
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0 and len(chunk_queries(log_text(ws)[mark:])) == 5, str(r)


def test_layout_chunk_kill_resumes(big_ws):
    ws = big_ws
    chunk_config(ws, parallel=2)
    first = kill_at(ws, "chunk-1", "chunk 1 to be delivered")
    delivered = set(re.findall(r"chunk (\S+): exported", first))
    assert {"2026-06", "2026-07"} <= delivered
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    again = chunk_queries(log_text(ws)[len(first) :])
    assert not set(again) & delivered and set(again) | delivered == {
        "2026-06",
        "2026-07",
        "2026-08",
        "2026-09",
        "2026-10",
    }, again


def test_chunk_config_refused(ws):
    ws.write_config(defaults={"layout": "chunk"})
    r = ws.cli("config", "validate")
    assert r.rc == 2 and 'needs chunk = "month" or "day"' in r.stdout + r.stderr, str(r)
    ws.write_config(defaults={"chunk": "month", "layout": "chunk"})
    r = ws.cli("config", "validate")
    assert r.rc == 2 and "the same name" in r.stdout + r.stderr, str(r)
    ws.write_config(defaults={"parallel": 4})
    r = ws.cli("config", "validate")
    assert r.rc == 2 and "parallel > 1 needs chunk" in r.stdout + r.stderr, str(r)


def test_layout_chunk_catalog(ws):
    """``ls``, ``verify`` and ``prune`` see each chunk archive with the chunk's days."""
    chunk_config(ws, retention={"keep_last": 3})
    assert ws.cli("run", "--date", RUN_DATE).rc == 0
    r = ws.cli("ls", JOB, "--json")
    assert r.rc == 0, str(r)
    listed = json.loads(r.stdout)
    rows = listed if isinstance(listed, list) else listed.get("archives", listed)
    names = [a["file_name"] for a in rows]
    assert names == [chunk_file(m) for m in MONTHS], names
    assert [a["window"]["start"] for a in rows] == [
        "2026-06-01",
        "2026-07-01",
        "2026-08-01",
        "2026-09-01",
        "2026-10-01",
    ]
    r = ws.cli("verify", JOB)
    assert r.rc == 0, str(r)
    (ws.dest / REMOTE_DIR / chunk_file("072026")).unlink()
    r = ws.cli("verify", JOB)
    assert r.rc == 1 and chunk_file("072026") in r.stdout + r.stderr, str(r)
    assert ws.cli("run", "--date", RUN_DATE).rc == 0  # re-exports the missing chunk
    r = ws.cli("prune", JOB)
    assert r.rc == 0, str(r)
    left = sorted(p.name for p in (ws.dest / REMOTE_DIR).iterdir() if p.name.endswith(".csv.gz"))
    assert left == [chunk_file(m) for m in MONTHS[-3:]], left


def test_parallel_within_the_source_cap(ws, unchunked):
    """``parallel = 3`` on a source with ``max_connections = 1``: the chunk queries wait for
    the one slot (one at a time) and the archive is the same."""
    ws.write_config(
        sources={"warehouse": {"type": "duckdb", "path": str(ws.warehouse), "max_connections": 1}},
        defaults={"chunk": "month", "parallel": 3},
    )
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert sorted_lines(decompress(ws.archive())) == sorted_lines(unchunked)


def test_layout_chunk_range_restore(ws, unchunked):
    """A window of chunk archives restores as its chunks, in order: the rows of the window."""
    chunk_config(ws)
    assert ws.cli("run", "--date", RUN_DATE).rc == 0
    target = ws.root / "restored.duckdb"
    r = ws.cli("restore", JOB, "--from", "2026-06", "--to", "2026-10", "--load", f"{target}:t")
    assert r.rc == 0, str(r)
    con = duckdb.connect(str(target), read_only=True)
    try:
        (n,) = con.execute("SELECT count(*) FROM t").fetchone()
    finally:
        con.close()
    assert n == ws.unchunked_rows


def test_layout_chunk_empty_window_refused_before_delivery(ws):
    """``on_empty = "fail"`` (the default) with ``layout = "chunk"``: an empty window fails
    before any chunk archive (header-only) reaches the destination, as an unchunked export
    fails before its upload; empty chunks before a chunk with rows are delivered with it."""
    chunk_config(ws)
    con = duckdb.connect(str(ws.warehouse), read_only=True)
    try:
        (first,) = con.execute(f"SELECT min(partition_date) FROM {TABLE}").fetchone()
    finally:
        con.close()
    # the three months before the table's first day: no rows
    y, m = (first.year, first.month - 3) if first.month > 3 else (first.year - 1, first.month + 9)
    empty_from = f"{y:04d}-{m:02d}-01"
    empty_to = (first.replace(day=1) - dt.timedelta(days=1)).isoformat()
    r = ws.cli("run", JOB, "--from", empty_from, "--to", empty_to)
    assert_clean_error(r, 1, "no rows")
    assert ws.files(ws.dest) == [], ws.files(ws.dest)
    assert ws.files(ws.staging) == [], ws.files(ws.staging)
    # the same empty months followed by one with rows: every chunk is delivered
    with_rows = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    r = ws.cli("run", JOB, "--from", empty_from, "--to", with_rows.isoformat())
    assert r.rc == 0, str(r)
    assert "chunks: 4 exported" in r.stdout, str(r)
    assert len([p for p in ws.files(ws.dest) if p.endswith(".csv.gz")]) == 4
    # on_empty = "warn": the empty window is accepted, with a warning (its header-only chunk
    # archives, delivered by the run before, are unchanged)
    chunk_config(ws, on_empty="warn")
    r = ws.cli("run", JOB, "--from", empty_from, "--to", empty_to)
    assert r.rc == 0 and "no rows" in r.stderr, str(r)
    assert "chunks: 0 exported, 0 changed, 3 unchanged" in r.stdout, str(r)


def test_layout_chunk_unchanged_file_not_read_again(ws):
    """On a local destination a re-run does not read an unchanged chunk archive again: its
    stamp (inode, size, mtime, ctime) is the one recorded when its sha256 was proved. A file
    rewritten in place with the same size and its mtime set back has another ctime: it is
    hashed, found different and exported again."""
    chunk_config(ws)
    assert ws.cli("run", "--date", RUN_DATE).rc == 0
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0 and "chunks: 0 exported, 0 changed, 5 unchanged" in r.stdout, str(r)
    again = log_text(ws)[mark:]
    assert again.count("backup: unchanged file since its sha256 was proved") == 5, again
    path = ws.dest / REMOTE_DIR / chunk_file("072026")
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    mark = len(log_text(ws))
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0 and "chunks: 1 exported, 0 changed, 4 unchanged" in r.stdout, str(r)
    assert chunk_queries(log_text(ws)[mark:]) == ["2026-07"]
    assert sha256_file(path) == ws.manifest(chunk_file("072026"))["sha256"]
