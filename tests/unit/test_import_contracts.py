"""The import contracts of pyproject.toml ([tool.importlinter]: layers, no cycles between
siblings) hold, so a violation shows up in pytest as well as in .ci/run; and no tableship
module is imported inside a function (such imports hide cycles from a reader)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.servers import ensure_module

ROOT = Path(__file__).resolve().parents[2]


def test_lint_imports_keeps_every_contract():
    ensure_module("importlinter", "import-linter>=2.1")
    script = Path(sys.executable).with_name("lint-imports")  # the console script of this environment
    proc = subprocess.run([str(script), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout, proc.stdout[-4000:]


def _imports_tableship(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] == "tableship"
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] == "tableship" for a in node.names)
    return False


def test_no_function_level_import_of_a_tableship_module():
    """Only optional third-party drivers may be imported lazily, never tableship's own modules."""
    offenders = []
    for path in sorted((ROOT / "src" / "tableship").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                offenders += [
                    f"{path.relative_to(ROOT)}:{sub.lineno}"
                    for sub in ast.walk(node)
                    if _imports_tableship(sub)
                ]
    assert not offenders, "function-level imports of tableship modules: " + ", ".join(offenders)
