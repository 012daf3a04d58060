"""Transcript destinations under attack: a peer's raw controls reaching any sink,
records longer than a line may be, and log files someone else planted.

- Every sink (stderr, stdout, a file, dir:, syslog, the journal; text and JSON)
  carries no raw C0, DEL, C1, bidi or invisible character, whatever the upstream
  sent before TLS (a refused STARTTLS or EHLO).
- A record over the line limit stays one valid line that says it was cut, and
  the next record is whole.
- A destination that is not smtptap's own regular file (another user's, a FIFO,
  a socket, a hard link) is refused at once, at start-up, on reopen and for a
  dir: sink's files; never waited on.

syslog and the journal are caught on unix datagram sockets of the test's own,
mounted over /dev/log and /run/systemd/journal/socket in a private mount
namespace (unshare(1)), so nothing outside the test sees them.
"""

import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

import pytest

from helpers import SANITIZER_MARKERS, SmtpClient, poll, read_until_close

sys.path.insert(0, os.path.dirname(__file__))
import pki as pkimod  # noqa: E402

NOBODY = 65534

# -----------------------------------------------------------------------------
# what must never be written raw
# -----------------------------------------------------------------------------

HIDDEN_RANGES = [
    (0x0080, 0x009f), (0x00ad, 0x00ad), (0x034f, 0x034f), (0x061c, 0x061c),
    (0x115f, 0x1160), (0x17b4, 0x17b5), (0x180b, 0x180f), (0x200b, 0x200f),
    (0x2028, 0x2029), (0x202a, 0x202e), (0x2060, 0x206f), (0x3164, 0x3164),
    (0xfe00, 0xfe0f), (0xfeff, 0xfeff), (0xffa0, 0xffa0), (0xfff0, 0xfffb),
    (0x1bca0, 0x1bca3), (0x1d173, 0x1d17a), (0xe0000, 0xe0fff),
]


def hidden(ch):
    c = ord(ch)
    return c < 0x20 or c == 0x7f or any(lo <= c <= hi for lo, hi in HIDDEN_RANGES)


def _payload():
    """Every C0 but CR and LF, DEL, every C1 raw and as UTF-8, every bidi control
    and a sample of every other invisible range."""
    out = bytes(c for c in range(0x20) if c not in (0x0a, 0x0d)) + b"\x7f"
    out += bytes(range(0x80, 0xa0))
    cps = [c for lo, hi in HIDDEN_RANGES for c in range(lo, min(hi, lo + 40) + 1)]
    out += "".join(chr(c) for c in cps).encode()
    return out


PAYLOAD = _payload()
MARK = b"REFUSAL-MARK"


def assert_clean_text(where, text):
    for i, ch in enumerate(text):
        if hidden(ch):
            raise AssertionError("%s: raw U+%04X at %d: %r" % (
                where, ord(ch), i, text[max(0, i - 40):i + 40]))


def assert_clean_json_value(where, v):
    if isinstance(v, str):
        assert_clean_text(where, v)
    elif isinstance(v, dict):
        for k, m in v.items():
            assert_clean_text(where + " key", k)
            assert_clean_json_value(where, m)
    elif isinstance(v, list):
        for m in v:
            assert_clean_json_value(where, m)


def shown(data, fmt):
    """What a reader sees: the lines, or the decoded strings of JSON lines."""
    text = data.decode("utf-8", "replace")
    if fmt != "json":
        return text
    out = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for m in v.values():
                walk(m)
    for ln in text.split("\n"):
        if ln:
            walk(json.loads(ln))
    return "\n".join(out)


def assert_clean_lines(where, data, fmt):
    """Every line valid UTF-8 with no raw control; JSON lines decode to clean
    values too (a \\u001b in JSON is a raw ESC for whoever reads the value)."""
    text = data.decode("utf-8")     # strict: invalid UTF-8 fails here
    assert text.endswith("\n") or not text, where
    for n, line in enumerate(text.split("\n")[:-1], 1):
        assert_clean_text("%s line %d" % (where, n), line)
        if fmt == "json":
            assert_clean_json_value("%s line %d" % (where, n), json.loads(line))


