"""Schedule coverage of a job: which windows are unfinished, which are missing.

The schedule is assumed to run the job at least once a day (cron, a systemd timer): on
each day ``d`` it expects the window ``compute_window(d)``. A window is *due* from the
first day that computes it. Between the job's first verified scheduled run (a run whose
window is what its run date computes under the current ``window`` spec) and today, every
due window should have a verified archive. Otherwise it is:

* **unfinished** — its newest run is not done and was not given up (failed, killed,
  interrupted): the next scheduled run finishes it;
* **missing** — no run at all (the host was down, cron was off), and not given up with
  ``tableship abandon``: ``catch_up = true`` runs it, or ``run --from/--to`` by hand.

A window unfinished or missing for ``gap_grace`` days or more after it became due is
*overdue*: the next run opens an incident for it and ``status`` exits CRITICAL.
Read-only: nothing here writes to the ledger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tableship.config.models import JobConfig
from tableship.config.spec import JobSpec
from tableship.core.window import Window, compute_window
from tableship.ledger.state import Phase, Result, Run, StateStore

#: latest-window states (``Coverage.latest_state``)
VERIFIED, RUNNING, INTERRUPTED, FAILED, DUE, MISSING, NEVER = (
    "verified",
    "running",
    "interrupted",
    "failed",
    "due",
    "missing",
    "never run",
)


@dataclass(frozen=True)
class WindowGap:
    window: Window
    kind: str  # "unfinished" | "missing"
    due: dt.date  # the first day the schedule expected it (an unfinished run: its run date)
    overdue: bool
    run: Run | None = None

    def describe(self) -> str:
        if self.run is not None:
            state = _run_state(self.run)
            what = f"unfinished: run {self.run.id} {state} at phase {self.run.phase}"
        else:
            what = "missing: no run"
        late = "overdue" if self.overdue else "within gap_grace"
        return f"{self.window} {what}, expected since {self.due} ({late})"

    def as_dict(self) -> dict:
        return {
            "window": str(self.window),
            "kind": self.kind,
            "due": self.due.isoformat(),
            "overdue": self.overdue,
            "run": self.run.id if self.run else None,
            "phase": self.run.phase if self.run else None,
            "state": _run_state(self.run) if self.run else None,
        }


@dataclass
class Coverage:
    job: str
    today: dt.date
    latest: Window  # the window the schedule expects today
    latest_state: str
    unfinished: list[WindowGap] = field(default_factory=list)
    missing: list[WindowGap] = field(default_factory=list)

    @property
    def overdue(self) -> list[WindowGap]:
        return sorted((g for g in self.unfinished + self.missing if g.overdue), key=lambda g: g.window)


def _run_state(run: Run) -> str:
    """verified, running, interrupted (see ``StateStore.liveness``), failed or abandoned."""
    if run.phase == Phase.DONE.value and run.result == Result.SUCCESS.value:
        return VERIFIED
    return run.result


def _key(w: Window) -> tuple[str, str]:
    return w.start.isoformat(), w.end.isoformat()


def scheduled_window(job: JobSpec | JobConfig, day: dt.date) -> Window:
    return compute_window(day, job.window.unit, job.window.count, job.window.lag)


def coverage(job: JobSpec | JobConfig, store: StateStore, today: dt.date) -> Coverage:
    runs = store.runs_of(job.name)
    newest: dict[tuple[str, str], Run] = {}
    for r in runs:
        newest[(r.window_start, r.window_end)] = r
    newest = {k: store.liveness(r) for k, r in newest.items()}
    verified = {
        (r.window_start, r.window_end)
        for r in runs
        if r.phase == Phase.DONE.value and r.result == Result.SUCCESS.value
    }
    given_up = store.abandoned_windows(job.name)
    grace = job.gap_grace
    latest = scheduled_window(job, today)

    # the first verified *scheduled* run under the current window spec
    first = None
    for r in runs:
        if r.phase == Phase.DONE.value and r.result == Result.SUCCESS.value:
            try:
                d = dt.date.fromisoformat(r.run_date)
                if _key(scheduled_window(job, d)) == (r.window_start, r.window_end) and (
                    first is None or d < first
                ):
                    first = d
            except ValueError:
                continue

    due: dict[tuple[str, str], dt.date] = {}
    if first is not None and first <= today:
        d = first
        while d <= today:
            due.setdefault(_key(scheduled_window(job, d)), d)
            d += dt.timedelta(days=1)

    unfinished = []
    for k, r in sorted(newest.items()):
        if not r.unfinished:
            continue
        since = due.get(k) or _date(r.run_date) or today
        unfinished.append(WindowGap(_window(k), "unfinished", since, (today - since).days >= grace, r))
    missing = []
    for k, since in sorted(due.items()):
        if k in verified or k in given_up or (k in newest and newest[k].unfinished):
            continue
        missing.append(WindowGap(_window(k), "missing", since, (today - since).days >= grace))

    lr = newest.get(_key(latest))
    if lr is None:
        if not runs:
            state = NEVER
        else:
            since = due.get(_key(latest), today)
            state = MISSING if (today - since).days >= grace else DUE
    else:
        state = _run_state(lr)
    return Coverage(job.name, today, latest, state, unfinished, missing)


def _window(key: tuple[str, str]) -> Window:
    """The window of a ``_key``."""
    return Window(dt.date.fromisoformat(key[0]), dt.date.fromisoformat(key[1]))


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


# ---------------------------------------------------------------- monitoring level

OK, WARNING, CRITICAL = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}


def level(cov: Coverage, incident_open: bool = False) -> tuple[int, list[str]]:
    """The Nagios-style level of one job and the reasons for it.

    CRITICAL: the latest scheduled window's newest run failed, a window is overdue, or an
    incident is open. WARNING: the job never ran, or a window is unfinished within
    ``gap_grace`` (e.g. killed, not yet resumed). A window merely due (its first day, no
    run yet) or running is OK.
    """
    crit, warn = [], []
    if cov.latest_state == FAILED:
        crit.append(f"latest window {cov.latest} failed")
    if cov.latest_state == MISSING:
        crit.append(f"latest window {cov.latest} missing")
    for g in cov.overdue:
        crit.append(f"{g.kind} window {g.window} overdue")
    if incident_open:
        crit.append("incident open")
    if cov.latest_state == NEVER:
        warn.append("never run")
    for g in cov.unfinished:
        if (
            not g.overdue
            and not (g.run is not None and _run_state(g.run) == RUNNING)
            and not (g.window == cov.latest and cov.latest_state == FAILED)
        ):
            warn.append(f"unfinished window {g.window}")
    if crit:
        return CRITICAL, crit + warn
    if warn:
        return WARNING, warn
    return OK, []
