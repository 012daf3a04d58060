"""Hostile upstreams with TLS for the fault suite (threads + blocking sockets).

FaultServer(pki, handler, mode) listens on 127.0.0.1 (port picked by the kernel)
and calls HANDLER(peer) for every connection in its own thread. A Peer knows the
moves of a misbehaving SMTP server:

  peer.starttls_setup(...)   greeting, EHLO with STARTTLS, 220, TLS handshake
  peer.implicit_setup()      TLS at once (mode "implicit" does it before HANDLER)
  peer.serve()               a small, correct SMTP server (EHLO, AUTH, MAIL, RCPT,
                             DATA, BDAT, NOOP, RSET, QUIT) until the client leaves
  peer.send / send_split / readline / read_exact / drain
  peer.close_dirty()         close without TLS close_notify
  peer.close_notify()        TLS close_notify, then close
  peer.rst()                 SO_LINGER 0: the kernel answers with a TCP RST

What the MUA should see of the server and what the server got from the MUA is
recorded in peer.tx and peer.rx (Recorder: SHA-256, length, a bounded head):
tx holds the greeting (smtptap holds it back and relays it after TLS) and every
byte sent after TLS; rx every byte received after TLS. Bytes of smtptap's own
pre-TLS dialogue are in peer.pre.

DnsServer(mode) answers on 127.0.0.1 UDP for a --resolv-conf file: "silent"
(never answers), "servfail", "nxdomain", "empty" (NOERROR, no records),
"garbage", "truncated" (TC bit, no records), or "addrs" (A records from ADDRS).
"""

import hashlib
import socket
import ssl
import struct
import threading
import time

GREETING = b"220 fault.example ESMTP hostile but polite\r\n"
EHLO_LINES = [b"PIPELINING", b"8BITMIME", b"CHUNKING", b"SIZE 104857600",
              b"AUTH PLAIN LOGIN"]


class Recorder:
    """SHA-256 and length of a byte stream, plus its first HEAD bytes."""

    def __init__(self, head=4 << 20):
        self.h = hashlib.sha256()
        self.n = 0
        self.head = bytearray()
        self.limit = head

    def add(self, data):
        if data:
            self.h.update(data)
            self.n += len(data)
            if len(self.head) < self.limit:
                self.head += data[:self.limit - len(self.head)]

    @property
    def digest(self):
        return self.h.hexdigest()

    def bytes(self):
        assert self.n <= self.limit, "only the first %d bytes were kept" % self.limit
        return bytes(self.head)

    def __repr__(self):
        return "<%d bytes sha256 %s>" % (self.n, self.digest[:16])


