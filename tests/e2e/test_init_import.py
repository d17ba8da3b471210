"""``tableship init`` and ``tableship import-legacy`` through the CLI (issue 12 point 4):
the written configs are commented TOML whose placeholders ``config validate`` refuses and
that validate once filled in; the legacy import reproduces the Bash job's settings from a
properties file in every shell syntax form, with one or two backup servers, and marks each
value it could not infer with a TODO. (Running an imported config against a real
HiveServer2 and sshd: tests/integration/test_import_legacy_run.py.)"""

from __future__ import annotations

import re

import pytest
import tomlkit
from tests.e2e.helpers import assert_clean_error

PLACEHOLDER = re.compile(r"^<[^<>]*>$")


def placeholders(doc, path=""):
    """(key path, value) of every placeholder in a tomlkit document."""
    out = []
    items = doc.items() if hasattr(doc, "items") else enumerate(doc)
    for k, v in items:
        p = f"{path}.{k}" if path else str(k)
        if isinstance(v, (dict, list)):
            out += placeholders(v, p)
        elif isinstance(v, str) and PLACEHOLDER.match(v):
            out.append((p, v))
    return out


def set_path(doc, path: str, value):
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


# ---------------------------------------------------------------- init


@pytest.mark.parametrize("source", ["duckdb", "hive", "impala", "sqlalchemy"])
@pytest.mark.parametrize("destination", ["local", "sftp"])
def test_init_writes_a_config_that_validates_once_filled(ws, source, destination):
    out = ws.root / "new.toml"
    r = ws.cli("init", "--source", source, "--destination", destination, "--out", out, config=False)
    assert r.rc == 0, str(r)
    text = out.read_text()
    assert text.startswith("# tableship config") and text.count("\n#") >= 5  # commented
    r = ws.cli("config", "validate", config=out)
    assert r.rc == 2 and all(
        "placeholder" in x or "must be absolute" in x or "plain identifier" in x for x in r.error_lines
    ), str(r)
    doc = tomlkit.parse(text)
    fill = {
        "sources.warehouse.path": str(ws.warehouse),
        "sources.warehouse.host": "hs2.example.net",
        "sources.warehouse.url": "postgresql+psycopg://backup@db.example.net/dwh",
        "destinations.backup.path": str(ws.dest) if destination == "local" else "/srv/backups",
        "destinations.backup.host": "backup.example.net",
        "destinations.backup.user": "backup",
        "jobs.example.table": "mnaas.customer_traffic",
    }
    found = placeholders(doc)
    assert found and {p for p, _ in found} <= set(fill), found
    for p, _ in found:
        set_path(doc, p, fill[p])
    out.write_text(tomlkit.dumps(doc))
    r = ws.cli("config", "validate", config=out)
    assert r.rc == 0, str(r)
    assert "example: mnaas.customer_traffic from warehouse to backup" in r.stdout


def test_init_refuses_to_overwrite_without_force(ws):
    out = ws.root / "new.toml"
    out.write_text("# mine\n")
    r = ws.cli("init", "--source", "duckdb", "--destination", "local", "--out", out, config=False)
    assert_clean_error(r, 2, "already exists", "--force")
    assert out.read_text() == "# mine\n"
    r = ws.cli("init", "--source", "duckdb", "--destination", "local", "--out", out, "--force", config=False)
    assert r.rc == 0 and out.read_text().startswith("# tableship config"), str(r)


# ---------------------------------------------------------------- import-legacy

COMMON = """\
# sourced first by the job's properties
export IMPALAD_HOST="impala01.example.net:21000"
ENV_MODE='PROD'
"""

PROPERTIES = """\
. ./common.properties
setparameter='set -x'
MNAAS_files_backup_ProcessStatusFile=/app/MNAAS/status/MNAAS_files_backup_ProcessStatusFile
MNAAS_backup_files_logpath=/app/MNAAS/logs/MNAAS_backup_files$(date +_%F)
MNAAS_backup_files_logpath_common=${MNAAS_backup_files_logpath}_common
base=/backup1
export MNAAS_File_processed_location_ZIP="${base}/MNAAS/Files_backup"   # archives
backup_server=hadoop@10.10.1.22
MNAAS_backup_enode2_files_Scriptname=MNAAS_edgenode2_backup_files_process.sh
SDP_ticket_cc_email="ops@example.net, dba@example.net"
MNAAS_Table_List=$base/table_name.txt
"""

TABLES = "# tables to back up\nmnaas_customer_traffic\n\nmnaas_sms_traffic   # SMS\nother_db.usage\n"


def legacy(ws, properties: str = PROPERTIES, common: str | None = COMMON, tables: str = TABLES):
    folder = ws.root / "legacy"
    folder.mkdir(exist_ok=True)
    if common is not None:
        (folder / "common.properties").write_text(common)
    (folder / "MNAAS_bkp_files_process.properties").write_text(properties)
    (folder / "table_name.txt").write_text(tables)
    return folder


def run_import(ws, folder, *extra):
    out = ws.root / "imported.toml"
    r = ws.cli(
        "import-legacy",
        "--properties", folder / "MNAAS_bkp_files_process.properties",
        "--tables", folder / "table_name.txt",
        "--out", out,
        *extra,
        config=False,
    )  # fmt: skip
    return r, out


