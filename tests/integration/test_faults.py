"""The fault suite: RELIABILITY.md section 4, the cases earlier tests do not cover.

Each test is named after its row of the section 4 table (test_fNN_...). Every
test ends with inv.check(), which asserts the invariants behind every row:

  - smtptap did not crash: still running (or exited as the test expects);
  - no sanitizer report and no "runtime error" on its stderr or stdout;
  - bytes relayed unchanged where bytes flowed: SHA-256 of what the MUA sent ==
    what the upstream received after TLS, and of what the upstream sent (its
    greeting and everything after TLS) == what the MUA received;
  - no secret in any output: a canary password (and any password registered)
    is in no form in the transcript, stdout or stderr;
  - file descriptors back to the count after start-up, and VmRSS within a bound
    of it, once the sessions are over.

Hostile upstreams come from faultserver.py, hostile clients from mua.py.
"""

import base64
import hashlib
import os
import re
import resource
import secrets
import signal
import socket
import subprocess
import threading
import time

import pytest

from badserver import BadServer, FullBacklog
from faultserver import GREETING, DnsServer, FaultServer
from helpers import SANITIZER_MARKERS, assert_no_secret, poll
from mua import Mua, pattern, session_prologue

MIB = 1 << 20


# ---------------------------------------------------------------------------------
# invariants
# ---------------------------------------------------------------------------------

def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


_SANITIZED = {}


