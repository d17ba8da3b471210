"""An ``import-legacy`` config runs (issue 12 acceptance): a legacy properties file whose
IMPALAD_HOST is the real HiveServer2 fixture (Spark Thrift) and whose backup_server is the
real sshd; the imported config — only the test sshd's port and keys filled in, as a user
fills the TODOs — backs up the listed table in the impala-shell format, verified on the
backup server."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import subprocess
import sys
import uuid

import pytest
import tomlkit

pytestmark = pytest.mark.slow


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tableship", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "TABLESHIP_CONFIG"},
    )


def show(p) -> str:
    return f"rc={p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"


def test_imported_config_backs_up_from_hiveserver2_to_sshd(tmp_path, hs2, sshd):
    hs2.execute_many(
        "CREATE DATABASE IF NOT EXISTS mnaas",
        "DROP TABLE IF EXISTS mnaas.legacy_traffic",
        "CREATE TABLE mnaas.legacy_traffic (id BIGINT, note STRING, partition_date STRING) USING parquet "
        "PARTITIONED BY (partition_date)",
        "INSERT INTO mnaas.legacy_traffic SELECT id, "
        "CASE WHEN id % 4 = 0 THEN NULL ELSE CONCAT('n;', id) END, "
        "CAST(DATE_ADD(DATE'2025-12-01', CAST(id % 200 AS INT)) AS STRING) FROM range(600)",
    )
    remote = sshd.root_dir / f"legacy-{uuid.uuid4().hex[:8]}"
    remote.mkdir()
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "MNAAS_bkp_files_process.properties").write_text(
        f"export IMPALAD_HOST={hs2.host}:{hs2.port}\n"
        "ENV_MODE=DEV\n"
        f"backup_server={sshd.user}@{sshd.host}\n"
        f'MNAAS_File_processed_location_ZIP="{remote}"\n'
        "SDP_ticket_cc_email=ops@example.net\n"
    )
    (legacy / "table_name.txt").write_text("# the one table\nlegacy_traffic\n")
    out = tmp_path / "tableship.toml"
    r = cli(
        "import-legacy",
        "--properties", legacy / "MNAAS_bkp_files_process.properties",
        "--tables", legacy / "table_name.txt",
        "--source-type", "hive",
        "--out", out,
    )  # fmt: skip
    assert r.returncode == 0 and "1 job(s), 0 placeholder(s)" in r.stdout, show(r)

    doc = tomlkit.parse(out.read_text())
    edge = doc["destinations"]["edgenode2"]
    edge["port"] = sshd.port
    edge["key_file"] = str(sshd.client_key)
    edge["known_hosts"] = str(sshd.known_hosts)
    out.write_text(tomlkit.dumps(doc))
    r = cli("--config", out, "config", "validate")
    assert r.returncode == 0 and "mnaas.legacy_traffic: legacy_traffic from hive to edgenode2" in r.stdout, (
        show(r)
    )

    r = cli("--config", out, "run", "--date", "2026-06-15")
    assert r.returncode == 0, show(r)
    archive = remote / "legacy_traffic" / "legacy_traffic_20260101_20260531.csv.gz"
    assert sorted(p.name for p in archive.parent.iterdir()) == sorted(
        [archive.name, f"{archive.name}.sha256", f"{archive.name}.manifest.json"]
    )
    lines = gzip.decompress(archive.read_bytes()).decode().splitlines()
    days = [dt.date(2025, 12, 1) + dt.timedelta(days=i % 200) for i in range(600)]
    expected = [d for d in days if dt.date(2026, 1, 1) <= d <= dt.date(2026, 5, 31)]
    assert len(lines) == len(expected)  # impala-shell preset: no header
    assert any(re.fullmatch(r"\d+;NULL;\d{4}-\d\d-\d\d", line) for line in lines), lines[:5]  # NULL as NULL
    assert any(re.fullmatch(r'\d+;"n;\d+";\d{4}-\d\d-\d\d', line) for line in lines), lines[:5]
