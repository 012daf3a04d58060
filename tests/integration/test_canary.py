"""The canary sweep across mechanisms and output sinks.

test_canary_hostile: the same sinks and formats, raw clients sending what a review
found to leak: AUTH with its words separated by anything but one space (HTAB, runs of
blanks, leading blanks, VT, FF, bare CR, NUL, none; any case; the mechanism split
across writes), a response or the password sent after the exchange ended (535, 504,
"*" and 501, a duplicate reply taken for AUTH's), and LOGIN with prompts in other
languages, empty prompts, or the password asked first. The server quotes refused
commands (aiosmtpd: upper case); no output holds the secret in any case.

One smtptap, one upstream offering every mechanism with one canary secret; every
client and mechanism of test_mechanisms.CASES logs in once with the right secret and
once with a wrong one (a second canary). The transcript goes to each sink smtptap
has: stderr (the default, no -o), stdout (-o -) and a file (-o FILE). Afterwards no
output of smtptap (the transcript file, stdout, stderr) holds either canary in any of
the encodings of test_mechanisms.encodings or as an 8-character piece.
"""

import base64
import json
import os
import re
import signal
import subprocess

import pytest

from helpers import (LISTENING_RE, SANITIZER_MARKERS, SmtpClient, aligned_b64,
                     assert_no_secret, poll)
from saslserver import ALL_MECHANISMS, SaslUpstream
from test_mechanisms import CASES, canary, encodings, run_client, message

USER = "alice@example.org"
# curl cannot be made to use XOAUTH2 while OAUTHBEARER is offered (see run_client);
# XOAUTH2 is swept here through msmtp, and through curl in test_mechanisms.
SESSIONS = [c for c in CASES if c[3] == "starttls" and c[:2] != ("curl", "XOAUTH2")]


class RawTap:
    """smtptap with the transcript on stderr, stdout or in a file (Tap always uses a
    file)."""

    def __init__(self, binary, workdir, sink, upstream, ca, extra=()):
        self.out = os.path.join(workdir, "smtptap.stdout")
        self.err = os.path.join(workdir, "smtptap.stderr")
        self.file = os.path.join(workdir, "smtptap.transcript")
        argv = [binary, "-l", "127.0.0.1:0", "--ca-file", ca, "--connect-timeout", "2",
                "--greeting-timeout", "2", "--tls-timeout", "2"]
        if sink == "stdout":
            argv += ["-o", "-"]
        elif sink == "file":
            argv += ["-o", self.file]
        self.sink = {"stderr": self.err, "stdout": self.out, "file": self.file}[sink]
        self.argv = argv + list(extra) + [upstream]
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=o,
                                         stderr=e)

        def listening():
            m = LISTENING_RE.search(self.read(self.sink).decode("utf-8", "replace"))
            assert m or self.proc.poll() is None, "smtptap exited %s: %r" % (
                self.proc.returncode, self.read(self.err))
            return m
        self.port = int(poll(listening, what="'listening on' in " + sink).group(2))

    @staticmethod
    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.mark.parametrize("sink,fmt,verbose", [
    ("stderr", "text", False), ("stdout", "text", False), ("file", "text", False),
    ("file", "json", True), ("stderr", "json", True)])
