"""Transcript outputs: JSON Lines, destinations, and a log that never holds up
the relay (RELIABILITY.md section 4 rows 66-68 and 71, section 5 "Files").

JSON schema: doc/smtptap-json.5. Every record carries the common keys; each kind
adds its own fields, checked here for every kind a full session produces.
"""

import base64
import fcntl
import json
import os
import pty
import re
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

from helpers import (SANITIZER_MARKERS, SmtpClient, assert_no_secret, poll,
                     read_until_close, smtp_data_bytes)

FROM = "alice@example.org"
TO = ["bob@example.net"]

COMMON = {"time", "session", "service", "dir", "kind", "text"}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ENHANCED_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")

# kind -> (allowed dirs, fields every record of that kind carries)
KINDS = {
    "listening": ("*", {"version", "address", "upstream", "tls", "verify"}),
    "connect": ("*", {"client", "local"}),
    "upstream": ("*", {"event", "host", "port", "address", "error"}),
    "dialogue": ("*", {"who", "to"}),
    "tls": ("*", {"event"}),
    "certificate": ("*", {"presented", "subject", "issuer", "san", "not_after"}),
    "verify": ("*", {"result", "name", "reason", "detail", "errors", "enforced"}),
    "command": ("C", set()),
    "auth": ("C", set()),
    "reply": ("S", {"code"}),
    "header": ("C", set()),
    "note": ("*", set()),
    "failed": ("*", {"reason", "detail", "status"}),
    "close": ("*", {"reason"}),
    "verdict": ("*", {"verdict"}),
    "summary": ("*", {"duration_ms", "bytes_c2s", "bytes_s2c", "tls", "auth_mech",
                      "auth_user", "auth_code", "messages_accepted",
                      "messages_rejected", "failure"}),
    "dropped": ("*", {"count"}),
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Proc:
    """smtptap with a destination of the test's choosing (Tap always logs to a file
    it reads the port from). stderr goes to a file; stdout as the test says."""

    def __init__(self, binary, tmp_path, args, stdout=None, env=None, name="proc"):
        self.port = free_port()
        self.err_path = str(tmp_path / (name + ".stderr"))
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "-l", "127.0.0.1:%d" % self.port, "--connect-timeout", "2",
             "--greeting-timeout", "2", "--tls-timeout", "2"] + args,
            stdin=subprocess.DEVNULL, stdout=stdout if stdout is not None else
            subprocess.DEVNULL, stderr=self.err, env=env)

    def wait_listening(self):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("smtptap exited with %s: %s" % (
                    self.proc.returncode, self.stderr()))
            return can_connect(self.port)
        # The probe connection makes a session of its own; that is fine.
        poll(ready, 10, interval=0.05, what="smtptap listening")
        return self

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.err.close()
        err = self.stderr()
        assert not any(m in err for m in SANITIZER_MARKERS), err
        return self.proc.returncode


