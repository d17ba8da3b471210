"""What a path template can render (templates.py): portable codes, patterns, overlaps."""

from __future__ import annotations

import datetime as dt

import pytest

from tableship.core.templates import (
    CODES,
    anything_around,
    anything_then,
    check_date_spec,
    max_bytes,
    normalise_dir,
    overlap,
    pattern,
)

NAMES = {"job": "j", "table": "traffic", "database": "db"}


def pat(template: str, names: dict = NAMES):
    return pattern(template, names)


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_portable_code_renders_within_its_pattern(code):
    """Each code's pattern matches what strftime really writes, for every day of a few years."""
    p = pat("{start:%" + code + "}")
    day = dt.date(1999, 12, 20)
    while day < dt.date(2003, 1, 10):
        text = day.strftime("%" + code)
        assert overlap(p, pat(text.replace("{", "{{").replace("}", "}}"))), (code, day, text)
        day += dt.timedelta(days=1)


@pytest.mark.parametrize("spec", ["%Q", "%-d", "%c", "%x", "%H", "%s", "%", "%Y%", "%E", "{table}"])
def test_codes_that_are_not_portable_are_refused(spec):
    with pytest.raises(ValueError):
        check_date_spec(spec, "test")


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("{table}_{start:%Y%m%d}.csv.gz", "{table}_{end:%Y%m%d}.csv.gz", True),
        ("{table}_{start:%Y%m%d}.csv.gz", "{table}_{start:%Y%m}.csv.gz", False),
        ("{job}_{start:%Y}.csv.gz", "x_{start:%Y}.csv.gz", False),
        ("{table}_{start:%b}.csv", "{table}_{start:%m}.csv", False),  # letters never match digits
        ("{table}_{start:%B}.csv", "traffic_May.csv", True),
        ("{table}_{start:%B}.csv", "traffic_September.csv", True),
        ("{table}_{start:%B}.csv", "traffic_Mo.csv", False),  # too short for a month name
        ("{start}", "2026-01-31", True),
        ("{start}", "{end:%Y%m%d}", False),
        ("{table:>10}", "   traffic", True),
    ],
)
def test_overlap(a, b, expected):
    assert overlap(pat(a), pat(b)) is expected
    assert overlap(pat(b), pat(a)) is expected


def test_anything_patterns():
    assert overlap(pat("{table}_{start:%Y}.part"), anything_then(".part"))
    assert not overlap(pat("{table}_{start:%Y}.partx"), anything_then(".part"))
    assert overlap(pat(".x{start:%Y}.tableship-other-{end:%d}"), anything_around(".tableship-"))
    assert not overlap(pat("{table}.tableship"), anything_around(".tableship-"))


def test_longest_rendering_in_bytes():
    assert max_bytes(pat("{table}_{start:%Y%m%d}.csv.gz")) == len("traffic_20260101.csv.gz")
    assert max_bytes(pat("{start:%B}")) == len("September")
    assert max_bytes(pat("é{table}")) == 2 + 7


def test_folders_are_normalised_like_check_relative():
    assert overlap(normalise_dir(pat("./a//{table}/")), pat("a/traffic"))
    assert normalise_dir(pat("./")) == []
