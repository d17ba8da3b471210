"""Every failure of the SFTP destination as one line with its fix, and the typed classes
``check()`` sorts them by (no message text is ever matched).

``Where`` knows the destination's names (host, user, root, config keys); ``translate`` turns an
asyncssh / OS exception into a ``DestinationError`` (terminal) or ``TransientDestinationError``
(the next call reconnects), or None for what must propagate untouched (signals).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from tableship.core.errors import (
    ConfigError,
    DestinationError,
    Interrupted,
    TableshipError,
    TransientDestinationError,
)
from tableship.core.units import human_size
from tableship.destinations.base import escape_error


class HostKeyError(DestinationError):
    """The server's host key is unknown, changed, or could not be recorded."""


class AuthError(DestinationError):
    """The server refused every credential offered."""


class RootError(DestinationError):
    """The destination root is missing, not a folder, or not reachable as this user."""


def fingerprint(key: asyncssh.SSHKey) -> str:
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"


#: What asyncssh's host key callback saw: (kind, offered key, error raised while recording it).
#: kind: "unknown" (no entry for the host), "changed" (other keys), "unrecorded" (accept-new failed).
HostKeyProblem = tuple[str, asyncssh.SSHKey | None, DestinationError | None]


@dataclass(frozen=True)
class Where:
    """The names an error line needs (none of them secret)."""

    name: str
    host: str
    port: int
    user: str
    root: str
    known_hosts: Path
    key_file: str | None
    password: bool

    @property
    def host_spec(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def login(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    # -- terminal errors with their fix
    def no_root(self) -> RootError:
        return RootError(
            f"destination {self.name!r}: remote folder {self.root} does not exist on {self.host}",
            f"create it on the backup host (mkdir -p {self.root}, writable by {self.user}) or fix "
            f"destinations.{self.name}.path; tableship never creates the root folder",
        )

    def root_not_a_folder(self) -> RootError:
        return RootError(
            f"destination {self.name!r}: remote path {self.root} on {self.host} is not a folder",
            f"fix destinations.{self.name}.path",
        )

    def no_sha256sum(self) -> DestinationError:
        return DestinationError(
            f"destination {self.name!r}: {self.user} may not run sha256sum on {self.host} "
            '(verify = "sha256sum")',
            'set verify = "auto" or "read-back" (reads the file back over SFTP to hash it)',
        )

    def denied(
        self, doing: str, path: str, cls: type[DestinationError] = DestinationError
    ) -> DestinationError:
        return cls(
            f"destination {self.name!r}: permission denied {doing} {path} on {self.host} as {self.user}",
            f"make {self.root} and its subfolders writable by {self.user} on the backup host, "
            f"or fix destinations.{self.name}.path",
        )

    def transient(self, what: str, why: str) -> TransientDestinationError:
        return TransientDestinationError(
            f"destination {self.name!r}: {what}: {why} ({self.login})",
            f"check that {self.host} and its sshd are reachable "
            f"(ssh -p {self.port} {self.user}@{self.host}), then re-run to resume",
        )

    def disk_full(self, free: int, needed: int, folder: str) -> DestinationError:
        return DestinationError(
            f"destination {self.name!r}: remote disk full on {self.host}: {human_size(free)} free under "
            f"{folder}, {human_size(needed)} needed",
            f"free space on the backup host's filesystem (or point destinations.{self.name}.path elsewhere), "
            "then re-run to resume",
        )

    def escape(self, path: str, real: str) -> DestinationError:
        return escape_error(self.name, path, self.root, real, where=f" on {self.host}")

    def host_key(self, problem: HostKeyProblem | None) -> DestinationError:
        kind, key, recorded = problem or ("unknown", None, None)
        if recorded is not None:
            return recorded
        offered = f" ({fingerprint(key)})" if key is not None else ""
        kh = str(self.known_hosts)
        keyscan = f"ssh-keyscan -p {self.port} {self.host} >> {kh}"
        if kind == "changed":
            return HostKeyError(
                f"destination {self.name!r}: the host key of {self.host_spec} has CHANGED: the server "
                f"offered {fingerprint(key) if key is not None else 'another key'}, "
                f"which does not match {kh}; "
                "this may be a man-in-the-middle attack",
                "if the backup host was re-installed or re-keyed, confirm the new fingerprint with its "
                f"admin, then ssh-keygen -R '{self.host_spec}' -f {kh} and {keyscan}",
            )
        return HostKeyError(
            f"destination {self.name!r}: the host key of {self.host_spec} is unknown{offered}: not in {kh}",
            f"confirm the fingerprint with the host's admin, then add it: {keyscan} "
            f'(or set host_key_policy = "accept-new")',
        )

    def auth_failed(self) -> AuthError:
        tried = (
            [f"key_file {self.key_file}"] if self.key_file else ["ssh-agent and default ~/.ssh keys"]
        ) + (["password"] if self.password else [])
        return AuthError(
            f"destination {self.name!r}: authentication failed for {self.login} "
            f"(tried {' and '.join(tried)})",
            f"check destinations.{self.name}.user and key_file: its public key must be in "
            f"~{self.user}/.ssh/authorized_keys on {self.host}",
        )

    # -- the translation of everything else
    def translate(
        self, exc: BaseException, what: str, host_key: HostKeyProblem | None = None
    ) -> TableshipError | None:
        """The error line for ``exc`` raised while doing ``what``; None: let it propagate."""
        if isinstance(exc, (Interrupted, KeyboardInterrupt, SystemExit, GeneratorExit)):
            return None
        if isinstance(exc, asyncio.CancelledError):
            return self.transient(what, "cancelled")
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return self.host_key(host_key)
        if isinstance(exc, asyncssh.PermissionDenied):
            return self.auth_failed()
        if isinstance(exc, asyncssh.SFTPPermissionDenied):
            return DestinationError(
                f"destination {self.name!r}: permission denied {what} on {self.host} as {self.user}",
                f"make {self.root} and its subfolders writable by {self.user} on the backup host",
            )
        if isinstance(exc, asyncssh.SFTPNoSuchFile):
            return DestinationError(
                f"destination {self.name!r}: {what}: no such file or folder on {self.host}",
                "check that nothing else removes files in the destination folder, then re-run",
            )
        if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection, asyncssh.ConnectionLost)):
            return self.transient(what, "connection lost")
        if isinstance(exc, asyncssh.ChannelOpenError):
            return self.transient(what, f"channel refused ({exc.reason})")
        if isinstance(exc, asyncssh.SFTPError):
            return DestinationError(
                f"destination {self.name!r}: {what}: the server said {exc.reason!r}",
                f"check the remote filesystem under {self.root} (free space, quota, permissions)",
            )
        if isinstance(exc, (asyncssh.KeyImportError, asyncssh.KeyEncryptionError)):
            return DestinationError(
                f"destination {self.name!r}: cannot use an SSH key: {exc}",
                f"check destinations.{self.name}.key_file and ~/.ssh",
            )
        if isinstance(exc, asyncssh.DisconnectError):  # protocol errors, server shutdown, kex failure
            return self.transient(what, f"disconnected: {exc.reason}")
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError, socket.timeout)):
            return self.transient(what, "timed out")
        if isinstance(exc, socket.gaierror):
            return self.transient(what, f"cannot resolve host name {self.host!r} ({exc.strerror})")
        if isinstance(exc, ConnectionRefusedError):
            return self.transient(what, "connection refused")
        if isinstance(exc, ConnectionResetError):
            return self.transient(what, "connection reset")
        if isinstance(exc, (BrokenPipeError, ConnectionError, EOFError)):
            return self.transient(what, "connection closed")
        if isinstance(exc, OSError):
            return self.transient(what, exc.strerror or str(exc))
        if isinstance(exc, ConfigError):
            return exc
        return DestinationError(
            f"destination {self.name!r}: {what}: unexpected {type(exc).__name__}: {exc}",
            "re-run with --debug and report it",
        )
