"""``${VAR}`` and ``${file:/path}`` in config values: replaced from the environment and
from files (secrets), each problem reported with its key path, every value read from a
file remembered as a secret (core/redact.py masks them in every output)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_VAR = re.compile(r"\$\{([^}]*)\}")


def substitute(value: Any, path: str, problems: list[str], secrets: set[str] | None = None) -> Any:
    """``${VAR}`` / ``${file:…}`` replaced; every value read from a file is added to ``secrets``."""
    secrets = set() if secrets is None else secrets
    if isinstance(value, dict):
        return {k: substitute(v, f"{path}.{k}" if path else k, problems, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, f"{path}[{i}]", problems, secrets) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def repl(m: re.Match) -> str:
        ref = m.group(1)
        if ref.startswith("file:"):
            p = Path(os.path.expanduser(ref[5:]))
            try:
                content = p.read_text().strip()
                secrets.add(content)
                return content
            except OSError as exc:
                problems.append(f"{path}: cannot read secret file {str(p)!r}: {exc.strerror}")
                return ""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ref):
            problems.append(f"{path}: '${{{ref}}}' is not a valid environment variable reference")
            return ""
        if ref not in os.environ:
            problems.append(f"{path}: environment variable {ref} is not set")
            return ""
        return os.environ[ref]

    return _VAR.sub(repl, value)
