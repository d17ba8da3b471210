"""Range selection for ``tableship restore --from A --to B``: which archives supply which days.

The range is given in months (``2020-02``: the whole month) or days (``2020-02-14``);
``--from`` is the first day of its month or that day, ``--to`` the last day of its month
or that day.

Selection works on archive records (:class:`~tableship.catalog.records.Archive`) read
from manifests, so it is the same for the ``window`` layout (one archive per run window)
and for a ``chunk`` layout (one archive per month or day, each with its own manifest):

* candidates: every archive with a readable manifest (window, columns) and its archive
  file present whose window overlaps the range; an archive without a manifest can never
  be verified and is never used;
* each day of the range is taken from the *newest* candidate covering it (by manifest
  ``created_at``, then window end): overlapping window archives (a rolling 5-month window
  backed up every month) never supply a day twice;
* an archive supplies one or more contiguous ``spans`` (usually one); when its window is
  exactly its spans, it is loaded whole, else its rows outside the spans are filtered out
  by the partition column (a window archive that only overlaps the range).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from tableship.catalog.records import Archive
from tableship.core.errors import UsageError
from tableship.core.window import Window, month_end, parse_date

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_ONE_DAY = dt.timedelta(days=1)


def parse_bound(text: str, end: bool) -> dt.date:
    """``YYYY-MM`` (first or last day of the month) or ``YYYY-MM-DD``."""
    what = "--to" if end else "--from"
    m = _MONTH.match(text.strip())
    if m:
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12 or year < 1000:
            raise UsageError(
                f"{what} {text!r} is not a month", "write a month as YYYY-MM or a day as YYYY-MM-DD"
            )
        return month_end(year, month) if end else dt.date(year, month, 1)
    try:
        return parse_date(text.strip(), what)
    except ValueError as exc:
        raise UsageError(str(exc), "write a month as YYYY-MM or a day as YYYY-MM-DD") from None


def parse_range(start: str, end: str | None) -> Window:
    """``--from`` / ``--to`` → the inclusive range of days (``--to`` defaults to ``--from``)."""
    low = parse_bound(start, end=False)
    high = parse_bound(end if end is not None else start, end=True)
    if low > high:
        raise UsageError(f"--from {start} is after --to {end}", "swap them")
    return Window(low, high)


@dataclass
class Pick:
    """One archive to restore and the days of the range it supplies."""

    archive: Archive
    spans: list[Window] = field(default_factory=list)
    copies: dict[str, Archive] = field(default_factory=dict)  # destination → its copy, in config order

    @property
    def whole(self) -> bool:
        """The archive's rows are all inside the range (no filtering)."""
        return self.spans == [self.archive.window]

    @property
    def first_day(self) -> dt.date:
        return self.spans[0].start

    def spans_text(self) -> str:
        return ", ".join(str(s) for s in self.spans)


@dataclass
class Selection:
    range: Window
    picks: list[Pick]
    uncovered: list[Window]  # days of the range no usable archive covers
    unusable: list[Archive]  # overlapping archives that cannot be used (no manifest, file missing)


def _subtract(free: list[Window], w: Window) -> tuple[list[Window], list[Window]]:
    """(the parts of ``free`` inside ``w``, the parts outside it)."""
    taken, left = [], []
    for f in free:
        lo, hi = max(f.start, w.start), min(f.end, w.end)
        if lo > hi:
            left.append(f)
            continue
        taken.append(Window(lo, hi))
        if f.start < lo:
            left.append(Window(f.start, lo - _ONE_DAY))
        if hi < f.end:
            left.append(Window(hi + _ONE_DAY, f.end))
    return taken, sorted(left)


def usable(a: Archive) -> bool:
    m = a.manifest
    return (
        a.has_archive
        and a.window is not None
        and isinstance(m, dict)
        and isinstance(m.get("sha256"), str)
        and isinstance(m.get("rows"), int)
        and bool(m.get("columns"))
    )


def select(listed: dict[str, list[Archive]], rng: Window) -> Selection:
    """Pick archives for ``rng`` from the archives ``listed`` per destination (config order).

    The same archive (same remote path and sha256) on several destinations is one pick that
    knows every destination holding it; restore uses the first one that verifies."""
    by_key: dict[tuple[str, str], Pick] = {}
    unusable: dict[str, Archive] = {}
    for dest_name, archives in listed.items():
        for a in archives:
            if a.window is None or a.window.end < rng.start or a.window.start > rng.end:
                continue
            if isinstance(a.manifest, dict) and a.manifest.get("kind") == "window-manifest":
                continue  # layout "chunk": the window's index, its chunks are the archives
            if not usable(a):
                unusable.setdefault(a.remote_path, a)
                continue
            key = (a.remote_path, a.sha256 or "")
            pick = by_key.setdefault(key, Pick(a))
            pick.copies.setdefault(dest_name, a)
    newest_first = sorted(by_key.values(), key=_newest, reverse=True)
    free = [rng]
    picks = []
    for p in newest_first:
        assert p.archive.window is not None  # usable() checked it
        taken, free = _subtract(free, p.archive.window)
        if taken:
            p.spans = _merge(sorted(taken))
            picks.append(p)
    picks.sort(key=lambda p: (p.first_day, p.archive.remote_path))
    return Selection(rng, picks, free, sorted(unusable.values(), key=Archive.sort_key))


def _newest(p: Pick) -> tuple:
    w = p.archive.window
    # created_at has one-second resolution: on a tie, the later end, then the wider window
    # (earlier start) wins, so a tie never depends on the file names
    start = -w.start.toordinal() if w else 0
    return (p.archive.created_at or "", w.end if w else dt.date.min, start, p.archive.remote_path)


def _merge(spans: list[Window]) -> list[Window]:
    out: list[Window] = []
    for s in spans:
        if out and out[-1].end + _ONE_DAY >= s.start:
            out[-1] = Window(out[-1].start, max(out[-1].end, s.end))
        else:
            out.append(s)
    return out
