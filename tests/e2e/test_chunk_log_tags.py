"""Log lines written by the chunk threads carry the run's ``[job#run]`` tag, as every other
line of a run does: the 3 a.m. reader greps the log by job."""

from __future__ import annotations

import json
import re

from tests.e2e.helpers import JOB, RUN_DATE

from tableship.core.units import human_size


def test_chunk_thread_lines_are_tagged_with_the_job(ws):
    ws.write_config(defaults={"chunk": "month", "parallel": 2})
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    text = (ws.state_dir / "tableship.core.log").read_text()
    queries = [line for line in text.splitlines() if re.search(r"chunk \S+: querying", line)]
    assert len(queries) == 5, text
    assert all(f"[{JOB}#1]" in line for line in queries), queries


def test_chunk_layout_sizes_count_the_chunk_archives(ws):
    """With layout "chunk" the summary and ``status`` show the bytes kept on the destination
    (the chunk archives plus the window manifest), not the window manifest's few KiB."""
    ws.write_config(
        defaults={"chunk": "month", "layout": "chunk", "file_name": "mnaas_{table}_{chunk_start:%m%Y}.csv.gz"}
    )
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    kept = sum(p.stat().st_size for p in ws.dest.rglob("*") if p.name.endswith((".csv.gz", ".chunks.json")))
    s = ws.cli("status", "--json")
    assert s.rc == 0, str(s)
    row = json.loads(s.stdout)[0]
    assert row["stored_bytes"] == kept, s.stdout
    assert row["bytes"] == (ws.dest / row["remote_path"]).stat().st_size  # the file sha256 names
    assert f", {human_size(kept)} → " in r.stdout, r.stdout
