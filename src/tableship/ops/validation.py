"""``tableship config validate``: every problem of the config file and of this machine
(drivers, local destination folders), else one line per job with the window it would
back up today. The CLI only prints the report."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

from tableship.backup.plan import choose_window
from tableship.config.loader import load_config
from tableship.config.validate import environment_problems
from tableship.core.errors import EXIT_OK, EXIT_USAGE, ConfigError


@dataclass
class ValidationReport:
    exit_code: int = EXIT_OK
    problems: list[str] = field(default_factory=list)  # each printed as one "Error: …" line
    lines: list[str] = field(default_factory=list)  # the summary of a valid config


def validate_config(path: str | os.PathLike | None, today: dt.date | None = None) -> ValidationReport:
    try:
        config = load_config(path)
    except ConfigError as exc:
        return ValidationReport(exc.exit_code, list(exc.problems))
    missing = environment_problems(config)  # this machine, not the file: drivers, local folders
    if missing:
        return ValidationReport(EXIT_USAGE, [f"{config.path}: {p}" for p in missing])
    today = today or dt.date.today()
    lines = [
        f"OK: {config.path}: {len(config.jobs)} job(s), {len(config.sources)} source(s), "
        f"{len(config.destinations)} destination(s)"
    ]
    lines += [
        f"  {job.name}: {job.table} from {job.source} to {', '.join(job.destinations)}, "
        f"window today {choose_window(job, today, None, None)}"
        for job in config.jobs.values()
    ]
    return ValidationReport(lines=lines)
