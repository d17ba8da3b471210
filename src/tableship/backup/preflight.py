"""Before a run exports anything: can it use everything it will need?

An unusable destination (a missing mount, a missing root folder, no write permission, a
host that does not answer, a missing ``tableship[sftp]``) must cost seconds, not a whole
export first. :func:`preflight` checks each destination the run will use once — with the
destination's own API (``put_bytes`` + ``delete`` of a hidden temporary in its root, so the
errors are the same ones an upload gives) and its retry policy — and each source's
optional driver. The runner fails the jobs that cannot work before exporting them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tableship.backup.pipeline import retrying
from tableship.config.spec import DestinationSpec, JobSpec
from tableship.config.validate import missing_driver
from tableship.core.errors import Interrupted, MissingExtraError, TableshipError
from tableship.destinations.base import open_destination, temp_name

log = logging.getLogger("tableship")

PROBE_OWNER = "preflight"


def check_destination_usable(dest: DestinationSpec) -> None:
    """Raise the destination's own error if it cannot be written to (retrying transient ones)."""
    missing = missing_driver("destination", dest.type)
    if missing:
        raise MissingExtraError(f"destination {dest.name!r} (type {dest.type})", missing[1], missing[0])

    def probe() -> None:
        target = open_destination(dest.name, dest.settings)
        try:
            probe_name = temp_name(
                "preflight", PROBE_OWNER
            )  # a hidden temporary: never listed, never an archive
            target.put_bytes(b"", probe_name, PROBE_OWNER)
            target.delete(probe_name)
        finally:
            try:
                target.close()
            except Exception:  # closing never hides the probe's outcome
                log.debug("close failed", exc_info=True)

    retrying(dest.retries, f"checking destination {dest.name!r}")(probe)


def preflight(jobs: Iterable[JobSpec]) -> dict[str, tuple[str, TableshipError]]:
    """``{job name: (phase, error)}`` for the jobs that cannot run, ``phase`` being the one
    whose work cannot be done ("export" for a source, "upload" for a destination); each
    destination is probed once. A job is stopped only when none of its destinations can be
    written to."""
    by_dest: dict[str, TableshipError | None] = {}
    out: dict[str, tuple[str, TableshipError]] = {}
    for job in jobs:
        src = job.source
        missing = missing_driver("source", src.type)
        if missing:
            out[job.name] = (
                "export",
                MissingExtraError(f"source {src.name!r} (type {src.type})", missing[1], missing[0]),
            )
            continue
        for dest in job.destinations:
            if dest.name not in by_dest:
                try:
                    check_destination_usable(dest)
                    by_dest[dest.name] = None
                except Interrupted:  # a signal ends the whole command
                    raise
                except TableshipError as exc:  # logged by the runner, once per job it stops
                    by_dest[dest.name] = exc
        errors = [by_dest[d.name] for d in job.destinations]
        # a job with several destinations still exports while one of them can be written to:
        # that one gets its verified copy, the others' deliveries fail (and resume later)
        if all(e is not None for e in errors):
            first = errors[0]
            assert first is not None
            out[job.name] = ("upload", first)
    return out
