"""Ping channel, healthchecks.io / Cronitor style.

``URL/start`` when a job starts, ``URL`` when it succeeds, ``URL/fail`` when it fails
(the failure's text is the POST body, which healthchecks shows as the ping's log).
``{job}`` in the URL is replaced by the job name (one check per job, e.g. with
healthchecks' slug URLs ``https://hc-ping.com/<ping-key>/{job}``).
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from tableship.ops.alerts.webhook import post

SUFFIX = {"start": "/start", "success": "", "fail": "/fail"}
MAX_BODY = 100_000  # healthchecks keeps the first 100 kB


def ping_url(base: str, job: str, signal: str) -> str:
    base = base.replace("{job}", quote(job, safe=""))
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + SUFFIX[signal]
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def ping(cfg, job: str, signal: str, body: str = "") -> None:
    url = ping_url(cfg.url.get_secret_value(), job, signal)
    data = body.encode("utf-8")[:MAX_BODY]
    post(
        url,
        data,
        {"Content-Type": "text/plain; charset=utf-8"},
        cfg.timeout,
        f"ping {signal} to {urlsplit(url).netloc.rsplit('@', 1)[-1]}",
    )
