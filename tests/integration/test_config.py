"""The config file: several services in one process, -t on a broken file, the
example file, allow lists and max_sessions (issue 4, point 1)."""

import os
import re
import signal
import smtplib
import socket
import subprocess

import pytest

from helpers import SmtpClient, no_sanitizer, poll, SERVICE_RE, CONF_TIMEOUTS as TIMEOUTS

EX_USAGE = 64
EX_CONFIG = 78

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.environ.get("TOP_SRCDIR") or os.path.join(HERE, "..", "..")

def run(binary, *args, timeout=10):
    return subprocess.run([binary] + list(args), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def send(port, user, password, marker):
    msg = ("From: %s\r\nTo: bob@example.net\r\nSubject: %s\r\n\r\nbody of %s\r\n"
           % (user, marker, marker)).encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.login(user, password)
        s.sendmail(user, ["bob@example.net"], msg)
    return msg


def test_two_services_at_once(conftap, upstream_factory, pki, account):
    user, password = account
    up_starttls = upstream_factory("starttls", users={user: password})
    up_implicit = upstream_factory("implicit", users={user: password})
    tap = conftap(
        "ca_file = %s\n"
        "\n"
        "[submission]\n"
        "listen = 127.0.0.1:0\n"
        "upstream = %s\n"
        "\n"
        "[smtps]\n"
        "listen = 127.0.0.1:0\n"
        "upstream = 127.0.0.1:%d\n"
        "tls = implicit\n" % (pki.ca, up_starttls.address, up_implicit.port))
    svcs = tap.services(2)
    assert set(svcs) == {"submission", "smtps"}, svcs
    assert svcs["submission"][1] == up_starttls.address
    assert svcs["submission"][0] != svcs["smtps"][0]
    assert "(implicit)" in tap.transcript()

    send(svcs["submission"][0], user, password, "to-starttls")
    send(svcs["smtps"][0], user, password, "to-implicit")
    a = up_starttls.wait_deliveries(1)
    b = up_implicit.wait_deliveries(1)
    assert len(a) == 1 and b"Subject: to-starttls" in a[0].content
    assert len(b) == 1 and b"Subject: to-implicit" in b[0].content
    assert password not in tap.transcript()


BROKEN = """\
# a config with one mistake planted on each marked line
ca_fil = /etc/ssl/ca.pem
verify = perhaps
this line is not a setting
[gmail]
listen = 127.0.0.1:2525
upstream = smtp.gmail.com:465
tls = x
tls = implicit
user = nobody
[gmail]
listen = 127.0.0.1:2600
upstream = mx.example
[no-upstream]
listen = 127.0.0.1:2601
[no-listen]
upstream = mx.example
[clash]
listen = 127.0.0.1:2525
upstream = mx.example
[public]
listen = 0.0.0.0:2602
upstream = mx.example
password = hunter2-secret
idle_timout = 5
[bad name]
upstream = mx.example
ca_file = /%s
"""

# line -> what the message must say
PLANTED = {
    2: r'unknown key "ca_fil" \(did you mean "ca_file"\?\)',
    3: r'verify: expected yes or no, got "perhaps"',
    4: r'expected "key = value"',
    8: r'\[gmail\] tls: expected starttls, implicit or none, got "x"',
    9: r'\[gmail\] duplicate key "tls" \(first set on line 8\)',
    10: r'\[gmail\] user: only allowed at the top',
    11: r'duplicate section \[gmail\] \(first on line 5\)',
    14: r'\[no-upstream\] no upstream',
    16: r'\[no-listen\] no listen address',
    19: r'\[clash\] listen 127.0.0.1:2525 is already used by \[gmail\] \(line 6\)',
    22: r'\[public\] listen 0.0.0.0:2602 is not a loopback address',
    24: r'\[public\] unknown key "password"',
    25: r'\[public\] unknown key "idle_timout" \(did you mean "idle_timeout"\?\)',
    26: r'bad service name "bad name"',
    28: r'line too long',
}


def test_check_config_reports_every_mistake(smtptap_bin, tmp_path):
    path = tmp_path / "broken.conf"
    path.write_text(BROKEN % ("x" * 300))
    p = run(smtptap_bin, "-c", str(path), "-t")
    assert p.returncode == EX_CONFIG, (p.returncode, p.stderr)
    assert p.stdout == ""
    lines = [l for l in p.stderr.splitlines() if re.match(r"\S+:\d+: ", l)]
    by_line = {}
    for l in lines:
        m = re.match(r"(\S+):(\d+): (.*)$", l)
        assert m.group(1) == str(path), l
        by_line.setdefault(int(m.group(2)), []).append(m.group(3))
    for line, rx in PLANTED.items():
        assert any(re.search(rx, msg) for msg in by_line.get(line, [])), \
            "line %d: no error matching %r in:\n%s" % (line, rx, p.stderr)
    assert set(by_line) == set(PLANTED), "unexpected errors:\n%s" % p.stderr
    assert "hunter2" not in p.stderr
    assert re.search(r"%d errors" % len(lines), p.stderr)
    no_sanitizer(p.stderr)

    # Without -t the same file does not start either.
    p = run(smtptap_bin, "-c", str(path))
    assert p.returncode == EX_CONFIG


def test_check_config_on_example(smtptap_bin):
    p = run(smtptap_bin, "-c", os.path.join(TOP, "conf", "smtptap.conf"), "-t")
    assert p.returncode == 0, p.stderr
    assert re.search(r"smtptap\.conf: OK \(\d+ services\)$", p.stdout.strip()), p.stdout
    no_sanitizer(p.stderr)


def test_check_config_runtime_problems(smtptap_bin, tmp_path):
    path = tmp_path / "c.conf"
    path.write_text("user = no-such-user-smtptap\n[a]\nlisten = 127.0.0.1:0\n"
                    "upstream = mx.example\nca_file = %s\n" % (tmp_path / "missing.pem"))
    p = run(smtptap_bin, "-c", str(path), "-t")
    assert p.returncode == EX_CONFIG, p.stderr
    assert re.search(r"c\.conf:1: user \"no-such-user-smtptap\": no such user", p.stderr)
    assert re.search(r"c\.conf:5: \[a\] .*missing\.pem", p.stderr), p.stderr


def test_config_and_flags_do_not_mix(smtptap_bin, tmp_path):
    path = tmp_path / "c.conf"
    path.write_text("listen = 127.0.0.1:0\nupstream = mx.example\n")
    p = run(smtptap_bin, "-c", str(path), "mx.example")
    assert p.returncode == EX_USAGE and "not allowed with -c" in p.stderr, p.stderr
    p = run(smtptap_bin, "-c", str(path), "--ca-file", "x")
    assert p.returncode == EX_USAGE and "--ca-file" in p.stderr, p.stderr
    p = run(smtptap_bin, "-c", str(path), "-t")
    assert p.returncode == 0 and "OK (1 service)" in p.stdout, (p.stdout, p.stderr)


def test_allow_list_refuses_others(conftap, upstream_factory, pki):
    up = upstream_factory("starttls")
    tap = conftap("ca_file = %s\n[closed]\nlisten = 127.0.0.1:0\nupstream = %s\n"
                  "allow = 192.0.2.0/24, 2001:db8::/32\n"
                  "[open]\nlisten = 127.0.0.1:0\nupstream = %s\nallow = 127.0.0.1\n"
                  % (pki.ca, up.address, up.address))
    svcs = tap.services(2)
    with SmtpClient(svcs["closed"][0]) as c:
        data = c.read_until_close()
    assert data == b"554 5.7.1 smtptap: 127.0.0.1 is not allowed to use this service\r\n"
    poll(lambda: re.search(r"\[closed\] refused a client .*127\.0\.0\.1 is not in the "
                           r"allow list", tap.transcript()), what="refusal note")
    with SmtpClient(svcs["open"][0]) as c:
        code, lines, _ = c.read_reply()
        assert code == 220, lines
        c.cmd("QUIT", expect=221)


def test_max_sessions(conftap, upstream_factory, pki):
    up = upstream_factory("starttls")
    tap = conftap("ca_file = %s\nmax_sessions = 2\n[s]\nlisten = 127.0.0.1:0\n"
                  "upstream = %s\n" % (pki.ca, up.address))
    port = tap.services(1)["s"][0]
    clients = []
    try:
        for _ in range(2):
            c = SmtpClient(port)
            code, lines, _ = c.read_reply()
            assert code == 220, lines
            clients.append(c)
        with SmtpClient(port) as c:
            data = c.read_until_close()
        assert data == b"421 4.3.2 smtptap: too many sessions (2)\r\n", data
        # One leaves; the next one is served again.
        clients.pop().cmd("QUIT", expect=221)
        poll(lambda: len(re.findall(r"\* summary: ", tap.transcript())) >= 1,
             what="the session to end")
        with SmtpClient(port) as c:
            code, lines, _ = c.read_reply()
            assert code == 220, lines
    finally:
        for c in clients:
            c.close()


def test_max_sessions_total(conftap, upstream_factory, pki):
    up = upstream_factory("starttls")
    tap = conftap("ca_file = %s\nmax_sessions_total = 1\n"
                  "[a]\nlisten = 127.0.0.1:0\nupstream = %s\n"
                  "[b]\nlisten = 127.0.0.1:0\nupstream = %s\n"
                  % (pki.ca, up.address, up.address))
    svcs = tap.services(2)
    with SmtpClient(svcs["a"][0]) as first:
        assert first.read_reply()[0] == 220
        with SmtpClient(svcs["b"][0]) as second:
            data = second.read_until_close()
        assert data == b"421 4.3.2 smtptap: too many sessions (1)\r\n", data


# Root reads any file: the capability that lets it is dropped for the one
# command, so that open() fails with EACCES as it would for another user.
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]

