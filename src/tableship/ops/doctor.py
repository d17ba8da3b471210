"""Pre-flight checks of a configured destination: ``tableship check-destination NAME``.

The destination itself knows what to check (``Destination.check()``): for SFTP the
connection, the host key against ``known_hosts``, the login, the root folder, write
permission (a temporary file created, renamed and removed), free space (statvfs or
``df``) and which verification method will be used; for a local folder its existence,
write permission and free space. Nothing else is touched.
"""

from __future__ import annotations

from tableship.config.models import Config
from tableship.core.errors import TableshipError, UsageError
from tableship.destinations.base import open_destination

Check = tuple[str, bool, str]


def check_destination(config: Config, name: str) -> list[Check]:
    """Run the checks of destination ``name``; a failure is a FAIL row, never an exception
    (only an unknown name or a missing optional dependency raise)."""
    if name not in config.destinations:
        known = ", ".join(sorted(config.destinations)) or "none"
        raise UsageError(f"unknown destination {name!r}", f"configured destinations: {known}")
    dest = open_destination(name, config.destinations[name])
    try:
        try:
            return list(dest.check())
        except TableshipError as exc:
            return [("destination", False, exc.line())]
    finally:
        try:
            dest.close()
        except Exception:  # closing never hides the checks' outcome
            pass


def format_checks(results: list[Check]) -> list[str]:
    """``OK  <check>  <detail>`` / ``FAIL <check> <detail>`` lines."""
    return [
        f"OK  {check}  {detail}".rstrip() if ok else f"FAIL {check} {detail}".rstrip()
        for check, ok, detail in results
    ]


def all_ok(results: list[Check]) -> bool:
    return all(ok for _, ok, _ in results)
