"""The secrets matrix: 14 secret shapes, each grepped — whole, percent-encoded, and as
every 6-character fragment — in every output tableship writes: stdout and stderr (text,
JSON log, ``--debug``), the log file, every table of ``state.db``, the status and metrics
files, the manifests and sidecars on every destination, and the alert bodies (email,
webhook, command).

Real servers: PostgreSQL (roles with these passwords, scram-sha-256 for them), the test
sshd (a password account and an encrypted key), the SMTP server with AUTH, an HTTP
server for the webhook. Some outputs carry the secrets un-redacted at their source (the
command channel echoes its ``${file:}`` token to stderr; an unencoded ``@`` in a URL
password; a ``?password=`` query), so the redactor is exercised, not only not needed.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.integration.test_alerts import HttpRecorder

WINDOW = ("--from", "2026-01-01", "--to", "2026-01-31")

# shape → (PostgreSQL role, password, how it is written in the URL)
PG = {
    "at": ("ts_at", "Pa@ssTail99x", "raw"),  # unencoded '@': the password runs to the last '@'
    "colon": ("ts_colon", "Co:l0n:Qz8w", "raw"),
    "slash": ("ts_slash", "Sl/a5h/Wm3k", "encoded"),
    "question": ("ts_question", "Qu?e5t?Rn4j", "encoded"),
    "hash": ("ts_hash", "Ha#5h#Tp6v", "encoded"),
    "percent": ("ts_percent", "Pe%c3%nt%Yb7", "encoded"),
    "space": ("ts_space", "Sp ace Gx5h", "encoded"),
    "query": ("ts_query", "Qs Pw=Zt9&Lk", "query"),  # ?password=…
}
WRONG_PASSWORD = "Wr0ng@Pw:Hq2x"
KEY_PASSPHRASE = "Kp#9 zQ!vX2-rT7w"
SMTP_PASSWORD = "Sm:tp@Pw 8Jd%r"  # via ${file:}
WEBHOOK_TOKEN = "Bearer Wh-7Tq2Lm9Zx"
FILE_SECRET = "F1le:Sec/Rt#66"  # via ${file:}, in a command channel's argv (not a SecretStr field)
PG_GROUP = "tableship_pw"


def all_secrets(sshd) -> dict[str, str]:
    out = {f"pg {shape}": pw for shape, (_, pw, _) in PG.items()}
    out.update(
        {
            "pg wrong password": WRONG_PASSWORD,
            "sftp password": sshd.password,
            "key passphrase": KEY_PASSPHRASE,
            "smtp password": SMTP_PASSWORD,
            "webhook header": WEBHOOK_TOKEN,
            "${file:} secret": FILE_SECRET,
        }
    )
    return out


def fragments(secret: str, n: int = 6) -> set[str]:
    return {secret[i : i + n] for i in range(len(secret) - n + 1)}


def toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@pytest.fixture(scope="module")
def pg_roles(postgres):
    """Roles with the secret passwords, checked with scram-sha-256 (the cluster trusts
    everyone else), and a small table in the warehouse database."""
    hba = postgres.data_dir / "pg_hba.conf"
    text = hba.read_text()
    rules = f"host all +{PG_GROUP} 127.0.0.1/32 scram-sha-256\nhost all +{PG_GROUP} ::1/128 scram-sha-256\n"
    if rules not in text:
        hba.write_text(rules + text)
    sql = [
        f"DO $$ BEGIN CREATE ROLE {PG_GROUP} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        "SET password_encryption = 'scram-sha-256'",
        "CREATE SCHEMA IF NOT EXISTS secrets_t",
        "DROP TABLE IF EXISTS secrets_t.events",
        "CREATE TABLE secrets_t.events (id int, partition_date date, txt text)",
        "INSERT INTO secrets_t.events SELECT i, DATE '2026-01-01' + (i % 31), 'row ' || i "
        "FROM generate_series(1, 500) i",
        f"GRANT USAGE ON SCHEMA secrets_t TO {PG_GROUP}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA secrets_t TO {PG_GROUP}",
    ]
    for role, pw, _ in PG.values():
        literal = pw.replace("'", "''")
        sql.append(f"DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        sql.append(f"ALTER ROLE {role} PASSWORD '{literal}'")
        sql.append(f"GRANT {PG_GROUP} TO {role}")
    postgres.psql(";\n".join(sql))
    postgres.psql("SELECT pg_reload_conf()")
    return postgres


def pg_url(pg, shape: str, password: str | None = None) -> str:
    role, pw, how = PG[shape]
    pw = pw if password is None else password
    where = f"{pg.host}:{pg.port}/{pg.dbname}"
    if how == "query":
        return f"postgresql+psycopg://{role}@{where}?sslmode=disable&password={quote(pw, safe='')}"
    shown = pw if how == "raw" else quote(pw, safe="")
    return f"postgresql+psycopg://{role}:{shown}@{where}"


@pytest.fixture
def matrix(tmp_path, pg_roles, sshd, smtp_factory):
    pg = pg_roles
    site = tmp_path / "site"
    site.mkdir()
    (site / "backup").mkdir()
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / "smtp").write_text(SMTP_PASSWORD + "\n")
    (secrets_dir / "token").write_text(FILE_SECRET + "\n")
    # an encrypted key for root on the test sshd
    key = secrets_dir / "enc_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", KEY_PASSPHRASE, "-C", "secrets-matrix", "-f", str(key)],
        check=True,
    )
    with open(sshd.base_dir / "authorized_keys" / "root", "a") as f:
        f.write(key.with_suffix(".pub").read_text())
    tag = uuid.uuid4().hex[:8]
    remote_pw = sshd.root_dir / f"secrets-pw-{tag}"
    remote_pw.mkdir()
    import pwd

    user = pwd.getpwnam(sshd.password_user)
    os.chown(remote_pw, user.pw_uid, user.pw_gid)
    remote_key = sshd.root_dir / f"secrets-key-{tag}"
    remote_key.mkdir()
    smtp = smtp_factory(auth=("alerts", SMTP_PASSWORD))
    hook = HttpRecorder()

    lines = [
        "[settings]",
        'state_dir = "state"',
        'log_file = "tableship.core.log"',
        'metrics_file = "tableship.prom"',
        'status_file = "status.properties"',
        "",
    ]
    for shape in PG:
        lines += [
            f"[sources.pg_{shape}]",
            'type = "sqlalchemy"',
            f"url = {toml(pg_url(pg, shape))}",
            "retries = { attempts = 1 }",
            "",
        ]
    lines += [
        "[sources.pg_wrong]",
        'type = "sqlalchemy"',
        f"url = {toml(pg_url(pg, 'colon', WRONG_PASSWORD))}",
        "retries = { attempts = 1 }",
        "",
    ]
    lines += ["[destinations.backup]", 'type = "local"', 'path = "backup"', ""]
    common = [
        f"host = {toml(sshd.host)}",
        f"port = {sshd.port}",
        f"known_hosts = {toml(str(sshd.known_hosts))}",
        "retries = { attempts = 1 }",
    ]
    lines += [
        "[destinations.sftp_pw]",
        'type = "sftp"',
        f"user = {toml(sshd.password_user)}",
        f"password = {toml(sshd.password)}",
        f"path = {toml(str(remote_pw))}",
        *common,
        "",
    ]
    lines += [
        "[destinations.sftp_key]",
        'type = "sftp"',
        'user = "root"',
        f"key_file = {toml(str(key))}",
        f"key_passphrase = {toml(KEY_PASSPHRASE)}",
        f"path = {toml(str(remote_key))}",
        *common,
        "",
    ]
    # one folder per job: jobs of one table on one destination would write the same file
    lines += [
        "[defaults]",
        'destination = "backup"',
        'window = { unit = "month", count = 1 }',
        'remote_dir = "{job}"',
        "",
    ]
    jobs = {f"ok_{shape}": (f"pg_{shape}", "secrets_t.events", "backup") for shape in PG}
    jobs.update(
        {
            "missing_at": ("pg_at", "secrets_t.nope", "backup"),
            "missing_query": ("pg_query", "secrets_t.nope", "backup"),
            "wrong_pw": ("pg_wrong", "secrets_t.events", "backup"),
            "via_sftp_pw": ("pg_colon", "secrets_t.events", "sftp_pw"),
            "via_sftp_key": ("pg_space", "secrets_t.events", "sftp_key"),
        }
    )
    for name, (source, table, dest) in jobs.items():
        lines += [
            f"[jobs.{name}]",
            f"source = {toml(source)}",
            f"table = {toml(table)}",
            f"destination = {toml(dest)}",
            "",
        ]
    cmd_script = 'cat > "$1"; echo "token $2 was refused" >&2; exit 1'
    lines += [
        "[alerts]",
        'channels = ["mail", "hook", "cmd"]',
        "[alerts.mail]",
        'type = "email"',
        f"host = {toml(smtp.host)}",
        f"port = {smtp.port}",
        'security = "none"',
        'user = "alerts"',
        f'password = "${{file:{secrets_dir / "smtp"}}}"',
        'from = "tableship@example.net"',
        'to = ["ops@example.net"]',
        "retries = { attempts = 1 }",
        "[alerts.hook]",
        'type = "webhook"',
        f"url = {toml(hook.url + '/hook')}",
        f"headers = {{ Authorization = {toml(WEBHOOK_TOKEN)} }}",
        "retries = { attempts = 1 }",
        "[alerts.cmd]",
        'type = "command"',
        f'argv = ["/bin/sh", "-c", {toml(cmd_script)}, "sh", {toml(str(site / "cmd-body.txt"))}, '
        f'"${{file:{secrets_dir / "token"}}}"]',
        "retries = { attempts = 1 }",
        "",
    ]
    cfg = site / "tableship.toml"
    cfg.write_text("\n".join(lines))
    try:
        yield cfg, site, [remote_pw, remote_key], smtp, hook
    finally:
        hook.stop()


def tableship(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TABLESHIP_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "tableship", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=cfg.parent,
    )


def dump_databases(folder: Path) -> dict[str, str]:
    out = {}
    for db in sorted(folder.rglob("*.db*")):
        if db.is_file() and not db.name.endswith(("-wal", "-shm", "-journal")):
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                out[f"sqlite dump {db.relative_to(folder)}"] = "\n".join(con.iterdump())
            finally:
                con.close()
    return out


def text_files(folder: Path, label: str, skip_suffixes=(".gz", ".zst", ".db", ".duckdb")) -> dict[str, str]:
    return {
        f"{label} {p.relative_to(folder)}": p.read_bytes().decode("utf-8", "replace")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and not p.name.endswith(skip_suffixes)
        and ".db" not in p.name
        and p.name != "tableship.toml"
    }  # the config holds them, of course


def test_no_secret_in_any_output(matrix, sshd):
    cfg, site, remotes, smtp, hook = matrix
    outputs: dict[str, str] = {}

    def cli(label: str, *args: str, rc: int | None = None) -> subprocess.CompletedProcess:
        proc = tableship(cfg, *args)
        outputs[f"{label}: stdout"] = proc.stdout
        outputs[f"{label}: stderr"] = proc.stderr
        if rc is not None:
            assert proc.returncode == rc, f"{label}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    cli("config validate", "config", "validate", rc=0)
    cli("dry run", "run", "--all", "--dry-run", *WINDOW)  # the missing tables fail here already
    run = cli("run --all", "run", "--all", *WINDOW, rc=1)
    # every password reached its server intact: the jobs that should succeed did
    for job in [f"ok_{s}" for s in PG] + ["via_sftp_pw", "via_sftp_key"]:
        assert re.search(rf"^{job}\b[^:\n]*: OK,", run.stdout, re.M), (job, run.stdout, run.stderr)
    assert "wrong_pw" in run.stdout and "missing_at" in run.stdout
    cli("debug run", "--debug", "-v", "run", "missing_at", "missing_query", "wrong_pw", *WINDOW, rc=1)
    cli(
        "json run",
        "--log-format",
        "json",
        "-v",
        "run",
        "missing_at",
        "wrong_pw",
        "via_sftp_pw",
        *WINDOW,
        rc=1,
    )
    cli("status", "status")
    cli("status --json", "status", "--json")
    cli("history", "history", "--json")
    cli("ls", "ls", "--json")
    cli("verify", "verify", "--all")
    cli("check sftp_pw", "check-destination", "sftp_pw", rc=0)
    cli("check sftp_key", "check-destination", "sftp_key", rc=0)

    smtp.wait_for_messages(1)
    outputs.update({f"email {i}": m.raw.decode("utf-8", "replace") for i, m in enumerate(smtp.messages)})
    assert hook.requests, "the webhook got no alert"
    outputs.update(
        {f"webhook body {i}": r["body"].decode("utf-8", "replace") for i, r in enumerate(hook.requests)}
    )
    assert (site / "cmd-body.txt").is_file(), "the command channel got no alert"
    outputs.update(text_files(site, "site"))  # log file, status file, metrics, command body, manifests
    outputs.update(dump_databases(site / "state"))
    for i, remote in enumerate(remotes):
        outputs.update(text_files(remote, f"sftp remote {i}"))
    assert any(k.endswith(".manifest.json") for k in outputs) and any("sqlite dump" in k for k in outputs)
    assert any(k.endswith("tableship.core.log") for k in outputs) and any(
        "status.properties" in k for k in outputs
    )
    assert any("json run" in k and '"level"' in v for k, v in outputs.items())
    # the redactor had work to do: the command channel's stderr echo was masked
    assert any("token *** was refused" in v for v in outputs.values())

    leaks = []
    for what, secret in all_secrets(sshd).items():
        needles = {secret, quote(secret, safe=""), *fragments(secret)}
        for label, text in outputs.items():
            for needle in needles:
                at = text.find(needle)
                if at >= 0:
                    leaks.append(f"{what} ({needle!r}) in {label}: …{text[max(0, at - 60) : at + 60]!r}…")
                    break
    assert not leaks, "\n".join(leaks[:40])
