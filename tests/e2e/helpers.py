"""Helpers for the end-to-end tests (imported as ``tests.e2e.helpers``): constants of the
fixed demo scenario, a TOML writer, CLI results, CSV parsing and a workspace model."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import hashlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

TODAY = dt.date(2026, 11, 26)
RUN_DATE = TODAY.isoformat()
WINDOW = (dt.date(2026, 6, 1), dt.date(2026, 10, 31))  # month × 5 before TODAY
JOB = "customer_traffic"
TABLE = "mnaas.customer_traffic"
REMOTE_DIR = "customer_traffic"
ARCHIVE = "customer_traffic_20260601_20261031.csv.gz"

# temporaries: the export's "<name>.part" and the destination's ".<name>.tableship-<job>-<hex>.part"
TEMP_RE = re.compile(r"(\.part|\.tmp)$")


# ---------------------------------------------------------------- CLI results


@dataclass
class Result:
    args: list[str]
    rc: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("Error:")]

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\nrc={self.rc}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


def assert_clean_error(result: Result, rc: int, *needles: str) -> str:
    """Exit code ``rc``, exactly one ``Error:`` line on stderr (returned), no traceback."""
    assert result.rc == rc, str(result)
    assert len(result.error_lines) == 1, str(result)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, str(result)
    line = result.error_lines[0]
    assert " — " in line, f"no '— what to do' part in {line!r}"
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


# ---------------------------------------------------------------- TOML writer


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(doc: dict) -> str:
    """``settings``/``defaults`` are plain tables; ``sources``/``destinations``/``jobs``/``alerts``
    hold named sub-tables (``[jobs.x]``); nested dicts inside them become inline tables."""
    lines: list[str] = []
    for section, body in doc.items():
        if section in ("settings", "defaults"):
            lines.append(f"[{section}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items()]
        else:
            scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
            if scalars:
                lines.append(f"[{section}]")
                lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items()]
            for name, sub in body.items():
                if isinstance(sub, dict):
                    lines.append(f"[{section}.{_toml_key(name)}]")
                    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in sub.items()]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- CSV checking


def decompress(path: Path, codec: str | None = None) -> bytes:
    """The archive's bytes decompressed by the system tools (``gzip -dc`` / ``zstd -dc``)."""
    codec = codec or {".gz": "gzip", ".zst": "zstd"}.get(path.suffix, "none")
    if codec == "none":
        return path.read_bytes()
    tool = {"gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dc", "-q"]}[codec]
    proc = subprocess.run([*tool, str(path)], capture_output=True, check=False)
    assert proc.returncode == 0, f"{tool[0]} -d {path} failed: {proc.stderr.decode(errors='replace')}"
    return proc.stdout


def parse_csv_nulls(text: str, delimiter: str = ";") -> list[list[str | None]]:
    """Parse the declared dialect keeping NULL (unquoted empty field) apart from ``""``.

    Python's csv module (3.11) reads both as ``''``; the tests use it too, and this parser
    to check the NULL rule. Strict: every line ends with ``\\n``, quotes only around fields.
    """
    field = re.compile(rf'"((?:[^"]|"")*)"|([^{re.escape(delimiter)}"\n]*)')
    rows: list[list[str | None]] = []
    row: list[str | None] = []
    pos, n = 0, len(text)
    while pos < n:
        m = field.match(text, pos)
        if m.group(1) is not None:
            row.append(m.group(1).replace('""', '"'))
        else:
            row.append(m.group(2) if m.group(2) else None)
        pos = m.end()
        if pos >= n:
            raise AssertionError("the last line does not end with \\n")
        c = text[pos]
        pos += 1
        if c == delimiter:
            continue
        if c == "\n":
            rows.append(row)
            row = []
            continue
        raise AssertionError(f"unexpected {c!r} at offset {pos - 1}: {text[max(0, pos - 40) : pos + 40]!r}")
    return rows


def parse_csv_module(text: str, delimiter: str = ";") -> list[list[str]]:
    """The same text through Python's csv module with the declared dialect."""
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        lineterminator="\n",
        quoting=csv.QUOTE_MINIMAL,
        strict=True,
    )
    return [row for row in reader]


