"""The tests/no_skips_in_ci.py plugin: under CI=true every kind of skip fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SKIPPING = textwrap.dedent("""
    import pytest

    def test_skip():
        pytest.skip("no frobnicator")

    @pytest.mark.skipif(True, reason="never here")
    def test_skipif():
        pass

    @pytest.mark.xfail(reason="known bug")
    def test_xfail():
        assert False

    @pytest.fixture
    def gives_up():
        pytest.skip("fixture gave up")

    def test_fixture_skip(gives_up):
        pass

    def test_ok():
        pass
""")


def _pytest(tmp_path: Path, ci: str, body: str = SKIPPING) -> subprocess.CompletedProcess:
    (tmp_path / "test_skipping.py").write_text(body)
    (tmp_path / "test_module_skip.py").write_text(
        'import pytest\npytest.importorskip("no_such_module_xyz")\n'
    )
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.no_skips_in_ci",
            "--continue-on-collection-errors",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def test_under_ci_every_skip_is_a_failure(tmp_path):
    proc = _pytest(tmp_path, "true")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    # a skip in setup (skipif, a fixture) is reported as an error, in the call as a failure
    assert out.splitlines()[-1].startswith("2 failed, 1 passed, 3 errors"), out
    for reason in (
        "no frobnicator",
        "never here",
        "xfail: known bug",
        "fixture gave up",
        "could not import 'no_such_module_xyz'",
    ):
        assert f"[CI=true] a test may not skip in CI ({reason}" in out, (reason, out)


def test_outside_ci_skips_stay_skips(tmp_path):
    proc = _pytest(tmp_path, "")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed, 4 skipped, 1 xfailed" in out, out
