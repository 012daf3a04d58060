#!/usr/bin/env python3
"""What a config with many services costs to check, to start and to reload.

For each service count N it writes a config with N services (each listening
on 127.0.0.1:0, so nothing clashes) and measures:

  check    smtptap -t -c FILE: wall time and peak RSS (ru_maxrss)
  reload   smtptap -c FILE running, then SIGHUP: the time from the "SIGHUP:"
           transcript record to the "reloaded:" record, with the file
           untouched and then with the CA files touched (a new mtime: every
           context is loaded again); RSS after each
  stall    meanwhile a client connects again and again to one more service,
           which refuses 127.0.0.1 at once (554, from the event loop): the
           longest wait for that answer while a reload runs is how long the
           loop did nothing else (the same probe without a reload: a few
           hundred microseconds)

Trust settings (--trust):
  system   no ca_file: the system trust store (Debian: 140-odd CAs in one
           225 KB file), what most configs use
  shared   one ca_file for every service
  distinct a ca_file per service (N copies of one small CA): the worst case,
           where no context can be shared

  tests/bench/reload.py --smtptap build/src/smtptap [--services 1,100,1000,2000]
                        [--trust system,shared,distinct] [--reps 3]

Results go to stdout as a table (medians of --reps). Not part of "make check".
"""

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

STAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d\.\d{3})Z ")


def make_ca(directory):
    """A small self-signed CA certificate (the key is thrown away)."""
    path = os.path.join(directory, "ca.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "/dev/null",
                    "-subj", "/CN=bench CA", "-days", "2", "-out", path],
                   check=True, capture_output=True)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory, n, trust, ca, probe_port):
    path = os.path.join(directory, "bench.conf")
    log = os.path.join(directory, "bench.transcript")
    cas = []
    with open(path, "w") as f:
        f.write("log = %s\nupstream = 127.0.0.1:25\nlisten = 127.0.0.1:0\n" % log)
        f.write("max_sessions_total = 100000\n")
        if trust == "shared":
            f.write("ca_file = %s\n" % ca)
            cas.append(ca)
        f.write("[probe]\nlisten = 127.0.0.1:%d\nallow = 192.0.2.1\ntls = none\n"
                % probe_port)
        for i in range(n):
            f.write("[s%d]\n" % i)
            if trust == "distinct":
                own = os.path.join(directory, "ca%d.pem" % i)
                shutil.copyfile(ca, own)
                f.write("ca_file = %s\n" % own)
                cas.append(own)
    return path, log, cas


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def check(binary, conf):
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "-t", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - t0
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("smtptap -t failed: %s" % err)
    return elapsed, usage.ru_maxrss


def seconds(line):
    m = STAMP_RE.match(line)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(pred, what, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            sys.exit("timed out waiting for " + what)
        time.sleep(0.02)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Probe(threading.Thread):
    """Connects to the probe service in a loop; keeps (start, seconds)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.samples = []
        self.running = True

    def run(self):
        while self.running:
            t0 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=120) as c:
                    c.recv(200)
            except OSError:
                continue
            self.samples.append((t0, time.monotonic() - t0))

    def worst(self, since, until):
        waits = [dt for t0, dt in self.samples if t0 + dt >= since and t0 <= until]
        return max(waits) if waits else float("nan")


def reload_once(proc, log, nth, probe):
    """SIGHUP; (reload time from the transcript, the probe's longest wait)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGHUP)

    def done():
        lines = read(log).splitlines()
        hup = [ln for ln in lines if " * SIGHUP: " in ln]
        end = [ln for ln in lines if " * reloaded: " in ln or " * reload failed" in ln]
        if len(hup) >= nth and len(end) >= nth:
            return hup[nth - 1], end[nth - 1]
        return None
    hup, end = wait_for(done, "reload %d" % nth)
    if "reload failed" in end:
        sys.exit("reload failed: " + end)
    # One more answer after the end, so that a stall at the end is seen.
    n = len(probe.samples)
    wait_for(lambda: len(probe.samples) > n + 1, "the probe")
    return seconds(end) - seconds(hup), probe.worst(t0, time.monotonic())


def run_daemon(binary, conf, log, n, cas, reps, probe_port):
    proc = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=raise_nofile)
    try:
        wait_for(lambda: read(log).count(" listening on ") >= n + 1 or
                 proc.poll() is not None, "%d listening lines" % (n + 1))
        if proc.poll() is not None:
            sys.exit("smtptap exited %s" % proc.returncode)
        start_rss = rss_kib(proc.pid)
        probe = Probe(probe_port)
        probe.start()
        wait_for(lambda: len(probe.samples) > 10, "the probe")
        same, edited = [], []
        nth = 0
        for _ in range(reps):
            nth += 1
            same.append(reload_once(proc, log, nth, probe))
            now = time.time() + nth
            for ca in cas:
                os.utime(ca, (now, now))
            if cas:
                nth += 1
                edited.append(reload_once(proc, log, nth, probe))
        probe.running = False
        probe.join()
        med = statistics.median
        return (start_rss, med(r[0] for r in same), med(r[1] for r in same),
                med(r[0] for r in edited) if edited else None,
                med(r[1] for r in edited) if edited else None, rss_kib(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smtptap", default="src/smtptap")
    ap.add_argument("--services", default="1,100,1000,2000")
    ap.add_argument("--trust", default="system,shared,distinct")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-daemon", action="store_true", help="only smtptap -t")
    args = ap.parse_args()
    print("%-8s %6s | %8s %9s | %9s | %9s %8s | %9s %8s | %9s" % (
        "trust", "N", "check s", "check MiB", "start MiB", "reload ms", "stall ms",
        "edited ms", "stall ms", "after MiB"))
    for trust in args.trust.split(","):
        for n in [int(x) for x in args.services.split(",")]:
            with tempfile.TemporaryDirectory(prefix="smtptap-reload-") as d:
                ca = make_ca(d)
                port = free_port()
                conf, log, cas = write_config(d, n, trust, ca, port)
                checks = [check(args.smtptap, conf) for _ in range(args.reps)]
                t = statistics.median(c[0] for c in checks)
                rss = statistics.median(c[1] for c in checks)
                row = "%-8s %6d | %8.3f %9.1f |" % (trust, n, t, rss / 1024)
                if not args.no_daemon:
                    s, same, stall, edited, estall, after = run_daemon(
                        args.smtptap, conf, log, n, cas, args.reps, port)

                    def ms(x):
                        return "-" if x is None else "%.0f" % (x * 1000)
                    row += " %9.1f | %9s %8s | %9s %8s | %9.1f" % (
                        s / 1024, ms(same), ms(stall), ms(edited), ms(estall),
                        after / 1024)
                print(row, flush=True)


if __name__ == "__main__":
    main()
