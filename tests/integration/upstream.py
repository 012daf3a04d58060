"""A real SMTP upstream for the integration tests: Debian's aiosmtpd.

Upstream(mode, cert, key) runs an aiosmtpd SMTP server in a background thread with
its own event loop, on 127.0.0.1 and a port the kernel picks (the listening socket is
bound and listening before start() returns, so there is nothing to wait for).

mode "starttls":  cleartext greeting, STARTTLS offered and required before anything
                  else (require_starttls=True); AUTH offered only after TLS.
mode "implicit":  TLS from the first byte (as on port 465).
mode "plain":     no TLS at all (used to test --tls implicit against a cleartext server).

AUTH PLAIN and LOGIN are offered; USERS holds the accounts. The AUTH LOGIN prompts
are the classic "Username:" / "Password:". Every message accepted is stored as a
Delivery with the envelope, the raw content bytes exactly as received (after the
SMTP dot-unstuffing, as RFC 5321 defines the content) and the authenticated user.
"""

import asyncio
import logging
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import List, Optional

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# aiosmtpd logs to "mail.log": deprecation chatter and a traceback for every TLS
# handshake that smtptap aborts on purpose. Noise in test reports.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)

HOSTNAME = "mx.test.example"

# a message whose content contains this line is rejected at the end of DATA (554)
REJECT_MARKER = b"X-Test-Reject: yes\r\n"

USERS = {
    "alice@example.org": "Tr0ub4dor&3-horse",
    "bob": "correct horse battery staple",
}


@dataclass
class Delivery:
    mail_from: str
    rcpt_tos: List[str]
    content: bytes
    user: Optional[str]
    tls_version: Optional[str]
    mail_options: List[str] = field(default_factory=list)


@dataclass
class AuthAttempt:
    mechanism: str
    user: str
    success: bool


class _SMTP(SMTP):
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"


class _Handler:
    def __init__(self, owner):
        self.owner = owner

    async def handle_DATA(self, server, session, envelope):
        user = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            user = session.auth_data.login.decode("utf-8", "replace")
        sslobj = server.transport.get_extra_info("ssl_object") if server.transport else None
        content = envelope.original_content
        if content is not None and REJECT_MARKER in content:
            return "554 5.6.0 message rejected by the test upstream"

        if isinstance(content, str):  # decode_data is False, but be safe
            content = content.encode("utf-8", "surrogateescape")
        self.owner._store(Delivery(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            content=bytes(content),
            user=user,
            tls_version=sslobj.version() if sslobj is not None else None,
            mail_options=list(envelope.mail_options),
        ))
        return "250 2.0.0 OK queued as %d" % len(self.owner.deliveries)


class Upstream:
    def __init__(self, mode="starttls", cert=None, key=None, host="127.0.0.1",
                 users=None):
        if mode not in ("starttls", "implicit", "plain"):
            raise ValueError(mode)
        if mode != "plain" and not (cert and key):
            raise ValueError("a TLS upstream needs a certificate and key")
        self.mode = mode
        self.host = host
        self.users = dict(USERS if users is None else users)
        self.deliveries: List[Delivery] = []
        self.auth_attempts: List[AuthAttempt] = []
        self._cond = threading.Condition()
        self.ctx = None
        if mode != "plain":
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
            self.ctx.sni_callback = self._sni
        self.sni_names: List[Optional[str]] = []  # server_name of each TLS handshake
        self.loop = None
        self.server = None
        self.thread = None
        self.port = None

    # -- message store -------------------------------------------------------------

    def _store(self, delivery):
        with self._cond:
            self.deliveries.append(delivery)
            self._cond.notify_all()

    def wait_deliveries(self, n, timeout=10.0):
        """Wait until at least N messages were delivered; return the list."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.deliveries) >= n, timeout)
            got = list(self.deliveries)
        assert ok, "upstream got %d message(s) within %.1fs, expected %d" % (
            len(got), timeout, n)
        return got

    def _sni(self, sslobj, server_name, ctx):
        with self._cond:
            self.sni_names.append(server_name)
        return None

    # -- authentication ------------------------------------------------------------

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = False
        user = ""
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            ok = self.users.get(user) == password
        with self._cond:
            self.auth_attempts.append(AuthAttempt(mechanism, user, ok))
        if not ok:
            # handled=False: aiosmtpd answers "535 5.7.8 Authentication credentials invalid"
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data)

    # -- server life cycle ---------------------------------------------------------

    def _factory(self):
        kwargs = dict(
            hostname=HOSTNAME,
            ident="aiosmtpd test upstream",
            authenticator=self._authenticate,
            auth_require_tls=True,
            loop=self.loop,
            timeout=30,
        )
        if self.mode == "starttls":
            kwargs.update(tls_context=self.ctx, require_starttls=True)
        else:
            # implicit: the transport is TLS already, which aiosmtpd does not know;
            # plain: the tests need AUTH without TLS.
            kwargs.update(auth_require_tls=False)
        return _SMTP(_Handler(self), **kwargs)

    def start(self):
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors = []

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self.server = self.loop.run_until_complete(self.loop.create_server(
                    self._factory, sock=sock,
                    ssl=self.ctx if self.mode == "implicit" else None))
            except Exception as e:  # pragma: no cover - reported by start()
                errors.append(e)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            # shut down: close the server and cancel the connection handlers
            self.server.close()
            tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                self.loop.run_until_complete(
                    asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.server.wait_closed())
            self.loop.close()

        self.thread = threading.Thread(target=run, name="upstream-%s" % self.mode,
                                       daemon=True)
        self.thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        assert ready.is_set(), "aiosmtpd upstream did not start"
        return self

    def stop(self):
        if self.loop is not None and self.thread is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def address(self):
        if ":" in self.host:
            return "[%s]:%d" % (self.host, self.port)
        return "%s:%d" % (self.host, self.port)


if __name__ == "__main__":
    # Manual check: python3 upstream.py PKIDIR [starttls|implicit|plain]
    import sys
    import time
    d = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "starttls"
    up = Upstream(mode, d + "/good.crt", d + "/good.key").start()
    print(up.port, flush=True)
    try:
        while True:
            time.sleep(1)
            for m in up.deliveries:
                print(m)
            up.deliveries.clear()
    except KeyboardInterrupt:
        up.stop()
