"""Job selection: which configured jobs a command works on (validated before anything runs)."""

from __future__ import annotations

from collections.abc import Sequence

from tableship.config.models import Config
from tableship.core.errors import UsageError


def select_jobs(config: Config, names: Sequence[str] | None, all_jobs: bool = False) -> list[str]:
    """Validate the job names (all when none are given); unknown names raise before anything runs."""
    if names and all_jobs:
        raise UsageError(
            "pass job names or --all, not both", "e.g. 'tableship run JOB' or 'tableship run --all'"
        )
    if not names:
        return list(config.jobs)
    for n in names:
        config.job(n)
    return list(dict.fromkeys(names))
