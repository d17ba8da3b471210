"""Render Arrow record batches as delimited text (CSV), column by column.

This module is the project's public CSV format contract:

* UTF-8, every line (header included) ends with ``\\n``.
* ``quoting="minimal"``: a field is quoted only when its text contains the
  delimiter, a double quote, CR or LF, or when its text is exactly the
  ``null`` text (so with the default ``null=""`` an empty string is written as
  ``""`` and NULL as nothing: the two stay distinguishable).  Inside quotes a
  ``"`` is doubled (RFC 4180).  The null-text rule applies to the rendered text
  of every type, not only to strings (with ``null="nan"`` a float NaN is written
  ``"nan"``; with ``null="0"`` an integer 0 is written ``"0"``).
* ``quoting="none"``: nothing is ever quoted or escaped; a value containing the
  delimiter or a line break breaks the structure of the file, and NULL and the
  null text can no longer be told apart.  Use it only for data known to be clean.
* NULL is written as the ``null`` text, never quoted.

Rendering per Arrow type:

=====================  =====================================================
integers               as is: ``-42``, ``18446744073709551615``
decimals               exact, always with all the digits of the scale:
                       ``123456789012345678.123456789``, ``0.000000000``,
                       ``-0.000000100`` (never scientific notation, never via
                       float); a negative scale writes the whole number
                       (decimal(5,-2) of 123E2 is ``12300``)
floats                 shortest text that round-trips (Arrow's float→string):
                       ``0.1``, ``1e+300``, ``1e-7``, ``-0``; a whole float has
                       no decimal point (``468``, not ``468.0``); NaN and
                       infinities are ``nan``, ``inf``, ``-inf``
booleans               ``true`` / ``false``
dates                  ``YYYY-MM-DD``
timestamps             ``YYYY-MM-DD HH:MM:SS``, plus ``.ffffff`` only when the
                       fraction of second is not zero (like ``str(datetime)``);
                       the fraction has 6 digits for s/ms/us units and 9 for ns;
                       time zone aware timestamps are converted to UTC and
                       written the same way, with no offset suffix
times                  ``HH:MM:SS[.ffffff]`` with the same fraction rule
strings                as is (string, large_string, string_view)
binary                 lowercase hex, no prefix (binary, large_binary,
                       binary_view, fixed_size_binary); an empty value is an
                       empty text, quoted like an empty string
dictionary             rendered as its decoded values
null type              every value is NULL
=====================  =====================================================

``CsvDialect(preset="impala-shell")`` (config ``format = { preset = "impala-shell" }``)
reproduces ``impala-shell -B --output_delimiter=';'`` instead: see
:data:`IMPALA_SHELL_RULES` (floats as Python ``str()``, 9-digit timestamp fractions,
csv.writer's QUOTE_MINIMAL quoting, no quoting of the NULL text).

Years outside 0001–9999 are written as Arrow formats them (``10000-01-01``,
``-0221-09-04``); a value Arrow cannot format at all raises ValueError.
Other types (list, struct, map, duration, interval, ...) are rejected by
:class:`CsvRenderer` with ``ValueError("column X has unsupported type T")``.

Implementation: each column is cast to a string array with ``pyarrow.compute``;
quoting work is done only on columns whose values can contain a special
character (a quick ``memchr`` over the column's value buffer decides, then the
rows are located with numpy); finally ``binary_join_element_wise`` joins the
columns, and the value buffer of the joined array *is* the CSV chunk.  No Python
loop runs over rows; memory is a small multiple of one batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["CsvDialect", "CsvRenderer", "render_value_text"]

_QUOTINGS = ("minimal", "none")
IMPALA_SHELL = "impala-shell"
_PRESETS = (None, IMPALA_SHELL)


def delimiter_problem(delimiter: object) -> str | None:
    """Why ``delimiter`` cannot be a dialect's delimiter, or None (config validation uses it too)."""
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        return "delimiter must be exactly one character"
    if delimiter in '"\r\n':
        return "delimiter cannot be a double quote, CR or LF"
    return None


