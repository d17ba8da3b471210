"""Alerts and status outputs through the CLI, against real local servers (no mocks).

Jobs fail the way they do in production: the destination folder does not exist (the
job fails in phase ``upload``) or the table does not exist (phase ``export``); creating
the folder makes the next run succeed. Mail goes to the aiosmtpd fixtures of
tests/servers/smtp.py; webhooks and pings to an ``http.server`` in a thread.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tableship.cli.demo import create_demo_warehouse
from tableship.core.window import compute_window

# the default window (5 whole months before this one), as the CLI computes it today
_W = compute_window(datetime.date.today(), "month", 5, 0)
WINDOW, START, END = str(_W), _W.start.isoformat(), _W.end.isoformat()

RETRIES = "retries = { attempts = 2, initial_delay = 0.05, max_delay = 0.1 }"


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("warehouse") / "wh.duckdb"
    create_demo_warehouse(path, rows=5000)
    return path


class Site:
    """A config folder: ``run(...)`` runs the real CLI in a subprocess."""

    def __init__(
        self,
        root: Path,
        warehouse: Path,
        alerts: str,
        settings: str = "",
        jobs: str | None = None,
        env: dict | None = None,
    ):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "tableship.toml"
        self.backup = root / "backup"
        self.log_file = root / "tableship.core.log"
        self.metrics = root / "tableship.prom"
        self.status = root / "status.properties"
        self.env = {**os.environ, **(env or {})}
        self.env.pop("TABLESHIP_CONFIG", None)
        jobs = jobs if jobs is not None else '[jobs.customer_traffic]\ntable = "mnaas.customer_traffic"\n'
        self.config.write_text(
            "[settings]\n"
            'state_dir = "state"\n'
            'log_file = "tableship.core.log"\n'
            'metrics_file = "tableship.prom"\n'
            'status_file = "status.properties"\n'
            f"{textwrap.dedent(settings)}\n"
            f'[sources.warehouse]\ntype = "duckdb"\npath = "{warehouse}"\n\n'
            '[destinations.backup]\ntype = "local"\npath = "backup"\n\n'
            f"{jobs}\n"
            f"{textwrap.dedent(alerts)}\n"
        )

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tableship", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd=self.root,
        )

    def fail(self, *args: str) -> subprocess.CompletedProcess:
        assert not self.backup.exists()
        proc = self.run("run", *args)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        return proc

    def succeed(self, *args: str) -> subprocess.CompletedProcess:
        self.backup.mkdir(exist_ok=True)
        proc = self.run("run", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def metric_values(self) -> dict:
        text = self.metrics.read_text()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }

    def status_values(self) -> dict[str, str]:
        return dict(
            line.split("=", 1)
            for line in self.status.read_text().splitlines()
            if line and not line.startswith("#")
        )


def email_channel(server, name="mail", **extra) -> str:
    lines = [
        f"[alerts.{name}]",
        'type = "email"',
        f'host = "{server.host}"',
        f"port = {server.port}",
        'from = "tableship@example.net"',
        'to = ["dataops@example.net"]',
        'cc = ["oncall@example.net"]',
        RETRIES,
    ]
    extra.setdefault("security", "none")
    lines += [f"{k} = {json.dumps(str(v))}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


class HttpRecorder:
    """A real HTTP server in a thread that records every request.

    ``statuses``: response codes to use in order (then 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                code = rec.statuses.pop(0) if rec.statuses else 200
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"OK" if code < 400 else b"server exploded")

            do_GET = do_POST = do_HEAD = _handle

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_recorder():
    rec = HttpRecorder()
    yield rec
    rec.stop()


def alert_clock(site: Site, now: str):
    """Set the alert policy's clock for the site's next runs (``TABLESHIP_TEST_ALERT_NOW``);
    returns a setter for stepping it forward."""

    def at(instant: str) -> None:
        site.env["TABLESHIP_TEST_ALERT_NOW"] = instant

    at(now)
    return at


def subjects(server) -> list[str]:
    return [m.subject for m in server.messages]


