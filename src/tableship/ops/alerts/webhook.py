"""Webhook channel: JSON POST of the event (fields documented in docs/alerts.md)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from tableship.core.version import __version__
from tableship.ops.alerts.errors import ChannelError


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, what: str) -> int:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"User-Agent": f"tableship/{__version__}", **headers}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read(65536)
            return resp.status
    except urllib.error.HTTPError as exc:
        detail = ""
        try:
            detail = exc.read(300).decode("utf-8", "replace").strip()
        except Exception:
            pass
        transient = exc.code >= 500 or exc.code in (408, 425, 429)
        raise ChannelError(
            f"{what}: HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else ""), transient=transient
        ) from None
    except urllib.error.URLError as exc:
        raise ChannelError(f"{what}: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise ChannelError(f"{what}: {type(exc).__name__}: {exc}") from None


def _host(url: str) -> str:
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def send(name: str, cfg, event) -> None:
    url = cfg.url.get_secret_value()
    headers = {"Content-Type": "application/json"}
    headers.update({k: v.get_secret_value() for k, v in cfg.headers.items()})
    body = json.dumps(event.payload(), ensure_ascii=False).encode("utf-8")
    post(url, body, headers, cfg.timeout, f"webhook {_host(url)}")