class Peer:
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.raw = sock
        self.buf = bytearray()
        self.tls = False
        self.pre = Recorder()
        self.rx = Recorder()
        self.tx = Recorder()
        self.commands = []
        self.messages = []      # (size, sha256) of each DATA/BDAT body received
        self.closed = False

    # -- raw I/O -------------------------------------------------------------------

    def _record_rx(self, data):
        (self.rx if self.tls else self.pre).add(data)

    def recv(self, n=262144):
        data = self.sock.recv(n)
        self._record_rx(data)
        return data

    def send(self, data, relayed=True):
        """Send DATA; RELAYED says whether smtptap should pass it to the MUA."""
        self.sock.sendall(data)
        if relayed:
            self.tx.add(data)

    def send_split(self, data, chunk=1, delay=0.0):
        for i in range(0, len(data), chunk):
            self.send(data[i:i + chunk])
            if delay:
                time.sleep(delay)

    def readline(self, limit=None):
        """One line with its LF, or b"" at EOF (what is left is returned too)."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            start = len(self.buf)
            if limit is not None and len(self.buf) > limit:
                line = bytes(self.buf)
                self.buf.clear()
                return line
            data = self.recv()
            if not data:
                line = bytes(self.buf)
                self.buf.clear()
                return line
            self.buf += data

    def read_exact(self, n, sink=None):
        """Read N bytes (fewer at EOF); SINK(bytes) gets them instead of a return."""
        out = bytearray()
        got = 0
        while got < n:
            if self.buf:
                take = bytes(self.buf[:n - got])
                del self.buf[:len(take)]
            else:
                take = self.recv(min(262144, n - got))
                if not take:
                    break
            got += len(take)
            if sink:
                sink(take)
            else:
                out += take
        return got if sink else bytes(out)

    def drain(self):
        """Read until EOF or error, discarding."""
        self.buf.clear()
        try:
            while self.recv():
                pass
        except (OSError, ssl.SSLError):
            pass

    # -- TLS -----------------------------------------------------------------------

    def wrap(self):
        self.sock = self.server.ctx.wrap_socket(self.raw, server_side=True)
        self.tls = True

    def implicit_setup(self):
        self.wrap()

    def starttls_setup(self, greeting=GREETING, after_220=b""):
        """The cleartext part: greeting, EHLO (STARTTLS offered), STARTTLS, 220,
        handshake. AFTER_220 rides in the same write as the 220."""
        self.send(greeting)
        while True:
            line = self.readline()
            if not line:
                raise EOFError("client left before STARTTLS")
            verb = line.split()[0].upper() if line.split() else b""
            if verb in (b"EHLO", b"HELO"):
                self.send(b"250-fault.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
                          relayed=False)
            elif verb == b"STARTTLS":
                self.send(b"220 2.0.0 go ahead\r\n" + after_220, relayed=False)
                if after_220:
                    return False
                self.wrap()
                return True
            else:
                self.send(b"503 5.5.1 STARTTLS first\r\n", relayed=False)

    # -- endings -------------------------------------------------------------------

    def close_dirty(self):
        """Close the TCP connection; under TLS without close_notify."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def close_notify(self):
        self.closed = True
        s = self.sock
        try:
            if self.tls:
                s = self.sock.unwrap()
        except (OSError, ssl.SSLError, ValueError):
            pass
        s.close()
        self.sock.close()

    def rst(self):
        self.closed = True
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    # -- a correct server ----------------------------------------------------------

    def ehlo_reply(self, extra=()):
        lines = [b"fault.example"] + EHLO_LINES + list(extra)
        return b"".join(b"250" + (b" " if i == len(lines) - 1 else b"-") + ln + b"\r\n"
                        for i, ln in enumerate(lines))

    def data_body(self):
        """Read a DATA body up to and including CRLF.CRLF; record (size, sha)."""
        h = hashlib.sha256()
        size = 0
        tail = b""
        while True:
            if self.buf:
                d = bytes(self.buf)
                self.buf.clear()
            else:
                d = self.recv()
            if not d:
                raise EOFError("client closed during DATA after %d bytes" % size)
            window = tail + d
            end = window.find(b"\r\n.\r\n")
            if end < 0 and size == 0 and window.startswith(b".\r\n"):
                end = -2
            if end >= 0 or end == -2:
                take = (end + 5 if end >= 0 else 3) - len(tail)
                h.update(d[:take])
                size += take
                self.buf[:0] = d[take:]
                self.messages.append((size, h.hexdigest()))
                return
            h.update(d)
            size += len(d)
            tail = window[-4:]

    def serve(self, on_command=None):
        """Answer like a small real server until QUIT or EOF. ON_COMMAND(peer,
        line) may return True to say it handled the line itself."""
        while True:
            line = self.readline()
            if not line:
                return
            self.commands.append(line)
            if on_command is not None and on_command(self, line):
                if self.closed:
                    return
                continue
            words = line.split()
            verb = words[0].upper() if words else b""
            if verb in (b"EHLO", b"HELO"):
                self.send(self.ehlo_reply())
            elif verb == b"AUTH":
                self._auth(words)
            elif verb == b"DATA":
                self.send(b"354 go ahead\r\n")
                self.data_body()
                self.send(b"250 2.0.0 queued\r\n")
            elif verb == b"BDAT":
                self._bdat(words)
            elif verb == b"QUIT":
                self.send(b"221 2.0.0 bye\r\n")
                self.close_notify()
                return
            elif verb in (b"MAIL", b"RCPT", b"NOOP", b"RSET"):
                self.send(b"250 2.0.0 ok\r\n")
            elif verb == b"STARTTLS":
                self.send(b"503 5.5.1 TLS already active\r\n")
            else:
                self.send(b"500 5.5.2 unrecognised\r\n")

    def _auth(self, words):
        mech = words[1].upper() if len(words) > 1 else b""
        if mech == b"PLAIN":
            if len(words) < 3:
                self.send(b"334 \r\n")
                if self.readline() in (b"*\r\n", b""):
                    self.send(b"501 5.7.0 cancelled\r\n")
                    return
            self.send(b"235 2.7.0 ok\r\n")
        elif mech == b"LOGIN":
            if len(words) < 3:
                self.send(b"334 VXNlcm5hbWU6\r\n")
                self.readline()
            self.send(b"334 UGFzc3dvcmQ6\r\n")
            self.readline()
            self.send(b"235 2.7.0 ok\r\n")
        else:
            self.send(b"504 5.5.4 unknown mechanism\r\n")

    def _bdat(self, words):
        try:
            n = int(words[1])
            if not words[1].isdigit() or n > 1 << 31:
                raise ValueError
        except (IndexError, ValueError):
            self.send(b"501 5.5.4 bad BDAT size\r\n")
            return
        h = hashlib.sha256()
        got = self.read_exact(n, sink=h.update)
        if got < n:
            return
        self.messages.append((n, h.hexdigest()))
        self.send(b"250 2.0.0 %d octets received\r\n" % n)


