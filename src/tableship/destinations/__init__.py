"""Destinations: one module per target behind the :class:`Destination` protocol."""

from tableship.destinations.base import Destination, open_destination

__all__ = ["Destination", "open_destination"]
