"""Every click command (including those added later) has help text and a section in
docs/cli.md that mentions each of its options; the README lists the exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tableship.cli.commands import cli

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = ROOT / "docs" / "cli.md"
README = ROOT / "README.md"


def walk(command: click.Command, path: tuple[str, ...] = ("tableship",)):
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from walk(command.commands[name], (*path, name))


COMMANDS = list(walk(cli))
IDS = [" ".join(p) for p, _ in COMMANDS]


def sections() -> dict[str, str]:
    """``## tableship ...`` heading → the text up to the next ``##`` heading."""
    text = CLI_DOC.read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for m in re.finditer(r"^##\s+`?(tableship[^`\n]*?)`?\s*$(.*?)(?=^##\s|\Z)", text, re.M | re.S):
        out[" ".join(m.group(1).split())] = m.group(2)
    return out


def test_the_walk_finds_the_core_commands():
    names = set(IDS)
    assert {
        "tableship run",
        "tableship status",
        "tableship history",
        "tableship config",
        "tableship config validate",
        "tableship demo",
    } <= names


@pytest.mark.parametrize("path, command", COMMANDS, ids=IDS)
def test_command_has_help_text(path, command):
    assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]} has no help text"


@pytest.mark.parametrize("path, command", [(p, c) for p, c in COMMANDS if len(p) > 1], ids=IDS[1:])
def test_command_is_documented(path, command):
    name = " ".join(path)
    docs = sections()
    if isinstance(command, click.Group):  # a group is documented through its subcommands' headings
        assert any(h == name or h.startswith(name + " ") for h in docs), (
            f"no '## {name} ...' heading in docs/cli.md"
        )
        return
    assert name in docs, f"no '## {name}' heading in docs/cli.md (headings: {sorted(docs)})"
    body = docs[name]
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            longest = max(param.opts, key=len)
            if longest in ("--help",):
                continue
            assert longest in body, f"{name}: option {longest} is not described in its docs/cli.md section"


def test_global_options_are_documented():
    text = CLI_DOC.read_text(encoding="utf-8")
    for param in cli.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert max(param.opts, key=len) in text, f"global option {param.opts} not in docs/cli.md"


def test_help_runs_for_every_command():
    runner = CliRunner()
    for path, _ in COMMANDS:
        result = runner.invoke(cli, [*path[1:], "--help"])
        assert result.exit_code == 0, f"{' '.join(path)} --help: {result.output}"
        assert "Usage:" in result.output


def test_readme_lists_the_exit_codes():
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^#+ [^\n]*exit codes?[^\n]*$(.*?)(?=^#+ |\Z)", text, re.M | re.S | re.I)
    assert m, "README.md has no 'Exit codes' section"
    section = m.group(1)
    for code in ("0", "1", "2", "75"):
        assert re.search(rf"(^|\|)\s*`?{code}`?\s*(\||—|-|:)", section, re.M), (
            f"exit code {code} not in README"
        )
    assert re.search(r"128\s*\+\s*N", section), "128+N (killed by signal N) not in README"


def test_readme_links_the_cli_reference():
    assert "docs/" in README.read_text(encoding="utf-8")
