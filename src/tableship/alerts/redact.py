"""Keep secrets out of alerts.

Every ``SecretStr`` value of the configuration (passwords, tokens, webhook and ping
URLs, SQLAlchemy URLs) is replaced by ``***`` wherever it appears in an error message
or a log line, and so are credentials embedded in URLs (``scheme://user:pass@host``).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from pydantic import BaseModel, SecretStr

_URL_CREDS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/\s:@]*):(?P<pw>[^/\s@]+)@")
MASK = "***"


def _secrets(value: Any, out: set[str]) -> None:
    if isinstance(value, SecretStr):
        s = value.get_secret_value()
        if len(s) >= 4:
            out.add(s)
        # the secret parts of a URL are worth masking on their own, too (e.g. a token path)
        for part in re.split(r"[/?&=#:@]+", s):
            if len(part) >= 16 and re.search(r"\d", part) and re.search(r"[A-Za-z]", part):
                out.add(part)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _secrets(getattr(value, name), out)
    elif isinstance(value, dict):
        for v in value.values():
            _secrets(v, out)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            _secrets(v, out)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    @classmethod
    def from_config(cls, config) -> "Redactor":
        found: set[str] = set()
        for section in (config.sources, config.destinations, config.alerts.definitions):
            _secrets(section, found)
        return cls(found)

    def __call__(self, text: str | None) -> str | None:
        if not text:
            return text
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        return _URL_CREDS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