def make_unreadable(tmp_path, how):
    """A config path that cannot be read, made HOW -> (path, the one error
    smtptap must print for it)."""
    path = tmp_path / (how + ".conf")
    if how == "missing":
        return path, "%s: No such file or directory" % path
    if how == "dangling-symlink":
        path.symlink_to(tmp_path / "nowhere.conf")
        return path, "%s: No such file or directory" % path
    if how == "directory":
        path.mkdir()
        return path, "%s: Is a directory" % path
    if how == "under-a-file":
        (tmp_path / "plain").write_text("listen = 127.0.0.1:0\n")
        path = tmp_path / "plain" / "x.conf"
        return path, "%s: Not a directory" % path
    if how == "mode-000":
        path.write_text("listen = 127.0.0.1:0\nupstream = mx.example\n")
        path.chmod(0)
        return path, "%s: Permission denied" % path
    if how == "read-error":
        # Opens, then read() fails: page 0 of a process is never mapped.
        path.symlink_to("/proc/self/mem")
        return path, "%s:1: read error: Input/output error" % path
    raise ValueError(how)


UNREADABLE = ["missing", "dangling-symlink", "directory", "under-a-file", "mode-000",
              "read-error"]


@pytest.mark.parametrize("check", [True, False], ids=["-t", "run"])
@pytest.mark.parametrize("how", UNREADABLE)
def test_unreadable_config_says_why(smtptap_bin, tmp_path, how, check):
    """The reason is the one open() or read() gave, not a later errno (which
    printed "Success"), and nothing else is reported about a file never read."""
    path, error = make_unreadable(tmp_path, how)
    p = subprocess.run(NO_DAC + [smtptap_bin, "-c", str(path)] + (["-t"] if check else []),
                       capture_output=True, text=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == EX_CONFIG, (p.returncode, p.stderr)
    assert p.stderr.splitlines() == [error, "%s: 1 error" % path], p.stderr
    assert p.stdout == ""
