"""The resolved job spec: everything one job's backup needs, built once from the config.

``resolve_job(config, name)`` turns ``[jobs.<name>]`` (already merged with ``[defaults]``
and validated) plus the source and destination tables it names and the settings it uses
into a frozen :class:`JobSpec`. The runner resolves each job once; the plan, the
pipeline, the preflight, the source and destination factories and the alert hooks get
the spec (or the piece of it they need), never the whole :class:`~tableship.config.models.Config`.

A field added to :class:`~tableship.config.models.JobConfig` that the backup needs is
added to :class:`JobSpec` under the same name (:func:`job_spec` copies it); what both
derive from the name and table comes from :class:`~tableship.config.models.JobNames`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Generic, TypeVar

from tableship.archive.csvrender import CsvDialect
from tableship.config.models import (
    CompressionSpec,
    Config,
    DestinationSettings,
    FormatSpec,
    JobConfig,
    JobNames,
    RetentionSpec,
    Retry,
    SourceSettings,
    WindowSpec,
)

# the settings model of a built-in or a plugin type (a plugin's has the same properties)
S = TypeVar("S", bound=SourceSettings | DestinationSettings)


@dataclass(frozen=True)
class _Named(Generic[S]):
    """A source or destination: its name under ``[sources]``/``[destinations]`` and its
    validated settings (the type-specific model its implementation reads)."""

    name: str
    settings: S

    @property
    def type(self) -> str:
        return self.settings.type

    @property
    def retries(self) -> Retry:
        """The retry policy for transient errors (one attempt when the type has none)."""
        return self.settings.retry_policy

    @property
    def target(self) -> str:
        """Where it reads from or writes to, without any credential (a path, ``user@host:port/path``)."""
        return self.settings.target


@dataclass(frozen=True)
class SourceSpec(_Named[SourceSettings]):
    """A job's source."""


@dataclass(frozen=True)
class DestinationSpec(_Named[DestinationSettings]):
    """One destination a job ships to."""

    def describe(self, remote_path: str = "") -> str:
        """``name (type) target/remote_path`` for dry runs and messages."""
        where = f"{self.target}/{remote_path}" if remote_path else self.target
        return f"{self.name} ({self.type}) {where}"


@dataclass(frozen=True)
class JobSpec(JobNames):
    """One job, resolved: the table and its partition, the window, the archive's name
    templates, format and compression, the data checks, the schedule coverage rules,
    retention, the source, the destinations and the local folders it uses."""

    name: str
    table: str
    source: SourceSpec
    destinations: tuple[DestinationSpec, ...]  # in order; one export delivered to each
    # the window and how it selects rows
    window: WindowSpec
    partition_column: str
    partition_type: str  # "auto" | "date" | "string" | "int"
    partition_format: str | None
    # chunked windows (docs/configuration.md, "Chunks")
    chunk: str  # "none" | "month" | "day"
    parallel: int  # chunk queries at once
    layout: str  # "window" | "chunk"
    refresh: str | None  # None: "changed" (layout "chunk")
    # the archive
    file_name: str  # template (core.templates)
    remote_dir: str  # template
    format: FormatSpec
    dialect: CsvDialect
    compression: CompressionSpec  # level None: the codec's default ("auto")
    # data checks
    expect_columns: tuple[str, ...] | None
    on_empty: str  # "fail" | "warn" | "ok"
    count_check: bool
    # schedule coverage (docs/resume.md)
    gap_grace: int
    catch_up: bool
    catch_up_max: int
    # retention
    retention: RetentionSpec | None
    prune_after_run: bool
    # local paths
    keep_local: bool
    state_dir: Path
    staging_root: Path  # settings.staging_dir or state_dir/staging
    config_path: Path  # for the commands messages suggest (alerts)

    @property
    def destination(self) -> DestinationSpec:
        """The first destination (the one of a single-destination job)."""
        return self.destinations[0]

    @property
    def destination_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.destinations)

    @property
    def staging_dir(self) -> Path:
        """This job's own staging folder."""
        return self.staging_root / self.name

    @property
    def compression_level(self) -> int | str:
        """The configured level, ``"auto"`` when left to the codec's default."""
        return "auto" if self.compression.level is None else self.compression.level


def dialect_of(fmt: FormatSpec) -> CsvDialect:
    return CsvDialect(
        delimiter=fmt.delimiter, header=fmt.header, null=fmt.null, quoting=fmt.quoting, preset=fmt.preset
    )


def source_spec(config: Config, name: str) -> SourceSpec:
    return SourceSpec(name, config.sources[name])


def destination_spec(config: Config, name: str) -> DestinationSpec | None:
    """The destination ``name`` as configured now, or None if there is none by that name."""
    settings = config.destinations.get(name)
    return None if settings is None else DestinationSpec(name, settings)


# set by job_spec from more than the job's own field of that name; every other field of
# JobSpec is the JobConfig field of the same name
_RESOLVED = {
    "source",
    "destinations",
    "expect_columns",
    "dialect",
    "state_dir",
    "staging_root",
    "config_path",
}
_COPIED = tuple(f.name for f in fields(JobSpec) if f.name not in _RESOLVED)


def job_spec(config: Config, job: JobConfig) -> JobSpec:
    return JobSpec(
        **{name: getattr(job, name) for name in _COPIED},
        source=source_spec(config, job.source),
        # the loader refuses a job naming an unknown destination
        destinations=tuple(DestinationSpec(n, config.destinations[n]) for n in job.destinations),
        expect_columns=tuple(job.expect_columns) if job.expect_columns is not None else None,
        dialect=dialect_of(job.format),
        state_dir=config.settings.state_dir,
        staging_root=config.staging_dir,
        config_path=config.path,
    )


def resolve_job(config: Config, name: str) -> JobSpec:
    """The resolved spec of job ``name`` (ConfigError naming the configured jobs if unknown)."""
    return job_spec(config, config.job(name))
