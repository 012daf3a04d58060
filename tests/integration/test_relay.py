"""Relaying: what the MUA sends reaches a real (aiosmtpd) server unchanged."""

import os
import re
import smtplib
import socket
import subprocess
import threading

from helpers import SmtpClient, smtp_data_bytes
from upstream import HOSTNAME

FROM = "alice@example.org"
TO = ["bob@example.net", "carol@example.com"]


def tricky_message(marker="tricky"):
    """8-bit bytes, a 998-byte line, lines that need dot-stuffing, a lone dot,
    trailing white space and an empty body line: must arrive byte for byte."""
    return (b"From: Alice <alice@example.org>\r\n"
            b"To: bob@example.net\r\n"
            b"Subject: relay test " + marker.encode() + b"\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n"
            b"\r\n"
            b"caf\xc3\xa9 \xe2\x82\xac \xff\xfe raw 8-bit\r\n"
            b".a line starting with a dot\r\n"
            b"..two dots\r\n"
            b".\r\n"
            b" .space then dot\r\n"
            b"trailing spaces   \t\r\n"
            b"\r\n"
            + b"L" * 998 + b"\r\n"
            b"tab\tinside\r\n"
            b"last line\r\n")


def login_and_send(port, user, password, msg, rcpts=TO, mechanism=None):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        if mechanism:
            s.user, s.password = user, password
            s.auth(mechanism, getattr(s, "auth_" + mechanism.lower()),
                   initial_response_ok=True)
        else:
            s.login(user, password)
        refused = s.sendmail(FROM, rcpts, msg)
        assert refused == {}, "recipients refused: %r" % refused


def test_smtplib_through_starttls_upstream(relay, account):
    up, tap = relay
    user, password = account
    msg = tricky_message()
    login_and_send(tap.port, user, password, msg)
    (d,) = up.wait_deliveries(1)
    assert d.content == msg, "message changed in transit:\nsent %r\ngot  %r" % (msg, d.content)
    assert d.mail_from == FROM
    assert d.rcpt_tos == TO
    assert d.user == user, "upstream saw authenticated user %r" % d.user
    assert d.tls_version and d.tls_version.startswith("TLSv1."), \
        "upstream did not receive the message over TLS: %r" % d.tls_version


def test_smtplib_through_implicit_upstream(upstream_factory, tap_factory, pki, account):
    user, password = account
    up = upstream_factory("implicit", users={user: password})
    tap = tap_factory(up.address, "--tls", "implicit", "--ca-file", pki.ca)
    msg = tricky_message("implicit")
    login_and_send(tap.port, user, password, msg)
    (d,) = up.wait_deliveries(1)
    assert d.content == msg, "message changed in transit"
    assert (d.mail_from, d.rcpt_tos, d.user) == (FROM, TO, user)
    assert d.tls_version, "implicit upstream did not see TLS"


def raw_session(port, user, password, content, mail_from=FROM, rcpts=TO):
    """A hand-made SMTP session; returns (bytes sent, bytes received)."""
    import base64
    with SmtpClient(port) as c:
        code, lines, _ = c.read_reply()
        assert code == 220, "greeting %r" % lines
        c.cmd("EHLO raw.client.test", 250)
        blob = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        c.cmd("AUTH PLAIN " + blob, 235)
        c.cmd("MAIL FROM:<%s> BODY=8BITMIME" % mail_from, 250)
        for r in rcpts:
            c.cmd("RCPT TO:<%s>" % r, 250)
        c.cmd("DATA", 354)
        c.send(smtp_data_bytes(content))
        code, lines, _ = c.read_reply()
        assert code == 250, "end of DATA answered %r" % lines
        c.cmd("QUIT", 221)


def test_raw_client_through_implicit_upstream(upstream_factory, tap_factory, pki, account):
    user, password = account
    up = upstream_factory("implicit", users={user: password})
    tap = tap_factory(up.address, "--tls", "implicit", "--ca-file", pki.ca)
    msg = tricky_message("raw")
    raw_session(tap.port, user, password, msg)
    (d,) = up.wait_deliveries(1)
    assert d.content == msg, "message changed in transit"
    assert (d.mail_from, d.rcpt_tos, d.user) == (FROM, TO, user)


