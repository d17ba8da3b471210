"""Test-suite wide configuration.

Real-server fixtures live in ``tests/servers`` (see its docstrings):

* ``sshd`` / ``sshd_fresh``  -- OpenSSH server (tests/servers/sshd.py)
* ``smtp_factory`` / ``smtp_server`` -- aiosmtpd (tests/servers/smtp.py)
* ``postgres`` -- throw-away PostgreSQL cluster (tests/servers/postgres.py)
* ``hs2`` / ``hs2_sasl`` -- Spark Thrift HiveServer2 (tests/servers/hs2.py)
* ``webhdfs`` -- HDFS NameNode + DataNode with WebHDFS (tests/servers/webhdfs.py)

With ``CI=true`` a real component that is missing and cannot be installed is
a test failure; otherwise the tests that need it are skipped with the reason.
Under ``CI=true`` any skip or xfail at all is turned into a failure
(tests/no_skips_in_ci.py).
"""

pytest_plugins = [
    "tests.no_skips_in_ci",
    "tests.servers.sshd",
    "tests.servers.smtp",
    "tests.servers.postgres",
    "tests.servers.hs2",
    "tests.servers.webhdfs",
]


def pytest_configure(config):
    # aiosmtpd warns on every connection to the AUTH-without-TLS test variant.
    config.addinivalue_line("filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_signal_left_over():
    """A test that delivers a signal in-process must not leave it pending for the next
    (interrupts remembers the first signal so a swallowed one still ends the command)."""
    from tableship.core import interrupts

    interrupts.reset()
    yield
    interrupts.reset()
