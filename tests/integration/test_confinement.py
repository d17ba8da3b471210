"""Symlinks under a destination root never lead tableship out of it — local and SFTP
(the test sshd runs on this machine, so the tests plant the symlinks on disk):

- a symlinked ``<root>/<table>`` folder pointing outside → one clear ``Error:`` (exit 1),
  nothing written outside;
- a final name that is a symlink to an outside file with the same bytes is not trusted
  as "already on the destination": it is replaced by the real archive, the outside file
  is left alone, ``verify`` is OK;
- ``ls``, ``verify`` and ``prune`` do not follow symlinks out of the root: outside files
  are neither listed, hashed nor deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from tests.e2e.test_archives import build_warehouse, one_error_line, tableship, write_config
from tests.integration.test_archives_sftp import sftp_destination

ARCHIVE = "events/events_20260101_20260131.csv.gz"
OLD = "events/events_20251201_20251231.csv.gz"
SIDECARS = ("", ".sha256", ".manifest.json")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    build_warehouse(path)
    return path


@pytest.fixture(params=["local", "sftp"])
def site(request, tmp_path, warehouse):
    """(config, root folder on disk, an outside folder next to it) for each destination."""
    os.symlink(warehouse, tmp_path / "warehouse.duckdb")
    extra = "retention = { keep_last = 1 }"
    if request.param == "local":
        root = tmp_path / "backup"
        root.mkdir()
        outside = tmp_path / "outside"
        dest = '[destinations.backup]\ntype = "local"\npath = "backup"'
    else:
        sshd = request.getfixturevalue("sshd")
        tag = uuid.uuid4().hex[:8]
        root = sshd.root_dir / f"backup-{tag}"
        root.mkdir()
        outside = sshd.root_dir / f"outside-{tag}"
        dest = sftp_destination(sshd, root)
    outside.mkdir()
    yield write_config(tmp_path, dest, extra), root, outside
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(outside, ignore_errors=True)


def run(cfg: Path, start: str = "2026-01-01", end: str = "2026-01-31"):
    return tableship(cfg, "run", "events", "--from", start, "--to", end)


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_symlinked_table_folder_out_of_the_root_is_an_error(site):
    cfg, root, outside = site
    (root / "events").symlink_to(outside, target_is_directory=True)
    proc = run(cfg)
    line = one_error_line(proc, 1, "symlink", "out of the destination root")
    assert str(outside) in line or "outside" in line
    assert list(outside.iterdir()) == []  # nothing written outside, not even a temporary
    for cmd in (["ls", "events"], ["verify", "events"], ["prune", "events"]):
        proc = tableship(cfg, *cmd)
        assert proc.returncode == 1, (cmd, proc.stdout, proc.stderr)
        assert "symlink" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert list(outside.iterdir()) == []


def test_final_name_symlink_with_the_same_bytes_is_replaced_not_trusted(site):
    cfg, root, outside = site
    assert run(cfg).returncode == 0
    good = tree(root)
    # the same archive, moved outside; the final name becomes a link to it; start over
    shutil.move(root / ARCHIVE, outside / "copy.csv.gz")
    (root / ARCHIVE).symlink_to(outside / "copy.csv.gz")
    shutil.rmtree(cfg.parent / "state")
    before = os.stat(outside / "copy.csv.gz")
    proc = run(cfg)
    assert proc.returncode == 0, proc.stderr
    assert "already on the destination" not in proc.stderr
    assert not (root / ARCHIVE).is_symlink() and (root / ARCHIVE).read_bytes() == good[ARCHIVE]
    after = os.stat(outside / "copy.csv.gz")
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert sorted(p.name for p in outside.iterdir()) == ["copy.csv.gz"]
    ver = tableship(cfg, "verify", "events")
    assert ver.returncode == 0 and ver.stdout.startswith("OK"), ver.stdout + ver.stderr


def test_ls_verify_prune_do_not_follow_symlinks_out_of_the_root(site):
    cfg, root, outside = site
    assert run(cfg, "2025-12-01", "2025-12-31").returncode == 0
    # the December archive set is moved outside and linked back in under its names
    for s in SIDECARS:
        shutil.move(root / (OLD + s), outside / Path(OLD + s).name)
        (root / (OLD + s)).symlink_to(outside / Path(OLD + s).name)
    outside_before = tree(outside)
    assert run(cfg).returncode == 0  # January: a real archive set beside the links

    ls = tableship(cfg, "ls", "events", "--json")
    assert ls.returncode == 0, ls.stderr
    assert [r["remote_path"] for r in json.loads(ls.stdout)] == [ARCHIVE]  # links are not listed
    ver = tableship(cfg, "verify", "events")
    assert ver.returncode == 0, ver.stdout + ver.stderr
    assert OLD not in ver.stdout  # the outside files were not hashed as archives
    dry = tableship(cfg, "prune", "events")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert tree(outside) == outside_before  # nothing outside deleted or changed
    assert all((root / (OLD + s)).is_symlink() for s in SIDECARS)
    assert all((root / (ARCHIVE + s)).is_file() for s in SIDECARS)
