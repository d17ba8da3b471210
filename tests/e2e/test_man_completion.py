"""Shell habits (issue 12 point 5): ``tableship man`` prints man pages generated from the
commands' help by click-man (its core API is pinned with an upper bound; this is the
canary), and Click's shell completion works as docs/cli.md says."""

from __future__ import annotations

import inspect
import subprocess
import sys
from importlib.metadata import version

import click_man.core
from packaging.version import Version
from tests.e2e.helpers import assert_clean_error


def test_click_man_api_canary():
    v = Version(version("click-man"))
    assert Version("0.5") <= v < Version("0.7"), v  # pyproject's bounds: check the API below on a new one
    assert list(inspect.signature(click_man.core.generate_man_page).parameters) == ["ctx", "version", "date"]
    params = list(inspect.signature(click_man.core.write_man_pages).parameters)
    assert params[:2] == ["name", "cli"] and {"version", "target_dir", "date"} <= set(params)


def test_man_prints_roff_of_tableship_and_of_a_command(ws):
    r = ws.cli("man", config=False)
    assert r.rc == 0, str(r)
    assert r.stdout.startswith(".TH") and '"TABLESHIP"' in r.stdout.splitlines()[0].upper()
    for command in ("run", "status", "import-legacy", "init", "man"):
        assert command in r.stdout, command
    r = ws.cli("man", "run", config=False)
    assert r.rc == 0 and "dry\\-run" in r.stdout and "Back up the named" in r.stdout, str(r)
    r = ws.cli("man", "config validate", config=False)
    assert r.rc == 0 and "Validate the config file" in r.stdout, str(r)
    assert_clean_error(ws.cli("man", "nope", config=False), 2, "no command 'nope'")


def test_man_dir_writes_every_page(ws):
    folder = ws.root / "man1"
    r = ws.cli("man", "--dir", folder, config=False)
    assert r.rc == 0, str(r)
    names = sorted(p.name for p in folder.iterdir())
    assert {
        "tableship.1",
        "tableship-run.1",
        "tableship-config-validate.1",
        "tableship-import-legacy.1",
    } <= set(names), names
    man = subprocess.run(
        ["man", "-l", "-P", "cat", str(folder / "tableship-run.1")], capture_output=True, text=True
    )
    if man.returncode == 0:  # man(1) renders it when installed; the roff itself is checked above
        assert "--dry-run" in man.stdout.replace("‐", "-")


def test_bash_completion_as_documented(ws):
    env = {"_TABLESHIP_COMPLETE": "bash_source"}
    r = ws.cli(env=env, config=False)
    assert r.rc == 0 and "_TABLESHIP_COMPLETE=bash_complete" in r.stdout, str(r)
    # what the generated function asks for when the user typed "tableship imp<TAB>"
    proc = subprocess.run(
        [sys.executable, "-m", "tableship"],
        env={
            **ws.env(),
            "_TABLESHIP_COMPLETE": "bash_complete",
            "COMP_WORDS": "tableship imp",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert "import-legacy" in proc.stdout, proc.stdout + proc.stderr
