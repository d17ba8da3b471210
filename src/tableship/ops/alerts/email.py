"""Email channel (smtplib): security none / starttls / ssl, optional AUTH.

Every message of one incident threads together: the first alert's ``Message-ID`` is
derived from the incident (``<tableship.<host>.<job>.<incident>@host>``) and the
reminders and the resolved message refer to it (``In-Reply-To`` / ``References``).
"""

from __future__ import annotations

import email.utils
import logging
import re
import smtplib
import ssl
from email.message import EmailMessage

from tableship.ops.alerts.errors import ChannelError

DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}


def _thread_id(event) -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "-", event.host) or "localhost"
    job = re.sub(r"[^A-Za-z0-9.-]", "-", event.job)
    return f"<tableship.{job}.incident-{event.incident_id}@{host}>"


def build_message(cfg, event) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = event.subject
    msg["From"] = cfg.from_
    msg["To"] = ", ".join(cfg.to)
    if cfg.cc:
        msg["Cc"] = ", ".join(cfg.cc)
    msg["Date"] = email.utils.formatdate(localtime=True)
    thread = _thread_id(event)
    if event.kind == "failed":
        msg["Message-ID"] = thread
    else:
        msg["Message-ID"] = email.utils.make_msgid("tableship")
        msg["In-Reply-To"] = thread
        msg["References"] = thread
    msg["X-Tableship-Event"] = event.kind
    msg["X-Tableship-Job"] = event.job
    msg["X-Tableship-Incident"] = event.dedup_key
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(event.text())
    return msg


def _context(cfg) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cfg.ca_cert) if cfg.ca_cert else None)


def send(name: str, cfg, event) -> None:
    msg = build_message(cfg, event)
    port = cfg.port or DEFAULT_PORTS[cfg.security]
    try:
        smtp: smtplib.SMTP
        if cfg.security == "ssl":
            smtp = smtplib.SMTP_SSL(cfg.host, port, timeout=cfg.timeout, context=_context(cfg))
        else:
            smtp = smtplib.SMTP(cfg.host, port, timeout=cfg.timeout)
        with smtp:
            smtp.ehlo()
            if cfg.security == "starttls":
                smtp.starttls(context=_context(cfg))
                smtp.ehlo()
            if cfg.user:
                smtp.login(cfg.user, cfg.password.get_secret_value() if cfg.password else "")
            refused = smtp.send_message(msg, to_addrs=[*cfg.to, *cfg.cc])
    except smtplib.SMTPAuthenticationError as exc:
        raise ChannelError(
            f"SMTP {cfg.host}:{port}: authentication failed ({exc.smtp_code})", transient=False
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise ChannelError(
            f"SMTP {cfg.host}:{port}: {exc} (check alerts.{name}.security)", transient=False
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise ChannelError(
            f"SMTP {cfg.host}:{port}: all recipients refused: {sorted(exc.recipients)}", transient=False
        ) from None
    except smtplib.SMTPResponseException as exc:
        text = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        raise ChannelError(
            f"SMTP {cfg.host}:{port}: {exc.smtp_code} {text}", transient=400 <= exc.smtp_code < 500
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise ChannelError(
            f"SMTP {cfg.host}:{port}: TLS certificate not trusted: {exc.verify_message} "
            f"(set alerts.{name}.ca_cert)",
            transient=False,
        ) from None
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise ChannelError(f"SMTP {cfg.host}:{port}: {type(exc).__name__}: {exc}") from None
    if refused:
        # some recipients were refused; the others got it: log, do not retry (that would duplicate)
        logging.getLogger("tableship").warning(
            "alert channel %s: recipients refused: %s", name, sorted(refused)
        )
