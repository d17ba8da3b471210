"""tableship: back up rolling date-window slices of warehouse tables as verified archives.

Library API (the CLI is a thin layer over it)::

    from tableship import load_config, run_jobs
    config = load_config("tableship.toml")
    outcomes = run_jobs(config, ["customer_traffic"])
"""

__version__ = "0.1.0"

from .config import load_config  # noqa: E402
from .errors import TableshipError  # noqa: E402


def run_jobs(config, names=None, **kwargs):
    """Run the named jobs (all when ``names`` is None); see :func:`tableship.runner.run_jobs`."""
    from .runner import run_jobs as _run

    return _run(config, names, **kwargs)


__all__ = ["__version__", "load_config", "run_jobs", "TableshipError"]