def render(value) -> str | None:
    """A DuckDB or driver value (Decimal, datetime, date, bool, float...) as the CSV contract writes it.

    None stands for NULL.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def query_rows(
    warehouse: Path, start: dt.date, end: dt.date, table: str = TABLE
) -> tuple[list[str], list[list]]:
    """Column names and rendered rows of the window, ordered by cdr_id, straight from DuckDB."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cur = con.execute(
            f"SELECT * FROM {table} WHERE partition_date BETWEEN ? AND ? ORDER BY cdr_id", [start, end]
        )
        names = [d[0] for d in cur.description]
        return names, [[render(v) for v in row] for row in cur.fetchall()]
    finally:
        con.close()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ---------------------------------------------------------------- the workspace


class Workspace:
    """A folder with a config, a destination folder and a state dir; runs the CLI in it."""

    def __init__(self, root: Path, warehouse: Path):
        self.root = root
        self.warehouse = warehouse
        self.config_path = root / "tableship.toml"
        self.dest = root / "backup-server"
        self.state_dir = root / ".tableship"
        self.staging = self.state_dir / "staging"
        self.cwd = root / "elsewhere"  # the CLI never runs from the config's folder
        self.dest.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.logs = root / "proc-logs"

    # -- config
    def config_doc(
        self,
        jobs: dict | None = None,
        defaults: dict | None = None,
        settings: dict | None = None,
        sources: dict | None = None,
        destinations: dict | None = None,
        **more,
    ) -> dict:
        doc = {
            "settings": {"state_dir": ".tableship", "log_file": ".tableship/tableship.core.log"}
            | (settings or {}),
            "sources": sources or {"warehouse": {"type": "duckdb", "path": str(self.warehouse)}},
            "destinations": destinations or {"backup": {"type": "local", "path": "backup-server"}},
            "defaults": {
                "source": "warehouse",
                "destination": "backup",
                "partition_column": "partition_date",
                "window": {"unit": "month", "count": 5},
                "file_name": "{table}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz",
                "remote_dir": "{table}",
                "format": {"delimiter": ";", "header": True, "null": "", "quoting": "minimal"},
                "compression": {"codec": "gzip", "level": 6},
                "keep_local": False,
            }
            | (defaults or {}),
            "jobs": jobs if jobs is not None else {JOB: {"table": TABLE}},
        }
        doc.update(more)
        return doc

    def write_config(self, jobs: dict | None = None, **kw) -> Path:
        return self.write_text(to_toml(self.config_doc(jobs, **kw)))

    def write_text(self, text: str) -> Path:
        self.config_path.write_text(text, encoding="utf-8")
        return self.config_path

    # -- running the CLI
    def env(self, env: dict | None = None) -> dict:
        out = {k: v for k, v in os.environ.items() if k != "TABLESHIP_CONFIG"}
        out.update(env or {})
        return out

    def argv(self, args, config: bool | str | Path = True) -> list[str]:
        argv = [sys.executable, "-m", "tableship"]
        if config is True:
            argv += ["--config", str(self.config_path)]
        elif config:
            argv += ["--config", str(config)]
        return argv + [str(a) for a in args]

    def cli(
        self,
        *args,
        env: dict | None = None,
        config: bool | str | Path = True,
        timeout: float = 300,
        cwd: Path | None = None,
    ) -> Result:
        argv = self.argv(args, config)
        proc = subprocess.run(
            argv,
            cwd=cwd or self.cwd,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args, env: dict | None = None, name: str = "proc") -> Proc:
        """Start the CLI in the background; its output goes to files (no pipe to fill up)."""
        self.logs.mkdir(exist_ok=True)
        argv = self.argv(args)
        out = open(self.logs / f"{name}.out", "w+")
        err = open(self.logs / f"{name}.err", "w+")
        proc = subprocess.Popen(
            argv, cwd=self.cwd, env=self.env(env), stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True
        )
        return Proc(proc, argv, out, err)

    # -- inspecting
    def runs(self) -> list[dict]:
        """Every row of the ledger, oldest first ([] when there is no state db)."""
        path = self.state_dir / "state.db"
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY id")]
        except sqlite3.OperationalError:  # tables not created yet
            return []
        finally:
            db.close()

    def transitions(self, run_id: int) -> list[tuple]:
        db = sqlite3.connect(f"file:{self.state_dir / 'state.db'}?mode=ro", uri=True, timeout=30)
        try:
            return [
                tuple(r)
                for r in db.execute(
                    "SELECT from_phase, to_phase, note FROM transitions WHERE run_id=? ORDER BY rowid",
                    (run_id,),
                )
            ]
        finally:
            db.close()

    def phase(self) -> str | None:
        runs = self.runs()
        return runs[-1]["phase"] if runs else None

    @staticmethod
    def files(base: Path) -> list[str]:
        """Every file under ``base`` (recursively), relative, sorted ([] if it does not exist)."""
        if not base.exists():
            return []
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() or p.is_symlink())

    def archive(self, name: str = ARCHIVE, remote_dir: str = REMOTE_DIR) -> Path:
        return self.dest / remote_dir / name

    def manifest(self, name: str = ARCHIVE, remote_dir: str = REMOTE_DIR) -> dict:
        return json.loads((self.dest / remote_dir / f"{name}.manifest.json").read_text())

    def assert_no_partial_final_files(
        self, expected_sha: dict[str, str] | None = None, ignore: tuple = ()
    ) -> None:
        """Under staging and the destination, every file is a temporary name, a sidecar
        that is complete, or an archive that is complete (decompresses; sha256 as recorded)."""
        recorded = {r["file_name"]: r["sha256"] for r in self.runs() if r["sha256"]}
        recorded.update(expected_sha or {})
        for base in (self.staging, self.dest):
            for rel in self.files(base):
                path = base / rel
                name = path.name
                if TEMP_RE.search(name) or path in ignore:
                    continue
                if name.endswith(".sha256"):
                    text = path.read_text()
                    assert re.fullmatch(r"[0-9a-f]{64}  \S+\n", text), f"partial sidecar {path}: {text!r}"
                    assert (path.parent / name.removesuffix(".sha256")).exists()
                    continue
                if name.endswith(".manifest.json"):
                    manifest = json.loads(path.read_text())  # complete JSON
                    archive = path.parent / name.removesuffix(".manifest.json")
                    assert sha256_file(archive) == manifest["sha256"], (
                        f"manifest beside a different archive: {path}"
                    )
                    continue
                assert name in recorded, f"unexpected file under a final name: {path}"
                assert sha256_file(path) == recorded[name], (
                    f"partial or foreign archive under a final name: {path}"
                )
                decompress(path)  # and it is a whole gzip/zstd stream

    def temporaries(self) -> list[str]:
        return [
            f"{b.name}/{rel}"
            for b in (self.staging, self.dest)
            for rel in self.files(b)
            if TEMP_RE.search(rel)
        ]


