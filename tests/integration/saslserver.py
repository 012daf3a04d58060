"""An upstream that implements every SASL mechanism of issue 3 for real.

SaslUpstream(mode, cert, key, user=..., secret=..., mechanisms=[...]) runs an aiosmtpd
(Debian python3-aiosmtpd 1.4.3) SMTP server in a background thread, on 127.0.0.1 and a
port the kernel picks; the socket listens before start() returns.

mode "starttls":  cleartext greeting, STARTTLS required before anything else, AUTH
                  offered only after TLS.
mode "implicit":  TLS from the first byte.

One account: USER and SECRET (a password, or the bearer token for XOAUTH2 and
OAUTHBEARER). MECHANISMS is the list offered in EHLO (only those), from:

  PLAIN, LOGIN   aiosmtpd's own; the prompts are "Username:" / "Password:"
  CRAM-MD5       RFC 2195: HMAC-MD5 of the challenge keyed with the password
  XOAUTH2        "user=U^Aauth=Bearer T^A^A"; on a bad token: 334 base64(JSON error),
                 then 535 after the client's (empty) response
  OAUTHBEARER    RFC 7628 "n,a=U,^Ahost=..^Aport=..^Aauth=Bearer T^A^A"; same error dance
  SCRAM-SHA-1, SCRAM-SHA-256   RFC 5802 / 7677 (no channel binding): the client proof is
                 verified, the server signature is sent as "334 base64(v=...)", 235 after
                 the client's empty response
  DIGEST-MD5     RFC 2831 with realm, nonce, qop=auth, charset=utf-8, algorithm=md5-sess:
                 the response is verified, rspauth is sent, 235 after the empty response

chunking=True also offers CHUNKING and implements BDAT (RFC 3030) by hand: exactly N
octets are read after the command line, whatever they contain.

Set between sessions (each connection reads them when it starts):
  login_prompts   the LOGIN prompts (user, password), any text (UTF-8): e.g. Spanish
                  ("Nombre de usuario:", "Contraseña:") or empty ("", "")
  quirk           None, or one of
                    "dup_reply"      AUTH PLAIN without an initial response is answered
                                     by a stray "250 2.0.0 Ok" and the response is then
                                     read without a 334 (a duplicate reply that the
                                     transcript pairs with AUTH)
                    "password_first" AUTH LOGIN without an initial response asks for
                                     the password first, then the user name
                    "refuse_data"    DATA is refused with 554; the lines that follow
                                     are read as commands (and quoted in 500 replies)

Every AUTH attempt is recorded as an AuthAttempt (mechanism, user, success and the
values a transcript must not show: "digest", "proof", ...); every accepted message as a
Delivery with the content bytes as received (after dot-unstuffing for DATA, the chunks
concatenated for BDAT), the mechanism and user that authenticated the session, and the
BDAT chunk sizes.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, auth_mechanism

logging.getLogger("mail.log").setLevel(logging.CRITICAL)

HOSTNAME = "mx.test.example"
REALM = HOSTNAME
SCRAM_ITERATIONS = 4096
ALL_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER", "SCRAM-SHA-1",
                  "SCRAM-SHA-256", "DIGEST-MD5")
# a recipient the upstream refuses (to show reply pairing under PIPELINING)
REFUSED_RCPT = "nobody@refused.example"
INVALID = "535 5.7.8 Authentication credentials invalid"


@dataclass
class AuthAttempt:
    mechanism: str
    user: Optional[str]
    success: bool
    # values the transcript must not show (the CRAM-MD5 digest, the SCRAM proof, ...)
    hidden: Dict[str, str] = field(default_factory=dict)


@dataclass
class Identity:
    mechanism: str
    user: str


@dataclass
class Delivery:
    mail_from: str
    rcpt_tos: List[str]
    content: bytes
    mechanism: Optional[str]
    user: Optional[str]
    tls_version: Optional[str]
    chunks: List[int] = field(default_factory=list)   # BDAT chunk sizes; [] for DATA


def _b64(b):
    return base64.b64encode(b).decode("ascii")


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def _digest_fields(text):
    """RFC 2831 "key=value, key="quoted value"" list -> dict (lower-case keys)."""
    out = {}
    rx = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,]*)\s*(,|$)')
    pos = 0
    while pos < len(text):
        m = rx.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError("bad DIGEST-MD5 field list at %d: %r" % (pos, text))
        value = re.sub(r"\\(.)", r"\1", m.group(3)) if m.group(3) is not None \
            else m.group(2).strip()
        out[m.group(1).lower()] = value
        pos = m.end()
    return out


def _oauth_kv(blob):
    """XOAUTH2 / OAUTHBEARER key=value pairs separated by ^A."""
    out = {}
    for part in blob.split(b"\x01"):
        if b"=" in part:
            k, v = part.split(b"=", 1)
            out[k.decode("utf-8", "replace").lower()] = v.decode("utf-8", "replace")
    return out


class _SaslSMTP(SMTP):
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, owner, *args, **kwargs):
        self.owner = owner
        self._bdat = None           # (bytearray, [sizes]) while a BDAT transaction runs
        self.AuthLoginUsernameChallenge, self.AuthLoginPasswordChallenge = \
            owner.login_prompts
        self.quirk = owner.quirk
        super().__init__(*args, **kwargs)

    # -- quirks --------------------------------------------------------------------

    async def auth_PLAIN(self, server, args):
        if self.quirk != "dup_reply" or len(args) > 1:
            return await super().auth_PLAIN(server, args)
        await self.push("250 2.0.0 Ok")
        line = await self._reader.readline()
        try:
            _, login, password = base64.b64decode(line.strip(), validate=True) \
                .split(b"\0")
        except (binascii.Error, ValueError):
            await self.push("501 5.5.2 Can't decode base64")
            return AuthResult(success=False, handled=True)
        return self._authenticate("PLAIN", LoginPassword(login, password))

    async def auth_LOGIN(self, server, args):
        if self.quirk != "password_first" or len(args) > 1:
            return await super().auth_LOGIN(server, args)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False)
        login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
        if login is MISSING:
            return AuthResult(success=False)
        return self._authenticate("LOGIN", LoginPassword(login, password))

    async def smtp_DATA(self, arg):
        if self.quirk == "refuse_data":
            return await self.push("554 5.5.1 Error: no valid recipients")
        return await super().smtp_DATA(arg)

    # -- helpers -------------------------------------------------------------------

    def _record(self, mech, user, ok, **hidden):
        self.owner._add_attempt(AuthAttempt(mech, user, ok, dict(hidden)))

    def _result(self, mech, user, ok, **hidden):
        self._record(mech, user, ok, **hidden)
        if ok:
            return AuthResult(success=True, auth_data=Identity(mech, user))
        return AuthResult(success=False, handled=False)

    async def _initial(self, args):
        """The initial response (decoded), or the response to an empty challenge.
        None when the client cancelled or sent bad base64 (already answered)."""
        if len(args) > 1:
            if args[1] == "=":
                return b""
            try:
                return base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await self.push("501 5.5.2 Can't decode base64")
                return None
        blob = await self.challenge_auth(b"")
        return None if blob is MISSING else blob

    async def _oauth_error(self, mech, user, token):
        """Bad token: the JSON error in a 334, the client's dummy reply, then 535."""
        self._record(mech, user, False)
        err = json.dumps({"status": "401", "schemes": "bearer",
                          "scope": "https://mail.example/"}).encode()
        reply = await self.challenge_auth(err)
        if reply is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=INVALID)

    # -- mechanisms ----------------------------------------------------------------

    @auth_mechanism("CRAM-MD5")
    async def auth_CRAM_MD5(self, server, args):
        if len(args) > 1:
            await self.push("501 5.5.2 CRAM-MD5 takes no initial response")
            return AuthResult(success=False, handled=True)
        challenge = "<%d.%d@%s>" % (secrets.randbelow(10 ** 9), int(time.time()),
                                    HOSTNAME)
        blob = await self.challenge_auth(challenge)
        if blob is MISSING:
            return AuthResult(success=False, handled=True)
        user, _, digest = blob.decode("utf-8", "replace").rpartition(" ")
        want = hmac.new(self.owner.secret.encode(), challenge.encode(),
                        hashlib.md5).hexdigest()
        ok = user == self.owner.user and hmac.compare_digest(digest.lower(), want)
        return self._result("CRAM-MD5", user, ok, digest=digest)

    @auth_mechanism("XOAUTH2")
    async def auth_XOAUTH2(self, server, args):
        blob = await self._initial(args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        kv = _oauth_kv(blob)
        user = kv.get("user")
        auth = kv.get("auth", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        if user != self.owner.user or token is None or \
                not hmac.compare_digest(token.encode(), self.owner.secret.encode()):
            return await self._oauth_error("XOAUTH2", user, token)
        return self._result("XOAUTH2", user, True)

    @auth_mechanism("OAUTHBEARER")
    async def auth_OAUTHBEARER(self, server, args):
        blob = await self._initial(args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        gs2, _, rest = blob.partition(b"\x01")
        parts = gs2.split(b",")
        user = None
        for p in parts[1:]:
            if p.startswith(b"a="):
                user = p[2:].decode("utf-8", "replace").replace("=2C", ",") \
                    .replace("=3D", "=")
        if not parts or parts[0] not in (b"n", b"y"):
            await self.push("501 5.5.2 bad GS2 header")
            return AuthResult(success=False, handled=True)
        kv = _oauth_kv(rest)
        auth = kv.get("auth", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        self.owner.oauth_fields.append(kv)
        if (user is not None and user != self.owner.user) or token is None or \
                not hmac.compare_digest(token.encode(), self.owner.secret.encode()):
            return await self._oauth_error("OAUTHBEARER", user, token)
        return self._result("OAUTHBEARER", user or self.owner.user, True)

    async def _scram(self, mech, hname, args):
        first = await self._initial(args)
        if first is None:
            return AuthResult(success=False, handled=True)
        text = first.decode("utf-8")
        m = re.match(r"^([ny]|p=[^,]*),(a=[^,]*)?,(n=([^,]*),r=([^,]+)(,.*)?)$", text)
        if not m:
            await self.push("501 5.5.2 bad SCRAM client-first-message")
            return AuthResult(success=False, handled=True)
        gs2 = text[:len(text) - len(m.group(3))]
        bare = m.group(3)
        user = m.group(4).replace("=2C", ",").replace("=3D", "=")
        cnonce = m.group(5)
        salt = os.urandom(16)
        nonce = cnonce + base64.b64encode(os.urandom(18)).decode()
        server_first = "r=%s,s=%s,i=%d" % (nonce, _b64(salt), SCRAM_ITERATIONS)
        final = await self.challenge_auth(server_first)
        if final is MISSING:
            return AuthResult(success=False, handled=True)
        final = final.decode("utf-8")
        without_proof, _, proof = final.rpartition(",p=")
        fields = dict(f.split("=", 1) for f in without_proof.split(",") if "=" in f)
        salted = hashlib.pbkdf2_hmac(hname, self.owner.secret.encode(), salt,
                                     SCRAM_ITERATIONS)
        client_key = hmac.new(salted, b"Client Key", hname).digest()
        stored_key = hashlib.new(hname, client_key).digest()
        auth_message = ",".join((bare, server_first, without_proof)).encode()
        client_sig = hmac.new(stored_key, auth_message, hname).digest()
        server_key = hmac.new(salted, b"Server Key", hname).digest()
        server_sig = _b64(hmac.new(server_key, auth_message, hname).digest())
        try:
            got = base64.b64decode(proof, validate=True)
        except binascii.Error:
            got = b""
        ok = (user == self.owner.user and fields.get("r") == nonce
              and fields.get("c") == _b64(gs2.encode())
              and len(got) == len(client_key)
              and hmac.compare_digest(_xor(got, client_sig), client_key))
        hidden = dict(proof=proof, server_signature=server_sig)
        if not ok:
            return self._result(mech, user, False, **hidden)
        # RFC 4954: additional data with success goes in a 334, answered by an empty line
        reply = await self.challenge_auth("v=" + server_sig)
        if reply is MISSING:
            return AuthResult(success=False, handled=True)
        return self._result(mech, user, True, **hidden)

    @auth_mechanism("SCRAM-SHA-1")
    async def auth_SCRAM_SHA_1(self, server, args):
        return await self._scram("SCRAM-SHA-1", "sha1", args)

    @auth_mechanism("SCRAM-SHA-256")
    async def auth_SCRAM_SHA_256(self, server, args):
        return await self._scram("SCRAM-SHA-256", "sha256", args)

    @auth_mechanism("DIGEST-MD5")
    async def auth_DIGEST_MD5(self, server, args):
        if len(args) > 1:
            await self.push("501 5.5.2 DIGEST-MD5 takes no initial response")
            return AuthResult(success=False, handled=True)
        nonce = base64.b64encode(os.urandom(24)).decode()
        challenge = ('realm="%s",nonce="%s",qop="auth",charset=utf-8,'
                     'algorithm=md5-sess' % (REALM, nonce))
        blob = await self.challenge_auth(challenge)
        if blob is MISSING:
            return AuthResult(success=False, handled=True)
        try:
            f = _digest_fields(blob.decode("utf-8"))
        except ValueError:
            await self.push("501 5.5.2 bad DIGEST-MD5 response")
            return AuthResult(success=False, handled=True)
        user = f.get("username")
        md5 = lambda b: hashlib.md5(b).digest()            # noqa: E731
        hx = lambda b: hashlib.md5(b).hexdigest()          # noqa: E731
        realm = f.get("realm", "")
        a1 = md5(("%s:%s:%s" % (user, realm, self.owner.secret)).encode()) + \
            (":%s:%s" % (f.get("nonce"), f.get("cnonce"))).encode()
        if "authzid" in f:
            a1 += (":" + f["authzid"]).encode()
        uri = f.get("digest-uri", "")

        def kd(a2):
            return hx(("%s:%s:%s:%s:%s:%s" % (hx(a1), f.get("nonce"), f.get("nc"),
                                              f.get("cnonce"), f.get("qop", "auth"),
                                              hx(a2.encode()))).encode())

        want = kd("AUTHENTICATE:" + uri)
        got = f.get("response", "")
        ok = (user == self.owner.user and f.get("nonce") == nonce
              and f.get("qop", "auth") == "auth" and uri.startswith("smtp/")
              and hmac.compare_digest(got.lower(), want))
        hidden = dict(response=got)
        if not ok:
            return self._result("DIGEST-MD5", user, False, **hidden)
        reply = await self.challenge_auth("rspauth=" + kd(":" + uri))
        if reply is MISSING:
            return AuthResult(success=False, handled=True)
        return self._result("DIGEST-MD5", user, True, **hidden)

    # -- BDAT (RFC 3030), by hand ---------------------------------------------------

    async def smtp_BDAT(self, arg):
        m = re.match(r"^(\d+)( +LAST)? *$", arg or "", re.I)
        if not m:
            # without a valid size the chunk cannot be skipped: give up the session
            await self.push("501 5.5.4 Syntax: BDAT size [LAST]")
            self.transport.close()
            return
        size, last = int(m.group(1)), bool(m.group(2))
        data = await self._reader.readexactly(size) if size else b""
        if not self.session.host_name:
            return await self.push("503 5.5.1 Error: send EHLO first")
        if not self.envelope.rcpt_tos:
            return await self.push("503 5.5.1 Error: need RCPT command")
        if self._bdat is None:
            self._bdat = (bytearray(), [])
        self._bdat[0].extend(data)
        self._bdat[1].append(size)
        if not last:
            return await self.push("250 2.0.0 %d octets received" % size)
        content, chunks = bytes(self._bdat[0]), self._bdat[1]
        self._bdat = None
        status = self.owner._deliver(self, self.envelope, content, chunks)
        self._set_post_data_state()
        await self.push(status)

    def _set_rset_state(self):
        self._bdat = None
        super()._set_rset_state()


class _Handler:
    def __init__(self, owner):
        self.owner = owner

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.owner.chunking:
            responses.insert(len(responses) - 1, "250-CHUNKING")
        if self.owner.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() == REFUSED_RCPT:
            # (the reply does not repeat the address: a transcript that pairs it
            # with its command under PIPELINING has to say so itself)
            return "550 5.1.1 recipient unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        return self.owner._deliver(server, envelope, bytes(content), [])


class SaslUpstream:
    def __init__(self, mode, cert, key, user, secret, mechanisms=ALL_MECHANISMS,
                 chunking=False, pipelining=True, host="127.0.0.1"):
        if mode not in ("starttls", "implicit"):
            raise ValueError(mode)
        unknown = set(mechanisms) - set(ALL_MECHANISMS)
        if unknown:
            raise ValueError("unknown mechanisms %r" % sorted(unknown))
        self.mode = mode
        self.host = host
        self.login_prompts = ("Username:", "Password:")
        self.quirk = None
        self.user = user
        self.secret = secret
        self.mechanisms = list(mechanisms)
        self.chunking = chunking
        self.pipelining = pipelining
        self.deliveries: List[Delivery] = []
        self.auth_attempts: List[AuthAttempt] = []
        self.oauth_fields: List[dict] = []
        self._cond = threading.Condition()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.loop = None
        self.server = None
        self.thread = None
        self.port = None

    # -- records -------------------------------------------------------------------

    def _add_attempt(self, attempt):
        with self._cond:
            self.auth_attempts.append(attempt)
            self._cond.notify_all()

    def _deliver(self, server, envelope, content, chunks):
        ident = server.session.auth_data if server.session.authenticated else None
        if isinstance(ident, LoginPassword):       # not used: PLAIN/LOGIN map to Identity
            ident = Identity("?", ident.login.decode("utf-8", "replace"))
        sslobj = server.transport.get_extra_info("ssl_object") if server.transport \
            else None
        d = Delivery(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                     content=content, mechanism=ident.mechanism if ident else None,
                     user=ident.user if ident else None,
                     tls_version=sslobj.version() if sslobj is not None else None,
                     chunks=list(chunks))
        with self._cond:
            self.deliveries.append(d)
            self._cond.notify_all()
            n = len(self.deliveries)
        return "250 2.0.0 OK queued as %d" % n

    def wait_deliveries(self, n, timeout=10.0):
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.deliveries) >= n, timeout)
            got = list(self.deliveries)
        assert ok, "upstream got %d message(s) within %.1fs, expected %d" % (
            len(got), timeout, n)
        return got

    def wait_attempts(self, n, timeout=10.0):
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.auth_attempts) >= n, timeout)
            got = list(self.auth_attempts)
        assert ok, "upstream saw %d AUTH attempt(s) within %.1fs, expected %d" % (
            len(got), timeout, n)
        return got

    # -- PLAIN and LOGIN go through aiosmtpd's authenticator -------------------------

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        user = auth_data.login.decode("utf-8", "replace")
        ok = user == self.user and hmac.compare_digest(auth_data.password,
                                                       self.secret.encode())
        self._add_attempt(AuthAttempt(mechanism, user, ok))
        if not ok:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=Identity(mechanism, user))

    # -- life cycle ----------------------------------------------------------------

    def _factory(self):
        kwargs = dict(hostname=HOSTNAME, ident="sasl test upstream",
                      authenticator=self._authenticate, loop=self.loop, timeout=30,
                      auth_exclude_mechanism=[m for m in ALL_MECHANISMS
                                              if m not in self.mechanisms])
        if self.mode == "starttls":
            kwargs.update(tls_context=self.ctx, require_starttls=True,
                          auth_require_tls=True)
        else:
            kwargs.update(auth_require_tls=False)   # aiosmtpd cannot see the TLS
        return _SaslSMTP(self, _Handler(self), **kwargs)

    def start(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
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
            self.server.close()
            tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                self.loop.run_until_complete(
                    asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.server.wait_closed())
            self.loop.close()

        self.thread = threading.Thread(target=run, name="sasl-upstream", daemon=True)
        self.thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        assert ready.is_set(), "SASL upstream did not start"
        return self

    def stop(self):
        if self.loop is not None and self.thread is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)
