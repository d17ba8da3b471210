"""Retention rules and prune over a synthetic set of 30 monthly archives on a local destination."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from tableship.catalog.history import db, last_status
from tableship.catalog.patterns import NamePattern
from tableship.catalog.records import Archive, Status
from tableship.catalog.retention import decide, prune_job, prune_jobs
from tableship.catalog.scan import archive_folders, list_archives, open_job_destination
from tableship.catalog.verify import is_verified
from tableship.config.loader import load_config
from tableship.config.models import RetentionSpec
from tableship.core.errors import LockedError
from tableship.core.window import Window, month_end
from tableship.ledger.lock import JobLock
from tableship.ledger.state import StateStore

TODAY = dt.date(2026, 11, 26)
FOLDER = "traffic"


def months(n: int, last: tuple[int, int] = (2026, 10)) -> list[Window]:
    """The ``n`` months ending with ``last``, oldest first."""
    y, m = last
    out = []
    for _ in range(n):
        out.append(Window(dt.date(y, m, 1), month_end(y, m)))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out[::-1]


def file_name(w: Window) -> str:
    return f"traffic_{w.start:%Y%m%d}_{w.end:%Y%m%d}.csv.gz"


def write_group(
    root: Path,
    w: Window,
    job: str = "traffic",
    *,
    archive=True,
    manifest=True,
    sidecar=True,
    verified=True,
    folder: str = FOLDER,
) -> str:
    name = file_name(w)
    d = root / folder
    d.mkdir(parents=True, exist_ok=True)
    data = f"archive {job} {w}\n".encode()
    sha = hashlib.sha256(data).hexdigest()
    if archive:
        (d / name).write_bytes(data)
    if sidecar:
        (d / f"{name}.sha256").write_text(f"{sha}  {name}\n")
    if manifest:
        m = {
            "job": job,
            "table": "mnaas.traffic",
            "window": {"start": w.start.isoformat(), "end": w.end.isoformat()},
            "rows": 10,
            "sha256": sha,
            "archive_bytes": len(data),
            "file_name": name,
            "created_at": f"{w.end + dt.timedelta(days=1)}T02:00:00+00:00",
            "columns": [{"name": "id", "type": "BIGINT"}],
            "compression": {"codec": "gzip", "level": 3},
        }
        if verified:
            m["verified_at"] = m["created_at"]
        (d / f"{name}.manifest.json").write_text(json.dumps(m))
    return f"{folder}/{name}"


@pytest.fixture
def site(tmp_path):
    """A config with job 'traffic' (and 'other' sharing its folder), 30 monthly archives,
    a foreign file, another job's archive and an upload without sidecars yet."""
    root = tmp_path / "backup"
    root.mkdir()
    (tmp_path / "wh.duckdb").touch()
    cfg = tmp_path / "tableship.toml"
    cfg.write_text(f"""
[settings]
state_dir = "state"
[sources.wh]
type = "duckdb"
path = "wh.duckdb"
[destinations.backup]
type = "local"
path = "{root}"
[jobs.traffic]
table = "mnaas.traffic"
retention = {{ keep_last = 12 }}
[jobs.other]
table = "other.stuff"
remote_dir = "traffic"
""")
    config = load_config(cfg)
    windows = months(30)
    for w in windows:
        write_group(root, w)
    (root / FOLDER / "README.txt").write_text("not an archive\n")
    (root / FOLDER / "traffic_notes.csv.gz").write_bytes(b"foreign, does not match the name template")
    # another job's archive in the same folder (its manifest names it)
    write_group(root, Window(dt.date(2020, 1, 1), dt.date(2020, 1, 31)), job="other")
    # an upload in progress: archive without sidecars (a window older than all the others)
    write_group(root, Window(dt.date(2021, 3, 1), dt.date(2021, 3, 31)), manifest=False, sidecar=False)
    return config, root, windows


def state(config) -> StateStore:
    return StateStore(config.settings.state_dir)


