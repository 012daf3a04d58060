"""Every SASL mechanism of issue 3, from a real client, through smtptap, to an upstream
that implements it for real (saslserver.py).

For each client and mechanism: the message arrives unchanged, the upstream
authenticated the right user with that mechanism, the transcript names the mechanism
and shows the decoded user in the forms of DISPLAY (below), and a random canary secret
(password or bearer token) appears nowhere smtptap writes, in any encoding.

Clients: swaks (PLAIN, LOGIN, CRAM-MD5), curl (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER with
--oauth2-bearer), msmtp with GNU SASL (SCRAM-SHA-1, SCRAM-SHA-256, OAUTHBEARER, XOAUTH2,
DIGEST-MD5), Python's smtplib (PLAIN and LOGIN, with and without an initial response),
raw sockets for a pipelined session, BDAT chunks and a password that ends in LF.
Debian packages: swaks, libdigest-hmac-perl (swaks' CRAM-MD5), curl, msmtp
(libgsasl18), python3-aiosmtpd, python3-pytest.
"""

import base64
import os
import re
import secrets
import smtplib
import subprocess
import urllib.parse

import pytest

from helpers import (SmtpClient, aligned_b64, assert_no_secret, parse_transcript,
                     smtp_data_bytes)
from saslserver import HOSTNAME, REFUSED_RCPT, SCRAM_ITERATIONS, SaslUpstream

# ---------------------------------------------------------------------------------
# What the transcript must show: one table, to be aligned with the decoders at merge.
# Each entry is a regex searched (re.M) in the session's transcript; "{user}" is the
# decoded user (escaped), "{n}" the length of the client's secret in bytes.
# ---------------------------------------------------------------------------------

DISPLAY = {
    "PLAIN": [
        r' C: (AUTH PLAIN )?<masked> ⇒ authzid="" user="{user}" password=<masked, {n} bytes',
    ],
    "LOGIN": [
        r' C: (AUTH LOGIN )?\S+ ⇒ user="{user}"$',
        r' S: 334 UGFzc3dvcmQ6 ⇒ "Password:"$',
        r' C: <masked> ⇒ password=<masked, {n} bytes',
    ],
    "CRAM-MD5": [
        r' S: 334 \S+ ⇒ "<\d+\.\d+@' + re.escape(HOSTNAME) + r'>"$',   # challenge decoded
        r' C: <masked> ⇒ .*user="{user}"',
    ],
    "XOAUTH2": [
        r' C: .*⇒ .*user="{user}".*token=<masked, {n} bytes',
    ],
    "OAUTHBEARER": [
        r' C: .*⇒ .*\b(a|authzid|user)="?{user}"?[ ,].*token=<masked, {n} bytes',
    ],
    "SCRAM-SHA-1": [
        r' C: .*⇒ .*user="{user}"',
        r'(\bi=%d\b|iterations[ =]%d)' % (SCRAM_ITERATIONS, SCRAM_ITERATIONS),
        r' C: .*⇒ .*\b(p|proof)=<masked',
    ],
    "DIGEST-MD5": [
        r' C: .*⇒ .*\b(username|user)="{user}"',
        r' C: .*⇒ .*\bresponse=<masked',
    ],
}
DISPLAY["SCRAM-SHA-256"] = DISPLAY["SCRAM-SHA-1"]
# the prompt for the user name, shown when the client sends no initial response
LOGIN_USER_PROMPT = r' S: 334 VXNlcm5hbWU6 ⇒ "Username:"$'
# the server's base64 JSON error (XOAUTH2, OAUTHBEARER) decoded
OAUTH_ERROR = r' S: 334 \S+ ⇒ .*status.*401'
SUMMARY = r'\* summary: .*\bauth {mech} user="{user}" {code} \({verdict}\)'
# after a 334 error the client gave up (curl): no final reply, but the attempt is named
SUMMARY_NO_ANSWER = r'\* summary: .*\bauth {mech} user="{user}"'
# AUTH PLAIN whose password ends in LF
TRAILING_LF = r' C: AUTH PLAIN <masked> ⇒ .*password=<masked, {n} bytes, ends with LF \(0x0a\)>'
# each BDAT chunk listed (a note, not the C: BDAT line)
BDAT_CHUNK = r' \* .*BDAT.*\b{n} bytes{last}'
# under PIPELINING the refused RCPT's 550 names its command (the reply text itself does
# not carry the address), unless the transcript logs it right after that command
# Also required (check_hidden): the values of saslserver's AuthAttempt.hidden never
# appear: CRAM-MD5 digest, SCRAM client proof and server signature (v=), DIGEST-MD5
# response.
PIPELINED_REPLY = r' S: 550 .*(RCPT TO:<%s>|%s)' % (re.escape(REFUSED_RCPT),
                                                   re.escape(REFUSED_RCPT))

