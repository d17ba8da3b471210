"""One exception tree for tableship.

Every error knows its exit code and whether it is *transient* (worth retrying: the
same action may succeed later) or *terminal* (retrying cannot help). The CLI turns
any ``TableshipError`` into one ``Error: <what> — <what to do>`` line and its exit
code; nothing else in the package prints errors.
"""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_LEDGER = 74  # the ledger (state.db) cannot be read or written: corrupt, full, read-only
EXIT_LOCKED = 75


class TableshipError(Exception):
    """Base class. ``hint`` tells the user what to do; it is shown after an em dash."""

    exit_code = EXIT_JOB_FAILED
    transient = False

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        """The single line the CLI prints (without the ``Error: `` prefix)."""
        text = " ".join(self.message.split())
        return f"{text} — {self.hint}" if self.hint else text


class UsageError(TableshipError):
    """Bad command-line usage: nothing was run."""

    exit_code = EXIT_USAGE


class ConfigError(TableshipError):
    """The configuration file is missing or invalid: nothing was run.

    ``problems`` holds every problem found (``config validate`` prints them all).
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None, problems: list[str] | None = None):
        super().__init__(message, hint)
        self.problems = problems or [message]


class MissingExtraError(ConfigError):
    """A source/destination type needs an optional dependency that is not installed."""

    def __init__(self, what: str, extra: str, module: str):
        super().__init__(
            f"{what} needs the Python package '{module}', which is not installed",
            f"install it with: pip install 'tableship[{extra}]'",
        )


class JobError(TableshipError):
    """A job failed while running (exit 1). Its state allows a re-run to resume."""


class SourceError(JobError):
    """Reading from a source failed (query error, unknown table, auth...)."""


class TransientSourceError(SourceError):
    transient = True


class DestinationError(JobError):
    """Writing to / reading from a destination failed."""


class TransientDestinationError(DestinationError):
    transient = True


class VerificationError(DestinationError):
    """Remote bytes do not match the local manifest (re-upload may fix it)."""

    transient = True


class DataCheckError(JobError):
    """A configured data check (empty export, column or count mismatch) failed."""


class GapError(JobError):
    """A window the schedule expected is unfinished or missing past ``gap_grace``."""


class LockedError(TableshipError):
    """Another run holds the job's lock."""

    exit_code = EXIT_LOCKED


class Interrupted(BaseException):
    """The process received a termination signal (SIGTERM, SIGINT, SIGHUP): exit 128+N.

    A ``BaseException`` on purpose, like ``KeyboardInterrupt``: no ``except Exception``
    or ``except TableshipError`` anywhere can turn a signal into an ordinary job failure.
    Handlers that must clean up catch ``BaseException`` and re-raise it. It still looks
    like a TableshipError to the CLI (``message``, ``hint``, ``line()``, ``exit_code``).
    """

    transient = False

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.message = f"interrupted by {self.name}"
        self.hint = "re-run the same command to resume where it stopped"
        self.exit_code = 128 + signum
        super().__init__(self.message)

    def line(self) -> str:
        return f"{self.message} — {self.hint}"

    def __reduce__(self):
        return (type(self), (self.signum,))
