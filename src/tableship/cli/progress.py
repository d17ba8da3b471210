"""Export progress on a terminal: one live line per running export (``rich.progress``), cleared
when its export ends and when the display stops; nothing at all when stderr is not a terminal (cron).

Use::

    with live_progress(verbosity) as progress:   # None when there is no terminal
        line = progress.task("job")               # or progress("job"): the runner's factory
        line.update(rows, csv_bytes)              # or line(rows, csv_bytes): the writer's callback
        line.set_total(rows)                      # optional: adds percent and ETA
        line.close()                              # removes the line
        progress.pool_status(done, running, queued)  # a parallel run's "jobs: …" line

A ``Progress`` holds any number of lines at once (parallel jobs); it is thread-safe (rich's lock).
While it is live, what is written to ``sys.stderr`` (log lines: the handler writes to the current
``sys.stderr``) and to ``sys.stdout`` when it is the terminal too (``click.echo`` summaries) is printed
above the live lines, whole lines, unwrapped. (Not rich's own redirection: its proxy has no
``encoding``, so click falls back to the binary buffer underneath and writes over the live line;
and it would send a redirected stdout to the terminal.)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import ProgressColumn, Task, TaskID
from rich.text import Text

MIB = 2**20


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ExportColumn(ProgressColumn):
    """``job: 1,234 rows, 12.3 MiB CSV, 45.6 MiB/s`` (+ ``, 40%, ETA 0:12`` when the total is known)."""

    def render(self, task: Task) -> Text:
        if "status" in task.fields:  # the pool's line (Progress.pool_status)
            return Text(task.fields["status"])
        rows = int(task.completed)
        nbytes = task.fields.get("nbytes", 0)
        elapsed = task.elapsed or 0.0
        rate = nbytes / elapsed / MIB if elapsed > 0 else 0.0
        text = f"  {task.description}: {rows:,} rows, {nbytes / MIB:,.1f} MiB CSV, {rate:,.1f} MiB/s"
        if task.total:
            text += f", {min(rows / task.total, 1.0):.0%}"
            remaining = task.time_remaining
            if remaining is not None:
                text += f", ETA {_clock(remaining)}"
        return Text(text)


class ProgressLine:
    """One export's line; callable as the writer's ``progress(rows, csv_bytes)`` callback."""

    def __init__(self, progress: RichProgress, task: TaskID):
        self._progress = progress
        self._task: TaskID | None = task

    def update(self, rows: int, nbytes: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=rows, nbytes=nbytes)

    __call__ = update

    def set_total(self, total_rows: int | None) -> None:
        """The rows expected (e.g. from a count): the line then shows percent and ETA."""
        if self._task is not None:
            self._progress.update(self._task, total=total_rows)

    def close(self) -> None:
        """Remove the line (idempotent)."""
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
            self._progress.refresh()  # gone now, not at the next tick


class _Above:
    """``sys.stdout`` / ``sys.stderr`` while the display is live: whole lines are printed above it."""

    def __init__(self, console: Console, inner: TextIO):
        self._console = console
        self._inner = inner
        self._buf = ""

    @property
    def rich_proxied_file(self) -> TextIO:  # what the console itself writes to (never back to us)
        return self._inner

    @property
    def encoding(self) -> str:
        return getattr(self._inner, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:
        return getattr(self._inner, "errors", None) or "strict"

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError("write() argument must be str")
        self._buf += text
        if "\n" in self._buf:
            lines, _, self._buf = self._buf.rpartition("\n")
            self._console.print(Text(lines), soft_wrap=True, highlight=False)
        return len(text)

    def flush(self) -> None:
        if self._buf:
            line, self._buf = self._buf, ""
            self._console.print(Text(line), soft_wrap=True, highlight=False)
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def writable(self) -> bool:
        return True


class Progress:
    """A live display of export lines on ``console`` (stderr by default); a context manager."""

    def __init__(
        self,
        console: Console | None = None,
        refresh_per_second: float = 4,
        get_time: Callable[[], float] | None = None,  # a clock for tests (rates, ETA)
        redirect: bool | None = None,  # print stdout/stderr above the lines (default: on the real stderr)
    ):
        self._redirect = console is None if redirect is None else redirect
        self._saved: tuple[TextIO, TextIO] | None = None
        self._status: TaskID | None = None
        self._progress = RichProgress(
            ExportColumn(),
            console=console or Console(stderr=True),
            transient=True,  # the lines are erased when the display stops
            refresh_per_second=refresh_per_second,
            get_time=get_time,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> Progress:
        self._progress.start()
        if self._redirect:
            console = self._progress.console
            self._saved = sys.stdout, sys.stderr
            sys.stderr = _Above(console, sys.stderr)
            if sys.stdout.isatty():  # a redirected stdout (a file, a pipe) is left alone
                sys.stdout = _Above(console, sys.stdout)
        return self

    def __exit__(
        self, _exc_type: type[BaseException] | None, exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        try:
            if self._saved is not None:
                for stream in (sys.stdout, sys.stderr):
                    if isinstance(stream, _Above):
                        stream.flush()
                sys.stdout, sys.stderr = self._saved
                self._saved = None
        finally:
            self._progress.stop()

    def task(self, job: str, total_rows: int | None = None) -> ProgressLine:
        """A new line for ``job`` (rows 0); shown until its ``close()`` or the display's end."""
        return ProgressLine(self._progress, self._progress.add_task(job, total=total_rows, nbytes=0))

    __call__ = task

    def pool_status(self, done: int, running: int, queued: int) -> None:
        """The line of a parallel run, ``jobs: 3 done, 4 running, 5 queued`` (added on first use,
        above the lines of the jobs it starts)."""
        text = f"  jobs: {done} done, {running} running, {queued} queued"
        if self._status is None:
            self._status = self._progress.add_task("jobs", status=text)
        else:
            self._progress.update(self._status, status=text)

    def refresh(self) -> None:
        """Redraw now (the display also redraws itself ``refresh_per_second`` times a second)."""
        self._progress.refresh()


@contextlib.contextmanager
def live_progress(verbosity: int) -> Iterator[Progress | None]:
    """A live ``Progress`` on a terminal's stderr; ``None`` under ``-q`` or when stderr is not a TTY."""
    if verbosity < 0 or not sys.stderr.isatty():
        yield None
        return
    with Progress() as progress:
        yield progress