# -----------------------------------------------------------------------------
# an upstream that refuses before TLS, with the payload in its words
# -----------------------------------------------------------------------------

class Refuser:
    """Greets, then refuses STARTTLS (454) or EHLO (550) with PAYLOAD in the line."""

    def __init__(self, where):
        self.where = where
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        refusal = MARK + b" " + PAYLOAD + b" end\r\n"
        try:
            c.settimeout(10)
            c.sendall(b"220 refuser.example ESMTP\r\n")
            buf = b""
            while True:
                data = c.recv(4096)
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    verb = line.split(b" ", 1)[0].upper()
                    if verb in (b"EHLO", b"HELO"):
                        if self.where == "ehlo":
                            c.sendall(b"550 5.7.1 " + refusal)
                        else:
                            c.sendall(b"250-refuser.example\r\n250 STARTTLS\r\n")
                    elif verb == b"STARTTLS":
                        c.sendall(b"454 4.7.0 " + refusal)
                    elif verb == b"QUIT":
                        c.sendall(b"221 bye\r\n")
                        return
                    else:
                        c.sendall(b"503 5.5.1 no\r\n")
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


# -----------------------------------------------------------------------------
# syslog and journal catchers in a private mount namespace
# -----------------------------------------------------------------------------

NS_SCRIPT = r"""
set -e
t="$1"; shift
mount -t tmpfs smtptap-test "$t/ovl"
for d in dev run; do
    mkdir -p "$t/ovl/$d-u" "$t/ovl/$d-w"
    mount -t overlay overlay \
        -o "lowerdir=/$d,upperdir=$t/ovl/$d-u,workdir=$t/ovl/$d-w" "/$d"
done
touch /dev/log
mount --bind "$t/log" /dev/log
mkdir -p /run/systemd/journal
touch /run/systemd/journal/socket
mount --bind "$t/journal" /run/systemd/journal/socket
exec "$@"
"""


