"""The SSH session: credentials, ``known_hosts`` and the connection options.

- **Host key.** ``known_hosts`` (OpenSSH format, hashed entries and ``[host]:port`` included)
  is matched by asyncssh. A key it does not trust is reported as *unknown* (no entry for the
  host) or *changed* (the host has other keys): a terminal ``HostKeyError`` with the
  ``ssh-keyscan`` / ``ssh-keygen -R`` hint. ``host_key_policy = "accept-new"`` records the
  first key of an unknown host in ``known_hosts`` and still refuses a changed one.
- **Auth.** ``key_file`` alone when set (like ``IdentitiesOnly``), else the SSH agent, then
  the default ``~/.ssh`` keys; ``password`` optionally (never logged).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import asyncssh

from tableship.core.errors import DestinationError
from tableship.destinations.sftp.errors import HostKeyError, HostKeyProblem, Where, fingerprint

log = logging.getLogger("tableship.sftp")

#: Cipher preference: AES-GCM runs on AES-NI through OpenSSL and is the fastest here;
#: the others keep compatibility with servers that disable GCM.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
#: SSH channel window and packet size we advertise (helps read-back throughput).
WINDOW = 16 * 2**20
MAX_PACKET = 256 * 1024


class _Client(asyncssh.SSHClient):
    """Called by asyncssh only for a host key that ``known_hosts`` does not trust."""

    def __init__(self, session: Session):
        self.session = session

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self.session.untrusted_host_key(host, addr, port, key)


class Session:
    """Opens authenticated connections to one destination's server."""

    def __init__(self, where: Where, cfg: Any):
        self.where = where
        self.cfg = cfg
        #: set by the host key callback of the last connection attempt, read by ``Where.host_key``
        self.host_key_problem: HostKeyProblem | None = None
        self.cipher: str | None = None

    @property
    def known_hosts(self) -> Path:
        return self.where.known_hosts

    def key_options(self) -> dict[str, Any]:
        name, cfg = self.where.name, self.cfg
        opts: dict[str, Any] = {}
        if cfg.key_file is not None:
            path = Path(cfg.key_file).expanduser()
            if not path.is_file():
                raise DestinationError(
                    f"destination {name!r}: key_file {str(path)!r} does not exist",
                    f"fix destinations.{name}.key_file (or remove it to use the SSH agent "
                    "and the default ~/.ssh keys)",
                )
            try:
                try:
                    passphrase = cfg.key_passphrase.get_secret_value() if cfg.key_passphrase else None
                    key = asyncssh.read_private_key(str(path), passphrase)
                except asyncssh.KeyImportError as exc:
                    # asyncssh has no class of its own for "encrypted, no passphrase given"
                    if "passphrase" in str(exc).lower():
                        raise asyncssh.KeyEncryptionError(str(exc)) from None
                    raise
            except asyncssh.KeyEncryptionError:
                if cfg.key_passphrase is not None:
                    raise DestinationError(
                        f"destination {name!r}: key_passphrase does not decrypt key_file {str(path)!r}",
                        f"fix destinations.{name}.key_passphrase (e.g. ${{file:/path}})",
                    ) from None
                raise DestinationError(
                    f"destination {name!r}: key_file {str(path)!r} is protected by a passphrase",
                    f"set destinations.{name}.key_passphrase, load the key into ssh-agent "
                    "and remove key_file, or use a key without a passphrase",
                ) from None
            except (asyncssh.KeyImportError, ValueError, OSError) as exc:
                raise DestinationError(
                    f"destination {name!r}: key_file {str(path)!r} is not a usable private key ({exc})",
                    f"point destinations.{name}.key_file at an OpenSSH private key",
                ) from None
            opts["client_keys"] = [key]
            opts["agent_path"] = None
        else:
            opts["ignore_encrypted"] = True  # default keys / agent, like ssh(1)
        if cfg.password is not None:
            opts["password"] = cfg.password.get_secret_value()
        else:
            opts["password_auth"] = False
            opts["kbdint_auth"] = False
        return opts

    def known_hosts_arg(self) -> Any:
        if self.known_hosts.is_file():
            try:
                return asyncssh.read_known_hosts(str(self.known_hosts))
            except (OSError, ValueError) as exc:
                raise DestinationError(
                    f"destination {self.where.name!r}: cannot read known_hosts "
                    f"{str(self.known_hosts)!r}: {exc}",
                    f"fix the file or destinations.{self.where.name}.known_hosts",
                ) from None
        # No file: every host is unknown. (An empty *object*, not b"": asyncssh would
        # silently fall back to ~/.ssh/known_hosts for a falsy value.)
        return asyncssh.import_known_hosts("")

    def untrusted_host_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        known: list = []
        if self.known_hosts.is_file():
            try:
                known = list(
                    asyncssh.match_known_hosts(
                        str(self.known_hosts), host, addr, port if port != 22 else None
                    )[0]
                )
            except (OSError, ValueError):
                known = []
        if known:
            self.host_key_problem = ("changed", key, None)
            return False
        if self.cfg.host_key_policy == "accept-new":
            try:
                self.record_host_key(key)
            except DestinationError as exc:  # raised inside asyncssh: report it after connect fails
                self.host_key_problem = ("unrecorded", key, exc)
                return False
            return True
        self.host_key_problem = ("unknown", key, None)
        return False

    def record_host_key(self, key: asyncssh.SSHKey) -> None:
        alg, b64 = key.export_public_key("openssh").decode().split()[:2]
        line = f"{self.where.host_spec} {alg} {b64}\n"
        try:
            self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(line)
        except OSError as exc:
            raise HostKeyError(
                f"destination {self.where.name!r}: cannot record the host key in "
                f"{str(self.known_hosts)!r}: {exc.strerror}",
                "make known_hosts writable or add the key with ssh-keyscan",
            ) from None
        log.warning(
            "destination %s: recorded the new host key of %s (%s) in %s (host_key_policy = accept-new)",
            self.where.name,
            self.where.host_spec,
            fingerprint(key),
            self.known_hosts,
        )

    async def connect(self) -> asyncssh.SSHClientConnection:
        """A new authenticated connection (host key checked); asyncssh's errors propagate."""
        opts = self.key_options()
        self.host_key_problem = None
        cfg = self.cfg
        conn = await asyncssh.connect(
            self.where.host, self.where.port,
            username=self.where.user,
            known_hosts=self.known_hosts_arg(),
            client_factory=lambda: _Client(self),
            config=None,
            connect_timeout=cfg.connect_timeout,
            login_timeout=cfg.connect_timeout,
            keepalive_interval=max(5.0, cfg.connect_timeout),
            keepalive_count_max=3,
            encryption_algs=list(CIPHERS),
            compression_algs=["none"],  # archives are compressed already
            window=WINDOW,
            max_pktsize=MAX_PACKET,
            gss_auth=False,
            gss_kex=False,
            **opts,
        )  # fmt: skip
        self.cipher = conn.get_extra_info("send_cipher")
        return conn