# ---------------------------------------------------------------- email


def test_email_once_per_incident_reminder_after_realert_then_resolved(tmp_path, warehouse, smtp_factory):
    server = smtp_factory()
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["mail"]
        realert_after = "4h"
        {email_channel(server)}""",
    )
    # The alert clock is injected (TABLESHIP_TEST_ALERT_NOW, docs/alerts.md): the first three
    # failures happen within a minute, the fourth 5 hours later, then the fix.
    at = alert_clock(site, "2026-01-05T02:00:00Z")
    site.fail()
    at("2026-01-05T02:00:30Z")
    site.fail()
    at("2026-01-05T02:01:00Z")
    site.fail()
    # Delivery is synchronous and the SMTP fixture records a message before it answers
    # 250, so once the runs returned, every message sent is already there.
    assert subjects(server) == [f"[tableship] FAILED customer_traffic {WINDOW} (upload)"]
    first = server.messages[0]
    assert first.mail_from == "tableship@example.net"
    assert set(first.rcpt_tos) == {"dataops@example.net", "oncall@example.net"}
    body = first.message.get_content()
    for needle in (
        "Job:          customer_traffic",
        "Table:        mnaas.customer_traffic",
        "Phase:        upload",
        "does not exist",
        "Run id:       1 (attempt 1)",
        f"tableship --config {site.config} run customer_traffic --from ",
        "Last ",
        "[customer_traffic#1]",
    ):
        assert needle in body, (needle, body)

    at("2026-01-05T05:59:59Z")  # 1 s short of realert_after since the alert: still quiet
    site.fail()
    assert len(server.messages) == 1
    at("2026-01-05T07:00:00Z")
    site.fail()
    server.wait_for_messages(2)
    reminder = server.messages[1]
    assert reminder.subject.startswith("[tableship] STILL FAILING customer_traffic ")
    assert "5 failures" in reminder.subject
    assert "5 failures (4 since the last alert)" in reminder.message.get_content()
    assert reminder.message["In-Reply-To"] == first.message["Message-ID"]

    at("2026-01-05T08:00:00Z")
    site.succeed()
    server.wait_for_messages(3)
    site.succeed()  # no open incident: nothing more
    assert len(server.messages) == 3
    resolved = server.messages[2]
    assert resolved.subject.startswith("[tableship] RESOLVED customer_traffic ")
    assert "(5 failures)" in resolved.subject
    text = resolved.message.get_content()
    assert "Failures:     5" in text and "Outage:       6h" in text, text


def test_email_starttls_and_auth(tmp_path, warehouse, smtp_factory):
    server = smtp_factory(starttls=True, auth=("tableship", "pw-Xy9-secret"))
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["mail"]
        {
            email_channel(
                server,
                security="starttls",
                user="tableship",
                password="${SMTP_PASSWORD}",
                ca_cert=server.cafile,
            )
        }""",
        env={"SMTP_PASSWORD": "pw-Xy9-secret"},
    )
    proc = site.fail()
    assert "alert sent on channel mail" in proc.stderr
    (msg,) = server.wait_for_messages(1)
    assert msg.subject.startswith("[tableship] FAILED customer_traffic")
    assert b"pw-Xy9-secret" not in msg.raw


def test_email_auth_without_tls_and_a_wrong_password(tmp_path, warehouse, smtp_factory):
    server = smtp_factory(auth=("tableship", "right-password"))
    alerts = """
        [alerts]
        channels = ["mail"]
        {}"""
    site = Site(
        tmp_path, warehouse, alerts.format(email_channel(server, user="tableship", password="right-password"))
    )
    site.fail()
    server.wait_for_messages(1)

    server = smtp_factory(auth=("tableship", "right-password"))
    site = Site(
        tmp_path / "wrong",
        warehouse,
        alerts.format(email_channel(server, user="tableship", password="wrong-password")),
    )
    proc = site.fail()
    assert "authentication failed (535)" in proc.stderr
    assert "FAILED in upload" in proc.stdout  # the job's own error is still the headline
    assert "wrong-password" not in site.log_file.read_text()
    assert server.messages == []


