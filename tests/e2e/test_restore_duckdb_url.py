"""``--load duckdb:///PATH#TABLE`` (the SQLAlchemy URL spelling of a DuckDB file) loads into
DuckDB through the DuckDB loader: no SQLAlchemy dialect needed, the rows equal the source."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.test_archives import build_warehouse
from tests.e2e.test_restore_range import MONTHS, compare_restored, make_site, tableship


@pytest.fixture
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    build_warehouse(path)
    return path


def test_duckdb_url_goes_to_the_duckdb_loader(tmp_path, warehouse):
    cfg = make_site(tmp_path, warehouse, MONTHS[1:2])
    db = tmp_path / "r.duckdb"
    # four slashes: an absolute path, as in SQLAlchemy URLs
    proc = tableship(cfg, "restore", "events", "--from", "2025-12", "--load", f"duckdb:///{db}#main.t")
    assert proc.returncode == 0, proc.stderr
    compare_restored(warehouse, db, "t", "2025-12-01", "2025-12-31")
