"""docs/architecture.md names every module and package under src/tableship.

A module counts as named when its path relative to src/tableship appears in the doc
(``backup/runner.py``; a package as ``ops/alerts/``). Add a one-line role for a new module
to the doc's table of its package.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "tableship"
DOC = ROOT / "docs" / "architecture.md"


def _names() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts:
            continue
        if rel.name == "__init__.py":
            if rel.parent != Path("."):
                out.append(f"{rel.parent.as_posix()}/")
        elif rel.name != "__main__.py":
            out.append(rel.as_posix())
    return out


def test_every_module_is_named_in_the_architecture_doc():
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in _names() if f"`{name}`" not in text]
    assert not missing, (
        f"docs/architecture.md does not name {', '.join(missing)}: add a row with its role "
        "(as `package/module.py`) to its package's table"
    )


def test_the_doc_names_no_module_that_is_gone():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    named = set(
        re.findall(r"`([a-z_]+/(?:[a-z_0-9]+/)*(?:[a-z_0-9]+\.py)?)`", DOC.read_text(encoding="utf-8"))
    )
    stale = sorted(n for n in named if n.split("/")[0] in packages and n not in set(_names()))
    assert not stale, f"docs/architecture.md names modules that do not exist: {', '.join(stale)}"
