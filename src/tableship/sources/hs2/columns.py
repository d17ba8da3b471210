"""HiveServer2 result columns → Arrow types and names.

Types: BOOLEAN→bool, TINYINT/SMALLINT/INT/BIGINT→int8/16/32/64, FLOAT→float32 (sent
as a double), DOUBLE→float64, DECIMAL(p,s)→decimal128(p,s), DATE→date32,
TIMESTAMP→timestamp[us] (a value with non-zero digits below the microsecond is an
error rather than a silent truncation), BINARY→binary, everything else (STRING,
VARCHAR, CHAR, complex types and intervals as the server renders them)→string.
"""

from __future__ import annotations

import pyarrow as pa

from tableship.core.errors import SourceError

_FIXED_TYPES: dict[str, pa.DataType] = {
    "BOOLEAN": pa.bool_(),
    "TINYINT": pa.int8(),
    "SMALLINT": pa.int16(),
    "INT": pa.int32(),
    "BIGINT": pa.int64(),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "BINARY": pa.binary(),
}


def arrow_type(hs2_type: str, precision: int | None = None, scale: int | None = None) -> pa.DataType:
    """The Arrow type for a HiveServer2 result column type (as in cursor.description)."""
    t = (hs2_type or "").upper()
    if t == "DECIMAL":
        p = int(precision or 38)
        s = int(scale or 0)
        return pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
    return _FIXED_TYPES.get(t, pa.string())


def column_names(raw: list[str]) -> list[str]:
    """Result column names with HiveServer2's ``table.`` prefix stripped (dups → error)."""
    names = [n.rsplit(".", 1)[-1] if "." in n else n for n in raw]
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    dups = [n for n, k in seen.items() if k > 1]
    if dups:
        raise SourceError(
            f"the result has duplicate column names: {', '.join(dups)}",
            "select distinct column names (alias them) — a CSV with two identical headers cannot be restored",
        )
    return names


def schema_from_description(description) -> pa.Schema:
    """The Arrow schema of a result, from impyla's ``cursor.description``
    (name, type, …, precision, scale)."""
    names = column_names([d[0] for d in description])
    return pa.schema(
        [pa.field(n, arrow_type(d[1], d[4], d[5])) for n, d in zip(names, description, strict=True)]
    )