def test_email_implicit_tls(tmp_path, warehouse):
    """security = "ssl" (SMTPS, port 465 style): an aiosmtpd server wrapped in TLS."""
    from aiosmtpd.controller import Controller
    from tests.servers import free_port
    from tests.servers.smtp import _Handler, _make_cert

    cafile, certfile, keyfile = _make_cert(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    messages: list = []
    port = free_port()
    controller = Controller(
        _Handler(messages, False), hostname="127.0.0.1", port=port, ssl_context=ctx, ready_timeout=10.0
    )
    controller.start()
    try:
        S = SimpleNamespace(host="127.0.0.1", port=port)
        site = Site(
            tmp_path / "site",
            warehouse,
            f"""
            [alerts]
            channels = ["mail"]
            {email_channel(S, security="ssl", ca_cert=cafile)}""",
        )
        proc = site.fail()
        assert "alert sent on channel mail" in proc.stderr
        assert len(messages) == 1 and messages[0].subject.startswith("[tableship] FAILED")
    finally:
        controller.stop()


def test_a_rejecting_smtp_server_does_not_change_the_exit_code(tmp_path, warehouse, smtp_factory):
    server = smtp_factory(reject=True)
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["mail"]
        {email_channel(server)}""",
    )
    proc = site.fail()
    assert f"customer_traffic {WINDOW}: FAILED in upload" in proc.stdout
    assert "alert channel mail: could not send the failed alert for customer_traffic: SMTP" in proc.stderr
    assert "554" in proc.stderr
    site.succeed()  # and a success stays exit 0
    assert (
        site.metric_values()[("tableship_alert_messages_total", (("channel", "mail"), ("state", "failed")))]
        == 1
    )


def test_an_unreachable_smtp_server_is_retried_then_logged(tmp_path, warehouse):
    from tests.servers import free_port

    S = SimpleNamespace(host="127.0.0.1", port=free_port())
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["mail"]
        {email_channel(S)}""",
    )
    proc = site.fail()
    assert "failed (attempt 1 of 2)" in proc.stderr and "retrying" in proc.stderr
    assert "could not send the failed alert" in proc.stderr
    assert "Connection refused" in proc.stderr or "ConnectionRefused" in proc.stderr


# ---------------------------------------------------------------- webhook, command, ping


