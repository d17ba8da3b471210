"""The ONE place that touches impyla's private API: the HiveServer2 columnar fast path.

``sources/hs2/`` fetches result columns itself (``FetchResults`` on the cursor's running
operation) and turns each Thrift column straight into an Arrow array, 3× faster than
``cursor.fetchmany`` (docs/performance.md). That needs, from impyla:

- ``HiveServer2Cursor._last_operation`` — the running ``Operation`` (None when there is none);
- ``Operation.handle``, ``Operation.is_columnar`` and ``Operation._rpc(name, request, retry)``;
- the generated HS2 types ``impala._thrift_gen.TCLIService.ttypes``: ``TFetchResultsReq``
  (``operationHandle``, ``orientation``, ``maxRows``), ``TFetchOrientation.FETCH_NEXT``, and the
  response's ``results.columns`` / ``hasMoreRows``, each ``TColumn``'s typed ``values`` + ``nulls``.

``problems()`` checks every one of them against the installed impyla without a server;
``tests/unit/test_impyla_adapter.py`` (the canary) fails naming the impyla version when one is
missing or changed shape — that test is what lets the upper bound on impyla in pyproject.toml be
raised. At run time a changed API is not a crash either: ``columnar_operation`` answers None and
the source uses impyla's public ``fetchmany`` (slower, same rows), with one warning.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import impala
from impala import hiveserver2

log = logging.getLogger("tableship")

try:  # the generated HS2 thrift types impyla ships
    from impala._thrift_gen.TCLIService import ttypes as _ttypes
except ImportError:  # pragma: no cover - checked by problems()
    _ttypes = None

IMPYLA_VERSION: str = getattr(impala, "__version__", "unknown")

#: The typed value lists of a ``TColumn``, the common ones first.
VALUE_FIELDS = ("i64Val", "i32Val", "stringVal", "doubleVal", "boolVal", "i16Val", "byteVal", "binaryVal")


def _thrift_fields(cls: Any) -> set[str]:
    spec = getattr(cls, "thrift_spec", None) or ()
    return {f[2] for f in spec if f}


def problems() -> list[str]:
    """What of the private API above is missing or changed shape in the installed impyla
    (empty: the fast path can be used)."""
    out: list[str] = []
    if _ttypes is None:
        return ["impala._thrift_gen.TCLIService.ttypes cannot be imported"]
    for cls, fields in (
        ("TFetchResultsReq", {"operationHandle", "orientation", "maxRows"}),
        ("TFetchResultsResp", {"status", "hasMoreRows", "results"}),
        ("TRowSet", {"columns"}),
        ("TColumn", set(VALUE_FIELDS)),
    ):
        missing = fields - _thrift_fields(getattr(_ttypes, cls, None))
        if missing:
            out.append(f"ttypes.{cls} lacks the fields {sorted(missing)}")
    for name in VALUE_FIELDS:
        kind = getattr(_ttypes, "T" + name[0].upper() + name[1:-3] + "Column", None)
        if not {"values", "nulls"} <= _thrift_fields(kind):
            out.append(f"ttypes.T…Column for {name} lacks values/nulls")
    if getattr(getattr(_ttypes, "TFetchOrientation", None), "FETCH_NEXT", None) is None:
        out.append("ttypes.TFetchOrientation.FETCH_NEXT is missing")

    cursor = getattr(hiveserver2, "HiveServer2Cursor", None)
    if cursor is None:
        out.append("impala.hiveserver2.HiveServer2Cursor is missing")
    else:
        try:
            probe = cursor(session=None)
            if not hasattr(probe, "_last_operation") or probe._last_operation is not None:
                out.append("HiveServer2Cursor() no longer starts with _last_operation = None")
        except Exception as exc:
            out.append(f"HiveServer2Cursor(session=None) failed: {exc!r}")
    op = getattr(hiveserver2, "Operation", None)
    if op is None:
        out.append("impala.hiveserver2.Operation is missing")
    else:
        rpc = getattr(op, "_rpc", None)
        if rpc is None:
            out.append("Operation._rpc is missing")
        else:
            params = list(inspect.signature(rpc).parameters)
            if params[:3] != ["self", "func_name", "request"] or len(params) < 4:
                out.append(f"Operation._rpc's parameters changed: {params}")
        if not isinstance(inspect.getattr_static(op, "is_columnar", None), property):
            out.append("Operation.is_columnar is no longer a property")
        if "handle" not in inspect.signature(op.__init__).parameters:
            out.append("Operation(…) no longer takes a handle")
    return out


_PROBLEMS: list[str] | None = None


def fast_path_available() -> bool:
    """``problems()`` once per process; a changed API is logged once and disables the fast path."""
    global _PROBLEMS
    if _PROBLEMS is None:
        _PROBLEMS = problems()
        if _PROBLEMS:
            log.warning(
                "impyla %s: its private API changed (%s); HiveServer2 rows are fetched through "
                "cursor.fetchmany (slower)",
                IMPYLA_VERSION,
                "; ".join(_PROBLEMS),
            )
    return not _PROBLEMS


def has_operation(cursor: Any) -> bool:
    """Does ``cursor`` hold a server-side operation (to close)?"""
    return getattr(cursor, "_last_operation", None) is not None


def columnar_operation(cursor: Any) -> Any | None:
    """The cursor's running operation when its results can be fetched as columns; None: use
    ``cursor.fetchmany``."""
    if not fast_path_available():
        return None
    op = getattr(cursor, "_last_operation", None)
    return op if op is not None and op.is_columnar else None


def fetch_next(op: Any, max_rows: int) -> Callable[[], Any]:
    """A call that fetches the next ``max_rows`` rows of ``op`` (a ``TFetchResultsResp``)."""
    assert _ttypes is not None
    req = _ttypes.TFetchResultsReq(
        operationHandle=op.handle, orientation=_ttypes.TFetchOrientation.FETCH_NEXT, maxRows=max_rows
    )
    return lambda: op._rpc("FetchResults", req, False)  # not safe to retry: it moves the cursor


def response_columns(resp: Any) -> tuple[list[Any], bool]:
    """(the ``TColumn``s of a fetch, the server's hasMoreRows)."""
    columns = resp.results.columns if resp.results is not None and resp.results.columns else []
    return columns, bool(resp.hasMoreRows)


def column_values(col: Any) -> tuple[list[Any], bytes] | None:
    """(values, null bitmap) of one ``TColumn``; None when it holds no kind we know."""
    for name in VALUE_FIELDS:
        v = getattr(col, name, None)
        if v is not None:
            return v.values, v.nulls
    return None
