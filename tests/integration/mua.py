"""Hostile mail clients for the fault suite.

Mua(port) is a raw client that records every byte it sends (tx) and receives
(rx) as SHA-256 + length (faultserver.Recorder), so a test can compare them with
what the upstream got and sent. Beyond send/readline/reply it can split a write
at chosen offsets, trickle bytes (slowloris), stream large amounts without
holding them in memory, stop reading, half-close and reset (SO_LINGER 0).
"""

import socket
import struct
import time

from faultserver import Recorder


class Mua:
    def __init__(self, port, host="127.0.0.1", timeout=20.0, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        self.buf = bytearray()
        self.tx = Recorder()
        self.rx = Recorder()
        self.eof = False

    # -- sending -------------------------------------------------------------------

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)
        self.tx.add(data)

    def send_split(self, data, cuts, delay=0.005):
        """Send DATA in pieces cut at the offsets CUTS, with DELAY between them."""
        last = 0
        for c in list(cuts) + [len(data)]:
            if c > last:
                self.send(data[last:c])
                last = c
                time.sleep(delay)

    def stream(self, gen):
        """Send every chunk GEN yields; returns the number of bytes."""
        n = 0
        for chunk in gen:
            self.send(chunk)
            n += len(chunk)
        return n

    def trickle(self, data, interval):
        """Slowloris: one byte every INTERVAL seconds until DATA is sent or the
        connection breaks; returns the number of bytes sent."""
        for i in range(len(data)):
            try:
                self.send(data[i:i + 1])
            except OSError:
                return i
            time.sleep(interval)
        return len(data)

    # -- receiving -----------------------------------------------------------------

    def _fill(self):
        data = self.sock.recv(262144)
        if not data:
            self.eof = True
            raise EOFError("smtptap closed the connection; got %r" % bytes(self.rx.head[-300:]))
        self.rx.add(data)
        self.buf += data

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            self._fill()

    def reply(self):
        """(code, [lines]) of one possibly multi-line reply."""
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                break
        code = int(lines[-1][:3]) if lines[-1][:3].isdigit() else None
        return code, lines

    def cmd(self, line, expect=None):
        self.send(line if isinstance(line, bytes) else line.encode())
        code, lines = self.reply()
        if expect is not None:
            assert code == expect, "%r answered %r, expected %d" % (line, lines, expect)
        return code, lines

    def read_until_close(self, timeout=20.0):
        """Everything until smtptap closes (or resets); returns the bytes."""
        self.sock.settimeout(timeout)
        out = bytes(self.buf)
        self.buf.clear()
        t0 = time.monotonic()
        while True:
            try:
                d = self.sock.recv(262144)
            except socket.timeout:
                raise AssertionError("smtptap did not close within %.1fs; got %r"
                                     % (time.monotonic() - t0, out[-300:]))
            except ConnectionResetError:
                break
            if not d:
                break
            self.rx.add(d)
            out += d
        self.eof = True
        return out

    # -- endings -------------------------------------------------------------------

    def half_close(self):
        self.sock.shutdown(socket.SHUT_WR)

    def rst(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def session_prologue(m):
    """Greeting and EHLO through smtptap; returns the EHLO reply lines."""
    code, lines = m.reply()
    assert code == 220, lines
    code, lines = m.cmd(b"EHLO mua.example\r\n", 250)
    return lines


def pattern(n, seed=0):
    """N deterministic bytes with every byte value (8-bit, NUL, CR, LF)."""
    import hashlib
    out = bytearray()
    block = hashlib.sha256(b"%d" % seed).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])
