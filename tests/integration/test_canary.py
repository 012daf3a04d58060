"""The canary sweep across mechanisms and output sinks.

One smtptap, one upstream offering every mechanism with one canary secret; every
client and mechanism of test_mechanisms.CASES logs in once with the right secret and
once with a wrong one (a second canary). The transcript goes to each sink smtptap
has: stderr (the default, no -o), stdout (-o -) and a file (-o FILE). Afterwards no
output of smtptap (the transcript file, stdout, stderr) holds either canary in any of
the encodings of test_mechanisms.encodings or as an 8-character piece.
"""

import json
import os
import re
import signal
import subprocess

import pytest

from helpers import LISTENING_RE, SANITIZER_MARKERS, assert_no_secret, poll
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
