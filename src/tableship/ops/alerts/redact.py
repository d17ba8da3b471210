"""Kept for imports: the redactor lives in :mod:`tableship.core.redact` (one choke point for
every output, not only alerts)."""

from tableship.core.redact import MASK, Redactor, redact  # noqa: F401
