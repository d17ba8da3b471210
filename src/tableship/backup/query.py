"""The window query of a plan, typed by the source table's schema (the export step and
the dry run read the schema; the plan itself never touches the source)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from tableship.backup.plan import Plan
from tableship.config.spec import JobSpec
from tableship.core.errors import ConfigError, SourceError
from tableship.core.window import partition_value
from tableship.sources.base import Query, Source, arrow_partition_type, detected_partition_type, window_query


def build_query(source: Source, plan: Plan, schema: pa.Schema | None = None) -> Query:
    """The window query. The partition column's type is read from ``schema`` (from the
    source when not given): detected when ``partition_type = "auto"``, else checked
    against the declared one, so a mismatch is one error naming both, not a raw engine
    error (``Binder Error``...) or a silently wrong comparison."""
    return range_query(source, plan.job, schema, plan.window.start, plan.window.end)


def range_query(
    source: Source, job: JobSpec, schema: pa.Schema | None, start: dt.date, end: dt.date
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
    source: Source, job: JobSpec, schema: pa.Schema | None, start: dt.date, end: dt.date
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


def check_partition_type(job: JobSpec, field: pa.Field) -> None:
    """A declared partition_type must fit a column whose type tableship can detect; on
    other types (DECIMAL holding YYYYMMDD...) the declared type is trusted."""
    detected = detected_partition_type(field.type)
    if detected is not None and detected != job.partition_type:
        raise ConfigError(
            f'jobs.{job.name}.partition_type = "{job.partition_type}" does not fit column '
            f'{job.partition_column!r} of {job.table}: its type is {field.type}, detected as "{detected}"',
            f'set partition_type = "{detected}" (or "auto") in jobs.{job.name}',
        )