def null_problem(null: object, delimiter: object) -> str | None:
    """Why ``null`` cannot be the NULL text with ``delimiter``, or None (config validation uses it too).

    A NULL text containing the delimiter, a double quote, CR or LF makes the file ambiguous:
    readers would split or misread it (with either quoting: CSV readers treat ``"`` specially
    even in a file written with ``quoting = "none"``).
    """
    if not isinstance(null, str):
        return f"null must be a string, got {null!r}"
    for char, what in (
        (delimiter, "the delimiter"),
        ('"', "the quote character"),
        ("\r", "a carriage return"),
        ("\n", "a line feed"),
    ):
        if isinstance(char, str) and char and char in null:
            return (
                f"null {null!r} contains {what} {char!r}: readers would split or misread it; "
                'choose a marker without it (e.g. "" or "NULL")'
            )
    return None


@dataclass(frozen=True)
class CsvDialect:
    delimiter: str = ";"  # exactly one character
    header: bool = True
    null: str = ""  # text written for SQL NULL, never quoted
    quoting: str = "minimal"  # "minimal" | "none"
    preset: str | None = None  # "impala-shell": see IMPALA_SHELL_RULES

    def __post_init__(self) -> None:
        if self.preset not in _PRESETS:
            raise ValueError(
                f"preset must be one of {', '.join(p for p in _PRESETS if p)}, got {self.preset!r}"
            )
        problem = delimiter_problem(self.delimiter)
        if problem:
            raise ValueError(f"{problem}, got {self.delimiter!r}")
        if self.quoting not in _QUOTINGS:
            raise ValueError(f"quoting must be one of {', '.join(_QUOTINGS)}, got {self.quoting!r}")
        problem = null_problem(self.null, self.delimiter)
        if problem:
            raise ValueError(problem)
        if not isinstance(self.header, bool):
            raise ValueError(f"header must be true or false, got {self.header!r}")


def render_value_text(text: str | None, dialect: CsvDialect) -> str:
    """Write one already-rendered value as a field (pure Python, for headers and tests).

    ``None`` stands for NULL.
    """
    if text is None:
        return dialect.null
    if dialect.quoting == "none":
        return text
    if text == dialect.null or dialect.delimiter in text or '"' in text or "\r" in text or "\n" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


# --------------------------------------------------------------------------
# per-type conversion to text

_DIGITS = frozenset("0123456789")
_INT_CHARS = _DIGITS | {"-"}
_FLOAT_CHARS = _DIGITS | set("-+.einfa")
_DECIMAL_CHARS = _DIGITS | set("-.")
_BOOL_CHARS = frozenset("truefals")
_DATE_CHARS = _DIGITS | set("-+")
_TS_CHARS = _DIGITS | set("-+: .")
_TIME_CHARS = _DIGITS | set(":.")
_HEX_CHARS = _DIGITS | set("abcdef")

# two lowercase hex digits per byte value, one uint16 word each (the word's
# bytes are the two ASCII digits in memory order, whatever the endianness)
_HEX_TABLE = np.frombuffer(b"".join(f"{i:02x}".encode("ascii") for i in range(256)), dtype=np.uint16)

_STRING = pa.string()
_LARGE_STRING = pa.large_string()
_INT32_LIMIT = 2**31 - 1


def _is_text(t: pa.DataType) -> bool:
    return t == _STRING or t == _LARGE_STRING


def _bool_mask(arr: pa.Array) -> np.ndarray:
    """A boolean Arrow array without nulls as a numpy bool array. Not ``to_numpy()``: that
    allocates from Arrow's C++ default pool (mimalloc, which then maps its arena: ~4 MiB
    of RSS) whatever ``pa.set_memory_pool`` chose (docs/performance.md, Memory budget)."""
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=bool)
    bits = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    return np.unpackbits(bits, count=arr.offset + n, bitorder="little")[arr.offset :].view(bool)


def _text_bytes(arr: pa.Array) -> int:
    """The bytes of text in a (large_)string array, from its offsets. Not ``arr.nbytes``:
    that, too, allocates from Arrow's C++ default pool (see ``_bool_mask``)."""
    if not _is_text(arr.type):
        return arr.get_total_buffer_size()
    offs = _offsets(arr)
    return int(offs[-1] - offs[0])


