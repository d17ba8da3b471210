"""What the caller hands the runner: the monitor around each job and the after-run hooks.

``backup/`` never imports ``ops/`` or ``catalog/``: alerting (``ops.alerts``), pruning
after a successful run (``catalog.retention``) and the status outputs (``ops.outputs``)
are wired by the caller (``tableship.ops.wiring``, which the package root's
``run_jobs`` and the CLI use). :class:`RunHooks` with its defaults runs backups with no
alerts, no pruning and no outputs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tableship.backup.plan import Plan
from tableship.config.spec import JobSpec
from tableship.core.errors import TableshipError
from tableship.ledger.state import Run, StateStore


class Monitor:
    """The hooks the runner calls around each job; this base does nothing.

    A monitor must never raise: a failing alert channel is logged and never hides the
    job's own error or changes the exit code (see ``ops.alerts.policy.AlertMonitor``).
    """

    def job_started(self, job: JobSpec, plan: Plan | None) -> None:
        pass

    def job_succeeded(self, job: JobSpec, plan: Plan | None, run: Run | None) -> None:
        pass

    def job_failed(
        self, job: JobSpec, plan: Plan | None, run: Run | None, error: TableshipError | None
    ) -> None:
        pass

    def ledger_failed(self, jobs: Sequence[str], plans: Mapping[str, Plan], error: TableshipError) -> None:
        """The ledger cannot be used: nothing of ``jobs`` can be recorded."""


#: called under the job's lock after its last window succeeded (prune after run); an
#: Exception it raises is logged and never changes the backup's outcome
AfterJob = Callable[[StateStore, JobSpec], Any]
#: called once after a batch whose ledger stayed usable, with the run date (status outputs);
#: an Exception it raises is logged as a warning
AfterBatch = Callable[[StateStore, dt.date], Any]


def _no_monitor(store: StateStore) -> Monitor:
    return Monitor()


@dataclass(frozen=True)
class RunHooks:
    """``monitor(store)`` builds the run's monitor once the ledger is open."""

    monitor: Callable[[StateStore], Monitor] = _no_monitor
    after_job: tuple[tuple[str, AfterJob], ...] = ()  # (what, hook): "prune after the run", ...
    after_batch: tuple[tuple[str, AfterBatch], ...] = ()  # (what, hook): "status outputs", ...