def remaining(root: Path) -> set[str]:
    return {p.name for p in (root / FOLDER).iterdir()}


def with_rules(config, **rules):
    return config.jobs["traffic"].model_copy(update={"retention": RetentionSpec(**rules) if rules else None})


UNTOUCHED = {
    "README.txt",
    "traffic_notes.csv.gz",
    "traffic_20200101_20200131.csv.gz",
    "traffic_20200101_20200131.csv.gz.sha256",
    "traffic_20200101_20200131.csv.gz.manifest.json",
    "traffic_20210301_20210331.csv.gz",
}


def group_names(w: Window) -> set[str]:
    n = file_name(w)
    return {n, n + ".sha256", n + ".manifest.json"}


def kept_windows(root: Path, windows: list[Window]) -> list[Window]:
    names = remaining(root)
    for w in windows:
        present = group_names(w) & names
        assert present in (set(), group_names(w)), f"{w}: partial group left {present}"
    return [w for w in windows if file_name(w) in names]


# ---------------------------------------------------------------- listing


def test_listing_reads_the_groups_of_the_job_only(site):
    config, root, windows = site
    store = state(config)
    dest = open_job_destination(config, config.jobs["traffic"])
    archives = list_archives(config, config.jobs["traffic"], dest, store, TODAY)
    names = [a.file_name for a in archives]
    assert "README.txt" not in names and "traffic_notes.csv.gz" not in names
    assert "traffic_20200101_20200131.csv.gz" not in names  # the other job's
    inprogress = [a for a in archives if a.file_name == "traffic_20210301_20210331.csv.gz"]
    assert len(inprogress) == 1 and inprogress[0].state == "incomplete" and inprogress[0].manifest is None
    assert inprogress[0].window == Window(dt.date(2021, 3, 1), dt.date(2021, 3, 31))  # read from the name
    complete = [a for a in archives if a.state == "complete"]
    assert [a.window for a in complete] == windows  # oldest first
    other = list_archives(config, config.jobs["other"], dest, store, TODAY)
    assert [a.file_name for a in other] == ["traffic_20200101_20200131.csv.gz"]


def test_name_pattern_reads_windows_back():
    from tableship.config.models import JobConfig

    job = JobConfig(
        name="j", source="s", destination="d", table="db.t", file_name="{job}-{start:%Y%m%d}-{end}.csv"
    )
    p = NamePattern(job)
    assert p.matches("j-20260101-2026-01-31.csv")
    assert not p.matches("k-20260101-2026-01-31.csv") and not p.matches("j-20260101-2026-01-31.csv.sha256")
    assert p.window("j-20260101-2026-01-31.csv") == Window(dt.date(2026, 1, 1), dt.date(2026, 1, 31))
    monthly = JobConfig(
        name="j", source="s", destination="d", table="db.t", file_name="{table}_{start:%Y%m}.csv.gz"
    )
    assert NamePattern(monthly).matches("t_202601.csv.gz")
    assert NamePattern(monthly).window("t_202601.csv.gz") is None  # not to the day: unknown


def test_folders_for_a_date_templated_remote_dir(tmp_path):
    from tableship.config.models import JobConfig

    plain = JobConfig(name="j", source="s", destination="d", table="db.t", remote_dir="{database}/{table}")
    assert archive_folders(plain, None, TODAY) == ["db/t"]
    dated = JobConfig(
        name="j",
        source="s",
        destination="d",
        table="db.t",
        remote_dir="{table}/{start:%Y}",
        window={"unit": "month", "count": 1},
    )
    folders = archive_folders(dated, None, TODAY)
    assert folders[0] == "t/2026" and "t/2024" in folders and "t/2023" in folders
    assert len(folders) == len(set(folders))


# ---------------------------------------------------------------- pure rules


