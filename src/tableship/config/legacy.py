"""``tableship import-legacy``: the legacy Bash backup job's properties file and table list →
a commented tableship config (tomlkit) that does the same job.

What is read (docs/migrating.md has the full table):

* ``IMPALAD_HOST`` → ``[sources.impala]`` (HiveServer2; ``host:port`` is split; impala-shell's
  Beeswax port 21000 becomes HiveServer2's 21050);
* ``backup_server`` (edge node 2, as the legacy documentation names it) and a second server
  for edge node 1 named like ``backup_server_enode1`` / ``backup_server1`` /
  ``enode1_backup_server`` → one SFTP destination each (``edgenode1``, ``edgenode2``), both
  listed in ``destinations``; ``user@host`` is split; the remote folder is
  ``MNAAS_File_processed_location_ZIP`` (``..._enode1`` for edge node 1 when set), where the
  legacy restore script looks for the archives;
* ``ENV_MODE`` → ``settings.environment`` (``PROD`` → ``prod``: alerts are sent only there,
  like the legacy tickets); ``SDP_ticket_cc_email`` → the ``email`` alert channel;
  ``MNAAS_backup_files_logpath`` → ``settings.log_file`` in the same folder;
* the table list → one ``[jobs.mnaas]`` block with ``tables_file`` (jobs ``mnaas.<table>``);
* fixed by the legacy script itself: the impala-shell format preset, a window of 5 whole
  months, ``partition_date``, the ``mnaas`` database for bare table names.

Every value that cannot be inferred is written as a ``"<TODO: ...>"`` placeholder with a
``# TODO`` comment above it (``config validate`` refuses placeholders until filled in);
inferred values that deserve a look get a ``# TODO: check`` comment. Never a silent guess.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from tableship.config.shellvars import ShellVars, read_properties
from tableship.config.tables import expanded_name, read_tables_file
from tableship.core.errors import ConfigError
from tableship.core.names import check_job_name, split_table

BLOCK = "mnaas"
LEGACY_DATABASE = "mnaas"  # the legacy script queries mnaas.<Table_name>
_SERVER = re.compile(
    r"^(?:backup_server(?:_?(?:e(?:dge)?node)?_?(\d+))?|e(?:dge)?node_?(\d+)_backup_server)$", re.I
)
# variables the legacy job used that tableship replaces by its own mechanisms (header comment)
REPLACED = {
    "MNAAS_files_backup_ProcessStatusFile": "the ledger (state_dir/state.db) and 'tableship status' replace "
    "the shared status file; do not point settings.status_file at it while the legacy scripts still run",
    "MNAAS_backup_files_logpath_common": "one log_file for every job (tagged [job#run])",
    "MNAAS_backup_enode2_files_Scriptname": "job names (mnaas.<table>) identify the jobs in logs and alerts",
    "MNAAS_backup_enode1_files_Scriptname": "job names (mnaas.<table>) identify the jobs in logs and alerts",
    "MNAAS_Script_name": "job names identify the jobs in logs and alerts",
    "MNAAS_BackupScript_Enode2": "'tableship run --all --jobs N' replaces the per-table script launches",
    "MNAAS_Table_List": "given as --tables (written as tables_file)",
    "MNAAS_Table_Name": "one job per table of the list",
    "MNAAS_Rawtablesload_PathName": "restore side (HDFS staging): see 'tableship restore --load'",
    "No_of_files_to_process": "restore side: 'tableship restore --from/--to' picks the archives",
    "setparameter": "use -v / --debug",
}


@dataclass
class Imported:
    text: str
    jobs: list[str]
    todos: list[str] = field(default_factory=list)  # every TODO written (placeholders and checks)
    placeholders: int = 0


class _Doc:
    """The document being written, with its TODO bookkeeping."""

    def __init__(self) -> None:
        self.doc = tomlkit.document()
        self.todos: list[str] = []
        self.placeholders = 0

    def todo(self, table: Table, key: str, what: str, as_list: bool = False) -> None:
        """A value that cannot be inferred: a placeholder the validation refuses."""
        table.add(tomlkit.comment(f"TODO: {what}"))
        value = f"<TODO: {what}>"
        table.add(key, [value] if as_list else value)
        self.todos.append(f"{key}: {what}")
        self.placeholders += 1

    def check(self, table: Table, key: str, value: Any, why: str) -> None:
        """An inferred value worth a look."""
        table.add(tomlkit.comment(f"TODO: check: {why}"))
        table.add(key, value)
        self.todos.append(f"{key}: check: {why}")

    @staticmethod
    def note(table: Table, key: str, value: Any, why: str) -> None:
        table.add(tomlkit.comment(why))
        table.add(key, value)


def _from(env: ShellVars, name: str) -> str:
    return f"from {name} ({env.where[name]})" if name in env.where else f"from {name}"


def _servers(env: ShellVars) -> dict[int, str]:
    """Edge node number → the variable naming its backup server."""
    found: dict[int, str] = {}
    for name in env.values:
        m = _SERVER.match(name)
        if m:
            node = int(m.group(1) or m.group(2) or 2)  # plain backup_server: edge node 2
            found.setdefault(node, name)
    return dict(sorted(found.items()))


def _read_tables(path: Path) -> list[str]:
    problems: list[str] = []
    listed = read_tables_file(path, str(path), problems)
    if problems:
        raise ConfigError(problems[0].replace("tables_file ", "--tables ", 1), "check the --tables path")
    tables: list[str] = []
    for item in listed:
        try:
            split_table(item.table)
            check_job_name(expanded_name(BLOCK, item.table))
        except ValueError as exc:
            raise ConfigError(f"{item.where}: {exc}", "fix that line of the table list") from None
        if item.table in tables:
            raise ConfigError(f"{item.where}: table {item.table!r} is listed twice", "remove one of them")
        tables.append(item.table)
    if not tables:
        raise ConfigError(f"{path}: the table list has no table", "one table per line, '#' for comments")
    return tables


def import_legacy(properties: Path, tables_path: Path, out: Path, source_type: str = "impala") -> Imported:
    """Build the config text (nothing is written here). Raises ConfigError (exit 2)."""
    try:
        env = read_properties(properties)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the properties file {str(properties)!r}: {exc.strerror or exc}",
            "check the --properties path",
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{exc}", "fix that line of the properties file (it is read, never run)") from None
    tables = _read_tables(tables_path)
    d = _Doc()
    doc = d.doc
    doc.add(tomlkit.comment("tableship config imported from the legacy Bash backup job"))
    doc.add(tomlkit.comment(f"  properties: {', '.join(str(p) for p in env.files)}"))
    doc.add(tomlkit.comment(f"  tables:     {tables_path}"))
    doc.add(tomlkit.comment("Values the import could not infer are '<TODO: ...>' placeholders that"))
    doc.add(tomlkit.comment("'tableship config validate' refuses until filled in; 'TODO: check' marks"))
    doc.add(tomlkit.comment("inferred values worth a look. Docs: docs/migrating.md."))
    for line in env.skipped:
        doc.add(tomlkit.comment(f"not read (never run): {line}"))
    replaced = [n for n in REPLACED if n in env.values]
    if replaced:
        doc.add(tomlkit.comment("Legacy variables tableship replaces by its own mechanisms:"))
        for n in replaced:
            doc.add(tomlkit.comment(f"  {n}: {REPLACED[n]}"))
    doc.add(tomlkit.nl())

    # -- settings
    settings = tomlkit.table()
    settings.add("state_dir", ".tableship")
    mode = env.get("ENV_MODE")
    if mode:
        value = "prod" if mode.strip().lower() in ("prod", "production") else mode.strip().lower()
        d.note(
            settings,
            "environment",
            value,
            f"from ENV_MODE={mode} ({env.where.get('ENV_MODE', '?')}): alerts are sent only when "
            "environment = prod",
        )
    else:
        d.todo(
            settings,
            "environment",
            f"ENV_MODE is {_missing(env, 'ENV_MODE')}: prod sends alerts, others do not",
        )
    logpath = env.values.get("MNAAS_backup_files_logpath")
    folder = _known_folder(logpath)
    if folder:
        d.check(
            settings,
            "log_file",
            f"{folder}/tableship.log",
            f"in the folder of MNAAS_backup_files_logpath ({logpath}); tableship rotates it itself",
        )
    doc.add("settings", settings)

    # -- source
    sources = tomlkit.table(is_super_table=True)
    src = tomlkit.table()
    src.add("type", source_type)
    host = env.get("IMPALAD_HOST")
    if host:
        h, _, port = host.strip().partition(":")
        d.note(src, "host", h, _from(env, "IMPALAD_HOST"))
        if port.isdigit() and int(port) != 21000:
            src.add("port", int(port))
        else:
            src.add(
                tomlkit.comment(
                    "impala-shell talks Beeswax (port 21000); tableship talks HiveServer2: "
                    f"port {21050 if source_type == 'impala' else 10000} by default"
                )
            )
    else:
        d.todo(src, "host", f"Impala daemon host: IMPALAD_HOST is {_missing(env, 'IMPALAD_HOST')}")
    if any("." not in t for t in tables):
        d.note(src, "database", LEGACY_DATABASE, "the legacy script queries mnaas.<Table_name>")
    src.add(tomlkit.comment("TODO: check: auth — impala-shell's defaults were used (no TLS, no Kerberos);"))
    src.add(tomlkit.comment('with Kerberos (impala-shell -k) set auth = "gssapi"'))
    d.todos.append("auth: check")
    src.add("auth", "nosasl")
    sources.add(source_type, src)
    doc.add("sources", sources)

    # -- destinations
    dests = tomlkit.table(is_super_table=True)
    servers = _servers(env) or {2: "backup_server"}
    names = []
    for node, var in servers.items():
        name = f"edgenode{node}"
        names.append(name)
        dest = tomlkit.table()
        dest.add("type", "sftp")
        server = env.get(var)
        user = None
        if server:
            user, _, h = server.strip().rpartition("@")
            d.note(dest, "host", h, f"{_from(env, var)} (edge node {node})")
        else:
            d.todo(dest, "host", f"backup server of edge node {node}: {var} is {_missing(env, var)}")
        if user:
            dest.add("user", user)
        else:
            d.check(
                dest, "user", getpass.getuser(), "scp logged in as the cron user; this is who ran the import"
            )
        dest.add(
            tomlkit.comment("scp used the cron user's keys and ~/.ssh/known_hosts; set key_file if needed")
        )
        loc_var = f"MNAAS_File_processed_location_enode{node}"
        if env.get(loc_var) is None:
            loc_var = "MNAAS_File_processed_location_ZIP"
        loc = env.get(loc_var)
        if loc and loc.startswith("/"):
            d.check(
                dest,
                "path",
                loc.rstrip("/") or "/",
                f"{_from(env, loc_var)}: the folder the legacy restore reads the archives from",
            )
        else:
            d.todo(
                dest, "path", f"absolute folder on the backup server: {loc_var} is {_missing(env, loc_var)}"
            )
        dests.add(name, dest)
    doc.add("destinations", dests)

    # -- defaults: what the legacy script fixed
    defaults = tomlkit.table()
    defaults.add("source", source_type)
    if len(names) > 1:
        d.note(defaults, "destinations", names, "one export, delivered and verified on each edge node")
    else:
        defaults.add("destination", names[0])
    d.note(
        defaults, "partition_column", "partition_date", "the legacy tables are partitioned on partition_date"
    )
    window = tomlkit.inline_table()
    window.update({"unit": "month", "count": 5})
    d.note(
        defaults,
        "window",
        window,
        "the legacy script's fixed five-month slice (whole months before this one)",
    )
    fmt = tomlkit.inline_table()
    fmt.update({"preset": "impala-shell"})
    d.note(defaults, "format", fmt, "the legacy impala-shell -B output: ';', no header, NULL")
    defaults.add(
        tomlkit.comment("legacy names: mnaas_<table>_<MMYYYY>.gz under <folder_name>; tableship's default")
    )
    defaults.add(
        tomlkit.comment("is {table}/{table}_<start>_<end>.csv.gz (set file_name/remote_dir to change)")
    )
    doc.add("defaults", defaults)

    # -- jobs
    jobs = tomlkit.table(is_super_table=True)
    block = tomlkit.table()
    block.add(
        tomlkit.comment(
            f"one job per line of the table list: {', '.join(expanded_name(BLOCK, t) for t in tables[:3])}"
        )
    )
    block.add("tables_file", _relative(tables_path, out))
    jobs.add(BLOCK, block)
    doc.add("jobs", jobs)

    # -- alerts
    alerts = tomlkit.table()
    alerts.add("channels", ["email"])
    mail = tomlkit.table()
    mail.add("type", "email")
    d.note(mail, "host", "localhost", "mailx handed the mail to the local MTA")
    mail.add("port", 25)
    mail.add("security", "none")
    d.check(mail, "from", f"{getpass.getuser()}@{socket.gethostname()}", "mailx's default sender")
    cc = env.get("SDP_ticket_cc_email")
    addresses = [a for a in re.split(r"[,;\s]+", cc or "") if a]
    if addresses:
        d.check(
            mail,
            "to",
            addresses,
            f"{_from(env, 'SDP_ticket_cc_email')}; add the SDP ticket mailbox the legacy script mailed",
        )
    else:
        d.todo(
            mail,
            "to",
            f"who gets the failure mail: SDP_ticket_cc_email is {_missing(env, 'SDP_ticket_cc_email')}",
            as_list=True,
        )
    alerts.add("email", mail)
    doc.add("alerts", alerts)
    return Imported(tomlkit.dumps(doc), [expanded_name(BLOCK, t) for t in tables], d.todos, d.placeholders)


def _missing(env: ShellVars, name: str) -> str:
    if name in env.unresolved:
        return f"not known ({env.unresolved[name]})"
    return "not set"


def _known_folder(path: str | None) -> str | None:
    """The folder part of a path whose folder part is plain text (no unexpanded $ or `)."""
    if not path:
        return None
    folder = os.path.dirname(path)
    if not folder.startswith("/") or "$" in folder or "`" in folder:
        return None
    return folder


def _relative(path: Path, out: Path) -> str:
    """``path`` relative to the config's folder when it lies under it, else absolute."""
    p, base = path.resolve(), out.resolve().parent
    try:
        return str(p.relative_to(base))
    except ValueError:
        return str(p)