@pytest.fixture
def procs(smtptap_bin, tmp_path):
    started = []

    def start(args, **kw):
        p = Proc(smtptap_bin, tmp_path, args, name="proc%d" % len(started), **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def send_message(port, user, password, content, noops=0):
    """AUTH PLAIN and one message; NOOPS pipelined NOOPs first (transcript volume:
    each a different line, as identical ones are counted, not written)."""
    with SmtpClient(port, timeout=20) as c:
        code, lines, _ = c.read_reply()
        assert code == 220, "greeting %r" % lines
        c.cmd("EHLO client.test", 250)
        blob = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        c.cmd("AUTH PLAIN " + blob.decode(), 235)
        if noops:
            # (a plain command first: until one follows the 235, lines that
            # are not plainly commands are masked alike)
            c.cmd("RSET", 250)
            c.send(b"".join(b"NOOP %d\r\n" % i for i in range(noops)))
            for _ in range(noops):
                code, lines, _ = c.read_reply()
                assert code == 250, lines
        c.cmd("MAIL FROM:<%s>" % FROM, 250)
        for r in TO:
            c.cmd("RCPT TO:<%s>" % r, 250)
        c.cmd("RCPT", None)             # 501: a red reply in colour
        c.cmd("DATA", 354)
        c.send(smtp_data_bytes(content))
        code, lines, _ = c.read_reply()
        assert code == 250, "end of DATA answered %r" % lines
        c.cmd("QUIT", 221)


def message(marker, size=0):
    head = (b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
            b"Subject: outputs " + marker.encode() + b"\r\n\r\n")
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ \xc3\xa9\r\n"
    body = b"caf\xc3\xa9 8-bit\r\n.dot\r\n"
    if size:
        body += line * (size // len(line))
    return head + body


def json_records(text):
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise AssertionError("line %d is not JSON (%s): %r" % (n, e, line))
        assert isinstance(rec, dict), line
        out.append(rec)
    return out


def check_schema(rec):
    missing = COMMON - rec.keys()
    assert not missing, "record lacks %s: %r" % (missing, rec)
    assert TIME_RE.match(rec["time"]), rec
    assert rec["session"] is None or re.match(r"^[0-9a-f]{8}$", rec["session"]), rec
    assert rec["service"] is None or isinstance(rec["service"], str), rec
    assert rec["dir"] in ("C", "S", "*"), rec
    assert isinstance(rec["text"], str), rec
    assert rec["kind"] in KINDS, "unknown kind %r" % rec
    dirs, fields = KINDS[rec["kind"]]
    assert rec["dir"] in dirs, rec
    missing = fields - rec.keys()
    assert not missing, "%s record lacks %s: %r" % (rec["kind"], missing, rec)
    if rec["kind"] == "reply":
        assert rec["code"] == int(rec["text"][:3]), rec
    else:
        assert "code" not in rec, rec
    if "enhanced" in rec:
        assert ENHANCED_RE.match(rec["enhanced"]), rec
        assert rec["enhanced"][0] == str(rec["code"])[0], rec
        assert rec["text"][4:].startswith(rec["enhanced"]), rec


def wait_json_summaries(tap, n):
    def done():
        recs = json_records(tap.transcript())
        return recs if sum(r["kind"] == "summary" for r in recs) >= n else None
    return poll(done, 10, what="%d JSON summary record(s)" % n)


# ---------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------

def test_json_every_kind_schema_and_no_secret(upstream_factory, tap_factory, pki, account):
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    tap = tap_factory(up.address, "--ca-file", pki.ca, "--format", "json")
    send_message(tap.port, user, password, message("json"))
    up.wait_deliveries(1)
    # A session that fails: nothing listens on the upstream port.
    bad = tap_factory("127.0.0.1:%d" % free_port(), "--format", "json", name="bad")
    read_until_close(bad.port)

    recs = wait_json_summaries(tap, 1) + wait_json_summaries(bad, 1)
    for rec in recs:
        check_schema(rec)
    kinds = {r["kind"] for r in recs}
    expected = {"listening", "connect", "upstream", "dialogue", "tls", "certificate",
                "verify", "command", "auth", "reply", "header", "note", "summary",
                "failed"}
    assert expected <= kinds, "kinds missing: %s" % (expected - kinds)

    by_kind = {}
    for r in recs:
        by_kind.setdefault(r["kind"], []).append(r)
    assert {r["event"] for r in by_kind["tls"]} == {"handshake", "established"}
    est = [r for r in by_kind["tls"] if r["event"] == "established"][0]
    assert est["version"].startswith("TLS") and est["cipher"]
    cert = by_kind["certificate"][0]
    assert cert["presented"] is True and "localhost" in cert["san"]
    assert by_kind["verify"][0]["result"] == "ok"
    codes = {r["code"] for r in by_kind["reply"]}
    assert {220, 235, 250, 354, 221} <= codes
    assert any(r.get("enhanced") == "2.0.0" for r in by_kind["reply"])
    summary = [r for r in by_kind["summary"] if r["session"] == est["session"]][0]
    assert summary["auth_mech"] == "PLAIN" and summary["auth_user"] == user
    assert summary["auth_code"] == 235 and summary["messages_accepted"] == 1
    assert summary["tls"] == est["version"] and summary["failure"] is None
    assert summary["bytes_c2s"] > 0 and summary["bytes_s2c"] > 0
    failed = by_kind["failed"][0]
    assert failed["status"] == "4.4.1" and "cannot connect" in failed["reason"]
    bad_summary = [r for r in by_kind["summary"] if r["session"] == failed["session"]][0]
    assert bad_summary["failure"] == failed["reason"] and bad_summary["tls"] is None
    assert {r["event"] for r in by_kind["upstream"]} >= {"trying", "connected", "error"}
    # The text of each JSON record is the text form's text, unchanged.
    assert any(r["text"].startswith("summary: duration ") for r in by_kind["summary"])
    assert_no_secret(password, user, {"JSON transcript": tap.transcript(),
                                      "stderr": tap.stderr()})


def test_bad_format_and_destination_are_usage_errors(smtptap_bin, tmp_path):
    for args, words in ((["--format", "xml"], "text or json"),
                        (["-o", "dir:"], "dir:")):
        r = subprocess.run([smtptap_bin] + args + ["127.0.0.1:1"], capture_output=True,
                           timeout=10)
        assert r.returncode == 64, (args, r)
        assert words in r.stderr.decode(), r.stderr


# ---------------------------------------------------------------------------------
# a destination that fails or blocks: the relay goes on (rows 66, 67, 71)
# ---------------------------------------------------------------------------------

def test_dev_full_relay_unaffected(procs, upstream_factory, pki, account):
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    p = procs(["-o", "/dev/full", "--ca-file", pki.ca, up.address]).wait_listening()
    msg = message("full", 300_000)
    send_message(p.port, user, password, msg)
    send_message(p.port, user, password, msg + b"second\r\n")
    got = up.wait_deliveries(2)
    assert got[0].content == msg and got[1].content == msg + b"second\r\n"
    assert p.proc.poll() is None, "smtptap died writing to /dev/full"
    err = poll(lambda: p.stderr() if "/dev/full" in p.stderr() else None, 5,
               what="a diagnostic naming /dev/full")
    # Rate limited: one warning per 10 s, not one per record.
    assert len(re.findall(r"cannot write to /dev/full", err)) == 1, err
    assert "No space left on device" in err
    assert p.stop() == 0


def test_blocked_stdout_pipe(procs, upstream_factory, pki, account):
    """stdout is a pipe nobody reads: 3 sessions of 2 MB and 16000 NOOPs each go
    through intact; once the reader reads, a "dropped" record tells the count."""
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    p = procs(["-o", "-", "--ca-file", pki.ca, up.address],
              stdout=subprocess.PIPE).wait_listening()
    msgs = [message("blocked-%d" % i, 2_000_000) for i in range(3)]
    t0 = time.monotonic()
    for m in msgs:
        send_message(p.port, user, password, m, noops=16000)
    got = up.wait_deliveries(3)
    assert [d.content for d in got] == msgs, "a message changed in transit"
    assert time.monotonic() - t0 < 20
    assert p.proc.poll() is None

    # Now read: what was queued comes out, then the count of what was not.
    out = bytearray()
    reader = threading.Thread(target=lambda: out.extend(p.proc.stdout.read()))
    reader.start()
    send_message(p.port, user, password, message("after"))
    up.wait_deliveries(4)
    time.sleep(0.5)
    assert p.stop() == 0
    reader.join(10)
    text = out.decode("utf-8", "replace")
    lines = text.splitlines()
    assert lines and "listening on" in lines[0]
    dropped = [ln for ln in lines if re.search(
        r"^\S+ - \* \d+ transcript records? dropped \(log destination full or "
        r"blocked\)$", ln)]
    assert dropped, "no dropped record in %d lines" % len(lines)
    n = sum(int(re.search(r" (\d+) transcript", ln).group(1)) for ln in dropped)
    assert n > 1000
    # The session after the reader came back is whole, after the count.
    assert "outputs after" in text
    assert text.rindex("outputs after") > text.index(dropped[0])
    assert re.search(r"^\S+ [0-9a-f]{8} \* summary: .*messages 1 accepted", text, re.M)
    assert "records dropped" in p.stderr()


# ---------------------------------------------------------------------------------
# files (section 5) and log rotation (row 68)
# ---------------------------------------------------------------------------------

def test_file_created_0600(relay, account):
    up, tap = relay
    assert stat.S_IMODE(os.stat(tap.log_path).st_mode) == 0o600


def test_symlink_refused(smtptap_bin, tmp_path):
    target = tmp_path / "target"
    link = tmp_path / "link.log"
    os.symlink(target, link)
    r = subprocess.run([smtptap_bin, "-o", str(link), "127.0.0.1:1"],
                       capture_output=True, timeout=10)
    assert r.returncode == 1, r
    assert "symbolic link" in r.stderr.decode()
    assert not target.exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_group_or_other_readable_file_refused(smtptap_bin, tmp_path, mode):
    path = tmp_path / "shared.log"
    path.write_bytes(b"")
    os.chmod(path, mode)
    r = subprocess.run([smtptap_bin, "-o", str(path), "127.0.0.1:1"],
                       capture_output=True, timeout=10)
    assert r.returncode == 1, r
    err = r.stderr.decode()
    assert "mode %04o" % mode in err and str(path) in err, err
    assert path.read_bytes() == b""


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP])
def test_signal_reopens_log(relay, account, sig):
    up, tap = relay
    user, password = account
    send_message(tap.port, user, password, message("before"))
    tap.wait_summary(1)
    rotated = tap.log_path + ".1"
    os.rename(tap.log_path, rotated)
    tap.proc.send_signal(sig)
    poll(lambda: os.path.exists(tap.log_path), 5, what="the reopened transcript")
    assert stat.S_IMODE(os.stat(tap.log_path).st_mode) == 0o600
    send_message(tap.port, user, password, message("after"))
    tap.wait_summary(1)
    old = open(rotated, encoding="utf-8").read()
    new = tap.transcript()
    assert "outputs before" in old and "outputs after" not in old
    assert "outputs after" in new and "outputs before" not in new
    assert "reopening the transcript" in old
    assert up.wait_deliveries(2)


