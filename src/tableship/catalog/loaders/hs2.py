"""Hive / Spark over HiveServer2 as a load target (a ``type = "hive"`` source with ``load_staging``).

Per archive:

1. the decompressed CSV is placed in a fresh folder under the source's ``load_staging``
   (a folder this host writes and the engine reads: local to a Spark Thrift server, or a
   mount of the cluster's storage), temporary name then rename;
2. a session-scoped view reads it with the engine's own CSV reader and the archive's
   dialect: ``CREATE TEMPORARY VIEW … (every column STRING) USING csv OPTIONS (path, sep,
   header, quote '"', escape '"', multiLine 'true', nullValue <null text>, emptyValue <a
   sentinel turned back into ''>, mode 'FAILFAST')``;
3. its rows are counted: a count that is not the manifest's stops here, the table untouched;
4. ``INSERT OVERWRITE TABLE t PARTITION (<partition column>) SELECT CAST(… AS <type>) …
   WHERE <spans>`` with dynamic partition overwrite (``spark.sql.sources.partitionOverwriteMode
   = dynamic``, ``hive.exec.dynamic.partition.mode = nonstrict``): only the partitions the
   archive has rows for are replaced; partitions of the spans the archive has no rows for
   are dropped afterwards, so the spans end up holding exactly the archive's rows.

The target table is created ``USING parquet PARTITIONED BY (<partition column>)`` from the
manifest's columns (the partition column last) unless it exists with the same columns and
types. With ``impala_refresh = "<impala source>"`` the Impala catalog is told afterwards:
``INVALIDATE METADATA t`` for a table this restore created, ``REFRESH t`` otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tableship.catalog.loaders import base
from tableship.catalog.loaders.base import LoaderBase, LoadError, LoadSpec, Span
from tableship.catalog.loaders.csvread import ensure_csv
from tableship.catalog.loaders.webhdfs import WebHdfsStaging
from tableship.core.errors import SourceError, TransientSourceError
from tableship.sources.hs2 import HS2Source

_DECIMAL = re.compile(r"^DECIMAL\((\d+),(\d+)\)$")
_HIVE_TYPES = {
    "BOOLEAN": "boolean",
    "TINYINT": "tinyint",
    "SMALLINT": "smallint",
    "INTEGER": "int",
    "BIGINT": "bigint",
    "UTINYINT": "smallint",
    "USMALLINT": "int",
    "UINTEGER": "bigint",
    "UBIGINT": "decimal(20,0)",
    "HUGEINT": "decimal(38,0)",
    "FLOAT": "float",
    "DOUBLE": "double",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMPTZ": "timestamp",
    "TIME": "string",
    "VARCHAR": "string",
    "BLOB": "binary",
}


def hive_type(t: str) -> str:
    t = t.upper().replace(" ", "")
    if t in _HIVE_TYPES:
        return _HIVE_TYPES[t]
    m = _DECIMAL.match(t)
    if m:
        return f"decimal({int(m.group(1))},{int(m.group(2))})"
    raise LoadError(f"column type {t!r} cannot be created by --load", "restore with --out DIR instead")


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def literal(value: Any) -> str:
    """A Spark/Hive SQL literal for a partition bound (date, int or string)."""
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):  # a TIMESTAMP partition column's bound (UTC for TIMESTAMPTZ)
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return f"TIMESTAMP'{value.isoformat(' ')}'"
    if hasattr(value, "isoformat"):
        return f"DATE'{value.isoformat()}'"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def csv_options(spec: LoadSpec, uri: str, empty: str) -> str:
    """The CSV reader's options for the archive's dialect. Spark turns a field equal to
    ``nullValue`` into NULL *after* parsing, so a quoted ``""`` (an empty string) would become
    NULL too when the null text is empty: ``emptyValue`` (what a quoted empty field reads as)
    is set to the ``empty`` sentinel, turned back into '' by :meth:`HS2Loader.select_sql`.

    With a null text (``\\N``, ``NULL``) an empty string is written as an unquoted empty
    field, which Spark's parser replaces by ``nullValue`` — NULL, like the null text itself.
    So ``nullValue`` is then a second sentinel (an unquoted empty field reads as NULL, turned
    back into ''), and :meth:`HS2Loader.select_sql` turns the null text into NULL."""
    d = spec.dialect
    opts = {
        "path": uri,
        "header": "true" if d.header else "false",
        "sep": d.delimiter,
        "quote": '"' if d.quoting == "minimal" else "",  # "" turns quoting off when reading
        "escape": '"',
        "multiLine": "true",
        "nullValue": d.null if d.null == "" else empty + "null",
        "emptyValue": empty,
        "mode": "FAILFAST",
        "encoding": "UTF-8",
        "ignoreLeadingWhiteSpace": "false",
        "ignoreTrailingWhiteSpace": "false",
    }
    return ", ".join(f"{k} {literal(v)}" for k, v in opts.items())


def metadata_statement(table: str, created: bool) -> str:
    """What Impala is told after a load: a new table must be discovered, a known one re-read."""
    name = ".".join(ident(p) for p in table.split("."))
    return f"INVALIDATE METADATA {name}" if created else f"REFRESH {name}"


class HS2Loader(LoaderBase):
    kind = "hs2"  # one load at a time: the engine spreads each over its executors

    def __init__(self, name: str, cfg, table: str, impala: tuple[str, Any] | None = None):
        if cfg.type == "impala":
            raise LoadError(
                f"source {name!r} is Impala, which cannot read CSV files into a table",
                'load through a Hive or Spark HiveServer2 source (type = "hive") with '
                'impala_refresh = "<this impala source>"',
            )
        if cfg.load_staging is None and cfg.load_staging_webhdfs is None:
            raise LoadError(
                f"source {name!r} has no load_staging folder for --load",
                "set sources.<name>.load_staging to a folder this host writes and the engine reads "
                "(or load_staging_webhdfs to an HDFS folder)",
            )
        self.name = name
        self.cfg = cfg
        db, _, tbl = table.rpartition(".")
        self.database = db or cfg.database
        self.table = tbl
        self.qualified = f"{self.database}.{tbl}" if self.database else tbl
        self.sql_name = ".".join(ident(p) for p in self.qualified.split("."))
        self.display = f"{name}:{self.qualified}"
        self.lock_name = f"hs2-{cfg.host}-{cfg.effective_port}-{self.qualified}"
        self.hdfs: WebHdfsStaging | None = None
        if cfg.load_staging_webhdfs is not None:
            self.hdfs = WebHdfsStaging(name, cfg.load_staging_webhdfs, cfg.load_staging_user, cfg.timeout)
            self.staging = Path()
            self.uri_base = cfg.load_staging_uri or cfg.load_staging_webhdfs
        else:
            self.staging = Path(cfg.load_staging)
            self.uri_base = cfg.load_staging_uri or self.staging.resolve().as_uri()
        self.src = HS2Source(name, cfg)
        self.impala = impala
        self._pc = ""
        self._types: dict[str, str] = {}

    # -- plumbing
    def _run(self, sql: str, what: str) -> list[tuple] | None:
        try:
            cur = self.src._run(sql, None, what)
            if not cur.description:
                return None
            try:
                # the source's cursor leaves strings as bytes (convert_strings_to_unicode=False)
                return [tuple(_text(v) for v in row) for row in cur.fetchall()]
            except IndexError:  # Spark answers DDL with a zero-column rowset
                return None
        except TransientSourceError as exc:
            raise base.TransientLoadError(exc.message, exc.hint) from None
        except SourceError as exc:
            raise LoadError(exc.message, exc.hint) from None

    def _columns(self, columns: list[tuple[str, str]], pc: str) -> list[tuple[str, str]]:
        """Hive order: the partition column last."""
        cols = [(n, hive_type(t)) for n, t in columns if n != pc]
        return cols + [(pc, hive_type(dict(columns)[pc]))]

    def _exists(self) -> bool:
        where = f" IN {ident(self.database)}" if self.database else ""
        rows = (
            self._run(f"SHOW TABLES{where} LIKE {literal(self.table)}", "looking for the target table") or []
        )
        return any(str(r[1]).lower() == self.table.lower() for r in rows if len(r) > 1)

    def _describe(self) -> list[tuple[str, str]]:
        out = []
        for r in self._run(f"DESCRIBE {self.sql_name}", "reading the target table's columns") or []:
            name = str(r[0] or "").strip()
            if not name or name.startswith("#"):
                break
            out.append((name, str(r[1]).strip().lower()))
        return out

    # -- Loader protocol
    def check(self, columns: list[tuple[str, str]], partition_column: str) -> bool:
        self._pc = partition_column
        want = self._columns(columns, partition_column)
        self._types = dict(want)
        for k, v in (
            ("spark.sql.sources.partitionOverwriteMode", "dynamic"),
            ("hive.exec.dynamic.partition", "true"),
            ("hive.exec.dynamic.partition.mode", "nonstrict"),
        ):
            self._run(f"SET {k}={v}", f"SET {k}")
        if not self._exists():
            return False
        base.check_same(self.display, [(n.lower(), t) for n, t in want], self._describe(), fold=True)
        return True

    def create(self, columns: list[tuple[str, str]], partition_column: str) -> None:
        self._pc = partition_column
        want = self._columns(columns, partition_column)
        ddl = ", ".join(f"{ident(n)} {t}" for n, t in want)
        self._run(
            f"CREATE TABLE {self.sql_name} ({ddl}) USING {self.cfg.load_format} "
            f"PARTITIONED BY ({ident(partition_column)})",
            "creating the target table",
        )

    def _pred(self, spans: list[Span]) -> str:
        col = f"CAST({ident(self._pc)} AS {self._types[self._pc]})"
        return "(" + " OR ".join(f"{col} BETWEEN {literal(s.low)} AND {literal(s.high)}" for s in spans) + ")"

    def rows_in(self, spans: list[Span]) -> int:
        rows = self._run(
            f"SELECT count(*) FROM {self.sql_name} WHERE {self._pred(spans)}", "counting the range's rows"
        )
        return int(rows[0][0]) if rows else 0

    def _partitions(self, spans: list[Span]) -> list[str]:
        """The table's partition values inside the spans (as text)."""
        rows = self._run(f"SHOW PARTITIONS {self.sql_name}", "listing the partitions") or []
        out = []
        for (spec,) in (r[:1] for r in rows):
            key, _, value = str(spec).partition("=")
            value = unquote(value)  # Hive escapes ':', '/', '%'... in a partition's name (a TIMESTAMP's)
            if key.lower() != self._pc.lower():
                continue
            if any(str(s.low) <= value <= str(s.high) for s in spans) or any(
                s.start.isoformat() <= value <= s.end.isoformat() for s in spans
            ):
                out.append(value)
        return out

    def select_sql(self, spec: LoadSpec, view: str, empty: str) -> str:
        exprs = []
        for n, t in self._columns(spec.columns, self._pc):
            c = ident(n)
            if spec.dialect.null == "":
                src = f"CASE WHEN {c} = {literal(empty)} THEN '' ELSE {c} END"
            else:  # see csv_options: NULL is an unquoted empty field, the null text is NULL
                src = (
                    f"CASE WHEN {c} IS NULL OR {c} = {literal(empty)} THEN '' "
                    f"WHEN {c} = {literal(spec.dialect.null)} THEN NULL ELSE {c} END"
                )
            exprs.append(f"unhex({src})" if t == "binary" else f"CAST({src} AS {t}) AS {ident(n)}")
        return f"SELECT {', '.join(exprs)} FROM {ident(view)} WHERE {self._pred(spec.spans)}"

    def load(self, spec: LoadSpec) -> int:
        folder = self.staging / f"tableship-load-{secrets.token_hex(6)}"
        view = f"tableship_load_{secrets.token_hex(6)}"
        empty = f"\u0001tableship-empty-{secrets.token_hex(8)}\u0001"
        try:
            if self.hdfs is not None:
                self.hdfs.place(ensure_csv(spec), folder.name)
            else:
                place(ensure_csv(spec), folder)
            cols = ", ".join(f"{ident(n)} STRING" for n, _ in spec.columns)
            uri = f"{self.uri_base.rstrip('/')}/{folder.name}"
            self._run(
                f"CREATE TEMPORARY VIEW {ident(view)} ({cols}) USING csv "
                f"OPTIONS ({csv_options(spec, uri, empty)})",
                f"reading {spec.name} with the engine's CSV reader",
            )
            total = int(
                (self._run(f"SELECT count(*) FROM {ident(view)}", f"counting {spec.name}") or [(0,)])[0][0]
            )
            if total != spec.expected_rows:
                raise LoadError(
                    f"{spec.name}: the engine reads {total} rows from the CSV, the manifest says "
                    f"{spec.expected_rows}; the target table was not touched",
                    "check the archive's dialect against the engine's CSV reader, or restore with --out DIR",
                )
            before = self._partitions(spec.spans)
            spec.before_commit()
            self._run(
                f"INSERT OVERWRITE TABLE {self.sql_name} PARTITION ({ident(self._pc)}) "
                f"{self.select_sql(spec, view, empty)}",
                f"loading {spec.name}",
            )
            if before:
                written = {
                    str(r[0])
                    for r in self._run(
                        f"SELECT DISTINCT CAST({ident(self._pc)} AS STRING) "
                        f"FROM ({self.select_sql(spec, view, empty)}) s",
                        "listing the partitions written",
                    )
                    or []
                }
                for value in sorted(set(before) - written):
                    self._run(
                        f"ALTER TABLE {self.sql_name} DROP IF EXISTS "
                        f"PARTITION ({ident(self._pc)} = {literal(value)})",
                        f"dropping the emptied partition {value}",
                    )
            rows = self._run(
                f"SELECT count(*) FROM {self.sql_name} WHERE {self._pred(spec.spans)}",
                "counting the rows loaded",
            )
            return int(rows[0][0]) if rows else 0
        finally:
            with contextlib.suppress(LoadError):
                self._run(f"DROP VIEW IF EXISTS {ident(view)}", "dropping the temporary view")
            if self.hdfs is not None:
                with contextlib.suppress(Exception):  # the load is decided: a leftover folder is only litter
                    self.hdfs.remove(folder.name)
            else:
                shutil.rmtree(folder, ignore_errors=True)

    def finish(self, created: bool) -> None:
        if self.impala is None:
            return
        name, cfg = self.impala
        impala = HS2Source(name, cfg)
        try:
            impala._run(metadata_statement(self.qualified, created), None, "refreshing Impala's metadata")
        except SourceError as exc:
            raise LoadError(exc.message, exc.hint) from None
        finally:
            impala.close()

    def close(self) -> None:
        self.src.close()


def _text(v: Any) -> Any:
    return v.decode("utf-8") if isinstance(v, bytes) else v


def place(csv: Path, folder: Path) -> Path:
    """``folder/data.csv``: a hard link when the staging is on the same file system, else a copy
    (temporary name, fsync, rename — the engine never reads a partial file)."""
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise LoadError(
            f"cannot create {str(folder)!r} in load_staging: {exc.strerror}",
            "check the source's load_staging folder and its permissions",
        ) from None
    final = folder / "data.csv"
    try:
        os.link(csv, final)
        return final
    except OSError:
        pass
    part = folder / ".data.csv.part"  # a leading dot: Spark's file listing skips it
    try:
        with open(csv, "rb") as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(part, final)
    except OSError as exc:
        raise LoadError(
            f"cannot copy the CSV into load_staging ({str(folder)!r}): {exc.strerror}",
            "free space in load_staging or check its permissions",
        ) from None
    return final
