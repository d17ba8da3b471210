"""SFTP destination: atomic, verified delivery to a backup host over SSH.

Library choice (measured by ``bench/bench_sftp.py`` against OpenSSH's ``scp`` + remote
``sha256sum`` on 127.0.0.1, see docs/sftp.md): paramiko reaches 160-230 MB/s even with
pipelined 256 KiB writes and AES-GCM; asyncssh with AES-GCM and 32 pipelined full-size writes
keeps pace with ``scp`` on an idle host but needs about twice its CPU, so it falls behind on a
busy one. So: **asyncssh is the control connection** (host key, login, folders, rename,
verification, listing, cleanup, small files) and **large files are streamed by OpenSSH's
``sftp`` client** (``put -f``, AES-GCM, full-size requests) over a second connection that uses
the same ``known_hosts`` strictly and the same key — falling back to asyncssh when the ``sftp``
binary is missing or cannot log in (e.g. password-only accounts).

The pieces:

- ``destination`` — ``SFTPDestination``: the contract, paths and confinement, put/verify;
- ``session`` — credentials, ``known_hosts`` (unknown / changed / accept-new), connecting;
- ``bridge`` — the private event loop behind the synchronous methods;
- ``errors`` — every failure as one line with its fix; the typed classes ``check`` uses;
- ``transfer`` — pipelined SFTP writes and reads on asyncssh;
- ``openssh`` — the bulk upload through OpenSSH's ``sftp`` client;
- ``remote`` — commands on the backup host (``sha256sum``, ``df``);
- ``check`` — ``check-destination``'s steps, classified by exception class.
"""

from tableship.destinations.sftp.destination import SFTPDestination
from tableship.destinations.sftp.errors import AuthError, HostKeyError, RootError
from tableship.destinations.sftp.openssh import OPENSSH_MIN_BYTES

__all__ = ["OPENSSH_MIN_BYTES", "AuthError", "HostKeyError", "RootError", "SFTPDestination"]
