"""Every archive a chunked job writes is read completely by the readers docs/format.md
names, with the options it gives: ``layout = "window"`` archives of many gzip members /
zstd frames (one per day chunk) and ``layout = "chunk"`` archives (one per month).

Written through the CLI from the demo warehouse, whose rows hold quoted delimiters,
quotes and newlines; read by ``gzip -dc``, ``zcat``, ``zstd -dc``, Python's ``gzip`` /
``zstandard``, ``pyarrow.csv.read_csv``, DuckDB's ``read_csv`` and Spark's CSV reader (the
HiveServer2 fixture's Spark, ``multiLine``)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from tests.e2e.helpers import RUN_DATE, TABLE, TODAY, Workspace, parse_csv_module

from tableship.cli.demo import create_demo_warehouse

START, END = "2026-06-01", "2026-10-31"


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("chunk-readers")
    warehouse = root / "warehouse.duckdb"
    create_demo_warehouse(warehouse, rows=20_000, today=TODAY, months=6)
    con = duckdb.connect(str(warehouse), read_only=True)
    rows, ids = con.execute(
        f"SELECT count(*), sum(cdr_id) FROM {TABLE} WHERE partition_date BETWEEN ? AND ?", [START, END]
    ).fetchone()
    con.close()
    out: dict = {"rows": rows, "ids": int(ids), "files": {}}
    cases = {
        "window-gzip": ({"chunk": "day", "compression": {"codec": "gzip"}}, "t.csv.gz"),
        "window-zstd": ({"chunk": "day", "compression": {"codec": "zstd"}, "parallel": 2}, "t.csv.zst"),
        "chunk-gzip": ({"chunk": "month", "layout": "chunk"}, "t_{chunk_start:%m%Y}.csv.gz"),
    }
    for case, (more, name) in cases.items():
        ws = Workspace(root / case, warehouse)
        ws.write_config(defaults={"file_name": name, "remote_dir": "out"} | more)
        r = ws.cli("run", "--date", RUN_DATE)
        assert r.rc == 0, str(r)
        files = sorted(p for p in (ws.dest / "out").iterdir() if p.name.endswith((".gz", ".zst")))
        assert files
        out["files"][case] = files
    assert len(out["files"]["chunk-gzip"]) == 5
    return out


CASES = ["window-gzip", "window-zstd", "chunk-gzip"]


def _codec(path: Path) -> str:
    return "zstd" if path.suffix == ".zst" else "gzip"


def _check_text(archives: dict, texts: list[bytes]) -> None:
    rows = ids = 0
    for text in texts:
        parsed = parse_csv_module(text.decode())
        assert parsed[0][0] == "cdr_id"
        rows += len(parsed) - 1
        ids += sum(int(r[0]) for r in parsed[1:])
    assert (rows, ids) == (archives["rows"], archives["ids"])


def test_many_members(archives):
    data = archives["files"]["window-gzip"][0].read_bytes()
    assert data.count(b"\x1f\x8b\x08\x00") > 100  # one member per day (at least)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("tool", ["gzip -dc", "zcat", "zstd -dc -q"])
def test_cli_tools(archives, case, tool):
    files = archives["files"][case]
    argv = tool.split()
    if (argv[0] == "zstd") != (_codec(files[0]) == "zstd"):
        return
    assert shutil.which(argv[0]), f"{argv[0]} is not installed"
    _check_text(
        archives, [subprocess.run([*argv, str(f)], capture_output=True, check=True).stdout for f in files]
    )


@pytest.mark.parametrize("case", CASES)
def test_python(archives, case):
    import zstandard

    texts = []
    for f in archives["files"][case]:
        opener = gzip.open if _codec(f) == "gzip" else zstandard.open
        with opener(f, "rb") as fh:
            texts.append(fh.read())
    _check_text(archives, texts)


@pytest.mark.parametrize("case", CASES)
def test_pyarrow(archives, case):
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    rows = ids = 0
    for f in archives["files"][case]:
        t = pacsv.read_csv(
            f,
            parse_options=pacsv.ParseOptions(delimiter=";", quote_char='"', newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=False),
        )
        rows += t.num_rows
        ids += pc.sum(t["cdr_id"]).as_py()
    assert (rows, ids) == (archives["rows"], archives["ids"])


@pytest.mark.parametrize("case", CASES)
def test_duckdb(archives, case):
    con = duckdb.connect()
    files = [str(f) for f in archives["files"][case]]
    n, s = con.execute(
        "SELECT count(*), sum(cdr_id) FROM read_csv(?, delim=';', header=true, quote='\"', escape='\"')",
        [files],
    ).fetchone()
    assert (n, int(s)) == (archives["rows"], archives["ids"])


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_spark(archives, case, hs2):
    files = archives["files"][case]
    path = str(files[0]) if len(files) == 1 else f"{files[0].parent}/*{files[0].suffix}"
    conn = hs2.connect()
    try:
        cur = conn.cursor()
        view = f"chunks_{case.replace('-', '_')}"
        cur.execute(
            f"CREATE OR REPLACE TEMPORARY VIEW {view} USING csv OPTIONS (path 'file://{path}', sep ';', "
            "header 'true', quote '\"', escape '\"', multiLine 'true')"
        )
        cur.execute(f"SELECT count(*), sum(CAST(cdr_id AS BIGINT)) FROM {view}")
        n, s = cur.fetchall()[0]
        cur.close()
    finally:
        conn.close()
    assert (n, s) == (archives["rows"], archives["ids"])
