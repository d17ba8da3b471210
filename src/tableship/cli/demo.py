"""Demo warehouse and demo configuration used by ``tableship demo``.

:func:`create_demo_warehouse` builds a DuckDB file with one realistic, CDR-like
telecom mediation table (``mnaas.customer_traffic``).  All rows are generated
inside DuckDB with set-based SQL (``range()`` + ``hash()`` expressions), so even
millions of rows take only seconds and no Python row loop is involved.  The
content is fully determined by ``seed``, ``today``, ``rows`` and ``months``:
every pseudo-random value is derived from ``hash(row, seed, salt)``, which --
unlike ``random()`` -- is independent of thread scheduling.

The data deliberately contains the awkward values a CSV backup has to survive:
non-ASCII text, ``;`` (the default delimiter), double quotes, embedded
newlines, NULLs next to empty strings, exact decimals, microsecond timestamps
and NULL integers.

:func:`demo_config_text` returns the commented ``tableship.toml`` that
``tableship demo`` writes next to the demo warehouse.
"""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path

from tableship.core.window import add_months

__all__ = [
    "DEMO_TABLE",
    "DEMO_SCHEMA",
    "DEMO_TABLE_NAME",
    "DEMO_COLUMNS",
    "demo_date_range",
    "create_demo_warehouse",
    "demo_config_text",
]

DEMO_SCHEMA = "mnaas"
DEMO_TABLE_NAME = "customer_traffic"
DEMO_TABLE = f"{DEMO_SCHEMA}.{DEMO_TABLE_NAME}"

#: (name, DuckDB type) of the 14 demo columns, in table order.
DEMO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cdr_id", "BIGINT"),
    ("partition_date", "DATE"),
    ("event_ts", "TIMESTAMP"),
    ("msisdn", "VARCHAR"),
    ("imsi", "VARCHAR"),
    ("customer_name", "VARCHAR"),
    ("service_type", "VARCHAR"),
    ("direction", "VARCHAR"),
    ("duration_sec", "INTEGER"),
    ("bytes_up", "BIGINT"),
    ("bytes_down", "BIGINT"),
    ("charge_amount", "DECIMAL(18,4)"),
    ("cell_id", "VARCHAR"),
    ("roaming", "BOOLEAN"),
)

# Ordinary customer names: people and companies, many of them non-ASCII
# (Latin-1, Nordic, Polish, Turkish, Greek, Cyrillic, CJK and one emoji
# outside the BMP).
_NAMES: tuple[str, ...] = (
    "Müller Logistik GmbH",
    "Øster Shipping A/S",
    "東京テレコム株式会社",
    "José García",
    "Anna Schmidt",
    "Jürgen Weiß",
    "Société Générale de Transport",
    "Åkesson & Söner AB",
    "Łódź Fleet Sp. z o.o.",
    "Çelik İnşaat A.Ş.",
    "Ελληνικές Μεταφορές Α.Ε.",
    "Москва Телеком",
    "Zürcher Stadtwerke",
    "François Dubois",
    "Nguyễn Văn An",
    "O'Reilly Media",
    "Smørrebrød ApS",
    "北京物联网科技有限公司",
    "Acme Corp",
    "Globex Corporation",
    "Initech",
    "Umbrella Industries",
    "Vandelay Industries",
    "Northwind Traders",
    "Contoso Ltd",
    "Fabrikam Inc",
    "Hooli",
    "Stark Industries",
    "Deutsche Bahn Connect",
    "Ørsted Wind Services",
    "Café Olé S.L.",
    "Signal 📶 Mobile",
    "Maria Rossi",
    "Peter Jensen",
    "Sofia Lindqvist",
    "Erik Søndergaard",
)

# Names that are hostile to naive CSV writers/readers: the default delimiter,
# double quotes, embedded newlines and combinations thereof.
_AWKWARD_NAMES: tuple[str, ...] = (
    "Smith; Jones & Partners",
    'ACME "Global" Ltd',
    "Nordic\nTelecom AB",
    '"Quoted" Traders; Ltd',
    'Line One\nLine Two; "Three"',
    'Size 12" Displays',
    "Müller; Schulz\nLogistik",
    ";",
    '"',
    "Dual\n\nNewline GmbH",
)

# German mobile prefixes (after the country code 49).
_MSISDN_PREFIXES: tuple[str, ...] = (
    "151",
    "152",
    "157",
    "159",
    "160",
    "162",
    "163",
    "170",
    "171",
    "172",
    "175",
    "176",
    "177",
    "178",
    "179",
)

# MCC 262 (Germany) + MNC.
_IMSI_PREFIXES: tuple[str, ...] = ("26201", "26202", "26203", "26207")

_SUBSCRIBERS = 100_000


