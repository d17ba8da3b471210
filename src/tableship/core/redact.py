"""Keep secrets out of every text tableship writes: the one redaction choke point.

Secrets are known structurally, once, when the configuration is loaded
(:func:`tableship.config.loader.parse_config` calls :func:`activate`):

- every ``SecretStr`` field (``password``, ``key_passphrase``, SQLAlchemy / webhook / ping
  ``url``, webhook ``headers``) and every value under a secret-looking key of the raw
  file (so a config that fails validation is covered too);
- every value a ``${file:…}`` reference was replaced by;
- for URL-shaped secrets: the password of the user info — everything up to the *last*
  ``@`` before the host, so ``postgres:Pa@ssTail99@host`` gives ``Pa@ssTail99`` — and the
  values of secret-looking query parameters (``?password=…``, ``?token=…``).

Each secret is masked as written, percent-decoded, percent-encoded, JSON- and
repr-escaped, and so are its recognisable pieces (the parts of at least 6 characters
between URL delimiters: a driver that misparses ``Pa@ssTail99@host`` must not leak
``ssTail99``). Credentials of URLs that are not in the config (``scheme://u:p@host``,
``?password=…``) are masked by pattern.

Where texts pass through it (see docs/configuration.md, "Secrets"):

- stdout and stderr — :func:`wrap_std_streams` (``cli.main``) covers ``Error:`` lines,
  summaries, ``status``/``history`` output and ``--debug`` tracebacks;
- the log handlers — :class:`RedactingFormatter` (log file, JSON log, stderr);
- the ledger — an sqlite3 adapter for ``str`` installed by :func:`activate`, so every
  string bound into any SQLite statement (runs.error, incidents, alert outbox,
  verifications...) is redacted, whatever module writes it;
- status file, metrics, manifests and alert events — :func:`redact` at the write.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import sys
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from pydantic import BaseModel, SecretStr

MASK = "***"
#: shortest secret masked wherever it appears (shorter ones would mask ordinary words)
MIN_SECRET = 4
#: shortest piece of a secret masked on its own
MIN_PIECE = 6

#: keys of the raw config whose values are secrets (the SecretStr fields and their kin)
_SECRET_KEY = re.compile(r"password|passwd|passphrase|secret|token|api_?key|^url$|^headers$", re.I)
SECRET_QUERY_KEY = re.compile(r"pass|pwd|secret|token|key|auth|cred|sig|session", re.I)
_URL_START = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.S)
_HOST_AFTER_AT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~\-]*)(:\d*)?([/?#]|$)")
_PIECE_SPLIT = re.compile(r"[@:/?#&=%;,\s'\"\\]+")
# credentials of URLs we were not told about: the password runs to the last '@' of the token
_URL_CREDS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]*:)(?P<pw>\S*)@(?=[A-Za-z0-9\[])")
_QUERY_CREDS = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|pass|secret|token|api_key|apikey|access_token)=)"
    r"(?P<val>[^&\s#'\"]+)",
    re.I,
)


# ---------------------------------------------------------------- finding secrets


def split_userinfo(url: str) -> tuple[str, str, str | None, str] | None:
    """``scheme://user:password@host…`` → (scheme, user, password, rest-after-@), the
    password running to the *last* ``@`` before the host (so an unencoded ``@`` in a
    password is kept whole). None when ``url`` has no user info. Values stay as written
    (percent-encoded if they were)."""
    m = _URL_START.match(url)
    if not m:
        return None
    scheme, rest = m.group(1), m.group(2)
    ats = [i for i, c in enumerate(rest) if c == "@"]
    # RFC 3986: the authority ends at the first / ? #; its user info ends at its last '@'
    end = re.search(r"[/?#]", rest)
    in_authority = [i for i in ats if end is None or i < end.start()]
    at = in_authority[-1] if in_authority else None
    if at is None:
        # unencoded / ? # in the password: the last '@' followed by something host-shaped
        at = next((i for i in reversed(ats) if _HOST_AFTER_AT.match(rest, i + 1)), None)
    if at is None:
        return None
    user, sep, password = rest[:at].partition(":")
    return scheme, user, password if sep else None, rest[at + 1 :]


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL: user-info password(s) and secret-looking query values."""
    out: list[str] = []
    parts = split_userinfo(url)
    if parts and parts[2]:
        out.append(parts[2])
    m = _URL_START.match(url)
    if m and "@" in m.group(2):  # the tolerant reading too, when it differs (masking more is harmless)
        rest = m.group(2)
        at = next(
            (i for i in reversed(range(len(rest))) if rest[i] == "@" and _HOST_AFTER_AT.match(rest, i + 1)),
            None,
        )
        if at is not None:
            _, sep, pw = rest[:at].partition(":")
            if sep and pw:
                out.append(pw)
    if m and "?" in m.group(2):
        query = m.group(2).split("?", 1)[1].split("#", 1)[0]
        for pair in re.split(r"[&;]", query):
            key, _, value = pair.partition("=")
            if value and SECRET_QUERY_KEY.search(unquote_plus(key)):
                out.append(value)
    return out