def test_per_session_directory(procs, upstream_factory, pki, account, tmp_path):
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    d = tmp_path / "sessions"
    d.mkdir()
    p = procs(["-o", "dir:" + str(d), "--ca-file", pki.ca, up.address]).wait_listening()
    send_message(p.port, user, password, message("one"))
    send_message(p.port, user, password, message("two"))
    up.wait_deliveries(2)

    def files():
        fs = sorted(f for f in os.listdir(d) if f != "smtptap.log")
        done = [f for f in fs if "summary: " in (d / f).read_text()]
        return fs if len(done) >= 3 else None   # probe + two sessions
    fs = poll(files, 10, what="three session files with a summary")
    for f in fs:
        m = re.match(r"^\d{8}T\d{6}Z-([0-9a-f]{8})\.log$", f)
        assert m, f
        assert stat.S_IMODE(os.stat(d / f).st_mode) == 0o600
        text = (d / f).read_text()
        sessions = set(re.findall(r"^\S+ ([0-9a-f]{8}|-) ", text, re.M))
        assert sessions == {m.group(1)}, (f, sessions)
    both = "".join((d / f).read_text() for f in fs)
    assert "outputs one" in both and "outputs two" in both
    glob = (d / "smtptap.log").read_text()
    assert "listening on" in glob and not re.search(r"^\S+ [0-9a-f]{8} ", glob, re.M)
    assert stat.S_IMODE(os.stat(d / "smtptap.log").st_mode) == 0o600
    assert p.stop() == 0
    assert "stopping" in (d / "smtptap.log").read_text()


