"""The legacy properties reader: shell syntax read, never run (config/shellvars.py)."""

from __future__ import annotations

import pytest

from tableship.config.shellvars import read_properties


def props(tmp_path, text: str, name: str = "job.properties"):
    path = tmp_path / name
    path.write_text(text)
    return read_properties(path)


def test_assignment_forms(tmp_path):
    env = props(
        tmp_path,
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "export EXPORTED=exp\n"
        "SINGLE='it is $PLAIN \"raw\"'\n"
        'DOUBLE="x $PLAIN ${EXPORTED} \\"q\\" \\$HOME"\n'
        "BARE=$PLAIN/${EXPORTED}_sfx   # trailing comment\n"
        "ESC=a\\ b\n"
        'EMPTY=""\n'
        "DEFAULT=${NOPE:-fallback}\n"
        "CONT=one\\\n"
        "two\n"
        "  INDENTED=yes\n",
    )
    assert env.values == {
        "PLAIN": "value",
        "EXPORTED": "exp",
        "SINGLE": 'it is $PLAIN "raw"',
        "DOUBLE": 'x value exp "q" $HOME',
        "BARE": "value/exp_sfx",
        "ESC": "a b",
        "EMPTY": "",
        "DEFAULT": "fallback",
        "CONT": "onetwo",
        "INDENTED": "yes",
    }
    assert env.unresolved == {}
    assert env.where["BARE"].endswith("job.properties line 7")


def test_nothing_is_run_and_unknowns_are_flagged(tmp_path):
    marker = tmp_path / "ran"
    env = props(
        tmp_path,
        f"LOG=/logs/backup$(date +_%F)\n"
        f"TICK=`touch {marker}`\n"
        f"REF=${{UNSET}}/x\n"
        f"USES=$LOG.gz\n"
        f"set -x\n"
        f"touch {marker}\n"
        f"AFTER=a touch {marker}\n",
    )
    assert not marker.exists()
    assert env.get("LOG") is None and "command substitution" in env.unresolved["LOG"]
    assert "command substitution" in env.unresolved["TICK"]
    assert "$UNSET is not set" in env.unresolved["REF"]
    assert "$LOG is not known" in env.unresolved["USES"]
    assert "goes on after the value" in env.unresolved["AFTER"]
    assert [s.split(": ", 1)[1] for s in env.skipped] == ["set -x", f"touch {marker}"]


def test_sourced_files_are_read_missing_ones_noted(tmp_path):
    (tmp_path / "common.properties").write_text("IMPALAD_HOST=impala01\nENV_MODE=PROD\n")
    env = props(
        tmp_path,
        ". ./common.properties\nsource /nowhere/else.properties\nHOST2=$IMPALAD_HOST\n",
    )
    assert env.values["HOST2"] == "impala01" and env.get("ENV_MODE") == "PROD"
    assert any("/nowhere/else.properties (not found)" in s for s in env.skipped)
    assert [p.name for p in env.files] == ["job.properties", "common.properties"]


@pytest.mark.parametrize("line", ["A='open", 'A="open', "A=${open"])
def test_broken_syntax_names_the_line(tmp_path, line):
    with pytest.raises(ValueError, match=r"job.properties line 2: unterminated"):
        props(tmp_path, f"OK=1\n{line}\n")
