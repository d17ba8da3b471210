"""The adaptive default through the CLI: no ``level`` set → ``level: "auto"`` in the
manifest, with ``block_bytes`` and ``levels_used`` that match the archive's bytes, and
the archive reads back with Python's gzip/zstandard, pyarrow and DuckDB (all readers,
on mixed-level files, in tests/integration/test_adaptive_readers.py)."""

from __future__ import annotations

import pytest
from tests.adaptive_check import check_record
from tests.e2e.helpers import RUN_DATE, TABLE, decompress


@pytest.mark.parametrize("codec,suffix", [("gzip", ".csv.gz"), ("zstd", ".csv.zst")])
def test_default_level_is_auto_and_recorded_honestly(ws, codec, suffix):
    import duckdb
    import pyarrow.csv as pacsv

    name = f"t{suffix}"
    ws.write_config(
        {"t": {"table": TABLE, "file_name": name}},
        defaults={"remote_dir": "{job}", "compression": {"codec": codec}},
    )  # no level anywhere
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    m = ws.manifest(name, "t")
    rec = m["compression"]
    assert rec["codec"] == codec and rec["level"] == "auto"
    archive = ws.archive(name, "t")
    csv = decompress(archive, codec)
    assert len(csv) == m["csv_bytes"]
    assert sum(rec["levels_used"].values()) == -(-len(csv) // rec["block_bytes"])
    assert check_record(archive.read_bytes(), csv, rec) == rec["levels_used"]
    t = pacsv.read_csv(archive, parse_options=pacsv.ParseOptions(delimiter=";"))
    assert t.num_rows == m["rows"]
    n = (
        duckdb.connect()
        .execute("SELECT count(*) FROM read_csv(?, delim=';', header=true)", [str(archive)])
        .fetchone()[0]
    )
    assert n == m["rows"]


def test_explicit_level_still_means_that_level(ws):
    ws.write_config(
        {"t": {"table": TABLE, "compression": {"codec": "gzip", "level": 4}, "file_name": "t.csv.gz"}},
        defaults={"remote_dir": "{job}"},
    )
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    assert ws.manifest("t.csv.gz", "t")["compression"] == {"codec": "gzip", "level": 4}
