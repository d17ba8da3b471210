"""Alerting around runs. The runner calls a Monitor (``backup.hooks.Monitor``) at job
start, success and failure; :func:`make_monitor` builds the one the caller hands it.

A monitor must never raise: a failing channel is logged and never hides the job's own
error or changes the exit code.

Modules: :mod:`.policy` (the incident policy, :class:`AlertMonitor`), :mod:`.incidents`
(incident and outbox tables in the state store), :mod:`.event` (message content),
one module per channel type (:mod:`.email`, :mod:`.webhook`, :mod:`.command`,
:mod:`.ping`), :mod:`.logtail` (the run's last log lines) and :mod:`.redact`.
"""

from __future__ import annotations

import logging

from tableship.backup.hooks import Monitor
from tableship.config.models import Config
from tableship.ledger.state import StateStore
from tableship.ops.alerts.policy import AlertMonitor

__all__ = ["AlertMonitor", "Monitor", "make_monitor"]

log = logging.getLogger("tableship")


def make_monitor(config: Config, store: StateStore) -> Monitor:
    """The incident-policy monitor (falls back to the no-op one if it cannot start)."""
    try:
        return AlertMonitor(config, store)
    except Exception as exc:  # alerting must never stop backups
        log.error("alerting disabled: could not start the alert monitor: %s", exc)
        log.debug("traceback", exc_info=True)
        return Monitor()
