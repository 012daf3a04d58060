"""Data integrity at volume (issue 5 point 4).

SMTPTAP_INTEGRITY_COUNT messages (default 1000) of 0 B up to
SMTPTAP_INTEGRITY_MAX_MIB (default 50) MiB cross smtptap in both TLS modes:
8-bit, NUL, bare LF, 100 KiB lines, dot-heavy text, and BDAT binary chunks, each
written in a random (seeded) segmentation of 1 B to 64 KiB. The upstream
(faultserver.Peer) hashes every DATA body and BDAT chunk as received; zero
differences allowed. Most messages are small; a few are large.
"""

import hashlib
import os
import random

import pytest

from faultserver import GREETING
from mua import Mua, session_prologue
from test_faults import Invariants  # noqa: F401 (the fixture below builds one)
from test_faults import inv, canary  # noqa: F401  pytest fixtures

COUNT = int(os.environ.get("SMTPTAP_INTEGRITY_COUNT", "1000"))
MAX_MIB = float(os.environ.get("SMTPTAP_INTEGRITY_MAX_MIB", "50"))
SEED = int(os.environ.get("SMTPTAP_INTEGRITY_SEED", "20261129"))
PER_SESSION = 50


def _content(rng, kind, size):
    """SIZE bytes of message content of KIND (CRLF-terminated unless binary)."""
    if size == 0:
        return b""
    if kind == "8bit":
        base = bytes(rng.randrange(0x20, 0x100) for _ in range(4096))
    elif kind == "nul":
        base = bytes(rng.choice((0, 0, 0x41, 0xff, 0x0d)) for _ in range(4096))
    elif kind == "barelf":
        base = b"bare\nlf line\n\n.\nx\n" * 256
    elif kind == "longlines":
        base = b"L" * (100 * 1024) + b"\r\n"
    elif kind == "dots":
        base = b".\r\n..\r\n.dot\r\n...\r\n\r\n.\r\n" * 160
    else:
        base = rng.randbytes(4096)
    reps = size // len(base) + 1
    return (base * reps)[:size]


def _stuffed(content):
    """DATA transmission of CONTENT: dot-stuffing at line starts, CRLF.CRLF end."""
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    out = content.replace(b"\r\n.", b"\r\n..")
    if out.startswith(b"."):
        out = b"." + out
    return out + b".\r\n"


def _plan(rng):
    kinds = ["8bit", "nul", "barelf", "longlines", "dots", "bdat"]
    max_bytes = int(MAX_MIB * (1 << 20))
    plan = []
    for i in range(COUNT):
        r = rng.random()
        if i == 0:
            size = 0
        elif i == 1:
            size = max_bytes
        elif r < 0.90:
            size = rng.randrange(0, 8192)
        elif r < 0.99:
            size = rng.randrange(8192, 1 << 20)
        else:
            size = rng.randrange(1 << 20, max(max_bytes // 4, (1 << 20) + 1))
        plan.append((kinds[i % len(kinds)], min(size, max_bytes)))
    return plan


def _send_segmented(m, rng, data):
    i = 0
    while i < len(data):
        n = rng.choice((1, 7, 512, 1400, 16384, 65536, rng.randrange(1, 65537)))
        m.send(data[i:i + n])
        i += n


def _run(inv, mode):
    rng = random.Random(SEED + (0 if mode == "starttls" else 1))
    srv, tap = inv.relay_tap(None, mode)
    expected = []
    plan = _plan(rng)
    for start in range(0, len(plan), PER_SESSION):
        with Mua(tap.port, timeout=120) as m:
            session_prologue(m)
            for kind, size in plan[start:start + PER_SESSION]:
                m.cmd(b"MAIL FROM:<i@example.org>\r\n", 250)
                m.cmd(b"RCPT TO:<j@example.org>\r\n", 250)
                content = _content(rng, kind, size)
                if kind == "bdat":
                    chunks = []
                    i = 0
                    while i < len(content) or not chunks:
                        n = rng.randrange(0, 300000)
                        chunks.append(content[i:i + n])
                        i += n
                    for k, c in enumerate(chunks):
                        last = b" LAST" if k == len(chunks) - 1 else b""
                        _send_segmented(m, rng, b"BDAT %d%s\r\n" % (len(c), last) + c)
                        code, lines = m.reply()
                        assert code == 250, lines
                        expected.append((len(c), hashlib.sha256(c).hexdigest()))
                else:
                    m.cmd(b"DATA\r\n", 354)
                    wire = _stuffed(content)
                    _send_segmented(m, rng, wire)
                    code, lines = m.reply()
                    assert code == 250, lines
                    expected.append((len(wire), hashlib.sha256(wire).hexdigest()))
            m.send(b"QUIT\r\n")
            assert m.reply()[0] == 221
            m.read_until_close()
        peer = srv.peer(start // PER_SESSION)
        inv.flow(m.tx, peer.rx, "client->server session %d" % (start // PER_SESSION))
        inv.flow(peer.tx, m.rx, "server->client session %d" % (start // PER_SESSION))
    srv.wait_done(30)
    got = [msg for p in srv.peers for msg in p.messages]
    diffs = [i for i, (a, b) in enumerate(zip(expected, got)) if a != b]
    assert len(got) == len(expected), "upstream got %d bodies, %d sent" % (len(got),
                                                                          len(expected))
    assert not diffs, "%d bodies differ, first at #%d" % (len(diffs), diffs[0])
    inv.check(settle=10)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_integrity_at_volume(inv, mode):
    _run(inv, mode)


@pytest.fixture(autouse=True)
def _per_test_timeout():
    """This module's budget: minutes, not conftest's 30 s per test."""
    import signal
    limit = float(os.environ.get("SMTPTAP_INTEGRITY_TIMEOUT", "600"))

    def on_alarm(signum, frame):
        raise TimeoutError("integrity test took longer than %.0fs" % limit)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