def _variants(secret: str, pieces: bool = True) -> set[str]:
    """The forms a secret may take in a text: as written, decoded, encoded, escaped (and,
    with ``pieces``, its parts between URL delimiters)."""
    forms = {secret, unquote(secret), unquote_plus(secret)}
    for f in list(forms):
        forms |= {
            quote(f, safe=""),
            quote_plus(f, safe=""),
            quote(f, safe="@:"),
            json.dumps(f)[1:-1],
            repr(f)[1:-1],
        }
    out = {f for f in forms if len(f) >= MIN_SECRET}
    if pieces:
        for f in forms:
            out |= {p for p in _PIECE_SPLIT.split(f) if len(p) >= MIN_PIECE}
    return out


def expand(secrets: Iterable[str]) -> set[str]:
    """Every string to mask for these secret values (URL parts and variants included)."""
    out: set[str] = set()
    for s in secrets:
        if not isinstance(s, str):
            continue
        s = s.strip()
        if len(s) < MIN_SECRET:
            continue
        if not _URL_START.match(s):
            out |= _variants(s)
            continue
        # a URL: masked whole; its password and secret query values also in pieces (not the
        # host or the database name, which are no secret and would be masked everywhere)
        out |= _variants(s, pieces=False)
        for v in url_secrets(s):
            out |= _variants(v)
        # long token-like path segments of secret URLs (webhook paths) are secrets of their own
        for p in re.split(r"[/?&=#:@]+", s):
            if len(p) >= 16 and re.search(r"\d", p) and re.search(r"[A-Za-z]", p):
                out |= _variants(p, pieces=False)
    return out