@dataclass
class Proc:
    proc: subprocess.Popen
    args: list[str]
    _out: object
    _err: object

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 300) -> Result:
        rc = self.proc.wait(timeout)
        self._out.seek(0)
        self._err.seek(0)
        out, err = self._out.read(), self._err.read()
        self._out.close()
        self._err.close()
        return Result(self.args, rc, out, err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


def wait_for(
    predicate, timeout: float = 120, interval: float = 0.01, proc: Proc | None = None, what: str = ""
):
    """Poll ``predicate`` until it returns a truthy value (returned). Fails if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.proc.returncode}) before: {what}\n{proc.wait()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(interval)


_CONTROL = re.compile(r"\x1b\[(\??)([\d;]*)([A-Za-z])")


def screen(output: str) -> list[str]:
    """The terminal's visible lines after ``output`` (enough of a terminal for rich's live display:
    CR, LF, erase line, cursor up; colours and cursor show/hide ignored)."""
    lines, row, col = [""], 0, 0
    pos = 0
    while pos < len(output):
        m = _CONTROL.match(output, pos)
        if m:
            private, n, op = m.groups()
            if not private and op == "K":
                lines[row] = ""
                col = 0
            elif not private and op == "A":
                row = max(0, row - int(n.split(";")[0] or 1))
            pos = m.end()
            continue
        ch = output[pos]
        pos += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1 :]
            col += 1
    return [line.rstrip() for line in lines if line.strip()]
