"""Export progress: a live rich display on a terminal, nothing extra when not a terminal (cron)."""

from __future__ import annotations

import sys
import time


def progress_factory(verbosity: int):
    """Return a factory job → callback(rows, csv_bytes), or None when stderr is not a TTY."""
    if verbosity < 0 or not sys.stderr.isatty():
        return None

    def make(job: str):
        from rich.console import Console

        console = Console(stderr=True)
        started = time.monotonic()
        last = [0.0]

        def update(rows: int, nbytes: int) -> None:
            t = time.monotonic()
            if t - last[0] < 0.25:
                return
            last[0] = t
            rate = nbytes / max(t - started, 1e-6) / 2**20
            console.print(
                f"  {job}: {rows:,} rows, {nbytes / 2**20:,.1f} MiB CSV, {rate:,.1f} MiB/s",
                end="\r",
                highlight=False,
            )

        return update

    return make
