"""Canary: the private helper of isal and zlib-ng the adaptive compressor uses
(``_ParallelCompress``, archive/adaptive.py) is there and behaves as expected. When this fails
after an upgrade, adaptive.py falls back to the public API (same bytes, slower); adapt it before
raising the upper bounds in pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from isal import isal_zlib
from zlib_ng import zlib_ng

from tableship.archive import adaptive

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("dist", "lib"), [("isal", isal_zlib), ("zlib-ng", zlib_ng)])
def test_parallel_compress_helper_is_unchanged(dist, lib):
    problems = adaptive.private_api_problems(lib)
    assert not problems, f"{dist} {importlib.metadata.version(dist)}: {problems} — adapt archive/adaptive.py"


def test_crc32_combine_is_there():
    import zlib

    a, b = b"first part ", b"second part"
    assert isal_zlib.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("dist", ["isal", "zlib-ng"])
def test_installed_version_is_within_the_pinned_range(dist):
    text = (ROOT / "pyproject.toml").read_text()
    m = re.search(rf'"{dist}>=([\d.]+),<([\d.]+)"', text)
    assert m, f"{dist} needs an upper bound in pyproject.toml (adaptive.py uses its private API)"
    as_tuple = lambda v: tuple(int(x) for x in re.findall(r"\d+", v)[:3])  # noqa: E731
    installed = importlib.metadata.version(dist)
    assert as_tuple(m.group(1)) <= as_tuple(installed) < as_tuple(m.group(2)), (installed, m.groups())


def test_a_missing_helper_is_reported():
    class Lib:
        __name__ = "fake_zlib"

    assert adaptive.private_api_problems(Lib()) == ["fake_zlib._ParallelCompress is missing"]
