"""Bulk relay: byte-exact at volume, bounded memory, backpressure, no fd leaks.

The upstream here is a small threaded SMTP sink with STARTTLS and implicit TLS
that hashes the DATA bytes it receives instead of storing them (aiosmtpd keeps
a whole message in memory), and that can stall to play a slow server.
"""

import hashlib
import os
import socket
import ssl
import threading
import time

import pytest

from helpers import poll

BLOCK = b"".join(b"%07d ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/\r\n"
                 % i for i in range(13000))  # ~1 MiB of 78-byte lines, none starts with "."


class Sink:
    """Accepts SMTP sessions; records the SHA-256 and size of each DATA body."""

    def __init__(self, pki, mode="starttls", stall_after=None, stall_seconds=0.0):
        self.mode = mode
        self.stall_after = stall_after
        self.stall_seconds = stall_seconds
        self.stalling = threading.Event()
        self.bodies = []
        self.errors = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(*pki.pair("good"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return "localhost:%d" % self.port

    def close(self):
        self.sock.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            if self.mode == "implicit":
                conn = self.ctx.wrap_socket(conn, server_side=True)
            self._dialogue(conn)
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))
        finally:
            conn.close()

    def _dialogue(self, conn):
        buf = bytearray()

        def line():
            while b"\n" not in buf:
                d = conn.recv(65536)
                if not d:
                    raise EOFError("client closed")
                buf.extend(d)
            i = buf.index(b"\n") + 1
            out = bytes(buf[:i])
            del buf[:i]
            return out

        tls = self.mode == "implicit"
        conn.sendall(b"220 sink ESMTP\r\n")
        while True:
            cmd = line().upper()
            if cmd.startswith(b"EHLO"):
                conn.sendall(b"250-sink\r\n" + (b"" if tls else b"250-STARTTLS\r\n")
                             + b"250 8BITMIME\r\n")
            elif cmd.startswith(b"STARTTLS"):
                conn.sendall(b"220 go ahead\r\n")
                conn = self.ctx.wrap_socket(conn, server_side=True)
                tls = True
            elif cmd.startswith(b"DATA"):
                conn.sendall(b"354 go\r\n")
                self._body(conn, buf)
                conn.sendall(b"250 2.0.0 hashed\r\n")
            elif cmd.startswith(b"QUIT"):
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    def _body(self, conn, buf):
        h = hashlib.sha256()
        size = 0
        tail = b""
        pending = bytes(buf)
        buf.clear()
        stalled = False
        while True:
            d = pending or conn.recv(262144)
            pending = b""
            if not d:
                raise EOFError("client closed during DATA")
            window = tail + d
            end = window.find(b"\r\n.\r\n")
            if end >= 0:
                take = end + 5 - len(tail)
                h.update(d[:take])
                size += take
                buf.extend(d[take:])
                self.bodies.append((size, h.hexdigest()))
                return
            h.update(d)
            size += len(d)
            tail = window[-4:]
            if self.stall_after is not None and not stalled and size >= self.stall_after:
                stalled = True
                self.stalling.set()
                time.sleep(self.stall_seconds)


def sanitized(binary):
    """ASan keeps freed memory in quarantine and adds shadow memory: the RSS
    bounds below are then looser, but still far below the bytes relayed."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class RssWatch:
    """Samples a process's RSS in the background; .peak in KiB."""

    def __init__(self, pid):
        self.pid, self.peak, self.done = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (OSError, AssertionError):
                return
            time.sleep(0.02)

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.peak


def send_message(port, blocks, timeout=60):
    """One raw SMTP session through smtptap; returns (size, sha256) of the DATA bytes sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    f = s.makefile("rb")

    def reply():
        while True:
            ln = f.readline()
            assert ln[:1] in b"2345", "unexpected reply %r" % ln
            if ln[3:4] != b"-":
                return ln

    assert reply().startswith(b"220")
    for cmd, want in ((b"EHLO bulk.example", b"250"), (b"MAIL FROM:<a@example.org>", b"250"),
                      (b"RCPT TO:<b@example.org>", b"250"), (b"DATA", b"354")):
        s.sendall(cmd + b"\r\n")
        got = reply()
        assert got.startswith(want), "%r answered %r" % (cmd, got)
    h = hashlib.sha256()
    size = 0
    for _ in range(blocks):
        s.sendall(BLOCK)
        h.update(BLOCK)
        size += len(BLOCK)
    s.sendall(b".\r\n")
    h.update(b".\r\n")
    size += 3
    assert reply().startswith(b"250")
    s.sendall(b"QUIT\r\n")
    assert reply().startswith(b"221")
    s.close()
    return size, h.hexdigest()


@pytest.fixture
def sink_factory(pki):
    sinks = []

    def start(**kw):
        sink = Sink(pki, **kw)
        sinks.append(sink)
        return sink

    yield start
    for sink in sinks:
        sink.close()
    assert not [e for s in sinks for e in s.errors], [e for s in sinks for e in s.errors]


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_bulk_message_is_byte_exact_and_memory_stays_flat(mode, sink_factory, tap_factory, pki,
                                                          smtptap_bin):
    """A 1 GiB message crosses smtptap unchanged while its RSS stays small."""
    sink = sink_factory(mode=mode)
    tap = tap_factory(sink.address, "--ca-file", pki.ca, "--tls", mode)
    base = rss_kib(tap.proc.pid)
    watch = RssWatch(tap.proc.pid)
    sent = send_message(tap.port, blocks=int(os.environ.get("SMTPTAP_BULK_MIB", "1024")))
    peak = watch.stop()
    assert sink.bodies == [sent], "upstream received different bytes"
    tap.wait_summary(1)
    assert "messages 1 accepted" in tap.transcript()
    # Relay buffers are bounded at a few hundred KiB per direction.
    limit = (96 if sanitized(smtptap_bin) else 16) * 1024
    assert peak - base < limit, "RSS grew from %d to %d KiB" % (base, peak)


def test_stalled_upstream_throttles_the_client(sink_factory, tap_factory, pki, smtptap_bin):
    """While the server stops reading, smtptap stops reading the client: memory
    stays bounded instead of buffering what the client keeps sending."""
    sink = sink_factory(stall_after=4 << 20, stall_seconds=3.0)
    tap = tap_factory(sink.address, "--ca-file", pki.ca)
    base = rss_kib(tap.proc.pid)
    result = {}
    sender = threading.Thread(target=lambda: result.update(sent=send_message(tap.port, 160)))
    sender.start()
    assert sink.stalling.wait(20), "sink never received 4 MiB"
    watch = RssWatch(tap.proc.pid)
    time.sleep(2.5)  # the stall itself: sample memory while the server reads nothing
    peak = watch.stop()
    sender.join(60)
    assert not sender.is_alive()
    assert sink.bodies == [result["sent"]]
    # Without backpressure smtptap would hold most of the 160 MiB sent.
    limit = (48 if sanitized(smtptap_bin) else 8) * 1024
    assert peak - base < limit, "RSS grew from %d to %d KiB during the stall" % (base, peak)


def test_sessions_release_their_file_descriptors(sink_factory, tap_factory, pki):
    sink = sink_factory()
    tap = tap_factory(sink.address, "--ca-file", pki.ca)
    before = fd_count(tap.proc.pid)
    threads = [threading.Thread(target=send_message, args=(tap.port, 1)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    tap.wait_summary(20)
    assert len(sink.bodies) == 20
    poll(lambda: fd_count(tap.proc.pid) == before, timeout=5,
         what="fd count back to %d (now %d)" % (before, fd_count(tap.proc.pid)))
