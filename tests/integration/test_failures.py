"""Every failure of the spec's table reaches the MUA as a 421 greeting, then the
connection closes; the transcript has a "* failed:" note (smtptap(1), FAILURES)."""

import re
import smtplib

from badserver import (ClosedPort, FullBacklog, GREETING_421, GREETING_554, INJECTED,
                       UNRESOLVABLE)
from helpers import expect_421, read_until_close, SmtpClient

# smtptap is started with these for the timeout cases; "1s" must appear in the text
ONE = r"1(?:\.0+)?s"
IMPLICIT_HINT = " (a server that expects TLS at once, as on port 465, needs --tls implicit)"


def failed_note(transcript):
    m = re.search(r"^\S+ [0-9a-f]{8} \* failed: (.*)$", transcript, re.M)
    assert m, "no '* failed:' note in the transcript:\n" + transcript
    return m.group(1)


def assert_still_serving(tap):
    assert tap.proc.poll() is None, "smtptap exited (%s) after a failed session:\n%s" % (
        tap.proc.returncode, tap.stderr())


# -- network level ------------------------------------------------------------------

def test_dns_failure(tap_factory):
    tap = tap_factory(UNRESOLVABLE + ":587")
    line, t = expect_421(tap, r'421 4\.4\.3 smtptap: cannot resolve upstream host '
                              r'"nonexistent\.invalid": \S.*$')
    assert UNRESOLVABLE in failed_note(t)
    assert_still_serving(tap)


def test_connection_refused(tap_factory):
    with ClosedPort() as cp:
        tap = tap_factory("127.0.0.1:%d" % cp.port)
        line, t = expect_421(tap, r"421 4\.4\.1 smtptap: cannot connect to upstream "
                                  r"127\.0\.0\.1 port %d: Connection refused$" % cp.port)
    assert "Connection refused" in failed_note(t)
    assert_still_serving(tap)


def test_connect_timeout(tap_factory):
    with FullBacklog() as fb:
        tap = tap_factory("127.0.0.1:%d" % fb.port, "--connect-timeout", "1")
        data, elapsed = read_until_close(tap.port, 10)
        text = data.decode("utf-8", "replace")
        assert re.match(r"421 4\.4\.1 smtptap: connection to upstream 127\.0\.0\.1 port %d "
                        r"timed out after %s\r\n$" % (fb.port, ONE), text), \
            "MUA got %r" % text
        assert 0.8 <= elapsed <= 5, "421 after %.2fs with --connect-timeout 1" % elapsed
    tap.wait_transcript(r"\* failed: ")
    assert "timed out" in failed_note(tap.transcript())


def test_connect_timeout_decimal(tap_factory):
    """--connect-timeout accepts decimals (spec: "e.g. 0.5")."""
    with FullBacklog() as fb:
        tap = tap_factory("127.0.0.1:%d" % fb.port, "--connect-timeout", "0.5")
        data, elapsed = read_until_close(tap.port, 10)
    assert data.startswith(b"421 4.4.1 smtptap: connection to upstream"), data
    assert re.search(rb"timed out after 0\.50*s\r\n$", data), data
    assert 0.3 <= elapsed <= 3, "421 after %.2fs with --connect-timeout 0.5" % elapsed


def test_closed_before_greeting(tap_factory, bad_factory):
    bad = bad_factory("close")
    tap = tap_factory(bad.address)
    line, t = expect_421(tap, r"421 4\.4\.2 smtptap: upstream closed the connection "
                              r"before its greeting$")
    assert "before its greeting" in failed_note(t)
    assert_still_serving(tap)


def test_greeting_timeout_silent_server(tap_factory, bad_factory):
    bad = bad_factory("silent")
    tap = tap_factory(bad.address, "--greeting-timeout", "1")
    # a silent server cannot be told from a TLS server waiting for a ClientHello:
    # the hint is allowed here
    line, t = expect_421(tap, r"421 4\.4\.2 smtptap: upstream sent no greeting within "
                              r"%s(%s)?$" % (ONE, re.escape(IMPLICIT_HINT)))
    assert "no greeting" in failed_note(t)


def test_greeting_timeout_tls_server_on_starttls_port(tap_factory, upstream_factory, pki):
    """An implicit-TLS server used with --tls starttls never greets in cleartext; the
    421 carries the hint to use --tls implicit."""
    up = upstream_factory("implicit")
    tap = tap_factory(up.address, "--tls", "starttls", "--ca-file", pki.ca,
                      "--greeting-timeout", "1")
    line, t = expect_421(tap, r"421 4\.4\.2 smtptap: upstream sent no greeting within "
                              r"%s%s$" % (ONE, re.escape(IMPLICIT_HINT)))
    assert "no greeting" in failed_note(t)


