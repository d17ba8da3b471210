"""A refused HiveServer2 connect / OpenSession: the auth hint only for an authentication
failure, the server's own reason (cleaned, redacted, first line) quoted otherwise.

The server side of both kinds runs against the real Spark Thrift server in
tests/integration/test_hs2.py (test_wrong_auth_mechanism_fails_at_once,
test_sasl_plain_server, test_a_server_side_session_failure_quotes_the_server). The
messages below are the ones HiveServer2, Impala, thrift_sasl and Kerberos send.
"""

from __future__ import annotations

import ssl

import pytest
from impala.error import HiveServer2Error, NotSupportedError
from thrift.transport.TTransport import TTransportException

from tableship.config.models import HS2Source
from tableship.sources.hs2.errors import refusal_is_auth
from tableship.sources.hs2.session import refused

WHERE = "source 'warehouse' (hive at hs2.example.net:10000)"
PASSWORD = "s3cret-Pa55"

AUTH = [
    TTransportException(message="TSocket read 0 bytes"),  # wrong mechanism: the server hangs up
    TTransportException(),  # nothing said at all
    TTransportException(message="Bad status: 3 (b'Error validating the login')"),  # thrift_sasl
    TTransportException(message="Could not start SASL: b'Error in sasl_client_start (-4) SASL(-4)'"),
    ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),  # use_ssl vs a plain server
    EOFError(),
    HiveServer2Error("Peer indicated failure: Error validating the login"),
    HiveServer2Error("Failed to open new session: javax.security.sasl.SaslException: PLAIN auth failed"),
    HiveServer2Error("Failed to open new session: Authentication failed for user svc_backup"),
    HiveServer2Error("Invalid username or password"),
    HiveServer2Error("Failed to open new session: GSS initiate failed"),
    HiveServer2Error(
        "Failed to open new session: org.ietf.jgss.GSSException: No valid credentials provided "
        "(Mechanism level: Failed to find any Kerberos tgt)"
    ),
    HiveServer2Error("LDAP: error code 49 - Invalid Credentials"),
]

SERVER = [
    HiveServer2Error(
        "Failed to open new session: java.lang.RuntimeException: java.lang.RuntimeException: "
        "Couldn't create directory /tmp/hive-resources/38663e64_resources"
    ),
    # words of a path are not the reason (the test server's folder is named …-nosasl-…)
    HiveServer2Error(
        "Failed to open new session: java.lang.RuntimeException: Couldn't create directory "
        "/tmp/tableship-hs2-nosasl-7o7tzg16/tmp/hive-resources/d38419d9_resources"
    ),
    HiveServer2Error("Failed to open new session: cannot read /etc/kerberos/sasl-ldap-password.d/x.conf"),
    HiveServer2Error(
        "Failed to open new session: org.apache.spark.sql.catalyst.analysis.NoSuchNamespaceException: "
        "[SCHEMA_NOT_FOUND] The schema `spark_catalog`.`nosuchdb` cannot be found.\nIf you did not "
        "qualify the name with a catalog, verify the current_schema() output"
    ),
    # the server's own credentials (its metastore database), not the client's
    HiveServer2Error(
        "Failed to open new session: java.lang.RuntimeException: Unable to instantiate "
        "org.apache.hadoop.hive.ql.metadata.SessionHiveMetaStoreClient: Access denied for user "
        "'hive'@'localhost' (using password: YES)"
    ),
    HiveServer2Error(
        "Failed to open new session: java.lang.RuntimeException: "
        "org.apache.hadoop.ipc.RemoteException(org.apache.hadoop.security.authorize."
        "AuthorizationException): User: hive is not allowed to impersonate svc_backup"
    ),
    HiveServer2Error("Failed to open new session: Too many sessions for user svc_backup (limit 64)"),
]


def _cfg(**kw) -> HS2Source:
    return HS2Source.model_validate({"type": "hive", "host": "hs2.example.net", **kw})


@pytest.mark.parametrize("exc", AUTH, ids=lambda e: f"{type(e).__name__}:{str(e)[:40]}")
def test_authentication_failures_are_classified_as_such(exc):
    assert refusal_is_auth(exc)


@pytest.mark.parametrize("exc", SERVER, ids=lambda e: str(e)[28:70])
def test_other_server_reasons_are_the_servers_own(exc):
    assert not refusal_is_auth(exc)


def test_impylas_own_refusal_keeps_the_handshake_line():
    # raised by impyla before anything reaches the server (e.g. a mechanism it cannot use)
    assert refusal_is_auth(NotSupportedError("Unsupported authentication mechanism: GSSAPI"))


def test_an_auth_failure_names_the_auth_settings():
    cfg = _cfg(auth="plain", user="svc_backup", password=PASSWORD, use_ssl=True)
    err = refused(cfg, WHERE, TTransportException(message="TSocket read 0 bytes"), [PASSWORD])
    line = err.line()
    assert (
        "refused the connection handshake (auth = 'plain', mechanism PLAIN, TLS): TSocket read 0 bytes"
        in line
    )
    assert "check that auth matches" in line


def test_a_server_reason_is_quoted_without_the_auth_hint():
    cfg = _cfg(auth="nosasl")
    err = refused(cfg, WHERE, SERVER[0], [])
    line = err.line()
    assert line.startswith(WHERE)
    assert (
        "could not open a session: Couldn't create directory /tmp/hive-resources/38663e64_resources" in line
    )
    assert "java.lang" not in line and "Failed to open new session" not in line  # the wrappers go
    assert "handshake" not in line and "check that auth" not in line and "password" not in line
    assert "server's log and configuration" in line


def test_a_server_reason_keeps_only_its_first_line_and_no_secret():
    cfg = _cfg(auth="ldap", user="svc_backup", password=PASSWORD)
    exc = HiveServer2Error(
        f"Failed to open new session: could not write /srv/{PASSWORD}/scratch\n"
        "\tat org.apache.Foo.bar(Foo.java:1)"
    )
    line = refused(cfg, WHERE, exc, [PASSWORD]).line()
    assert PASSWORD not in line and "/srv/***/scratch" in line
    assert "Foo.java" not in line and "\n" not in line
    assert "check that auth" not in line