def _archives(windows, verified=True):
    out = []
    for w in windows:
        a = Archive(
            "traffic",
            FOLDER,
            file_name(w),
            has_archive=True,
            has_manifest=True,
            has_sidecar=True,
            manifest={
                "job": "traffic",
                "sha256": "0" * 64,
                "verified_at": "x" if verified else None,
                "created_at": f"{w.end}T00:00:00+00:00",
            },
            window=w,
        )
        out.append(a)
    return out


@pytest.mark.parametrize(
    "rules, kept",
    [
        ({"keep_last": 12}, 12),
        ({"keep_days": 400}, 13),  # windows ending on or after 2025-10-22: 2025-10 .. 2026-10
        ({"keep_last": 3, "keep_days": 200}, 6),  # union: keep_days keeps 2026-05 .. 2026-10
        ({"keep_last": 20, "keep_days": 100}, 20),
        ({"keep_last": 40}, 30),
        ({}, 30),  # no rules: nothing pruned
    ],
)
def test_rule_combinations(rules, kept):
    windows = months(30)
    spec = RetentionSpec(**rules) if rules else None
    decisions = decide(_archives(windows), spec, TODAY, lambda a: True)
    keep = [d.archive.window for d in decisions if d.keep]
    assert len(keep) == kept
    assert keep == sorted(windows, reverse=True)[:kept]  # always the newest ones


def test_rules_that_would_delete_everything_keep_the_newest_verified():
    windows = months(30)
    archives = _archives(windows)
    d = decide(archives, RetentionSpec(keep_days=1), TODAY, lambda a: True)
    assert [x.archive.window for x in d if x.keep] == [windows[-1]]
    assert "newest verified" in d[0].reason
    # the newest two are not verified (say verify found them damaged): the third newest stays
    bad = {windows[-1], windows[-2]}
    d = decide(archives, RetentionSpec(keep_days=1), TODAY, lambda a: a.window not in bad)
    assert [x.archive.window for x in d if x.keep] == [windows[-3]]


def test_newest_by_window_not_by_creation():
    windows = months(5)
    archives = _archives(windows)
    archives[0].manifest["created_at"] = (
        "2099-01-01T00:00:00+00:00"  # a backfill of the oldest window, made later
    )
    d = decide(archives, RetentionSpec(keep_last=2), TODAY, lambda a: True)
    assert [x.archive.window for x in d if x.keep] == windows[-2:][::-1]


# ---------------------------------------------------------------- prune on a destination


def test_prune_keep_last_deletes_the_rest_with_their_sidecars(site):
    config, root, windows = site
    store = state(config)
    lines = []
    result = prune_job(config, with_rules(config, keep_last=12), store, today=TODAY, echo=lines.append)
    assert len(result.deleted) == 18 and len(lines) == 18
    assert all(line.startswith("traffic: deleted traffic/") for line in lines)
    assert kept_windows(root, windows) == windows[-12:]
    assert UNTOUCHED <= remaining(root)
    # the prune is recorded; a second prune finds nothing to do
    assert db(store).execute("SELECT count(*) FROM pruned").fetchone()[0] == 18
    again = prune_job(config, with_rules(config, keep_last=12), store, today=TODAY)
    assert again.deleted == []


@pytest.mark.parametrize(
    "rules, expected",
    [
        ({"keep_days": 400}, 13),
        ({"keep_last": 3, "keep_days": 200}, 6),
        ({"keep_last": 20, "keep_days": 100}, 20),
    ],
)
def test_prune_rule_combinations_on_disk(site, rules, expected):
    config, root, windows = site
    prune_job(config, with_rules(config, **rules), state(config), today=TODAY)
    assert kept_windows(root, windows) == windows[-expected:]
    assert UNTOUCHED <= remaining(root)


