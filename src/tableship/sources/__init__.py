"""Sources: one module per engine behind the :class:`Source` protocol."""

from tableship.sources.base import Dialect, Query, Source, count_query, open_source, window_query

__all__ = ["Dialect", "Query", "Source", "count_query", "open_source", "window_query"]
