"""format = { preset = "impala-shell" } against an oracle of impala-shell's own output code.

The oracle is what impala-shell does with HiveServer2 results (shell/impala_shell/
impala_client.py ``_transpose`` + value_converter.py + shell_output.py
``DelimitedOutputFormatter``): NULL → 'NULL', booleans 'true'/'false', integers and
floats through ``str()``, DECIMAL/TIMESTAMP/DATE/STRING as the server's text, then
``csv.writer(delimiter, lineterminator='\\n', quoting=csv.QUOTE_MINIMAL)``.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import struct

import pyarrow as pa
import pytest

from tableship.archive.csvrender import CsvDialect, CsvRenderer
from tableship.config.models import FormatSpec

PRESET = CsvDialect(delimiter=";", header=False, null="NULL", quoting="minimal", preset="impala-shell")


def impala_timestamp(v: dt.datetime) -> str:
    # Impala TimestampParser::FormatDefault: 9 fractional digits when non-zero
    base = f"{v.year:04d}-{v:%m-%d %H:%M:%S}"
    return base if v.microsecond == 0 else f"{base}.{v.microsecond:06d}000"


def impala_decimal(v: decimal.Decimal, scale: int) -> str:
    return f"{v:.{scale}f}"


def server_text(v, t: pa.DataType):
    """The value as impala-shell would hold it before csv.writer."""
    if v is None:
        return "NULL"
    if pa.types.is_boolean(t):
        return "true" if v else "false"
    if pa.types.is_floating(t):
        if pa.types.is_float32(t):  # sent as the double nearest the float32
            v = struct.unpack("f", struct.pack("f", v))[0]
        return str(float(v))
    if pa.types.is_decimal(t):
        return impala_decimal(v, t.scale)
    if pa.types.is_timestamp(t):
        return impala_timestamp(v)
    if pa.types.is_date(t):
        return v.isoformat()
    return str(v)


def oracle(table: pa.Table, delimiter: str = ";") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    types = table.schema.types
    for row in table.to_pylist():
        w.writerow([server_text(v, t) for v, t in zip(row.values(), types, strict=True)])
    # impala-shell rstrips one batch's trailing newlines, then print() adds one
    text = buf.getvalue().rstrip("\n") + "\n" if buf.getvalue() else ""
    return text.encode("utf-8")


def render(table: pa.Table, dialect: CsvDialect = PRESET) -> bytes:
    r = CsvRenderer(table.schema, dialect)
    return r.header() + b"".join(r.render(b) for b in table.to_batches())


TABLE = pa.table(
    {
        "b": pa.array([1, -9223372036854775808, None, 0, 7, 8], pa.int64()),
        "i": pa.array([2, None, 3, -4, 5, 6], pa.int32()),
        "d": pa.array(
            [
                decimal.Decimal("1.5"),
                decimal.Decimal("-0.0001"),
                None,
                decimal.Decimal("0"),
                decimal.Decimal("99999999999999.9999"),
                decimal.Decimal("12"),
            ],
            pa.decimal128(18, 4),
        ),
        "w": pa.array(
            [
                decimal.Decimal("12345678901234567890.0123456789"),
                None,
                decimal.Decimal("-0.5"),
                decimal.Decimal("0"),
                decimal.Decimal("1"),
                decimal.Decimal("2"),
            ],
            pa.decimal128(38, 10),
        ),
        "f": pa.array([0.1, 468.0, 1e16, 1e-05, -0.0, None], pa.float64()),
        "g": pa.array([1.5e-07, 123456789.123, float("inf"), float("nan"), 2.0**53, 5e-324], pa.float64()),
        "r": pa.array([0.1, 1.0, None, 3.4e38, -2.5, 1e-3], pa.float32()),
        "ok": pa.array([True, False, None, True, False, True]),
        "day": pa.array(
            [
                dt.date(2024, 1, 2),
                None,
                dt.date(1, 1, 1),
                dt.date(9999, 12, 31),
                dt.date(2000, 2, 29),
                dt.date(1970, 1, 1),
            ]
        ),
        "ts": pa.array(
            [
                dt.datetime(2024, 1, 2, 3, 4, 5),
                dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
                None,
                dt.datetime(2024, 1, 2, 3, 4, 5, 500000),
                dt.datetime(1, 1, 1),
                dt.datetime(2024, 1, 1, 0, 0, 0, 1),
            ],
            pa.timestamp("us"),
        ),
        "s": pa.array(["a;b", 'say "hi"', "line1\nline2", "cr\ronly", "", None]),
        "t": pa.array(["NULL", "ünïcödé ✓", " spaced ", '"', ";", "plain"]),
    }
)


def test_preset_matches_impala_shell_output():
    assert render(TABLE) == oracle(TABLE)


def test_value_containing_the_delimiter_is_quoted():
    out = render(pa.table({"a": ["x;y", "z"], "b": [1, 2]}))
    assert out == b'"x;y";1\nz;2\n'


def test_null_and_the_text_null_look_the_same_and_empty_is_bare():
    out = render(pa.table({"a": [None, "NULL", ""], "b": [1, 2, 3]}))
    assert out == b"NULL;1\nNULL;2\n;3\n"


def test_single_column_empty_string_is_quoted_like_csv_writer():
    t = pa.table({"a": ["", None, "x"]})
    assert render(t) == oracle(t) == b'""\nNULL\nx\n'


def test_other_delimiter_with_the_preset():
    t = pa.table({"a": ["x|y", "x;y"], "b": [0.5, 2.0]})
    d = CsvDialect(delimiter="|", header=False, null="NULL", quoting="minimal", preset="impala-shell")
    assert render(t, d) == oracle(t, "|") == b'"x|y"|0.5\nx;y|2.0\n'


def test_config_preset_builds_this_dialect():
    f = FormatSpec.model_validate({"preset": "impala-shell"})
    assert (f.delimiter, f.header, f.null, f.quoting, f.preset) == (
        ";",
        False,
        "NULL",
        "minimal",
        "impala-shell",
    )


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError):
        CsvDialect(preset="beeline")
