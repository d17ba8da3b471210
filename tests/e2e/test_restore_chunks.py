"""``restore --from/--to`` over a job with ``layout = "chunk"`` (one archive per month, each
with its own manifest, plus the window's ``.chunks.json`` index) and ``chunk = "month"``
with ``layout = "window"`` (one archive of gzip members): into DuckDB, equal to the source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.e2e.test_archives import (
    build_warehouse,
    compare_restored,
    local_destination,
    tableship,
    write_config,
)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    build_warehouse(path)
    return path


@pytest.mark.parametrize("layout", ["chunk", "window"])
def test_a_range_of_a_chunked_job_into_duckdb(tmp_path, warehouse, layout):
    os.symlink(warehouse, tmp_path / "warehouse.duckdb")
    extra = f'chunk = "month"\nlayout = "{layout}"\n'
    if layout == "chunk":
        extra += 'file_name = "{table}_{chunk_start:%Y%m}.csv.gz"\n'
    cfg = write_config(tmp_path, local_destination(tmp_path), extra)
    proc = tableship(cfg, "run", "events", "--from", "2025-11-01", "--to", "2026-01-31")
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "r.duckdb"
    dry = tableship(cfg, "restore", "events", "--from", "2025-12", "--to", "2026-01", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    want = 2 if layout == "chunk" else 1
    assert f"would use {want} archive(s)" in dry.stdout, dry.stdout
    proc = tableship(cfg, "restore", "events", "--from", "2025-12", "--to", "2026-01", "--load", f"{db}:t")
    assert proc.returncode == 0, proc.stderr
    assert f"OK, {want} archive(s)" in proc.stdout
    compare_restored(warehouse, db, "t", "2025-12-01", "2026-01-31")