def _offsets(arr: pa.Array) -> np.ndarray:
    """The n+1 offsets of a (large_)string/binary array, honouring arr.offset."""
    dtype = np.int64 if arr.type in (_LARGE_STRING, pa.large_binary()) else np.int32
    buf = arr.buffers()[1]
    n = len(arr)
    if buf is None:
        return np.zeros(n + 1, dtype=dtype)
    return np.frombuffer(buf, dtype=dtype, count=n + 1, offset=arr.offset * dtype().itemsize)


def _values(arr: pa.Array, offs: np.ndarray) -> pa.Buffer:
    """The part of the value buffer used by the array (may be empty)."""
    buf = arr.buffers()[2]
    start, end = int(offs[0]), int(offs[-1])
    if buf is None or end <= start:
        return pa.py_buffer(b"")
    return buf.slice(start, end - start)


def _contains_any(data: pa.Buffer, needles: tuple[bytes, ...]) -> bool:
    if data.size == 0:
        return False
    raw = data.to_pybytes()
    return any(raw.find(n) >= 0 for n in needles)


def _text_to_string(arr: pa.Array) -> pa.Array:
    return arr if _is_text(arr.type) else pc.cast(arr, _STRING)


def _hex(arr: pa.Array) -> pa.Array:
    t = arr.type
    n = len(arr)
    if pa.types.is_binary_view(t):
        arr = pc.cast(arr, pa.large_binary())
        t = arr.type
    if pa.types.is_fixed_size_binary(t):
        width = t.byte_width
        buf = arr.buffers()[1]
        if buf is None or width == 0:
            data = np.zeros(0, dtype=np.uint8)
        else:
            data = np.frombuffer(buf, dtype=np.uint8, count=n * width, offset=arr.offset * width)
        offs = np.arange(n + 1, dtype=np.int64) * width
    else:
        offs = _offsets(arr)
        vals = _values(arr, offs)
        data = np.frombuffer(vals, dtype=np.uint8)
        offs = offs.astype(np.int64) - int(offs[0])
    hexed = _HEX_TABLE[data]
    total = 2 * int(offs[-1])
    out_type = _STRING if total <= _INT32_LIMIT else _LARGE_STRING
    new_offs = (offs * 2).astype(np.int32 if out_type == _STRING else np.int64)
    validity = arr.buffers()[0] if arr.null_count else None
    if validity is not None and arr.offset:
        # keep the validity bitmap as is: shift the fresh offsets instead
        new_offs = np.concatenate([np.zeros(arr.offset, dtype=new_offs.dtype), new_offs])
    return pa.Array.from_buffers(
        out_type,
        n,
        [validity, pa.py_buffer(new_offs), pa.py_buffer(hexed)],
        null_count=arr.null_count,
        offset=arr.offset if validity is not None else 0,
    )


def _decimal_text(arr: pa.Array) -> pa.Array:
    t = arr.type
    scale = t.scale
    if scale > 0:
        text = pc.cast(arr, _STRING)
        offs = _offsets(text)
        if not _contains_any(_values(text, offs), (b"E",)):
            return text
        # Arrow switches to scientific notation when the adjusted exponent is
        # below -6 (0 in decimal(38,9) becomes "0E-9"): format the unscaled
        # integer ourselves instead.
    ctor = {32: pa.decimal32, 64: pa.decimal64, 128: pa.decimal128, 256: pa.decimal256}[t.bit_width]
    unscaled = pa.Array.from_buffers(
        ctor(t.precision, 0), len(arr), arr.buffers(), null_count=arr.null_count, offset=arr.offset
    )
    digits = pc.cast(unscaled, _STRING)
    if scale == 0:
        return digits
    if scale < 0:
        zeros = "0" * (-scale)
        scaled = pc.binary_join_element_wise(digits, zeros, "")
        return pc.if_else(pc.equal(digits, "0"), digits, scaled)
    negative = pc.starts_with(digits, "-")
    magnitude = pc.utf8_ltrim(digits, "-")
    padded = pc.utf8_lpad(magnitude, scale + 1, "0")
    plain = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(padded, 0, -scale),
        pc.utf8_slice_codeunits(padded, -scale),
        ".",
    )
    return pc.if_else(negative, pc.binary_join_element_wise("-", plain, ""), plain)