def test_import_one_backup_server(ws):
    r, out = run_import(ws, legacy(ws))
    assert r.rc == 0, str(r)
    assert "3 job(s), 0 placeholder(s)" in r.stdout, str(r)
    text = out.read_text()
    cfg = tomlkit.parse(text).unwrap()
    assert cfg["sources"]["impala"] == {
        "type": "impala",
        "host": "impala01.example.net",
        "database": "mnaas",
        "auth": "nosasl",
    }
    assert "Beeswax (port 21000)" in text  # the port was impala-shell's, not HiveServer2's
    assert cfg["destinations"] == {
        "edgenode2": {
            "type": "sftp",
            "host": "10.10.1.22",
            "user": "hadoop",
            "path": "/backup1/MNAAS/Files_backup",
        }
    }
    assert cfg["settings"]["environment"] == "prod"
    assert cfg["settings"]["log_file"] == "/app/MNAAS/logs/tableship.log"
    d = cfg["defaults"]
    assert d["destination"] == "edgenode2" and d["format"] == {"preset": "impala-shell"}
    assert d["window"] == {"unit": "month", "count": 5} and d["partition_column"] == "partition_date"
    assert cfg["jobs"] == {"mnaas": {"tables_file": "legacy/table_name.txt"}}  # relative to the config
    mail = cfg["alerts"]["email"]
    assert mail["to"] == ["ops@example.net", "dba@example.net"] and cfg["alerts"]["channels"] == ["email"]
    # every inferred value worth a look says so; the legacy-only variables are explained
    assert text.count("# TODO: check:") >= 4
    assert "MNAAS_files_backup_ProcessStatusFile: the ledger" in text
    assert "not read (never run)" not in text
    # and the config validates, listing one job per table
    r = ws.cli("config", "validate", config=out)
    assert r.rc == 0, str(r)
    for job in ("mnaas.mnaas_customer_traffic", "mnaas.mnaas_sms_traffic", "mnaas.other_db.usage"):
        assert f"  {job}: " in r.stdout, str(r)


def test_import_two_backup_servers(ws):
    props = (
        PROPERTIES
        + "backup_server_enode1='10.10.1.21'\nMNAAS_File_processed_location_enode1=/backup2/enode1\n"
    )
    r, out = run_import(ws, legacy(ws, props))
    assert r.rc == 0, str(r)
    cfg = tomlkit.parse(out.read_text()).unwrap()
    assert cfg["defaults"]["destinations"] == ["edgenode1", "edgenode2"]
    assert cfg["destinations"]["edgenode1"]["host"] == "10.10.1.21"
    assert cfg["destinations"]["edgenode1"]["path"] == "/backup2/enode1"
    assert cfg["destinations"]["edgenode2"]["path"] == "/backup1/MNAAS/Files_backup"
    r = ws.cli("config", "validate", config=out)
    assert r.rc == 0 and "to edgenode1, edgenode2" in r.stdout, str(r)


def test_missing_variables_become_todos_the_validation_refuses(ws):
    props = "MNAAS_File_processed_location_ZIP=$NOT_SET/zip\nMNAAS_Table_List=table_name.txt\n"
    r, out = run_import(ws, legacy(ws, props, common=None))
    assert r.rc == 0, str(r)
    text = out.read_text()
    for what in (
        "IMPALAD_HOST is not set",
        "ENV_MODE is not set",
        "backup_server is not set",
        "$NOT_SET is not set",
        "SDP_ticket_cc_email is not set",
    ):
        assert "# TODO: " in text and what in text, (what, text)
    cfg = tomlkit.parse(text).unwrap()
    assert cfg["sources"]["impala"]["host"].startswith("<TODO: ")
    assert cfg["alerts"]["email"]["to"][0].startswith("<TODO: ")
    r = ws.cli("config", "validate", config=out)
    assert r.rc == 2, str(r)
    refused = {line.split(": ")[2] for line in r.error_lines if "is a placeholder" in line}
    assert {
        "settings.environment",
        "sources.impala.host",
        "destinations.edgenode2.host",
        "destinations.edgenode2.path",
        "alerts.email.to[0]",
    } <= refused, str(r)


def test_import_refuses_to_overwrite_and_names_bad_lines(ws):
    folder = legacy(ws)
    out = ws.root / "imported.toml"
    out.write_text("# hand-made\n")
    r, _ = run_import(ws, folder)
    assert_clean_error(r, 2, "already exists", "--force")
    assert out.read_text() == "# hand-made\n"
    assert run_import(ws, folder, "--force")[0].rc == 0

    (folder / "table_name.txt").write_text("mnaas_ok\nnot valid\n")
    r, _ = run_import(ws, folder, "--force")
    assert_clean_error(r, 2, "table_name.txt line 2")
    (folder / "MNAAS_bkp_files_process.properties").write_text("A=1\nB='open\n")
    (folder / "table_name.txt").write_text("mnaas_ok\n")
    r, _ = run_import(ws, folder, "--force")
    assert_clean_error(r, 2, "MNAAS_bkp_files_process.properties line 2", "unterminated")
    r = ws.cli(
        "import-legacy",
        "--properties",
        folder / "nope",
        "--tables",
        folder / "table_name.txt",
        "--out",
        out,
        "--force",
        config=False,
    )
    assert_clean_error(r, 2, "cannot read the properties file")
