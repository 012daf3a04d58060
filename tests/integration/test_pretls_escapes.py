"""Hostile text from the upstream before TLS, in every refusal path and sink.

Before TLS anyone on the path can answer in the upstream's name. Whatever such a
peer puts in a greeting, an EHLO refusal, a STARTTLS refusal or an invalid reply
(every C0 control, DEL, the C1 controls as raw bytes and as UTF-8, and every
bidirectional or invisible formatting control) must reach the transcript, the
summary and the 421 smtptap sends to the client escaped: no sink may carry one
of them raw, and a JSON consumer must not get one back when it decodes a string.
"""

import json
import os
import signal
import socket
import subprocess
import threading

import pytest

from helpers import LISTENING_RE, SANITIZER_MARKERS, poll, read_until_close

C0 = bytes(c for c in range(1, 0x20) if c not in (0x0a, 0x0d))
C1_RAW = bytes(range(0x80, 0xa0))
C1_UTF8 = "".join(chr(c) for c in range(0x80, 0xa0)).encode()
# Bidi_Control, and the invisible marks that reorder or hide text.
FORMAT_CONTROLS = [0x061c, 0x200b, 0x200c, 0x200d, 0x200e, 0x200f, 0x202a, 0x202b,
                   0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x2028,
                   0x2029, 0xfeff]
FORMATS_UTF8 = "".join(chr(c) for c in FORMAT_CONTROLS).encode()
PAYLOAD = (b"\x1b[2J\x1b]0;pwned\x07" + C0 + b"|\x7f|" + C1_RAW + b"|" + C1_UTF8 + b"|" +
           FORMATS_UTF8 + b"|end")

# Code points no output may carry raw (in text) or decoded (in JSON strings).
FORBIDDEN = set(range(0, 0x20)) | set(range(0x7f, 0xa0)) | set(FORMAT_CONTROLS)


class Refuser:
    """An upstream that refuses before TLS in one of several ways, with PAYLOAD
    in the text of the refusal."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            if self.path == "greeting":
                c.sendall(b"554 5.7.1 " + PAYLOAD + b"\r\n")
                f.readline()
                return
            c.sendall(b"220 refuser.example ESMTP\r\n")
            f.readline()                                    # EHLO
            if self.path == "ehlo":
                c.sendall(b"550 5.7.1 " + PAYLOAD + b"\r\n")
            elif self.path == "ehlo-multiline":
                c.sendall(b"550-" + PAYLOAD + b"\r\n550 5.7.1 second line\r\n")
            elif self.path == "invalid-reply":
                c.sendall(b"25" + PAYLOAD + b"\r\n")
            else:
                c.sendall(b"250-refuser.example\r\n250 STARTTLS\r\n")
                f.readline()                                # STARTTLS
                c.sendall(b"454 4.7.0 " + PAYLOAD + b"\r\n")
            f.readline()
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


def read(path):
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def forbidden_in(text):
    return sorted({"U+%04X" % ord(ch) for ch in text if ord(ch) in FORBIDDEN})


def check_text(raw, what):
    """Raw output bytes: valid UTF-8, nothing forbidden but the line ends."""
    text = raw.decode("utf-8")
    bad = forbidden_in(text.replace("\n", ""))
    assert not bad, "%s carries %s raw:\n%s" % (what, bad, text[-3000:])
    return text


def check_json(raw, what):
    """As check_text, and no JSON string decodes to a forbidden character;
    returns the records' texts, decoded."""
    texts = []
    for line in check_text(raw, what).splitlines():
        rec = json.loads(line)
        for k, v in rec.items():
            if isinstance(v, str):
                bad = forbidden_in(v)
                assert not bad, "%s: JSON field %r decodes to %s: %r" % (what, k, bad, v)
        texts.append(rec["text"])
    return "\n".join(texts) + "\n"


EXPECT = {
    "greeting": "upstream refused the session",
    "ehlo": "upstream rejected smtptap's EHLO: 550 5.7.1 \\x1b[2J",
    "ehlo-multiline": "upstream rejected smtptap's EHLO: 550-\\x1b[2J",
    "starttls": "upstream refused STARTTLS: 454 4.7.0 \\x1b[2J",
    "invalid-reply": "upstream sent an invalid reply",
}


@pytest.mark.parametrize("sink", ["file", "json", "stderr", "stdout", "dir"])
@pytest.mark.parametrize("path", sorted(EXPECT))
def test_refusal_before_tls_is_escaped_everywhere(smtptap_bin, tmp_path, path, sink):
    up = Refuser(path)
    out, err = tmp_path / "out", tmp_path / "err"
    argv = [smtptap_bin, "-l", "127.0.0.1:0", "--tls", "starttls",
            "--greeting-timeout", "5", "127.0.0.1:%d" % up.port]
    where = {"stderr": err, "stdout": out}.get(sink)
    if sink in ("file", "json"):
        where = tmp_path / "transcript"
        argv[1:1] = ["-o", str(where)] + (["--format", "json"] if sink == "json" else [])
    elif sink == "stdout":
        argv[1:1] = ["-o", "-"]
    elif sink == "dir":
        (tmp_path / "sessions").mkdir()
        argv[1:1] = ["-o", "dir:%s" % (tmp_path / "sessions")]
        where = tmp_path / "sessions" / "smtptap.log"  # the program's own lines
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
    try:
        m = poll(lambda: LISTENING_RE.search(read(where).decode("utf-8", "replace"))
                 or (proc.poll() is not None and "exited"),
                 what="smtptap listening")
        assert m != "exited", err.read_bytes()
        port = int(m.group(2))
        got, _ = read_until_close(port)
        if path != "greeting":
            # The client's 421 carries the reason, escaped, on one line.
            assert got.startswith(b"421 4.7.0 smtptap: ") or \
                got.startswith(b"421 4.4.2 smtptap: "), got
            assert got.endswith(b"\r\n") and got.count(b"\r\n") == 1, got
            check_text(got[:-2], "the client's 421")
            assert len(got) <= 512, "a 421 longer than one SMTP reply line: %d" % len(got)

        def summary():
            if sink == "dir":
                return any(b"summary" in (tmp_path / "sessions" / f).read_bytes()
                           for f in os.listdir(tmp_path / "sessions"))
            return b"summary" in read(where)
        poll(summary, what="the session's summary")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        up.close()
    outputs = {"stderr": err.read_bytes(), "stdout": out.read_bytes()}
    if sink in ("file", "json"):
        outputs["transcript"] = where.read_bytes()
    if sink == "dir":
        for f in os.listdir(tmp_path / "sessions"):
            outputs[f] = (tmp_path / "sessions" / f).read_bytes()
    joined = ""
    for name, raw in outputs.items():
        if sink == "json" and name == "transcript":
            joined += check_json(raw, name)
        else:
            joined += check_text(raw, name)
    assert not [s for s in SANITIZER_MARKERS if s in joined], joined[-3000:]
    assert EXPECT[path] in joined, joined[-3000:]
    if path != "greeting":
        assert "summary:" in joined or '"summary"' in joined