def _check_formatted(text: pa.Array, name: str) -> pa.Array:
    """Arrow writes '<value out of range: N>' for dates/timestamps it cannot format."""
    offs = _offsets(text)
    if _contains_any(_values(text, offs), (b"<",)):
        bad = pc.filter(text, pc.starts_with(text, "<"))[0].as_py()
        raise ValueError(f"column {name} has a value that cannot be rendered: {bad}")
    return text


def _trim_fraction(text: pa.Array, unit: str) -> pa.Array:
    """Drop an all-zero fraction of second ("s" unit texts have none).

    The text has one ".", followed by exactly the unit's fraction digits and
    nothing else, so replacing "." + all zeros removes exactly the zero fractions.
    """
    if unit == "s":
        return text
    return pc.replace_substring(text, "." + "0" * (9 if unit == "ns" else 6), "")


def _to_micros(arr: pa.Array, target: pa.DataType, name: str) -> pa.Array:
    """ms → us (exact) so the fraction is written with 6 digits."""
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, OverflowError) as exc:
        raise ValueError(f"column {name} has a value that cannot be rendered: {exc}") from None


def _timestamp_text(arr: pa.Array, name: str) -> pa.Array:
    unit = arr.type.unit
    if arr.type.tz is not None:
        # the stored values are UTC instants: dropping the zone renders UTC
        arr = arr.view(pa.timestamp(unit))
    if unit == "ms":
        arr = _to_micros(arr, pa.timestamp("us"), name)
        unit = "us"
    text = _check_formatted(pc.cast(arr, _STRING), name)
    return _trim_fraction(text, unit)


def _time_text(arr: pa.Array, name: str) -> pa.Array:
    unit = arr.type.unit
    if unit == "ms":
        arr = _to_micros(arr, pa.time64("us"), name)
        unit = "us"
    return _trim_fraction(pc.cast(arr, _STRING), unit)


def _date_text(arr: pa.Array, name: str) -> pa.Array:
    return _check_formatted(pc.cast(arr, _STRING), name)


def _null_text(arr: pa.Array) -> pa.Array:
    return pa.nulls(len(arr), _STRING)


@dataclass(frozen=True)
class _Plan:
    """How one column becomes text."""

    name: str
    type: pa.DataType
    convert: Callable[[pa.Array], pa.Array]  # -> string/large_string, nulls kept
    chars: frozenset | None  # characters the text can contain; None = any
    can_be_empty: bool
    value_plan: _Plan | None = None  # for dictionary columns


def _plan_for(name: str, t: pa.DataType) -> _Plan:
    types = pa.types
    if types.is_dictionary(t):
        inner = _plan_for(name, t.value_type)
        return _Plan(name, t, inner.convert, inner.chars, inner.can_be_empty, inner)
    if types.is_null(t):
        return _Plan(name, t, _null_text, frozenset(), False)
    if types.is_integer(t):
        return _Plan(name, t, _text_to_string, _INT_CHARS, False)
    if types.is_floating(t):
        return _Plan(name, t, _text_to_string, _FLOAT_CHARS, False)
    if types.is_decimal(t):
        return _Plan(name, t, _decimal_text, _DECIMAL_CHARS, False)
    if types.is_boolean(t):
        return _Plan(name, t, _text_to_string, _BOOL_CHARS, False)
    if types.is_date(t):
        return _Plan(name, t, lambda a: _date_text(a, name), _DATE_CHARS, False)
    if types.is_timestamp(t):
        return _Plan(name, t, lambda a: _timestamp_text(a, name), _TS_CHARS, False)
    if types.is_time(t):
        return _Plan(name, t, lambda a: _time_text(a, name), _TIME_CHARS, False)
    if types.is_string(t) or types.is_large_string(t):
        return _Plan(name, t, _text_to_string, None, True)
    if types.is_string_view(t):
        return _Plan(name, t, lambda a: pc.cast(a, _LARGE_STRING), None, True)
    if (
        types.is_binary(t)
        or types.is_large_binary(t)
        or types.is_binary_view(t)
        or types.is_fixed_size_binary(t)
    ):
        empty = not types.is_fixed_size_binary(t) or t.byte_width == 0
        return _Plan(name, t, _hex, _HEX_CHARS, empty)
    raise ValueError(f"column {name} has unsupported type {t}")


