"""A signal that a library swallows (a C extension checking for signals itself, or an
exception raised while Python runs a finalizer) still ends the command as interrupted."""

from __future__ import annotations

import signal

import pytest

from tableship.core import interrupts
from tableship.core.errors import Interrupted, SourceError


def swallow(signum: int) -> None:
    try:
        interrupts.on_signal(signum)
    except Interrupted:
        pass  # what a careless handler or a finalizer does


def test_a_swallowed_signal_is_raised_at_the_next_checkpoint():
    interrupts.checkpoint()  # nothing pending: no-op
    swallow(signal.SIGTERM)
    assert interrupts.pending() == signal.SIGTERM
    with pytest.raises(Interrupted) as info:
        interrupts.checkpoint()
    assert info.value.exit_code == 128 + signal.SIGTERM


def test_a_driver_error_after_a_signal_is_the_signal():
    err = SourceError("the query failed: interrupted")
    assert interrupts.as_interrupt(err) is err
    swallow(signal.SIGHUP)
    turned = interrupts.as_interrupt(err)
    assert isinstance(turned, Interrupted) and turned.exit_code == 128 + signal.SIGHUP


def test_the_first_signal_is_kept_and_install_forgets_it():
    swallow(signal.SIGHUP)
    swallow(signal.SIGTERM)
    assert interrupts.pending() == signal.SIGHUP
    old = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    try:
        interrupts.install()
        assert interrupts.pending() is None
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_main_never_exits_0_after_a_swallowed_signal(monkeypatch, capsys):
    from tableship.cli import commands as cli

    def fake_main(*args, **kwargs):
        swallow(signal.SIGTERM)  # the command itself "succeeds"

    monkeypatch.setattr(cli.cli, "main", fake_main)
    old = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    try:
        with pytest.raises(SystemExit) as info:
            cli.main(["status"])
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert info.value.code == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert err.count("Error: interrupted by SIGTERM") == 1