def _month_start(day: datetime.date, months_back: int) -> datetime.date:
    """First day of the month ``months_back`` months before ``day``'s month."""
    return datetime.date(*add_months(day.year, day.month, -months_back), 1)


def demo_date_range(
    today: datetime.date | None = None, months: int = 12
) -> tuple[datetime.date, datetime.date]:
    """Inclusive ``(first, last)`` partition dates of the demo table.

    ``first`` is the first day of the month ``months`` months before today's
    month, ``last`` is yesterday.
    """
    if today is None:
        today = datetime.date.today()
    if months < 0:
        raise ValueError("months must be >= 0")
    first = _month_start(today, months)
    last = today - datetime.timedelta(days=1)
    if last < first:
        raise ValueError(
            f"empty demo date range: months={months} and today={today} leave no day before today"
        )
    return first, last


def _sql_list(values: tuple[str, ...]) -> str:
    """A DuckDB ``VARCHAR[]`` literal (string literals may span lines)."""
    return "([" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]::VARCHAR[])"


def _remove_db_files(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def create_demo_warehouse(
    path: Path, *, rows: int = 600_000, today: datetime.date | None = None, months: int = 12, seed: int = 42
) -> int:
    """Create (or replace) a DuckDB file at `path` with table `mnaas.customer_traffic`; return the row count.

    Rows are spread evenly over the partition dates from the first day of the
    month ``months`` months before ``today``'s month through yesterday
    (``ceil(rows / days)`` rows per day, so at least ``rows`` rows in total).
    ``cdr_id`` runs 1..N in (partition_date, cdr_id) order, which is also the
    insertion order.  Same arguments -> same content.
    """
    import duckdb  # lazily: heavy, and only the demo command needs it

    if rows < 1:
        raise ValueError("rows must be >= 1")
    seed = int(seed)
    first, last = demo_date_range(today, months)
    days = (last - first).days + 1
    per_day = math.ceil(rows / days)
    total = per_day * days

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_db_files(path)

    columns_ddl = ",\n    ".join(f"{name} {typ}" for name, typ in DEMO_COLUMNS)
    names = _sql_list(_NAMES)
    awkward = _sql_list(_AWKWARD_NAMES)
    msisdn_prefixes = _sql_list(_MSISDN_PREFIXES)
    imsi_prefixes = _sql_list(_IMSI_PREFIXES)
    n_names, n_awkward = len(_NAMES), len(_AWKWARD_NAMES)
    n_msisdn, n_imsi = len(_MSISDN_PREFIXES), len(_IMSI_PREFIXES)

    # Every random quantity is a slice of a 64-bit hash(row/subscriber, seed,
    # salt); `u(x)` style uniforms are (h % 1e6) / 1e6.
    insert_sql = f"""
INSERT INTO {DEMO_TABLE}
WITH base AS (
    SELECT
        i + 1 AS cdr_id,
        DATE '{first.isoformat()}' + (i // {per_day})::INTEGER AS partition_date,
        hash(i, {seed}, 1) AS h1,
        hash(i, {seed}, 2) AS h2,
        hash(i, {seed}, 3) AS h3,
        (hash(i, {seed}, 4) % {_SUBSCRIBERS})::BIGINT AS sub
    FROM range({total}) AS t(i)
),
sub AS (
    SELECT *, hash(sub, {seed}, 10) AS hs, hash(sub, {seed}, 11) AS hs2
    FROM base
),
svc AS (
    SELECT *,
        CASE
            WHEN h1 % 100 < 45 THEN 'data'
            WHEN h1 % 100 < 70 THEN 'voice'
            WHEN h1 % 100 < 88 THEN 'sms'
            WHEN h1 % 100 < 91 THEN 'mms'
            ELSE 'roaming'
        END AS service_type,
        ((h1 // 100) % 1000000) / 1000000.0 AS u1,
        ((h1 // 100000000) % 1000000) / 1000000.0 AS u2,
        ((h2 // 1000) % 1000000) / 1000000.0 AS u3,
        (h2 // 1000000000000) % 100 AS p_dir,
        h2 % 1000 AS p_misc,
        (h3 % 86400000000)::BIGINT AS us_of_day,
        (h3 // 86400000000) % 100 AS p_ts
    FROM sub
),
measures AS (
    SELECT *,
        CASE service_type
            WHEN 'voice'   THEN 1 + (u1 * u1 * 3599)::INTEGER
            WHEN 'data'    THEN 1 + (u1 * 7199)::INTEGER
            WHEN 'mms'     THEN (u1 * 5)::INTEGER
            WHEN 'roaming' THEN 1 + (u1 * u1 * 1799)::INTEGER
            ELSE NULL
        END AS duration_sec,
        CASE service_type
            WHEN 'data'    THEN (u2 * u2 * u2 * 40000000)::BIGINT
            WHEN 'roaming' THEN (u2 * u2 * u2 * 8000000)::BIGINT
            WHEN 'mms'     THEN CASE WHEN p_dir < 55 THEN 10000 + (u2 * 290000)::BIGINT ELSE 0 END
            WHEN 'sms'     THEN CASE WHEN p_dir < 55 THEN 20 + (u2 * 120)::BIGINT ELSE 0 END
            ELSE 0
        END AS bytes_up,
        CASE service_type
            WHEN 'data'    THEN (u3 * u3 * u3 * 900000000)::BIGINT
            WHEN 'roaming' THEN (u3 * u3 * u3 * 150000000)::BIGINT
            WHEN 'mms'     THEN CASE WHEN p_dir < 55 THEN 0 ELSE 10000 + (u3 * 290000)::BIGINT END
            WHEN 'sms'     THEN CASE WHEN p_dir < 55 THEN 0 ELSE 20 + (u3 * 120)::BIGINT END
            ELSE 0
        END AS bytes_down
    FROM svc
)
SELECT
    cdr_id,
    partition_date,
    make_timestamp(epoch_us(partition_date::TIMESTAMP)
        + CASE WHEN p_ts < 12 THEN us_of_day - us_of_day % 1000000 ELSE us_of_day END)
        AS event_ts,
    '49' || {msisdn_prefixes}[1 + (hs % {n_msisdn})::INTEGER]
        || lpad(((hs // 100) % 100000000)::VARCHAR, 8, '0') AS msisdn,
    {imsi_prefixes}[1 + ((hs // 10000000000) % {n_imsi})::INTEGER]
        || lpad(((hs2 // 10000) % 10000000000)::VARCHAR, 10, '0') AS imsi,
    CASE
        WHEN hs2 % 10000 < 100 THEN NULL
        WHEN hs2 % 10000 < 160 THEN ''
        WHEN hs2 % 10000 < 410 THEN {awkward}[1 + ((hs2 // 10000) % {n_awkward})::INTEGER]
        ELSE {names}[1 + ((hs2 // 10000) % {n_names})::INTEGER]
    END AS customer_name,
    service_type,
    CASE
        WHEN service_type = 'data' THEN CASE WHEN p_dir < 85 THEN 'MO' ELSE 'MT' END
        ELSE CASE WHEN p_dir < 52 THEN 'MO' ELSE 'MT' END
    END AS direction,
    duration_sec,
    bytes_up,
    bytes_down,
    (CASE
        WHEN p_misc < 150 THEN 0
        WHEN service_type = 'voice' THEN duration_sec * 19 + 100
        WHEN service_type = 'sms' THEN 900
        WHEN service_type = 'mms' THEN 3900
        WHEN service_type = 'data' THEN (bytes_up + bytes_down) // 20408 + 1
        ELSE 4900 + (bytes_up + bytes_down) // 2041 + coalesce(duration_sec, 0) * 99
    END)::DECIMAL(18, 0) * 0.0001::DECIMAL(5, 4) AS charge_amount,
    CASE
        WHEN p_misc >= 980 THEN NULL
        ELSE '262-0' || (1 + (h3 // 8640000000000) % 3)::VARCHAR
            || '-' || lpad((1 + (h3 // 86400000000000) % 65000)::VARCHAR, 5, '0')
            || '-' || lpad(((h3 // 1000000) % 1000000)::VARCHAR, 6, '0')
    END AS cell_id,
    service_type = 'roaming' OR p_misc BETWEEN 150 AND 169 AS roaming
FROM measures
"""

    # No ORDER BY: range() yields rows in cdr_id (and hence partition_date)
    # order and, with DuckDB's default preserve_insertion_order = true, the
    # INSERT keeps that order -- without the cost of a sort.
    con = duckdb.connect(str(path))
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET memory_limit = '1GB'")
        con.execute(f"SET temp_directory = {_sql_str(str(path) + '.tmp')}")
        con.execute(f"CREATE SCHEMA {DEMO_SCHEMA}")
        con.execute(f"CREATE TABLE {DEMO_TABLE} (\n    {columns_ddl}\n)")
        con.execute(insert_sql)
        count = con.execute(f"SELECT count(*) FROM {DEMO_TABLE}").fetchall()[0][0]  # count(*): always one row
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        _remove_db_files(path)
        raise
    con.close()
    return int(count)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _toml_str(value: str) -> str:
    """A TOML basic string."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def demo_config_text(*, warehouse: str = "warehouse.duckdb", backup_dir: str = "backup-server") -> str:
    """The commented tableship.toml written by `tableship demo`."""
    warehouse = os.fspath(warehouse)
    backup_dir = os.fspath(backup_dir)
    return f"""\
# tableship configuration (written by `tableship demo`).
#
# tableship backs up rolling date-window slices of warehouse tables as
# compressed CSV files on a backup host.  This file has four parts:
#   [settings]          where tableship keeps its own state and log
#   [sources.NAME]      warehouses to read from (DuckDB, Impala, Hive, ...)
#   [destinations.NAME] where the backup files go (local directory, SFTP)
#   [defaults]          settings every job inherits unless it overrides them
#   [jobs.NAME]         one backup job per table
#
# Any string value may contain ${{VAR}}; it is replaced by the environment
# variable VAR when the config is loaded.  Use it for secrets (passwords,
# key paths) instead of writing them into this file, e.g.
#   password = "${{IMPALA_PASSWORD}}"

[settings]
# Directory where tableship keeps its run state.
state_dir = ".tableship"
# Log file.
log_file = ".tableship/tableship.core.log"

# ---------------------------------------------------------------------------
# Sources: the warehouses tables are read from.
# ---------------------------------------------------------------------------

[sources.warehouse]
# The demo warehouse: a local DuckDB database file.
type = "duckdb"
path = {_toml_str(warehouse)}

# An Impala source instead (needs `pip install tableship[impala]`).  To switch,
# uncomment it and set `source = "impala"` in [defaults] or in a job:
#
# [sources.impala]
# type = "impala"
# host = "impala-coordinator.example.com"
# port = 21050                 # Impala's HiveServer2 protocol port
# auth = "nosasl"              # or "ldap" (with user/password) / "gssapi" (Kerberos)
# # user = "backup"
# # password = "${{IMPALA_PASSWORD}}"

# ---------------------------------------------------------------------------
# Destinations: where the backup files are written.
# ---------------------------------------------------------------------------

[destinations.backup]
# A local directory standing in for the backup server in this demo.
type = "local"
path = {_toml_str(backup_dir)}

# A real backup host over SFTP instead (needs `pip install tableship[sftp]`).
# To switch, uncomment it and set `destination = "sftp_backup"` in [defaults]:
#
# [destinations.sftp_backup]
# type = "sftp"
# host = "backup.example.com"
# port = 22
# user = "tableship"
# key_file = "${{HOME}}/.ssh/id_ed25519"        # private key used to log in
# known_hosts = "${{HOME}}/.ssh/known_hosts"    # host keys are verified against this
# path = "/srv/backup/warehouse"               # base directory on the backup host

# ---------------------------------------------------------------------------
# Defaults: inherited by every [jobs.*] entry; a job may override any key.
# ---------------------------------------------------------------------------

[defaults]
# Names of the [sources.*] and [destinations.*] entries to use.
source = "warehouse"
destination = "backup"
# DATE (or date-like) column the backup windows are cut on.
partition_column = "partition_date"
# The rolling window: the `count` whole units before the current one.
# {{ unit = "month", count = 5 }} = the 5 whole calendar months before the
# current month, in ONE file (e.g. run in November: June..October in one
# archive; the current month is never shipped while it is still incomplete).
# Every run date of a month gives the same window: a daily cron exports it
# again every day, and skips the upload when nothing changed
# (docs/scheduling.md).
window = {{ unit = "month", count = 5 }}
# Name of each backup file.  Placeholders:
#   {{job}}            the job name (the NAME in [jobs.NAME])
#   {{table}}          the table name without its database/schema
#   {{database}}       the database/schema of the table
#   {{start:FMT}}      first day of the slice (strftime format, e.g. %Y%m%d)
#   {{end:FMT}}        last day of the slice (inclusive)
#   {{run_date:FMT}}   the day tableship runs
# The extension must match the compression codec (.csv.gz / .csv.zst / .csv):
# `tableship config validate` refuses a mismatch.
file_name = "{{table}}_{{start:%Y%m%d}}_{{end:%Y%m%d}}.csv.gz"
# Directory below the destination path; same placeholders as file_name.
remote_dir = "{{table}}"
# CSV dialect: `;`-delimited, with a header line, NULL written as an empty
# field; "minimal" quoting quotes only the fields that need it (those
# containing the delimiter, a quote or a line break).
format = {{ delimiter = ";", header = true, null = "", quoting = "minimal" }}
# Compression codec: "gzip", "zstd" or "none", with an optional `level`.
# gzip accepts levels 1-9; without a level tableship picks, block by block, the
# strongest level (2-6) that keeps up with the source.
# e.g. compression = {{ codec = "gzip", level = 6 }}
#      compression = {{ codec = "zstd" }}
compression = {{ codec = "gzip" }}
# Keep the local copy of each compressed file after it has been transferred.
keep_local = false

# ---------------------------------------------------------------------------
# Jobs: one per table.  Any [defaults] key can be overridden here.
# ---------------------------------------------------------------------------

[jobs.customer_traffic]
# Fully qualified table (database/schema.table) in the source.
table = "mnaas.customer_traffic"
# e.g. back up the 12 whole months before the current one, in one file, for
# this table only:
# window = {{ unit = "month", count = 12 }}
"""