class FaultServer:
    def __init__(self, pki, handler, mode="starttls", host="127.0.0.1", backlog=128):
        self.handler = handler
        self.mode = mode
        self.host = host
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(*pki.pair("good"))
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.peers = []
        self.errors = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.done = threading.Event()
        self.stopping = False
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True, name="faultserver")
        t.start()
        self.threads.append(t)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            peer = Peer(self, conn)
            with self.lock:
                self.peers.append(peer)
            self.connected.set()
            t = threading.Thread(target=self._serve, args=(peer,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, peer):
        try:
            if self.mode == "implicit":
                peer.implicit_setup()
            self.handler(peer)
        except (OSError, EOFError, ssl.SSLError):
            pass
        except Exception as e:  # pragma: no cover - reported by the test
            self.errors.append(repr(e))
        finally:
            if not peer.closed:
                try:
                    peer.sock.close()
                except OSError:
                    pass
            self.done.set()

    def peer(self, i=0, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.peers) > i:
                    return self.peers[i]
            time.sleep(0.01)
        raise AssertionError("the upstream got no connection #%d" % i)

    def wait_done(self, timeout=10):
        assert self.done.wait(timeout), "upstream handler did not finish"

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        for p in list(self.peers):
            try:
                p.sock.close()
            except OSError:
                pass


# -------------------------------------------------------------------------------
# DNS
# -------------------------------------------------------------------------------

class DnsServer:
    MODES = ("silent", "servfail", "nxdomain", "empty", "garbage", "truncated", "addrs")

    def __init__(self, mode, addrs=()):
        assert mode in self.MODES, mode
        self.mode = mode
        self.addrs = list(addrs)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="dns")
        self.thread.start()

    def resolv_conf(self, path):
        with open(path, "w") as f:
            f.write("nameserver 127.0.0.1:%d\noptions timeout:1 attempts:2\n" % self.port)
        return path

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                q, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(q) < 12:
                continue
            self.queries.append(q)
            if self.mode == "silent":
                continue
            r = self._answer(q)
            if r is not None:
                try:
                    self.sock.sendto(r, addr)
                except OSError:
                    pass

    def _answer(self, q):
        qid = q[:2]
        # the question: name labels, then qtype, qclass
        i = 12
        while i < len(q) and q[i] != 0:
            i += 1 + q[i]
        qend = i + 5
        question = q[12:qend]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0] if qend <= len(q) else 0
        if self.mode == "garbage":
            return qid + b"\x81\x80\x00\x01\x00\x05" + b"\xff" * 40
        rcode = {"servfail": 2, "nxdomain": 3}.get(self.mode, 0)
        flags = 0x8180 | rcode | (0x0200 if self.mode == "truncated" else 0)
        answers = []
        if self.mode == "addrs" and qtype == 1:
            for a in self.addrs:
                answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4)
                               + socket.inet_aton(a))
        hdr = qid + struct.pack("!HHHHH", flags, 1, len(answers), 0, 0)
        return hdr + question + b"".join(answers)

    def stop(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(2)
