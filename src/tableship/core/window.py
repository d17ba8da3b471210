"""Pure date arithmetic: run date → inclusive window [start, end]. No I/O.

The window is the ``count`` whole units (months or days) that end ``lag`` units before
the unit holding the run date. Run date 2026-11-26, month×5 → 2026-06-01..2026-10-31.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

# Supported dates: years 1000..9999, so that %Y is always four digits (Python writes year
# 474 as "474", not "0474") and file names sort and parse. A window reaches back at most
# 100 years, so every run date from 1100 on has a window inside the range.
MIN_DATE = dt.date(1000, 1, 1)
MAX_REACH_YEARS = 100
MAX_REACH = {"month": 12 * MAX_REACH_YEARS, "day": 36_525}


@dataclass(frozen=True, order=True)
class Window:
    start: dt.date
    end: dt.date

    def __post_init__(self):
        if self.start > self.end:
            raise ValueError(f"window start {self.start} is after its end {self.end}")

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def month_end(year: int, month: int) -> dt.date:
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def previous_month_end(day: dt.date) -> dt.date:
    """The last day of the month before ``day``'s month."""
    return month_end(*add_months(day.year, day.month, -1))


def compute_window(run_date: dt.date, unit: str, count: int, lag: int = 0) -> Window:
    """The ``count`` whole ``unit``s ending ``lag`` units before the unit holding ``run_date``."""
    if count < 1:
        raise ValueError("window count must be >= 1")
    if lag < 0:
        raise ValueError("window lag must be >= 0")
    if unit == "day":
        back = (run_date - MIN_DATE).days
        if lag + count > back:
            raise ValueError(f"the window ({count} day(s), lag {lag}) would start before {MIN_DATE}")
        end = run_date - dt.timedelta(days=1 + lag)
        return Window(end - dt.timedelta(days=count - 1), end)
    if unit == "month":
        ey, em = add_months(run_date.year, run_date.month, -(1 + lag))
        sy, sm = add_months(ey, em, -(count - 1))
        if sy < MIN_DATE.year:
            raise ValueError(f"the window ({count} month(s), lag {lag}) would start before {MIN_DATE}")
        return Window(dt.date(sy, sm, 1), month_end(ey, em))
    raise ValueError(f"window unit must be 'month' or 'day', not {unit!r}")


def parse_date(text: str, what: str = "date") -> dt.date:
    """Parse ``YYYY-MM-DD`` strictly; ValueError names the bad value."""
    try:
        if len(text) != 10:
            raise ValueError
        day = dt.date.fromisoformat(text)
    except (ValueError, TypeError):
        raise ValueError(f"{what} {text!r} is not a valid date in the form YYYY-MM-DD") from None
    if day < MIN_DATE:
        raise ValueError(
            f"{what} {text!r} is before {MIN_DATE}: years before 1000 are not supported "
            "(file names need a four-digit year)"
        )
    return day


def parse_window(text: str) -> Window:
    """Parse ``START..END`` (both ``YYYY-MM-DD``, inclusive)."""
    start, sep, end = text.partition("..")
    if not sep:
        raise ValueError(f"window {text!r} must look like YYYY-MM-DD..YYYY-MM-DD")
    s, e = parse_date(start.strip(), "window start"), parse_date(end.strip(), "window end")
    if s > e:
        raise ValueError(f"window start {s} is after its end {e}")
    return Window(s, e)


def partition_value(day: dt.date, partition_type: str, partition_format: str | None):
    """The bound value for comparing a partition column of the given type with ``day``."""
    if partition_type == "date":
        return day
    fmt = partition_format or ("%Y%m%d" if partition_type == "int" else "%Y-%m-%d")
    text = day.strftime(fmt)
    return int(text) if partition_type == "int" else text
