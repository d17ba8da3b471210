"""``tableship init``: a commented starter config (tomlkit) for the source and destination
types named. Values the user must supply are ``"<...>"`` placeholders, which
``config validate`` refuses until they are filled in; everything else is a working
default, with a comment saying what it does."""

from __future__ import annotations

from typing import Any

import tomlkit
from tomlkit.items import Table

SOURCE_TYPES = ("duckdb", "hive", "impala", "sqlalchemy")
DESTINATION_TYPES = ("local", "sftp")


def _add(table: Table, key: str, value: Any, comment: str | None = None) -> None:
    if comment:
        table.add(tomlkit.comment(comment))
    table.add(key, value)


def _source(kind: str) -> Table:
    t = tomlkit.table()
    t.add("type", kind)
    if kind == "duckdb":
        _add(
            t,
            "path",
            "<path/to/warehouse.duckdb>",
            "the DuckDB file (relative paths: from this file's folder)",
        )
    elif kind in ("hive", "impala"):
        _add(t, "host", "<hiveserver2-host>", "HiveServer2 endpoint (Impala daemon or HiveServer2)")
        t.add(tomlkit.comment(f"port = {21050 if kind == 'impala' else 10000}   # the default"))
        _add(t, "auth", "nosasl", 'one of "nosasl", "plain", "ldap", "gssapi" (Kerberos)')
        t.add(tomlkit.comment('user = "backup"'))
        t.add(tomlkit.comment('password = "${file:~/.secrets/hs2}"   # secrets from a file or ${ENV_VAR}'))
    else:
        _add(
            t,
            "url",
            "<postgresql+psycopg://user@host/db>",
            "SQLAlchemy URL; put the password in ${ENV_VAR} or ${file:/path}, never in this file",
        )
    return t


def _destination(kind: str) -> Table:
    t = tomlkit.table()
    t.add("type", kind)
    if kind == "local":
        _add(t, "path", "<path/to/backup-folder>", "an existing folder (a missing mount is never created)")
    else:
        _add(t, "host", "<backup-host>", "the backup server")
        t.add(tomlkit.comment("port = 22"))
        _add(t, "user", "<user>")
        _add(t, "key_file", "~/.ssh/id_ed25519", "a private key (host keys are checked against known_hosts)")
        _add(t, "known_hosts", "~/.ssh/known_hosts")
        _add(t, "path", "</absolute/folder/on/the/backup-host>", "absolute folder on the server")
    return t


def starter_config(source: str, destination: str) -> str:
    """The text of a starter config for one ``source`` type and one ``destination`` type."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("tableship config — written by 'tableship init'. Replace every \"<...>\" value"))
    doc.add(tomlkit.comment("(config validate refuses them), then: tableship config validate; tableship run"))
    doc.add(tomlkit.comment("Reference: docs/configuration.md"))
    doc.add(tomlkit.nl())

    settings = tomlkit.table()
    _add(settings, "state_dir", ".tableship", "ledger (state.db), locks and staged archives")
    _add(settings, "environment", "prod", "alerts are sent only when environment = prod")
    settings.add(tomlkit.comment('log_file = ".tableship/tableship.log"'))
    doc.add("settings", settings)

    sources = tomlkit.table(is_super_table=True)
    sources.add("warehouse", _source(source))
    doc.add("sources", sources)
    dests = tomlkit.table(is_super_table=True)
    dests.add("backup", _destination(destination))
    doc.add("destinations", dests)

    defaults = tomlkit.table()
    defaults.add(tomlkit.comment("every job gets these unless it sets its own"))
    defaults.add("source", "warehouse")
    _add(defaults, "destination", "backup", 'several hosts: destinations = ["backup", "other"]')
    defaults.add("partition_column", "partition_date")
    window = tomlkit.inline_table()
    window.update({"unit": "month", "count": 5})
    _add(defaults, "window", window, "whole months before the run date's month")
    if source in ("hive", "impala"):
        fmt = tomlkit.inline_table()
        fmt.update({"preset": "impala-shell"})
        _add(defaults, "format", fmt, "the CSV of impala-shell -B: ';', no header, NULL")
    doc.add("defaults", defaults)

    jobs = tomlkit.table(is_super_table=True)
    job = tomlkit.table()
    _add(job, "table", "<database.table>", 'one table; or tables = [...] / tables_file = "table_name.txt"')
    jobs.add("example", job)
    doc.add("jobs", jobs)
    doc.add(tomlkit.nl())
    for line in (
        "[alerts]",
        'channels = ["mail"]',
        "[alerts.mail]",
        'type = "email"',
        'host = "smtp.example.net"',
        'from = "tableship@example.net"',
        'to = ["dataops@example.net"]',
    ):
        doc.add(tomlkit.comment(line))
    return tomlkit.dumps(doc)