FROM = "alice@example.org"
RCPT = "bob@example.net"

# (client, mechanism, user name, TLS mode to the upstream, initial response for smtplib)
CASES = [
    ("swaks", "PLAIN", "alice@example.org", "starttls", None),
    ("swaks", "LOGIN", "alice@example.org", "starttls", None),
    ("swaks", "CRAM-MD5", "alice", "starttls", None),
    ("curl", "PLAIN", "alice@example.org", "starttls", None),
    ("curl", "LOGIN", "alice@example.org", "starttls", None),
    ("curl", "XOAUTH2", "alice@example.org", "starttls", None),
    ("curl", "OAUTHBEARER", "alice@example.org", "starttls", None),
    ("msmtp", "SCRAM-SHA-1", "alice", "starttls", None),
    ("msmtp", "SCRAM-SHA-256", "alice", "starttls", None),
    ("msmtp", "OAUTHBEARER", "alice@example.org", "starttls", None),
    ("msmtp", "XOAUTH2", "alice@example.org", "starttls", None),
    ("msmtp", "DIGEST-MD5", "alice", "starttls", None),
    ("msmtp", "CRAM-MD5", "alice", "starttls", None),
    ("smtplib", "PLAIN", "alice@example.org", "starttls", True),
    ("smtplib", "PLAIN", "alice@example.org", "starttls", False),
    ("smtplib", "LOGIN", "alice@example.org", "starttls", True),
    ("smtplib", "LOGIN", "alice@example.org", "starttls", False),
    # implicit TLS to the upstream (as on port 465)
    ("msmtp", "SCRAM-SHA-256", "alice", "implicit", None),
    ("swaks", "CRAM-MD5", "alice", "implicit", None),
    ("curl", "XOAUTH2", "alice@example.org", "implicit", None),
]


def case_id(c):
    client, mech, _, mode, ir = c
    s = "%s-%s" % (client, mech)
    if ir is not None:
        s += "-ir" if ir else "-noir"
    return s + ("-implicit" if mode == "implicit" else "")


# ---------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------

def canary(kind="pw"):
    return "Canary-%s-%s" % (kind, secrets.token_urlsafe(18))


@pytest.fixture
def sasl_factory(pki):
    ups = []

    def start(user, secret, mechanisms, mode="starttls", **kw):
        crt, key = pki.pair("good")
        up = SaslUpstream(mode, crt, key, user, secret, mechanisms=mechanisms,
                          **kw).start()
        ups.append(up)
        return up

    yield start
    for up in ups:
        up.stop()


def start_tap(tap_factory, pki, up, mode):
    opts = ["--ca-file", pki.ca]
    if mode == "implicit":
        opts += ["--tls", "implicit"]
    return tap_factory(up.address, *opts)


def message(tag):
    return (b"From: Alice <alice@example.org>\r\n"
            b"To: Bob <bob@example.net>\r\n"
            b"Subject: via " + tag.encode() + b"\r\n"
            b"\r\n"
            b"caf\xc3\xa9 8-bit body\r\n"
            b".leading dot\r\n"
            b"end\r\n")


def client_dir(tmp_path):
    """Client-side files (they hold the secret) live apart from smtptap's outputs."""
    d = tmp_path / "client"
    d.mkdir(exist_ok=True)
    return d


