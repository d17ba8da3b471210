"""Alerting around runs. The runner calls a Monitor at job start, success and failure.

A monitor must never raise: a failing channel is logged and never hides the job's own
error or changes the exit code.
"""

from __future__ import annotations

import logging

log = logging.getLogger("tableship")


class Monitor:
    """No-op base monitor; the incident policy (issue #5) builds on these hooks."""

    def __init__(self, config, store):
        self.config = config
        self.store = store

    def job_started(self, job, plan) -> None:
        pass

    def job_succeeded(self, job, plan, run) -> None:
        pass

    def job_failed(self, job, plan, run, error) -> None:
        pass


def make_monitor(config, store) -> Monitor:
    return Monitor(config, store)