def test_canary_nowhere(smtptap_bin, pki, tmp_path, sink, fmt, verbose):
    """Every output (transcript, diagnostics), every format and verbosity."""
    right, wrong = canary("right"), canary("wrong")
    crt, key = pki.pair("good")
    up = SaslUpstream("starttls", crt, key, USER, right,
                      mechanisms=ALL_MECHANISMS).start()
    out_dir = tmp_path / "smtptap"
    out_dir.mkdir()
    cdir = tmp_path / "client"
    cdir.mkdir()
    extra = ["--format", fmt] + (["-v"] if verbose else [])
    tap = RawTap(smtptap_bin, str(out_dir), sink, up.address, pki.ca, extra)
    try:
        expected = []
        for client, mech, _, _, ir in SESSIONS:
            for secret in (right, wrong):
                ok, out = run_client(client, mech, tap.port, USER, secret,
                                     message("canary"), cdir, ir)
                assert ok == (secret == right), "%s %s: %s" % (client, mech, out)
                expected.append((mech, USER, secret == right))
        # every attempt reached the upstream with the mechanism asked for
        attempts = up.wait_attempts(len(expected))
        assert [(a.mechanism, a.user, a.success) for a in attempts] == expected
        assert len(up.deliveries) == len(SESSIONS)
    finally:
        tap.stop()
        up.stop()

    outputs = {name: tap.read(os.path.join(str(out_dir), name))
               for name in os.listdir(str(out_dir))}
    transcript = outputs[os.path.basename(tap.sink)].decode("utf-8", "replace")
    # the sink really holds the transcript of every session
    if fmt == "json":
        records = [json.loads(line) for line in transcript.splitlines()
                   if line.startswith("{")]
        summaries = [r for r in records if r["kind"] == "summary"]
        auths = " ".join(r["text"] for r in records if r["kind"] == "auth")
    else:
        summaries = re.findall(r"^\S+ [0-9a-f]{8} \* summary: .*$", transcript, re.M)
        auths = transcript
    assert len(summaries) == 2 * len(SESSIONS), transcript
    for mech in set(m for _, m, _, _, _ in SESSIONS):
        assert re.search(r"\bAUTH %s\b" % re.escape(mech), auths), mech
    if verbose:
        # -v really wrote smtptap's own notes, and they are checked below too
        assert b"session " in outputs["smtptap.stderr"], outputs["smtptap.stderr"][:500]
    for name, data in outputs.items():
        text = data.decode("utf-8", "replace")
        assert not any(m in text for m in SANITIZER_MARKERS), text
        for secret in (right, wrong):
            for desc, form in encodings(secret, USER).items():
                assert form not in data, "canary found as %s in smtptap's %s" % (desc,
                                                                                  name)
            assert_no_secret(secret, USER, {name: text})


# ---------------------------------------------------------------------------------
# hostile forms, raw clients
# ---------------------------------------------------------------------------------

def _b64(b):
    return base64.b64encode(b)


def _plain(user, secret):
    return _b64(b"\0" + user.encode() + b"\0" + secret.encode())


# AUTH PLAIN with the blob, its words separated every way (pieces sent in order)
def whitespace_forms(blob):
    return [
        [b"AUTH PLAIN\t" + blob], [b"AUTH\tPLAIN " + blob], [b"AUTH\tPLAIN\t" + blob],
        [b" AUTH PLAIN " + blob], [b" \t AUTH   PLAIN \t " + blob + b" \t "],
        [b"aUtH pLaIn " + blob], [b"AUTH PLAIN\x0b" + blob], [b"AUTH PLAIN\x0c" + blob],
        [b"AUTH PLAIN\r" + blob], [b"AUTH PLAIN\x00" + blob], [b"AUTH\x0bPLAIN " + blob],
        [b"\x0bAUTH PLAIN " + blob], [b"AUTHPLAIN " + blob], [b"AUTH " + blob],
        [b"AUTH PL", b"AIN\t" + blob], [b"AU", b"TH PLAIN\x0b", blob],
    ]


# LOGIN prompts: (user prompt, password prompt)
PROMPTS = [
    ("Nombre de usuario:", "Contraseña:"), ("Benutzername:", "Passwort:"),
    ("Nom d'utilisateur :", "Mot de passe :"), ("Имя пользователя:", "Пароль:"),
    ("用户名:", "密码:"), ("ユーザー名:", "パスワード:"), ("", ""),
    ("Käyttäjätunnus:", "Salasana:"), ("Tunnus:", "Koodi:"),
]


def _session(port, steps):
    """One connection: greeting, EHLO, then STEPS: bytes to send as a line (a list:
    pieces sent one by one), or an int: read one reply (any code)."""
    with SmtpClient(port) as c:
        c.read_reply()
        c.cmd("EHLO hostile.test", 250)
        for st in steps:
            if isinstance(st, int):
                for _ in range(st):
                    c.read_reply()
                continue
            pieces = st if isinstance(st, list) else [st]
            for k, piece in enumerate(pieces):
                c.send(piece + (b"\r\n" if k == len(pieces) - 1 else b""))
        c.cmd("QUIT")


