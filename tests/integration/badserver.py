"""Scripted misbehaving upstreams for the failure tests (socket + threads).

BadServer(behaviour) listens on 127.0.0.1, port chosen by the kernel, and runs the
behaviour for every connection in its own thread:

  silent          accept and never send a byte (greeting timeout; with --tls implicit,
                  a server that never speaks TLS: handshake timeout)
  close           accept and close at once (closed before the greeting)
  greet_close     send a 220 greeting, then close
  greet_421       greet with "421 4.3.2 ..." and close (non-220 greeting, relayed as is)
  greet_554       greet with "554 5.7.1 ..." and close
  no_starttls     ESMTP without STARTTLS in the EHLO reply
  starttls_454    STARTTLS offered, answered "454 4.7.0 ..."
  injection       STARTTLS answered "220 go ahead\\r\\n250-INJECTED\\r\\n" in one write
  starttls_silent STARTTLS answered 220, then no TLS handshake (handshake timeout)
  starttls_garbage STARTTLS answered 220, then text instead of a TLS ServerHello
  plaintext       a cleartext SMTP server (greets at once, answers 500 to junk)

Helpers for the network-level failures:
  closed_port()    a port where connect() is refused (a bound, non-listening socket
                   holds it so no one else can take it)
  FullBacklog()    a listener whose accept queue is full, so connect() hangs
  UNRESOLVABLE     a host name that cannot resolve
"""

import socket
import threading
import time

UNRESOLVABLE = "nonexistent.invalid"

INJECTED = b"250-INJECTED\r\n"

GREETING = b"220 bad.example ESMTP scripted\r\n"
GREETING_421 = b"421 4.3.2 bad.example busy, come back later\r\n"
GREETING_554 = b"554 5.7.1 bad.example does not like you\r\n"
REFUSE_454 = b"454 4.7.0 TLS not available due to temporary reason\r\n"

BEHAVIOURS = ("silent", "close", "greet_close", "greet_421", "greet_554",
              "no_starttls", "starttls_454", "injection", "starttls_silent",
              "starttls_garbage", "plaintext")


class _Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.received = b""

    def send(self, data):
        self.sock.sendall(data)

    def readline(self):
        """One line (bytes, CRLF stripped) or None at EOF / error."""
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self.buf += data
            self.received += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def drain(self):
        """Read and discard until the peer closes (or the server stops)."""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.received += data


