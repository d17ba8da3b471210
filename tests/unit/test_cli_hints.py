"""One hint per failure: a failure without its own hint gets the same words whether
``run`` reports it for a job or ``main`` for the command; ``--debug`` is read by main
from the command line (no global)."""

from __future__ import annotations

from tableship.cli.commands import debug_requested, error_text
from tableship.core.errors import JobError, UsageError


def test_a_failure_without_a_hint_gets_one_hint():
    text = error_text(JobError("the source is down"))
    assert text == "the source is down — fix the cause, then re-run the same command (--debug shows details)"
    assert error_text(UsageError("no such option")) == "no such option — see 'tableship --help'"


def test_a_failure_with_its_own_hint_keeps_it():
    assert error_text(JobError("the lock is held", "wait for the other run")) == (
        "the lock is held — wait for the other run"
    )


def test_debug_is_read_from_the_command_line():
    assert debug_requested(["--debug", "status"])
    assert not debug_requested(["status"])
    assert not debug_requested(["--no-such-option"])
