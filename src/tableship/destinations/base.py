"""The Destination contract and the registry of destination types.

Names are POSIX paths relative to the destination root (``remote_dir/file_name``),
already checked by :func:`tableship.core.names.check_relative`; implementations check again
and never touch anything outside their root.

Contract (tests/contract/test_destinations.py runs it against every implementation):

- ``put(local, name, owner)`` uploads a local file: writes ``.<basename>.tableship-<owner>-<random>.part``
  in the target folder (folders created as needed), makes it durable, renames it over
  ``name``. A reader never sees a partial file under a final name.
- ``put_bytes(data, name, owner)``: the same for a small in-memory payload (sidecars).
- ``get(name, local)``: download ``name`` to the local path (written via temp + rename).
- ``sha256(name)``: a :class:`Digest` of the remote bytes — the hex digest and how it was
  computed ("sha256sum", "read-back", "local") — or None if ``name`` does not exist.
- ``size(name)``: bytes, or None if missing.
- ``list(folder)``: names (relative to the root) of the files directly in ``folder``,
  temporaries excluded; [] if the folder does not exist.
- ``delete(name)``: remove; missing is not an error.
- ``cleanup(folder, owner)``: remove this owner's stale temporaries in ``folder``; returns them.
- ``check()``: list of (check name, ok, detail) for ``check-destination``.
- ``close()``: idempotent.

Errors are TransientDestinationError (retry may help) or DestinationError (terminal);
driver exceptions never escape.
"""

from __future__ import annotations

import builtins  # `list` is also a method name in the classes below
import re
import secrets
from pathlib import Path, PurePosixPath
from typing import NamedTuple, Protocol, runtime_checkable

from tableship.core.errors import ConfigError, DestinationError
from tableship.core.names import check_relative
from tableship.core.plugins import instantiate

TMP_RE = re.compile(r"^\.(?P<base>.+)\.tableship-(?P<owner>[A-Za-z0-9_.-]+)-[0-9a-f]{8}\.part$")


def temp_name(name: str, owner: str) -> str:
    """``a/b.csv.gz`` → ``a/.b.csv.gz.tableship-<owner>-<hex>.part`` (same folder)."""
    p = PurePosixPath(name)
    return str(p.with_name(f".{p.name}.tableship-{owner}-{secrets.token_hex(4)}.part"))


def escape_error(name: str, path: object, root: object, real: str, where: str = "") -> DestinationError:
    """The error for a symlink on the way to a name that leads out of the destination's root."""
    return DestinationError(
        f"destination {name!r}: {path}{where} is a symlink leading out of the destination root "
        f"{root} (to {real}); nothing is written, read or deleted through it",
        f"replace the symlink by a real folder{where} (or point destinations.{name}.path at the "
        "real location)",
    )


def is_temp(basename: str, owner: str | None = None) -> bool:
    m = TMP_RE.match(basename)
    return m is not None and (owner is None or m.group("owner") == owner)


def safe_name(name: str) -> str:
    try:
        clean = check_relative(name, "destination path")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not clean:
        raise ConfigError(f"empty destination path {name!r}")
    return clean


class Digest(NamedTuple):
    """What ``Destination.sha256`` found: the hex sha256 and how it was computed."""

    hex: str
    method: str  # "sha256sum" (run on the backup host), "read-back" (read over the wire), "local"
    # local: the file's stamp (``LocalDestination.stamp``) taken before it was read; a later
    # equal stamp means no write reached the file since this sha256 (None elsewhere)
    stamp: str | None = None


def digest_hex(digest: Digest | None) -> str | None:
    """The hex sha256 of what ``Destination.sha256`` found (None: the name is missing)."""
    return digest.hex if digest is not None else None


@runtime_checkable
class Destination(Protocol):
    name: str

    def put(self, local: Path, name: str, owner: str) -> None: ...

    def put_bytes(self, data: bytes, name: str, owner: str) -> None: ...

    def get(self, name: str, local: Path) -> None: ...

    def sha256(self, name: str) -> Digest | None: ...

    def size(self, name: str) -> int | None: ...

    def list(self, folder: str) -> list[str]: ...

    def delete(self, name: str) -> None: ...

    def cleanup(self, folder: str, owner: str) -> builtins.list[str]: ...

    def check(self) -> builtins.list[tuple[str, bool, str]]: ...

    def close(self) -> None: ...


REGISTRY = {
    "local": ("tableship.destinations.local", "LocalDestination", None, None),
    "sftp": ("tableship.destinations.sftp", "SFTPDestination", "sftp", "asyncssh"),
}


def open_destination(name: str, cfg) -> Destination:
    """Instantiate the destination for config ``cfg`` (lazy-importing its driver)."""
    return instantiate("destination", REGISTRY, name, cfg)
