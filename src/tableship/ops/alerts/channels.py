"""Channel dispatch: one module per channel type, each with ``send(name, cfg, event)``
(registered in :data:`SENDERS`; the channel modules import only :mod:`.errors`).

A channel raises :class:`ChannelError` when delivery failed; ``transient`` says whether
trying again may help (connection refused, timeout, HTTP 5xx/429, SMTP 4xx) — those are
retried briefly with ``retries`` (tenacity, exponential back-off with jitter). Nothing
here is ever allowed to escape the monitor.
"""

from __future__ import annotations

import dataclasses
import logging

from tableship.core.errors import Interrupted
from tableship.core.redact import redact
from tableship.core.retry import backoff
from tableship.ops.alerts import command, email, webhook
from tableship.ops.alerts.errors import ChannelError
from tableship.ops.alerts.ping import ping

log = logging.getLogger("tableship")


#: channel type → ``send(name, cfg, event)`` (ping channels: :func:`send_ping`)
SENDERS = {"email": email.send, "webhook": webhook.send, "command": command.send}


def _sender(kind: str):
    try:
        return SENDERS[kind]
    except KeyError:  # pragma: no cover - config validation rejects other types
        raise ChannelError(f"unknown channel type {kind!r}", transient=False) from None


def deliver(name: str, cfg, what: str, call) -> None:
    """Run ``call()`` with the channel's retry policy; raise ChannelError after the last try."""
    policy = cfg.retries

    def on_retry(attempt: int, exc: BaseException, sleep: float) -> None:
        log.warning(
            "alert channel %s: %s failed (attempt %d of %d): %s; retrying in %.1fs",
            name,
            what,
            attempt,
            policy.attempts,
            exc,
            sleep,
        )

    try:
        backoff(policy, lambda e: isinstance(e, ChannelError) and e.transient, on_retry)(call)
    except (ChannelError, Interrupted):
        raise  # a SIGTERM while sending stops tableship; the outbox replays the message once
    except Exception as exc:  # a bug or an unexpected library error: still only a channel failure
        raise ChannelError(f"{type(exc).__name__}: {exc}", transient=False) from exc


def _redacted(event):
    """A copy of ``event`` whose texts went through the redactor (bodies, subject, env)."""
    changes = {
        f.name: redact(getattr(event, f.name))
        for f in dataclasses.fields(event)
        if isinstance(getattr(event, f.name), str)
    }
    changes["log_tail"] = [redact(line) for line in event.log_tail]
    return dataclasses.replace(event, **changes)


def send_event(name: str, cfg, event) -> None:
    """Deliver one alert event on channel ``name`` (email, webhook or command)."""
    send = _sender(cfg.type)
    event = _redacted(event)
    deliver(name, cfg, f"sending {event.kind} alert for {event.job}", lambda: send(name, cfg, event))


def send_ping(name: str, cfg, job: str, signal: str, body: str = "") -> None:
    """Ping channel: ``signal`` is "start", "success" or "fail"."""
    body = redact(body)
    deliver(name, cfg, f"ping {signal} for {job}", lambda: ping(cfg, job, signal, body))