def test_webhook_body_fields_and_headers(tmp_path, warehouse, http_recorder):
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["ticket"]
        [alerts.ticket]
        type = "webhook"
        url = "{http_recorder.url}/api/incidents"
        headers = {{ Authorization = "Bearer ${{SDP_TOKEN}}", X-Queue = "dataops" }}
        {RETRIES}""",
        env={"SDP_TOKEN": "tok-0123456789abcdef"},
    )
    site.fail()
    site.succeed()
    assert [r["path"] for r in http_recorder.requests] == ["/api/incidents", "/api/incidents"]
    req = http_recorder.requests[0]
    assert req["method"] == "POST"
    assert req["headers"]["Authorization"] == "Bearer tok-0123456789abcdef"
    assert req["headers"]["X-Queue"] == "dataops"
    assert req["headers"]["Content-Type"] == "application/json"
    assert b"tok-0123456789abcdef" not in req["body"]
    body = json.loads(req["body"])
    for key in (
        "source",
        "version",
        "event",
        "status",
        "subject",
        "text",
        "dedup_key",
        "incident_id",
        "job",
        "table",
        "window",
        "phase",
        "error",
        "host",
        "environment",
        "run_id",
        "attempts",
        "failures",
        "failures_since_last_alert",
        "opened_at",
        "resolved_at",
        "outage_seconds",
        "resume_command",
        "log_tail",
        "created_at",
    ):
        assert key in body, key
    assert body["event"] == "failed" and body["status"] == "failing"
    assert body["job"] == "customer_traffic" and body["table"] == "mnaas.customer_traffic"
    assert body["window"] == {"start": START, "end": END}
    assert body["phase"] == "upload" and "does not exist" in body["error"]
    assert body["run_id"] == 1 and body["attempts"] == 1 and body["failures"] == 1
    assert body["resume_command"].endswith(f"run customer_traffic --from {START} --to {END}")
    assert body["log_tail"] and all("[customer_traffic" in line for line in body["log_tail"])
    resolved = json.loads(http_recorder.requests[1]["body"])
    assert resolved["event"] == "resolved" and resolved["status"] == "resolved"
    assert resolved["dedup_key"] == body["dedup_key"]
    assert resolved["outage_seconds"] >= 0 and resolved["rows"] > 0


def test_webhook_500_is_retried_then_logged(tmp_path, warehouse, http_recorder):
    http_recorder.statuses = [500] * 10
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["ticket"]
        [alerts.ticket]
        type = "webhook"
        url = "{http_recorder.url}/hook"
        retries = {{ attempts = 3, initial_delay = 0.05, max_delay = 0.1 }}""",
    )
    proc = site.fail()
    assert len(http_recorder.requests) == 3
    assert proc.stderr.count("failed (attempt") == 2
    assert "could not send the failed alert for customer_traffic: webhook 127.0.0.1" in proc.stderr
    assert "HTTP 500" in proc.stderr
    # next failure: the channel was never reached, so it is tried again (and now the server is fine)
    http_recorder.statuses = [500]
    site.fail()
    assert len(http_recorder.requests) == 5
    assert json.loads(http_recorder.requests[-1]["body"])["failures"] == 2
    # a 4xx is not worth retrying
    http_recorder.requests.clear()
    http_recorder.statuses = [400]
    site.succeed()
    assert len(http_recorder.requests) == 1


def test_command_channel_gets_the_event_in_its_environment(tmp_path, warehouse):
    out = tmp_path / "ticket"
    script = (
        'env | grep ^TABLESHIP_ | grep -v -e ^TABLESHIP_LOG_TAIL -e ^TABLESHIP_JSON > "$1.env"; '
        'cat > "$1.txt"; printf %s "$TABLESHIP_JSON" > "$1.json"'
    )
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["pager"]
        [alerts.pager]
        type = "command"
        argv = ["sh", "-c", {json.dumps(script)}, "open-ticket", "{out}"]""",
        jobs='[jobs.customer_traffic]\ntable = "mnaas.customer_traffic"\n[jobs.dropped]\ntable = '
        '"mnaas.dropped_upstream"\n',
    )
    site.backup.mkdir()  # the destination is fine (else the run stops before exporting): the table is gone
    assert site.run("run", "dropped").returncode == 1
    env = dict(line.split("=", 1) for line in Path(f"{out}.env").read_text().splitlines() if "=" in line)
    assert env["TABLESHIP_EVENT"] == "failed"
    assert env["TABLESHIP_JOB"] == "dropped"
    assert env["TABLESHIP_TABLE"] == "mnaas.dropped_upstream"
    assert env["TABLESHIP_WINDOW_START"] == START and env["TABLESHIP_WINDOW_END"] == END
    assert env["TABLESHIP_PHASE"] == "export"
    assert "dropped_upstream" in env["TABLESHIP_ERROR"] and "not found" in env["TABLESHIP_ERROR"]
    assert env["TABLESHIP_SUBJECT"] == f"[tableship] FAILED dropped {WINDOW} (export)"
    assert env["TABLESHIP_RUN_ID"] == "1" and env["TABLESHIP_FAILURES"] == "1"
    assert env["TABLESHIP_RESUME_COMMAND"].endswith(f"run dropped --from {START} --to {END}")
    assert Path(f"{out}.txt").read_text().startswith("tableship backup job dropped FAILED in phase export.")
    assert json.loads(Path(f"{out}.json").read_text())["job"] == "dropped"


def test_ping_start_then_fail_then_success(tmp_path, warehouse, http_recorder):
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["hc"]
        [alerts.hc]
        type = "ping"
        url = "{http_recorder.url}/ping/${{HC_KEY}}/{{job}}"
        {RETRIES}""",
        env={"HC_KEY": "k3y"},
    )
    site.fail()
    assert [r["path"] for r in http_recorder.requests] == [
        "/ping/k3y/customer_traffic/start",
        "/ping/k3y/customer_traffic/fail",
    ]
    assert b"does not exist" in http_recorder.requests[1]["body"]
    site.fail()  # pings are not deduplicated: a dead-man's switch hears every run
    site.succeed()
    assert [r["path"] for r in http_recorder.requests][2:] == [
        "/ping/k3y/customer_traffic/start",
        "/ping/k3y/customer_traffic/fail",
        "/ping/k3y/customer_traffic/start",
        "/ping/k3y/customer_traffic",
    ]


