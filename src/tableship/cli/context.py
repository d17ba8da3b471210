"""The CLI's context object: the ``--config`` file loaded once, and logging started with it."""

from __future__ import annotations

from tableship.config.loader import load_config
from tableship.config.models import Config
from tableship.core.log import setup_logging


class Ctx:
    """What the global options say (``--config``, ``-v``/``-q``, ``--log-format``), handed to
    every command as ``obj``; the config is loaded on first use."""

    def __init__(self, config: str | None, verbose: int, quiet: bool, log_format: str):
        self.config_arg = config
        self.verbosity = -1 if quiet else verbose
        self.log_format = log_format
        self._config: Config | None = None

    @property
    def config(self):
        return self.load()

    def load(self, log_file: bool = True):
        """Load the config once and start logging.

        Logs go to ``log_file`` unless told not to (dry runs touch nothing).
        """
        if self._config is None:
            self._config = load_config(self.config_arg)
            s = self._config.settings
            setup_logging(
                self.verbosity,
                s.log_file if log_file else None,
                json_format=self.log_format == "json",
                max_bytes=s.log_max_bytes,
                backups=s.log_backups,
            )
        return self._config