def test_raw_client_through_starttls_upstream(relay, account):
    up, tap = relay
    user, password = account
    msg = tricky_message("raw-starttls")
    raw_session(tap.port, user, password, msg)
    (d,) = up.wait_deliveries(1)
    assert d.content == msg
    assert (d.mail_from, d.rcpt_tos, d.user) == (FROM, TO, user)


def test_large_message_5mb(relay, account):
    up, tap = relay
    user, password = account
    line = bytes(range(0x21, 0x7f)) + b"\xc3\xa9\xe2\x82\xac"  # 94 ASCII + 8-bit
    body = b"".join(b"%07d " % i + line + b"\r\n" for i in range(48000))
    msg = b"Subject: big\r\n\r\n" + body
    assert len(msg) > 5_000_000
    login_and_send(tap.port, user, password, msg)
    (d,) = up.wait_deliveries(1)
    assert len(d.content) == len(msg), "size %d != %d" % (len(d.content), len(msg))
    assert d.content == msg, "large message changed in transit"


def test_twenty_concurrent_sessions(relay, account):
    up, tap = relay
    user, password = account
    n = 20
    errors = []
    barrier = threading.Barrier(n)

    def one(i):
        try:
            barrier.wait(10)
            msg = b"Subject: concurrent %d\r\n\r\nsession %d body\r\n" % (i, i)
            login_and_send(tap.port, user, password, msg, rcpts=["r%d@example.net" % i])
        except Exception as e:  # collected and reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, "sessions failed: %r" % errors
    got = up.wait_deliveries(n)
    by_rcpt = {d.rcpt_tos[0]: d for d in got}
    assert len(by_rcpt) == n, "delivered %d distinct sessions, expected %d" % (len(by_rcpt), n)
    for i in range(n):
        d = by_rcpt["r%d@example.net" % i]
        assert d.content == b"Subject: concurrent %d\r\n\r\nsession %d body\r\n" % (i, i), \
            "session %d content mixed up: %r" % (i, d.content)
    text = tap.wait_summary(n)
    ids = set(re.findall(r"^\S+ ([0-9a-f]{8}) \* connect from ", text, re.M))
    assert len(ids) == n, "expected %d distinct session ids, got %d" % (n, len(ids))