def test_prune_everything_keeps_newest_verified_and_foreign_files(site):
    config, root, windows = site
    store = state(config)
    # verify found the newest archive damaged last time: it no longer counts as verified
    newest = f"{FOLDER}/{file_name(windows[-1])}"
    sha = json.loads((root / (newest + ".manifest.json")).read_text())["sha256"]
    db(store).execute(
        "INSERT INTO verifications (batch, job, remote_path, status, sha256, verified_at) "
        "VALUES ('b', 'traffic', ?, ?, ?, '2026-11-20T00:00:00+00:00')",
        (newest, Status.MISMATCH.value, sha),
    )
    # and the second newest lost its sidecar (incomplete): not verified either
    (root / FOLDER / (file_name(windows[-2]) + ".sha256")).unlink()
    result = prune_job(config, with_rules(config, keep_days=1), store, today=TODAY)
    names = remaining(root)
    assert file_name(windows[-3]) in names and group_names(windows[-3]) <= names
    assert {file_name(w) for w in windows[:-3]} & names == set()
    assert len(result.deleted) == 29
    assert UNTOUCHED <= names  # foreign file, other job's archive, upload in progress


def test_dry_run_deletes_nothing(site):
    config, root, windows = site
    before = remaining(root)
    lines = []
    result = prune_job(
        config, with_rules(config, keep_last=12), state(config), dry_run=True, today=TODAY, echo=lines.append
    )
    assert remaining(root) == before
    assert len(lines) == 18 and all("would delete" in ln for ln in lines)
    assert "would delete 18" in result.summary()


def test_no_rules_prunes_nothing(site):
    config, root, windows = site
    before = remaining(root)
    result = prune_job(config, with_rules(config), state(config), today=TODAY)
    assert remaining(root) == before and result.deleted == []
    assert "no retention rules" in result.summary()


def test_manifest_without_archive_is_kept_unless_prune_left_it(site):
    config, root, windows = site
    store = state(config)
    lost, interrupted = windows[0], windows[1]
    (root / FOLDER / file_name(lost)).unlink()  # lost: verify must keep reporting it
    # an interrupted prune: recorded, archive and sidecar deleted, manifest left
    m = json.loads((root / FOLDER / (file_name(interrupted) + ".manifest.json")).read_text())
    db(store).execute(
        "INSERT INTO pruned (job, remote_path, sha256, pruned_at) VALUES ('traffic', ?, ?, 'x')",
        (f"{FOLDER}/{file_name(interrupted)}", m["sha256"]),
    )
    (root / FOLDER / file_name(interrupted)).unlink()
    (root / FOLDER / (file_name(interrupted) + ".sha256")).unlink()
    prune_job(config, with_rules(config, keep_last=40), store, today=TODAY)
    names = remaining(root)
    assert group_names(interrupted) & names == set()
    assert {file_name(lost) + ".manifest.json", file_name(lost) + ".sha256"} <= names


def test_is_verified_uses_the_last_verification_of_the_same_bytes(site):
    config, root, windows = site
    store = state(config)
    dest = open_job_destination(config, config.jobs["traffic"])
    a = [
        x
        for x in list_archives(config, config.jobs["traffic"], dest, store, TODAY)
        if x.window == windows[-1]
    ][0]
    assert is_verified(a, last_status(store, "traffic"))  # verified on upload
    db(store).execute(
        "INSERT INTO verifications (batch, job, remote_path, status, sha256, verified_at) "
        "VALUES ('b', 'traffic', ?, 'MISMATCH', ?, 'x')",
        (a.remote_path, a.sha256),
    )
    assert not is_verified(a, last_status(store, "traffic"))
    db(store).execute(
        "INSERT INTO verifications (batch, job, remote_path, status, sha256, verified_at) "
        "VALUES ('c', 'traffic', ?, 'MISMATCH', ?, 'x')",
        (a.remote_path, "f" * 64),
    )
    assert is_verified(a, last_status(store, "traffic"))  # that result was about other bytes


def test_prune_jobs_takes_the_job_lock(site):
    config, root, windows = site
    with JobLock(config.settings.state_dir, "traffic").acquire(0):
        with pytest.raises(LockedError):
            prune_jobs(config, ["traffic"], today=TODAY)
    results = prune_jobs(config, ["traffic"], today=TODAY, echo=lambda s: None)
    assert len(results[0].deleted) == 18