def model_secrets(value: Any, out: set[str] | None = None) -> set[str]:
    """Every ``SecretStr`` value inside pydantic models / dicts / lists."""
    out = set() if out is None else out
    if isinstance(value, SecretStr):
        out.add(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            model_secrets(getattr(value, name, None), out)
    elif isinstance(value, dict):
        for v in value.values():
            model_secrets(v, out)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            model_secrets(v, out)
    return out


def raw_secrets(value: Any, out: set[str] | None = None, secret: bool = False) -> set[str]:
    """Strings under secret-looking keys of a raw (parsed TOML) document."""
    out = set() if out is None else out
    if isinstance(value, dict):
        for k, v in value.items():
            raw_secrets(v, out, secret or bool(_SECRET_KEY.search(str(k))))
    elif isinstance(value, list):
        for v in value:
            raw_secrets(v, out, secret)
    elif isinstance(value, str) and secret:
        out.add(value)
    return out


# ---------------------------------------------------------------- masking


class Redactor:
    """Masks the given secrets (and URL credentials by pattern) in a text."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted(expand(secrets), key=len, reverse=True)
        self._re = re.compile("|".join(re.escape(s) for s in self.secrets)) if self.secrets else None

    @classmethod
    def from_config(cls, config) -> Redactor:
        found = model_secrets([config.sources, config.destinations, config.alerts.definitions])
        found |= set(getattr(config, "secrets", ()) or ())
        return cls(found)

    def __call__(self, text):
        if not text or not isinstance(text, str):
            return text
        if self._re is not None:
            text = self._re.sub(MASK, text)
        if "://" in text:
            text = _URL_CREDS.sub(lambda m: m["head"] + MASK + "@", text)
        if "=" in text:
            text = _QUERY_CREDS.sub(lambda m: m["head"] + MASK, text)
        return text


_lock = threading.Lock()
_active = Redactor()


def activate(secrets: Iterable[str]) -> Redactor:
    """Make these the secrets every output of this process is redacted with (the config
    being loaded), and make sure SQLite writes go through the redactor."""
    global _active
    with _lock:
        _active = Redactor(secrets)
        _install_sqlite()
    return _active


def redact(text):
    """Mask the active secrets in ``text`` (None and non-strings pass through)."""
    return _active(text)


def redact_bytes(data: bytes) -> bytes:
    """The same for UTF-8 bytes (manifests, metrics)."""
    if not _active.secrets and b"://" not in data and b"=" not in data:
        return data
    return _active(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- where texts leave the process

_sqlite_installed = False


def _install_sqlite() -> None:
    """Every ``str`` bound into an SQLite statement of this process is redacted: the ledger
    (runs.error, transitions, incidents, alert outbox, verifications) cannot store a
    secret, whichever module writes it. (Registering an adapter for ``str`` makes the
    sqlite3 module call it for every string parameter.)"""
    global _sqlite_installed
    if not _sqlite_installed:
        sqlite3.register_adapter(str, redact)
        _sqlite_installed = True


class RedactingFormatter(logging.Formatter):
    """Wraps a formatter: the whole formatted record (message, traceback, JSON) is redacted."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class RedactingStream:
    """A text stream that redacts what is written to it, a line at a time (a secret is
    never split across two writes of the wrapped stream)."""

    def __init__(self, inner):
        self._inner = inner
        self._buf = ""

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError("write() argument must be str")
        self._buf += s
        cut = max(self._buf.rfind("\n"), self._buf.rfind("\r"))
        if cut >= 0 or len(self._buf) > 65536:
            cut = cut if cut >= 0 else len(self._buf) - 1
            out, self._buf = self._buf[: cut + 1], self._buf[cut + 1 :]
            self._inner.write(redact(out))
        return len(s)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._buf:
            out, self._buf = self._buf, ""
            self._inner.write(redact(out))
        self._inner.flush()

    @property
    def buffer(self):
        """Bytes written to the binary layer (click does, for a misconfigured encoding) are
        redacted too."""
        inner = getattr(self._inner, "buffer", None)
        return None if inner is None else _RedactingBinary(inner, self)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _RedactingBinary:
    def __init__(self, inner, text: RedactingStream):
        self._inner = inner
        self._text = text

    def write(self, data) -> int:
        self._text.flush()  # keep the order of text and bytes
        self._inner.write(redact_bytes(bytes(data)))
        return len(data)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def wrap_std_streams() -> None:
    """Route ``sys.stdout`` / ``sys.stderr`` (and Python's last-resort log handler)
    through the redactor. Idempotent."""
    if not isinstance(sys.stdout, RedactingStream) and sys.stdout is not None:
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream) and sys.stderr is not None:
        sys.stderr = RedactingStream(sys.stderr)
    last = logging.StreamHandler(sys.stderr)
    last.setLevel(logging.WARNING)
    last.setFormatter(RedactingFormatter(logging.Formatter()))
    logging.lastResort = last