def hostile_sessions(up, port, user, right, wrong):
    """Every hostile form once; returns the number of sessions."""
    n = 0
    for secret in (right, wrong):
        for form in whitespace_forms(_plain(user, secret)):
            _session(port, [form, 1])
            n += 1
    w = wrong.encode()
    after = [w, 1, _b64(w), 1, _plain(user, wrong), 1, b"VRFY " + w, 1]
    _session(port, [b"AUTH PLAIN " + _plain(user, wrong), 1] + after)    # 535
    _session(port, [b"AUTH FOO", 1] + after)                            # 504
    _session(port, [b"AUTH PLAIN", 1, b"*", 1] + after)                 # * and 501
    _session(port, [b"AUTH LOGIN", 1, _b64(user.encode()), 1, _b64(w), 1] + after)
    n += 4
    up.quirk = "dup_reply"
    for secret in (right, wrong):
        _session(port, [b"AUTH PLAIN", 1, _plain(user, secret), 1,
                        secret.encode(), 1])
        n += 1
    up.quirk = None
    for pu, pp in PROMPTS:
        up.login_prompts = (pu, pp)
        for secret in (right, wrong):
            s = _b64(secret.encode())
            _session(port, [b"AUTH LOGIN", 1, _b64(user.encode()), 1, s, 1])
            _session(port, [b"AUTH LOGIN " + _b64(user.encode()), 1, s, 1])
            n += 2
    # a server that asks for the password first, and a client that reads prompts
    up.quirk = "password_first"
    for pu, pp in PROMPTS[:6]:
        up.login_prompts = (pu, pp)
        for secret in (right, wrong):
            _session(port, [b"AUTH LOGIN", 1, _b64(secret.encode()), 1,
                            _b64(user.encode()), 1])
            n += 1
    up.quirk = None
    up.login_prompts = ("Username:", "Password:")
    return n


def assert_no_secret_any_case(secret, user, texts):
    """assert_no_secret, and no 8-character piece of the secret or of its base64
    upper-cased either (servers quote refused commands upper-cased)."""
    assert_no_secret(secret, user, texts)
    blob = base64.b64encode(b"\0" + user.encode() + b"\0" + secret.encode()).decode()
    for where, text in texts.items():
        up = text.upper()
        for form in [secret] + aligned_b64(secret.encode()) + [blob[4:-4]]:
            f = form.upper()
            for i in range(0, max(1, len(f) - 7)):
                assert f[i:i + 8] not in up, "%r (upper case) found in %s" % (
                    f[i:i + 8], where)


@pytest.mark.parametrize("sink,fmt,verbose", [
    ("stderr", "text", False), ("stdout", "text", False), ("file", "text", False),
    ("file", "json", True), ("stderr", "json", True)])
def test_canary_hostile(smtptap_bin, pki, tmp_path, sink, fmt, verbose):
    right, wrong = canary("right"), canary("wrong")
    crt, key = pki.pair("good")
    up = SaslUpstream("starttls", crt, key, USER, right,
                      mechanisms=ALL_MECHANISMS).start()
    out_dir = tmp_path / "smtptap"
    out_dir.mkdir()
    extra = ["--format", fmt] + (["-v"] if verbose else [])
    tap = RawTap(smtptap_bin, str(out_dir), sink, up.address, pki.ca, extra)
    try:
        n = hostile_sessions(up, tap.port, USER, right, wrong)

        def summaries():
            t = RawTap.read(tap.sink).decode("utf-8", "replace")
            return t.count("summary") >= n and t
        poll(summaries, what="%d summaries" % n)
        # the odd forms did reach the server: some logins succeeded through them
        assert any(a.success for a in up.auth_attempts)
        assert any(a.mechanism == "LOGIN" and a.success for a in up.auth_attempts)
    finally:
        tap.stop()
        up.stop()
    outputs = {name: tap.read(os.path.join(str(out_dir), name)).decode(
        "utf-8", "replace") for name in os.listdir(str(out_dir))}
    transcript = outputs[os.path.basename(tap.sink)]
    if fmt == "json":
        records = [json.loads(line) for line in transcript.splitlines()
                   if line.startswith("{")]
        summ = [r for r in records if r["kind"] == "summary"]
        mechs = [r.get("auth_mech") for r in summ if r.get("auth_mech")]
    else:
        summ = re.findall(r"^\S+ [0-9a-f]{8} \* summary: .*$", transcript, re.M)
        mechs = [m for m in re.findall(r", auth (<[^>]*>|[^ ,]+)", "\n".join(summ))
                 if m != "none"]
    assert len(summ) == n, transcript[-3000:]
    # the summary names a valid mechanism, or says it was not one
    assert mechs and all(re.fullmatch(r"[A-Z0-9_-]{1,20}|<invalid mechanism, \d+ bytes>",
                                      m) for m in mechs), mechs
    assert any(m.startswith("<invalid") for m in mechs), mechs
    for text in outputs.values():
        assert not any(m in text for m in SANITIZER_MARKERS), text
    for secret in (right, wrong):
        assert_no_secret_any_case(secret, USER, outputs)
