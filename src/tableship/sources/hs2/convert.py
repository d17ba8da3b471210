"""Wire values → Arrow arrays, with no Python loop per value.

The columnar fast path (``converter``): numbers and booleans from the Thrift value lists,
strings/decimals/timestamps/dates from the wire strings (UTF-8 validated, then
``pyarrow.compute.cast`` to decimal128(p, s) / timestamp[us] / date32 in C++), the HS2
null bitmap inverted into an Arrow validity bitmap. The row protocol's fallback
(``from_python``): the Python values ``fetchmany`` returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tableship.core.errors import SourceError
from tableship.sources import impyla_adapter

log = logging.getLogger("tableship")


def _validity(nulls: bytes | None, n: int) -> pa.Buffer | None:
    """HS2 null bitmap (bit set = NULL, may be short or empty) → Arrow validity bitmap."""
    if not nulls or n == 0:
        return None
    nbytes = (n + 7) // 8
    bits = np.frombuffer(nulls, dtype=np.uint8, count=min(len(nulls), nbytes))
    if not bits.any():
        return None
    out = np.full(nbytes, 0xFF, dtype=np.uint8)
    out[: len(bits)] = ~bits
    return pa.py_buffer(out)


def column_values(col) -> tuple[list, bytes]:
    values = impyla_adapter.column_values(col)
    if values is None:
        raise SourceError("the server sent a result column of an unknown kind")
    return values


def _texts(values: list, validity: pa.Buffer | None, name: str) -> pa.Array:
    """Wire strings (bytes) → UTF-8 string array with the given validity."""
    n = len(values)
    raw = pa.array(values, pa.binary()) if n else pa.array([], pa.binary())
    arr = pa.Array.from_buffers(pa.binary(), n, [validity, *raw.buffers()[1:]], null_count=-1)
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        # not valid UTF-8: replace the bad bytes (U+FFFD) like impala-shell does
        log.warning(
            "column %s has values that are not valid UTF-8; invalid bytes are replaced by U+FFFD", name
        )
        fixed = [None if v is None else v.decode("utf-8", "replace") for v in arr.to_pylist()]
        return pa.array(fixed, pa.string())


def _parse_timestamps(text: pa.Array, name: str) -> pa.Array:
    try:
        return pc.cast(text, pa.timestamp("us"))
    except pa.ArrowInvalid:
        pass
    # Impala sends 9 fractional digits: drop trailing zeros beyond the microsecond
    trimmed = pc.replace_substring_regex(text, r"(\.\d{6})0+$", r"\1")
    try:
        return pc.cast(trimmed, pa.timestamp("us"))
    except pa.ArrowInvalid:
        pass
    fine = pc.match_substring_regex(text, r"\.\d{7,}$")
    if pc.any(fine).as_py():
        bad = pc.filter(text, fine)[0].as_py()
        raise SourceError(
            f"column {name} has a timestamp with digits below the microsecond ({bad!r}); tableship keeps "
            "timestamps to the microsecond and will not truncate them silently",
            f"select the column truncated or as a string in a view, e.g. CAST({name} AS STRING)",
        )
    for v in text.to_pylist():
        if v is None:
            continue
        try:
            pc.cast(pa.array([v]), pa.timestamp("us"))
        except pa.ArrowInvalid:
            raise SourceError(
                f"column {name} has a timestamp the server wrote as {v!r}, which cannot be parsed"
            ) from None
    raise SourceError(f"column {name}: cannot parse the timestamps the server sent")


def converter(name: str, t: pa.DataType) -> Callable[[list, bytes, int], pa.Array]:
    """A function (values, nulls, n) → Arrow array of type ``t`` for one result column."""
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or t == pa.float64():

        def fixed(values: list, nulls: bytes, n: int) -> pa.Array:
            data = pa.array(values, t)
            validity = _validity(nulls, n)
            if validity is None:
                return data
            return pa.Array.from_buffers(t, n, [validity, data.buffers()[1]], null_count=-1)

        return fixed
    if t == pa.float32():

        def single(values: list, nulls: bytes, n: int) -> pa.Array:
            data = pa.array(values, pa.float64())
            validity = _validity(nulls, n)
            if validity is not None:
                data = pa.Array.from_buffers(pa.float64(), n, [validity, data.buffers()[1]], null_count=-1)
            return pc.cast(data, pa.float32(), safe=False)

        return single
    if pa.types.is_binary(t):

        def binary(values: list, nulls: bytes, n: int) -> pa.Array:
            raw = pa.array(values, pa.binary())
            return pa.Array.from_buffers(
                pa.binary(), n, [_validity(nulls, n), *raw.buffers()[1:]], null_count=-1
            )

        return binary
    if pa.types.is_string(t):
        return lambda values, nulls, n: _texts(values, _validity(nulls, n), name)
    if pa.types.is_decimal(t):

        def decimal(values: list, nulls: bytes, n: int) -> pa.Array:
            text = _texts(values, _validity(nulls, n), name)
            try:
                return pc.cast(text, t)
            except pa.ArrowInvalid as exc:
                raise SourceError(f"column {name}: a value does not fit {t}: {exc}") from None

        return decimal
    if pa.types.is_timestamp(t):
        return lambda values, nulls, n: _parse_timestamps(_texts(values, _validity(nulls, n), name), name)
    if pa.types.is_date(t):

        def date(values: list, nulls: bytes, n: int) -> pa.Array:
            text = _texts(values, _validity(nulls, n), name)
            try:
                return pc.cast(text, pa.date32())
            except pa.ArrowInvalid as exc:
                raise SourceError(f"column {name}: cannot parse a date the server sent: {exc}") from None

        return date
    raise SourceError(f"column {name}: unsupported type {t}")  # pragma: no cover


def from_python(values: list, t: pa.DataType, name: str) -> pa.Array:
    """Fallback (row protocol): Python values, or strings for temporal/decimal types."""
    if pa.types.is_decimal(t) or pa.types.is_timestamp(t) or pa.types.is_date(t):
        if any(isinstance(v, (str, bytes)) for v in values):
            text = pa.array(
                [v.decode() if isinstance(v, bytes) else (None if v is None else str(v)) for v in values],
                pa.string(),
            )
            return _parse_timestamps(text, name) if pa.types.is_timestamp(t) else pc.cast(text, t)
    if pa.types.is_string(t):
        values = [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else (None if v is None else str(v))
            for v in values
        ]
    if t == pa.float32():
        return pc.cast(pa.array(values, pa.float64()), t, safe=False)
    return pa.array(values, t)


def combine(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    """One record batch of ``batches`` (their rows in order)."""
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches, schema=schema).combine_chunks().to_batches()[0]