def test_existing_directory_without_prefix(procs, upstream_factory, pki, account,
                                           tmp_path):
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    d = tmp_path / "plain-dir"
    d.mkdir()
    p = procs(["-o", str(d), "--format", "json", "--ca-file", pki.ca,
               up.address]).wait_listening()
    send_message(p.port, user, password, message("json-dir"))
    up.wait_deliveries(1)
    assert p.stop() == 0
    fs = [f for f in os.listdir(d) if f.endswith(".log") and f != "smtptap.log"]
    assert fs
    for f in fs:
        for rec in json_records((d / f).read_text()):
            check_schema(rec)


# ---------------------------------------------------------------------------------
# syslog, journal, colours
# ---------------------------------------------------------------------------------

def test_syslog_destination(procs, upstream_factory, pki, account):
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    p = procs(["-o", "syslog", "--ca-file", pki.ca, up.address]).wait_listening()
    send_message(p.port, user, password, message("syslog"))
    up.wait_deliveries(1)
    assert p.stop() == 0


def test_journal_destination(smtptap_bin, procs, upstream_factory, pki, account):
    probe = subprocess.run([smtptap_bin, "-o", "journal", "-h"], capture_output=True,
                           timeout=10)
    if probe.returncode == 64:
        assert "built without systemd" in probe.stderr.decode()
        return
    assert probe.returncode == 0, probe
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    p = procs(["-o", "journal", "--ca-file", pki.ca, up.address]).wait_listening()
    send_message(p.port, user, password, message("journal"))
    up.wait_deliveries(1)
    if not os.path.exists("/run/systemd/journal/socket"):
        poll(lambda: "journal" in p.stderr(), 5, what="a warning about the journal")
    assert p.stop() == 0


def _read_pty(fd, until, timeout=10):
    data = b""
    deadline = time.monotonic() + timeout
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    while until not in data and time.monotonic() < deadline:
        try:
            data += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.02)
        except OSError:
            break
    return data


@pytest.mark.parametrize("no_color", [False, True])
def test_colour_only_on_a_terminal(procs, upstream_factory, pki, account, no_color):
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    master, slave = pty.openpty()
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = "1"
    p = procs(["-o", "-", "--ca-file", pki.ca, up.address], stdout=slave, env=env)
    os.close(slave)
    p.wait_listening()
    send_message(p.port, user, password, message("colour"))
    up.wait_deliveries(1)
    data = _read_pty(master, b"summary: ").decode("utf-8", "replace")
    data += _read_pty(master, b"summary: ", 1).decode("utf-8", "replace")
    p.stop()
    os.close(master)
    assert "summary: " in data
    if no_color:
        assert "\x1b[" not in data
    else:
        assert "\x1b[36mC: " in data and "\x1b[32mS: 250" in data
        assert "\x1b[31mS: 5" in data            # the bare RCPT: 501
