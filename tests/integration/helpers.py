"""Helpers shared by the smtptap integration tests.

Tap          a running smtptap process (port, transcript, stdout/stderr, stop)
SmtpClient   a minimal raw-socket SMTP client that shows exactly what comes back
read_until_close / expect_421   for the failure cases
forbidden_forms / assert_no_secret   the password must not leak in any form
parse_transcript / RECORD_RE   the transcript format of smtptap(1), TRANSCRIPT
"""

import base64
import os
import re
import signal
import socket
import subprocess
import time

DEFAULT_DEADLINE = 10.0

LISTENING_RE = re.compile(r"listening on \[?([0-9a-fA-F:.]+)\]?:(\d+)")

# "<time> <session> <dir> <text>"
RECORD_RE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) "
    r"(?P<session>-|[0-9a-f]{8}) "
    r"(?P<dir>C:|S:|\*) "
    r"(?P<text>.*)$")

SANITIZER_MARKERS = ("Sanitizer", "runtime error", "LeakSanitizer", "AddressSanitizer")


def poll(predicate, timeout=DEFAULT_DEADLINE, interval=0.01, what="condition"):
    """Call PREDICATE until it returns a true value or TIMEOUT passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------------
# the smtptap process
# ---------------------------------------------------------------------------------

class Tap:
    def __init__(self, binary, workdir, args, name="tap", listen="127.0.0.1:0"):
        self.binary = binary
        self.workdir = workdir
        self.args = list(args)
        self.name = name
        self.listen = listen
        self.log_path = os.path.join(workdir, name + ".transcript")
        self.out_path = os.path.join(workdir, name + ".stdout")
        self.err_path = os.path.join(workdir, name + ".stderr")
        self.proc = None
        self.port = None
        self.host = None
        self.stopped = False

    @property
    def argv(self):
        return [self.binary, "-l", self.listen, "-o", self.log_path] + self.args

    def start(self, deadline=DEFAULT_DEADLINE):
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err)

        def listening():
            m = LISTENING_RE.search(self.transcript())
            if m:
                return m
            if self.proc.poll() is not None:
                raise AssertionError(
                    "smtptap exited with %s before listening\nargv: %s\nstderr: %s\n"
                    "transcript: %s" % (self.proc.returncode, self.argv, self.stderr(),
                                        self.transcript()))
            return None

        m = poll(listening, deadline, what="smtptap's 'listening on' line in " +
                 self.log_path)
        self.host, self.port = m.group(1), int(m.group(2))
        return self

    # -- outputs -------------------------------------------------------------------

    @staticmethod
    def _read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def transcript_bytes(self):
        return self._read(self.log_path)

    def transcript(self):
        return self.transcript_bytes().decode("utf-8", "replace")

    def stdout(self):
        return self._read(self.out_path).decode("utf-8", "replace")

    def stderr(self):
        return self._read(self.err_path).decode("utf-8", "replace")

    def records(self):
        return parse_transcript(self.transcript())

    def wait_transcript(self, pattern, timeout=DEFAULT_DEADLINE, flags=re.M):
        """Wait until the transcript matches PATTERN (a regex); return the match."""
        rx = re.compile(pattern, flags)

        def found():
            return rx.search(self.transcript())
        try:
            return poll(found, timeout, what="transcript to match %r" % pattern)
        except AssertionError as e:
            raise AssertionError("%s\n--- transcript ---\n%s" % (e, self.transcript()))

    def wait_summary(self, count=1, timeout=DEFAULT_DEADLINE):
        """Wait until COUNT sessions wrote their summary line; return the transcript."""
        def done():
            t = self.transcript()
            return t if len(re.findall(r"^\S+ [0-9a-f]{8} \* summary: ", t, re.M)) >= count \
                else None
        try:
            return poll(done, timeout, what="%d summary line(s)" % count)
        except AssertionError as e:
            raise AssertionError("%s\n--- transcript ---\n%s" % (e, self.transcript()))

    def all_output(self):
        return self.transcript() + "\n" + self.stdout() + "\n" + self.stderr()

    # -- life cycle ----------------------------------------------------------------

    def wait_exit(self, timeout=DEFAULT_DEADLINE):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("smtptap did not exit within %.1fs" % timeout)

    def stop(self):
        if self.proc is None or self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def sanitizer_report(self):
        err = self.stderr() + self.stdout()
        hits = [m for m in SANITIZER_MARKERS if m in err]
        return err if hits else None


# ---------------------------------------------------------------------------------
# SMTP clients
# ---------------------------------------------------------------------------------

class SmtpClient:
    """A raw SMTP client: every reply is returned as (code, [lines], raw bytes)."""

    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_DEADLINE):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.log = b""  # every byte received

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by smtptap; received so far: %r" % self.log)
        self.buf += data
        self.log += data

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_reply(self):
        lines = []
        raw = b""
        while True:
            line = self.read_line()
            raw += line + b"\r\n"
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        code = int(lines[-1][:3]) if lines[-1][:3].isdigit() else None
        return code, lines, raw

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line, expect=None):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        code, lines, raw = self.read_reply()
        if expect is not None:
            assert code == expect, "%r answered %r, expected %d" % (line, lines, expect)
        return code, lines, raw

    def read_until_close(self, timeout=DEFAULT_DEADLINE):
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError("connection not closed within %.1fs; got %r" % (
                    timeout, data))
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            self.log += chunk
        return data

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_until_close(port, timeout=DEFAULT_DEADLINE, host="127.0.0.1"):
    """Connect, read everything until smtptap closes; return (bytes, seconds)."""
    t0 = time.monotonic()
    with SmtpClient(port, host, timeout) as c:
        data = c.read_until_close(timeout)
    return data, time.monotonic() - t0


def expect_421(tap, regex, timeout=DEFAULT_DEADLINE):
    """Connect to TAP as a MUA: the greeting must be one 421 line matching REGEX
    (anchored at the start) and smtptap must close the connection. The transcript
    must then carry a "* failed:" note. Returns (reply line, transcript)."""
    data, elapsed = read_until_close(tap.port, timeout)
    text = data.decode("utf-8", "replace")
    assert text.startswith("421 "), "MUA greeting is not a 421: %r" % text
    assert text.endswith("\r\n"), "421 reply not terminated by CRLF: %r" % text
    lines = text.split("\r\n")[:-1]
    assert len(lines) == 1, "expected exactly one 421 line, got %r" % lines
    line = lines[0]
    assert re.match(regex, line), "421 text differs from the spec\n  got:      %r\n" \
        "  expected: %r" % (line, regex)
    tap.wait_transcript(r"^\S+ [0-9a-f]{8} \* failed: ")
    return line, tap.transcript()


# ---------------------------------------------------------------------------------
# transcript
# ---------------------------------------------------------------------------------

def parse_transcript(text):
    """Records as dicts (time, session, dir, text); lines that do not match the
    format are returned with dir None so that tests can report them."""
    out = []
    for line in text.splitlines():
        m = RECORD_RE.match(line)
        if m:
            out.append(m.groupdict())
        else:
            out.append({"time": None, "session": None, "dir": None, "text": line})
    return out


def session_records(records, session):
    return [r for r in records if r["session"] == session]


def sessions_of(records):
    seen = []
    for r in records:
        if r["session"] and r["session"] != "-" and r["session"] not in seen:
            seen.append(r["session"])
    return seen


# ---------------------------------------------------------------------------------
# secrets
# ---------------------------------------------------------------------------------

def _b64(b):
    return base64.b64encode(b).decode("ascii")


def aligned_b64(secret):
    """The base64 text that encodes SECRET at each of the three byte alignments,
    reduced to the characters that depend on SECRET's bytes only. Any base64 stream
    that carries SECRET contains one of these three strings."""
    out = []
    n = len(secret)
    for pad in range(3):
        enc = _b64(b"\0" * pad + secret)
        start = -(-pad * 8 // 6)            # ceil(pad*8/6)
        end = ((pad + n) * 8) // 6          # last character fully inside SECRET
        inner = enc[start:end]
        if inner:
            out.append(inner)
    return out


def forbidden_forms(password, user=None):
    """A dict {description: string} of every form in which PASSWORD must not appear."""
    pw = password.encode("utf-8") if isinstance(password, str) else password
    forms = {
        "plain password": pw.decode("utf-8", "replace"),
        "base64(password)": _b64(pw),
        "hex(password)": pw.hex(),
        "HEX(password)": pw.hex().upper(),
    }
    if user is not None:
        u = user.encode("utf-8") if isinstance(user, str) else user
        forms["PLAIN blob base64(\\0user\\0password)"] = _b64(b"\0" + u + b"\0" + pw)
        forms["PLAIN blob base64(user\\0user\\0password)"] = _b64(u + b"\0" + u + b"\0" + pw)
    for i, inner in enumerate(aligned_b64(pw)):
        forms["base64 of the password at alignment %d" % i] = inner
    return forms


def _windows(s, n=8):
    return {s[i:i + n] for i in range(0, len(s) - n + 1)} if len(s) >= n else {s}


def assert_no_secret(password, user, texts):
    """TEXTS: {name: str}. Fails if the password shows up in any of them in any form,
    including any 8-character piece of its base64 encodings (at every alignment) or
    of the password itself."""
    forms = forbidden_forms(password, user)
    pw = password if isinstance(password, str) else password.decode("utf-8", "replace")
    pieces = {}
    for i, inner in enumerate(aligned_b64(pw.encode("utf-8"))):
        for w in _windows(inner):
            pieces.setdefault(w, "8-char piece of base64(password) at alignment %d" % i)
    for w in _windows(pw):
        pieces.setdefault(w, "8-char piece of the plain password")
    for where, text in texts.items():
        for desc, form in forms.items():
            assert form not in text, "%s found in %s:\n%s" % (desc, where,
                                                            _context(text, form))
        for w, desc in pieces.items():
            assert w not in text, "%s (%r) found in %s:\n%s" % (desc, w, where,
                                                               _context(text, w))


def _context(text, needle, width=120):
    i = text.find(needle)
    return text[max(0, i - width):i + len(needle) + width]


# ---------------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------------

def smtp_data_bytes(content):
    """CONTENT (CRLF-terminated lines) dot-stuffed and terminated for the DATA phase."""
    assert content.endswith(b"\r\n")
    lines = content.split(b"\r\n")[:-1]
    out = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
    return out + b".\r\n"


# ---------------------------------------------------------------------------------
# smtptap -c FILE
# ---------------------------------------------------------------------------------

# "- * smtptap 0.1.0 [name] listening on 127.0.0.1:PORT, upstream ..."
SERVICE_RE = re.compile(r"\* smtptap \S+ \[([^\]]+)\] listening on "
                        r"\[?([0-9a-fA-F:.]+)\]?:(\d+), upstream (\S+)")

# Short timeouts for every service unless a test sets its own.
CONF_TIMEOUTS = "connect_timeout = 2\ngreeting_timeout = 2\ntls_timeout = 2\n"


def no_sanitizer(text):
    for marker in ("Sanitizer", "runtime error"):
        assert marker not in text, text


class ConfTap:
    """smtptap -c FILE, with the transcript in a file named in the config."""

    def __init__(self, binary, tmp_path, body, name="conftap", env=None):
        self.log = str(tmp_path / (name + ".transcript"))
        self.path = str(tmp_path / (name + ".conf"))
        self.err = str(tmp_path / (name + ".stderr"))
        self.rewrite(body)
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen([binary, "-c", self.path],
                                         stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         env=env)

    def rewrite(self, body):
        """Write the config file (the log line and short timeouts first)."""
        with open(self.path, "w") as f:
            f.write("log = %s\n%s%s" % (self.log, CONF_TIMEOUTS, body))

    def transcript(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr(self):
        with open(self.err, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def services(self, n):
        """Wait for N "listening on" lines; return {name: (port, upstream)}."""
        def ready():
            found = SERVICE_RE.findall(self.transcript())
            if len(found) >= n:
                return found
            if self.proc.poll() is not None:
                raise AssertionError("smtptap exited %s: %s" % (self.proc.returncode,
                                                              self.stderr()))
            return None
        found = poll(ready, what="%d listening lines" % n)
        return {name: (int(port), up) for name, _, port, up in found}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        no_sanitizer(self.stderr())