def test_tls_handshake_timeout_implicit(tap_factory, bad_factory):
    bad = bad_factory("silent")
    tap = tap_factory(bad.address, "--tls", "implicit", "--tls-timeout", "1")
    line, t = expect_421(tap, r"421 4\.4\.2 smtptap: TLS handshake with upstream timed "
                              r"out after %s$" % ONE)
    assert "timed out" in failed_note(t)


def test_tls_handshake_timeout_after_starttls(tap_factory, bad_factory):
    bad = bad_factory("starttls_silent")
    tap = tap_factory(bad.address, "--tls-timeout", "1")
    line, t = expect_421(tap, r"421 4\.4\.2 smtptap: TLS handshake with upstream timed "
                              r"out after %s$" % ONE)
    assert "timed out" in failed_note(t)


# -- STARTTLS ------------------------------------------------------------------------

def test_no_starttls_offered(tap_factory, bad_factory):
    bad = bad_factory("no_starttls")
    tap = tap_factory(bad.address)
    line, t = expect_421(tap, r"421 4\.7\.0 smtptap: upstream does not offer STARTTLS$")
    assert "STARTTLS" in failed_note(t)
    assert not any(c.upper().startswith(b"AUTH") or c.upper().startswith(b"MAIL")
                   for c in bad.commands), \
        "smtptap went on in cleartext: %r" % bad.commands


def test_starttls_refused(tap_factory, bad_factory):
    bad = bad_factory("starttls_454")
    tap = tap_factory(bad.address)
    line, t = expect_421(tap, r"421 4\.7\.0 smtptap: upstream refused STARTTLS: "
                              r"454 4\.7\.0 TLS not available due to temporary reason$")
    assert "454" in failed_note(t)


def test_starttls_injection(tap_factory, bad_factory):
    bad = bad_factory("injection")
    tap = tap_factory(bad.address)
    line, t = expect_421(tap, r"421 4\.7\.0 smtptap: upstream sent %d bytes after its "
                              r"220 to STARTTLS \(possible injection\)$" % len(INJECTED))
    assert "injection" in failed_note(t)
    assert "INJECTED" not in line


def test_starttls_then_garbage_is_a_tls_failure(tap_factory, bad_factory):
    bad = bad_factory("starttls_garbage")
    tap = tap_factory(bad.address)
    line, t = expect_421(tap, r"421 4\.7\.0 smtptap: TLS handshake with upstream failed: "
                              r"\S.*$")
    assert "--tls starttls" not in line, "hint to use starttls while using it: %r" % line
    failed_note(t)


def test_greet_then_close(tap_factory, bad_factory):
    """The server greets and closes before answering EHLO: not in the spec's table,
    but the MUA must still get a 421 from smtptap, not a silent close."""
    bad = bad_factory("greet_close")
    tap = tap_factory(bad.address)
    line, t = expect_421(tap, r"421 4\.\d\.\d smtptap: \S.*$")
    failed_note(t)


# -- certificates ----------------------------------------------------------------------

def test_name_mismatch_host_name(tap_factory, upstream_factory, pki):
    up = upstream_factory("starttls", cert="wrongname")
    tap = tap_factory("localhost:%d" % up.port, "--ca-file", pki.ca)
    line, t = expect_421(tap, r"421 4\.7\.0 smtptap: upstream certificate does not match "
                              r"localhost \(presented: (DNS:)?mail\.other\.net\)$")
    assert "mail.other.net" in failed_note(t)
    assert up.deliveries == []


def test_name_mismatch_ip_literal(tap_factory, upstream_factory, pki):
    up = upstream_factory("starttls", cert="wrongname")
    tap = tap_factory(up.address, "--ca-file", pki.ca)
    expect_421(tap, r"421 4\.7\.0 smtptap: upstream certificate does not match "
                    r"127\.0\.0\.1 \(presented: (DNS:)?mail\.other\.net\)$")


def test_name_mismatch_sni_option(tap_factory, upstream_factory, pki):
    """--sni NAME is the name checked: a good certificate (localhost) fails for it."""
    up = upstream_factory("starttls", cert="good")
    tap = tap_factory(up.address, "--ca-file", pki.ca, "--sni", "mail.other.net")
    expect_421(tap, r"421 4\.7\.0 smtptap: upstream certificate does not match "
                    r"mail\.other\.net \(presented: (DNS:)?localhost, (IP:)?127\.0\.0\.1, "
                    r"(IP:)?(::1|0:0:0:0:0:0:0:1)\)$")


def test_expired_certificate(tap_factory, upstream_factory, pki):
    up = upstream_factory("starttls", cert="expired")
    tap = tap_factory("localhost:%d" % up.port, "--ca-file", pki.ca)
    line, t = expect_421(tap, r"421 4\.7\.0 smtptap: upstream certificate has expired "
                              r"\(.+\)$")
    assert "expired" in failed_note(t)


