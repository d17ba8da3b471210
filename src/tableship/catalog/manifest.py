"""Reading the small files beside an archive: the manifest (checked field by field) and
the ``.sha256`` sidecar; downloads limited to what a manifest can be.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

from tableship.core.errors import TableshipError
from tableship.core.window import Window
from tableship.destinations.base import Destination

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SIDECAR = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+?)\r?\n?$")


def read_small(dest: Destination, name: str, tmpdir: Path, limit: int = MAX_MANIFEST_BYTES) -> bytes | None:
    """Download a small remote file (manifest, sidecar); None if it is gone or too big."""
    size = dest.size(name)
    if size is None or size > limit:
        return None
    local = tmpdir / f"f{uuid.uuid4().hex}"
    try:
        dest.get(name, local)
        return local.read_bytes()
    except TableshipError:
        if dest.size(name) is None:  # removed meanwhile
            return None
        raise
    finally:
        local.unlink(missing_ok=True)


def parse_manifest(data: bytes, file_name: str) -> tuple[dict | None, str | None]:
    """(manifest, None) when usable, else (None or partial dict, problem)."""
    try:
        m = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"manifest unreadable ({type(exc).__name__})"
    if not isinstance(m, dict):
        return None, "manifest is not a JSON object"
    problems = []
    if not isinstance(m.get("job"), str):
        problems.append("no job")
    w: Any = m.get("window")
    try:
        Window(dt.date.fromisoformat(w["start"]), dt.date.fromisoformat(w["end"]))
    except (TypeError, KeyError, ValueError):
        problems.append("no valid window")
    if not isinstance(m.get("sha256"), str) or not _HEX64.match(m["sha256"]):
        problems.append("no valid sha256")
    if not isinstance(m.get("rows"), int) or isinstance(m.get("rows"), bool) or m["rows"] < 0:
        problems.append("no valid rows")
    if m.get("file_name") not in (None, file_name):
        problems.append(f"names another file ({m.get('file_name')!r})")
    if problems:
        return (m if isinstance(m.get("job"), str) else None), "manifest invalid: " + ", ".join(problems)
    return m, None


def parse_sidecar(data: bytes | None) -> tuple[str, str] | None:
    """``(hex, file name)`` from ``<hex>  <file_name>``; None if unreadable."""
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) != 1:
        return None
    m = _SIDECAR.match(lines[0])
    return (m.group(1).lower(), m.group(2)) if m else None


def manifest_window(m: dict) -> Window | None:
    try:
        return Window(dt.date.fromisoformat(m["window"]["start"]), dt.date.fromisoformat(m["window"]["end"]))
    except (TypeError, KeyError, ValueError):
        return None
