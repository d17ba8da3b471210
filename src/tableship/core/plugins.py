"""Lazy loading of source and destination implementations and their optional drivers."""

from __future__ import annotations

import importlib
from typing import Any

from tableship.core.errors import MissingExtraError


def instantiate(kind: str, registry: dict, name: str, cfg) -> Any:
    """``registry[cfg.type]`` is (module, class, extra, driver module or None).

    The driver is imported first so that a missing optional dependency becomes one
    ``Error:`` line naming the extra to install, not an ImportError deep in a module.
    """
    module, cls, extra, driver = registry[cfg.type]
    if driver is not None:
        try:
            importlib.import_module(driver)
        except ImportError:
            raise MissingExtraError(f"{kind} {name!r} (type {cfg.type})", extra, driver) from None
    return getattr(importlib.import_module(module), cls)(name, cfg)