# --------------------------------------------------------------------------
# preset "impala-shell": what `impala-shell -B --output_delimiter=';'` prints

IMPALA_SHELL_RULES = """\
impala-shell (shell/impala_shell/shell_output.py, DelimitedOutputFormatter) writes the
value texts the Impala server sends through Python's csv.writer(delimiter=D,
lineterminator='\\n', quoting=csv.QUOTE_MINIMAL), with NULL as the text NULL:
* no header line (-B without --print_header); every row ends with LF;
* NULL is written NULL, never quoted: a string 'NULL' looks the same;
* a field is quoted with " (a " inside doubled) only when it contains the delimiter,
  a " or LF; a lone CR is not quoted (Python <= 3.12; 3.13 quotes it too);
  an empty string is an empty field, except as the only column of a row: "";
* BOOLEAN true/false; integers as is; DECIMAL with every digit of its scale;
* DOUBLE and FLOAT: Python's str() of the double value: 0.1, 468.0, 1e+16,
  1e-05, -0.0, inf, nan; a FLOAT is sent as the double nearest the float32
  (0.1f -> 0.10000000149011612);
* TIMESTAMP YYYY-MM-DD HH:MM:SS, plus .fffffffff (always 9 digits) when the
  fraction of second is not zero; DATE YYYY-MM-DD; strings as is.
"""


def _impala_float_text(arr: pa.Array) -> pa.Array:
    """Python's str(float) of the double value (impala-shell prints floats with str())."""
    values = pc.cast(arr, pa.float64()).to_pylist()
    return pa.array([None if v is None else repr(v) for v in values], _STRING)


def _impala_timestamp_text(arr: pa.Array, name: str) -> pa.Array:
    """Impala's TIMESTAMP text: no fraction when zero, else 9 digits."""
    text = _timestamp_text(arr, name)  # zero fractions already dropped; 6 or 9 digits left
    if arr.type.unit in ("s", "ns"):
        return text
    return pc.replace_substring_regex(text, r"(\.\d{6})$", r"\1" + "000")  # RE2: \1 is one digit


def _impala_shell_plan(plan: _Plan) -> _Plan:
    t = plan.type.value_type if pa.types.is_dictionary(plan.type) else plan.type
    conv: Callable[[pa.Array], pa.Array]
    if pa.types.is_floating(t):
        conv = _impala_float_text
    elif pa.types.is_timestamp(t):
        conv = functools.partial(_impala_timestamp_text, name=plan.name)
    else:
        return plan
    if plan.value_plan is not None:
        inner = _Plan(plan.name, t, conv, plan.chars, plan.can_be_empty)
        return _Plan(plan.name, plan.type, conv, plan.chars, plan.can_be_empty, inner)
    return _Plan(plan.name, plan.type, conv, plan.chars, plan.can_be_empty)