def test_a_dead_ping_endpoint_does_not_change_the_exit_code(tmp_path, warehouse, http_recorder):
    http_recorder.statuses = [503] * 20
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["hc"]
        [alerts.hc]
        type = "ping"
        url = "{http_recorder.url}/ping/abc"
        {RETRIES}""",
    )
    proc = site.succeed()
    assert "ping start for customer_traffic failed" in proc.stderr
    assert "ping success for customer_traffic failed" in proc.stderr


# ---------------------------------------------------------------- policy through the CLI


def test_dev_environment_sends_nothing_and_logs_would_send(tmp_path, warehouse, smtp_factory, http_recorder):
    server = smtp_factory()
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["mail", "ticket", "hc"]
        {email_channel(server)}
        [alerts.ticket]
        type = "webhook"
        url = "{http_recorder.url}/hook"
        [alerts.hc]
        type = "ping"
        url = "{http_recorder.url}/ping"
        """,
        settings='environment = "dev"',
    )
    proc = site.fail()
    site.fail()
    site.succeed()
    # sending is synchronous: anything sent would have been recorded before the runs returned
    assert server.messages == [] and http_recorder.requests == []
    assert "would send failed alert on channel mail (email)" in proc.stderr
    assert "would send failed alert on channel ticket (webhook)" in proc.stderr
    assert "would ping hc (start)" in proc.stderr
    log = site.log_file.read_text()
    assert log.count("would send failed alert") == 2  # once per channel per incident, as prod would
    assert log.count("would send resolved alert") == 2


def test_max_per_hour_caps_messages_across_20_failing_jobs(tmp_path, warehouse, smtp_factory):
    server = smtp_factory()
    jobs = "".join(f'[jobs.t{i:02d}]\ntable = "mnaas.missing_{i:02d}"\n' for i in range(20))
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["mail"]
        max_per_hour = 5
        {email_channel(server)}""",
        jobs=jobs,
        settings="max_jobs = 1",  # one job after another: the first five to fail are t00..t04
    )
    at = alert_clock(site, "2026-01-05T02:00:00Z")
    proc = site.fail()
    assert proc.stdout.count(": FAILED in upload") == 20  # one summary line per job (the table repeats it)
    assert len(server.messages) == 5  # delivery is synchronous: all there once the run returned
    assert sorted(m.message["X-Tableship-Job"] for m in server.messages) == [
        "t00",
        "t01",
        "t02",
        "t03",
        "t04",
    ]
    assert proc.stderr.count("rate limit reached") == 15
    values = site.metric_values()
    assert values[("tableship_alert_messages_total", (("channel", "mail"), ("state", "rate_limited")))] == 15
    assert values[("tableship_alert_messages_total", (("channel", "mail"), ("state", "sent")))] == 5
    # the budget is persisted: a second batch in the same hour sends nothing more
    at("2026-01-05T02:59:00Z")
    site.fail()
    assert len(server.messages) == 5
    # an hour after the first five, the jobs not yet alerted get the next five
    at("2026-01-05T03:00:01Z")
    site.fail()
    assert sorted(m.message["X-Tableship-Job"] for m in server.messages[5:]) == [
        "t05",
        "t06",
        "t07",
        "t08",
        "t09",
    ]


def test_a_crash_between_sending_and_recording_repeats_the_message_once(tmp_path, warehouse):
    out = tmp_path / "tickets.txt"
    marker = tmp_path / "killed-once"
    script = (
        f'echo "$TABLESHIP_EVENT $TABLESHIP_INCIDENT_ID" >> {out}; '
        f"if [ ! -e {marker} ]; then touch {marker}; kill -9 $PPID; fi"
    )
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["pager"]
        [alerts.pager]
        type = "command"
        argv = ["sh", "-c", {json.dumps(script)}]""",
    )
    proc = site.run("run")
    assert proc.returncode == -9, proc.stderr  # tableship itself was killed while sending
    assert out.read_text().splitlines() == ["failed 1"]
    proc = site.run("run")  # next run: the message may not have arrived, so it is sent once more
    assert proc.returncode == 1
    assert "may not have arrived, sending it once more" in proc.stderr
    assert out.read_text().splitlines() == ["failed 1", "failed 1"]
    site.fail()
    site.fail()
    assert out.read_text().splitlines() == ["failed 1", "failed 1"]  # never more
    site.succeed()
    assert out.read_text().splitlines() == ["failed 1", "failed 1", "resolved 1"]