def sanitized(binary):
    if binary not in _SANITIZED:
        with open(binary, "rb") as f:
            _SANITIZED[binary] = b"__asan_init" in f.read()
    return _SANITIZED[binary]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RawTap:
    """smtptap started by hand (for -o /dev/full, -o - into a pipe, rlimits):
    listens on a fixed free port; stdout/stderr go where the test says."""

    def __init__(self, binary, workdir, args, stdout=None, preexec_fn=None, name="raw"):
        self.port = free_port()
        self.err_path = os.path.join(workdir, name + ".stderr")
        self.out_path = os.path.join(workdir, name + ".stdout")
        self.log_path = None
        self.argv = [binary, "-l", "127.0.0.1:%d" % self.port] + list(args)
        if "-o" in args:
            dest = args[args.index("-o") + 1]
            if dest not in ("-", "/dev/full"):
                self.log_path = dest
        self.errf = open(self.err_path, "wb")
        self.outf = None
        if stdout is None:
            self.outf = open(self.out_path, "wb")
            stdout = self.outf
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=stdout,
                                     stderr=self.errf, preexec_fn=preexec_fn)
        self.stopped = False

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("smtptap exited %s: %s" % (self.proc.returncode,
                                                              self.stderr()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        poll(up, what="smtptap listening on port %d" % self.port)
        # the probe connection is a session of its own: let it end
        time.sleep(0.3)

    def _read(self, path):
        if path is None:
            return ""
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def transcript(self):
        return self._read(self.log_path)

    def stderr(self):
        return self._read(self.err_path)

    def stdout(self):
        return self._read(self.out_path) if self.outf else ""

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.errf.close()
        if self.outf:
            self.outf.close()


class Invariants:
    def __init__(self, tap_factory, binary, pki, tmp_path, canary):
        self.tap_factory = tap_factory
        self.binary = binary
        self.pki = pki
        self.tmp_path = tmp_path
        self.taps = []
        self.raw = []
        self.base = {}
        self.servers = []
        self.flows = []
        self.prefixes = []
        self.passwords = [canary]
        self.checked = False
        self.rss_bound = (64 if sanitized(binary) else 8) * 1024

    # -- set-up --------------------------------------------------------------------

    def _baseline(self, t):
        self.base[id(t)] = (fd_count(t.proc.pid), rss_kib(t.proc.pid))

    def tap(self, upstream, *opts, **kw):
        t = self.tap_factory(upstream, *opts, **kw)
        self.taps.append(t)
        self._baseline(t)
        return t

    def rawtap(self, args, **kw):
        t = RawTap(self.binary, str(self.tmp_path), args, **kw)
        self.raw.append(t)
        self.taps.append(t)
        self._baseline(t)
        return t

    def server(self, handler, mode="starttls", **kw):
        s = FaultServer(self.pki, handler, mode, **kw)
        self.servers.append(s)
        return s

    def relay_tap(self, handler=None, mode="starttls", *opts):
        """A FaultServer (a correct server unless HANDLER) and smtptap before it."""
        srv = self.server(handler or good(mode), mode)
        tap = self.tap(srv.address, "--ca-file", self.pki.ca, "--tls", mode, *opts)
        return srv, tap

    def flow(self, sent, received, what):
        """Both Recorders must hold the same bytes (checked at the end)."""
        self.flows.append((sent, received, what))

    def prefix(self, longer, shorter, what):
        """SHORTER's bytes must be a prefix of LONGER's (both kept in full)."""
        self.prefixes.append((longer, shorter, what))

    def secret(self, password):
        self.passwords.append(password)

    # -- the check -----------------------------------------------------------------

    def check(self, exited=None, settle=5.0):
        self.checked = True
        for s in self.servers:
            s.done.wait(settle)
        for sent, received, what in self.flows:
            assert (sent.n, sent.digest) == (received.n, received.digest), \
                "%s: bytes changed in the relay: sent %r, received %r" % (what, sent,
                                                                           received)
        for longer, shorter, what in self.prefixes:
            assert longer.bytes().startswith(shorter.bytes()), \
                "%s: received bytes are not a prefix of the bytes sent" % what
        for t in self.taps:
            pid = t.proc.pid
            rc = t.proc.poll()
            if exited is None:
                assert rc is None, "smtptap exited with %s\nstderr: %s" % (
                    rc, t.stderr()[-3000:])
            else:
                if rc is None:
                    try:
                        rc = t.proc.wait(settle)
                    except subprocess.TimeoutExpired:
                        raise AssertionError("smtptap did not exit")
                assert rc in exited, "smtptap exit status %s, expected %s" % (rc, exited)
            out = t.stderr() + "\n" + t.stdout()
            hits = [m for m in SANITIZER_MARKERS if m in out]
            assert not hits, "sanitizer report from smtptap:\n" + out[-6000:]
            texts = {"transcript": t.transcript(), "stderr": t.stderr(),
                     "stdout": t.stdout()}
            for pw in self.passwords:
                assert_no_secret(pw, None, texts)
            if rc is None:
                fd0, rss0 = self.base[id(t)]
                try:
                    poll(lambda: fd_count(pid) <= fd0, timeout=settle,
                         what="fd count of smtptap back to %d" % fd0)
                except AssertionError:
                    raise AssertionError("smtptap holds %d fds, %d at start:\n%s" % (
                        fd_count(pid), fd0, "\n".join(
                            "%s -> %s" % (f, os.readlink("/proc/%d/fd/%s" % (pid, f)))
                            for f in os.listdir("/proc/%d/fd" % pid))))
                rss = rss_kib(pid)
                assert rss - rss0 < self.rss_bound, \
                    "smtptap RSS %d KiB after the session, %d KiB at start" % (rss, rss0)

    def close(self):
        for s in self.servers:
            s.stop()
        for t in self.raw:
            t.stop()


@pytest.fixture
def canary():
    return "canary-" + secrets.token_urlsafe(12)


@pytest.fixture
def inv(tap_factory, smtptap_bin, pki, tmp_path, canary):
    i = Invariants(tap_factory, smtptap_bin, pki, tmp_path, canary)
    yield i
    try:
        if not i.checked:
            i.check()
        assert not [e for s in i.servers for e in s.errors], \
            [e for s in i.servers for e in s.errors]
    finally:
        i.close()


# ---------------------------------------------------------------------------------
# common pieces
# ---------------------------------------------------------------------------------

def good(mode="starttls"):
    """Handler of a correct server."""
    def handler(peer):
        if mode == "starttls":
            peer.starttls_setup()
        else:
            peer.send(GREETING)
        peer.serve()
    return handler


def after_tls(fn, mode="starttls"):
    """Handler: set up TLS like a correct server, then FN(peer)."""
    def handler(peer):
        if mode == "starttls":
            peer.starttls_setup()
        else:
            peer.send(GREETING)
        fn(peer)
    return handler


def plain_blob(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())


def finish(m):
    """QUIT and read to the end."""
    m.send(b"QUIT\r\n")
    code, lines = m.reply()
    assert code == 221, lines
    m.read_until_close()
    m.close()


def relayed_both_ways(inv, m, peer, what=""):
    inv.flow(m.tx, peer.rx, "client->server " + what)
    inv.flow(peer.tx, m.rx, "server->client " + what)


def expect_421(m, regex=r"421 4\.\d\.\d smtptap: ", timeout=15):
    data = m.read_until_close(timeout)
    assert re.match(regex.encode() if isinstance(regex, str) else regex, data), \
        "MUA got %r, expected %r" % (data[:400], regex)
    return data


# ---------------------------------------------------------------------------------
# A. client -> server framing
# ---------------------------------------------------------------------------------

def test_f01_command_over_512_under_cap(inv):
    srv, tap = inv.relay_tap()
    arg = b"x" * 3000
    with Mua(tap.port) as m:
        session_prologue(m)
        m.cmd(b"NOOP " + arg + b"\r\n", 250)
        finish(m)
    t = tap.wait_summary(1)
    assert " C: NOOP " + "x" * 3000 + "\n" in t + "\n", "long command not shown in full"
    relayed_both_ways(inv, m, srv.peer())
    inv.check()


def test_f02_data_line_over_1000(inv):
    srv, tap = inv.relay_tap()
    body = (b"Subject: long\r\nX-Long: " + b"h" * 6000 + b"\r\n\r\n" +
            b"b" * 20000 + b"\r\n.\r\n")
    with Mua(tap.port) as m:
        session_prologue(m)
        m.cmd(b"MAIL FROM:<a@example.org>\r\n", 250)
        m.cmd(b"RCPT TO:<b@example.org>\r\n", 250)
        m.cmd(b"DATA\r\n", 354)
        m.send(body)
        assert m.reply()[0] == 250
        finish(m)
    t = tap.wait_summary(1)
    assert re.search(r"\(header\) X-Long: h+ ?\[\+\d+ bytes\]", t), \
        "long header line not display-truncated with [+N bytes]:\n" + t[-2000:]
    assert "b" * 200 not in t, "body shown in the transcript"
    assert srv.peer().messages == [(len(body), hashlib.sha256(body).hexdigest())]
    relayed_both_ways(inv, m, srv.peer())
    inv.check()


def _no_crlf_stream(total, chunk=MIB):
    block = (b"ABCDEFGHIJ" * (chunk // 10 + 1))[:chunk]
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield block[:n]
        sent += n


def test_f03_megabyte_without_crlf(inv):
    srv, tap = inv.relay_tap()
    with Mua(tap.port) as m:
        session_prologue(m)
        peak = [0]
        pid = tap.proc.pid
        rss0 = rss_kib(pid)
        m.send(b"NOOP ")
        for chunk in _no_crlf_stream(MIB, 64 * 1024):
            m.send(chunk)
            peak[0] = max(peak[0], rss_kib(pid))
        m.send(b"\r\n")
        code, _ = m.reply()
        assert code == 250
        m.cmd(b"NOOP\r\n", 250)
        finish(m)
    assert peak[0] - rss0 < inv.rss_bound, "RSS grew by %d KiB" % (peak[0] - rss0)
    t = tap.wait_summary(1)
    assert re.search(r"C: NOOP A+.*\[\+\d+ bytes\]", t), "1 MiB line not shown truncated"
    relayed_both_ways(inv, m, srv.peer())
    inv.check()


def test_f04_hundred_mib_without_crlf(inv):
    total = int(os.environ.get("SMTPTAP_FAULT_NOCRLF_MIB", "100")) * MIB

    def sink(peer):
        peer.starttls_setup()
        peer.drain()          # hash everything until the client's close
        peer.close_notify()
    srv, tap = inv.relay_tap(sink)
    t0 = time.monotonic()
    with Mua(tap.port, timeout=60) as m:
        assert m.reply()[0] == 220
        n = m.stream(_no_crlf_stream(total))
        m.half_close()
        m.read_until_close(60)
    elapsed = time.monotonic() - t0
    assert n == total
    srv.wait_done(30)
    assert elapsed < 90, "100 MiB took %.1fs" % elapsed
    tap.wait_summary(1)
    relayed_both_ways(inv, m, srv.peer())
    inv.check()


def _data_session(m, body, expect=250):
    m.cmd(b"MAIL FROM:<a@example.org>\r\n", 250)
    m.cmd(b"RCPT TO:<b@example.org>\r\n", 250)
    m.cmd(b"DATA\r\n", 354)
    m.send(body)
    code, lines = m.reply()
    assert code == expect, lines


def test_f05_bare_lf_commands_and_data(inv):
    srv, tap = inv.relay_tap()
    body = b"Subject: lf\nX-A: 1\r\n\r\nline one\nline two\n.\nstill data\r\n.\r\n"
    with Mua(tap.port) as m:
        session_prologue(m)
        m.cmd(b"NOOP bare\n", 250)
        _data_session(m, body)
        finish(m)
    peer = srv.peer()
    assert peer.messages == [(len(body), hashlib.sha256(body).hexdigest())], \
        "the upstream did not get the message with its bare LFs unchanged"
    t = tap.wait_summary(1)
    assert "[LF]" in t, "bare LF not marked in the transcript:\n" + t
    assert re.search(r"\* message: .*bare LF", t), "bare LFs not counted:\n" + t
    assert len(re.findall(r"\* message: ", t)) == 1, "\\n.\\n taken as the end of DATA"
    relayed_both_ways(inv, m, peer)
    inv.check()


@pytest.mark.parametrize("seq", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r"],
                         ids=["lf-dot-lf", "crlf-dot-lf", "lf-dot-crlf", "bare-cr"])
def test_f06_smuggling_sequences(inv, seq):
    srv, tap = inv.relay_tap()
    body = b"Subject: smuggle\r\n\r\nhello" + seq + b"MAIL FROM:<evil@example.org>\r\n" \
        b"RCPT TO:<victim@example.org>\r\nDATA\r\nbye\r\n.\r\n"
    with Mua(tap.port) as m:
        session_prologue(m)
        _data_session(m, body)
        m.cmd(b"NOOP after\r\n", 250)
        finish(m)
    peer = srv.peer()
    assert peer.messages == [(len(body), hashlib.sha256(body).hexdigest())]
    t = tap.wait_summary(1)
    assert not re.search(r"C: MAIL FROM:<evil", t), \
        "smuggled command shown as a command:\n" + t
    assert re.search(r"\* message: .*bare (LF|CR)", t), \
        "smuggling sequence not flagged in the message note:\n" + t
    assert re.search(r" C: NOOP after$", t, re.M), "parser lost sync after DATA"
    relayed_both_ways(inv, m, peer)
    inv.check()


def test_f07_nul_bytes_everywhere(inv, canary):
    srv, tap = inv.relay_tap()
    with Mua(tap.port) as m:
        session_prologue(m)
        m.cmd(b"NOOP a\x00b\r\n", 250)
        m.cmd(b"AUTH PLAIN " + plain_blob("nul\x00user", canary) + b"\r\n", 235)
        _data_session(m, b"Subject: n\x00ul\r\n\r\nbody\x00\x00\r\n.\r\n")
        finish(m)
    raw = tap.transcript_bytes()
    assert b"\x00" not in raw, "raw NUL in the transcript"
    t = raw.decode("utf-8", "replace")
    assert "NOOP a\\x00b" in t, "NUL not escaped as \\x00"
    assert "(header) Subject: n\\x00ul" in t
    relayed_both_ways(inv, m, srv.peer())
    inv.check()


def test_f08_escapes_in_server_replies(inv):
    """8-bit, invalid UTF-8, ANSI escapes and CR from the server side."""
    def evil(peer):
        def cmd(p, line):
            if line.startswith(b"NOOP"):
                p.send(b"250 \x1b[2J\x1b[31mred\xff\xfe\xc3(\rfake\x07 \xc3\xa9t\xc3\xa9\r\n")
                return True
        peer.serve(cmd)
    srv, tap = inv.relay_tap(after_tls(evil))
    with Mua(tap.port) as m:
        session_prologue(m)
        m.cmd(b"NOOP\r\n", 250)
        finish(m)
    raw = tap.transcript_bytes()
    ctl = sorted({b for b in raw if (b < 0x20 and b != 0x0a) or b == 0x7f})
    assert not ctl, "raw control bytes %r in the transcript" % ctl
    raw.decode("utf-8")  # valid UTF-8 throughout
    t = raw.decode()
    assert "\\x1b[2J" in t and "\\xff" in t and "\\r" in t and "été" in t, t[-1500:]
    relayed_both_ways(inv, m, srv.peer())
    inv.check()


def test_f09_command_split_at_every_byte(inv):
    srv, tap = inv.relay_tap()
    cmd = b"NOOP split-me\r\n"
    with Mua(tap.port) as m:
        session_prologue(m)
        for k in range(1, len(cmd)):
            m.send_split(cmd, [k], delay=0.01)
            assert m.reply()[0] == 250
        m.send_split(cmd, range(1, len(cmd)), delay=0.002)
        assert m.reply()[0] == 250
        finish(m)
    t = tap.wait_summary(1)
    lines = re.findall(r" C: (NOOP.*)$", t, re.M)
    assert lines == ["NOOP split-me"] * len(cmd), lines
    relayed_both_ways(inv, m, srv.peer())
    inv.check()


def _reader(m, n, out):
    try:
        for _ in range(n):
            out.append(m.reply()[0])
    except (EOFError, OSError) as e:
        out.append(repr(e))


def test_f10_pipeline_beyond_buffers_one_segment(inv):
    srv, tap = inv.relay_tap()
    n = 5000
    with Mua(tap.port) as m:
        session_prologue(m)
        got = []
        rt = threading.Thread(target=_reader, args=(m, n, got))
        rt.start()
        m.send(b"".join(b"NOOP %05d\r\n" % i for i in range(n)))
        rt.join(30)
        assert got == [250] * n, got[-3:]
        finish(m)
    t = tap.wait_summary(1)
    cmds = re.findall(r" C: NOOP (\d{5})$", t, re.M)
    assert cmds == ["%05d" % i for i in range(n)], "commands not all logged in order"
    assert len(re.findall(r" S: 250 2\.0\.0 ok$", t, re.M)) >= n
    relayed_both_ways(inv, m, srv.peer())
    inv.check()


def test_f11_pipeline_straddling_segments(inv):
    srv, tap = inv.relay_tap()
    with Mua(tap.port) as m:
        session_prologue(m)
        m.send_split(b"NOOP 1\r\nNOOP 2\r\nRSET\r\n", [18], delay=0.05)
        assert [m.reply()[0] for _ in range(3)] == [250, 250, 250]
        finish(m)
    t = tap.wait_summary(1)
    assert re.findall(r" C: (NOOP \d|RSET|RS|ET)$", t, re.M) == ["NOOP 1", "NOOP 2", "RSET"]
    relayed_both_ways(inv, m, srv.peer())
    inv.check()


def test_f12_invalid_command_split_across_reads(inv):
    srv, tap = inv.relay_tap()
    with Mua(tap.port) as m:
        session_prologue(m)
        m.send_split(b"XYZZY plugh\r\n", [3], delay=0.05)
        assert m.reply()[0] == 500
        m.cmd(b"NOOP\r\n", 250)
        finish(m)
    t = tap.wait_summary(1)
    assert re.findall(r" C: (XYZ.*|ZY.*)$", t, re.M) == ["XYZZY plugh"]
    assert len(re.findall(r" S: 500 ", t)) == 1
    assert srv.peer().commands.count(b"XYZZY plugh\r\n") == 1
    relayed_both_ways(inv, m, srv.peer())
    inv.check()


def test_f13_command_flood(inv):
    n = int(os.environ.get("SMTPTAP_FAULT_FLOOD", "200000"))
    srv, tap = inv.relay_tap()
    watch_peak = [0]
    with Mua(tap.port, timeout=120) as m:
        session_prologue(m)
        got = []
        rt = threading.Thread(target=_reader, args=(m, n, got))
        rt.start()
        batch = b"NOOP\r\n" * 10000
        for _ in range(n // 10000):
            m.send(batch)
            watch_peak[0] = max(watch_peak[0], rss_kib(tap.proc.pid))
        rt.join(120)
        assert len(got) == n and set(got) == {250}, got[-3:]
        finish(m)
    assert watch_peak[0] - inv.base[id(tap)][1] < inv.rss_bound
    tap.wait_summary(1, timeout=30)
    relayed_both_ways(inv, m, srv.peer())
    inv.check()
