"""Canary: the private impyla API the HiveServer2 fast path uses (sources/impyla_adapter.py) is
there, in the shape the adapter expects. When this fails after an impyla upgrade, the fast path
is off (rows come through cursor.fetchmany); adapt the adapter before raising impyla's upper
bound in pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from tableship.sources import impyla_adapter

ROOT = Path(__file__).resolve().parents[2]


def test_the_private_api_the_fast_path_uses_is_unchanged():
    problems = impyla_adapter.problems()
    assert not problems, (
        f"impyla {impyla_adapter.IMPYLA_VERSION} changed the private API the HiveServer2 fast path "
        f"uses: {problems} — adapt src/tableship/sources/impyla_adapter.py"
    )
    assert impyla_adapter.fast_path_available()


def test_the_installed_impyla_is_within_the_pinned_range():
    """The upper bound is the last version this canary passed on (raise both together)."""
    text = (ROOT / "pyproject.toml").read_text()
    bounds = set(re.findall(r'"impyla>=([\d.]+),<([\d.]+)"', text))
    assert len(bounds) == 1, f"every impyla requirement in pyproject.toml has the same bounds: {bounds}"
    ((low, high),) = bounds
    installed = importlib.metadata.version("impyla")
    as_tuple = lambda v: tuple(int(x) for x in re.findall(r"\d+", v)[:3])  # noqa: E731
    assert as_tuple(low) <= as_tuple(installed) < as_tuple(high), (installed, low, high)


def test_a_cursor_without_an_operation_has_nothing_to_close_or_fetch():
    from impala.hiveserver2 import HiveServer2Cursor

    cur = HiveServer2Cursor(session=None)
    assert not impyla_adapter.has_operation(cur)
    assert impyla_adapter.columnar_operation(cur) is None


def test_columns_are_read_from_the_thrift_types():
    from impala._thrift_gen.TCLIService import ttypes

    col = ttypes.TColumn(i64Val=ttypes.TI64Column(values=[1, 2], nulls=b"\x02"))
    assert impyla_adapter.column_values(col) == ([1, 2], b"\x02")
    assert impyla_adapter.column_values(ttypes.TColumn()) is None
    resp = ttypes.TFetchResultsResp(hasMoreRows=False, results=ttypes.TRowSet(columns=[col]))
    assert impyla_adapter.response_columns(resp) == ([col], False)