def test_sigterm_while_sending_stops_tableship_and_the_message_is_replayed_once(tmp_path, warehouse):
    out = tmp_path / "tickets.txt"
    marker = tmp_path / "termed-once"
    script = (
        f'echo "$TABLESHIP_EVENT" >> {out}; '
        f"if [ ! -e {marker} ]; then touch {marker}; kill -TERM $PPID; sleep 5; fi"
    )
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["pager"]
        [alerts.pager]
        type = "command"
        argv = ["sh", "-c", {json.dumps(script)}]""",
    )
    proc = site.run("run")
    assert proc.returncode == 128 + 15, proc.stdout + proc.stderr  # not swallowed by the alerting code
    assert "interrupted by SIGTERM" in proc.stderr
    proc = site.run("run")
    assert proc.returncode == 1
    assert "sending it once more" in proc.stderr
    assert out.read_text().splitlines() == ["failed", "failed"]


def test_a_job_skipped_by_its_lock_is_not_alerted(tmp_path, warehouse, smtp_factory):
    from tableship.ledger.lock import JobLock

    server = smtp_factory()
    site = Site(
        tmp_path,
        warehouse,
        f"""
        [alerts]
        channels = ["mail"]
        {email_channel(server)}""",
    )
    with JobLock(tmp_path / "state", "customer_traffic").acquire(0):
        proc = site.run("run")
    assert proc.returncode == 75, proc.stderr
    assert server.messages == []  # delivery would have been synchronous


def test_status_shows_open_incidents(tmp_path, warehouse):
    site = Site(tmp_path, warehouse, "[alerts]\nchannels = []\n")
    site.fail()
    site.fail()
    out = site.run("status").stdout
    assert "customer_traffic: INCIDENT #1 open since " in out and "2 failures, not alerted" in out
    data = json.loads(site.run("status", "--json").stdout)
    assert data[0]["incident"]["failures"] == 2
    site.succeed()
    assert "INCIDENT" not in site.run("status").stdout


# ---------------------------------------------------------------- status outputs


def test_prometheus_file_parses_and_carries_the_job_metrics(tmp_path, warehouse):
    site = Site(
        tmp_path,
        warehouse,
        "[alerts]\nchannels = []\n",
        jobs='[jobs.customer_traffic]\ntable = "mnaas.customer_traffic"\n'
        '[jobs.never]\ntable = "mnaas.customer_traffic"\nremote_dir = "never"\n',
    )
    site.fail("customer_traffic")
    v = site.metric_values()
    job = (("tableship_job", "customer_traffic"),)
    assert v[("tableship_incident_open", job)] == 1
    assert v[("tableship_last_run_success", job)] == 0
    assert ("tableship_last_success_timestamp_seconds", job) not in v
    before = time.time()
    site.succeed("customer_traffic")
    v = site.metric_values()
    manifest = json.loads(next(site.backup.rglob("*.manifest.json")).read_text())
    assert v[("tableship_incident_open", job)] == 0
    assert v[("tableship_last_run_success", job)] == 1
    assert v[("tableship_last_run_result", (("result", "success"), *job))] == 1
    assert v[("tableship_last_run_result", (("result", "failed"), *job))] == 0
    assert before - 2 <= v[("tableship_last_success_timestamp_seconds", job)] <= time.time() + 1
    assert v[("tableship_last_run_timestamp_seconds", job)] >= before - 2
    assert v[("tableship_last_run_duration_seconds", job)] >= 0
    assert v[("tableship_last_success_rows", job)] == manifest["rows"] > 0
    assert v[("tableship_last_success_archive_bytes", job)] == manifest["archive_bytes"]
    assert v[("tableship_incident_open", (("tableship_job", "never"),))] == 0
    st = site.status_values()
    assert st["customer_traffic.phase"] == "done" and st["customer_traffic.result"] == "success"
    assert st["customer_traffic.incident_open"] == "false" and st["customer_traffic.last_success"]
    assert st["never.result"] == "never_run"


READER = r"""
import os, sys, time
path, stop, report = sys.argv[1], sys.argv[2], sys.argv[3]
KEYS = 23  # keys per job in the status file (outputs.status_text)
reads = bad = 0
problems = []
while not os.path.exists(stop):
    time.sleep(0.0005)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        continue
    reads += 1
    ok = text.endswith("\n")
    kv = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if "=" not in line:
            ok = False
            break
        k, v = line.split("=", 1)
        kv[k] = v
    jobs = kv.get("tableship.jobs", "").split(",")
    for j in jobs:
        keys = sum(1 for k in kv if k.startswith(j + "."))
        if keys != KEYS or kv.get(j + ".incident_open") not in ("true", "false"):
            ok = False
    if not ok or not jobs[0]:
        bad += 1
        problems.append(text[-300:])