class CsvRenderer:
    """Render record batches of one schema as CSV bytes (see the module docstring)."""

    def __init__(self, schema: pa.Schema, dialect: CsvDialect):
        self.schema = schema
        self.dialect = dialect
        self._plans = [_plan_for(f.name, f.type) for f in schema]
        impala = dialect.preset == IMPALA_SHELL
        if impala:
            self._plans = [_impala_shell_plan(p) for p in self._plans]
        self._types = [f.type for f in schema]
        self._null = dialect.null
        self._eq_text = dialect.null  # a text equal to this is quoted (minimal quoting)
        self._null_bytes = dialect.null.encode("utf-8")
        self._delim_bytes = dialect.delimiter.encode("utf-8")
        minimal = dialect.quoting == "minimal"
        # impala-shell's csv.writer quotes on the delimiter, '"' and LF, not on a lone CR
        specials = (dialect.delimiter, '"', "\n") if impala else (dialect.delimiter, '"', "\r", "\n")
        self._special_bytes = tuple(s.encode("utf-8") for s in specials)
        self._single_byte_specials = all(len(b) == 1 for b in self._special_bytes)
        self._special_regex = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in specials) + "]"
        self._quote_special = []
        self._quote_null = []
        for p in self._plans:
            chars = p.chars
            self._quote_special.append(minimal and (chars is None or dialect.delimiter in chars))
            if not minimal:
                nullq = False
            elif dialect.null == "":
                nullq = p.can_be_empty
            else:
                nullq = chars is None or set(dialect.null) <= chars
            if impala and minimal:
                # csv.writer never quotes the NULL text; it quotes "" only as a row's single field
                nullq = len(self._plans) == 1 and p.can_be_empty
                self._eq_text = ""
            self._quote_null.append(nullq)

    # ------------------------------------------------------------------
    def header(self) -> bytes:
        if not self.dialect.header:
            return b""
        fields = [render_value_text(f.name, self.dialect) for f in self.schema]
        return (self.dialect.delimiter.join(fields) + "\n").encode("utf-8")

    # ------------------------------------------------------------------
    def _quote(self, text: pa.Array, special: bool, null_eq: bool) -> pa.Array:
        n = len(text)
        mask = None
        if special:
            offs = _offsets(text)
            data = _values(text, offs)
            if _contains_any(data, self._special_bytes):
                if self._single_byte_specials:
                    raw = np.frombuffer(data, dtype=np.uint8)
                    hit = raw == self._special_bytes[0][0]
                    for b in self._special_bytes[1:]:
                        hit |= raw == b[0]
                    pos = np.flatnonzero(hit) + int(offs[0])
                    rows = np.searchsorted(offs, pos, side="right") - 1
                    mask = np.zeros(n, dtype=bool)
                    mask[rows] = True
                else:
                    m = pc.match_substring_regex(text, self._special_regex)
                    mask = _bool_mask(pc.fill_null(m, False))
        if null_eq:
            eq = pc.fill_null(pc.equal(text, self._eq_text), False)
            if pc.any(eq).as_py():
                eqn = _bool_mask(eq)
                mask = eqn if mask is None else (mask | eqn)
        if mask is None:
            return text
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return text
        picked = text.take(pa.array(idx))
        q = pa.scalar('"', text.type)
        quoted = pc.binary_join_element_wise(
            q, pc.replace_substring(picked, '"', '""'), q, pa.scalar("", text.type)
        )
        return pc.replace_with_mask(text, pa.array(mask), quoted)

    def _column_text(self, i: int, arr: pa.Array) -> pa.Array:
        plan = self._plans[i]
        if plan.value_plan is not None:
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            values = plan.convert(arr.dictionary)
            values = self._quote(values, self._quote_special[i], self._quote_null[i])
            return values.take(arr.indices)
        text = plan.convert(arr)
        return self._quote(text, self._quote_special[i], self._quote_null[i])

    def render(self, batch: pa.RecordBatch) -> bytes:
        ncols = len(self._plans)
        if batch.num_columns != ncols:
            raise ValueError(f"batch has {batch.num_columns} columns, the schema has {ncols}")
        for i, (t, arr) in enumerate(zip(self._types, batch.columns, strict=True)):
            if arr.type != t:
                raise ValueError(f"column {self._plans[i].name} has type {arr.type}, expected {t}")
        n = batch.num_rows
        if n == 0:
            return b""
        if ncols == 0:
            return b"\n" * n
        cols = [self._column_text(i, arr) for i, arr in enumerate(batch.columns)]
        # The joined text must fit int32 offsets, otherwise work in large_string.
        per_row = ncols * (len(self._delim_bytes) + len(self._null_bytes)) + 1
        estimate = sum(_text_bytes(c) for c in cols) + n * per_row
        target = _LARGE_STRING if estimate > _INT32_LIMIT else _STRING
        cols = [c if c.type == target else pc.cast(c, target) for c in cols]
        opts = dict(null_handling="replace", null_replacement=self._null)
        last = pc.binary_join_element_wise(cols[-1], pa.scalar("\n", target), pa.scalar("", target), **opts)
        if ncols == 1:
            lines = last
        else:
            lines = pc.binary_join_element_wise(
                *cols[:-1], last, pa.scalar(self.dialect.delimiter, target), **opts
            )
        offs = _offsets(lines)
        return _values(lines, offs).to_pybytes()
