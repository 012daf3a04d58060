"""The daemon's life: reload under traffic, a bad reload, an unreadable
config at reload, shared and re-read TLS contexts, graceful stop,
session_timeout, running out of file descriptors, and systemd's readiness
messages (issue 4, points 3-5)."""

import os
import pathlib
import re
import resource
import shutil
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from helpers import ConfTap, SmtpClient, no_sanitizer, poll
from test_config import NO_DAC, UNREADABLE


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service(name, port, upstream, ca, extra=""):
    return ("[%s]\nlisten = 127.0.0.1:%d\nupstream = %s\nca_file = %s\n%s\n"
            % (name, port, upstream, ca, extra))


def deliver(port, user, password, marker):
    msg = ("From: %s\r\nTo: bob@example.net\r\nSubject: %s\r\n\r\n%s\r\n"
           % (user, marker, marker)).encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.login(user, password)
        s.sendmail(user, ["bob@example.net"], msg)


def subjects(up):
    return [d.content.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
            for d in up.deliveries]


def open_session(port, user, password):
    """A session that has authenticated and now waits, open."""
    c = smtplib.SMTP("127.0.0.1", port, timeout=10)
    c.login(user, password)
    return c


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def two_upstreams(upstream_factory, account):
    user, password = account
    return (upstream_factory("starttls", users={user: password}),
            upstream_factory("starttls", users={user: password}))


def test_reload_under_traffic(conftap, two_upstreams, pki, account):
    """Open sessions finish with the old settings, new ones get the new."""
    user, password = account
    old, new = two_upstreams
    port = free_port()
    tap = conftap(service("relay", port, old.address, pki.ca))
    tap.services(1)
    inflight = open_session(port, user, password)

    tap.rewrite(service("relay", port, new.address, pki.ca))
    tap.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reloaded:" in tap.transcript(), what="the reload note")
    inflight.sendmail(user, ["bob@example.net"],
                      b"From: a@example.org\r\nSubject: inflight\r\n\r\nx\r\n")
    inflight.quit()
    deliver(port, user, password, "after-reload")
    old.wait_deliveries(1)
    new.wait_deliveries(1)
    assert subjects(old) == ["inflight"]
    assert subjects(new) == ["after-reload"]
    assert tap.proc.poll() is None


def test_bad_reload_keeps_the_running_configuration(conftap, two_upstreams, pki, account):
    user, password = account
    old, _ = two_upstreams
    port = free_port()
    tap = conftap(service("relay", port, old.address, pki.ca))
    tap.services(1)
    tap.rewrite(service("relay", port, old.address, pki.ca, "tls = sometimes\nca_fil = x\n"))
    tap.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reload failed" in tap.transcript(), what="the reload failure note")
    # Both mistakes are reported, each with file:line.
    err = poll(lambda: tap.stderr() if "ca_fil" in tap.stderr() else None,
               what="the config errors on stderr")
    assert "%s:" % tap.path in err and "tls" in err and 'did you mean "ca_file"' in err
    deliver(port, user, password, "still-served")
    old.wait_deliveries(1)
    assert subjects(old) == ["still-served"]
    assert tap.proc.poll() is None


def test_reload_adds_and_removes_listeners(conftap, two_upstreams, pki, account):
    user, password = account
    a, b = two_upstreams
    pa, pb = free_port(), free_port()
    tap = conftap(service("a", pa, a.address, pki.ca))
    tap.services(1)
    tap.rewrite(service("b", pb, b.address, pki.ca))
    tap.proc.send_signal(signal.SIGHUP)
    poll(lambda: "reloaded:" in tap.transcript(), what="the reload note")
    deliver(pb, user, password, "via-b")
    b.wait_deliveries(1)
    assert refused(pa), "the removed service still accepts connections"
    assert "no longer listening on 127.0.0.1:%d" % pa in tap.transcript()


def test_sigterm_drains_open_sessions(conftap, two_upstreams, pki, account):
    """SIGTERM: the listener closes at once, the open session may finish."""
    user, password = account
    up, _ = two_upstreams
    port = free_port()
    tap = conftap("shutdown_grace = 20\n" + service("relay", port, up.address, pki.ca))
    tap.services(1)
    inflight = open_session(port, user, password)
    tap.proc.send_signal(signal.SIGTERM)
    poll(lambda: "no longer accepting" in tap.transcript(), what="the stop note")
    assert refused(port), "still accepting after SIGTERM"
    assert tap.proc.poll() is None, "exited with a session still open"
    inflight.sendmail(user, ["bob@example.net"],
                      b"From: a@example.org\r\nSubject: drained\r\n\r\nx\r\n")
    inflight.quit()
    assert tap.proc.wait(10) == 0
    up.wait_deliveries(1)
    assert subjects(up) == ["drained"]


