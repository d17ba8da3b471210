"""Helpers for the source integration tests (test_hs2.py, test_postgres.py): a config
with one server source, a local destination and jobs, run through the CLI as a user
runs it (``python -m tableship`` in a subprocess)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.e2e.helpers import Result, assert_clean_error, decompress, parse_csv_nulls, to_toml  # noqa: F401
from tests.e2e.helpers import render as rendered  # noqa: F401  (driver values render like DuckDB's)


@dataclass
class Site:
    root: Path
    source: dict
    jobs: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "tableship.toml"

    @property
    def backup(self) -> Path:
        return self.root / "backup"

    def write(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        doc = {
            "settings": {"state_dir": "state"},
            "sources": {"src": self.source},
            "destinations": {"backup": {"type": "local", "path": "backup"}},
            "defaults": {
                "source": "src",
                "destination": "backup",
                "window": {"unit": "month", "count": 1},
                **self.defaults,
            },
            "jobs": self.jobs,
        }
        self.backup.mkdir(exist_ok=True)
        self.config.write_text(to_toml(doc), encoding="utf-8")
        return self.config

    def cli(self, *args: str, timeout: float = 600) -> Result:
        self.write()
        argv = [sys.executable, "-m", "tableship", "--config", str(self.config), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)

    def run(self, job: str, start: str, end: str, *extra: str, timeout: float = 600) -> Result:
        return self.cli("run", job, "--from", start, "--to", end, *extra, timeout=timeout)

    def archives(self) -> list[Path]:
        return sorted(
            p for p in self.backup.rglob("*") if p.is_file() and p.suffix in (".gz", ".zst", ".csv")
        )

    def manifest(self, archive: Path) -> dict:
        return json.loads(archive.with_name(archive.name + ".manifest.json").read_text())


def normalized(rows: list[list[str | None]], float_columns: set[int]) -> list[tuple]:
    """Rows comparable across renderings: float fields as floats (468 == 468.0), sorted."""
    out = []
    for row in rows:
        out.append(tuple(float(v) if i in float_columns and v is not None else v for i, v in enumerate(row)))
    return sorted(out, key=lambda r: tuple("" if v is None else str(v) for v in r))


def archive_rows(archive: Path) -> tuple[list[str], list[list[str | None]]]:
    text = decompress(archive).decode("utf-8")
    rows = parse_csv_nulls(text)
    return rows[0], rows[1:]


def parse_preset(archive: Path) -> list[list[str]]:
    text = decompress(archive).decode("utf-8")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";", lineterminator="\n"))


class DataCheckTests:
    """Data checks and a dropped table: the same through every server source.

    A test module subclasses this with ``columns`` (of ``itest.traffic``) and
    ``site(tmp_path, server)``; its ``server`` fixture must provide ``itest.traffic``
    (with a column ``note`` last but one) and an empty ``itest.empty_t``.
    """

    columns: list[str] = []

    def site(self, tmp_path, server) -> Site:
        raise NotImplementedError

    def test_unknown_table(self, tmp_path, server):
        site = self.site(tmp_path, server)
        site.jobs = {"gone": {"table": "itest.no_such_table"}}
        result = site.run("gone", "2024-01-01", "2024-01-31")
        line = assert_clean_error(result, 1, "no_such_table")
        assert "dropped upstream" in line
        assert "retrying" not in result.stderr  # terminal: not retried

    @pytest.mark.parametrize("on_empty, rc", [("fail", 1), ("warn", 0), ("ok", 0)])
    def test_on_empty(self, tmp_path, server, on_empty, rc):
        site = self.site(tmp_path, server)
        site.jobs = {"empty": {"table": "itest.empty_t", "on_empty": on_empty}}
        result = site.run("empty", "2024-01-01", "2024-01-31")
        if rc:
            assert_clean_error(result, 1, "no rows")
            assert site.archives() == []
        else:
            assert result.rc == 0, str(result)
            [archive] = site.archives()
            header, rows = archive_rows(archive)
            assert header == self.columns and rows == []
            assert ("no rows" in result.stderr) == (on_empty == "warn")

    def test_expect_columns_mismatch(self, tmp_path, server):
        site = self.site(tmp_path, server)
        cols = self.columns
        site.jobs = {
            "traffic": {"table": "itest.traffic", "expect_columns": [*cols[:-2], "partition_date", "imsi"]}
        }
        result = site.run("traffic", "2024-01-01", "2024-01-31")
        assert_clean_error(result, 1, "missing imsi", "unexpected note")
        assert site.archives() == []
        site.jobs["traffic"]["expect_columns"] = cols
        assert site.run("traffic", "2024-01-01", "2024-01-31").rc == 0
