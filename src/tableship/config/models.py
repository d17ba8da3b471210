"""The configuration's validated, frozen models (one per TOML table) and :class:`Config`.

Read by :mod:`tableship.config.loader` (TOML, substitution, every problem with its key
path); the rest of the package only sees these typed objects, and the backup only the
job specs resolved from them (:mod:`tableship.config.spec`). Relative paths resolve
against the config file's folder (the ``base`` in the validation context); unknown keys
are errors.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tableship.archive.codecs import LEVEL_RANGES
from tableship.archive.csvrender import delimiter_problem, null_problem
from tableship.core.errors import ConfigError
from tableship.core.names import (
    CHUNK_FIELDS,
    TemplateValues,
    check_identifier,
    check_job_name,
    check_template,
    render_relative,
    split_table,
)
from tableship.core.templates import check_date_spec
from tableship.core.window import MAX_REACH, MAX_REACH_YEARS


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    value = Path(os.path.expanduser(str(value)))
    base = (info.context or {}).get("base")
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retried:
    """Settings of a server, whose transient errors are retried by its own ``retries``."""

    if TYPE_CHECKING:
        retries: Retry  # a field of the model this is mixed into

    @property
    def retry_policy(self) -> Retry:
        return self.retries


# ---------------------------------------------------------------- settings


class Settings(Model):
    state_dir: ConfigPath = Path(".tableship")
    log_file: ConfigPath | None = None
    log_max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    log_backups: int = Field(5, ge=0)
    environment: str = "prod"
    metrics_file: ConfigPath | None = None
    status_file: ConfigPath | None = None
    staging_dir: ConfigPath | None = None  # default: state_dir/staging
    # jobs run at once by 'tableship run' (--jobs overrides); docs/configuration.md says why 2
    max_jobs: int = Field(2, ge=1, le=64)
    # the ledger: None = SQLite under state_dir; "postgresql://user:pw@host/db" = shared by
    # several hosts (docs/scaling.md); a secret (its password is redacted everywhere)
    state: SecretStr | None = None

    @field_validator("state")
    @classmethod
    def _state_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        text = v.get_secret_value().strip()
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError(
                "must be a PostgreSQL URL (postgresql://user:password@host:5432/dbname); leave it out "
                "for the SQLite ledger under state_dir"
            )
        return SecretStr(text)


# ---------------------------------------------------------------- sources


class DuckDBSource(Model):
    type: Literal["duckdb"]
    path: ConfigPath
    threads: int | None = Field(None, ge=1)  # None: 1 (see sources/duckdb.py)
    memory_limit: str = "32MB"
    max_connections: int | None = Field(None, ge=1)  # queries open at once across parallel jobs

    @property
    def retry_policy(self) -> Retry:
        return NO_RETRY  # a local file: nothing transient to wait out

    @property
    def target(self) -> str:
        return str(self.path)


class HS2Source(Model, Retried):
    type: Literal["impala", "hive"]
    host: str
    port: int | None = Field(None, ge=1, le=65535)
    database: str | None = None
    auth: Literal["nosasl", "plain", "ldap", "gssapi"] = "nosasl"
    user: str | None = None
    password: SecretStr | None = None
    use_ssl: bool = False
    ca_cert: ConfigPath | None = None
    kerberos_service_name: str | None = None
    timeout: float = Field(60, gt=0)
    # rows per FetchResults: Spark's Thrift server spends half the CPU per row at 10-20k
    # than at 100k (bench/bench_hs2.py); impyla and impala-shell default to 10240
    fetch_size: int = Field(20_000, ge=1)
    query_options: dict[str, str | int | float | bool] = {}
    retries: Retry = Field(default_factory=lambda: Retry())  # servers: retried like destinations
    # restore --load into this source (docs/restore.md): a folder this host writes and the
    # engine reads, how the engine names it (default file://<load_staging>), the format of
    # tables it creates, and an Impala source told about the load (REFRESH / INVALIDATE METADATA)
    load_staging: ConfigPath | None = None
    # ... or an HDFS folder written over WebHDFS (the webhdfs extra; simple authentication as
    # load_staging_user, default the OS user): webhdfs://NAMENODE:HTTP_PORT/PATH
    load_staging_webhdfs: str | None = Field(None, pattern=r"^webhdfs://[A-Za-z0-9.\-]+:\d{1,5}/\S*$")
    load_staging_user: str | None = Field(None, pattern=r"^[A-Za-z0-9._\-]+$")
    load_staging_uri: str | None = None
    load_format: Literal["parquet", "orc"] = "parquet"
    impala_refresh: str | None = None
    max_connections: int | None = Field(None, ge=1)  # queries open at once across parallel jobs

    @model_validator(mode="after")
    def _one_staging(self) -> HS2Source:
        if self.load_staging is not None and self.load_staging_webhdfs is not None:
            raise ValueError("set load_staging (a folder) or load_staging_webhdfs (HDFS), not both")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (21050 if self.type == "impala" else 10000)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.effective_port}/{self.database or ''}"


class SQLAlchemySource(Model, Retried):
    type: Literal["sqlalchemy"]
    url: SecretStr
    fetch_size: int = Field(100_000, ge=1)
    timeout: float = Field(60, gt=0)
    retries: Retry = Field(default_factory=lambda: Retry())  # servers: retried like destinations
    max_connections: int | None = Field(None, ge=1)  # queries open at once across parallel jobs

    @property
    def target(self) -> str:
        """The URL without its user info and query (where passwords go)."""
        try:
            u = urlsplit(self.url.get_secret_value())
            host = u.hostname or ""
            port = f":{u.port}" if u.port else ""
        except ValueError:
            return "sqlalchemy"
        return f"{u.scheme}://{host}{port}{u.path}"


class Retry(Model):
    attempts: int = Field(5, ge=1)
    initial_delay: float = Field(2, ge=0)
    max_delay: float = Field(60, ge=0)


NO_RETRY = Retry(attempts=1)

SourceSettings = DuckDBSource | HS2Source | SQLAlchemySource
SourceConfig = Annotated[SourceSettings, Field(discriminator="type")]


# ---------------------------------------------------------------- destinations


class LocalDestination(Model):
    type: Literal["local"]
    path: ConfigPath

    @property
    def retry_policy(self) -> Retry:
        return NO_RETRY

    @property
    def target(self) -> str:
        return str(self.path)


class SFTPDestination(Model, Retried):
    type: Literal["sftp"]
    host: str
    port: int = Field(22, ge=1, le=65535)
    user: str
    key_file: ConfigPath | None = None
    key_passphrase: SecretStr | None = None  # decrypts key_file (asyncssh; OpenSSH's sftp is not used then)
    password: SecretStr | None = None
    known_hosts: ConfigPath = Path("~/.ssh/known_hosts")
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    path: str
    connect_timeout: float = Field(15, gt=0)
    retries: Retry = Retry()
    verify: Literal["auto", "sha256sum", "read-back"] = "auto"
    # SSH connections open at once on this destination across parallel jobs: below
    # OpenSSH's MaxStartups (10) and MaxSessions (10) defaults (docs/configuration.md)
    max_connections: int = Field(8, ge=1)

    @field_validator("path")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("remote path must be absolute (start with '/')")
        return v

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}{self.path}"


DestinationSettings = LocalDestination | SFTPDestination
DestinationConfig = Annotated[DestinationSettings, Field(discriminator="type")]


# ---------------------------------------------------------------- jobs

PRESETS = {
    # impala-shell -B quotes like csv.QUOTE_MINIMAL (see csvrender.IMPALA_SHELL_RULES)
    "impala-shell": {"delimiter": ";", "header": False, "null": "NULL", "quoting": "minimal"},
}


class WindowSpec(Model):
    """``count`` whole units ending ``lag`` units before the run date's unit; together they
    reach back at most :data:`window.MAX_REACH` units (100 years), so that every window
    of a supported run date (1100..9999) starts in a four-digit year."""

    unit: Literal["month", "day"] = "month"
    count: int = Field(5, ge=1)
    lag: int = Field(0, ge=0)

    @field_validator("count")
    @classmethod
    def _count(cls, v: int, info: ValidationInfo) -> int:
        limit = MAX_REACH.get(info.data.get("unit", "month"))
        if limit is not None and v > limit:
            raise ValueError(
                f"{v} {info.data['unit']}s is more than the supported {limit} ({MAX_REACH_YEARS} years)"
            )
        return v

    @field_validator("lag")
    @classmethod
    def _lag(cls, v: int, info: ValidationInfo) -> int:
        limit = MAX_REACH.get(info.data.get("unit", "month"))
        count = info.data.get("count")
        if limit is not None and isinstance(count, int) and count <= limit and count + v > limit:
            raise ValueError(
                f"count + lag = {count + v} {info.data['unit']}s reaches back more than the supported "
                f"{limit} ({MAX_REACH_YEARS} years)"
            )
        return v


class FormatSpec(Model):
    preset: Literal["impala-shell"] | None = None
    delimiter: str = ";"
    header: bool = True
    null: str = ""
    quoting: Literal["minimal", "none"] = "minimal"

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            return {**PRESETS[data["preset"]], **data}
        return data

    @field_validator("delimiter")
    @classmethod
    def _delim(cls, v: str) -> str:
        problem = delimiter_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("null")
    @classmethod
    def _null(cls, v: str, info: ValidationInfo) -> str:
        # the renderer's own rule (a NULL marker a reader cannot tell from a value or a row
        # boundary makes the file ambiguous), refused here already
        problem = null_problem(v, info.data.get("delimiter"))
        if problem:
            raise ValueError(problem)
        return v


class CompressionSpec(Model):
    codec: Literal["gzip", "zstd", "none"] = "gzip"
    level: int | None = None

    @model_validator(mode="after")
    def _level(self) -> CompressionSpec:
        lo, hi = LEVEL_RANGES[self.codec]
        if self.level is not None and not lo <= self.level <= hi:
            raise ValueError(f"{self.codec} level must be between {lo} and {hi}")
        return self


class RetentionSpec(Model):
    keep_last: int | None = Field(None, ge=1)
    keep_days: int | None = Field(None, ge=1)


def _check_table(v: str) -> str:
    split_table(v)
    return v


def _check_col(v: str) -> str:
    return check_identifier(v, "column")


def _check_tpl(v: str) -> str:
    check_template(v)
    return v


class JobNames:
    """What a job's ``name``, ``table`` and ``refresh`` give, the same for the job as
    configured (:class:`JobConfig`) and as resolved (:class:`tableship.config.spec.JobSpec`)."""

    if TYPE_CHECKING:  # fields of the class this is mixed into
        name: str
        table: str
        refresh: str | None

    @property
    def database(self) -> str | None:
        return split_table(self.table)[0]

    @property
    def table_name(self) -> str:
        return split_table(self.table)[1]

    @property
    def effective_refresh(self) -> str:
        """What a chunk archive already on the destination is checked against (layout = "chunk")."""
        return self.refresh or "changed"

    def template_values(
        self,
        start: dt.date,
        end: dt.date,
        run_date: dt.date,
        chunk_start: dt.date | None = None,
        chunk_end: dt.date | None = None,
    ) -> TemplateValues:
        """The values the job's ``file_name`` and ``remote_dir`` templates render with."""
        return TemplateValues(
            self.name, self.table_name, self.database or "", start, end, run_date, chunk_start, chunk_end
        )


