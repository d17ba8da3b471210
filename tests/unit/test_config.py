"""Config loading and validation (tableship.config.loader, models, problems, substitute).

Every problem is reported at once, each with the file and its key path; unknown keys are
errors at every level; ``${VAR}`` / ``${file:...}`` are substituted (a missing variable
is named); relative paths resolve against the config file's folder.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pydantic
import pytest

from tableship.config.loader import config_path, load_config, parse_config
from tableship.core.errors import ConfigError

ISSUE_SAMPLE = """
[settings]
state_dir = ".tableship"          # state store, locks, staging area
log_file = ".tableship/tableship.core.log"   # optional

[sources.warehouse]
type = "duckdb"
path = "warehouse.duckdb"

[destinations.backup]
type = "local"
path = "backup-server"

[defaults]                       # any job key may be set here and overridden per job
source = "warehouse"
destination = "backup"
partition_column = "partition_date"
window = { unit = "month", count = 5 }
file_name = "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz"
remote_dir = "{table}"
format = { delimiter = ";", header = true, null = "", quoting = "minimal" }
compression = { codec = "gzip", level = 6 }
keep_local = false

[jobs.customer_traffic]
table = "mnaas.customer_traffic"
"""


def write(tmp_path: Path, text: str, name: str = "tableship.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    prefix = f"{path.resolve()}: "
    assert all(p.startswith(prefix) for p in exc.value.problems), exc.value.problems
    return [p.removeprefix(prefix) for p in exc.value.problems]


def base(**extra_job) -> dict:
    job = {"table": "db.t", **extra_job}
    return {
        "sources": {"s": {"type": "duckdb", "path": "w.duckdb"}},
        "destinations": {"d": {"type": "local", "path": "out"}},
        "jobs": {"j": job},
    }


def parse_problems(raw: dict, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, tmp_path / "c.toml")
    return [p.removeprefix(f"{tmp_path / 'c.toml'}: ") for p in exc.value.problems]


# ---------------------------------------------------------------- a valid file


def test_issue_sample_loads(tmp_path):
    cfg = load_config(write(tmp_path, ISSUE_SAMPLE))
    job = cfg.job("customer_traffic")
    assert (job.source, job.destination, job.table) == ("warehouse", "backup", "mnaas.customer_traffic")
    assert (job.database, job.table_name) == ("mnaas", "customer_traffic")
    assert (job.window.unit, job.window.count, job.window.lag) == ("month", 5, 0)
    assert (job.compression.codec, job.compression.level) == ("gzip", 6)
    assert (
        job.format.delimiter == ";"
        and job.format.header
        and job.format.null == ""
        and job.format.quoting == "minimal"
    )
    assert job.keep_local is False
    assert cfg.path == (tmp_path / "tableship.toml").resolve()


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "etc" / "tableship"
    path = write(folder, ISSUE_SAMPLE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config("../etc/tableship/tableship.toml")  # a relative --config, too
    root = folder.resolve()
    assert cfg.settings.state_dir == root / ".tableship"
    assert cfg.settings.log_file == root / ".tableship" / "tableship.core.log"
    assert cfg.sources["warehouse"].path == root / "warehouse.duckdb"
    assert cfg.destinations["backup"].path == root / "backup-server"
    assert cfg.staging_dir == root / ".tableship" / "staging"
    assert path.resolve().parent == root


def test_absolute_and_home_paths_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = load_config(
        write(
            tmp_path,
            """
        [settings]
        state_dir = "/var/lib/tableship"
        staging_dir = "~/staging"
        [sources.s]
        type = "duckdb"
        path = "/data/w.duckdb"
        [destinations.d]
        type = "local"
        path = "../backup"
        [jobs.j]
        table = "t"
    """,
        )
    )
    assert cfg.settings.state_dir == Path("/var/lib/tableship")
    assert cfg.staging_dir == tmp_path / "home" / "staging"
    assert cfg.sources["s"].path == Path("/data/w.duckdb")
    assert cfg.destinations["d"].path.resolve() == tmp_path.parent.resolve() / "backup"


def test_defaults_are_merged_and_overridden_per_job(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            """
        [sources.s]
        type = "duckdb"
        path = "w.duckdb"
        [destinations.d]
        type = "local"
        path = "out"
        [defaults]
        window = { unit = "day", count = 7, lag = 1 }
        compression = { codec = "zstd", level = 10 }
        file_name = "{table}_{start:%Y%m%d}.csv.zst"
        keep_local = true
        [jobs.a]
        table = "t1"
        [jobs.b]
        table = "t2"
        window = { count = 3 }
        compression = { codec = "none", level = 0 }
        file_name = "{table}_{start:%Y%m%d}.csv"
        keep_local = false
    """,
        )
    )
    a, b = cfg.job("a"), cfg.job("b")
    assert (a.window.unit, a.window.count, a.window.lag) == ("day", 7, 1)
    assert (b.window.unit, b.window.count, b.window.lag) == ("day", 3, 1)  # inline tables merge key by key
    assert a.compression.codec == "zstd" and b.compression.codec == "none"
    assert a.keep_local and not b.keep_local
    assert a.source == b.source == "s" and a.destination == b.destination == "d"  # the only ones defined
    assert a.database is None and a.table_name == "t1"


def test_format_preset(tmp_path):
    cfg = parse_config(base(format={"preset": "impala-shell"}), tmp_path / "c.toml")
    f = cfg.job("j").format
    assert (f.delimiter, f.header, f.null, f.quoting) == (";", False, "NULL", "minimal")
    cfg = parse_config(base(format={"preset": "impala-shell", "header": True}), tmp_path / "c.toml")
    assert cfg.job("j").format.header is True


# ---------------------------------------------------------------- ${VAR} and ${file:...}


def test_env_substitution_in_any_string(tmp_path, monkeypatch):
    monkeypatch.setenv("TS_DB", "warehouse")
    monkeypatch.setenv("TS_DIR", "/srv/backup")
    monkeypatch.setenv("TS_TABLE", "customer_traffic")
    cfg = load_config(
        write(
            tmp_path,
            """
        [sources.s]
        type = "duckdb"
        path = "${TS_DB}.duckdb"
        [destinations.d]
        type = "local"
        path = "${TS_DIR}/cdr"
        [jobs.j]
        table = "mnaas.${TS_TABLE}"
        remote_dir = "${TS_TABLE}/{start:%Y}"
    """,
        )
    )
    assert cfg.sources["s"].path == tmp_path.resolve() / "warehouse.duckdb"  # resolved after substitution
    assert cfg.destinations["d"].path == Path("/srv/backup/cdr")
    assert cfg.job("j").table == "mnaas.customer_traffic"
    assert cfg.job("j").remote_dir == "customer_traffic/{start:%Y}"


def test_missing_env_vars_are_all_named_with_their_key_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("TS_NOPE_1", raising=False)
    monkeypatch.delenv("TS_NOPE_2", raising=False)
    problems = problems_of(
        tmp_path,
        """
        [sources.s]
        type = "duckdb"
        path = "${TS_NOPE_1}"
        [destinations.d]
        type = "local"
        path = "out"
        [jobs.j]
        table = "${TS_NOPE_2}"
    """,
    )
    assert "sources.s.path: environment variable TS_NOPE_1 is not set" in problems
    assert "jobs.j.table: environment variable TS_NOPE_2 is not set" in problems


def test_substitution_inside_lists_and_bad_references(tmp_path, monkeypatch):
    monkeypatch.delenv("TS_NOPE", raising=False)
    problems = parse_problems(
        {
            **base(),
            "alerts": {
                "ops": {"type": "command", "argv": ["notify", "${TS_NOPE}"]},
                "hook": {"type": "webhook", "url": "${1BAD}"},
            },
        },
        tmp_path,
    )
    assert "alerts.ops.argv[1]: environment variable TS_NOPE is not set" in problems
    assert "alerts.hook.url: '${1BAD}' is not a valid environment variable reference" in problems


def test_file_secret(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    raw = {**base(), "alerts": {"hook": {"type": "webhook", "url": f"https://x/${{file:{secret}}}"}}}
    cfg = parse_config(raw, tmp_path / "c.toml")
    assert cfg.alerts.definitions["hook"].url.get_secret_value() == "https://x/s3cret"
    raw["alerts"]["hook"]["url"] = f"${{file:{tmp_path / 'missing'}}}"
    problems = parse_problems(raw, tmp_path)
    assert any(p.startswith("alerts.hook.url: cannot read secret file") and "missing" in p for p in problems)


# ---------------------------------------------------------------- unknown keys at every level


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[setings]\nstate_dir = "x"\n', "setings: unknown section"),
        ('[settings]\nstatedir = "x"\n', "settings.statedir: unknown key"),
        ('[sources.s]\npth = "x"\n', "sources.s.pth: unknown key"),
        ('[destinations.d]\nroot = "x"\n', "destinations.d.root: unknown key"),
        ('[defaults]\nwindwo = { unit = "day" }\n', "defaults.windwo: unknown key"),
        ('[defaults]\nwindow = { unti = "day" }\n', "defaults.window.unti: unknown key"),
        ('[defaults]\nformat = { delim = ";" }\n', "defaults.format.delim: unknown key"),
        ('[jobs.j]\ntabel = "t"\n', "jobs.j.tabel: unknown key"),
        (
            '[jobs.j]\nwindow = { unit = "day", cout = 3 }\n',
            "jobs.j.window.unti|jobs.j.window.cout: unknown key",
        ),
        ('[jobs.j]\nformat = { quote = "\'" }\n', "jobs.j.format.quote: unknown key"),
        ('[jobs.j]\ncompression = { codec = "gzip", lvl = 3 }\n', "jobs.j.compression.lvl: unknown key"),
        ("[jobs.j]\nretention = { keep = 3 }\n", "jobs.j.retention.keep: unknown key"),
        ('[alerts]\nchanels = ["x"]\n', "alerts.chanels: unknown key"),
        ('[alerts.ops]\ntype = "command"\nargv = ["x"]\ntimeuot = 3\n', "alerts.ops.timeuot: unknown key"),
    ],
)
def test_unknown_keys_at_every_level(tmp_path, text, expected):
    ok = (
        '[sources.s]\ntype = "duckdb"\npath = "w"\n[destinations.d]\ntype = "local"\npath = '
        '"o"\n[jobs.j]\ntable = "t"\n'
    )
    # TOML forbids defining a table twice: put the tested table first and complete it
    if text.startswith("[sources.s]"):
        doc = (
            text + 'type = "duckdb"\npath = "w"\n[destinations.d]\ntype = "local"\npath = '
            '"o"\n[jobs.j]\ntable = "t"\n'
        )
    elif text.startswith("[destinations.d]"):
        doc = (
            text
            + 'type = "local"\npath = "o"\n[sources.s]\ntype = "duckdb"\npath = "w"\n[jobs.j]\ntable = "t"\n'
        )
    elif text.startswith("[jobs.j]"):
        doc = (
            text + 'table = "t"\n[sources.s]\ntype = "duckdb"\npath = "w"\n[destinations.d]\ntype = '
            '"local"\npath = "o"\n'
        )
    else:
        doc = ok + text
    problems = problems_of(tmp_path, doc)
    keys = expected.split(": ")[0].split("|")
    assert any(p.split(": ")[0] in keys and "unknown" in p for p in problems), problems
    assert len(problems) == 1, problems


def test_a_typo_in_defaults_is_reported_once_not_per_job(tmp_path):
    problems = parse_problems(
        {**base(), "defaults": {"keep_locl": True}, "jobs": {"a": {"table": "t"}, "b": {"table": "u"}}},
        tmp_path,
    )
    assert problems == ["defaults.keep_locl: unknown key (check the spelling)"]


# ---------------------------------------------------------------- bad values, every one reported


def test_every_problem_is_reported_at_once_with_key_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("TS_MISSING", raising=False)
    problems = problems_of(
        tmp_path,
        """
        [settings]
        log_backups = -1
        [sources.s]
        type = "duckdb"
        [sources.t]
        path = "x"
        [destinations.d]
        type = "ftp"
        path = "x"
        [destinations.e]
        type = "local"
        path = "${TS_MISSING}"
        [jobs.a]
        table = "x; DROP TABLE y"
        source = "s"
        destination = "e"
        window = { unit = "week", count = 0, lag = -1 }
        format = { delimiter = ";;" }
        compression = { codec = "gzip", level = 12 }
        partition_column = "part date"
        [jobs.b]
        table = "t"
        source = "nosuch"
        destination = "nowhere"
        partition_type = "float"
        on_empty = "maybe"
        file_name = "{tabel}.csv"
        [jobs."bad name"]
        table = "t"
        source = "s"
        destination = "e"
    """,
    )
    expected = [
        "settings.log_backups:",
        "sources.s.path: required key is missing",
        "sources.t: required key 'type' is missing",
        "destinations.d.type: unknown type",
        "destinations.e.path: environment variable TS_MISSING is not set",
        "jobs.a.table:",
        "jobs.a.window.unit:",
        "jobs.a.window.count:",
        "jobs.a.window.lag:",
        "jobs.a.format.delimiter: delimiter must be exactly one character",
        "jobs.a.compression: gzip level must be between 1 and 9",
        "jobs.a.partition_column:",
        "jobs.b.source: unknown source 'nosuch'",
        "jobs.b.destination: unknown destination 'nowhere'",
        "jobs.b.partition_type:",
        "jobs.b.on_empty:",
        "jobs.b.file_name: unknown placeholder {tabel}",
        "jobs.bad name.name: job name 'bad name'",
    ]
    for e in expected:
        assert any(p.startswith(e) for p in problems), f"{e!r} not in {problems}"
    assert len(problems) == len(expected), problems


def test_summary_line_counts_the_problems(tmp_path):
    path = write(tmp_path, '[jobs.a]\ntable = "a;"\n[jobs.b]\ntable = "b;"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "more problem" in exc.value.line()
    assert "tableship config validate" in exc.value.line()
    assert "\n" not in exc.value.line()


def test_sql_injection_in_table_is_a_config_error(tmp_path):
    problems = parse_problems(base() | {"jobs": {"j": {"table": "x; DROP TABLE y"}}}, tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("jobs.j.table: ")
    assert "not a plain identifier" in problems[0]


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("partition_column", "a; DROP TABLE b", "jobs.j.partition_column"),
        ("partition_column", 'x" OR "1"="1', "jobs.j.partition_column"),
        ("expect_columns", ["ok", "not ok"], r"jobs.j.expect_columns\[1\]"),
        ("table", 'db."t"', "jobs.j.table"),
        ("table", "a.b.c", "jobs.j.table"),
    ],
)
def test_identifiers_are_validated(tmp_path, key, value, match):
    problems = parse_problems(base(**{key: value}), tmp_path)
    assert any(re.match(match, p) for p in problems), problems


@pytest.mark.parametrize(
    "job, match",
    [
        ({"compression": {"codec": "lz4"}}, "jobs.j.compression.codec"),
        ({"compression": {"codec": "zstd", "level": 23}}, "jobs.j.compression: zstd level"),
        ({"compression": {"codec": "none", "level": 3}}, "jobs.j.compression: none level"),
        ({"format": {"delimiter": '"'}}, "jobs.j.format.delimiter"),
        ({"format": {"delimiter": "\n"}}, "jobs.j.format.delimiter"),
        ({"format": {"delimiter": ""}}, "jobs.j.format.delimiter"),
        ({"format": {"quoting": "all"}}, "jobs.j.format.quoting"),
        ({"window": {"unit": "month", "count": "five"}}, "jobs.j.window.count"),
        ({"window": 5}, "jobs.j.window"),
        ({"keep_local": [1]}, "jobs.j.keep_local"),
    ],
)
def test_bad_values(tmp_path, job, match):
    problems = parse_problems(base(**job), tmp_path)
    assert len(problems) == 1 and problems[0].startswith(match), problems


def test_ok_levels(tmp_path):
    for comp in [
        {"codec": "gzip", "level": 1},
        {"codec": "gzip", "level": 9},
        {"codec": "zstd", "level": 22},
        {"codec": "none"},
        {"codec": "none", "level": 0},
    ]:
        ext = {"gzip": ".gz", "zstd": ".zst", "none": ""}[comp["codec"]]
        parse_config(
            base(compression=comp, file_name="{table}_{start:%Y%m%d}.csv" + ext), tmp_path / "c.toml"
        )


def test_structure_problems(tmp_path):
    assert parse_problems({"sources": {}, "destinations": {}}, tmp_path) == [
        "jobs: no job defined — add a [jobs.<name>] table with at least 'table = \"db.table\"'"
    ]
    problems = parse_problems({**base(), "jobs": 3}, tmp_path)
    assert "jobs: must be a table" in problems
    problems = parse_problems({**base(), "jobs": {"j": "t"}}, tmp_path)
    assert problems == ["jobs.j: must be a table"]


def test_source_and_destination_required_when_ambiguous(tmp_path):
    raw = base()
    raw["sources"]["s2"] = {"type": "duckdb", "path": "x"}
    raw["destinations"]["d2"] = {"type": "local", "path": "y"}
    problems = parse_problems(raw, tmp_path)
    assert sorted(problems) == [
        "jobs.j.destination: required key is missing",
        "jobs.j.source: required key is missing",
    ]


# ---------------------------------------------------------------- files


def test_malformed_toml_shows_the_line(tmp_path):
    path = write(tmp_path, '[settings]\nstate_dir = ".x"\n[jobs.j\ntable = "t"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    line = exc.value.line()
    assert "invalid TOML" in line and "line 3" in line and str(path) in line
    assert "\n" not in line


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found") as exc:
        load_config(tmp_path / "nope.toml")
    assert "--config" in exc.value.line() and "TABLESHIP_CONFIG" in exc.value.line()
    assert exc.value.exit_code == 2


def test_config_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)


def test_not_utf8(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b'[jobs.j]\ntable = "\xff"\n')
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(path)


def test_config_path_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("TABLESHIP_CONFIG", raising=False)
    assert config_path(None) == Path("tableship.toml")
    monkeypatch.setenv("TABLESHIP_CONFIG", str(tmp_path / "env.toml"))
    assert config_path(None) == tmp_path / "env.toml"
    assert config_path(tmp_path / "explicit.toml") == tmp_path / "explicit.toml"


def test_unknown_job_lists_the_configured_ones(tmp_path):
    cfg = parse_config(base(), tmp_path / "c.toml")
    with pytest.raises(ConfigError, match=r"unknown job 'x' \(configured jobs: j\)") as exc:
        cfg.job("x")
    assert exc.value.exit_code == 2


def test_models_are_frozen(tmp_path):
    cfg = parse_config(base(), tmp_path / "c.toml")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.job("j").table = "other"  # type: ignore[misc]


def test_a_job_switching_codec_does_not_inherit_the_default_level(tmp_path):
    raw = base()
    raw["defaults"] = {
        "compression": {"codec": "gzip", "level": 6},
        "format": {"delimiter": ",", "header": True},
    }
    raw["jobs"] = {
        "none": {"table": "t", "compression": {"codec": "none"}},
        "zstd": {"table": "t", "compression": {"codec": "zstd"}},
        "zstd9": {"table": "t", "compression": {"codec": "zstd", "level": 9}},
        "gzip": {"table": "t", "compression": {"level": 1}},
        "preset": {"table": "t", "format": {"preset": "impala-shell"}},
        "delim": {"table": "t", "format": {"delimiter": "|"}},
    }
    for job in raw["jobs"].values():  # one file name per job, with its codec's extension
        codec = job.get("compression", {}).get("codec", "gzip")
        job["file_name"] = "{job}_{start:%Y%m%d}.csv" + {"gzip": ".gz", "zstd": ".zst", "none": ""}[codec]
    cfg = parse_config(raw, tmp_path / "c.toml")
    comp = {n: (j.compression.codec, j.compression.level) for n, j in cfg.jobs.items()}
    assert comp["none"] == ("none", None) and comp["zstd"] == ("zstd", None) and comp["zstd9"] == ("zstd", 9)
    assert comp["gzip"] == ("gzip", 1)
    f = cfg.job("preset").format
    assert (f.delimiter, f.header, f.null, f.quoting) == (
        ";",
        False,
        "NULL",
        "minimal",
    )  # the preset, not the defaults
    f = cfg.job("delim").format
    assert (f.delimiter, f.header) == ("|", True)
