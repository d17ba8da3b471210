"""Lazy loading of source and destination implementations, built in or from other distributions.

A type is either built in (a ``REGISTRY`` entry in ``sources/base.py`` or
``destinations/base.py``: module, class, extra, driver module) or registered by an installed
distribution under the entry point group ``tableship.sources`` / ``tableship.destinations``::

    [project.entry-points."tableship.sources"]
    toy = "tableship_toy:ToySource"

The entry point's name is the config's ``type``; its class is built as ``Class(name, cfg)`` and
has a ``config_model`` attribute: the pydantic model that validates its ``[sources.<name>]``
table (see docs/architecture.md, "Adding a source or a destination").
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from tableship.core.errors import ConfigError, MissingExtraError

#: kind → the entry point group other distributions register their types under
GROUPS = {"source": "tableship.sources", "destination": "tableship.destinations"}


def plugin(kind: str, type_: str) -> Any | None:
    """The class an installed distribution registers for ``type_`` (None if none does)."""
    for ep in importlib.metadata.entry_points(group=GROUPS[kind], name=type_):
        return ep.load()
    return None


def load_class(what: str, entry: tuple[str, str, str | None, str | None]) -> Any:
    """The class of a built-in registry entry (module, class, extra, driver module or None).

    The driver is imported first so that a missing optional dependency becomes one
    ``Error:`` line naming the extra to install (``what`` needs it), not an ImportError deep
    in a module.
    """
    module, cls_name, extra, driver = entry
    if driver is not None:
        try:
            importlib.import_module(driver)
        except ImportError:
            raise MissingExtraError(what, extra or driver, driver) from None
    return getattr(importlib.import_module(module), cls_name)


def instantiate(kind: str, registry: dict, name: str, cfg) -> Any:
    """``Class(name, cfg)`` for ``cfg.type``: a built-in type of ``registry`` (see
    :func:`load_class`) or one from :func:`plugin`."""
    if cfg.type not in registry:
        cls = plugin(kind, cfg.type)
        if cls is None:  # config validation refuses unknown types: only a changed install gets here
            raise ConfigError(
                f"{kind} {name!r}: no {kind} type {cfg.type!r} is installed",
                f"install the distribution that provides it, or fix the {kind}'s type",
            )
        return cls(name, cfg)
    return load_class(f"{kind} {name!r} (type {cfg.type})", registry[cfg.type])(name, cfg)