class JobConfig(Model, JobNames):
    """One job, after [defaults] were merged in. ``name`` is the key under [jobs]."""

    name: str
    source: str
    # where the one export is delivered, in order (``destination = "x"`` is ``destinations = ["x"]``)
    destinations: tuple[str, ...] = Field(min_length=1)
    table: Annotated[str, AfterValidator(_check_table)]
    partition_column: Annotated[str, AfterValidator(_check_col)] = "partition_date"
    partition_type: Literal["auto", "date", "string", "int"] = "auto"
    partition_format: str | None = None
    window: WindowSpec = WindowSpec()
    file_name: Annotated[str, AfterValidator(_check_tpl)] = "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz"
    remote_dir: Annotated[str, AfterValidator(_check_tpl)] = "{table}"
    format: FormatSpec = FormatSpec()
    compression: CompressionSpec = CompressionSpec()
    keep_local: bool = False
    expect_columns: list[Annotated[str, AfterValidator(_check_col)]] | None = None
    on_empty: Literal["fail", "warn", "ok"] = "fail"
    count_check: bool = False
    retention: RetentionSpec | None = None
    prune_after_run: bool = False
    # never-dropped windows (docs/resume.md): days a window may stay unfinished or missing
    # before it opens an incident; whether a run also backs up missing windows, how many
    gap_grace: int = Field(1, ge=0, le=3660)
    catch_up: bool = False
    catch_up_max: int = Field(3, ge=1, le=1000)
    # chunked windows (docs/configuration.md, "Chunks"): one query per month or day of the
    # window, up to ``parallel`` at once; one archive per window or per chunk
    chunk: Literal["none", "month", "day"] = "none"
    parallel: int = Field(1, ge=1, le=64)
    layout: Literal["window", "chunk"] = "window"
    refresh: Literal["changed", "always", "never"] | None = None  # None: "changed" (layout = "chunk")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_job_name(v)

    @field_validator("partition_format")
    @classmethod
    def _partition_format(cls, v: str | None) -> str | None:
        if v is not None:  # a code strftime does not know would be compared as literal text
            check_date_spec(v, f"partition_format {v!r}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _single_destination(cls, data: Any) -> Any:
        if isinstance(data, dict) and "destination" in data and "destinations" not in data:
            data = dict(data)
            one = data.pop("destination")
            data["destinations"] = one if isinstance(one, list) else [one]
        return data

    @field_validator("destinations")
    @classmethod
    def _distinct(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({d for d in v if v.count(d) > 1})
        if twice:
            raise ValueError(f"destination {twice[0]!r} is listed twice")
        return v

    @property
    def destination(self) -> str:
        """The first destination (the one of a single-destination job)."""
        return self.destinations[0]

    @property
    def destination_names(self) -> tuple[str, ...]:
        """As :attr:`tableship.config.spec.JobSpec.destination_names` (the alert hooks take either)."""
        return self.destinations

    @model_validator(mode="after")
    def _chunks(self) -> JobConfig:
        uses_chunk_names = any(f"{{{f}" in self.file_name for f in CHUNK_FIELDS)
        if self.layout == "chunk" and self.chunk == "none":
            raise ValueError('layout = "chunk" needs chunk = "month" or "day"')
        if self.parallel > 1 and self.chunk == "none":
            raise ValueError('parallel > 1 needs chunk = "month" or "day" (one query per chunk)')
        if self.refresh is not None and self.layout != "chunk":
            raise ValueError(
                'refresh applies to layout = "chunk" only (a window archive is always rewritten)'
            )
        if uses_chunk_names and self.layout != "chunk":
            raise ValueError(
                f"file_name {self.file_name!r} uses {{chunk_start}}/{{chunk_end}}, which only "
                'layout = "chunk" renders: set layout = "chunk" or use {start}/{end}'
            )
        if any(f"{{{f}" in self.remote_dir for f in CHUNK_FIELDS):
            raise ValueError(
                "remote_dir cannot use {chunk_start}/{chunk_end}: one window's chunks share a folder"
            )
        if self.layout == "chunk":
            # two neighbouring chunks (and the same month a year apart) must get two names
            if self.chunk == "month":
                pairs = [
                    (
                        (dt.date(2026, 1, 1), dt.date(2026, 1, 31)),
                        (dt.date(2026, 2, 1), dt.date(2026, 2, 28)),
                    ),
                    (
                        (dt.date(2026, 1, 1), dt.date(2026, 1, 31)),
                        (dt.date(2027, 1, 1), dt.date(2027, 1, 31)),
                    ),
                ]
                hint = "{chunk_start:%m%Y} or {chunk_start:%Y%m}"
            else:
                pairs = [
                    ((dt.date(2026, 1, 1),) * 2, (dt.date(2026, 1, 2),) * 2),
                    ((dt.date(2026, 1, 1),) * 2, (dt.date(2026, 2, 1),) * 2),
                    ((dt.date(2026, 1, 1),) * 2, (dt.date(2027, 1, 1),) * 2),
                ]
                hint = "{chunk_start:%Y%m%d}"
            w0, w1 = dt.date(2026, 1, 1), dt.date(2027, 12, 31)
            for a, b in pairs:
                names = {
                    render_relative(self.file_name, self.template_values(w0, w1, w1, *c), "file_name")
                    for c in (a, b)
                }
                if len(names) < 2:
                    raise ValueError(
                        f'file_name {self.file_name!r} gives two {self.chunk}s of layout = "chunk" the same '
                        f"name: put the chunk in it, e.g. {hint}"
                    )
        return self

    @model_validator(mode="after")
    def _names_render(self) -> JobConfig:
        sample = self.template_values(dt.date(2026, 1, 1), dt.date(2026, 1, 31), dt.date(2026, 2, 1))
        name = render_relative(self.file_name, sample, "file_name")
        if "/" in name:
            raise ValueError(f"file_name {self.file_name!r} must not contain '/'; use remote_dir for folders")
        if not name:
            raise ValueError(f"file_name {self.file_name!r} renders to an empty name")
        render_relative(self.remote_dir, sample, "remote_dir")
        return self


# ---------------------------------------------------------------- alerts


def parse_duration(value: str | int | float) -> dt.timedelta:
    if isinstance(value, (int, float)):
        return dt.timedelta(seconds=value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(value))
    if not m:
        raise ValueError(f"duration {value!r} must look like 90s, 15m, 24h or 7d")
    n, unit = float(m.group(1)), m.group(2) or "s"
    return dt.timedelta(seconds=n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


class AlertRetry(Model):
    """A failing alert channel is retried briefly: it must not hold up the next job."""

    attempts: int = Field(3, ge=1)
    initial_delay: float = Field(1, ge=0)
    max_delay: float = Field(10, ge=0)


class EmailChannel(Model):
    type: Literal["email"]
    host: str
    port: int | None = None
    security: Literal["none", "starttls", "ssl"] = "starttls"
    user: str | None = None
    password: SecretStr | None = None
    from_: str = Field(alias="from")
    to: list[str]
    cc: list[str] = []
    timeout: float = 30
    ca_cert: ConfigPath | None = None
    retries: AlertRetry = AlertRetry()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WebhookChannel(Model):
    type: Literal["webhook"]
    url: SecretStr
    headers: dict[str, SecretStr] = {}
    timeout: float = 30
    retries: AlertRetry = AlertRetry()


class CommandChannel(Model):
    type: Literal["command"]
    argv: list[str] = Field(min_length=1)
    timeout: float = 60
    retries: AlertRetry = AlertRetry()


class PingChannel(Model):
    type: Literal["ping"]
    url: SecretStr
    timeout: float = 30
    retries: AlertRetry = AlertRetry()


ChannelConfig = Annotated[
    EmailChannel | WebhookChannel | CommandChannel | PingChannel, Field(discriminator="type")
]


class AlertsConfig(Model):
    channels: list[str] = []
    realert_after: dt.timedelta = dt.timedelta(hours=24)
    max_per_hour: int = Field(10, ge=1)
    log_lines: int = Field(50, ge=0)
    send_outside_prod: bool = False
    definitions: dict[str, ChannelConfig] = {}

    @field_validator("realert_after", mode="before")
    @classmethod
    def _dur(cls, v):
        return parse_duration(v) if isinstance(v, (str, int, float)) else v

    @model_validator(mode="after")
    def _known(self) -> AlertsConfig:
        missing = [c for c in self.channels if c not in self.definitions]
        if missing:
            raise ValueError(f"channels {missing} have no [alerts.<name>] table")
        return self


# ---------------------------------------------------------------- the whole file


@dataclass(frozen=True)
class Config:
    path: Path
    settings: Settings
    sources: dict[str, Any]
    destinations: dict[str, Any]
    jobs: dict[str, JobConfig]
    alerts: AlertsConfig
    secrets: frozenset[str] = frozenset()  # every secret value found while loading (redact.py)

    @property
    def staging_dir(self) -> Path:
        return self.settings.staging_dir or self.settings.state_dir / "staging"

    def job(self, name: str) -> JobConfig:
        if name not in self.jobs:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise ConfigError(
                f"unknown job {name!r} (configured jobs: {known})",
                "check the job name or add [jobs." + name + "] to " + str(self.path),
            )
        return self.jobs[name]


HS2Source.model_rebuild()
SQLAlchemySource.model_rebuild()
