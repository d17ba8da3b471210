"""Smoke tests for the real-server fixtures in tests/servers."""

from __future__ import annotations

import email.message
import smtplib
import socket
import ssl
import subprocess

import pytest
from tests.servers import ensure_module, wait_for

# --------------------------------------------------------------------------
# sshd
# --------------------------------------------------------------------------


def _ssh(sshd, *command: str, user: str | None = None, timeout: float = 30):
    return subprocess.run(
        [*sshd.ssh_args(user=user), *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sshd_root_can_run_a_command(sshd):
    proc = _ssh(sshd, "echo", "ok")
    assert proc.returncode == 0, proc.stderr + sshd.log_tail()
    assert proc.stdout.strip() == "ok"
    assert sshd.known_hosts.read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    assert sshd.root_dir.is_dir()


def test_sshd_sftp_only_user_cannot_run_a_command_but_can_sftp(sshd):
    proc = _ssh(sshd, "echo", "ok", user=sshd.sftp_user)
    assert "ok" not in proc.stdout

    paramiko = ensure_module("paramiko")
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        sshd.host,
        port=sshd.port,
        username=sshd.sftp_user,
        key_filename=str(sshd.sftp_user_key),
        look_for_keys=False,
        allow_agent=False,
        timeout=15,
    )
    try:
        with client.open_sftp() as sftp:
            with sftp.open(str(sshd.sftp_root_dir / "hello.txt"), "w") as f:
                f.write("hi")
        assert (sshd.sftp_root_dir / "hello.txt").read_text() == "hi"
    finally:
        client.close()


def test_sshd_kill_sessions_stop_and_start(sshd_fresh):
    sshd = sshd_fresh
    paramiko = ensure_module("paramiko")
    listener = sshd.pid

    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        sshd.host, port=sshd.port, username=sshd.user, key_filename=str(sshd.client_key),
        look_for_keys=False, allow_agent=False, timeout=15,
    )  # fmt: skip
    try:
        transport = client.get_transport()
        assert transport is not None and transport.is_active()
        assert sshd.kill_sessions(), "expected a per-connection sshd child"
        wait_for(lambda: not transport.is_active(), 30, "the killed session to close the transport")
    finally:
        client.close()
    assert sshd.pid == listener  # the listener survived

    sshd.stop()
    assert not sshd.running
    with pytest.raises(OSError):
        socket.create_connection((sshd.host, sshd.port), timeout=2).close()
    sshd.start()
    assert sshd.wait_ready(5)
    proc = _ssh(sshd, "echo", "again")
    assert proc.stdout.strip() == "again", proc.stderr


# --------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------


def _message(subject: str = "hello") -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = "tableship@example.test"
    msg["To"] = "ops@example.test"
    msg["Subject"] = subject
    msg.set_content("backup done\n")
    return msg


def test_smtp_plain(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as s:
        s.send_message(_message("plain"))
    (got,) = smtp_server.wait_for_messages(1)
    assert got.mail_from == "tableship@example.test"
    assert got.rcpt_tos == ("ops@example.test",)
    assert got.message["Subject"] == "plain"
    assert got.message.get_content() == "backup done\n"
    smtp_server.clear()
    assert smtp_server.messages == []


def test_smtp_starttls_and_auth(smtp_factory):
    srv = smtp_factory(starttls=True, auth=("mailer", "s3cret"))
    assert srv.cafile is not None
    ctx = ssl.create_default_context(cafile=str(srv.cafile))
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
        s.starttls(context=ctx)
        s.login("mailer", "s3cret")
        s.send_message(_message("tls+auth"))
    assert srv.wait_for_messages(1)[0].subject == "tls+auth"

    # STARTTLS is required before MAIL
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPException):
            s.send_message(_message("no tls"))


def test_smtp_auth_without_tls_and_wrong_password(smtp_factory):
    srv = smtp_factory(auth=("mailer", "s3cret"))
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("mailer", "wrong")
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
        s.login("mailer", "s3cret")
        s.send_message(_message("auth"))
    assert srv.wait_for_messages(1)[0].subject == "auth"
    # AUTH is required before MAIL
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPException):
            s.send_message(_message("anonymous"))


def test_smtp_reject(smtp_factory):
    srv = smtp_factory(reject=True)
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.send_message(_message("rejected"))
    assert info.value.smtp_code == 554
    assert srv.messages == []


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def test_postgres_select_1(postgres):
    sqlalchemy = ensure_module("sqlalchemy")
    assert postgres.url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/warehouse"
    engine = sqlalchemy.create_engine(postgres.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
            assert conn.execute(sqlalchemy.text("SELECT current_database()")).scalar() == "warehouse"
    finally:
        engine.dispose()


# --------------------------------------------------------------------------
# HiveServer2
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_hs2_select_1_and_tables(hs2):
    from impala.dbapi import connect

    conn = connect(host=hs2.host, port=hs2.port, auth_mechanism="NOSASL")
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]
    finally:
        conn.close()

    hs2.execute("CREATE TABLE IF NOT EXISTS smoke_events (id INT, day DATE, note STRING) USING parquet")
    hs2.execute("INSERT INTO smoke_events VALUES (1, DATE'2024-01-02', 'a'), (2, DATE'2024-01-03', 'b')")
    rows = hs2.execute("SELECT id, day, note FROM smoke_events ORDER BY id")
    assert [(r[0], str(r[1]), r[2]) for r in rows] == [(1, "2024-01-02", "a"), (2, "2024-01-03", "b")]
    hs2.execute("DROP TABLE smoke_events")


@pytest.mark.slow
def test_hs2_wrong_auth_mechanism_fails(hs2):
    from impala.dbapi import connect
    from thrift.transport.TTransport import TTransportException

    with pytest.raises(TTransportException):  # the NOSASL server drops the SASL handshake
        conn = connect(
            host=hs2.host, port=hs2.port, auth_mechanism="PLAIN", user="u", password="p", timeout=20
        )
        conn.cursor().execute("SELECT 1")


@pytest.mark.slow
def test_hs2_sasl_plain(hs2_sasl):
    from impala.dbapi import connect
    from thrift.transport.TTransport import TTransportException

    assert hs2_sasl.auth_mechanism == "PLAIN"
    assert hs2_sasl.execute("SELECT 1") == [(1,)]
    with pytest.raises(TTransportException):  # the SASL server drops a plain (NOSASL) client
        conn = connect(host=hs2_sasl.host, port=hs2_sasl.port, auth_mechanism="NOSASL", timeout=20)
        conn.cursor().execute("SELECT 1")
