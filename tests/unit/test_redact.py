"""The redactor on its own: URL parsing (last '@'), query secrets, variants and pieces."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from tableship.core import redact
from tableship.core.redact import RedactingFormatter, Redactor, split_userinfo, url_secrets


def fragments(secret: str, n: int = 6) -> list[str]:
    return [secret[i : i + n] for i in range(len(secret) - n + 1)] or [secret]


@pytest.mark.parametrize(
    "url, password",
    [
        ("postgresql://postgres:Pa@ssTail99@127.0.0.1:5432/db", "Pa@ssTail99"),
        ("postgresql://u:Pa%40ssTail99@h/db", "Pa%40ssTail99"),
        ("postgresql://u:a:b:c@h:1/db?x=y@z", "a:b:c"),
        ("postgresql://u:a/b?c#d e@h:5/db", "a/b?c#d e"),
        ("postgresql://u@h/db", None),
    ],
)
def test_password_runs_to_the_last_at_before_the_host(url, password):
    parts = split_userinfo(url)
    assert (parts[2] if parts else None) == password


def test_query_string_password_is_a_secret():
    assert "Qu3ry!Secret" in url_secrets("postgresql://u@h/db?sslmode=require&password=Qu3ry!Secret")
    assert "require" not in url_secrets("postgresql://u@h/db?sslmode=require&password=Qu3ry!Secret")


@pytest.mark.parametrize(
    "text",
    [
        'could not translate host name "ssTail99@127.0.0.1" to address',
        "postgresql://postgres:Pa%40ssTail99@127.0.0.1:5432/db",
        "password Pa@ssTail99 rejected",
        json.dumps({"error": "Pa@ssTail99"}),
    ],
)
def test_no_fragment_of_a_url_password_survives(text):
    r = Redactor(["postgresql+psycopg://postgres:Pa@ssTail99@127.0.0.1:5432/db"])
    out = r(text)
    assert not any(f in out for f in fragments("Pa@ssTail99")), out
    assert ("127.0.0.1" in out) == ("127.0.0.1" in text)  # the host is no secret: not masked


def test_unknown_urls_and_query_passwords_are_masked_by_pattern():
    r = Redactor()
    assert r("see https://bob:s3cr@t@example.org/x") == "see https://bob:***@example.org/x"
    assert r("dsn host=h?password=hunter22&x=1") == "dsn host=h?password=***&x=1"


def test_encoded_decoded_and_escaped_forms():
    secret = 'sp ace"quo/te%41'
    r = Redactor([secret])
    for form in (secret, "sp%20ace%22quo%2Fte%2541", json.dumps(secret)[1:-1]):
        assert "***" in r(f"x {form} y") and not any(f in r(f"x {form} y") for f in fragments(secret))


def test_log_formatter_and_sqlite_adapter(tmp_path):
    redact.activate(["Hunter2Secret"])
    try:
        rec = logging.LogRecord(
            "tableship", logging.ERROR, __file__, 1, "login with %s failed", ("Hunter2Secret",), None
        )
        assert "Hunter2Secret" not in RedactingFormatter(logging.Formatter("%(message)s")).format(rec)
        db = sqlite3.connect(tmp_path / "x.db")
        db.execute("create table t (v text)")
        db.execute("insert into t values (?)", ("error: Hunter2Secret refused",))
        assert db.execute("select v from t").fetchone()[0] == "error: *** refused"
    finally:
        redact.activate([])


def test_std_stream_wrapper_never_splits_a_secret():
    import io

    redact.activate(["Hunter2Secret"])
    try:
        raw = io.BytesIO()
        stream = redact.RedactingStream(io.TextIOWrapper(raw, encoding="utf-8", write_through=True))
        stream.write("a Hunter2")  # one secret over two writes
        stream.write("Secret b\n")
        stream.buffer.write(b"bytes Hunter2Secret\n")
        stream.write("no newline Hunter2Secret")
        stream.flush()
        assert raw.getvalue() == b"a *** b\nbytes ***\nno newline ***"
    finally:
        redact.activate([])
