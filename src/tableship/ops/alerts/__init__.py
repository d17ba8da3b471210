"""Alerting around runs. The runner calls a Monitor at job start, success and failure.

A monitor must never raise: a failing channel is logged and never hides the job's own
error or changes the exit code.

Modules: :mod:`.policy` (the incident policy, :class:`AlertMonitor`), :mod:`.incidents`
(incident and outbox tables in the state store), :mod:`.event` (message content),
one module per channel type (:mod:`.email`, :mod:`.webhook`, :mod:`.command`,
:mod:`.ping`), :mod:`.logtail` (the run's last log lines) and :mod:`.redact`.
"""

from __future__ import annotations

import logging

log = logging.getLogger("tableship")


class Monitor:
    """No-op base monitor: the hooks the runner calls."""

    def __init__(self, config, store):
        self.config = config
        self.store = store

    def job_started(self, job, plan) -> None:
        pass

    def job_succeeded(self, job, plan, run) -> None:
        pass

    def job_failed(self, job, plan, run, error) -> None:
        pass

    def ledger_failed(self, jobs, plans, error) -> None:
        """The ledger cannot be used: nothing of ``jobs`` can be recorded (see AlertMonitor)."""


def make_monitor(config, store) -> Monitor:
    """The incident-policy monitor (falls back to the no-op one if it cannot start)."""
    try:
        from tableship.ops.alerts.policy import AlertMonitor

        return AlertMonitor(config, store)
    except Exception as exc:  # alerting must never stop backups
        log.error("alerting disabled: could not start the alert monitor: %s", exc)
        log.debug("traceback", exc_info=True)
        return Monitor(config, store)
