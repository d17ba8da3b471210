"""pytest plugin: with ``CI=true`` a skipped or xfailed test is a failure.

Project rule: CI runs every test against real components, so a test that skips in CI
(``pytest.skip``, ``skipif``, ``importorskip``, ``xfail``, a fixture that gives up)
hides exactly what CI is there to see.  The fixtures install what a test needs
(tests/servers: ``apt_install``, ``ensure_command``, ``ensure_module``); what still
cannot run is reported as a failure with the skip's reason.  Outside CI skips stay
skips, so a developer without root still gets a useful run.

Loaded from tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import pytest
from tests.servers import in_ci

FIX = "install what the test needs (tests/servers fixtures, .ci/run) or delete the test"


def _skip_reason(report) -> str:
    if hasattr(report, "wasxfail"):
        return f"xfail: {report.wasxfail or 'no reason given'}"
    longrepr = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def _fail(report) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = f"[CI=true] a test may not skip in CI ({reason}) — {FIX}"
    if hasattr(report, "wasxfail"):
        del report.wasxfail


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci():
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci():  # a module-level skip / importorskip
        _fail(report)
