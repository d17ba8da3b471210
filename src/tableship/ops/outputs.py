"""Status outputs rewritten at the end of every run, for monitoring systems.

* ``settings.metrics_file``: Prometheus text format for node_exporter's textfile
  collector (metric reference in docs/monitoring.md). Jobs are labelled
  ``tableship_job`` — not ``job``, which Prometheus reserves for the scrape target.
* ``settings.status_file``: ``key=value`` lines per job (``customer_traffic.phase=done``)
  for dashboards that poll the legacy process-status file.

Both are rebuilt from the state store (the single source of truth), never patched, and
written to a temporary name, fsynced and renamed, so a reader sees the old file or the
new one, never half of one. Runs of different jobs may end at the same moment: a lock
in ``state_dir`` serialises the read-then-write so the last file written is the newest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from tableship.backup.coverage import coverage
from tableship.core.fsutil import atomic_write_bytes, atomic_write_text
from tableship.core.redact import redact, redact_bytes
from tableship.core.version import __version__
from tableship.ledger.state import Run, StateStore
from tableship.ops.alerts.incidents import IncidentStore, open_incident_summaries

RESULTS = ("success", "failed", "running", "interrupted")


@dataclass
class JobStatus:
    job: str
    last: Run | None
    last_success: Run | None
    incident: dict | None
    unfinished: int = 0  # windows whose newest run is unfinished
    missing: int = 0  # windows the schedule expected with no run at all
    overdue: int = 0  # of both, those past gap_grace


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    t = dt.datetime.fromisoformat(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def snapshot(config, store: StateStore, today: dt.date | None = None) -> list[JobStatus]:
    incidents = open_incident_summaries(store)
    out = []
    for name, job in config.jobs.items():
        cov = coverage(job, store, today or dt.date.today())
        out.append(
            JobStatus(
                name,
                store.latest(name),
                store.last_success(name),
                incidents.get(name),
                len(cov.unfinished),
                len(cov.missing),
                len(cov.overdue),
            )
        )
    return out


# ---------------------------------------------------------------- Prometheus


class _Collector:
    def __init__(self, jobs: list[JobStatus], alert_counts: list[tuple[str, str, int]], now: float):
        self.jobs = jobs
        self.alert_counts = alert_counts
        self.now = now

    def collect(self):
        L = ["tableship_job"]

        def gauge(name, doc, labels=L):
            return GaugeMetricFamily(name, doc, labels=labels)

        last_success = gauge(
            "tableship_last_success_timestamp_seconds",
            "End time of the job's last successful run (Unix time).",
        )
        last_run = gauge(
            "tableship_last_run_timestamp_seconds",
            "End time of the job's last run (its start time while it is running).",
        )
        success = gauge("tableship_last_run_success", "1 if the job's last run succeeded, 0 otherwise.")
        result = gauge(
            "tableship_last_run_result",
            "Result of the job's last run: 1 for the current result.",
            labels=[*L, "result"],
        )
        duration = gauge("tableship_last_run_duration_seconds", "Duration of the job's last finished run.")
        rows = gauge("tableship_last_success_rows", "Rows exported by the job's last successful run.")
        size = gauge("tableship_last_success_archive_bytes", "Archive size of the job's last successful run.")
        inc_open = gauge(
            "tableship_incident_open",
            "1 while the job has an open incident (failing since the last success).",
        )
        inc_fail = gauge(
            "tableship_incident_failures", "Failures counted in the job's open incident (0 if none)."
        )
        inc_alert = gauge(
            "tableship_incident_alerted", "1 if the open incident was alerted on at least one channel."
        )
        inc_since = gauge(
            "tableship_incident_opened_timestamp_seconds", "When the job's open incident opened."
        )
        unfinished = gauge(
            "tableship_unfinished_windows",
            "Windows of the job whose newest run is unfinished (failed, killed, interrupted; not given up).",
        )
        missing = gauge(
            "tableship_missing_windows",
            "Windows the schedule expected since the job's first verified "
            "window that have no run at all (not given up).",
        )
        overdue = gauge(
            "tableship_overdue_windows",
            "Unfinished or missing windows older than gap_grace (each opens an incident).",
        )
        for s in self.jobs:
            lab = [s.job]
            if s.last_success and s.last_success.finished_at:
                last_success.add_metric(lab, _epoch(s.last_success.finished_at))
                if s.last_success.rows is not None:
                    rows.add_metric(lab, s.last_success.rows)
                if s.last_success.archive_bytes is not None:
                    size.add_metric(lab, s.last_success.archive_bytes)
            if s.last:
                last_run.add_metric(lab, _epoch(s.last.finished_at or s.last.started_at))
                success.add_metric(lab, 1.0 if s.last.result == "success" else 0.0)
                for r in RESULTS:
                    result.add_metric([s.job, r], 1.0 if s.last.result == r else 0.0)
                if s.last.duration is not None:
                    duration.add_metric(lab, s.last.duration)
            inc = s.incident
            inc_open.add_metric(lab, 1.0 if inc else 0.0)
            inc_fail.add_metric(lab, inc["failures"] if inc else 0)
            inc_alert.add_metric(lab, 1.0 if inc and inc["alerted"] else 0.0)
            if inc:
                inc_since.add_metric(lab, _epoch(inc["opened_at"]))
            unfinished.add_metric(lab, s.unfinished)
            missing.add_metric(lab, s.missing)
            overdue.add_metric(lab, s.overdue)
        yield from (
            last_success,
            last_run,
            success,
            result,
            duration,
            rows,
            size,
            inc_open,
            inc_fail,
            inc_alert,
            inc_since,
            unfinished,
            missing,
            overdue,
        )
        msgs = CounterMetricFamily(
            "tableship_alert_messages",
            "Alert messages by channel and outcome (sent, failed, rate_limited, would_send, ...).",
            labels=["channel", "state"],
        )
        for channel, state, n in self.alert_counts:
            msgs.add_metric([channel, state], n)
        yield msgs
        info = GaugeMetricFamily("tableship_info", "tableship version and host.", labels=["version", "host"])
        info.add_metric([__version__, socket.gethostname()], 1)
        yield info
        yield GaugeMetricFamily(
            "tableship_status_generated_timestamp_seconds",
            "When tableship last rewrote this file.",
            value=self.now,
        )


def metrics_text(jobs: list[JobStatus], alert_counts: list[tuple[str, str, int]], now: float) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(jobs, alert_counts, now))
    return generate_latest(registry)


# ---------------------------------------------------------------- status file


def _value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.3f}"
    return " ".join(str(v).split())  # one line, whatever the error text holds


# the status file's keys taken from a job's last run: (key, Run attribute), in file order
_RUN_KEYS = (
    ("run_id", "id"),
    ("window", "window"),
    ("started_at", "started_at"),
    ("finished_at", "finished_at"),
    ("duration_seconds", "duration"),
    ("rows", "rows"),
    ("archive_bytes", "archive_bytes"),
    ("failed_phase", "failed_phase"),
    ("error", "error"),
    ("pid", "pid"),
    ("host", "host"),
)


def status_text(jobs: list[JobStatus], now: str) -> str:
    lines = [
        "# tableship status: one key=value per line, rewritten atomically at the end of every run",
        f"tableship.generated_at={now}",
        f"tableship.version={__version__}",
        f"tableship.host={socket.gethostname()}",
        f"tableship.jobs={','.join(s.job for s in jobs)}",
    ]
    for s in jobs:
        r, ok, inc = s.last, s.last_success, s.incident
        values = {
            "phase": r.phase if r else "never_run",
            "result": r.result if r else "never_run",
            **{key: getattr(r, attr) if r else None for key, attr in _RUN_KEYS},
            "last_success": ok.finished_at if ok else None,
            "last_success_window": ok.window if ok else None,
            "incident_open": bool(inc),
            "incident_alerted": bool(inc and inc["alerted"]),
            "incident_id": inc["id"] if inc else None,
            "incident_failures": inc["failures"] if inc else 0,
            "incident_opened_at": inc["opened_at"] if inc else None,
            "unfinished_windows": s.unfinished,
            "missing_windows": s.missing,
            "overdue_windows": s.overdue,
        }
        lines += [f"{s.job}.{k}={_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- writing


@contextlib.contextmanager
def _locked(state_dir: Path):
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "outputs.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_outputs(config, store, today: dt.date | None = None) -> None:
    """Write ``settings.metrics_file`` and ``settings.status_file`` atomically, when configured."""
    s = config.settings
    if s.metrics_file is None and s.status_file is None:
        return
    with _locked(Path(s.state_dir)):
        jobs = snapshot(config, store, today)
        now = dt.datetime.now(dt.UTC)
        errors = []
        if s.metrics_file is not None:
            try:
                counts = IncidentStore(store).counts()
                Path(s.metrics_file).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(
                    Path(s.metrics_file), redact_bytes(metrics_text(jobs, counts, now.timestamp()))
                )
            except OSError as exc:
                errors.append(f"metrics_file {s.metrics_file}: {exc.strerror or exc}")
        if s.status_file is not None:
            try:
                Path(s.status_file).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(
                    Path(s.status_file), redact(status_text(jobs, now.isoformat(timespec="seconds")))
                )
            except OSError as exc:
                errors.append(f"status_file {s.status_file}: {exc.strerror or exc}")
        if errors:
            raise OSError("; ".join(errors))
