"""The static checks .ci/run runs, as tests: a plain ``pytest`` shows a violation too.

Each check is the same command line as in .ci/run (configuration in pyproject.toml), run from
the repository root with this interpreter's tools, so a test failure prints what to fix.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from tests.servers import missing

ROOT = Path(__file__).resolve().parents[2]

# name -> (python module of the tool, arguments); keep in step with .ci/run
CHECKS = {
    "ruff check": ("ruff", ["check", "src", "tests", "bench"]),
    "ruff format": ("ruff", ["format", "--check", "src", "tests", "bench"]),
    "mypy": ("mypy", []),  # files and options: [tool.mypy] in pyproject.toml
    "vulture": ("vulture", ["src", "vulture_whitelist.py"]),  # dead code (see the whitelist's doc)
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_static_check_passes(name: str) -> None:
    module, args = CHECKS[name]
    if importlib.util.find_spec(module) is None:
        missing(f"{module} (install the test extra: pip install -e '.[test]')")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"`{module} {' '.join(args)}` failed:\n{proc.stdout}{proc.stderr}"


def test_no_two_test_modules_share_a_name():
    # the test folders are not packages: pytest imports each test module by its basename, so
    # a second tests/*/test_x.py makes the whole suite fail to collect ("import file mismatch")
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen.setdefault(path.name, path)
    assert not clashes, f"test modules with the same name: {'; '.join(clashes)} — rename one"
