"""Impala and Hive sources over the HiveServer2 protocol (impyla).

Connection: impyla ``connect`` with the config's auth mechanism (``nosasl`` → NOSASL,
``plain``/``ldap`` → PLAIN/LDAP with user and password, ``gssapi`` → GSSAPI with the
Kerberos service name), optional TLS (``use_ssl``, ``ca_cert``) and a socket
``timeout`` that bounds the connect and every RPC (so every fetch). One session per
source: ``query_options`` are sent as ``SET k=v`` on it, then ``USE `database```.

Fast path. impyla's ``fetchmany`` turns the server's *columnar* result (HS2 protocol
v6+, every Impala and Hive since 2014) into row tuples and then, with the default type
conversion, parses every DECIMAL/TIMESTAMP/DATE string in Python: that is the known
bottleneck (impyla #221, #406, #447). This source issues ``FetchResults`` itself on
the cursor's operation and turns each returned column straight into an Arrow array
(``convert``). No Python loop runs per value. A server without the columnar protocol
falls back to ``fetchmany``, and so does an impyla whose private API the fast path needs
has changed: every use of it is in ``sources/impyla_adapter.py`` (its canary test names
the version).

Errors: a host that does not accept TCP connections, a timeout, or a connection lost
mid-query is transient (the pipeline retries with back-off, on a fresh connection);
a failed handshake (wrong auth mechanism, bad credentials, TLS mismatch), an unknown
table or column and any SQL error are terminal, with the server's message. The
password never appears in a message.

The pieces:

- ``source`` — ``HS2Source``: the Source contract over one session, statements, fetching;
- ``session`` — connect options (auth, TLS), the settings checked first, probe, open;
- ``errors`` — a driver error as one clean line, the hints that fit it;
- ``columns`` — result column types and names → the Arrow schema;
- ``convert`` — wire values → Arrow arrays (fast path and ``fetchmany`` fallback);
- ``prefetch`` — the next fetch on a helper thread while the last rows are rendered.
"""

import logging

# impyla logs failed RPCs with log.exception (tracebacks) and thrift logs connect
# failures at ERROR: tableship reports these itself, as one line.
for _name in ("impala", "thrift", "thrift_sasl"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

# heavy driver: this package is imported only when an HS2 source is used
from tableship.sources.hs2.source import HS2Source  # noqa: E402

__all__ = ["HS2Source"]
