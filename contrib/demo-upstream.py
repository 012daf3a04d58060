#!/usr/bin/python3
"""A throwaway SMTP server for smtptap's demo: STARTTLS, AUTH PLAIN/LOGIN.

Usage: demo-upstream.py CERT KEY
Listens on 127.0.0.1 at a port the kernel picks, prints "READY <port>", and
accepts the user "demo@example.org" with the password "demo-password".
Delivered messages are summarised on stdout, not stored.
"""
import socket
import ssl
import sys
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

# aiosmtpd 1.4 warns about its own internals on every login.
warnings.filterwarnings("ignore", category=DeprecationWarning)

USER = b"demo@example.org"
PASSWORD = b"demo-password"


class Handler:
    async def handle_DATA(self, server, session, envelope):
        print("demo upstream: message from %s to %s, %d bytes"
              % (envelope.mail_from, ", ".join(envelope.rcpt_tos),
                 len(envelope.content)), flush=True)
        return "250 2.0.0 accepted by the demo upstream"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == USER and auth_data.password == PASSWORD)
    return AuthResult(success=ok)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port,
                            server_hostname="demo.localhost",
                            tls_context=ctx, require_starttls=True,
                            authenticator=authenticate, auth_require_tls=True)
    controller.start()
    print("READY %d" % port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
