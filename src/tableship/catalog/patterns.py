"""A job's ``file_name`` template read backwards: the strftime codes in it as a regex, so
that a name the template rendered is recognised (and its window read back) without a
manifest.
"""

from __future__ import annotations

import datetime as dt
import re
import string

from tableship.config.models import JobConfig
from tableship.core.window import Window

_STRF = {
    "Y": r"\d{4}",
    "G": r"\d{4}",
    "m": r"\d{2}",
    "d": r"\d{2}",
    "H": r"\d{2}",
    "M": r"\d{2}",
    "S": r"\d{2}",
    "y": r"\d{2}",
    "j": r"\d{3}",
    "U": r"\d{2}",
    "W": r"\d{2}",
    "V": r"\d{2}",
    "u": r"\d",
    "w": r"\d",
    "f": r"\d{6}",
    "b": r"[A-Za-z]+",
    "B": r"[A-Za-z]+",
    "a": r"[A-Za-z]+",
    "A": r"[A-Za-z]+",
    "p": r"[AP]M",
    "%": "%",
}


def _strftime_regex(spec: str) -> str:
    out, i = [], 0
    while i < len(spec):
        c = spec[i]
        if c == "%" and i + 1 < len(spec):
            out.append(_STRF.get(spec[i + 1], ".+?"))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def template_fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


class NamePattern:
    """Recognise the names a job's ``file_name`` template renders to (and read the window back)."""

    def __init__(self, job: JobConfig):
        fixed = {"job": job.name, "table": job.table_name, "database": job.database or ""}
        parts: list[str] = []
        self._specs: dict[str, str] = {}
        for literal, name, spec, _ in string.Formatter().parse(job.file_name):
            parts.append(re.escape(literal))
            if name is None:
                continue
            if name in fixed:
                parts.append(re.escape(format(fixed[name], spec or "")))
                continue
            regex = _strftime_regex(spec) if spec else r"\d{4}-\d{2}-\d{2}"
            if name not in self._specs:
                self._specs[name] = spec or "%Y-%m-%d"
                parts.append(f"(?P<{name}>{regex})")
            else:
                parts.append(f"(?:{regex})")
        self.regex = re.compile("^" + "".join(parts) + "$")

    def matches(self, base: str) -> bool:
        return bool(self.regex.match(base))

    def window(self, base: str) -> Window | None:
        """The window written in the name, when the template holds both ends to the day."""
        m = self.regex.match(base)
        if not m or "start" not in self._specs or "end" not in self._specs:
            return None
        if not all(("%d" in s or "%j" in s) for n, s in self._specs.items() if n in ("start", "end")):
            return None
        try:
            start = dt.datetime.strptime(m.group("start"), self._specs["start"]).date()
            end = dt.datetime.strptime(m.group("end"), self._specs["end"]).date()
            return Window(start, end)
        except ValueError:
            return None
