"""Kept for imports: the redactor lives in :mod:`tableship.redact` (one choke point for
every output, not only alerts)."""

from ..redact import MASK, Redactor, redact  # noqa: F401
