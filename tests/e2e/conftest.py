"""End-to-end fixtures: the CLI as a user runs it (``python -m tableship`` in a subprocess),
on real DuckDB files, in a temporary workspace.

* ``small_warehouse`` / ``big_warehouse`` (session): demo warehouses built once with
  :func:`tableship.cli.demo.create_demo_warehouse` for the fixed run date ``TODAY``; sources
  open them read-only, so every test can share them.
* ``ws`` / ``big_ws``: a :class:`Workspace` (config writer, CLI runner, state and file
  inspection) over the small / big warehouse.
* ``cli``: ``ws.cli`` — ``cli(*args, env=...)`` returns a :class:`Result` (rc, stdout, stderr).

The CLI always runs from an unrelated working directory (``ws.cwd``) with an absolute
``--config``, so every relative path in the config must resolve against its folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.helpers import TODAY, Workspace

from tableship.cli.demo import create_demo_warehouse

# ---------------------------------------------------------------- warehouses


@pytest.fixture(scope="session")
def small_warehouse(tmp_path_factory) -> Path:
    """~30,000 rows over the 12 months before TODAY (~12,500 in the default window)."""
    path = tmp_path_factory.mktemp("small-warehouse") / "warehouse.duckdb"
    create_demo_warehouse(path, rows=30_000, today=TODAY, months=12)
    return path


@pytest.fixture(scope="session")
def big_warehouse(tmp_path_factory) -> Path:
    """~1.5M rows over the 5 months before TODAY (~1.3M in the default window): an export
    takes a few seconds, long enough to kill it or to hold its lock."""
    path = tmp_path_factory.mktemp("big-warehouse") / "warehouse.duckdb"
    create_demo_warehouse(path, rows=1_500_000, today=TODAY, months=5)
    return path


@pytest.fixture
def ws(tmp_path, small_warehouse) -> Workspace:
    w = Workspace(tmp_path / "ws", small_warehouse)
    w.write_config()
    return w


@pytest.fixture
def big_ws(tmp_path, big_warehouse) -> Workspace:
    w = Workspace(tmp_path / "big", big_warehouse)
    w.write_config()
    return w


@pytest.fixture
def cli(ws):
    return ws.cli
