"""tableship: back up rolling date-window slices of warehouse tables as verified archives.

Library API (the CLI is a thin layer over it)::

    from tableship import load_config, run_jobs
    config = load_config("tableship.toml")
    outcomes = run_jobs(config, ["customer_traffic"])
"""

from tableship.config.loader import load_config
from tableship.core.errors import TableshipError
from tableship.core.version import __version__
from tableship.ops.wiring import run_jobs

__all__ = ["__version__", "load_config", "run_jobs", "TableshipError"]
