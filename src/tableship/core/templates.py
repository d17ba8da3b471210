"""What a path template can render, for any run date — without rendering every date.

A template (``file_name``, ``remote_dir``) is turned into a *pattern*: a sequence of
character classes, one per output character, where the job's own names (``{job}``,
``{table}``, ``{database}``) are already substituted and each date code becomes the
characters it can produce (``%Y`` → four digits, ``%m`` → ``[01][0-9]``, ``%b`` → three
letters...). Two patterns *overlap* when some text matches both: then two templates
can render the same name for some dates. The classes over-approximate (``%d`` may be
``39``), so an overlap found here is "possible", never "impossible but reported".

Only portable date codes are allowed (the keys of :data:`CODES`): the C89/C99 codes that
every platform's ``strftime`` renders the same way for a date. Python never calls
``setlocale`` here, so names (``%b``, ``%A``...) are the C locale's English ones.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

DATE_FIELDS = ("start", "end", "run_date", "chunk_start", "chunk_end")
NAME_FIELDS = ("job", "table", "database")

_DIGITS = frozenset("0123456789")
_LETTERS = frozenset(string.ascii_letters)


@dataclass(frozen=True)
class Pos:
    """One output position: a character out of ``chars``; ``optional`` may be skipped;
    ``repeat`` may match any number of characters (used for "anything" patterns)."""

    chars: frozenset
    optional: bool = False
    repeat: bool = False


def _fixed(*classes: str) -> list[Pos]:
    return [Pos(frozenset(c)) for c in classes]


def _word(lo: int, hi: int) -> list[Pos]:
    return [Pos(_LETTERS)] * lo + [Pos(_LETTERS, optional=True)] * (hi - lo)


_D = "0123456789"
# every code allowed in a date format spec, and what it renders (years are 1000..9999: see window.py)
CODES: dict[str, list[Pos]] = {
    "Y": _fixed("123456789", _D, _D, _D),
    "G": _fixed("123456789", _D, _D, _D),  # ISO year
    "y": _fixed(_D, _D),
    "m": _fixed("01", _D),
    "d": _fixed("0123", _D),
    "j": _fixed("0123", _D, _D),
    "U": _fixed("012345", _D),
    "W": _fixed("012345", _D),
    "V": _fixed("012345", _D),
    "w": _fixed("0123456"),
    "u": _fixed("1234567"),
    "a": _word(3, 3),
    "b": _word(3, 3),
    "A": _word(6, 9),
    "B": _word(3, 9),
    "%": _fixed("%"),
}


def check_date_spec(spec: str, where: str) -> None:
    """Refuse a date format spec with a code outside :data:`CODES` (``%Q``,
    glibc's ``%-d``, locale-dependent ``%c``, time codes like ``%H`` on a date...);
    ``where`` names it in the message."""
    if "{" in spec or "}" in spec:
        raise ValueError(f"nested placeholders are not allowed in {where}")
    i = 0
    while i < len(spec):
        if spec[i] == "%":
            code = spec[i + 1 : i + 2]
            if code not in CODES:
                shown = f"%{code}" if code else "a lone '%' at the end"
                raise ValueError(
                    f"{shown} in {where} is not a portable date code "
                    f"(allowed: {' '.join('%' + c for c in CODES)}; write %% for a literal %)"
                )
            i += 2
        else:
            i += 1


def _literal(text: str) -> list[Pos]:
    return [Pos(frozenset(c)) for c in text]


def pattern(template: str, names: dict[str, str]) -> list[Pos]:
    """The pattern of ``template`` with ``names`` (job, table, database) substituted.

    Raises ValueError if a name field's format spec does not apply (``{table:%Y}``)."""
    out: list[Pos] = []
    for literal, field, spec, _conv in string.Formatter().parse(template):
        out += _literal(literal)
        if field is None:
            continue
        if field in NAME_FIELDS:
            out += _literal(format(names[field], spec or ""))
            continue
        if not spec:  # str(date): YYYY-MM-DD
            out += CODES["Y"] + _literal("-") + CODES["m"] + _literal("-") + CODES["d"]
            continue
        i = 0
        while i < len(spec):
            if spec[i] == "%" and spec[i + 1 : i + 2] in CODES:
                out += CODES[spec[i + 1]]
                i += 2
            else:
                out += _literal(spec[i])
                i += 1
    return out


def normalise_dir(pat: list[Pos]) -> list[Pos]:
    """Drop empty and "." folder names, as check_relative does (``./a//b/`` → ``a/b``)."""
    dot = [Pos(frozenset("."))]
    out: list[Pos] = []
    for seg in segments(pat):
        if not seg or seg == dot:
            continue
        if out:
            out.append(Pos(frozenset("/")))
        out += seg
    return out


def max_bytes(pat: list[Pos]) -> int:
    """The longest rendering, in UTF-8 bytes."""
    return sum(max(len(c.encode()) for c in p.chars) for p in pat)


def segments(pat: list[Pos]) -> list[list[Pos]]:
    """Split a pattern at its literal '/' positions (path components)."""
    out: list[list[Pos]] = [[]]
    for p in pat:
        if p.chars == frozenset("/"):
            out.append([])
        else:
            out[-1].append(p)
    return out


ANY = Pos(frozenset(), repeat=True)  # matches any run of characters (chars is ignored)


def anything_then(text: str) -> list[Pos]:
    """A pattern for "any text ending with ``text``"."""
    return [ANY] + _literal(text)


def anything_around(text: str) -> list[Pos]:
    return [ANY] + _literal(text) + [ANY]


def _meets(a: Pos, b: Pos) -> bool:
    if a.repeat or b.repeat:
        return True
    return not a.chars.isdisjoint(b.chars)


def overlap(a: list[Pos], b: list[Pos]) -> bool:
    """True if some text matches both patterns (a product-automaton search)."""
    la, lb = len(a), len(b)

    def skips(i: int, pat: list[Pos]) -> bool:
        return i < len(pat) and (pat[i].optional or pat[i].repeat)

    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == la and j == lb:
            return True
        if skips(i, a):
            todo.append((i + 1, j))
        if skips(j, b):
            todo.append((i, j + 1))
        if i < la and j < lb and _meets(a[i], b[j]):
            # consume one character in both: a repeating position may stay where it is
            for ni in (i, i + 1) if a[i].repeat else (i + 1,):
                for nj in (j, j + 1) if b[j].repeat else (j + 1,):
                    if (ni, nj) != (i, j):
                        todo.append((ni, nj))
    return False