def test_grace_period_ends_idle_sessions(conftap, two_upstreams, pki, account):
    user, password = account
    up, _ = two_upstreams
    port = free_port()
    tap = conftap("shutdown_grace = 0.5\n" + service("relay", port, up.address, pki.ca))
    tap.services(1)
    idle = open_session(port, user, password)
    started = time.monotonic()
    tap.proc.send_signal(signal.SIGTERM)
    assert tap.proc.wait(10) == 0
    assert time.monotonic() - started < 5
    assert "grace period over: closing 1 session" in tap.transcript()
    idle.close()


def test_second_sigint_stops_at_once(conftap, two_upstreams, pki, account):
    user, password = account
    up, _ = two_upstreams
    port = free_port()
    tap = conftap("shutdown_grace = 60\n" + service("relay", port, up.address, pki.ca))
    tap.services(1)
    idle = open_session(port, user, password)
    tap.proc.send_signal(signal.SIGINT)
    poll(lambda: "no longer accepting" in tap.transcript(), what="the stop note")
    tap.proc.send_signal(signal.SIGINT)
    assert tap.proc.wait(5) == 0
    assert "second SIGINT" in tap.transcript()
    idle.close()


def test_session_timeout_ends_a_busy_session(tap_factory, upstream_factory, pki, account):
    """A client that never idles is still bounded by session_timeout."""
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    tap = tap_factory(up.address, "--ca-file", pki.ca, "--session-timeout", "1",
                      "--idle-timeout", "30")
    with SmtpClient(tap.port) as c:
        c.read_reply()
        c.cmd("EHLO busy.example", 250)
        started = time.monotonic()
        with pytest.raises((AssertionError, OSError, EOFError)):
            while time.monotonic() - started < 8:
                c.cmd("NOOP", 250)
                time.sleep(0.1)
    assert time.monotonic() - started < 5
    tap.wait_transcript(r"close: session lasted longer than session_timeout")


def test_fd_exhaustion_pauses_accepting(smtptap_bin, tmp_path, upstream_factory, pki, account):
    """With its descriptors used up smtptap stops accepting for a moment
    (one log line), burns no CPU meanwhile, and resumes when they are free."""
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    log = tmp_path / "emfile.transcript"
    err = open(tmp_path / "emfile.stderr", "wb")

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24))
    proc = subprocess.Popen([smtptap_bin, "-l", "127.0.0.1:0", "-o", str(log),
                             "--ca-file", pki.ca, up.address],
                            stdin=subprocess.DEVNULL, stderr=err, preexec_fn=limit)
    try:
        port = int(poll(lambda: log.exists() and re.search(
            r"listening on \S+:(\d+)", log.read_text()), what="listening").group(1))
        hogs = []
        for _ in range(30):
            hogs.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        poll(lambda: b"pausing" in (tmp_path / "emfile.stderr").read_bytes(),
             what="the pause line on stderr")
        with open("/proc/%d/stat" % proc.pid) as f:
            f0 = f.read().split()
        time.sleep(1.0)
        with open("/proc/%d/stat" % proc.pid) as f:
            f1 = f.read().split()
        ticks = (int(f1[13]) + int(f1[14])) - (int(f0[13]) + int(f0[14]))
        assert ticks < 30, "smtptap used %d ticks in 1 s while out of fds" % ticks
        for h in hogs:
            h.close()
        # Accepting resumes: a full session works again.
        poll(lambda: _delivers(port, user, password), timeout=15, interval=0.3,
             what="a session after the pause")
        up.wait_deliveries(1)
        lines = (tmp_path / "emfile.stderr").read_bytes().count(b"pausing")
        assert 1 <= lines <= 20, "%d pause lines" % lines
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        err.close()
    no_sanitizer((tmp_path / "emfile.stderr").read_text())


def _delivers(port, user, password):
    try:
        deliver(port, user, password, "after-emfile")
        return True
    except (OSError, smtplib.SMTPException):
        return False


def test_systemd_readiness_messages(conftap, two_upstreams, pki, tmp_path):
    """Type=notify: READY, RELOADING, STATUS and STOPPING reach NOTIFY_SOCKET."""
    up, _ = two_upstreams
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    port = free_port()
    tap = conftap(service("relay", port, up.address, pki.ca), env=env)
    got = []

    def wait_for(word):
        while not any(word in m for m in got):
            got.append(sock.recv(4096).decode())
        return got
    wait_for("READY=1")
    wait_for("STATUS=")
    tap.proc.send_signal(signal.SIGHUP)
    wait_for("RELOADING=1")
    tap.proc.send_signal(signal.SIGTERM)
    wait_for("STOPPING=1")
    assert tap.proc.wait(10) == 0
    sock.close()


