"""The live export display (cli/progress.py): its lines, and a screen left clean when it ends."""

from __future__ import annotations

import io

from rich.console import Console
from tests.e2e.helpers import screen

from tableship.cli.progress import Progress, live_progress


def terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=160, color_system=None), buf


def test_lines_show_rows_bytes_rate_and_eta_then_the_screen_is_clean():
    now = [100.0]
    console, buf = terminal()
    with Progress(console=console, get_time=lambda: now[0]) as progress:
        one = progress.task("traffic")
        two = progress("calls", total_rows=1000)  # the runner's factory signature
        now[0] += 2.0
        one(20_000, 8 * 2**20)  # the writer's callback signature
        two.update(250, 2**20)
        now[0] += 2.0
        two.update(500, 2 * 2**20)
        progress.refresh()
        shown = screen(buf.getvalue())
        assert shown == [
            "  traffic: 20,000 rows, 8.0 MiB CSV, 2.0 MiB/s",
            "  calls: 500 rows, 2.0 MiB CSV, 0.5 MiB/s, 50%, ETA 0:04",
        ], shown
        one.close()
        one.close()  # idempotent
        progress.refresh()
        assert screen(buf.getvalue()) == ["  calls: 500 rows, 2.0 MiB CSV, 0.5 MiB/s, 50%, ETA 0:04"]
        two.update(600, 3 * 2**20)
    assert screen(buf.getvalue()) == []  # the display's lines are erased when it stops


def test_no_display_without_a_terminal_or_with_quiet(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a TTY
    with live_progress(0) as progress:
        assert progress is None
    with live_progress(-1) as progress:
        assert progress is None
