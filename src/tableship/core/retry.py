"""The one retry policy: exponential back-off with jitter, for everything that retries.

Source and destination operations (``[sources.x.retries]``, ``[destinations.x.retries]``) and
alert channels (``[alerts.x.retries]``) all wait, before try ``n + 1``::

    min(initial_delay * 2 ** (n - 1), max_delay) + uniform(0, initial_delay / 2)

The jitter scales with the first delay (so a zero ``initial_delay`` never sleeps) and keeps
several processes that failed together from retrying in step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import tenacity


class RetryPolicy(Protocol):
    """What a ``retries`` table configures (config.models.Retry, AlertRetry)."""

    @property
    def attempts(self) -> int: ...

    @property
    def initial_delay(self) -> float: ...

    @property
    def max_delay(self) -> float: ...


#: called before each sleep: (the attempt that failed, its exception, the seconds to wait)
OnRetry = Callable[[int, BaseException, float], None]


def backoff(
    policy: RetryPolicy, retry_if: Callable[[BaseException], bool], on_retry: OnRetry
) -> tenacity.Retrying:
    """A ``tenacity.Retrying`` for ``policy``: retries what ``retry_if`` accepts, re-raises the last error."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            on_retry(state.attempt_number, exc, state.next_action.sleep if state.next_action else 0.0)

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        # wait_exponential + wait_random (not wait_exponential_jitter, whose `initial` is
        # deprecated in newer tenacity and whose `multiplier` older ones lack)
        wait=tenacity.wait_exponential(multiplier=policy.initial_delay, max=policy.max_delay)
        + tenacity.wait_random(0, policy.initial_delay / 2),
        retry=tenacity.retry_if_exception(retry_if),
        before_sleep=before_sleep,
        reraise=True,
    )
