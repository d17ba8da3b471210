"""``--load TARGET`` → a :class:`~tableship.catalog.loaders.base.Loader`.

TARGET is one of:

* ``SOURCE:[SCHEMA.]TABLE`` — a source configured in ``[sources]`` (its connection and
  secrets stay in the config file): ``type = "sqlalchemy"`` (any database; PostgreSQL via
  ``COPY``), ``type = "hive"`` (Hive/Spark over HiveServer2, needs ``load_staging``),
  ``type = "duckdb"``. The table must be named, and must not be the job's own table on
  its own source;
* ``DIALECT+DRIVER://…#[SCHEMA.]TABLE`` — a SQLAlchemy URL (use ``${VAR}`` in a source
  instead when it holds a password: a command line is visible to other users);
* ``PATH[:[SCHEMA.]TABLE]`` — a DuckDB file (the table defaults to the job's table name);
  ``duckdb:///PATH#[SCHEMA.]TABLE``, the URL spelling of the same, goes to the DuckDB loader
  too (DuckDB ships with tableship; its SQLAlchemy dialect does not).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tableship.catalog.loaders.base import Loader
from tableship.config.models import Config, JobConfig
from tableship.core.errors import UsageError
from tableship.core.names import check_identifier
from tableship.core.plugins import load_class

# kind → (module, class, extra, driver module): imported only when used
REGISTRY = {
    "duckdb": ("tableship.catalog.loaders.duckdb", "DuckDBLoader", None, None),
    "sqlalchemy": ("tableship.catalog.loaders.sqlalchemy", "SQLAlchemyLoader", "sqlalchemy", "sqlalchemy"),
    "hs2": ("tableship.catalog.loaders.hs2", "HS2Loader", "hive", "impala"),
}
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _make(kind: str, *args: Any, **kwargs: Any) -> Loader:
    return load_class(f"--load into {kind}", REGISTRY[kind])(*args, **kwargs)


def _table(text: str, spec: str) -> tuple[str | None, str]:
    if not _TABLE.match(text):
        raise UsageError(
            f"--load {spec!r}: {text!r} is not TABLE or SCHEMA.TABLE (letters, digits, _)",
            "write it as TARGET:SCHEMA.TABLE",
        )
    schema, _, name = text.rpartition(".")
    for part in (schema, name):
        if part:
            try:
                check_identifier(part, "table")
            except ValueError as exc:
                raise UsageError(f"--load: {exc}", "name the table explicitly: TARGET:TABLE") from None
    return schema or None, name


def open_loader(config: Config, job: JobConfig, spec: str) -> Loader:
    """The loader for ``--load spec`` (nothing is connected yet)."""
    if "://" in spec:
        url, _, table = spec.partition("#")
        if not table:
            raise UsageError(
                "--load with a database URL needs the table after '#'", "write it as URL#SCHEMA.TABLE"
            )
        schema, name = _table(table, "URL#…")
        if url.startswith("duckdb:///"):
            return _make("duckdb", Path(url.removeprefix("duckdb:///")).expanduser(), schema, name)
        return _make("sqlalchemy", url, schema, name)
    head, sep, tail = spec.partition(":")
    if head in config.sources:
        cfg = config.sources[head]
        if not sep or not tail:
            raise UsageError(f"--load {spec!r}: name the target table", f"write it as {head}:SCHEMA.TABLE")
        schema, name = _table(tail, spec)
        full = f"{schema}.{name}" if schema else name
        if head == job.source and full.lower() in (job.table.lower(), job.table_name.lower()):
            raise UsageError(
                f"--load {spec!r} is the job's own table on its own source",
                "restore into another table (e.g. TABLE_bkp): restore never writes over the live table",
            )
        if cfg.type == "duckdb":
            return _make("duckdb", Path(cfg.path), schema, name)
        if cfg.type == "sqlalchemy":
            return _make("sqlalchemy", cfg.url.get_secret_value(), schema, name, name=head)
        impala = None
        if getattr(cfg, "impala_refresh", None):
            other = config.sources.get(cfg.impala_refresh)
            if other is None or other.type != "impala":
                raise UsageError(
                    f"sources.{head}.impala_refresh = {cfg.impala_refresh!r} is not an Impala source",
                    'name a configured source of type "impala"',
                )
            impala = (cfg.impala_refresh, other)
        return _make("hs2", head, cfg, full, impala)
    # a DuckDB file, optionally :TABLE
    path, table = spec, ""
    m = re.match(r"^(.*):([^:/]+)$", spec)
    if m and m.group(1):
        path, table = m.group(1), m.group(2)
    if re.fullmatch(r"[A-Za-z0-9_-]+", path) and not Path(path).exists():
        # a bare word: most likely a misspelt source, not a new DuckDB file named like one
        raise UsageError(
            f"--load {spec!r}: {path!r} is neither a configured source ({', '.join(sorted(config.sources))}) "
            "nor an existing DuckDB file",
            f"name a configured source, or give the new DuckDB file's path (e.g. ./{path}.duckdb)",
        )
    schema, name = _table(table, spec) if table else (None, job.table_name)
    return _make("duckdb", Path(path).expanduser(), schema, name)