def test_socket_activation(smtptap_bin, upstream_factory, pki, account, tmp_path):
    """With LISTEN_FDS (a .socket unit), smtptap serves the socket systemd
    opened for the configured address instead of binding its own."""
    user, password = account
    up = upstream_factory("starttls", users={user: password})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    conf = tmp_path / "activated.conf"
    log = tmp_path / "activated.transcript"
    conf.write_text("log = %s\n%s" % (log, service("activated", port, up.address, pki.ca)))
    env = dict(os.environ, LISTEN_FDS="1")
    fd = sock.fileno()
    # LISTEN_PID must be smtptap's own pid: the shell execs it, keeping its pid.
    proc = subprocess.Popen(["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"',
                             smtptap_bin, "-c", str(conf)],
                            env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: os.dup2(fd, 3), pass_fds=(3,))
    try:
        poll(lambda: log.exists() and "listening on 127.0.0.1:%d" % port in log.read_text(),
             what="the listening line")
        assert "socket from systemd (socket activation)" in log.read_text()
        sock.close()  # only smtptap holds the socket now
        deliver(port, user, password, "activated")
        up.wait_deliveries(1)
        assert subjects(up) == ["activated"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    no_sanitizer(err.decode("utf-8", "replace"))
    assert proc.returncode == 0


def test_user_drops_root_after_binding(conftap, two_upstreams, pki, account):
    """Started as root with user=, smtptap binds, then runs as that user for
    good; it keeps relaying (the CA and the transcript were opened first)."""
    assert os.geteuid() == 0, "this test runs as root, as CI does"
    import pwd
    nobody = pwd.getpwnam("nobody")
    user, password = account
    up, _ = two_upstreams
    port = free_port()
    tap = conftap("user = nobody\n" + service("relay", port, up.address, pki.ca))
    tap.services(1)
    poll(lambda: "running as user nobody" in tap.transcript(), what="the drop note")
    with open("/proc/%d/status" % tap.proc.pid) as f:
        ids = {line.split(":")[0]: line.split()[1:] for line in f if ":" in line}
    assert ids["Uid"] == [str(nobody.pw_uid)] * 4, ids["Uid"]
    assert ids["Gid"] == [str(nobody.pw_gid)] * 4, ids["Gid"]
    deliver(port, user, password, "as-nobody")
    up.wait_deliveries(1)
    assert subjects(up) == ["as-nobody"]


def rejected_as_untrusted(port):
    """A MUA's greeting is the 421 for an upstream certificate not trusted."""
    with SmtpClient(port) as c:
        data = c.read_until_close()
    return data.startswith(b"421 4.7.0 smtptap: upstream certificate is not trusted")


def test_reload_shares_contexts_and_rereads_an_edited_ca(conftap, upstream_factory,
                                                         pki, account, tmp_path):
    """Services with the same CA file share one context, which a reload keeps
    while the file is unchanged; edited in place, the file is read again for
    sessions that start after the reload, and a session that started before
    it finishes with the CA it was verified against."""
    user, password = account
    good = upstream_factory("starttls", users={user: password})
    other = upstream_factory("starttls", cert="untrusted", users={user: password})
    trust = tmp_path / "trust.pem"
    trust.write_bytes(open(pki.ca, "rb").read())
    pa, pb, pc = free_port(), free_port(), free_port()
    body = (service("a", pa, good.address, trust) + service("b", pb, good.address, trust)
            + service("c", pc, other.address, trust))
    tap = conftap(body)
    tap.services(3)
    deliver(pa, user, password, "a-before")
    deliver(pb, user, password, "b-before")
    assert rejected_as_untrusted(pc)

    tap.proc.send_signal(signal.SIGHUP)
    tap_note = poll(lambda: re.search(r"reloaded: 3 services, (.*?);", tap.transcript()),
                    what="the first reload note")
    assert tap_note.group(1) == "1 TLS context (1 kept, 0 loaded)", tap_note.group(0)
    deliver(pa, user, password, "a-after-reload")
    deliver(pb, user, password, "b-after-reload")

    inflight = open_session(pa, user, password)
    # The same inode, rewritten: only its size, mtime and ctime say so.
    with open(trust, "r+b") as f:
        f.truncate(0)
        f.write(open(pki.other_ca, "rb").read())
    tap.proc.send_signal(signal.SIGHUP)
    poll(lambda: tap.transcript().count("reloaded:") == 2, what="the second reload note")
    assert "reloaded: 3 services, 1 TLS context (0 kept, 1 loaded)" in tap.transcript()

    # New sessions are verified against the new CA, by both kinds of service.
    deliver(pc, user, password, "c-new-ca")
    assert rejected_as_untrusted(pa)
    assert rejected_as_untrusted(pb)
    # The session verified before the reload finishes with its own settings.
    inflight.sendmail(user, ["bob@example.net"],
                      b"From: a@example.org\r\nSubject: inflight\r\n\r\nx\r\n")
    inflight.quit()
    good.wait_deliveries(5)
    other.wait_deliveries(1)
    assert subjects(good) == ["a-before", "b-before", "a-after-reload", "b-after-reload",
                              "inflight"]
    assert subjects(other) == ["c-new-ca"]
    assert tap.proc.poll() is None


class SubdirConfTap(ConfTap):
    """smtptap -c DIR/tap.conf, started under PREFIX, so that the config's
    directory can be replaced by a file; the transcript stays outside DIR."""

    def __init__(self, binary, tmp_path, body, prefix):
        self.dir = tmp_path / "confdir"
        self.dir.mkdir()
        self.log = str(tmp_path / "tap.transcript")
        self.path = str(self.dir / "tap.conf")
        self.err = str(tmp_path / "tap.stderr")
        self.rewrite(body)
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(prefix + [binary, "-c", self.path],
                                         stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)


def spoil(path, how):
    """Make PATH, a config file in use, unreadable in the way HOW; returns
    the one error smtptap must report."""
    path = pathlib.Path(path)
    if how == "missing":
        path.unlink()
        return "%s: No such file or directory" % path
    if how == "dangling-symlink":
        path.unlink()
        path.symlink_to(path.parent / "nowhere.conf")
        return "%s: No such file or directory" % path
    if how == "directory":
        path.unlink()
        path.mkdir()
        return "%s: Is a directory" % path
    if how == "under-a-file":
        shutil.rmtree(path.parent)
        path.parent.write_text("not a directory\n")
        return "%s: Not a directory" % path
    if how == "mode-000":
        path.chmod(0)
        return "%s: Permission denied" % path
    if how == "read-error":
        path.unlink()
        path.symlink_to("/proc/self/mem")
        return "%s:1: read error: Input/output error" % path
    raise ValueError(how)


def unspoil(path):
    path = pathlib.Path(path)
    if path.parent.is_file():
        path.parent.unlink()
        path.parent.mkdir()
    elif path.is_dir():
        path.rmdir()
    elif path.is_symlink():
        path.unlink()
    elif path.exists():
        path.chmod(0o644)


@pytest.mark.parametrize("how", UNREADABLE)
def test_reload_of_an_unreadable_config_says_why(smtptap_bin, tmp_path, two_upstreams,
                                                 pki, account, how):
    """A reload that cannot read the file says why, in words, in the transcript
    and on stderr; the running configuration keeps serving; a later reload of
    a readable file works."""
    user, password = account
    old, new = two_upstreams
    port = free_port()
    tap = SubdirConfTap(smtptap_bin, tmp_path, service("relay", port, old.address, pki.ca),
                        NO_DAC)
    try:
        tap.services(1)
        error = spoil(tap.path, how)
        tap.proc.send_signal(signal.SIGHUP)
        line = poll(lambda: re.search(r"\* reload failed: (.*)$", tap.transcript(), re.M),
                    what="the reload failure note")
        assert line.group(1) == "%s; the current configuration stays" % error, line.group(0)
        assert error in tap.stderr().splitlines(), tap.stderr()
        assert "Success" not in tap.transcript() + tap.stderr()
        deliver(port, user, password, "still-served")
        old.wait_deliveries(1)

        unspoil(tap.path)
        tap.rewrite(service("relay", port, new.address, pki.ca))
        tap.proc.send_signal(signal.SIGHUP)
        poll(lambda: "reloaded:" in tap.transcript(), what="the reload note")
        deliver(port, user, password, "after-fix")
        new.wait_deliveries(1)
        assert subjects(old) == ["still-served"] and subjects(new) == ["after-fix"]
    finally:
        tap.stop()


def test_sighup_right_after_listening(tap_factory, upstream_factory, pki):
    """A SIGHUP sent as soon as the "listening on" line is out reloads: the
    handlers are in place before smtptap binds (a default SIGHUP would end it)."""
    up = upstream_factory("starttls")
    for i in range(10):
        tap = tap_factory(up.address, "--ca-file", pki.ca, name="hup%d" % i)
        tap.proc.send_signal(signal.SIGHUP)
        poll(lambda: "reloaded:" in tap.transcript() or tap.proc.poll() is not None,
             what="the reload note")
        assert tap.proc.poll() is None, "smtptap ended on an early SIGHUP: %s" % (
            tap.proc.returncode)
