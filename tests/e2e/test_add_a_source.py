"""docs/architecture.md, "Adding a source or a destination", followed for a throwaway source.

The toy source lives in its own distribution outside tableship (a package plus its
``.dist-info`` with the entry point, on ``PYTHONPATH``), exactly as the doc says a new source
is added; nothing in src/ knows about it. A backup through the CLI then reads from it into a
local destination, and ``verify`` checks what landed.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import textwrap
from pathlib import Path

from tests.e2e.helpers import RUN_DATE, WINDOW

TOY_PACKAGE = '''
"""A throwaway tableship source: ``rows_per_day`` generated rows for every day of a window."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pyarrow as pa
from pydantic import Field

from tableship.config.models import Model, Retry
from tableship.core.errors import SourceError
from tableship.sources.base import Dialect, Query

SCHEMA = pa.schema([("id", pa.int64()), ("partition_date", pa.date32()), ("note", pa.string())])


class ToyConfig(Model):
    """``[sources.<name>]`` with ``type = "toy"``: step 2 of the doc (the config model)."""

    type: Literal["toy"]
    rows_per_day: int = Field(3, ge=1)

    @property
    def retry_policy(self) -> Retry:
        return Retry(attempts=1)  # generated rows: nothing transient to wait out

    @property
    def target(self) -> str:
        return f"toy:{self.rows_per_day}"


class ToySource:
    """Step 1 of the doc: the Source contract (sources/base.py)."""

    config_model = ToyConfig
    dialect = Dialect()

    def __init__(self, name: str, cfg: ToyConfig):
        self.name = name
        self.cfg = cfg

    def schema(self, table: str) -> pa.Schema:
        if table != "toy.events":
            raise SourceError(f"source {self.name!r}: no table {table!r}", "the toy has toy.events only")
        return SCHEMA

    def _rows(self, query: Query):
        low, high = query.values  # the window bounds, bound parameters of the window query
        day = low
        while day <= high:
            for i in range(self.cfg.rows_per_day):
                yield day.toordinal() * 100 + i, day, f"row {i} of {day.isoformat()}"
            day += dt.timedelta(days=1)

    def batches(self, query: Query, batch_rows: int = 100_000):
        rows = list(self._rows(query))
        for start in range(0, len(rows), batch_rows):
            chunk = rows[start : start + batch_rows]
            yield pa.RecordBatch.from_arrays(
                [pa.array([r[i] for r in chunk], SCHEMA.field(i).type) for i in range(3)], schema=SCHEMA
            )

    def count(self, query: Query) -> int:
        return sum(1 for _ in self._rows(query))

    def close(self) -> None:
        pass
'''

# step 3 of the doc: register the type under the entry point group tableship.sources
ENTRY_POINTS = """\
[tableship.sources]
toy = tableship_toy:ToySource
"""


def _install_toy(root: Path) -> Path:
    """The toy distribution as pip would lay it out: the package and its .dist-info."""
    site = root / "toy-site"
    (site / "tableship_toy").mkdir(parents=True)
    (site / "tableship_toy" / "__init__.py").write_text(TOY_PACKAGE.lstrip(), encoding="utf-8")
    info = site / "tableship_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tableship-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def test_a_toy_source_added_as_the_doc_says_backs_up_through_the_cli(ws):
    site = _install_toy(ws.root)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    ws.write_config(
        {"events": {"table": "toy.events"}},
        sources={"toy": {"type": "toy", "rows_per_day": 2}},
        defaults={"source": "toy"},
    )

    r = ws.cli("config", "validate", env=env)
    assert r.rc == 0, str(r)

    r = ws.cli("run", "--date", RUN_DATE, env=env)
    assert r.rc == 0, str(r)
    name = f"events_{WINDOW[0]:%Y%m%d}_{WINDOW[1]:%Y%m%d}.csv.gz"
    archive = ws.dest / "events" / name
    assert archive.is_file(), str(r)

    rows = list(csv.reader(io.StringIO(gzip.decompress(archive.read_bytes()).decode()), delimiter=";"))
    days = (WINDOW[1] - WINDOW[0]).days + 1
    assert rows[0] == ["id", "partition_date", "note"]
    assert len(rows) == 1 + 2 * days
    assert rows[1] == [str(WINDOW[0].toordinal() * 100), WINDOW[0].isoformat(), f"row 0 of {WINDOW[0]}"]
    assert rows[-1][1] == WINDOW[1].isoformat()

    r = ws.cli("verify", "events", env=env)
    assert r.rc == 0, str(r)
    assert "OK" in r.stdout, str(r)


def test_an_unknown_source_type_is_one_config_error(ws):
    ws.write_config(sources={"toy": {"type": "toy"}}, defaults={"source": "toy"})
    r = ws.cli("config", "validate")
    assert r.rc == 2, str(r)
    assert "sources.toy.type" in r.stdout + r.stderr, str(r)
    assert "Traceback" not in r.stdout + r.stderr, textwrap.shorten(str(r), 2000)
