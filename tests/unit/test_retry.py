"""core.retry: the one back-off policy (sources, destinations and alert channels use it)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest

from tableship.core.retry import backoff


@dataclass(frozen=True)
class Policy:
    attempts: int = 4
    initial_delay: float = 2.0
    max_delay: float = 5.0


class Flaky(Exception):
    pass


def test_waits_grow_exponentially_up_to_max_with_bounded_jitter():
    seen: list[tuple[int, float]] = []
    slept: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. tenacity's DeprecationWarning for `initial`
        r = backoff(Policy(), lambda e: isinstance(e, Flaky), lambda n, e, s: seen.append((n, s)))
    r.sleep = slept.append  # no real sleeping
    calls = []

    def op():
        calls.append(1)
        raise Flaky("down")

    with pytest.raises(Flaky):
        r(op)
    assert len(calls) == 4
    assert [n for n, _ in seen] == [1, 2, 3]
    assert slept == [s for _, s in seen]
    for (_, s), base in zip(seen, (2.0, 4.0, 5.0), strict=True):
        assert base <= s <= base + 1.0  # jitter: uniform(0, initial_delay / 2)


def test_only_what_retry_if_accepts_is_retried():
    r = backoff(Policy(initial_delay=0), lambda e: isinstance(e, Flaky), lambda n, e, s: None)
    calls = []

    def op():
        calls.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        r(op)
    assert len(calls) == 1


def test_zero_initial_delay_never_sleeps():
    slept: list[float] = []
    r = backoff(Policy(initial_delay=0, max_delay=0), lambda e: True, lambda n, e, s: None)
    r.sleep = slept.append
    with pytest.raises(Flaky):
        r(lambda: (_ for _ in ()).throw(Flaky()))
    assert slept == [0, 0, 0]