def test_untrusted_ca(tap_factory, upstream_factory, pki):
    up = upstream_factory("starttls", cert="untrusted")
    tap = tap_factory("localhost:%d" % up.port, "--ca-file", pki.ca)
    line, t = expect_421(tap, r"421 4\.7\.0 smtptap: upstream certificate is not trusted: "
                              r"unable to get local issuer certificate$")
    assert "not trusted" in failed_note(t)


def test_self_signed(tap_factory, upstream_factory, pki):
    up = upstream_factory("starttls", cert="selfsigned")
    tap = tap_factory("localhost:%d" % up.port, "--ca-file", pki.ca)
    line, t = expect_421(tap, r"421 4\.7\.0 smtptap: upstream certificate is not trusted: "
                              r"self-signed certificate$")
    assert "self-signed" in failed_note(t)


def test_untrusted_implicit(tap_factory, upstream_factory, pki):
    """Verification applies to implicit TLS as well."""
    up = upstream_factory("implicit", cert="untrusted")
    tap = tap_factory("localhost:%d" % up.port, "--tls", "implicit", "--ca-file", pki.ca)
    expect_421(tap, r"421 4\.7\.0 smtptap: upstream certificate is not trusted: \S.*$")


def test_plaintext_server_with_tls_implicit(tap_factory, bad_factory):
    bad = bad_factory("plaintext")
    tap = tap_factory(bad.address, "--tls", "implicit")
    line, t = expect_421(tap, r"421 4\.7\.0 smtptap: upstream does not speak TLS on port "
                              r"%d \(try --tls starttls\)$" % bad.port)
    failed_note(t)


# -- non-220 greetings -------------------------------------------------------------------

def test_greeting_421_passed_as_is(tap_factory, bad_factory):
    bad = bad_factory("greet_421")
    tap = tap_factory(bad.address)
    data, _ = read_until_close(tap.port)
    assert data == GREETING_421, "MUA got %r, expected the upstream's %r" % (data,
                                                                          GREETING_421)
    tap.wait_transcript(r"4\.3\.2 bad\.example busy")


def test_greeting_554_passed_as_is(tap_factory, bad_factory):
    bad = bad_factory("greet_554")
    tap = tap_factory(bad.address)
    data, _ = read_until_close(tap.port)
    assert data == GREETING_554, "MUA got %r, expected the upstream's %r" % (data,
                                                                          GREETING_554)


# -- --no-verify -----------------------------------------------------------------------

def test_no_verify_lets_wrong_name_through(tap_factory, upstream_factory, pki, account):
    user, password = account
    up = upstream_factory("starttls", cert="wrongname", users={user: password})
    tap = tap_factory("localhost:%d" % up.port, "--ca-file", pki.ca, "--no-verify")
    with smtplib.SMTP("127.0.0.1", tap.port, timeout=10) as s:
        s.login(user, password)
        s.sendmail("alice@example.org", ["bob@example.net"], b"Subject: nv\r\n\r\nx\r\n")
    (d,) = up.wait_deliveries(1)
    assert d.user == user
    t = tap.wait_summary(1)
    m = re.search(r"^\S+ [0-9a-f]{8} \* verification (.*)$", t, re.M)
    assert m, "no '* verification' note:\n" + t
    assert not m.group(1).startswith("ok"), "verification reported ok for a wrong name: " \
        + m.group(0)
    assert "mail.other.net" in m.group(1) or "does not match" in m.group(1), \
        "verification note does not say what failed: " + m.group(0)
    assert not re.search(r"\* failed: ", t), "session marked failed with --no-verify:\n" + t


def test_no_verify_self_signed_implicit(tap_factory, upstream_factory, pki, account):
    user, password = account
    up = upstream_factory("implicit", cert="selfsigned", users={user: password})
    tap = tap_factory(up.address, "--tls", "implicit", "--ca-file", pki.ca, "--no-verify")
    with smtplib.SMTP("127.0.0.1", tap.port, timeout=10) as s:
        s.login(user, password)
        s.sendmail("alice@example.org", ["bob@example.net"], b"Subject: nv2\r\n\r\nx\r\n")
    up.wait_deliveries(1)
    t = tap.wait_summary(1)
    assert re.search(r"\* verification .*self-signed", t), \
        "verification failure not recorded:\n" + t


def test_failure_then_next_session_works(tap_factory, bad_factory):
    """A failed session does not poison the listener: a second MUA gets its 421 too."""
    bad = bad_factory("no_starttls")
    tap = tap_factory(bad.address)
    for _ in range(2):
        with SmtpClient(tap.port) as c:
            data = c.read_until_close(10)
        assert data.startswith(b"421 4.7.0 smtptap: upstream does not offer STARTTLS"), data
    assert bad.accepted == 2
