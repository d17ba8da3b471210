"""Opening a HiveServer2 session (impyla): the connect options of the config's auth and TLS
settings, the settings checked before anything is sent, a TCP probe, then the session.

An unreachable server is transient (retried); a refused handshake or session is not, and
its line says whose problem it is (``refused``). The password goes only into impyla's
``connect``; every message is cleaned (``errors.clean``).
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import socket
from collections.abc import Callable
from typing import Any

import impala.dbapi as _dbapi
from impala.error import Error as _ImpylaError
from thrift.Thrift import TException as _ThriftError
from thrift.transport.TTransport import TTransportException

from tableship.core.errors import ConfigError, SourceError, TransientSourceError
from tableship.core.names import check_identifier
from tableship.sources.hs2.errors import clean, refusal_is_auth

AUTH_MECHANISMS = {"nosasl": "NOSASL", "plain": "PLAIN", "ldap": "LDAP", "gssapi": "GSSAPI"}

_OPTION_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def connect_kwargs(name: str, cfg) -> dict[str, Any]:
    """impyla ``connect``'s arguments for source ``name`` (a ConfigError when plain/ldap
    lack the user or password)."""
    kw: dict[str, Any] = dict(
        host=cfg.host,
        port=cfg.effective_port,
        timeout=cfg.timeout,
        auth_mechanism=AUTH_MECHANISMS[cfg.auth],
        use_ssl=cfg.use_ssl,
    )
    if cfg.use_ssl:
        if cfg.ca_cert is not None:
            kw["ca_cert"] = str(cfg.ca_cert)
        if "verify_cert" in inspect.signature(_dbapi.connect).parameters:
            kw["verify_cert"] = True  # without ca_cert: the system's trusted CAs
    if cfg.auth in ("plain", "ldap"):
        if not cfg.user or cfg.password is None:
            raise ConfigError(
                f"sources.{name}: auth = {cfg.auth!r} needs 'user' and 'password'",
                'add them to the source (password = "${ENV_VAR}" keeps it out of the file)',
            )
        kw["user"] = cfg.user
        kw["password"] = cfg.password.get_secret_value()
    elif cfg.user:
        kw["user"] = cfg.user
    if cfg.auth == "gssapi":
        kw["kerberos_service_name"] = cfg.kerberos_service_name or (
            "impala" if cfg.type == "impala" else "hive"
        )
    return kw


def check_settings(name: str, cfg, where: str) -> None:
    """What the session will send, checked before connecting: ``query_options`` plain names
    and values (they are sent as ``SET k=v``), the database a valid identifier, the
    Kerberos package present for ``gssapi``."""
    for k, v in cfg.query_options.items():
        if not _OPTION_KEY.match(str(k)) or any(c in str(v) for c in ";\r\n`'\""):
            raise ConfigError(
                f"sources.{name}.query_options: {k!r} = {v!r} is not a plain option name and value",
                "use option names like MEM_LIMIT and values without quotes, ';' or line breaks",
            )
    if cfg.database:
        try:
            check_identifier(cfg.database, "database")
        except ValueError as exc:
            raise ConfigError(f"sources.{name}.database: {exc}") from None
    if cfg.auth == "gssapi" and importlib.util.find_spec("kerberos") is None:
        raise SourceError(
            f"{where}: auth = 'gssapi' needs the Python package 'kerberos', which is not installed",
            "pip install kerberos (it builds against the system's Kerberos libraries, e.g. libkrb5-dev)",
        )


def probe(cfg, where: str, secrets: list[str]) -> None:
    """TCP connect first: an unreachable server is transient, a refused handshake is not."""
    try:
        with socket.create_connection((cfg.host, cfg.effective_port), timeout=cfg.timeout):
            pass
    except OSError as exc:
        what = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else clean(exc, secrets)
        raise TransientSourceError(
            f"{where}: cannot connect: {what}",
            "check that the server is up and reachable from this host (host, port, firewall)",
        ) from None


def open_session(cfg, kw: dict[str, Any], where: str, secrets: list[str]) -> tuple[Any, Any]:
    """(connection, cursor) of a new session opened with ``connect_kwargs``' ``kw``;
    driver errors become a ``SourceError`` (a timeout: ``TransientSourceError``)."""
    try:
        conn = _dbapi.connect(**kw)
        try:
            cur = conn.cursor(user=cfg.user, convert_types=False, convert_strings_to_unicode=False)
        except BaseException:
            quietly(conn.close)
            raise
    except TimeoutError as exc:
        raise TransientSourceError(
            f"{where}: timed out opening a session", "check the server's load; raise timeout"
        ) from exc
    except TTransportException as exc:
        if exc.type == TTransportException.TIMED_OUT:
            raise TransientSourceError(
                f"{where}: timed out opening a session: {clean(exc, secrets)}"
            ) from None
        raise refused(cfg, where, exc, secrets) from None
    except (_ImpylaError, _ThriftError, OSError, ImportError, ValueError, EOFError) as exc:
        raise refused(cfg, where, exc, secrets) from None
    return conn, cur


def refused(cfg, where: str, exc: BaseException, secrets: list[str]) -> SourceError:
    """The one line of a refused connect or OpenSession, quoting the server's reason. The
    auth settings are named only when the reason is about authentication
    (``errors.refusal_is_auth``); any other reason is the server's to fix."""
    reason = clean(exc, secrets)
    if refusal_is_auth(exc):
        mech = AUTH_MECHANISMS[cfg.auth]
        return SourceError(
            f"{where}: the server refused the connection handshake (auth = {cfg.auth!r}, "
            f"mechanism {mech}{', TLS' if cfg.use_ssl else ''}): {reason}",
            "check that auth matches the server's authentication (NOSASL vs SASL PLAIN/LDAP vs Kerberos), "
            "the user and password, and use_ssl",
        )
    # The handshake (and with it any SASL authentication) went through: the server itself
    # could not set the session up (its folders, its metastore, impersonation, a setting).
    return SourceError(
        f"{where}: the server could not open a session: {reason}",
        "that reason is the server's own, not a login failure: see the HiveServer2 / Impala "
        "server's log and configuration, then re-run",
    )


def quietly(fn: Callable[[], Any]) -> None:
    """Call ``fn`` (a close), ignoring its errors."""
    try:
        fn()
    except Exception:  # closing must never hide the real outcome
        pass
