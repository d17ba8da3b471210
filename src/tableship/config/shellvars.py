"""Read a shell properties file (the legacy ``MNAAS_bkp_files_process.properties``) without
running it: ``VAR=value``, ``export VAR=value``, ``'single'`` and ``"double"`` quotes,
backslash escapes, ``#`` comments, ``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` references
to variables set before, and ``. FILE`` / ``source FILE`` (read the same way, if it exists).

Nothing is executed: a command substitution (``$(...)`` or backticks) or a reference to a
variable the files never set leaves the variable *unresolved* — its value is kept as far
as it could be read and the reason is recorded, so the caller can write a ``# TODO``
instead of guessing. Lines that are not assignments (``set -x``, ``if``...) are recorded as
skipped, never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_SOURCE = re.compile(r"^(?:\.|source)\s+(.+)$")
MAX_DEPTH = 5


@dataclass
class ShellVars:
    values: dict[str, str] = field(default_factory=dict)
    unresolved: dict[str, str] = field(default_factory=dict)  # name → why its value is not known
    where: dict[str, str] = field(default_factory=dict)  # name → "file line N"
    skipped: list[str] = field(default_factory=list)  # "file line N: text" not read as an assignment
    files: list[Path] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """The value, or None when unset or unresolved."""
        return None if name in self.unresolved else self.values.get(name)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with backslash-newline continuations joined (numbered by their first line)."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not buf:
            start = number
        if line.endswith("\\") and not line.endswith("\\\\"):
            buf += line[:-1]
            continue
        out.append((start, buf + line))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def _expand(text: str, i: int, env: ShellVars, reasons: list[str]) -> tuple[str, int]:
    """``$...`` at ``text[i]`` → (its value, index after it)."""
    nxt = text[i + 1 : i + 2]
    if nxt == "(":
        reasons.append("a command substitution $(...) is not run")
        depth, j = 0, i + 1
        while j < len(text):
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                break
        return text[i:j], j
    if nxt == "{":
        end = text.find("}", i + 2)
        if end < 0:
            raise ValueError("unterminated ${")
        inner = text[i + 2 : end]
        name, default = inner, None
        if ":-" in inner:
            name, default = inner.split(":-", 1)
        if not _NAME.fullmatch(name):
            raise ValueError(f"unsupported expansion ${{{inner}}}")
        return _lookup(name, default, env, reasons), end + 1
    m = _NAME.match(text, i + 1)
    if m is None:
        return "$", i + 1
    return _lookup(m.group(0), None, env, reasons), m.end()


def _lookup(name: str, default: str | None, env: ShellVars, reasons: list[str]) -> str:
    if name in env.values and name not in env.unresolved:
        return env.values[name] if env.values[name] or default is None else default
    if name not in env.values:
        if default is not None:
            return default
        reasons.append(f"${name} is not set in the properties files")
        return "${" + name + "}"
    reasons.append(f"${name} is not known ({env.unresolved[name]})")
    return env.values[name]


def _piece(text: str, i: int, env: ShellVars, reasons: list[str], quoted: bool) -> tuple[str, int]:
    """The character at ``text[i]`` of a word, inside double quotes or not, with what it
    starts (a backslash escape, a ``$…`` expansion, a backquoted command kept as written
    and not run): its value and the index after it."""
    c = text[i]
    if c == "\\" and i + 1 < len(text) and (not quoted or text[i + 1] in '$`"\\'):
        return text[i + 1], i + 2
    if c == "$":
        return _expand(text, i, env, reasons)
    if c == "`":
        end = text.find("`", i + 1)
        reasons.append("a command substitution `...` is not run")
        stop = end + 1 if end > 0 else len(text)
        return text[i:stop], stop
    return c, i + 1


def parse_value(text: str, env: ShellVars) -> tuple[str, list[str], str]:
    """One shell word → (value, reasons it is not fully known, the rest of the line)."""
    out: list[str] = []
    reasons: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            return "".join(out), reasons, text[i:].strip()
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError("unterminated single quote")
            out.append(text[i + 1 : end])
            i = end + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated double quote")
                if text[i] == '"':
                    i += 1
                    break
                value, i = _piece(text, i, env, reasons, quoted=True)
                out.append(value)
        else:
            value, i = _piece(text, i, env, reasons, quoted=False)
            out.append(value)
    return "".join(out), reasons, ""


def read_properties(path: Path, env: ShellVars | None = None, depth: int = 0) -> ShellVars:
    """Read ``path`` into ``env`` (a new one by default). Raises OSError when it cannot be read,
    ValueError (with file and line) for a line that is broken shell syntax."""
    env = env if env is not None else ShellVars()
    text = path.read_text(encoding="utf-8", errors="replace")
    env.files.append(path)
    for number, raw in _logical_lines(text):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path} line {number}"
        m = _ASSIGN.match(line)
        try:
            if m:
                name = m.group(1)
                value, reasons, rest = parse_value(m.group(2), env)
                if rest and not rest.startswith("#"):
                    reasons.append(f"the line goes on after the value ({rest!r}): a shell would run it")
                env.values[name] = value
                env.where[name] = where
                if reasons:
                    env.unresolved[name] = "; ".join(dict.fromkeys(reasons))
                else:
                    env.unresolved.pop(name, None)
                continue
            s = _SOURCE.match(line)
            if s:
                target, reasons, _rest = parse_value(s.group(1), env)
                p = Path(target)
                p = p if p.is_absolute() else path.parent / p
                if reasons or not p.is_file() or depth >= MAX_DEPTH:
                    why = "; ".join(reasons) or ("not found" if not p.is_file() else "nested too deep")
                    env.skipped.append(f"{where}: sources {target} ({why}): its variables are missing")
                else:
                    read_properties(p, env, depth + 1)
                continue
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        env.skipped.append(f"{where}: {line}")
    return env