def run_client(client, mech, port, user, secret, msg, cdir, ir=None):
    """Send MSG with CLIENT and MECH through smtptap on PORT. Returns (ok, output):
    ok is True when the client says the message was sent."""
    if client == "smtplib":
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                s.ehlo("smtplib.test")
                s.user, s.password = user, secret
                code, resp = s.auth(mech, getattr(s, "auth_" + mech.lower()),
                                    initial_response_ok=ir)
                assert code == 235, (code, resp)
                assert s.sendmail(FROM, [RCPT], msg) == {}
        except smtplib.SMTPAuthenticationError as e:
            assert e.smtp_code == 535, e
            return False, repr(e)
        return True, ""
    eml = cdir / "msg.eml"
    if client == "swaks":
        eml.write_bytes(msg[:-2])  # swaks adds the last CRLF itself
        argv = ["swaks", "--server", "127.0.0.1:%d" % port, "--auth", mech,
                "--auth-user", user, "--auth-password", secret, "--from", FROM,
                "--to", RCPT, "--helo", "swaks.test", "--data", "@" + str(eml),
                "--timeout", "10"]
        fail_rc = 28                    # "no authentication type succeeded"
    elif client == "curl":
        eml.write_bytes(msg)
        argv = ["curl", "-sS", "--max-time", "15",
                "smtp://127.0.0.1:%d/curl.test" % port, "--mail-from", FROM,
                "--mail-rcpt", RCPT, "--upload-file", str(eml)]
        if mech in ("XOAUTH2", "OAUTHBEARER"):
            # curl (7.88) picks OAUTHBEARER whenever the server offers it, even with
            # --login-options AUTH=XOAUTH2: the XOAUTH2 upstream offers XOAUTH2 only
            argv += ["--oauth2-bearer", secret, "-u", user + ":"]
        else:
            argv += ["-u", "%s:%s" % (user, secret), "--login-options", "AUTH=" + mech]
        fail_rc = 67                    # CURLE_LOGIN_DENIED
    elif client == "msmtp":
        rc = cdir / "msmtprc"
        rc.write_text("defaults\nlogfile\nsyslog off\n"
                      "account default\nhost 127.0.0.1\nport %d\ntls off\n"
                      "auth %s\nuser %s\npassword %s\nfrom %s\ndomain msmtp.test\n"
                      "set_date_header off\nset_msgid_header off\n"
                      % (port, mech.lower(), user, secret, FROM))
        os.chmod(rc, 0o600)
        argv = ["msmtp", "-C", str(rc), RCPT]
        fail_rc = 77                    # EX_NOPERM: authentication failed
    else:
        raise ValueError(client)
    proc = subprocess.run(argv, input=msg if client == "msmtp" else None,
                          capture_output=True, timeout=20)
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode in (0, fail_rc), "%s exited %d:\n%s" % (client,
                                                                   proc.returncode, out)
    return proc.returncode == 0, out


def smtptap_outputs(tap, tmp_path):
    """Every file smtptap could have written (its transcript, stdout, stderr and
    anything else in its directory), as bytes; the client's files are left out."""
    out = {}
    cdir = str(tmp_path / "client")
    for root, dirs, files in os.walk(str(tmp_path)):
        if root.startswith(cdir):
            continue
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, str(tmp_path))] = fh.read()
    assert tap.log_path in [os.path.join(str(tmp_path), k) for k in out], out.keys()
    return out


def encodings(secret, user):
    """{description: bytes}: every form in which SECRET must not appear. (helpers'
    assert_no_secret also checks 8-character pieces of the password and of its base64.)"""
    pw = secret.encode()
    u = user.encode()
    forms = {
        "raw": pw,
        "hex": pw.hex().encode(),
        "HEX": pw.hex().upper().encode(),
        "UTF-16LE": secret.encode("utf-16-le"),
        "UTF-16BE": secret.encode("utf-16-be"),
        "percent-encoded": urllib.parse.quote(secret, safe="").encode(),
        "reversed": pw[::-1],
    }
    for i, inner in enumerate(aligned_b64(pw)):
        forms["base64 alignment %d" % i] = inner.encode()
        forms["base64url alignment %d" % i] = inner.replace("+", "-").replace(
            "/", "_").encode()
    # the whole SASL payloads that carry the secret
    payloads = {
        "PLAIN": b"\0" + u + b"\0" + pw,
        "LOGIN password": pw,
        "XOAUTH2": b"user=" + u + b"\x01auth=Bearer " + pw + b"\x01\x01",
        "OAUTHBEARER": b"n,a=" + u + b",\x01auth=Bearer " + pw + b"\x01\x01",
        "bearer": b"Bearer " + pw,
    }
    for name, p in payloads.items():
        forms["base64(%s payload)" % name] = base64.b64encode(p)
    return forms


def sweep(secrets_, user, tap, tmp_path):
    """No SECRETS in any form in any smtptap output file or stream."""
    outputs = smtptap_outputs(tap, tmp_path)
    for s in secrets_:
        for where, data in outputs.items():
            for desc, form in encodings(s, user).items():
                assert form not in data, "secret found as %s in %s" % (desc, where)
        assert_no_secret(s, user, {where: data.decode("utf-8", "replace")
                                   for where, data in outputs.items()})


