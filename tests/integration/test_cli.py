"""Command line behaviour: help, version, usage errors, exit codes, --once, -o."""

import re
import socket
import subprocess

import pytest

from helpers import LISTENING_RE, SmtpClient

FLAGS = ["-l", "--listen", "-u", "--upstream", "--tls", "--ca-file", "--ca-path",
         "--no-verify", "--sni", "--ehlo", "-o", "--log", "--once", "--connect-timeout",
         "--greeting-timeout", "--tls-timeout", "--idle-timeout", "-V", "--version",
         "-h", "--help"]

EX_USAGE = 64
EX_CONFIG = 78


def run(binary, *args, timeout=10):
    return subprocess.run([binary] + list(args), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def no_sanitizer(proc):
    for marker in ("Sanitizer", "runtime error"):
        assert marker not in proc.stderr, proc.stderr


@pytest.mark.parametrize("opt", ["--help", "-h"])
def test_help(smtptap_bin, opt):
    p = run(smtptap_bin, opt)
    assert p.returncode == 0, "%s exited %d: %s" % (opt, p.returncode, p.stderr)
    text = p.stdout
    missing = [f for f in FLAGS if not re.search(r"(^|[\s,\[])%s([\s,=\]]|$)" % re.escape(f),
                                                 text, re.M)]
    assert not missing, "--help does not mention %s:\n%s" % (missing, text)
    for mode in ("starttls", "implicit", "none"):
        assert mode in text, "--help does not name --tls mode %r" % mode
    no_sanitizer(p)


@pytest.mark.parametrize("opt", ["-V", "--version"])
def test_version(smtptap_bin, opt):
    p = run(smtptap_bin, opt)
    assert p.returncode == 0, p.stderr
    assert re.match(r"smtptap \d+\.\d+\.\d+", p.stdout), "version output: %r" % p.stdout
    no_sanitizer(p)


def assert_usage_error(p, *names):
    assert p.returncode == EX_USAGE, "exit %d, expected %d (usage); stderr: %r" % (
        p.returncode, EX_USAGE, p.stderr)
    assert any(n in p.stderr for n in names), \
        "usage message does not name %s: %r" % (" or ".join(names), p.stderr)
    assert p.stdout == "", "usage error wrote to stdout: %r" % p.stdout
    no_sanitizer(p)


def test_bad_tls_mode(smtptap_bin):
    assert_usage_error(run(smtptap_bin, "--tls", "sometimes", "localhost:587"), "--tls")


def test_unknown_option(smtptap_bin):
    assert_usage_error(run(smtptap_bin, "--frobnicate", "localhost:587"), "frobnicate")


def test_missing_upstream(smtptap_bin):
    p = run(smtptap_bin, "-l", "127.0.0.1:0")
    assert p.returncode == EX_USAGE, "exit %d, stderr %r" % (p.returncode, p.stderr)
    assert "upstream" in p.stderr.lower(), p.stderr


@pytest.mark.parametrize("flag,value", [
    ("--connect-timeout", "abc"),
    ("--greeting-timeout", "-1"),
    ("--tls-timeout", "1x"),
    ("--idle-timeout", ""),
])
def test_bad_timeout_value(smtptap_bin, flag, value):
    assert_usage_error(run(smtptap_bin, flag, value, "localhost:587"), flag)


@pytest.mark.parametrize("value", ["127.0.0.1:99999", "127.0.0.1:port"])
def test_bad_listen_value(smtptap_bin, value):
    assert_usage_error(run(smtptap_bin, "-l", value, "localhost:587"), "-l", "--listen")


def test_bad_upstream_port(smtptap_bin):
    assert_usage_error(run(smtptap_bin, "localhost:70000"), "upstream", "70000")


def test_missing_ca_file_is_config_error(smtptap_bin, tmp_path):
    missing = str(tmp_path / "no-such-ca.pem")
    p = run(smtptap_bin, "-l", "127.0.0.1:0", "-o", str(tmp_path / "log"), "--ca-file",
            missing, "localhost:587")
    assert p.returncode == EX_CONFIG, "exit %d, expected %d; stderr %r" % (
        p.returncode, EX_CONFIG, p.stderr)
    assert missing in p.stderr, p.stderr


def test_port_in_use(smtptap_bin, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        p = run(smtptap_bin, "-l", "127.0.0.1:%d" % port, "-o", str(tmp_path / "log"),
                "localhost:587")
    finally:
        busy.close()
    assert p.returncode == 1, "exit %d, expected 1; stderr %r" % (p.returncode, p.stderr)
    lines = p.stderr.splitlines()
    assert lines == ["smtptap: cannot listen on 127.0.0.1:%d: Address already in use" % port],\
        "stderr must be exactly one 'cannot listen on' line: %r" % p.stderr


def test_once_exits_after_first_session(tap_factory, upstream_factory, pki):
    up = upstream_factory("starttls")
    tap = tap_factory(up.address, "--ca-file", pki.ca, "--once")
    with SmtpClient(tap.port) as c:
        code, lines, _ = c.read_reply()
        assert code == 220, lines
        c.cmd("EHLO once.test", 250)
        c.cmd("QUIT", 221)
    rc = tap.wait_exit(10)
    assert rc == 0, "smtptap --once exited %d; stderr %r" % (rc, tap.stderr())
    assert re.search(r"\* summary: ", tap.transcript()), tap.transcript()
    s = socket.socket()
    s.settimeout(2)
    with pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", tap.port))
    s.close()


def test_once_exits_after_failed_session(tap_factory, bad_factory):
    bad = bad_factory("close")
    tap = tap_factory(bad.address, "--once")
    with SmtpClient(tap.port) as c:
        data = c.read_until_close(10)
    assert data.startswith(b"421 "), data
    rc = tap.wait_exit(10)
    assert rc in (0, 1), "unexpected exit %d" % rc


def _start_raw(smtptap_bin, args):
    return subprocess.Popen([smtptap_bin] + args, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("where", ["stdout", "stderr"])
def test_log_destination(smtptap_bin, upstream_factory, pki, where):
    """-o - writes the transcript to stdout; without -o it goes to stderr."""
    up = upstream_factory("starttls")
    args = ["-l", "127.0.0.1:0", "--once", "--ca-file", pki.ca]
    if where == "stdout":
        args += ["-o", "-"]
    proc = _start_raw(smtptap_bin, args + [up.address])
    stream = proc.stdout if where == "stdout" else proc.stderr
    try:
        first = stream.readline().decode()
        m = LISTENING_RE.search(first)
        assert m, "first %s line is not the listening line: %r" % (where, first)
        with SmtpClient(int(m.group(2))) as c:
            c.read_reply()
            c.cmd("QUIT", 221)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rest = (out if where == "stdout" else err).decode()
    other = (err if where == "stdout" else out).decode()
    assert re.search(r"^\S+ [0-9a-f]{8} \* summary: ", rest, re.M), rest
    assert "summary:" not in other, "transcript also went to the other stream: %r" % other
    assert proc.returncode == 0


def test_listen_ipv6(tap_factory, upstream_factory, pki):
    up = upstream_factory("starttls")
    tap = tap_factory(up.address, "--ca-file", pki.ca, listen="[::1]:0")
    assert tap.host == "::1", tap.transcript()
    assert re.search(r"listening on \[::1\]:%d" % tap.port, tap.transcript())
    with SmtpClient(tap.port, host="::1") as c:
        code, _, _ = c.read_reply()
        assert code == 220
        c.cmd("QUIT", 221)
    text = tap.wait_summary(1)
    assert re.search(r"\* connect from \[::1\]:\d+ to \[::1\]:%d" % tap.port, text), text


def test_default_tls_mode_for_port_465(tap_factory):
    """--tls defaults to implicit for port 465, else starttls (listening line)."""
    tap = tap_factory("mail.invalid:465")
    assert re.search(r"upstream mail\.invalid:465 \(implicit\)", tap.transcript()), \
        tap.transcript()
    tap2 = tap_factory("mail.invalid")
    assert re.search(r"upstream mail\.invalid:587 \(starttls\)", tap2.transcript()), \
        tap2.transcript()


def test_upstream_option(tap_factory, upstream_factory, pki):
    up = upstream_factory("starttls")
    tap = tap_factory(None, "-u", up.address, "--ca-file", pki.ca)
    with SmtpClient(tap.port) as c:
        code, _, _ = c.read_reply()
        assert code == 220
        c.cmd("QUIT", 221)


def test_sigterm_stops_cleanly(tap_factory, upstream_factory, pki):
    up = upstream_factory("starttls")
    tap = tap_factory(up.address, "--ca-file", pki.ca)
    tap.proc.terminate()
    rc = tap.wait_exit(5)
    assert rc in (0, -15, 143), "exit status after SIGTERM: %d" % rc
