"""The incident policy, on a real state store, with a real (command) channel and a fake clock.

The channel is ``sh -c`` appending one line per message to a file, so each test sees
exactly what was delivered, in order; the clock is injected to step over
``realert_after`` and the hourly cap without sleeping.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tableship.backup.plan import make_plan
from tableship.config.loader import parse_config
from tableship.config.spec import resolve_job
from tableship.core.errors import SourceError
from tableship.core.log import current_job
from tableship.core.redact import Redactor
from tableship.core.window import Window
from tableship.ledger.state import Result, StateStore
from tableship.ops.alerts import make_monitor
from tableship.ops.alerts.event import Event, human_duration, resume_command
from tableship.ops.alerts.incidents import IncidentStore, open_incident_summaries
from tableship.ops.alerts.ping import ping_url
from tableship.ops.alerts.policy import AlertMonitor, decide
from tableship.ops.outputs import metrics_text, snapshot, status_text

T0 = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
WINDOW = Window(dt.date(2026, 6, 1), dt.date(2026, 10, 31))

LINE = (
    'printf "%s|%s|%s|%s|%s\\n" "$TABLESHIP_EVENT" "$TABLESHIP_JOB" "$TABLESHIP_FAILURES" '
    '"$TABLESHIP_FAILURES_SINCE_LAST_ALERT" "$TABLESHIP_SUBJECT" >> "$0"'
)


class Clock:
    def __init__(self, t: dt.datetime = T0):
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, **kw) -> None:
        self.t += dt.timedelta(**kw)


def make_config(tmp_path: Path, *, jobs=("customer_traffic",), environment="prod", argv=None, **alerts):
    out = tmp_path / "alerts.txt"
    raw = {
        "settings": {"state_dir": "state", "environment": environment},
        "sources": {
            "wh": {"type": "duckdb", "path": "wh.duckdb"},
            "pg": {"type": "sqlalchemy", "url": "postgresql://backup:Sup3rS3cretPw@db.example.net/dwh"},
        },
        "destinations": {"bk": {"type": "local", "path": "backup"}},
        "defaults": {"source": "wh"},
        "jobs": {j: {"table": f"mnaas.{j}"} for j in jobs},
        "alerts": {
            "channels": ["cmd"],
            "realert_after": "1h",
            "log_lines": 5,
            **alerts,
            "cmd": {
                "type": "command",
                "argv": argv or ["sh", "-c", LINE, str(out)],
                "retries": {"attempts": 1, "initial_delay": 0},
            },
        },
    }
    return parse_config(raw, tmp_path / "tableship.toml")


def delivered(tmp_path: Path) -> list[list[str]]:
    f = tmp_path / "alerts.txt"
    return [line.split("|") for line in f.read_text().splitlines()] if f.exists() else []


class Harness:
    """A config, a state store and a monitor: ``fail(job)`` / ``succeed(job)`` run the hooks."""

    def __init__(self, tmp_path: Path, config=None, clock: Clock | None = None, **kw):
        self.tmp_path = tmp_path
        self.config = config or make_config(tmp_path, **kw)
        self.clock = clock or Clock()
        self.store = StateStore(self.config.settings.state_dir)
        self.monitor = AlertMonitor(self.config, self.store, clock=self.clock)

    def plan(self, job: str):
        return make_plan(resolve_job(self.config, job), dt.date(2026, 11, 26), WINDOW)

    def fail(self, job="customer_traffic", message="table mnaas.x not found", phase="export"):
        token = current_job.set(job)  # as the runner does: log lines are tagged with the job
        try:
            return self._fail(job, message, phase)
        finally:
            current_job.reset(token)

    def _fail(self, job, message, phase):
        plan = self.plan(job)
        run = self.store.resumable(job, "2026-06-01", "2026-10-31")
        run = (
            self.store.resume(run) if run else self.store.start(job, "2026-06-01", "2026-10-31", "2026-11-26")
        )
        self.monitor.job_started(self.config.jobs[job], plan)
        logging.getLogger("tableship").error("the export broke: %s", message)
        run = self.store.finish(run, Result.FAILED, message, phase)
        self.monitor.job_failed(self.config.jobs[job], plan, run, SourceError(message, "check the table"))
        return run

    def succeed(self, job="customer_traffic"):
        plan = self.plan(job)
        run = self.store.resumable(job, "2026-06-01", "2026-10-31")
        run = (
            self.store.resume(run) if run else self.store.start(job, "2026-06-01", "2026-10-31", "2026-11-26")
        )
        self.monitor.job_started(self.config.jobs[job], plan)
        run = self.store.finish(run, Result.SUCCESS)
        self.monitor.job_succeeded(self.config.jobs[job], plan, run)
        return run

    def states(self) -> list[tuple[str, str, str]]:
        db = self.store.connect()
        return [
            (r["job"], r["kind"], r["state"]) for r in db.execute("SELECT * FROM alert_messages ORDER BY id")
        ]

    def reopen(self) -> Harness:
        """A new process: new store connection, new monitor, same state directory."""
        self.store.close()
        return Harness(self.tmp_path, self.config, self.clock)


@pytest.fixture
def logs():
    """Records of the tableship logger (it does not propagate once the CLI set logging up)."""
    records: list[logging.LogRecord] = []

    class H(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("tableship")
    h = H(logging.INFO)
    old = logger.level
    logger.addHandler(h)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(h)
    logger.setLevel(old)


def messages(records) -> list[str]:
    return [r.getMessage() for r in records]


# ---------------------------------------------------------------- the policy


def test_decide():
    assert decide(None, T0, dt.timedelta(hours=1)) == "failed"
    assert decide(T0, T0 + dt.timedelta(minutes=59), dt.timedelta(hours=1)) is None
    assert decide(T0, T0 + dt.timedelta(hours=1), dt.timedelta(hours=1)) == "still_failing"


def test_one_alert_per_incident_then_reminder_then_resolved(tmp_path):
    h = Harness(tmp_path)
    for _ in range(3):
        h.fail()
        h.clock.advance(minutes=10)
    assert delivered(tmp_path) == [
        [
            "failed",
            "customer_traffic",
            "1",
            "1",
            "[tableship] FAILED customer_traffic 2026-06-01..2026-10-31 (export)",
        ]
    ]
    h.clock.advance(hours=1)
    h.fail()
    got = delivered(tmp_path)
    assert len(got) == 2
    assert got[1][:4] == ["still_failing", "customer_traffic", "4", "3"]
    h.fail()  # right after the reminder: counted, not sent
    assert len(delivered(tmp_path)) == 2

    h.clock.advance(minutes=30)
    h.succeed()
    got = delivered(tmp_path)
    assert len(got) == 3
    assert got[2][:3] == ["resolved", "customer_traffic", "5"]
    assert (
        got[2][4] == "[tableship] RESOLVED customer_traffic 2026-06-01..2026-10-31 after 2h00m (5 failures)"
    )

    h.succeed()  # no incident: nothing
    h.fail()  # a new incident: a new first alert
    got = delivered(tmp_path)
    assert [g[0] for g in got] == ["failed", "still_failing", "resolved", "failed"]
    assert got[3][2] == "1"


def test_incident_state_survives_a_new_process(tmp_path):
    h = Harness(tmp_path)
    h.fail()
    h = h.reopen()
    h.fail()
    assert len(delivered(tmp_path)) == 1
    inc = open_incident_summaries(h.store)["customer_traffic"]
    assert inc["failures"] == 2 and inc["alerted"] and inc["alerted_channels"] == ["cmd"]
    h = h.reopen()
    h.succeed()
    assert [g[0] for g in delivered(tmp_path)] == ["failed", "resolved"]
    assert open_incident_summaries(h.store) == {}


def test_jobs_have_separate_incidents(tmp_path):
    h = Harness(tmp_path, jobs=("a", "b"))
    h.fail("a")
    h.fail("b")
    h.fail("a")
    h.succeed("b")
    assert [(g[0], g[1]) for g in delivered(tmp_path)] == [
        ("failed", "a"),
        ("failed", "b"),
        ("resolved", "b"),
    ]


def test_failed_delivery_is_tried_again_on_the_next_failure(tmp_path, logs):
    flag = tmp_path / "channel-down"
    flag.touch()
    argv = [
        "sh",
        "-c",
        f'test -e {flag} && {{ echo "mail relay down" >&2; exit 3; }}; ' + LINE,
        str(tmp_path / "alerts.txt"),
    ]
    h = Harness(tmp_path, argv=argv)
    h.fail()
    assert delivered(tmp_path) == []
    assert any(
        "could not send the failed alert" in m and "exited with status 3: mail relay down" in m
        for m in messages(logs)
    )
    assert not open_incident_summaries(h.store)["customer_traffic"]["alerted"]
    flag.unlink()
    h.fail()
    h.fail()
    assert [g[:4] for g in delivered(tmp_path)] == [["failed", "customer_traffic", "2", "2"]]
    h.succeed()
    assert [g[0] for g in delivered(tmp_path)] == ["failed", "resolved"]


def test_resolved_goes_only_to_channels_that_were_alerted(tmp_path):
    h = Harness(tmp_path, argv=["sh", "-c", "exit 1"])
    h.fail()
    h.succeed()
    assert [s[1:] for s in h.states()] == [("failed", "failed")]


def test_hourly_cap_is_global_across_jobs(tmp_path, logs):
    jobs = tuple(f"job{i:02d}" for i in range(8))
    h = Harness(tmp_path, jobs=jobs, max_per_hour=3)
    for j in jobs:
        h.fail(j)
        h.clock.advance(seconds=1)
    assert [g[1] for g in delivered(tmp_path)] == ["job00", "job01", "job02"]
    limited = [m for m in messages(logs) if "rate limit reached" in m]
    assert len(limited) == 5 and "max_per_hour = 3" in limited[0]
    assert sum(1 for s in h.states() if s[2] == "rate_limited") == 5
    # the cap is persisted: a new process in the same hour is still capped
    h = h.reopen()
    h.fail("job03")
    assert len(delivered(tmp_path)) == 3
    # an hour later, a job that was never alerted gets its first alert on its next failure
    h.clock.advance(hours=1)
    h.fail("job03")
    h.fail("job00")  # already alerted, within realert_after of... no: 1h passed, so a reminder
    got = delivered(tmp_path)
    assert [(g[0], g[1], g[2]) for g in got[3:]] == [
        ("failed", "job03", "3"),
        ("still_failing", "job00", "2"),
    ]


def test_outside_prod_nothing_is_sent_and_would_send_is_logged_once(tmp_path, logs):
    h = Harness(tmp_path, environment="dev")
    h.fail()
    h.fail()
    h.succeed()
    assert delivered(tmp_path) == []
    would = [m for m in messages(logs) if m.startswith("would send")]
    assert len(would) == 2
    assert "failed alert on channel cmd" in would[0] and "environment = 'dev'" in would[0]
    assert "resolved alert" in would[1]
    assert [s[2] for s in h.states()] == ["would_send", "would_send"]


def test_send_outside_prod_overrides(tmp_path):
    h = Harness(tmp_path, environment="staging", send_outside_prod=True)
    h.fail()
    assert len(delivered(tmp_path)) == 1


# ---------------------------------------------------------------- crashes


def _queue_failure(h: Harness, state: str) -> int:
    """The outbox as a crash would leave it: a failure recorded, its message in ``state``."""
    run = h.store.start("customer_traffic", "2026-06-01", "2026-10-31", "2026-11-26")
    run = h.store.finish(run, Result.FAILED, "boom", "export")
    db = IncidentStore(h.store)
    inc = db.record_failure("customer_traffic", "2026-11-26T02:00:00+00:00", run.id, "export", "boom")
    ev = h.monitor._failure_event(
        "failed",
        h.config.jobs["customer_traffic"],
        h.plan("customer_traffic"),
        run,
        inc,
        "boom",
        1,
        [],
        "2026-11-26T02:00:00+00:00",
    )
    mid = db.add_message(
        inc.id, "customer_traffic", "cmd", "failed", 1, ev.to_json(), "2026-11-26T02:00:00+00:00"
    )
    if state != "pending":
        db.db.execute(
            "UPDATE alert_messages SET state=?, pid=999999999, counted_at=created_at WHERE id=?", (state, mid)
        )
    return mid


def test_message_queued_before_a_crash_is_delivered_once(tmp_path):
    h = Harness(tmp_path)
    _queue_failure(h, "pending")
    h = h.reopen()
    h.monitor.job_started(h.config.jobs["customer_traffic"], h.plan("customer_traffic"))
    h.monitor.job_started(h.config.jobs["customer_traffic"], h.plan("customer_traffic"))
    assert [g[0] for g in delivered(tmp_path)] == ["failed"]
    assert [s[2] for s in h.states()] == ["sent"]


def test_crash_while_sending_repeats_the_message_once_never_more(tmp_path, logs):
    h = Harness(tmp_path)
    _queue_failure(h, "sending")  # the process died after "sending", before "sent"
    h = h.reopen()
    h.fail()  # next run: replays it once, and the new failure is within realert_after
    assert [g[0] for g in delivered(tmp_path)] == ["failed"]
    assert any("may not have arrived, sending it once more" in m for m in messages(logs))
    h = h.reopen()
    h.fail()
    assert len(delivered(tmp_path)) == 1


def test_crash_while_resending_gives_up(tmp_path, logs):
    h = Harness(tmp_path)
    _queue_failure(h, "resending")  # died twice
    h = h.reopen()
    h.fail()
    assert delivered(tmp_path) == []
    assert [s[2] for s in h.states()] == ["abandoned"]
    assert any("interrupted twice" in m for m in messages(logs))
    # the abandoned message counts as alerted: no storm of first alerts afterwards
    h.fail()
    assert delivered(tmp_path) == []


def test_a_live_sender_is_left_alone(tmp_path):
    import os

    h = Harness(tmp_path)
    mid = _queue_failure(h, "sending")
    h.store.connect().execute("UPDATE alert_messages SET pid=? WHERE id=?", (os.getppid(), mid))
    h = h.reopen()
    h.monitor.recover("customer_traffic")
    assert [s[2] for s in h.states()] == ["sending"]


# ---------------------------------------------------------------- never raises, content, secrets


def test_monitor_never_raises(tmp_path, logs):
    h = Harness(tmp_path, argv=["/nonexistent/open-ticket"])
    job = h.config.jobs["customer_traffic"]
    h.monitor.job_failed(job, None, None, RuntimeError("odd"))  # no plan, no run: still fine
    assert any("command '/nonexistent/open-ticket' not found" in m for m in messages(logs))
    h.store.close()
    for f in (tmp_path / "state").iterdir():  # state.db and its migration lock file
        f.unlink()
    (tmp_path / "state").rmdir()
    (tmp_path / "state").write_text("not a directory")  # the state store is now unusable
    h.monitor._incidents = None
    h.monitor.job_failed(job, h.plan("customer_traffic"), None, RuntimeError("x"))
    h.monitor.job_succeeded(job, h.plan("customer_traffic"), None)
    assert any(m.startswith("alerting failed (job_failed)") for m in messages(logs))


def test_make_monitor_returns_the_policy(tmp_path):
    config = make_config(tmp_path)
    assert isinstance(make_monitor(config, StateStore(config.settings.state_dir)), AlertMonitor)


def test_event_content_and_secrets(tmp_path):
    out = tmp_path / "body.txt"
    h = Harness(tmp_path, argv=["sh", "-c", 'cat > "$0"; env | grep ^TABLESHIP_ | sort > "$0.env"', str(out)])
    h.fail(message="connect to postgresql://backup:Sup3rS3cretPw@db.example.net/dwh failed", phase="upload")
    body = out.read_text()
    assert "Sup3rS3cretPw" not in body and "Sup3rS3cretPw" not in (tmp_path / "body.txt.env").read_text()
    assert "connect to *** failed" in body  # the configured URL is a secret: masked whole
    for needle in (
        "Job:          customer_traffic",
        "Table:        mnaas.customer_traffic",
        "Window:       2026-06-01..2026-10-31",
        "Phase:        upload",
        "Run id:       1 (attempt 1)",
        f"tableship --config {tmp_path / 'tableship.toml'} run customer_traffic "
        "--from 2026-06-01 --to 2026-10-31",
        "Last 1 log line of this run:",
        "the export broke: connect to *** failed",
    ):
        assert needle in body, (needle, body)
    env = dict(
        line.split("=", 1)
        for line in (tmp_path / "body.txt.env").read_text().splitlines()
        if "=" in line
        and line.startswith("TABLESHIP_")
        and not line.startswith("TABLESHIP_LOG_TAIL")
        and not line.startswith("TABLESHIP_JSON")
    )
    assert env["TABLESHIP_EVENT"] == "failed"
    assert env["TABLESHIP_PHASE"] == "upload"
    assert env["TABLESHIP_WINDOW_START"] == "2026-06-01"
    assert env["TABLESHIP_INCIDENT_ID"] == "1"


def test_subject_format():
    ev = Event(
        kind="failed",
        job="customer_traffic",
        table="mnaas.customer_traffic",
        window_start="2026-06-01",
        window_end="2026-10-31",
        host="edge2",
        environment="prod",
        incident_id=3,
        opened_at="2026-11-26T02:00:00+00:00",
        failures=1,
        failures_since_last_alert=1,
        phase="upload",
    )
    assert ev.subject == "[tableship] FAILED customer_traffic 2026-06-01..2026-10-31 (upload)"
    assert Event.from_json(ev.to_json()) == ev
    p = ev.payload()
    assert p["event"] == "failed" and p["window"] == {"start": "2026-06-01", "end": "2026-10-31"}
    assert p["dedup_key"] == "tableship/edge2/customer_traffic/3"


def test_helpers():
    assert human_duration(59) == "59s" and human_duration(3 * 3600 + 120) == "3h02m"
    assert human_duration(3 * 86400 + 3600) == "3d01h"
    assert (
        resume_command("/etc/my conf.toml", "t", "2026-01-01", "2026-01-31")
        == "tableship --config '/etc/my conf.toml' run t --from 2026-01-01 --to 2026-01-31"
    )
    assert (
        ping_url("https://hc.example.net/ping/abc/", "j", "start") == "https://hc.example.net/ping/abc/start"
    )
    assert (
        ping_url("https://hc.example.net/ping/key/{job}?x=1", "a b", "fail")
        == "https://hc.example.net/ping/key/a%20b/fail?x=1"
    )
    assert ping_url("https://hc.example.net/ping/abc", "j", "success") == "https://hc.example.net/ping/abc"
    r = Redactor(["tok123456"])
    assert r("Bearer tok123456 at https://u:pw@h/x") == "Bearer *** at https://u:***@h/x"


# ---------------------------------------------------------------- status outputs


def test_status_and_metrics_text(tmp_path):
    h = Harness(tmp_path, jobs=("a", "b", "never"))
    h.fail("a")
    h.succeed("b")
    snap = snapshot(h.config, h.store)
    text = status_text(snap, "2026-11-26T02:00:00+00:00")
    kv = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    assert kv["tableship.jobs"] == "a,b,never"
    assert (
        kv["a.result"] == "failed" and kv["a.incident_open"] == "true" and kv["a.incident_alerted"] == "true"
    )
    assert kv["a.error"] == "table mnaas.x not found" and kv["a.failed_phase"] == "export"
    assert kv["b.result"] == "success" and kv["b.incident_open"] == "false" and kv["b.last_success"]
    assert kv["never.phase"] == "never_run"
    fams = {
        f.name: f
        for f in text_string_to_metric_families(
            metrics_text(snap, IncidentStore(h.store).counts(), 1.0).decode()
        )
    }
    val = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    assert val[("tableship_incident_open", (("tableship_job", "a"),))] == 1
    assert val[("tableship_incident_open", (("tableship_job", "b"),))] == 0
    assert val[("tableship_last_run_success", (("tableship_job", "b"),))] == 1
    assert ("tableship_last_success_timestamp_seconds", (("tableship_job", "b"),)) in val
    assert ("tableship_last_success_timestamp_seconds", (("tableship_job", "a"),)) not in val
    assert val[("tableship_last_run_result", (("result", "failed"), ("tableship_job", "a")))] == 1
    assert val[("tableship_alert_messages_total", (("channel", "cmd"), ("state", "sent")))] == 1


def test_the_test_clock_seam_reads_an_iso_instant(monkeypatch):
    from tableship.ops.alerts.policy import CLOCK_ENV, env_clock

    monkeypatch.delenv(CLOCK_ENV, raising=False)
    assert env_clock() is None  # the real clock
    monkeypatch.setenv(CLOCK_ENV, "2026-01-05T02:00:00Z")
    assert env_clock()() == dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC)
    monkeypatch.setenv(CLOCK_ENV, "2026-01-05T02:00:00")  # naive: UTC
    assert env_clock()() == dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC)
    monkeypatch.setenv(CLOCK_ENV, "yesterday")
    with pytest.raises(ValueError, match="TABLESHIP_TEST_ALERT_NOW='yesterday' is not an ISO-8601 timestamp"):
        env_clock()