def session_text(tap):
    """The transcript, once the (only) session has written its summary."""
    tap.wait_summary(1, timeout=5)
    return tap.transcript()


def check_display(text, mech, user, n):
    missing = []
    for rx in DISPLAY[mech]:
        rx = rx.replace("{user}", re.escape(user)).replace("{n}", str(n))
        if not re.search(rx, text, re.M):
            missing.append(rx)
    assert not missing, "transcript lacks the decoded %s forms:\n  %s\n--- transcript ---\n%s" \
        % (mech, "\n  ".join(missing), text)


def check_summary(text, mech, user, code):
    rx = SUMMARY.format(mech=re.escape(mech), user=re.escape(user), code=code,
                        verdict="accepted" if code == 235 else "rejected")
    assert re.search(rx, text, re.M), "summary does not match %r:\n%s" % (rx, text)


def check_hidden(up, text):
    """Values derived from the secret that the decoder must mask (CRAM-MD5 digest,
    SCRAM proof and server signature, DIGEST-MD5 response)."""
    for a in up.auth_attempts:
        for name, value in a.hidden.items():
            assert value and value not in text, \
                "%s %s %r shown in the transcript:\n%s" % (a.mechanism, name, value, text)


# ---------------------------------------------------------------------------------
# accepted logins
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_accepted(sasl_factory, tap_factory, pki, tmp_path, case):
    client, mech, user, mode, ir = case
    secret = canary("token" if "OAUTH" in mech else "pw")
    up = sasl_factory(user, secret, [mech], mode=mode)
    tap = start_tap(tap_factory, pki, up, mode)
    msg = message(case_id(case))
    ok, out = run_client(client, mech, tap.port, user, secret, msg, client_dir(tmp_path),
                         ir)
    assert ok, "%s did not send the message:\n%s" % (client, out)

    (d,) = up.wait_deliveries(1)
    assert d.content == msg, "message changed in transit:\nsent %r\ngot  %r" % (
        msg, d.content)
    assert (d.mail_from, d.rcpt_tos) == (FROM, [RCPT])
    assert (d.mechanism, d.user) == (mech, user), "upstream authenticated %s %r" % (
        d.mechanism, d.user)
    assert [(a.mechanism, a.user, a.success) for a in up.auth_attempts] == \
        [(mech, user, True)]
    assert d.tls_version == "TLSv1.3"

    text = session_text(tap)
    # the mechanism is named, the login accepted; the decoded forms (table above)
    assert re.search(r" C: AUTH %s\b" % re.escape(mech), text, re.I), text
    assert re.search(r" S: 235 ", text), text
    sweep([secret], user, tap, tmp_path)
    if re.search(r" C: AUTH LOGIN$", text, re.M):     # no initial response
        assert re.search(LOGIN_USER_PROMPT, text, re.M), text
    check_display(text, mech, user, len(secret))
    check_hidden(up, text)
    check_summary(text, mech, user, 235)


# ---------------------------------------------------------------------------------
# rejected logins: wrong password or token, with every client that can send one
# ---------------------------------------------------------------------------------

REJECT_CASES = [c for c in CASES if c[3] == "starttls"]


@pytest.mark.parametrize("case", REJECT_CASES, ids=case_id)
def test_rejected(sasl_factory, tap_factory, pki, tmp_path, case):
    client, mech, user, mode, ir = case
    right = canary("right")
    wrong = canary("wrong")
    up = sasl_factory(user, right, [mech], mode=mode)
    tap = start_tap(tap_factory, pki, up, mode)
    ok, out = run_client(client, mech, tap.port, user, wrong, message("reject"),
                         client_dir(tmp_path), ir)
    assert not ok, "%s sent the message with a wrong secret:\n%s" % (client, out)
    attempts = up.wait_attempts(1)
    assert [(a.mechanism, a.user, a.success) for a in attempts] == \
        [(mech, user, False)]
    assert up.deliveries == []

    text = session_text(tap)
    sweep([right, wrong], user, tap, tmp_path)
    if mech in ("XOAUTH2", "OAUTHBEARER"):
        assert re.search(OAUTH_ERROR, text, re.M), \
            "the server's JSON error is not decoded:\n" + text
    check_display(text, mech, user, len(wrong))
    check_hidden(up, text)
    if (client, mech) == ("curl", "XOAUTH2"):
        # curl gives up at XOAUTH2's 334 error instead of sending the empty
        # response (for OAUTHBEARER it acknowledges with ^A, RFC 7628)
        assert not re.search(r" S: 535 ", text), text
        rx = SUMMARY_NO_ANSWER.format(mech=re.escape(mech), user=re.escape(user))
        assert re.search(rx, text, re.M), "summary does not name the attempt:\n" + text
    else:
        assert re.search(r" S: 535 5\.7\.8 ", text), text
        check_summary(text, mech, user, 535)