class BadServer:
    def __init__(self, behaviour, host="127.0.0.1"):
        if behaviour not in BEHAVIOURS:
            raise ValueError("unknown behaviour %r" % behaviour)
        self.behaviour = behaviour
        self.host = host
        self.listener = None
        self.port = None
        self.conns = []
        self.threads = []
        self.lock = threading.Lock()
        self.stopping = False
        self.accepted = 0
        self.commands = []  # SMTP command lines received, in order (all connections)
        self.errors = []

    # -- life cycle ----------------------------------------------------------------

    def start(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((self.host, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, daemon=True,
                             name="badserver-" + self.behaviour)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stopping = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.sock.close()
        for t in self.threads:
            t.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def _accept_loop(self):
        self.listener.settimeout(0.2)
        while not self.stopping:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(None)
            conn = _Conn(sock)
            with self.lock:
                self.conns.append(conn)
                self.accepted += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn):
        try:
            getattr(self, "_b_" + self.behaviour)(conn)
        except OSError:
            pass
        except Exception as e:  # pragma: no cover - shows up in test failures
            self.errors.append(e)
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass

    # -- SMTP dialogue helper ------------------------------------------------------

    def _dialogue(self, conn, ehlo_lines, on_starttls):
        conn.send(GREETING)
        while True:
            line = conn.readline()
            if line is None:
                return
            self.commands.append(line)
            verb = line.split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                reply = [b"bad.example greets you"] + ehlo_lines
                out = b""
                for i, r in enumerate(reply):
                    sep = b" " if i == len(reply) - 1 else b"-"
                    out += b"250" + sep + r + b"\r\n"
                conn.send(out)
            elif verb == b"STARTTLS":
                if on_starttls(conn):
                    return
            elif verb == b"QUIT":
                conn.send(b"221 2.0.0 bye\r\n")
                return
            elif verb in (b"NOOP", b"RSET"):
                conn.send(b"250 2.0.0 OK\r\n")
            else:
                conn.send(b"502 5.5.2 not implemented here\r\n")

    # -- behaviours ----------------------------------------------------------------

    def _b_silent(self, conn):
        conn.drain()

    def _b_close(self, conn):
        pass

    def _b_greet_close(self, conn):
        conn.send(GREETING)

    def _b_greet_421(self, conn):
        conn.send(GREETING_421)

    def _b_greet_554(self, conn):
        conn.send(GREETING_554)

    def _b_no_starttls(self, conn):
        self._dialogue(conn, [b"PIPELINING", b"8BITMIME", b"AUTH PLAIN LOGIN"],
                       lambda c: c.send(b"502 5.5.1 no STARTTLS here\r\n"))

    def _b_starttls_454(self, conn):
        self._dialogue(conn, [b"PIPELINING", b"STARTTLS"],
                       lambda c: c.send(REFUSE_454))

    def _b_injection(self, conn):
        def starttls(c):
            c.send(b"220 go ahead\r\n" + INJECTED)
            c.drain()
            return True
        self._dialogue(conn, [b"PIPELINING", b"STARTTLS"], starttls)

    def _b_starttls_silent(self, conn):
        def starttls(c):
            c.send(b"220 2.0.0 Ready to start TLS\r\n")
            c.drain()
            return True
        self._dialogue(conn, [b"STARTTLS"], starttls)

    def _b_starttls_garbage(self, conn):
        def starttls(c):
            c.send(b"220 2.0.0 Ready to start TLS\r\n")
            try:
                data = c.sock.recv(65536)  # the ClientHello
            except OSError:
                return True
            if data:
                c.send(b"this is not a TLS server hello, sorry\r\n" * 4)
                c.drain()
            return True
        self._dialogue(conn, [b"STARTTLS"], starttls)

    def _b_plaintext(self, conn):
        conn.send(GREETING)
        while True:
            line = conn.readline()
            if line is None:
                return
            self.commands.append(line)
            if line.upper().startswith(b"QUIT"):
                conn.send(b"221 2.0.0 bye\r\n")
                return
            conn.send(b"500 5.5.1 command unrecognized\r\n")


class ClosedPort:
    """A port on 127.0.0.1 where connect() is refused.

    The socket is bound but never listens: the kernel answers SYNs with RST and the
    port cannot be taken by another process while the object lives."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        probe = socket.socket()
        probe.settimeout(2)
        try:
            probe.connect(("127.0.0.1", self.port))
        except ConnectionRefusedError:
            pass
        else:  # pragma: no cover
            raise AssertionError("connect to a bound, non-listening port was not refused")
        finally:
            probe.close()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FullBacklog:
    """A listener on 127.0.0.1 whose accept queue is full: connect() to it hangs.

    listen(0), then connect (without accepting) until one connect attempt times out;
    the kernel then drops further SYNs. The constructor proves the behaviour on this
    kernel, so a test using it cannot pass by accident."""

    def __init__(self, probe_timeout=0.3, max_fill=64):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(max_fill):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(probe_timeout)
            try:
                s.connect(("127.0.0.1", self.port))
            except (socket.timeout, TimeoutError):
                s.close()
                break
            self.fillers.append(s)
        else:
            self.close()
            raise AssertionError("could not fill the accept queue of a listen(0) socket: "
                                 "connect() never hangs on this kernel")
        # prove it once more: a fresh connect must still hang
        s = socket.socket()
        s.settimeout(probe_timeout)
        t0 = time.monotonic()
        try:
            s.connect(("127.0.0.1", self.port))
            hung = False
        except (socket.timeout, TimeoutError):
            hung = True
        finally:
            s.close()
        if not hung:
            self.close()
            raise AssertionError("connect to a full backlog returned after %.3fs" % (
                time.monotonic() - t0))

    def close(self):
        for s in self.fillers:
            s.close()
        self.listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
