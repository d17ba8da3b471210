"""The incident policy: page once per incident, remind at most every ``realert_after``,
say "resolved" once, cap messages per hour, survive crashes.

Per job:

* the first failure opens an incident and queues one ``failed`` message per channel;
* further failures while it is open are counted; a channel gets a ``still_failing``
  reminder only when ``realert_after`` has passed since the last message it got;
  a channel whose delivery *failed* (or was rate-limited) is tried again on the next
  failure, so an SMTP outage does not silence a whole incident;
* the first success closes the incident and queues one ``resolved`` message on each
  channel that was alerted, with the outage duration and the failure count.

Messages go through the outbox in :mod:`.incidents` (pending → sending → sent), so a
crash between sending and recording repeats that one message at most once.

Ping channels are not incident messages: they get ``/start``, success or ``/fail`` on
every run (a dead-man's switch must hear every run).

Alerts are sent only where ``settings.environment == "prod"`` (or with
``alerts.send_outside_prod``); elsewhere the same decisions are made and recorded and
each message is logged as "would send …".
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
from collections.abc import Callable

from tableship.backup.hooks import Monitor
from tableship.config.models import Config
from tableship.core.errors import Interrupted
from tableship.core.redact import Redactor
from tableship.ledger import deliveries
from tableship.ledger.lock import pid_alive
from tableship.ops.alerts import logtail
from tableship.ops.alerts.channels import ChannelError, send_event, send_ping
from tableship.ops.alerts.event import Event, human_duration, parse_ts, resume_command, to_datetime
from tableship.ops.alerts.incidents import IncidentStore, iso

log = logging.getLogger("tableship")

HOUR = dt.timedelta(hours=1)


def never_raises(method):
    """A monitor hook must never raise: alerting problems are logged, the run goes on."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Interrupted:
            raise  # SIGTERM/SIGHUP must still stop the run
        except Exception as exc:  # (its ledger transaction, if any, was rolled back)
            log.error("alerting failed (%s): %s: %s", method.__name__, type(exc).__name__, exc)
            log.debug("alerting traceback", exc_info=True)
            return None

    return wrapper


def decide(last_alert_at: dt.datetime | None, now: dt.datetime, realert_after: dt.timedelta) -> str | None:
    """The message a channel gets for one more failure of an open incident (or None)."""
    if last_alert_at is None:
        return "failed"
    if now - last_alert_at >= realert_after:
        return "still_failing"
    return None


#: Test-only clock seam (docs/alerts.md "Testing the policy"): an ISO-8601 instant that
#: the alert policy takes as "now" for the whole run, so tests of ``realert_after`` and
#: ``max_per_hour`` through the CLI need neither sleeping nor a fast machine.
CLOCK_ENV = "TABLESHIP_TEST_ALERT_NOW"


def env_clock() -> Callable[[], dt.datetime] | None:
    """The fixed clock ``$TABLESHIP_TEST_ALERT_NOW`` asks for, or None (the real clock)."""
    value = os.environ.get(CLOCK_ENV, "").strip()
    if not value:
        return None
    try:
        now = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{CLOCK_ENV}={value!r} is not an ISO-8601 timestamp") from None
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    return lambda: now


