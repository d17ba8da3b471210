"""HiveServer2 errors as one line: the server's own words, without secrets or Java noise,
and the hint that fits them."""

from __future__ import annotations

import re

from thrift.transport.TTransport import TTransportException

from tableship.core.redact import redact

_TABLE_MISSING = re.compile(
    r"TABLE_OR_VIEW_NOT_FOUND|Table or view not found|Could not resolve table reference|"
    r"Table not found|Table does not exist|SCHEMA_NOT_FOUND|Database does not exist|"
    r"Database '[^']*' not found|cannot be found",
    re.I,
)
_COLUMN_MISSING = re.compile(
    r"UNRESOLVED_COLUMN|cannot resolve|Could not resolve column|Invalid column reference|Invalid "
    r"table alias or column",
    re.I,
)
_JAVA_EXCEPTION = re.compile(r"\b(?:[a-z_][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error)\b:?\s*")
_NOISE = re.compile(
    r"\b(?:Error while compiling statement|Error running query|Error while processing statement)"
    r"(?::\s*FAILED)?:\s*|^(?:AnalysisException|ParseException|FAILED):\s*"
)


def server_message(text: str) -> str:
    """The useful part of a server error: without Java exception class names and the
    'Error running query:' wrappers, and without a repeated [ERROR_CLASS] tag."""
    text = _JAVA_EXCEPTION.sub("", text)
    text = _NOISE.sub("", text)
    text = re.sub(r"(\[[A-Z_.]+\])\s*\1", r"\1", text)
    return " ".join(text.split()) or "unknown error"


def clean(exc: BaseException, secrets: list[str]) -> str:
    """The first line of a driver error, the ``secrets`` masked, redacted and cut to 500
    characters (a transport error without text is named by its type)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TTransportException) and not str(exc):
        text = f"transport error (type {exc.type})"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    return redact(server_message(first))[:500]  # redacted before cutting: no secret half left


def statement_hint(message: str) -> str | None:
    """What to check for a failed statement's (cleaned) message, when it names a missing
    table or column."""
    if _TABLE_MISSING.search(message):
        return "check the job's table name, or whether the table was dropped upstream"
    if _COLUMN_MISSING.search(message):
        return "check the job's partition_column and expect_columns against the table"
    return None
