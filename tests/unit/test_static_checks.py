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
