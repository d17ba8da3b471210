"""HiveServer2 errors as one line: the server's own words, without secrets or Java noise,
and the hint that fits them (a missing table or column; a refused session: authentication
or the server's own reason)."""

from __future__ import annotations

import re

from impala.error import HiveServer2Error
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
    r"(?::\s*FAILED)?:\s*|^(?:AnalysisException|ParseException|FAILED|Failed to open new session):\s*"
)
# What a server's refusal says when it is about the client's authentication: SASL (PLAIN /
# LDAP: "Error validating the login", "Peer indicated failure"), bad credentials, Kerberos.
# Deliberately not a bare "password" or "denied": a server whose metastore database refuses
# *its* password ("Access denied for user 'hive'@… (using password: YES)") or that may not
# impersonate the user needs its own configuration fixed, not the client's auth.
_AUTH_REFUSAL = re.compile(
    r"\bsasl|authenticat|error validating the login|peer indicated failure|"
    r"\b(?:bad|invalid|wrong|incorrect)\s+(?:user(?:name)?|password|credentials?)\b|"
    r"\buser(?:name)?\s+(?:or|and|/)\s+password\b|kerberos|gssapi|\bgss\b|gssexception|"
    r"\bticket\b.*\bexpired\b|\bldap\b",
    re.I,
)
_PATH = re.compile(r"\S*/\S*")


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


def refusal_is_auth(exc: BaseException) -> bool:
    """Whether a refused connect / OpenSession is about the client's authentication: a
    transport dropped during the handshake with no server message (wrong mechanism, TLS
    mismatch, SASL negotiation failure) or impyla's own refusal, or a server message (a
    ``HiveServer2Error``: the status of the RPC) about SASL, bad credentials,
    Kerberos/GSSAPI or LDAP. False for any other reason the server gave (e.g. ``Failed to
    open new session: … Couldn't create directory …``): that one is the server's own."""
    if not isinstance(exc, HiveServer2Error):  # thrift / socket / TLS / impyla: no server reason
        return True
    # paths and URLs out first: a folder named "…-nosasl-…" or "/etc/kerberos/…" says nothing
    words = _PATH.sub(" ", str(exc))
    return bool(_AUTH_REFUSAL.search(words))