# ---------------------------------------------------------------------------------
# raw clients
# ---------------------------------------------------------------------------------

def raw_login(c, user, secret):
    c.cmd("EHLO raw.test", 250)
    blob = base64.b64encode(b"\0" + user.encode() + b"\0" + secret.encode()).decode()
    c.cmd("AUTH PLAIN " + blob, 235)


def test_password_with_trailing_newline(sasl_factory, tap_factory, pki):
    user = "alice@example.org"
    secret = canary()
    up = sasl_factory(user, secret, ["PLAIN"])
    tap = start_tap(tap_factory, pki, up, "starttls")
    sent = secret + "\n"            # the "echo without -n" mistake
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO raw.test", 250)
        blob = base64.b64encode(b"\0" + user.encode() + b"\0" + sent.encode()).decode()
        c.cmd("AUTH PLAIN " + blob, 535)
        c.cmd("QUIT", 221)
    assert [(a.mechanism, a.user, a.success) for a in up.auth_attempts] == \
        [("PLAIN", user, False)]
    text = session_text(tap)
    rx = TRAILING_LF.replace("{n}", str(len(sent)))
    assert re.search(rx, text, re.M), "no 'ends with LF' remark:\n" + text
    check_summary(text, "PLAIN", user, 535)
    assert_no_secret(sent, user, {"transcript": text, "stdout": tap.stdout(),
                                  "stderr": tap.stderr()})
    assert_no_secret(secret, user, {"transcript": text, "stdout": tap.stdout(),
                                    "stderr": tap.stderr()})


def _pipelined_session(sasl_factory, tap_factory, pki, tmp_path):
    user = "alice@example.org"
    secret = canary()
    up = sasl_factory(user, secret, ["PLAIN"])
    tap = start_tap(tap_factory, pki, up, "starttls")
    msg = message("pipelining")
    rcpts = ["bob@example.net", REFUSED_RCPT, "carol@example.net"]
    with SmtpClient(tap.port) as c:
        c.read_reply()
        code, lines, _ = c.cmd("EHLO raw.test", 250)
        assert any(ln[4:].upper() == "PIPELINING" for ln in lines), lines
        blob = base64.b64encode(b"\0" + user.encode() + b"\0" + secret.encode())
        c.cmd(b"AUTH PLAIN " + blob, 235)
        # one write: MAIL, three RCPT, DATA (RFC 2920)
        c.send("MAIL FROM:<%s>\r\n" % FROM + "".join("RCPT TO:<%s>\r\n" % r
                                                      for r in rcpts) + "DATA\r\n")
        codes = [c.read_reply()[0] for _ in range(5)]
        assert codes == [250, 250, 550, 250, 354], codes
        c.send(smtp_data_bytes(msg))
        assert c.read_reply()[0] == 250
        c.cmd("QUIT", 221)
    (d,) = up.wait_deliveries(1)
    assert d.content == msg and d.rcpt_tos == [rcpts[0], rcpts[2]], d
    assert (d.mechanism, d.user) == ("PLAIN", user)
    text = session_text(tap)
    sweep([secret], user, tap, tmp_path)
    return text, rcpts


def test_pipelined_replies_in_order(sasl_factory, tap_factory, pki, tmp_path):
    text, rcpts = _pipelined_session(sasl_factory, tap_factory, pki, tmp_path)
    recs = [r for r in parse_transcript(text) if r["dir"] in ("C:", "S:")]
    i = next(k for k, r in enumerate(recs) if r["text"].upper().startswith("MAIL FROM"))
    tail = recs[i:]
    cmds = [r["text"] for r in tail if r["dir"] == "C:"][:5]
    assert cmds == ["MAIL FROM:<%s>" % FROM] + ["RCPT TO:<%s>" % r for r in rcpts] + \
        ["DATA"], cmds
    replies = [r["text"][:3] for r in tail if r["dir"] == "S:"][:5]
    assert replies == ["250", "250", "550", "250", "354"], replies
    # every reply is logged after its own command
    pos_c = [k for k, r in enumerate(tail) if r["dir"] == "C:"][:5]
    pos_s = [k for k, r in enumerate(tail) if r["dir"] == "S:"][:5]
    assert all(s > c for c, s in zip(pos_c, pos_s)), tail
    check_summary(text, "PLAIN", "alice@example.org", 235)
    assert re.search(r"\* summary: .*messages 1 accepted 0 rejected", text), text


