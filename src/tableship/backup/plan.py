"""Plan: everything a run of one job will do, computed before anything is touched
(from the resolved job spec alone: no source, destination or ledger is read)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from tableship.archive.csvrender import CsvDialect
from tableship.config.models import JobConfig
from tableship.config.spec import JobSpec
from tableship.core.errors import ConfigError, UsageError
from tableship.core.names import render_relative
from tableship.core.window import Window, compute_window


@dataclass(frozen=True)
class Plan:
    job: JobSpec
    run_date: dt.date
    window: Window
    file_name: str
    remote_dir: str
    staged_path: Path

    @property
    def remote_path(self) -> str:
        return f"{self.remote_dir}/{self.file_name}" if self.remote_dir else self.file_name

    @property
    def dialect(self) -> CsvDialect:
        return self.job.dialect


def choose_window(
    job: JobSpec | JobConfig, run_date: dt.date, start: dt.date | None, end: dt.date | None
) -> Window:
    if (start is None) != (end is None):
        raise UsageError(
            "--from and --to must be given together", "pass both, e.g. --from 2026-01-01 --to 2026-01-31"
        )
    if start is not None and end is not None:
        if start > end:
            raise UsageError(
                f"--from {start} is after --to {end}", "swap them: the window is inclusive from..to"
            )
        return Window(start, end)
    w = job.window
    try:
        return compute_window(run_date, w.unit, w.count, w.lag)
    except ValueError as exc:  # only for run dates near the start of the supported range
        raise UsageError(f"--date {run_date}: {exc}", "pass a later --date, or --from/--to") from None


def make_plan(job: JobSpec, run_date: dt.date, window: Window) -> Plan:
    values = job.template_values(window.start, window.end, run_date)
    try:
        file_name = render_relative(job.file_name, values, "file_name")
        remote_dir = render_relative(job.remote_dir, values, "remote_dir")
    except ValueError as exc:
        raise ConfigError(f"jobs.{job.name}: {exc}", "fix the template in the config") from None
    if "/" in file_name or not file_name:
        raise ConfigError(f"jobs.{job.name}.file_name: rendered name {file_name!r} must be a plain file name")
    staged = job.staging_dir / file_name
    return Plan(job, run_date, window, file_name, remote_dir, staged)
