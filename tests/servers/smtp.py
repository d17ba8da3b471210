"""Real SMTP server fixtures (aiosmtpd) on 127.0.0.1.

``smtp_factory(starttls=False, auth=None, reject=False)`` returns a running
server of that variant (one per variant per session, messages cleared on each
call); ``smtp_server`` is the plain variant.

* ``starttls=True``: STARTTLS offered with a certificate for 127.0.0.1 signed
  by a throw-away CA (``.cafile``).  STARTTLS is then *required* before MAIL.
* ``auth=(user, password)``: AUTH PLAIN and LOGIN with those credentials, and
  AUTH is required before MAIL.  Without ``starttls`` AUTH is allowed in the
  clear; with it, AUTH is only offered after STARTTLS (like real servers).
* ``reject=True``: DATA is answered ``554 Transaction failed``.
"""

from __future__ import annotations

import datetime as _dt
import email
import email.policy
import ipaddress
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
from tests.servers import LOCALHOST, ensure_module, free_port, make_base_dir, remove_dir


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage

    @property
    def subject(self) -> str | None:
        return self.message["Subject"]


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    starttls: bool
    auth: tuple[str, str] | None
    reject: bool
    cafile: Path | None  # CA that signed the server cert (TLS variants)
    messages: list[ReceivedMessage] = field(compare=False)
    _controller: object = field(repr=False, compare=False)

    @property
    def username(self) -> str | None:
        return self.auth[0] if self.auth else None

    @property
    def password(self) -> str | None:
        return self.auth[1] if self.auth else None

    def clear(self) -> None:
        self.messages.clear()

    def wait_for_messages(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Messages, once at least ``count`` arrived (raises on timeout)."""
        import time

        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} message(s), got {len(self.messages)}")
            time.sleep(0.05)
        return list(self.messages)

    def stop(self) -> None:
        self._controller.stop()  # type: ignore[attr-defined]


def _make_cert(dirpath: Path) -> tuple[Path, Path, Path]:
    """A CA and a server cert for 127.0.0.1/localhost.  Returns
    (cafile, certfile, keyfile)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = _dt.datetime.now(_dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tableship test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOCALHOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOCALHOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cafile = dirpath / "ca.pem"
    certfile = dirpath / "server.pem"
    keyfile = dirpath / "server.key"
    cafile.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    keyfile.chmod(0o600)
    return cafile, certfile, keyfile


class _Handler:
    def __init__(self, messages: list[ReceivedMessage], reject: bool) -> None:
        self.messages = messages
        self.reject = reject
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        if self.reject:
            return "554 Transaction failed"
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        # Parse with native line endings (the wire format is CRLF).
        msg = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
        with self.lock:
            self.messages.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    raw=raw,
                    message=msg,  # type: ignore[arg-type]
                )
            )
        return "250 Message accepted for delivery"


def _authenticator(user: str, password: str):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


def _start(base: Path, starttls: bool, auth: tuple[str, str] | None, reject: bool) -> SmtpServer:
    ensure_module("aiosmtpd", "aiosmtpd>=1.4")
    from aiosmtpd.controller import Controller

    messages: list[ReceivedMessage] = []
    kwargs: dict = {}
    cafile = None
    if starttls:
        d = Path(tempfile.mkdtemp(prefix="tls-", dir=base))
        cafile, certfile, keyfile = _make_cert(d)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certfile, keyfile)
        kwargs.update(tls_context=ctx, require_starttls=True)
    if auth is not None:
        kwargs.update(
            authenticator=_authenticator(*auth),
            auth_required=True,
            auth_require_tls=starttls,
        )
    port = free_port()
    controller = Controller(
        _Handler(messages, reject),
        hostname=LOCALHOST,
        port=port,
        server_hostname="tableship-test-smtp",
        ready_timeout=10.0,
        **kwargs,
    )
    controller.start()
    return SmtpServer(
        host=LOCALHOST,
        port=port,
        starttls=starttls,
        auth=tuple(auth) if auth else None,  # type: ignore[arg-type]
        reject=reject,
        cafile=cafile,
        messages=messages,
        _controller=controller,
    )


SmtpFactory = Callable[..., SmtpServer]


@pytest.fixture(scope="session")
def _smtp_servers() -> Iterator[dict]:
    servers: dict = {}
    base = make_base_dir("smtp")
    try:
        yield {"servers": servers, "base": base}
    finally:
        for srv in servers.values():
            try:
                srv.stop()
            except Exception:
                pass
        remove_dir(base)


@pytest.fixture(scope="session")
def smtp_factory(_smtp_servers: dict) -> SmtpFactory:
    """``smtp_factory(starttls=False, auth=None, reject=False) -> SmtpServer``.

    One server per variant per session; each call clears its messages."""
    servers = _smtp_servers["servers"]

    def factory(
        starttls: bool = False,
        auth: tuple[str, str] | None = None,
        reject: bool = False,
    ) -> SmtpServer:
        key = (bool(starttls), tuple(auth) if auth else None, bool(reject))
        if key not in servers:
            servers[key] = _start(_smtp_servers["base"], *key)
        srv = servers[key]
        srv.clear()
        return srv

    return factory


@pytest.fixture
def smtp_server(smtp_factory: SmtpFactory) -> SmtpServer:
    """The plain (no TLS, no AUTH, accepting) server, with no messages yet."""
    return smtp_factory()
