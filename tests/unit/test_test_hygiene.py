"""Guards for the test suite's own rules (PROTOCOL / issue 10 point 6): tests that can
fail for the right reason.

* no ``pytest.raises(Exception)`` / ``BaseException``: name the exception the code raises;
* no fixed sleep as synchronisation: a ``time.sleep`` outside a loop is waiting for
  something by guessing how long it takes — poll the condition instead
  (``tests.servers.wait_for``, ``tests.e2e.helpers.wait_for``);
* no wall-clock threshold: ``time.monotonic() - t0 < 60`` fails on a loaded machine —
  inject the clock (e.g. ``TABLESHIP_TEST_ALERT_NOW``, docs/alerts.md).

Skips are guarded at run time by tests/no_skips_in_ci.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
FILES = sorted(p for p in TESTS.rglob("*.py") if ".venv" not in p.parts)


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _is_clock_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _name(node.func) in {
        "time.monotonic",
        "time.time",
        "monotonic",
        "time.perf_counter",
    }


class _Finder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.problems: list[tuple[int, str]] = []
        self.loops = 0

    def _loop(self, node) -> None:
        self.loops += 1
        self.generic_visit(node)
        self.loops -= 1

    visit_While = visit_For = visit_AsyncFor = _loop

    def visit_FunctionDef(self, node) -> None:  # a nested function is its own context
        loops, self.loops = self.loops, 0
        self.generic_visit(node)
        self.loops = loops

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        name = _name(node.func)
        if (
            name in {"pytest.raises", "raises"}
            and node.args
            and _name(node.args[0]) in {"Exception", "BaseException"}
        ):
            self.problems.append(
                (node.lineno, f"pytest.raises({_name(node.args[0])}): name the precise type")
            )
        if name in {"time.sleep", "sleep"} and not self.loops:
            self.problems.append((node.lineno, "a sleep outside a polling loop: wait on the condition"))
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        sides = [node.left, *node.comparators]
        for side in sides:
            if isinstance(side, ast.BinOp) and isinstance(side.op, ast.Sub) and _is_clock_call(side.left):
                if any(isinstance(s, ast.Constant) for s in sides):
                    self.problems.append((node.lineno, "a wall-clock threshold: inject the clock"))
        self.generic_visit(node)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(TESTS)) for p in FILES])
def test_no_vague_raises_fixed_sleeps_or_clock_thresholds(path):
    finder = _Finder()
    finder.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    assert not finder.problems, "\n".join(
        f"{path.relative_to(TESTS)}:{n}: {what}" for n, what in finder.problems
    )


def test_the_guard_sees_each_pattern():
    finder = _Finder()
    finder.visit(
        ast.parse(
            "import time, pytest\n"
            "def t():\n"
            "    with pytest.raises(Exception):\n"
            "        pass\n"
            "    time.sleep(0.5)\n"
            "    t0 = time.monotonic()\n"
            "    assert time.monotonic() - t0 < 60\n"
            "    while True:\n"
            "        time.sleep(0.1)\n"  # polling: fine
        )
    )
    assert [n for n, _ in finder.problems] == [3, 5, 7]
