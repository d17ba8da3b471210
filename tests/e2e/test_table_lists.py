"""Table lists (issue 12 point 2): one job block with ``tables`` or ``tables_file`` stands
for one job per table, named ``<block>.<table>``; adding or removing a line adds or
removes that job only; a bad line is one error naming the file and the line."""

from __future__ import annotations

import duckdb
import pytest
from tests.e2e.helpers import RUN_DATE, assert_clean_error

TABLES = ["mnaas.t_alpha", "mnaas.t_beta", "mnaas.t_gamma"]


@pytest.fixture
def lists_ws(ws):
    """The workspace over a warehouse with three small tables copied from the demo one."""
    path = ws.root / "lists.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"ATTACH '{ws.warehouse}' AS demo (READ_ONLY)")
    con.execute("CREATE SCHEMA mnaas")
    for i, t in enumerate(TABLES):
        con.execute(f"CREATE TABLE {t} AS SELECT * FROM demo.mnaas.customer_traffic WHERE cdr_id % 3 = {i}")
    con.close()
    ws.sources = {"warehouse": {"type": "duckdb", "path": str(path)}}
    return ws


def write(ws, block: dict, **kw):
    ws.write_config({"mnaas": block}, sources=ws.sources, **kw)


def job_names(result) -> list[str]:
    return [line.split(":")[0].strip() for line in result.stdout.splitlines()[1:]]


def test_tables_file_expands_into_one_job_per_line_and_lines_come_and_go_alone(lists_ws):
    ws = lists_ws
    listing = ws.root / "table_name.txt"
    listing.write_text(f"# the legacy list\n{TABLES[0]}\n\n   {TABLES[1]}   # trailing comment\n")
    write(ws, {"tables_file": "table_name.txt", "compression": {"codec": "gzip", "level": 1}})
    r = ws.cli("config", "validate")
    assert r.rc == 0, str(r)
    assert job_names(r) == ["mnaas.mnaas.t_alpha", "mnaas.mnaas.t_beta"], str(r)
    assert "mnaas.mnaas.t_alpha: mnaas.t_alpha from warehouse to backup" in r.stdout

    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    first = {(x["job"], x["id"], x["sha256"]) for x in ws.runs()}
    assert {j for j, _, _ in first} == {"mnaas.mnaas.t_alpha", "mnaas.mnaas.t_beta"}
    archives = set(ws.files(ws.dest))
    assert "t_alpha/t_alpha_20260601_20261031.csv.gz" in archives
    assert "t_beta/t_beta_20260601_20261031.csv.gz" in archives

    # a line added: only that job is new; the others are already done for this window
    listing.write_text(listing.read_text() + f"{TABLES[2]}\n")
    r = ws.cli("run", "--date", RUN_DATE)
    assert r.rc == 0, str(r)
    runs = ws.runs()
    assert {(x["job"], x["id"], x["sha256"]) for x in runs if x["job"] != "mnaas.mnaas.t_gamma"} >= first
    assert [x["job"] for x in runs].count("mnaas.mnaas.t_gamma") >= 1
    # a line removed: its job is gone from the config, its archive and ledger rows stay
    listing.write_text(f"{TABLES[1]}\n{TABLES[2]}\n")
    r = ws.cli("config", "validate")
    assert job_names(r) == ["mnaas.mnaas.t_beta", "mnaas.mnaas.t_gamma"], str(r)
    assert "t_alpha/t_alpha_20260601_20261031.csv.gz" in ws.files(ws.dest)
    assert "mnaas.mnaas.t_alpha" in {x["job"] for x in ws.runs()}
    r = ws.cli("history", "mnaas.mnaas.t_beta")
    assert r.rc == 0, str(r)


def test_tables_inline_list_takes_every_key_of_the_block(lists_ws):
    ws = lists_ws
    write(
        ws,
        {"tables": TABLES[:2], "format": {"preset": "impala-shell"}, "window": {"unit": "month", "count": 1}},
    )
    r = ws.cli("config", "validate")
    assert r.rc == 0, str(r)
    assert job_names(r) == ["mnaas.mnaas.t_alpha", "mnaas.mnaas.t_beta"]
    assert "window today" in r.stdout
    r = ws.cli("run", "--date", RUN_DATE, "mnaas.mnaas.t_beta")
    assert r.rc == 0, str(r)
    assert ws.files(ws.dest) == sorted(
        f"t_beta/t_beta_20261001_20261031.csv.gz{s}" for s in ("", ".manifest.json", ".sha256")
    )
    assert ws.manifest("t_beta_20261001_20261031.csv.gz", "t_beta")["format"]["preset"] == "impala-shell"


@pytest.mark.parametrize(
    "content, line, needle",
    [
        ("mnaas.t_alpha\nmnaas.bad table\n", 2, "not a plain identifier"),
        ("# x\n\nmnaas.t_alpha\na.b.c\n", 4, "must be 'table' or 'database.table'"),
        ("mnaas.t_alpha\nmnaas.t_alpha\n", 2, "listed twice"),
        ("mnaas.t_alpha\n" + "x" * 120 + "\n", 2, "job name"),
    ],
    ids=["space", "three-parts", "twice", "too-long"],
)
def test_a_bad_line_names_the_file_and_the_line(lists_ws, content, line, needle):
    ws = lists_ws
    (ws.root / "table_name.txt").write_text(content)
    write(ws, {"tables_file": "table_name.txt"})
    r = ws.cli("config", "validate")
    assert r.rc == 2, str(r)
    assert len(r.error_lines) == 1, str(r)
    assert f"table_name.txt line {line}:" in r.error_lines[0] and needle in r.error_lines[0], str(r)
    assert_clean_error(ws.cli("run", "--date", RUN_DATE), 2, f"table_name.txt line {line}")
    assert ws.runs() == []


@pytest.mark.parametrize(
    "block, needle",
    [
        ({"tables": ["mnaas.t_alpha"], "table": "mnaas.t_beta"}, "use exactly one of"),
        ({"tables_file": "nowhere.txt"}, "not found"),
        ({"tables": []}, "the list has no table"),
        ({"tables": "mnaas.t_alpha"}, "must be a list"),
    ],
    ids=["table-and-tables", "missing-file", "empty", "not-a-list"],
)
def test_list_mistakes_are_refused(lists_ws, block, needle):
    ws = lists_ws
    write(ws, block)
    r = ws.cli("config", "validate")
    assert r.rc == 2, str(r)
    assert any(needle in line for line in r.error_lines), str(r)


def test_templates_without_table_collide_and_are_refused(lists_ws):
    ws = lists_ws
    write(ws, {"tables": TABLES[:2], "remote_dir": "all", "file_name": "backup_{start:%Y%m%d}.csv.gz"})
    r = ws.cli("config", "validate")
    assert r.rc == 2, str(r)
    assert any("can write the same destination file" in line for line in r.error_lines), str(r)


def test_an_expanded_name_clashing_with_a_block_is_refused(lists_ws):
    ws = lists_ws
    ws.write_config(
        {"mnaas": {"tables": [TABLES[0]]}, "mnaas.mnaas.t_alpha": {"table": TABLES[1]}}, sources=ws.sources
    )
    r = ws.cli("config", "validate")
    assert r.rc == 2, str(r)
    assert any("is used twice" in line for line in r.error_lines), str(r)