class AlertMonitor(Monitor):
    def __init__(self, config: Config, store, *, clock: Callable[[], dt.datetime] | None = None):
        # picks what it needs from the config here (alerts, environment, secrets, its path):
        # the whole Config is not kept
        self.config_path = str(config.path)
        self.store = store
        self.alerts = config.alerts
        self.clock = clock or env_clock() or (lambda: dt.datetime.now(dt.UTC))
        self.host = socket.gethostname()
        self.environment = config.settings.environment
        self.live = self.environment == "prod" or self.alerts.send_outside_prod
        channels = {n: self.alerts.definitions[n] for n in self.alerts.channels}
        self.message_channels = {n: c for n, c in channels.items() if c.type != "ping"}
        self.ping_channels = {n: c for n, c in channels.items() if c.type == "ping"}
        self.redact = Redactor.from_config(config)
        self.tail = logtail.install(self.alerts.log_lines)
        self._incidents: IncidentStore | None = None

    @property
    def incidents(self) -> IncidentStore:
        if self._incidents is None:
            self._incidents = IncidentStore(self.store)
        return self._incidents

    # ------------------------------------------------------------ runner hooks
    @never_raises
    def job_started(self, job, plan) -> None:
        self.recover(job.name)
        self._ping(job.name, "start")

    @never_raises
    def job_failed(self, job, plan, run, error) -> None:
        tail = self.tail.take(job.name)
        try:
            self.recover(job.name)
            self.on_failure(job, plan, run, error, tail)
        finally:
            self.tail.clear(job.name)

    @never_raises
    def job_succeeded(self, job, plan, run) -> None:
        self.tail.clear(job.name)
        try:
            self.recover(job.name)
            self.on_success(job, plan, run)
        finally:
            self.tail.clear(job.name)

    @never_raises
    def ledger_failed(self, jobs, plans, error) -> None:
        """The ledger cannot be used (corrupt, full, read-only, locked): no incident or outbox row
        can be written, so each job of ``jobs`` gets one ``failed`` message on every channel,
        sent directly (no once-per-incident rule, no hourly budget: both live in the ledger),
        and a ``/fail`` ping. The error names the ledger file and the fix."""
        self._incidents = None  # never touch the broken ledger again in this process
        now = self.clock()
        ts = iso(now)
        err = self.redact(error.line() if hasattr(error, "line") else str(error))
        for name in jobs:
            plan = plans.get(name) if plans else None
            tail = [self.redact(line) for line in self.tail.take(name)]
            self.tail.clear(name)
            event = Event(
                kind="failed",
                job=name,
                table=plan.job.table if plan else "",
                window_start=plan.window.start.isoformat() if plan else None,
                window_end=plan.window.end.isoformat() if plan else None,
                host=self.host,
                environment=self.environment,
                incident_id=0,
                opened_at=ts,
                failures=1,
                failures_since_last_alert=1,
                phase="ledger",
                error=err,
                last_failed_at=ts,
                resume_command=resume_command(self.config_path, name, *self._window(plan, None)),
                config_path=self.config_path,
                log_tail=tail,
                realert_after_seconds=self.alerts.realert_after.total_seconds(),
                created_at=ts,
            )
            for channel, cfg in self.message_channels.items():
                if not self.live:
                    log.info(
                        "would send failed alert on channel %s (%s) — not sent because environment = %r: %s",
                        channel,
                        cfg.type,
                        self.environment,
                        event.subject,
                    )
                    continue
                try:
                    send_event(channel, cfg, event)
                    log.info("alert sent on channel %s: %s", channel, event.subject)
                except ChannelError as exc:
                    log.error(
                        "alert channel %s: could not send the failed alert for %s: %s",
                        channel,
                        name,
                        self.redact(str(exc)),
                    )
            if self.ping_channels:
                self._ping(name, "fail", event.text())

    # ------------------------------------------------------------ policy
    def on_failure(self, job, plan, run, error, tail: list[str]) -> None:
        now = self.clock()
        ts = iso(now)
        phase = getattr(run, "failed_phase", None)
        err = self.redact(error.line() if hasattr(error, "line") else str(error))
        tail = [self.redact(line) for line in tail]
        db = self.incidents
        queued: list[int] = []
        with db.transaction():
            inc = db.record_failure(job.name, ts, getattr(run, "id", None), phase, err)
            for name in self.message_channels:
                last = db.last_alert(inc.id, name)
                kind = decide(parse_ts(last.created_at) if last else None, now, self.alerts.realert_after)
                if kind is None:
                    continue
                since = inc.failures - (last.failures if last else 0)
                event = self._failure_event(kind, job, plan, run, inc, err, since, tail, ts)
                queued.append(db.add_message(inc.id, job.name, name, kind, inc.failures, event.to_json(), ts))
        if inc.failures == 1:
            log.info("incident #%d opened for %s", inc.id, job.name)
        if self.message_channels and not queued:
            log.info(
                "incident #%d of %s still open (%d failures): already alerted, next reminder after %s",
                inc.id,
                job.name,
                inc.failures,
                human_duration(self.alerts.realert_after.total_seconds()),
            )
        for mid in queued:
            self.deliver(mid)
        if self.ping_channels:
            body = self._failure_event("failed", job, plan, run, inc, err, 1, tail, ts).text()
            self._ping(job.name, "fail", body)

    def on_success(self, job, plan, run) -> None:
        now = self.clock()
        ts = iso(now)
        db = self.incidents
        queued: list[int] = []
        inc = None
        if db.open_incident(job.name) is not None:
            with db.transaction():
                inc = db.open_incident(job.name)
                if inc is not None:
                    inc = db.close(inc.id, ts, getattr(run, "id", None))
                    alerted = set(db.alerted_channels(inc.id))
                    event = self._resolved_event(job, plan, run, inc, ts)
                    for name in self.message_channels:
                        if name in alerted:
                            queued.append(
                                db.add_message(
                                    inc.id, job.name, name, "resolved", inc.failures, event.to_json(), ts
                                )
                            )
        if inc is not None:
            outage = (now - to_datetime(inc.opened_at)).total_seconds()
            log.info(
                "incident #%d of %s resolved after %s (%d failures)",
                inc.id,
                job.name,
                human_duration(outage),
                inc.failures,
            )
        for mid in queued:
            self.deliver(mid)
        if self.ping_channels:
            body = (
                f"{job.name}: OK, run {getattr(run, 'id', '-')}, window {plan.window if plan else '-'}, "
                f"{getattr(run, 'rows', None)} rows, {getattr(run, 'archive_bytes', None)} bytes\n"
            )
            self._ping(job.name, "success", body)

    # ------------------------------------------------------------ events
    def _window(self, plan, run) -> tuple[str | None, str | None]:
        if plan is not None:
            return plan.window.start.isoformat(), plan.window.end.isoformat()
        if run is not None:
            return run.window_start, run.window_end
        return None, None

    def _incident_fields(self, job, plan, run, inc, ts) -> dict:
        """What the failure and the resolved events of an incident have in common."""
        start, end = self._window(plan, run)
        return dict(
            job=job.name,
            table=job.table,
            window_start=start,
            window_end=end,
            host=getattr(run, "host", None) or self.host,
            environment=self.environment,
            incident_id=inc.id,
            opened_at=inc.opened_at,
            failures=inc.failures,
            run_id=getattr(run, "id", None),
            attempts=getattr(run, "attempts", None),
            last_failed_at=inc.last_failed_at,
            config_path=self.config_path,
            created_at=ts,
        )

    def _failure_event(self, kind, job, plan, run, inc, err, since, tail, ts) -> Event:
        fields = self._incident_fields(job, plan, run, inc, ts)
        return Event(
            kind=kind,
            **fields,
            failures_since_last_alert=since,
            phase=getattr(run, "failed_phase", None),
            error=err,
            destinations=list(job.destination_names),
            failed_destinations=self._failed_destinations(run),
            # a run that is not a backup (a restore) names the command that resumes it
            resume_command=getattr(run, "resume_command", None)
            or resume_command(self.config_path, job.name, fields["window_start"], fields["window_end"]),
            log_tail=list(tail),
            realert_after_seconds=self.alerts.realert_after.total_seconds(),
        )

    def _failed_destinations(self, run) -> list[str]:
        run_id = getattr(run, "id", None)
        if run_id is None:
            return []
        try:
            got = deliveries.of_run(self.store, run_id)
        except Exception:  # an alert never fails on a detail
            return []
        return [name for name, d in got.items() if d.result == "failed"]

    def _resolved_event(self, job, plan, run, inc, ts) -> Event:
        return Event(
            kind="resolved",
            **self._incident_fields(job, plan, run, inc, ts),
            failures_since_last_alert=0,
            phase=inc.last_phase,
            error=inc.last_error,
            resolved_at=ts,
            outage_seconds=(to_datetime(ts) - to_datetime(inc.opened_at)).total_seconds(),
            rows=getattr(run, "rows", None),
            archive_bytes=getattr(run, "archive_bytes", None),
            remote_path=getattr(run, "remote_path", None),
        )

    # ------------------------------------------------------------ delivery
    def deliver(self, message_id: int, replay: bool = False) -> None:
        db = self.incidents
        msg = db.message(message_id)
        event = Event.from_json(msg.payload)
        cfg = self.alerts.definitions.get(msg.channel)
        if cfg is None or cfg.type == "ping":
            db.set_state(message_id, "abandoned", iso(self.clock()), error="channel no longer configured")
            log.warning(
                "alert channel %s is no longer configured: dropping the %s alert for %s",
                msg.channel,
                event.kind,
                event.job,
            )
            return
        if not replay:
            now = self.clock()
            ts = iso(now)
            with db.transaction():
                used = db.used_budget(msg.channel, iso(now - HOUR))
                limited = used >= self.alerts.max_per_hour
                if limited:
                    db.set_state(
                        message_id,
                        "rate_limited",
                        ts,
                        error=f"{used} messages in the last hour (max_per_hour = {self.alerts.max_per_hour})",
                    )
                else:
                    db.set_state(message_id, "sending" if self.live else "would_send", ts, counted_at=ts)
            if limited:
                log.warning(
                    "alert channel %s: rate limit reached (%d messages in the last hour, "
                    "max_per_hour = %d): not sending %r",
                    msg.channel,
                    used,
                    self.alerts.max_per_hour,
                    event.subject,
                )
                return
            if not self.live:
                log.info(
                    "would send %s alert on channel %s (%s) — not sent because environment = %r "
                    '(alerts are sent only in "prod", or with alerts.send_outside_prod = true): %s',
                    event.kind,
                    msg.channel,
                    cfg.type,
                    self.environment,
                    event.subject,
                )
                return
        try:
            send_event(msg.channel, cfg, event)
        except ChannelError as exc:
            db.set_state(message_id, "failed", iso(self.clock()), error=self.redact(str(exc)))
            log.error(
                "alert channel %s: could not send the %s alert for %s: %s",
                msg.channel,
                event.kind,
                event.job,
                self.redact(str(exc)),
            )
            return
        db.set_state(message_id, "sent", iso(self.clock()))
        log.info("alert sent on channel %s: %s", msg.channel, event.subject)

    def recover(self, job: str) -> None:
        """Finish what a crashed run left in the outbox for ``job`` (called under the job's lock)."""
        db = self.incidents
        for msg in db.unfinished(job):
            if (
                msg.state != "pending"
                and msg.host == self.host
                and msg.pid != os.getpid()
                and pid_alive(msg.pid)
            ):
                continue  # still being sent by a live process
            ts = iso(self.clock())
            if msg.state == "pending":
                log.info(
                    "delivering the %s alert #%d for %s queued by an interrupted run", msg.kind, msg.id, job
                )
                self.deliver(msg.id)
            elif msg.state == "sending":
                if not self.live:
                    db.set_state(msg.id, "abandoned", ts, error="interrupted while sending; not prod now")
                    continue
                db.set_state(msg.id, "resending", ts)
                log.warning(
                    "a previous run stopped while sending the %s alert #%d for %s on %s: it may not have "
                    "arrived, sending it once more",
                    msg.kind,
                    msg.id,
                    job,
                    msg.channel,
                )
                self.deliver(msg.id, replay=True)
            else:  # resending: interrupted twice; never a third copy
                db.set_state(msg.id, "abandoned", ts, error="interrupted twice while sending")
                log.warning(
                    "the %s alert #%d for %s on %s was interrupted twice while sending: not sending it again",
                    msg.kind,
                    msg.id,
                    job,
                    msg.channel,
                )

    def _ping(self, job: str, signal: str, body: str = "") -> None:
        for name, cfg in self.ping_channels.items():
            if not self.live:
                log.info(
                    "would ping %s (%s) for %s — not sent because environment = %r",
                    name,
                    signal,
                    job,
                    self.environment,
                )
                continue
            try:
                send_ping(name, cfg, job, signal, body)
            except ChannelError as exc:
                log.error(
                    "alert channel %s: ping %s for %s failed: %s", name, signal, job, self.redact(str(exc))
                )