class Catcher:
    """Unix datagram sockets for syslog and the journal; collects what arrives."""

    def __init__(self, tmp_path):
        self.dir = str(tmp_path / "ns")
        os.makedirs(os.path.join(self.dir, "ovl"))
        self.msgs = {"log": [], "journal": []}
        self.socks = []
        for name in ("log", "journal"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(os.path.join(self.dir, name))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.settimeout(0.2)
            self.socks.append(s)
            threading.Thread(target=self._recv, args=(name, s), daemon=True).start()

    def _recv(self, name, s):
        while True:
            try:
                self.msgs[name].append(s.recv(1 << 20))
            except socket.timeout:
                continue
            except OSError:
                return

    def wrap(self, argv):
        unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
        return unshare + ["sh", "-c", NS_SCRIPT, "sh", self.dir] + argv

    def close(self):
        for s in self.socks:
            s.close()


def syslog_message(dgram):
    """The message of "<pri>Mmm dd hh:mm:ss smtptap[pid]: message"."""
    text = dgram.decode("utf-8")
    m = re.match(r"^<\d+>.*? smtptap\[\d+\]: (.*)$", text, re.S)
    assert m, text
    return m.group(1)


def journal_fields(dgram):
    """The native protocol: KEY=value\\n, or KEY\\n <le64 size> value \\n."""
    fields, i = [], 0
    while i < len(dgram):
        nl = dgram.index(b"\n", i)
        line = dgram[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            k = line
            size = struct.unpack("<Q", dgram[nl + 1:nl + 9])[0]
            v = dgram[nl + 9:nl + 9 + size]
            i = nl + 9 + size + 1
        fields.append((k.decode(), v))
    return fields


# -----------------------------------------------------------------------------
# running smtptap to a sink
# -----------------------------------------------------------------------------

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


class Run:
    def __init__(self, binary, tmp_path, dest, fmt, upstream, catcher=None,
                 extra=()):
        self.port = free_port()
        self.tmp = tmp_path
        self.out_path = str(tmp_path / "stdout")
        self.err_path = str(tmp_path / "stderr")
        argv = [binary, "-l", "127.0.0.1:%d" % self.port, "--format", fmt,
                "--connect-timeout", "2", "--greeting-timeout", "2",
                "--tls-timeout", "2"] + list(extra)
        if dest is not None:
            argv += ["-o", dest]
        argv.append(upstream)
        if catcher is not None:
            argv = catcher.wrap(argv)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("smtptap exited %s: %s" % (
                    self.proc.returncode, self.stderr()))
            return can_connect(self.port)
        poll(ready, 15, interval=0.05, what="smtptap listening")

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
        err = self.stderr()
        assert not any(m in err for m in SANITIZER_MARKERS), err
        return self.proc.returncode


SINKS = [("stderr", "text"), ("stdout", "text"), ("stdout", "json"),
         ("file", "text"), ("file", "json"), ("dir", "text"), ("dir", "json"),
         ("syslog", "text"), ("syslog", "json"), ("journal", "text")]


def _journal_built(binary):
    r = subprocess.run([binary, "-o", "journal", "-h"], capture_output=True,
                       timeout=10)
    return r.returncode == 0


def dest_for(sink, tmp_path):
    return {"stderr": "stderr", "stdout": "-", "file": str(tmp_path / "t.log"),
            "dir": "dir:" + str(tmp_path / "d"), "syslog": "syslog",
            "journal": "journal"}[sink]


def sink_output(sink, tmp_path, run, catcher):
    """(what, bytes) pairs: the lines the sink wrote, one unit each."""
    if sink == "stderr":
        return [("stderr", open(run.err_path, "rb").read())]
    if sink == "stdout":
        return [("stdout", open(run.out_path, "rb").read())]
    if sink == "file":
        return [("file", (tmp_path / "t.log").read_bytes())]
    if sink == "dir":
        d = tmp_path / "d"
        return [(f, (d / f).read_bytes()) for f in sorted(os.listdir(d))]
    if sink == "syslog":
        return [("syslog", (syslog_message(m) + "\n").encode())
                for m in catcher.msgs["log"]]
    out = []
    for m in catcher.msgs["journal"]:
        for k, v in journal_fields(m):
            out.append(("journal " + k, v + b"\n"))
    return out


@pytest.mark.parametrize("where", ["starttls", "ehlo"])
@pytest.mark.parametrize("sink,fmt", SINKS)
def test_pre_tls_refusal_reaches_no_sink_raw(smtptap_bin, tmp_path, sink, fmt,
                                             where):
    if sink == "journal" and not _journal_built(smtptap_bin):
        sink, fmt = "syslog", "text"    # built without libsystemd: -o journal is refused
    if sink == "dir":
        (tmp_path / "d").mkdir()
    up = Refuser(where)
    catcher = Catcher(tmp_path) if sink in ("syslog", "journal") else None
    try:
        run = Run(smtptap_bin, tmp_path, dest_for(sink, tmp_path), fmt, up.address,
                  catcher)
        reply, _ = read_until_close(run.port)
        assert reply.startswith(b"421"), reply

        def summary():
            # The probe's session and the refused one, each with its summary.
            out = b"".join(d for _, d in sink_output(sink, tmp_path, run, catcher))
            return MARK in out and out.count(b"summary") >= 2
        poll(summary, 10, what="the refusal and the summary in the %s sink" % sink)
        assert run.stop() == 0
        outputs = sink_output(sink, tmp_path, run, catcher)
    finally:
        up.stop()
        if catcher:
            catcher.close()
    everything = "".join(shown(data, fmt if sink != "journal" else "text")
                         for _, data in outputs).encode()
    # The refusal is there, with its controls shown as \xNN.
    assert MARK in everything
    assert b"\\x1b" in everything and b"\\x7f" in everything
    assert b"\\xe2\\x80\\x8f" in everything         # U+200F RIGHT-TO-LEFT MARK
    assert b"\\xe2\\x80\\xae" in everything         # U+202E RIGHT-TO-LEFT OVERRIDE
    for what, data in outputs:
        if sink == "journal" and what.endswith(("_PID", "_TIMESTAMP")):
            continue
        assert_clean_lines("%s (%s)" % (what, fmt), data,
                           fmt if not what.startswith("journal") else "text")


# -----------------------------------------------------------------------------
# records over the line limit (a certificate with huge names)
# -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def huge_cert(tmp_path_factory):
    """Signed by a CA of its own, for two names of 30,000 backslashes each: the
    verify record carries them, escaped, in its text, reason and detail, and JSON
    doubles every backslash, far over the 256 KiB a line may take."""
    d = str(tmp_path_factory.mktemp("hugepki"))
    san = "DNS:" + "\\\\" * 30000 + ".example, DNS:" + "\\\\" * 30000 + ".example"
    pkimod._make_ca(d, "ca", pkimod.CA_SUBJECT)
    pkimod._make_csr(d, "huge", "localhost", san)
    pkimod._sign(d, "huge", "ca", san)
    return d


@pytest.mark.parametrize("sink,fmt", [("file", "json"), ("file", "text"),
                                      ("dir", "json"), ("dir", "text"),
                                      ("stdout", "json"), ("stdout", "text")])
def test_long_record_cut_to_one_line(smtptap_bin, tmp_path, huge_cert, sink, fmt):
    from upstream import Upstream
    up = Upstream("starttls", os.path.join(huge_cert, "huge.crt"),
                  os.path.join(huge_cert, "huge.key")).start()
    if sink == "dir":
        (tmp_path / "d").mkdir()
    try:
        run = Run(smtptap_bin, tmp_path, dest_for(sink, tmp_path), fmt, up.address,
                  extra=["--no-verify", "--ca-file",
                         os.path.join(huge_cert, "ca.crt")])
        with SmtpClient(run.port, timeout=20) as c:
            assert c.read_reply()[0] == 220
            c.cmd("EHLO client.test", 250)
            c.cmd("NOOP", 250)
            c.cmd("QUIT", 221)

        def done():
            return any(b"summary" in data
                       for _, data in sink_output(sink, tmp_path, run, None))
        poll(done, 15, what="the summary")
        assert run.stop() == 0
    finally:
        up.stop()
    # The file with the session (dir: has one per session; the probe's has none).
    outputs = [(w, d) for w, d in sink_output(sink, tmp_path, run, None)
               if b"NOOP" in d]
    assert len(outputs) == 1
    data = outputs[0][1]
    lines = data.split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert max(len(ln) for ln in lines) < 256 * 1024
    cut = [ln for ln in lines if b"[record cut, " in ln]
    if fmt == "json":
        # The verify record's three strings, their backslashes doubled.
        assert cut, "no record was cut: %s" % [len(ln) for ln in lines]
        recs = [json.loads(ln) for ln in lines]         # every line whole JSON
        cutrecs = [r for r in recs if "cut_bytes" in r]
        assert cutrecs and all(r["cut_bytes"] > 0 for r in cutrecs)
        for r in cutrecs:
            m = re.search(r" \[record cut, (\d+) bytes left out\]$", r["text"])
            assert m, r["text"][-80:]
            # The cut falls between escapes: the text ends with whole "\\\\" pairs.
            body = r["text"][:m.start()]
            tail = re.search(r"\\+$", body)
            assert tail is None or len(tail.group(0)) % 2 == 0, body[-20:]
        sess = [r for r in recs if r["kind"] == "verify"][0]["session"]
        kinds = [r["kind"] for r in recs if r["session"] == sess]
        # The records after the long one are all there and whole.
        assert kinds.index("verify") < kinds.index("command") < kinds.index("summary")
        assert any(r["kind"] == "command" and r["text"] == "NOOP" for r in recs)
    else:
        # The text form shows only the text: 64 KiB, whole.
        assert any(len(ln) > 65536 for ln in lines)
        for ln in cut:
            m = re.search(rb" \[record cut, (\d+) bytes left out\]$", ln)
            assert m, ln[-80:]
            tail = re.search(rb"\\+$", ln[:m.start()])
            assert tail is None or len(tail.group(0)) % 2 == 0
        assert_clean_lines(sink, data, "text")
        assert re.search(rb"^\S+ [0-9a-f]{8} C: NOOP$", data, re.M)
        assert re.search(rb"^\S+ [0-9a-f]{8} \* summary: ", data, re.M)


# -----------------------------------------------------------------------------
# destinations that are not smtptap's own file
# -----------------------------------------------------------------------------

def run_to_exit(binary, args, deadline=10):
    """smtptap must refuse at once: its exit is polled for, never waited on."""
    p = subprocess.Popen([binary] + args + ["127.0.0.1:1"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        poll(lambda: p.poll() is not None, deadline, interval=0.02,
             what="smtptap to exit (it must not block on the destination)")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    out, err = p.communicate(timeout=5)
    return p.returncode, err.decode("utf-8", "replace")


def plant(kind, path):
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        return s
    elif kind == "nobody":
        with open(path, "wb"):
            pass
        os.chmod(path, 0o600)
        os.chown(path, NOBODY, NOBODY)
    elif kind == "hardlink":
        with open(path + ".orig", "wb"):
            pass
        os.chmod(path + ".orig", 0o600)
        os.link(path + ".orig", path)
    return None


WORDS = {"fifo": "FIFO", "socket": "socket", "nobody": "uid %d" % NOBODY,
         "hardlink": "2 hard links"}


@pytest.mark.parametrize("where", ["file", "dir"])
@pytest.mark.parametrize("kind", ["fifo", "socket", "nobody", "hardlink"])
def test_planted_destination_refused_at_once(smtptap_bin, tmp_path, kind, where):
    if where == "file":
        path = str(tmp_path / "t.log")
        dest = path
    else:
        (tmp_path / "d").mkdir()
        path = str(tmp_path / "d" / "smtptap.log")
        dest = "dir:" + str(tmp_path / "d")
    keep = plant(kind, path)
    try:
        rc, err = run_to_exit(smtptap_bin, ["-o", dest])
    finally:
        if keep:
            keep.close()
    assert rc == 1, err
    assert path in err and WORDS[kind] in err, err
    if kind in ("nobody", "hardlink"):
        assert os.path.getsize(path) == 0


def test_character_devices_accepted(smtptap_bin, tmp_path):
    """/dev/null (the benchmark's destination) still works."""
    run = Run(smtptap_bin, tmp_path, "/dev/null", "text", "127.0.0.1:1")
    assert run.stop() == 0


@pytest.mark.parametrize("kind", ["fifo", "nobody"])
def test_reopen_refuses_planted_file(smtptap_bin, tmp_path, kind):
    """After logrotate moved the file, something else is planted at the path:
    SIGHUP keeps the old file, says why, and never blocks the writer."""
    path = str(tmp_path / "t.log")
    run = Run(smtptap_bin, tmp_path, path, "text", "127.0.0.1:%d" % free_port())
    try:
        # The probe's session is over: the loop runs, so SIGHUP is handled.
        poll(lambda: b"summary: " in open(path, "rb").read(), 10,
             what="the probe's summary")
        os.rename(path, path + ".1")
        plant(kind, path)
        run.proc.send_signal(signal.SIGHUP)
        poll(lambda: "still writing to the old file" in run.stderr(), 10,
             what="the refused reopen")
        err = run.stderr()
        assert path in err and WORDS[kind] in err, err
        # Records still go to the old file: the writer is not stuck.
        read_until_close(run.port)
        poll(lambda: open(path + ".1", "rb").read().count(b"summary: ") >= 2, 10,
             what="a session in the old file")
        assert run.proc.poll() is None
    finally:
        assert run.stop() == 0
    if kind == "nobody":
        assert os.path.getsize(path) == 0
