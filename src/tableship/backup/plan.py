"""Plan: everything a run of one job will do, computed before anything is touched."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from tableship.archive.csvrender import CsvDialect
from tableship.config.models import Config, JobConfig
from tableship.core.errors import ConfigError, SourceError, UsageError
from tableship.core.names import render_relative
from tableship.core.window import Window, compute_window, partition_value
from tableship.sources.base import Query, Source, arrow_partition_type, detected_partition_type, window_query


@dataclass(frozen=True)
class Plan:
    job: JobConfig
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
        f = self.job.format
        return CsvDialect(
            delimiter=f.delimiter, header=f.header, null=f.null, quoting=f.quoting, preset=f.preset
        )


def choose_window(job: JobConfig, run_date: dt.date, start: dt.date | None, end: dt.date | None) -> Window:
    if (start is None) != (end is None):
        raise UsageError(
            "--from and --to must be given together", "pass both, e.g. --from 2026-01-01 --to 2026-01-31"
        )
    if start is not None:
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


def make_plan(config: Config, job: JobConfig, run_date: dt.date, window: Window) -> Plan:
    values = job.template_values(window.start, window.end, run_date)
    try:
        file_name = render_relative(job.file_name, values, "file_name")
        remote_dir = render_relative(job.remote_dir, values, "remote_dir")
    except ValueError as exc:
        raise ConfigError(f"jobs.{job.name}: {exc}", "fix the template in the config") from None
    if "/" in file_name or not file_name:
        raise ConfigError(f"jobs.{job.name}.file_name: rendered name {file_name!r} must be a plain file name")
    staged = config.staging_dir / job.name / file_name
    return Plan(job, run_date, window, file_name, remote_dir, staged)


def build_query(source: Source, plan: Plan, schema: pa.Schema | None = None) -> Query:
    """The window query. The partition column's type is read from ``schema`` (from the
    source when not given): detected when ``partition_type = "auto"``, else checked
    against the declared one, so a mismatch is one error naming both, not a raw engine
    error (``Binder Error``...) or a silently wrong comparison."""
    return range_query(source, plan.job, schema, plan.window.start, plan.window.end)


def range_query(
    source: Source, job: JobConfig, schema: pa.Schema | None, start: dt.date, end: dt.date
) -> Query:
    """The query of the rows whose partition lies in ``start..end`` (a window or a chunk)."""
    low, high = partition_bounds(source, job, schema, start, end)
    try:
        return window_query(source.dialect, job.table, job.partition_column, low, high)
    except ValueError as exc:
        raise ConfigError(
            f"jobs.{job.name}: {exc}", "fix the job's table, partition_column or partition_format"
        ) from None


def partition_bounds(
    source: Source, job: JobConfig, schema: pa.Schema | None, start: dt.date, end: dt.date
) -> tuple:
    """The bound values comparing the partition column with the days ``start..end``."""
    schema = schema if schema is not None else source.schema(job.table)
    field = schema.field(job.partition_column) if job.partition_column in schema.names else None
    if field is None:
        raise SourceError(
            f"column {job.partition_column!r} not found in table {job.table} "
            f"(columns: {', '.join(schema.names)})",
            f"fix jobs.{job.name}.partition_column",
        )
    ptype: str = job.partition_type
    if ptype == "auto":
        try:
            ptype = arrow_partition_type(field.type)
        except ValueError as exc:
            raise ConfigError(
                f"jobs.{job.name}: {exc}", "set partition_type and partition_format explicitly"
            ) from None
    else:
        check_partition_type(job, field)
    try:  # identifiers and partition formats the config validation let through
        low = partition_value(start, ptype, job.partition_format)
        high = partition_value(end, ptype, job.partition_format)
    except ValueError as exc:
        raise ConfigError(
            f"jobs.{job.name}: {exc}", "fix the job's table, partition_column or partition_format"
        ) from None
    if pa.types.is_timestamp(field.type):
        # a TIMESTAMP column compared with a DATE end bound would drop the last day after 00:00
        low, high = dt.datetime.combine(low, dt.time.min), dt.datetime.combine(high, dt.time.max)
    return low, high


def check_partition_type(job: JobConfig, field: pa.Field) -> None:
    """A declared partition_type must fit a column whose type tableship can detect; on
    other types (DECIMAL holding YYYYMMDD...) the declared type is trusted."""
    detected = detected_partition_type(field.type)
    if detected is not None and detected != job.partition_type:
        raise ConfigError(
            f'jobs.{job.name}.partition_type = "{job.partition_type}" does not fit column '
            f'{job.partition_column!r} of {job.table}: its type is {field.type}, detected as "{detected}"',
            f'set partition_type = "{detected}" (or "auto") in jobs.{job.name}',
        )
