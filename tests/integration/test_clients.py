"""Real mail clients (swaks, curl, msmtp, smtplib) through smtptap, in cleartext on the
MUA side, with AUTH PLAIN and LOGIN, to the STARTTLS aiosmtpd upstream."""

import re
import smtplib
import subprocess

import pytest

from helpers import assert_no_secret

FROM = "alice@example.org"
RCPT = "bob@example.net"


def message(client):
    return (b"From: Alice <alice@example.org>\r\n"
            b"To: Bob <bob@example.net>\r\n"
            b"Subject: via " + client.encode() + b"\r\n"
            b"\r\n"
            b"caf\xc3\xa9 8-bit body\r\n"
            b".leading dot\r\n"
            + b"w" * 900 + b"\r\n"
            b"end\r\n")


def run(argv, **kw):
    proc = subprocess.run(argv, capture_output=True, timeout=20, **kw)
    out = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, "%s exited %d:\n%s" % (argv[0], proc.returncode, out)
    return out


def check(up, tap, user, password, msg, mech):
    (d,) = up.wait_deliveries(1)
    assert d.content == msg, "message changed in transit:\nsent %r\ngot  %r" % (msg,
                                                                                 d.content)
    assert d.mail_from == FROM and d.rcpt_tos == [RCPT], (d.mail_from, d.rcpt_tos)
    assert d.user == user, "upstream authenticated %r" % d.user
    text = tap.wait_summary(1)
    # the decoded user, commands (verbs in the client's own case: smtplib sends
    # "mail FROM:"), reply codes and TLS version are in the transcript
    assert re.search(r"(?i) C: MAIL FROM:<%s>" % re.escape(FROM), text), text
    assert re.search(r"(?i) C: RCPT TO:<%s>" % re.escape(RCPT), text), text
    assert re.search(r"(?i) C: DATA$", text, re.M), text
    for code in ("220", "250", "235", "354", "221"):
        assert re.search(r" S: %s[ -]" % code, text), "no S: %s in transcript" % code
    assert re.search(r" \* TLS TLSv1\.3 cipher ", text), text
    assert re.search(r" C: \(header\) Subject: via ", text), "Subject header not shown:\n" + text
    # size: the exact rule (dot-stuffing not counted) is checked in test_transcript.py
    lines = msg.split(b"\r\n")[:-1]
    stuffed = sum(1 for ln in lines if ln.startswith(b"."))
    m = re.search(r"\* message: (\d+) bytes, (\d+) lines, longest line (\d+) bytes", text)
    assert m, "no message note:\n" + text
    assert len(msg) <= int(m.group(1)) <= len(msg) + stuffed, (m.group(0), len(msg))
    assert int(m.group(2)) == len(lines), (m.group(0), len(lines))
    assert int(m.group(3)) == max(len(ln) for ln in lines), m.group(0)
    assert "8-bit body" not in text, "message body in the transcript"
    if mech == "PLAIN":
        assert re.search(r'(AUTH PLAIN )?<masked> \u21d2 authzid="" user="%s" '
                         r"password=<masked, %d bytes>" % (re.escape(user), len(password)),
                         text), "decoded AUTH PLAIN line missing:\n" + text
    else:
        assert re.search(r' C: \S+ \u21d2 user="%s"' % re.escape(user), text), \
            "decoded AUTH LOGIN user missing:\n" + text
        assert re.search(r" C: <masked> \u21d2 password=<masked, %d bytes>" % len(password),
                         text), "masked AUTH LOGIN password missing:\n" + text
    # (the exact summary format is checked in test_transcript.py)
    assert re.search(r'\* summary: .*auth %s user="%s" 235\b.*, messages 1 accepted 0 '
                     r'rejected$' % (mech, re.escape(user)), text, re.M), text
    assert_no_secret(password, user, {"transcript": text, "smtptap stdout": tap.stdout(),
                                      "smtptap stderr": tap.stderr()})
    return text


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks(relay, account, tmp_path, mech):
    up, tap = relay
    user, password = account
    msg = message("swaks " + mech)
    f = tmp_path / "msg.eml"
    f.write_bytes(msg[:-2])  # swaks adds the final CRLF itself
    run(["swaks", "--server", "127.0.0.1:%d" % tap.port, "--auth", mech,
         "--auth-user", user, "--auth-password", password, "--from", FROM, "--to", RCPT,
         "--helo", "swaks.test", "--data", "@" + str(f), "--timeout", "10"])
    check(up, tap, user, password, msg, mech)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_curl(relay, account, tmp_path, mech):
    up, tap = relay
    user, password = account
    msg = message("curl " + mech)
    f = tmp_path / "msg.eml"
    f.write_bytes(msg)
    run(["curl", "-sS", "--max-time", "15", "smtp://127.0.0.1:%d/curl.test" % tap.port,
         "-u", "%s:%s" % (user, password), "--login-options", "AUTH=" + mech,
         "--mail-from", FROM, "--mail-rcpt", RCPT, "--upload-file", str(f)])
    check(up, tap, user, password, msg, mech)


def test_msmtp_plain(relay, account):
    up, tap = relay
    user, password = account
    msg = message("msmtp")
    run(["msmtp", "--host=127.0.0.1", "--port=%d" % tap.port, "--tls=off", "--auth=plain",
         "--user=" + user, "--passwordeval=printf %s '" + password + "'",
         "--set-date-header=off", "--set-msgid=off", "--domain=msmtp.test",
         "--from=" + FROM, RCPT], input=msg)
    check(up, tap, user, password, msg, "PLAIN")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_smtplib(relay, account, mech):
    up, tap = relay
    user, password = account
    msg = message("smtplib " + mech)
    with smtplib.SMTP("127.0.0.1", tap.port, timeout=10) as s:
        s.ehlo("smtplib.test")
        s.user, s.password = user, password
        # LOGIN without an initial response: the classic Username:/Password: dialogue
        code, resp = s.auth(mech, getattr(s, "auth_" + mech.lower()),
                            initial_response_ok=(mech == "PLAIN"))
        assert code == 235, (code, resp)
        assert s.sendmail(FROM, [RCPT], msg) == {}
    check(up, tap, user, password, msg, mech)


def test_wrong_password_rejected_and_masked(relay, account):
    up, tap = relay
    user, _ = account
    wrong = "Wr0ng-" + "pass-QhX3v!"
    with smtplib.SMTP("127.0.0.1", tap.port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(user, wrong)
        assert e.value.smtp_code == 535
    text = tap.wait_summary(1)
    assert up.deliveries == []
    assert_no_secret(wrong, user, {"transcript": text, "stderr": tap.stderr(),
                                   "stdout": tap.stdout()})
