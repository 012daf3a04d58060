"""Fixtures for the smtptap integration tests.

SMTPTAP (environment) is the binary under test; without it the tests use
../../src/smtptap relative to this file, and fail (never skip) if it is missing.
"""

import os
import secrets
import signal

import pytest

from badserver import BadServer
from helpers import ConfTap, Tap
from pki import make_pki
from upstream import Upstream

HERE = os.path.dirname(os.path.abspath(__file__))

# Every test must finish well within this (the suite's budget is ~60 s in total).
TEST_TIMEOUT = float(os.environ.get("SMTPTAP_TEST_TIMEOUT", "30"))

# Short timeouts for smtptap unless a test passes its own.
DEFAULT_TIMEOUTS = {"--connect-timeout": "2", "--greeting-timeout": "2",
                    "--tls-timeout": "2"}


class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _per_test_timeout():
    """Turn a hung test into a failure instead of a hung "make check"."""
    def on_alarm(signum, frame):
        raise TestTimeout("test took longer than %.0fs" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def smtptap_bin():
    path = os.environ.get("SMTPTAP") or os.path.join(HERE, "..", "..", "src", "smtptap")
    path = os.path.abspath(path)
    assert os.path.isfile(path) and os.access(path, os.X_OK), \
        "smtptap binary not found or not executable: %s (set SMTPTAP)" % path
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def tap_factory(smtptap_bin, tmp_path):
    """start(upstream, *options, timeouts=True, listen="127.0.0.1:0") -> Tap.

    The upstream comes last on the command line. Unless timeouts=False, the short
    DEFAULT_TIMEOUTS are added for the flags the test does not set itself. At
    teardown each smtptap gets SIGTERM (then SIGKILL) and its stderr must carry no
    sanitizer report."""
    taps = []

    def start(upstream, *options, timeouts=True, listen="127.0.0.1:0", name=None):
        args = list(options)
        if timeouts:
            for flag, value in DEFAULT_TIMEOUTS.items():
                if flag not in args:
                    args += [flag, value]
        if upstream is not None:
            args.append(upstream)
        tap = Tap(smtptap_bin, str(tmp_path), args, name=name or "tap%d" % len(taps),
                  listen=listen)
        taps.append(tap)
        return tap.start()

    yield start
    reports = []
    for tap in taps:
        tap.stop()
        rep = tap.sanitizer_report()
        if rep:
            reports.append("%s\n%s" % (" ".join(tap.argv), rep))
    assert not reports, "sanitizer / runtime error reports from smtptap:\n" + \
        "\n".join(reports)


@pytest.fixture
def upstream_factory(pki):
    """start(mode="starttls", cert="good", users=None) -> running aiosmtpd Upstream."""
    ups = []

    def start(mode="starttls", cert="good", users=None, host="127.0.0.1"):
        crt, key = pki.pair(cert) if mode != "plain" else (None, None)
        up = Upstream(mode, crt, key, users=users, host=host).start()
        ups.append(up)
        return up

    yield start
    for up in ups:
        up.stop()


@pytest.fixture
def bad_factory():
    servers = []

    def start(behaviour):
        s = BadServer(behaviour).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
    errors = [e for s in servers for e in s.errors]
    assert not errors, "scripted upstream raised: %r" % errors


@pytest.fixture
def account():
    """A fresh user and random password (so that leaks cannot match by accident)."""
    user = "alice@example.org"
    password = "pw-" + secrets.token_urlsafe(15) + "!%"
    return user, password


@pytest.fixture
def relay(upstream_factory, tap_factory, pki, account):
    """A STARTTLS aiosmtpd upstream (good certificate, ACCOUNT as its only user) and
    an smtptap in front of it that trusts the test CA. Returns (upstream, tap)."""
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    tap = tap_factory(up.address, "--ca-file", pki.ca)
    return up, tap


@pytest.fixture
def conftap(smtptap_bin, tmp_path):
    taps = []

    def start(body, name=None, env=None):
        tap = ConfTap(smtptap_bin, tmp_path, body, name or "conftap%d" % len(taps),
                      env=env)
        taps.append(tap)
        return tap

    yield start
    for tap in taps:
        tap.stop()
