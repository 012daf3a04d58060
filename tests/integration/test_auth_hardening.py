"""Hostile input around AUTH, BDAT and a refused DATA, against a server that quotes
every line it refuses (as sendmail does) and splits words at any white space.

- AUTH whose words are separated by anything but one space, and a password sent
  after the exchange ended: never written, in any case, in text or JSON;
- BDAT with odd white space: the chunk is counted, not logged line by line;
- a message sent after DATA was refused: counted, not written; the replies that quote
  its lines are masked too; the commands after it are shown again.
"""

import base64
import json
import re
import secrets
import socket
import threading

import pytest

from helpers import SmtpClient, assert_no_secret, poll

USER = "alice@example.org"


class EchoServer:
    """A plaintext SMTP server (smtptap --tls none). Words are split at any white
    space (bytes.split()); every refusal quotes the whole line. AUTH is refused with
    535; DATA with 554 when refuse_data; BDAT reads exactly N octets."""

    def __init__(self, refuse_data=False):
        self.refuse_data = refuse_data
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.chunks = []
        self.threads = []
        self.closed = False
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn):
        f = conn.makefile("rb")
        try:
            conn.sendall(b"220 echo.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                line = line.rstrip(b"\r\n")
                words = line.split()
                verb = words[0].upper() if words else b""
                if verb in (b"EHLO", b"HELO"):
                    conn.sendall(b"250-echo.test\r\n250-CHUNKING\r\n250-PIPELINING\r\n"
                                 b"250 AUTH PLAIN LOGIN\r\n")
                elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    conn.sendall(b"250 2.0.0 Ok\r\n")
                elif verb == b"DATA" and self.refuse_data:
                    conn.sendall(b"554 5.5.1 Error: no valid recipients\r\n")
                elif verb == b"BDAT" and len(words) >= 2 and words[1].isdigit():
                    self.chunks.append(f.read(int(words[1])))
                    conn.sendall(b"250 2.0.0 Ok: chunk\r\n")
                elif verb == b"AUTH":
                    conn.sendall(b"535 5.7.8 Authentication failed: \"" + line + b"\"\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"500 5.5.1 Command unrecognized: \"" + line + b"\"\r\n")
        except OSError:
            return
        finally:
            f.close()
            conn.close()

    def stop(self):
        self.closed = True
        self.sock.close()


@pytest.fixture
def echo_factory():
    servers = []

    def start(**kw):
        s = EchoServer(**kw)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


FORMATS = ["text", "json"]


def start(tap_factory, server, fmt):
    return tap_factory(server.address, "--tls", "none", "--format", fmt)


def outputs(tap):
    return {"transcript": tap.transcript(), "stdout": tap.stdout(),
            "stderr": tap.stderr()}


def records(tap, fmt):
    """(direction "C:", "S:" or "*", text) of every record of the transcript."""
    t = tap.transcript()
    if fmt == "json":
        return [({"C": "C:", "S": "S:"}.get(r.get("dir"), r.get("dir")),
                 r.get("text", "")) for r in
                (json.loads(x) for x in t.splitlines() if x.startswith("{"))]
    return [(r["dir"], r["text"]) for r in tap.records()]


def wait_summaries(tap, fmt, n):
    def done():
        return sum(1 for d, t in records(tap, fmt)
                   if d == "*" and t.startswith("summary: ")) >= n
    poll(done, what="%d summaries in %s" % (n, tap.log_path))


def assert_nowhere(marker, texts):
    for where, text in texts.items():
        assert marker.upper() not in text.upper(), "%r in %s:\n%s" % (marker, where,
                                                                      text)


def _plain(secret):
    return base64.b64encode(b"\0" + USER.encode() + b"\0" + secret.encode())


# ---------------------------------------------------------------------------------
# AUTH: odd white space, and what follows a failed exchange
# ---------------------------------------------------------------------------------

AUTH_FORMS = [b"AUTH PLAIN\t%s", b"AUTH\tPLAIN\t%s", b" AUTH PLAIN %s", b"aUtH  pLaIn  %s  ",
              b"AUTH PLAIN\x0b%s", b"AUTH PLAIN\x0c%s", b"AUTH PLAIN\r%s",
              b"AUTH PLAIN\x00%s", b"AUTH\x0bPLAIN\x0b%s", b"\x0bAUTH PLAIN %s",
              b"AUTHPLAIN%s", b"AUTH %s"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_auth_odd_whitespace_and_after(echo_factory, tap_factory, fmt):
    """Every form is answered with a refusal that quotes it; the password is then
    typed as a command, raw and in base64, and the server quotes that too."""
    server = echo_factory()
    tap = start(tap_factory, server, fmt)
    secret = "Canary-" + secrets.token_urlsafe(18)
    for form in AUTH_FORMS:
        with SmtpClient(tap.port) as c:
            c.read_reply()
            c.cmd("EHLO hostile.test", 250)
            code, _, _ = c.cmd(form % _plain(secret))
            assert code in (500, 535), form
            c.cmd(secret.encode(), 500)
            c.cmd(base64.b64encode(secret.encode()), 500)
            c.cmd("RSET", 250)
            c.cmd("QUIT", 221)
    wait_summaries(tap, fmt, len(AUTH_FORMS))
    texts = outputs(tap)
    assert_no_secret(secret, USER, texts)
    assert_nowhere(secret, texts)
    assert_nowhere(_plain(secret).decode()[4:-4], texts)
    recs = records(tap, fmt)
    # the commands that follow are shown, and so are the replies to them
    assert sum(1 for d, t in recs if d == "C:" and t == "RSET") == len(AUTH_FORMS)
    assert sum(1 for d, t in recs if d == "S:" and t.startswith("221 ")) == len(AUTH_FORMS)
    masked = [t for d, t in recs if d == "C:" and re.fullmatch(r"<masked, \d+ bytes>", t)]
    assert len(masked) == 2 * len(AUTH_FORMS), recs


# ---------------------------------------------------------------------------------
# BDAT: odd white space
# ---------------------------------------------------------------------------------

BDAT_FORMS = [b"BDAT\t%d\tLAST", b" BDAT %d LAST", b"bdat  %d  last  ", b"BDAT\x0b%d\x0bLAST",
              b"BDAT\x0c%d LAST", b"BDAT\r%d\rLAST", b"\tBDAT\t%d LAST\t"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_bdat_odd_whitespace(echo_factory, tap_factory, fmt):
    server = echo_factory()
    tap = start(tap_factory, server, fmt)
    marker = "Chunk-Marker-" + secrets.token_hex(8)
    chunk = ("Subject: x\r\n\r\n%s\r\nQUIT\r\nRSET\r\n.\r\n" % marker).encode()
    for form in BDAT_FORMS:
        with SmtpClient(tap.port) as c:
            c.read_reply()
            c.cmd("EHLO hostile.test", 250)
            c.cmd("MAIL FROM:<a@example.org>", 250)
            c.cmd("RCPT TO:<b@example.org>", 250)
            c.send(form % len(chunk) + b"\r\n" + chunk)
            assert c.read_reply()[0] == 250
            c.cmd("QUIT", 221)
    wait_summaries(tap, fmt, len(BDAT_FORMS))
    assert server.chunks == [chunk] * len(BDAT_FORMS)
    assert_nowhere(marker, outputs(tap))
    text = "\n".join(t for _, t in records(tap, fmt))
    assert len(re.findall(r"BDAT chunk: %d bytes, LAST" % len(chunk), text)) == \
        len(BDAT_FORMS), text
    assert len(re.findall(r"messages 1 accepted 0 rejected", text)) == len(BDAT_FORMS)


# ---------------------------------------------------------------------------------
# a message sent after DATA was refused
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_body_after_refused_data(echo_factory, tap_factory, fmt):
    server = echo_factory(refuse_data=True)
    tap = start(tap_factory, server, fmt)
    marker = "Body-Marker-" + secrets.token_hex(8)
    body = ("From: a@example.org\r\nSubject: %s\r\n\r\n%s line\r\nRSET\r\n.\r\n"
            % (marker, marker)).encode()
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO hostile.test", 250)
        c.cmd("MAIL FROM:<a@example.org>", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.cmd("DATA", 554)
        c.send(body)                    # a client that does not read the 554
        # six lines, each read as a command: five refused, the RSET taken
        codes = [c.read_reply()[0] for _ in range(6)]
        assert codes == [500, 500, 500, 500, 250, 500], codes
        c.cmd("QUIT", 221)
    wait_summaries(tap, fmt, 1)
    texts = outputs(tap)
    assert_nowhere(marker, texts)
    assert_nowhere("a@example.org\\r", texts)
    recs = records(tap, fmt)
    notes = [t for d, t in recs if d == "*"]
    assert any(t.startswith("message after the refused DATA") or
               t.startswith("message after the refused DATA, incomplete") for t in notes), \
        notes
    # nothing of the message is a command record; the QUIT after it is
    assert not any(d == "C:" and ("From:" in t or "Subject" in t or t == "RSET")
                   for d, t in recs), recs
    assert ("C:", "QUIT") in recs and any(d == "S:" and t.startswith("221 ")
                                          for d, t in recs), recs