def test_half_close_after_quit_still_gets_221(relay):
    up, tap = relay
    with SmtpClient(tap.port) as c:
        code, _, _ = c.read_reply()
        assert code == 220
        c.cmd("EHLO halfclose.test", 250)
        c.send("QUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        rest = c.read_until_close(10)
    assert rest.startswith(b"221"), "after QUIT + half-close the MUA got %r" % rest


def test_pipelined_session_then_half_close(relay):
    """EHLO, NOOP and QUIT in one write, then the MUA shuts down its sending side:
    every reply must still arrive."""
    up, tap = relay
    with SmtpClient(tap.port) as c:
        code, _, _ = c.read_reply()
        assert code == 220
        c.send("EHLO pipe.test\r\nNOOP\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        rest = c.read_until_close(10)
    codes = re.findall(rb"^(\d{3}) ", rest, re.M)
    assert codes == [b"250", b"250", b"221"], "replies after half-close: %r" % rest


def test_greeting_reaches_mua_only_after_tls(relay):
    up, tap = relay
    with SmtpClient(tap.port) as c:
        code, lines, _ = c.read_reply()
        c.cmd("QUIT", 221)
    assert code == 220 and HOSTNAME in lines[0], \
        "MUA greeting is not the upstream's: %r" % lines
    text = tap.wait_summary(1)
    lines_ = text.splitlines()
    tls_i = next((i for i, ln in enumerate(lines_) if re.search(r" \* TLS TLSv1\.[23] ", ln)),
                 None)
    s220_i = next((i for i, ln in enumerate(lines_) if re.search(r" S: 220[ -]", ln)), None)
    assert tls_i is not None, "no '* TLS' line in transcript:\n" + text
    assert s220_i is not None, "no 'S: 220' line in transcript:\n" + text
    assert tls_i < s220_i, "greeting relayed before TLS was up:\n" + text


def test_ehlo_reply_to_mua_is_the_post_tls_one(relay):
    """The MUA talks to the server inside TLS: AUTH offered, STARTTLS not."""
    up, tap = relay
    with SmtpClient(tap.port) as c:
        c.read_reply()
        code, lines, _ = c.cmd("EHLO caps.test", 250)
        c.cmd("QUIT", 221)
    caps = " ".join(lines).upper()
    assert "AUTH" in caps and "PLAIN" in caps and "LOGIN" in caps, lines
    assert "STARTTLS" not in caps, "STARTTLS leaked to the MUA: %r" % lines


def test_upstream_by_host_name_sends_sni(upstream_factory, tap_factory, pki, account):
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    tap = tap_factory("localhost:%d" % up.port, "--ca-file", pki.ca)
    login_and_send(tap.port, user, password, b"Subject: sni\r\n\r\nx\r\n")
    up.wait_deliveries(1)
    assert up.sni_names == ["localhost"], "SNI sent: %r" % up.sni_names


def test_no_sni_for_ip_literal(relay, account):
    up, tap = relay
    user, password = account
    login_and_send(tap.port, user, password, b"Subject: nosni\r\n\r\nx\r\n")
    up.wait_deliveries(1)
    assert up.sni_names == [None], "SNI sent for an IP literal upstream: %r" % up.sni_names


def test_sni_option(upstream_factory, tap_factory, pki, account):
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    tap = tap_factory(up.address, "--ca-file", pki.ca, "--sni", "localhost")
    login_and_send(tap.port, user, password, b"Subject: sni option\r\n\r\nx\r\n")
    up.wait_deliveries(1)
    assert up.sni_names == ["localhost"], "SNI sent: %r" % up.sni_names
    tap.wait_transcript(r'\* verification ok \(name "localhost"\)')


def test_ca_path_directory(upstream_factory, tap_factory, pki, account, tmp_path):
    user, password = account
    d = tmp_path / "cadir"
    d.mkdir()
    with open(pki.ca, "rb") as f:
        (d / "ca.pem").write_bytes(f.read())
    subprocess.run(["openssl", "rehash", str(d)], check=True, capture_output=True)
    assert any(re.match(r"[0-9a-f]{8}\.0$", n) for n in os.listdir(d)), os.listdir(d)
    up = upstream_factory("starttls", users={user: password})
    tap = tap_factory(up.address, "--ca-path", str(d))
    login_and_send(tap.port, user, password, b"Subject: capath\r\n\r\nx\r\n")
    (dl,) = up.wait_deliveries(1)
    assert dl.user == user


def test_tls_none_relays_cleartext(upstream_factory, tap_factory, account):
    user, password = account
    up = upstream_factory("plain", users={user: password})
    tap = tap_factory(up.address, "--tls", "none")
    msg = tricky_message("none")
    login_and_send(tap.port, user, password, msg)
    (d,) = up.wait_deliveries(1)
    assert d.content == msg and d.user == user and d.tls_version is None


def test_rejected_message_reaches_mua(relay, account):
    """A 554 from the server at the end of DATA reaches the MUA unchanged."""
    from upstream import REJECT_MARKER
    up, tap = relay
    user, password = account
    with smtplib.SMTP("127.0.0.1", tap.port, timeout=10) as s:
        s.login(user, password)
        try:
            s.sendmail(FROM, TO, b"Subject: no\r\n" + REJECT_MARKER + b"\r\nbody\r\n")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 554, e
        else:
            raise AssertionError("the MUA did not see the upstream's 554")
    assert up.deliveries == []


def test_ipv6_upstream_literal(upstream_factory, tap_factory, pki, account):
    """[::1]:PORT upstream: IPv6 parsing, connect, and the IP SAN check for ::1."""
    user, password = account
    up = upstream_factory("starttls", users={user: password}, host="::1")
    tap = tap_factory(up.address, "--ca-file", pki.ca)
    login_and_send(tap.port, user, password, b"Subject: v6\r\n\r\nx\r\n")
    (d,) = up.wait_deliveries(1)
    assert d.user == user
    assert up.sni_names == [None], "SNI sent for an IPv6 literal: %r" % up.sni_names
    tap.wait_transcript(r'\* verification ok \(name "::1"\)')


def test_very_long_command_line(relay):
    """A 100 kB command line is relayed (the server answers it) without harm."""
    up, tap = relay
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO long.test", 250)
        c.send(b"NOOP " + b"A" * 100000 + b"\r\n")
        code, lines, _ = c.read_reply()
        assert code is not None and 500 <= code < 600, "long line answered %r" % lines
        c.cmd("NOOP", 250)
        c.cmd("QUIT", 221)
    tap.wait_summary(1)
    assert tap.proc.poll() is None


def test_pipelined_mail_rcpt_data(relay, account):
    """MAIL, RCPT and DATA in one write (as PIPELINING clients do), then the body:
    delivered unchanged, and the transcript still sees the DATA phase."""
    import base64
    up, tap = relay
    user, password = account
    msg = b"Subject: pipelined\r\n\r\nbody line\r\n"
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO pipe.test", 250)
        blob = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        c.cmd(b"AUTH PLAIN " + blob, 235)
        c.send(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n")
        assert [c.read_reply()[0] for _ in range(3)] == [250, 250, 354]
        c.send(smtp_data_bytes(msg) + b"QUIT\r\n")
        assert c.read_reply()[0] == 250
        assert c.read_reply()[0] == 221
    (d,) = up.wait_deliveries(1)
    assert d.content == msg
    text = tap.wait_summary(1)
    assert " C: (header) Subject: pipelined" in text, text
    assert "body line" not in text, "body logged:\n" + text
    assert re.search(r" C: QUIT$", text, re.M), "QUIT after the pipelined dot not seen\n" + text


def test_rejected_data_command_is_not_a_message(relay, account):
    """DATA refused by the server (no RCPT yet: 503): what follows are commands, not
    message lines, and must be logged and relayed as such."""
    up, tap = relay
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO nodata.test", 250)
        code, lines, _ = c.cmd("DATA")
        assert code == 503, lines
        c.cmd("NOOP", 250)
        c.cmd("QUIT", 221)
    text = tap.wait_summary(1)
    assert re.search(r" C: NOOP$", text, re.M), \
        "NOOP after a refused DATA was not logged as a command:\n" + text
    assert "(header) NOOP" not in text and "* message:" not in text, text


def test_mua_disconnects_mid_data(relay, account):
    """The MUA vanishes in the middle of DATA: nothing delivered, smtptap survives
    and still writes the session summary."""
    import base64
    up, tap = relay
    user, password = account
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO gone.test", 250)
        blob = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        c.cmd(b"AUTH PLAIN " + blob, 235)
        c.cmd("MAIL FROM:<alice@example.org>", 250)
        c.cmd("RCPT TO:<bob@example.net>", 250)
        c.cmd("DATA", 354)
        c.send(b"Subject: half\r\n\r\nhalf a message")
    # the session must end promptly (not at --idle-timeout, 300 s by default)
    tap.wait_summary(1, timeout=5)
    assert up.deliveries == []
    assert tap.proc.poll() is None
    # and the next session works
    with SmtpClient(tap.port) as c:
        assert c.read_reply()[0] == 220
        c.cmd("QUIT", 221)


def test_mua_closes_without_quit(relay):
    """The MUA closes after EHLO without QUIT: smtptap must end the upstream side too
    and write the summary promptly (not only at --idle-timeout)."""
    up, tap = relay
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO noquit.test", 250)
    tap.wait_summary(1, timeout=5)


def test_mua_disconnects_before_greeting(tap_factory, bad_factory):
    """The MUA leaves while smtptap still waits for the upstream's greeting."""
    bad = bad_factory("silent")
    tap = tap_factory(bad.address, "--greeting-timeout", "1")
    c = socket.create_connection(("127.0.0.1", tap.port))
    tap.wait_transcript(r"\* connect from ")
    c.close()
    tap.wait_transcript(r"\* (summary|failed): ")
    assert tap.proc.poll() is None, "smtptap died: " + tap.stderr()


def test_idle_timeout_closes_session(upstream_factory, tap_factory, pki):
    up = upstream_factory("starttls")
    tap = tap_factory(up.address, "--ca-file", pki.ca, "--idle-timeout", "1")
    import time
    with SmtpClient(tap.port) as c:
        c.read_reply()
        t0 = time.monotonic()
        c.read_until_close(8)
        elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed <= 5, "idle session closed after %.2fs with --idle-timeout 1" % \
        elapsed
    tap.wait_summary(1)
