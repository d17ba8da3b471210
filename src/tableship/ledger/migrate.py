"""``tableship state migrate --to postgresql://…``: copy an SQLite ledger's whole history into
a PostgreSQL ledger, so a single host's past moves with it when it starts sharing.

The SQLite ledger is read as a reader reads it (an older schema is migrated in memory; the
file is never written); the target is opened as a writer (created and migrated to the same
schema version) and must hold no runs yet. Every table of the ledger — whatever steps added
them, found from the file itself, so tables added by later migrations move too — is copied
row by row with its ids in one transaction (all or nothing), then each identity column's
sequence is moved past the highest id. The migrations log and the lock rows (``job_locks``)
stay the target's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tableship.core.errors import UsageError
from tableship.ledger import postgres
from tableship.ledger.schema import IDENTITY, PG_VERSION_TABLE, Ledger

log = logging.getLogger("tableship")

#: not history: the target keeps its own
SKIP = {"migrations", "job_locks", PG_VERSION_TABLE}


def migrate_ledger(settings: Any, to_url: str, echo: Callable[[str], None] = print) -> dict[str, int]:
    """Copy the SQLite ledger under ``settings.state_dir`` into ``to_url``; rows per table."""
    if not postgres.is_url(to_url):
        raise UsageError(
            f"--to must be a PostgreSQL URL, not {to_url.split(':', 1)[0]!r}",
            "e.g. --to postgresql://tableship@db.example:5432/tableship",
        )
    source = Ledger(settings.state_dir, readonly=True)
    target = Ledger(settings.state_dir, url=to_url)
    if not source.path.exists():
        raise UsageError(
            f"there is no SQLite ledger at {source.path} to migrate",
            "point settings.state_dir at the folder that holds state.db",
        )
    try:
        src = source.connect()
        dst = target.connect()  # created and migrated to this tableship's schema
        if dst.execute("SELECT count(*) FROM runs").fetchone()[0]:
            raise UsageError(
                f"the ledger {target.where} already holds runs: nothing was copied",
                "migrate into an empty database (or a new one: CREATE DATABASE …)",
            )
        tables = [
            r[0]
            for r in src.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
            if r[0] not in SKIP
        ]
        counts: dict[str, int] = {}
        with target.transaction() as db:
            for table in tables:
                cols = [d[0] for d in src.execute(f'SELECT * FROM "{table}" LIMIT 0').description]
                names = ", ".join(cols)
                rows = [tuple(r) for r in src.execute(f'SELECT {names} FROM "{table}"')]
                if rows:
                    db.executemany(
                        f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})", rows
                    )
                counts[table] = len(rows)
                col = IDENTITY.get(table)
                if col:
                    db.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'), "
                        f"(SELECT COALESCE(MAX({col}), 0) + 1 FROM {table}), false)"
                    )
        for table, n in counts.items():
            echo(f"{table}: {n} row{'s' if n != 1 else ''}")
        echo(f"copied the ledger {source.path} into {target.where}; set settings.state to use it")
        log.info("ledger %s copied into %s: %s", source.path, target.where, counts)
        return counts
    finally:
        source.close()
        target.close()