with open(report, "w") as f:
    f.write(f"{reads} {bad}\n" + "\n---\n".join(problems[:3]))
"""


def test_status_file_is_never_seen_half_written(tmp_path, warehouse):
    site = Site(
        tmp_path,
        warehouse,
        "[alerts]\nchannels = []\n",
        jobs="".join(
            f'[jobs.j{i}]\ntable = "mnaas.customer_traffic"\nremote_dir = "j{i}"\n' for i in range(3)
        ),
    )
    site.fail()
    stop, report = tmp_path / "stop", tmp_path / "report"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(site.status), str(stop), str(report)])
    try:
        for i in range(6):
            if i % 2:
                site.succeed()
                site.backup.rename(tmp_path / f"backup-{i}")
            else:
                site.fail()
    finally:
        stop.touch()
        reader.wait(timeout=30)
    reads, bad = map(int, report.read_text().splitlines()[0].split())
    assert reads > 50, reads
    assert bad == 0, report.read_text()


# ---------------------------------------------------------------- logs


def test_json_logs_carry_job_and_run_id_and_the_log_file_rotates(tmp_path, warehouse):
    site = Site(
        tmp_path, warehouse, "[alerts]\nchannels = []\n", settings="log_max_bytes = 1024\nlog_backups = 2\n"
    )
    for _ in range(4):
        proc = site.run("--log-format", "json", "run")
        assert proc.returncode == 1
    files = sorted(p.name for p in tmp_path.glob("tableship.core.log*"))
    assert files == ["tableship.core.log", "tableship.core.log.1", "tableship.core.log.2"]
    records = [json.loads(line) for name in files for line in (tmp_path / name).read_text().splitlines()]
    assert records and all({"ts", "level", "job", "run_id", "message"} <= set(r) for r in records)
    assert any(r["job"] == "customer_traffic" and r["run_id"] == 1 for r in records)
    for line in proc.stderr.splitlines():
        if line.startswith("{"):
            assert json.loads(line)["job"] in ("customer_traffic", "-")