def test_pipelined_reply_paired_with_command(sasl_factory, tap_factory, pki, tmp_path):
    """The refused RCPT's 550 is visibly paired with its command: either it names
    the command or it follows it directly (no other command in between)."""
    text, rcpts = _pipelined_session(sasl_factory, tap_factory, pki, tmp_path)
    recs = [r for r in parse_transcript(text) if r["dir"] in ("C:", "S:")]
    k = next(k for k, r in enumerate(recs) if r["dir"] == "S:" and
             r["text"].startswith("550"))
    follows = recs[k - 1]["dir"] == "C:" and REFUSED_RCPT in recs[k - 1]["text"]
    named = re.search(PIPELINED_REPLY, text, re.M)
    assert follows or named, "the 550 is not paired with RCPT TO:<%s>:\n%s" % (
        REFUSED_RCPT, text)


def test_bdat_chunks(sasl_factory, tap_factory, pki, tmp_path):
    user = "alice@example.org"
    secret = canary()
    up = sasl_factory(user, secret, ["PLAIN"], chunking=True)
    tap = start_tap(tap_factory, pki, up, "starttls")
    marker = "X-Chunk-Marker: " + secrets.token_hex(8)
    # chunk contents that a line parser would take for commands, a header and
    # the end of DATA: smtptap must skip exactly N octets and never scan them
    chunks = [
        (marker + "\r\nSubject: bdat\r\n\r\n").encode(),
        b".\r\nQUIT\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nRSET\r\n" + b"\xff\x00bin",
        b"\r\n.\r\nend\r\n",
    ]
    with SmtpClient(tap.port) as c:
        c.read_reply()
        code, lines, _ = c.cmd("EHLO raw.test", 250)
        assert any(ln[4:].upper() == "CHUNKING" for ln in lines), lines
        blob = base64.b64encode(b"\0" + user.encode() + b"\0" + secret.encode())
        c.cmd(b"AUTH PLAIN " + blob, 235)
        c.cmd("MAIL FROM:<%s>" % FROM, 250)
        c.cmd("RCPT TO:<%s>" % RCPT, 250)
        # first chunk: command and data in one write; second: command, then data
        c.send(b"BDAT %d\r\n" % len(chunks[0]) + chunks[0])
        assert c.read_reply()[0] == 250
        c.send(b"BDAT %d\r\n" % len(chunks[1]))
        c.send(chunks[1])
        assert c.read_reply()[0] == 250
        c.send(b"BDAT %d LAST\r\n" % len(chunks[2]) + chunks[2])
        code, lines, _ = c.read_reply()
        assert code == 250, lines
        c.cmd("QUIT", 221)
    (d,) = up.wait_deliveries(1)
    assert d.content == b"".join(chunks), d.content
    assert d.chunks == [len(x) for x in chunks]
    assert (d.mechanism, d.user) == ("PLAIN", user)
    text = session_text(tap)
    for i, ch in enumerate(chunks):
        rx = BDAT_CHUNK.format(n=len(ch), last=", LAST" if i == 2 else "")
        assert re.search(rx, text, re.M), "chunk %d (%d bytes) not listed:\n%s" % (
            i, len(ch), text)
    # nothing inside the chunks was parsed as a command: the first chunk's
    # header section is shown as headers, as with DATA, and nothing else
    assert text.count(marker) == 1, text
    assert len(re.findall(r" C: \(header\) " + re.escape(marker) + "$", text, re.M)) == 1, text
    assert len(re.findall(r" C: AUTH ", text)) == 1, text
    assert len(re.findall(r" C: QUIT", text)) == 1, text
    assert not re.search(r" C: RSET", text), text
    assert re.search(r"\* summary: .*messages 1 accepted 0 rejected", text), text
    sweep([secret], user, tap, tmp_path)

