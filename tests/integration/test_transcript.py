"""The transcript format of smtptap(1), TRANSCRIPT."""

import base64
import datetime
import re
import smtplib
import subprocess

import pytest

from helpers import (RECORD_RE, SmtpClient, assert_no_secret, parse_transcript,
                     sessions_of, session_records, smtp_data_bytes)
from upstream import HOSTNAME

BODY_MARKER = "BODY-MARKER-7f3a9c-must-not-be-logged"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def cert_not_after(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-enddate"],
                         capture_output=True, text=True, check=True).stdout.strip()
    when = datetime.datetime.strptime(out.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def full_session(port, user, password, content, ehlo="client.test"):
    """Greeting, EHLO, AUTH PLAIN, one message, QUIT, all on a raw socket. Returns
    (client local port, bytes sent, bytes received)."""
    sent = 0
    with SmtpClient(port) as c:
        local_port = c.sock.getsockname()[1]
        c.read_reply()

        def cmd(line, code):
            nonlocal sent
            sent += len(line) + 2
            return c.cmd(line, code)
        cmd("EHLO " + ehlo, 250)
        cmd("AUTH PLAIN " + b64("\0" + user + "\0" + password), 235)
        cmd("MAIL FROM:<alice@example.org>", 250)
        cmd("RCPT TO:<bob@example.net>", 250)
        cmd("DATA", 354)
        data = smtp_data_bytes(content)
        c.send(data)
        sent += len(data)
        code, lines, _ = c.read_reply()
        assert code == 250, lines
        cmd("QUIT", 221)
        c.read_until_close(10)
        received = len(c.log)
    return local_port, sent, received


def simple_message(marker=BODY_MARKER):
    return ("From: Alice <alice@example.org>\r\n"
            "To: Bob <bob@example.net>\r\n"
            "Subject: hello transcript\r\n"
            "\r\n"
            "first body line\r\n"
            + marker + "\r\n"
            + "x" * 70 + "\r\n"
            + "last body line\r\n").encode()


class Session:
    """One complete session through smtptap, for the format tests below."""


@pytest.fixture
def session(upstream_factory, tap_factory, pki, account):
    """localhost upstream (STARTTLS, good certificate), --ehlo tap.test, one raw
    session with AUTH PLAIN and one message; returns a Session with everything."""
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    tap = tap_factory("localhost:%d" % up.port, "--ca-file", pki.ca, "--ehlo", "tap.test")
    msg = simple_message()
    local_port, sent, received = full_session(tap.port, user, password, msg)
    up.wait_deliveries(1)
    s = Session()
    s.up, s.tap, s.pki, s.user, s.password, s.msg = up, tap, pki, user, password, msg
    s.local_port, s.sent, s.received = local_port, sent, received
    s.text = tap.wait_summary(1)
    s.recs = parse_transcript(s.text)
    sids = sessions_of(s.recs)
    assert len(sids) == 1, "expected one session id, got %r:\n%s" % (sids, s.text)
    s.srecs = session_records(s.recs, sids[0])
    s.notes = [r["text"] for r in s.srecs if r["dir"] == "*"]
    s.note_text = "\n".join(s.notes)
    s.cs = [(r["dir"], r["text"]) for r in s.srecs if r["dir"] in ("C:", "S:")]
    return s


def test_record_format(session):
    s = session
    bad = [r["text"] for r in s.recs if r["dir"] is None]
    assert not bad, "lines not in '<time> <session> <dir> <text>' format: %r" % bad
    now = datetime.datetime.now(datetime.timezone.utc)
    times = []
    for r in s.recs:
        t = datetime.datetime.strptime(r["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc)
        assert abs((now - t).total_seconds()) < 120, "time is not UTC now: " + r["time"]
        times.append(t)
    assert times == sorted(times), "timestamps go backwards"


def test_listening_line(session):
    s = session
    first = s.recs[0]
    assert first["session"] == "-" and first["dir"] == "*", first
    assert re.fullmatch(r"smtptap \d+\.\d+\.\d+\S* listening on 127\.0\.0\.1:%d, upstream "
                        r"localhost:%d \(starttls\)" % (s.tap.port, s.up.port),
                        first["text"]), first["text"]


def test_connect_and_pre_tls_notes(session):
    s = session
    assert s.srecs[0]["dir"] == "*" and s.srecs[0]["text"] == \
        "connect from 127.0.0.1:%d to 127.0.0.1:%d" % (s.local_port, s.tap.port), s.srecs[0]
    assert "upstream localhost port %d: trying 127.0.0.1" % s.up.port in s.notes, s.note_text
    assert any(re.fullmatch(r"upstream> 220 %s .*" % re.escape(HOSTNAME), n)
               for n in s.notes), s.note_text
    assert "smtptap> EHLO tap.test" in s.notes, s.note_text
    assert "upstream> 250-STARTTLS" in s.notes, s.note_text
    assert "smtptap> STARTTLS" in s.notes, s.note_text


def test_tls_and_verification_notes(session):
    s = session
    assert any(re.fullmatch(r"TLS TLSv1\.3 cipher TLS_[A-Z0-9_]+", n) for n in s.notes), \
        s.note_text
    assert 'verification ok (name "localhost")' in s.notes, s.note_text


def test_certificate_note(session):
    s = session
    cert_note = 'certificate subject "CN=localhost" issuer "CN=smtptap test CA" SAN ' \
        'DNS:localhost, IP:127.0.0.1, IP:(?:::1|0:0:0:0:0:0:0:1) valid until %s' % \
        re.escape(cert_not_after(s.pki.cert("good")))
    assert any(re.fullmatch(cert_note, n) for n in s.notes), \
        "certificate note missing or wrong (spec: 'valid until 2036-01-01 00:00:00 UTC');" \
        "\nexpected /%s/ in:\n%s" % (cert_note, s.note_text)


def test_mua_dialogue_and_auth_plain(session):
    s = session
    cs = s.cs
    assert cs[0][0] == "S:" and cs[0][1].startswith("220 " + HOSTNAME), cs[:3]
    assert ("C:", "EHLO client.test") in cs
    assert ("C:", 'AUTH PLAIN <masked> \u21d2 authzid="" user="%s" password=<masked, %d bytes>'
            % (s.user, len(s.password))) in cs, "AUTH PLAIN line wrong:\n%s" % s.text
    assert any(d == "S:" and t.startswith("235 ") for d, t in cs), cs
    assert ("C:", "MAIL FROM:<alice@example.org>") in cs
    assert ("C:", "RCPT TO:<bob@example.net>") in cs
    assert ("C:", "DATA") in cs
    assert any(d == "S:" and t.startswith("354 ") for d, t in cs), cs
    assert ("C:", "QUIT") in cs and any(d == "S:" and t.startswith("221") for d, t in cs)


def test_data_headers_shown_body_hidden(session):
    s = session
    cs = s.cs
    assert ("C:", "(header) Subject: hello transcript") in cs, cs
    assert ("C:", "(header) From: Alice <alice@example.org>") in cs, cs
    assert ("C:", "(header) To: Bob <bob@example.net>") in cs, cs
    assert ("C:", ".") in cs, cs
    assert BODY_MARKER not in s.text, "message body leaked into the transcript"
    assert "first body line" not in s.text and "x" * 70 not in s.text


def test_message_note(session):
    s = session
    lines = s.msg.split(b"\r\n")[:-1]
    expected = "message: %d bytes, %d lines, longest line %d bytes" % (
        len(s.msg), len(lines), max(len(ln) for ln in lines))
    assert expected in s.notes, "expected note %r in:\n%s" % (expected, s.note_text)
    texts = [(r["dir"], r["text"]) for r in s.srecs]
    assert texts.index(("*", expected)) < texts.index(("C:", ".")), \
        "message note must come before 'C: .'"


def test_summary_line(session):
    s = session
    summary = [n for n in s.notes if n.startswith("summary: ")]
    assert len(summary) == 1, s.notes
    assert s.notes[-1] == summary[0], "summary is not the session's last line"
    m = re.fullmatch(r"summary: duration (\d+\.\d{3})s, client\u2192server (\d+) bytes, "
                     r"server\u2192client (\d+) bytes, tls TLSv1\.3, auth PLAIN "
                     r'user="%s" 235 \(accepted\), messages 1 accepted 0 rejected' % re.escape(s.user),
                     summary[0])
    assert m, "summary line differs from the spec format: %r" % summary[0]


def test_summary_byte_counts(session):
    s = session
    m = re.search(r"client\u2192server (\d+) bytes, server\u2192client (\d+) bytes", s.text)
    assert m, s.text
    assert int(m.group(1)) == s.sent, "client\u2192server %s bytes, the MUA sent %d" % (
        m.group(1), s.sent)
    assert int(m.group(2)) == s.received, "server\u2192client %s bytes, the MUA got %d" % (
        m.group(2), s.received)


def test_no_password_anywhere(session):
    s = session
    assert_no_secret(s.password, s.user, {"transcript": s.text, "stdout": s.tap.stdout(),
                                          "stderr": s.tap.stderr()})


def test_message_size_excludes_dot_stuffing(relay, account):
    """The message note counts the message, not its SMTP transparency dots."""
    up, tap = relay
    user, password = account
    msg = b"Subject: dots\r\n\r\n.one\r\n..two\r\nplain\r\n"
    full_session(tap.port, user, password, msg)
    (d,) = up.wait_deliveries(1)
    assert d.content == msg
    text = tap.wait_summary(1)
    assert "* message: %d bytes, 5 lines, longest line 13 bytes" % len(msg) in text, \
        "message note (message %d bytes, %d on the wire):\n%s" % (
            len(msg), len(smtp_data_bytes(msg)) - 3, text)


def test_auth_login_prompts_decoded(relay, account):
    up, tap = relay
    user, password = account
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO login.test", 250)
        code, lines, _ = c.cmd("AUTH LOGIN", 334)
        assert lines == ["334 VXNlcm5hbWU6"], lines
        c.cmd(b64(user), 334)
        c.cmd(b64(password), 235)
        c.cmd("QUIT", 221)
    text = tap.wait_summary(1)
    cs = [(r["dir"], r["text"]) for r in parse_transcript(text) if r["dir"] in ("C:", "S:")]
    i = cs.index(("C:", "AUTH LOGIN"))
    assert cs[i + 1] == ("S:", '334 VXNlcm5hbWU6 \u21d2 "Username:"'), cs[i + 1]
    assert cs[i + 2] == ("C:", '%s \u21d2 user="%s"' % (b64(user), user)), cs[i + 2]
    assert cs[i + 3] == ("S:", '334 UGFzc3dvcmQ6 \u21d2 "Password:"'), cs[i + 3]
    assert cs[i + 4] == ("C:", "<masked> \u21d2 password=<masked, %d bytes>" %
                         len(password)), cs[i + 4]
    assert cs[i + 5][0] == "S:" and cs[i + 5][1].startswith("235 "), cs[i + 5]
    assert re.search(r'\* summary: .*auth LOGIN user="%s" 235' % re.escape(user), text), text
    assert_no_secret(password, user, {"transcript": text, "stderr": tap.stderr(),
                                      "stdout": tap.stdout()})


def test_auth_plain_without_initial_response(relay, account):
    up, tap = relay
    user, password = account
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO plain2.test", 250)
        c.cmd("AUTH PLAIN", 334)
        c.cmd(b64("\0" + user + "\0" + password), 235)
        c.cmd("QUIT", 221)
    text = tap.wait_summary(1)
    cs = [(r["dir"], r["text"]) for r in parse_transcript(text) if r["dir"] in ("C:", "S:")]
    i = cs.index(("C:", "AUTH PLAIN"))
    assert cs[i + 1][0] == "S:" and cs[i + 1][1].startswith("334"), cs[i + 1]
    assert cs[i + 2] == ("C:", '<masked> \u21d2 authzid="" user="%s" password=<masked, %d '
                         'bytes>' % (user, len(password))), cs[i + 2]
    assert_no_secret(password, user, {"transcript": text})


def test_failed_auth_still_masked(relay, account):
    up, tap = relay
    user, _ = account
    wrong = "wrong-" + "Zq8#Lm2$Vx9!"
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO fail.test", 250)
        code, lines, _ = c.cmd("AUTH PLAIN " + b64("\0" + user + "\0" + wrong))
        assert code == 535, lines
        c.cmd("QUIT", 221)
    text = tap.wait_summary(1)
    assert re.search(r"S: 535 ", text), text
    assert re.search(r'\* summary: .*auth PLAIN user="%s" 535' % re.escape(user), text), text
    assert_no_secret(wrong, user, {"transcript": text, "stderr": tap.stderr()})


def test_control_bytes_escaped(relay):
    up, tap = relay
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO ctl.test", 250)
        c.send(b"NOOP \x1b[31mred\x00nul\x07bell\x7fdel\r\n")
        c.read_reply()
        c.cmd("QUIT", 221)
    tap.wait_summary(1)
    raw = tap.transcript_bytes()
    ctl = sorted({b for b in raw if (b < 0x20 and b != 0x0a) or b == 0x7f})
    assert not ctl, "raw control bytes %r in the transcript" % [hex(b) for b in ctl]
    line = [ln for ln in raw.decode("utf-8", "replace").splitlines() if " C: NOOP " in ln]
    assert len(line) == 1, "NOOP line not in transcript"
    assert "red" in line[0] and "nul" in line[0] and "bell" in line[0] and "del" in line[0]
    assert RECORD_RE.match(line[0]), line[0]


def test_message_counts_accepted_and_rejected(relay, account):
    from upstream import REJECT_MARKER
    up, tap = relay
    user, password = account
    with smtplib.SMTP("127.0.0.1", tap.port, timeout=10) as s:
        s.login(user, password)
        s.sendmail("alice@example.org", ["bob@example.net"], b"Subject: one\r\n\r\n1\r\n")
        try:
            s.sendmail("alice@example.org", ["bob@example.net"],
                       b"Subject: two\r\n" + REJECT_MARKER + b"\r\n2\r\n")
        except smtplib.SMTPDataError:
            pass
        s.sendmail("alice@example.org", ["bob@example.net"], b"Subject: three\r\n\r\n3\r\n")
    text = tap.wait_summary(1)
    assert re.search(r"\* summary: .* messages 2 accepted 1 rejected$", text, re.M), text
    assert len(re.findall(r"\* message: \d+ bytes", text)) == 3, text


def test_sessions_have_distinct_ids(relay):
    up, tap = relay
    ports = []
    for _ in range(3):
        with SmtpClient(tap.port) as c:
            ports.append(c.sock.getsockname()[1])
            c.read_reply()
            c.cmd("QUIT", 221)
    text = tap.wait_summary(3)
    recs = parse_transcript(text)
    ids = sessions_of(recs)
    assert len(ids) == 3, ids
    for sid, port in zip(ids, ports):
        first = session_records(recs, sid)[0]
        assert first["text"] == "connect from 127.0.0.1:%d to 127.0.0.1:%d" % (port, tap.port)


def test_implicit_transcript_has_no_starttls_dialogue(upstream_factory, tap_factory, pki):
    up = upstream_factory("implicit")
    tap = tap_factory(up.address, "--tls", "implicit", "--ca-file", pki.ca)
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("QUIT", 221)
    text = tap.wait_summary(1)
    assert "(implicit)" in text.splitlines()[0], text.splitlines()[0]
    assert "smtptap> STARTTLS" not in text
    assert re.search(r"\* TLS TLSv1\.[23] cipher ", text), text
    assert 'verification ok (name "127.0.0.1")' in text, text
    assert re.search(r"\* summary: .*tls TLSv1\.[23],", text), text


def test_auth_plain_with_authzid_and_utf8_password(upstream_factory, tap_factory, pki):
    user = "bob"
    password = 'p\u00e4ss "w\u00f6rd" \\ \u20ac-' + "Xq9"
    up = upstream_factory("starttls", users={user: password})
    tap = tap_factory(up.address, "--ca-file", pki.ca)
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO utf8.test", 250)
        c.cmd("AUTH PLAIN " + b64("admin\0" + user + "\0" + password), 235)
        c.cmd("QUIT", 221)
    text = tap.wait_summary(1)
    n = len(password.encode("utf-8"))
    # The mask may add diagnostics ("non-ASCII"), never content.
    assert re.search(r' C: AUTH PLAIN <masked> \u21d2 authzid="admin" user="bob"( \S.*?)? '
                     r'password=<masked, %d bytes(, [^>]*)?>' % n, text), \
        "AUTH PLAIN line (password is %d UTF-8 bytes):\n%s" % (n, text)
    assert_no_secret(password, user, {"transcript": text, "stderr": tap.stderr()})


def test_secret_checker_catches_leaks(account):
    """The leak detector itself: every form of the password must be caught."""
    user, password = account
    pw = password.encode()
    leaks = {
        "plain": password,
        "plain-truncated": password[:9],
        "plain-blob": b64(b"\0" + user.encode() + b"\0" + pw),
        "login-password": b64(pw),
        "embedded": b64(b"xy" + pw + b"tail"),
        "hex": pw.hex(),
    }
    for name, leak in leaks.items():
        try:
            assert_no_secret(password, user, {"text": "C: AUTH PLAIN " + leak})
        except AssertionError:
            continue
        raise AssertionError("leak form %r not detected" % name)
    # and no false positive on the masked form or on the user's own base64
    assert_no_secret(password, user, {"text": 'C: %s \u21d2 user="%s" password=<masked, 9 '
                                              'bytes>' % (b64(user), user)})
