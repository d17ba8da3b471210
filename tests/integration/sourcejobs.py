"""Helpers for the source integration tests (test_hs2.py, test_postgres.py): a config
with one server source, a local destination and jobs, run through the CLI as a user
runs it (``python -m tableship`` in a subprocess)."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.helpers import Result, assert_clean_error, decompress, parse_csv_nulls, to_toml  # noqa: F401


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
            "defaults": {"source": "src", "destination": "backup", "window": {"unit": "month", "count": 1},
                         **self.defaults},
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
        return sorted(p for p in self.backup.rglob("*") if p.is_file() and p.suffix in (".gz", ".zst", ".csv"))

    def manifest(self, archive: Path) -> dict:
        return json.loads(archive.with_name(archive.name + ".manifest.json").read_text())


def rendered(value) -> str | None:
    """A driver value (Decimal, datetime, date, bool, int, str) as the CSV contract writes it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


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
