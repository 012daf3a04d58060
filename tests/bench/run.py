#!/usr/bin/env python3
"""smtptap benchmark: smtptap against stunnel, haproxy and no proxy, in one run.

Loopback only. Upstream: tests/bench/tlssink (STARTTLS, implicit TLS and
cleartext on three ports; answers at once, discards message data). Load:
Postfix's smtp-source against each proxy's cleartext port. Each figure is the
median of --reps runs; the proxies of one TLS mode run side by side and the
runs are interleaved, so that ratios come from the same minutes.

  tests/bench/run.py [--smtptap src/smtptap] [--sink tests/bench/tlssink]
                     [--json tests/bench/results.json] [--reps 3] [--quick]

"make bench" runs it with the paths of the build tree. See the README,
section "Performance".
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
SMTP_SOURCE = "/usr/sbin/smtp-source"
BULK_SIZE = 10 * 1024 * 1024


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- /proc -----------------------------------------------------------------

def cpu_seconds(pid):
    """user+sys of the whole process (live and exited threads)."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# ---- processes and ports ---------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def version_of(cmd, pattern):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = out.stdout + out.stderr
        m = re.search(pattern, text)
        return m.group(0) if m else text.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


class Proc:
    """A process we started and stop ourselves (by its pid only)."""

    def __init__(self, name, argv, port, logfile, env=None):
        self.name = name
        self.port = port
        self.logfile = logfile
        self.out = open(logfile, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=self.out, stderr=self.out, env=env)
        try:
            wait_port(port, self.p)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{name}: {e}; see {logfile}") from None

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.out.close()


# ---- PKI and configs -------------------------------------------------------

def make_pki(d):
    """An ECDSA P-256 CA and a server certificate for localhost/127.0.0.1."""
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "2",
         "-subj", "/CN=smtptap bench CA")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", f"{d}/key.pem", "-out", f"{d}/srv.csr", "-subj", "/CN=localhost")
    with open(f"{d}/ext.cnf", "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", f"{d}/srv.csr", "-CA", f"{d}/ca.pem", "-CAkey",
         f"{d}/ca.key", "-CAcreateserial", "-out", f"{d}/cert.pem", "-days", "2",
         "-extfile", f"{d}/ext.cnf")


class Bench:
    def __init__(self, args):
        self.a = args
        self.dir = tempfile.mkdtemp(prefix="smtptap-bench-")
        self.ca = f"{self.dir}/ca.pem"
        self.procs = []
        self.stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        self.haproxy = shutil.which("haproxy")
        self.notes = []

    # -- processes --

    def start(self, name, argv, port):
        p = Proc(name, argv, port, f"{self.dir}/{name}.log")
        self.procs.append(p)
        return p

    def stop(self, p):
        p.stop()
        self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)

    def start_sink(self):
        self.sink_ports = {"plain": free_port(), "starttls": free_port(),
                           "implicit": free_port()}
        self.sink = self.start("tlssink", [
            self.a.sink, "-C", f"{self.dir}/cert.pem", "-K", f"{self.dir}/key.pem",
            "-p", str(self.sink_ports["plain"]), "-s", str(self.sink_ports["starttls"]),
            "-i", str(self.sink_ports["implicit"])], self.sink_ports["plain"])

    def start_smtptap(self, mode, logdest, tag):
        port = free_port()
        if logdest == "file":
            # On the file system of the build tree's temp dir (a real disk
            # unless TMPDIR says otherwise), appended as in production.
            dest = f"{self.dir}/transcript-{tag}.log"
        else:
            dest = "/dev/null"
        p = self.start(tag, [
            self.a.smtptap, "-l", f"127.0.0.1:{port}", "--tls", mode,
            "--ca-file", self.ca, "--sni", "localhost", "--ehlo", "bench.local",
            "-o", dest, "--max-sessions", "20000", "--max-sessions-total", "20000",
            f"127.0.0.1:{self.sink_ports[mode]}"], port)
        p.transcript = dest
        return p

    def start_stunnel(self, mode, tag):
        port = free_port()
        conf = f"{self.dir}/{tag}.conf"
        with open(conf, "w") as f:
            # syslog = no: with no syslog daemon, glibc's syslog() falls
            # back to the console, a serial port here: 3x the CPU per session.
            # Its log (level 5, the default: 5 lines a session) goes to a file.
            f.write(f"""foreground = yes
pid =
syslog = no
output = {self.dir}/{tag}-stunnel.log
[bench]
client = yes
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{self.sink_ports[mode]}
verifyChain = yes
CAfile = {self.ca}
checkHost = localhost
sni = localhost
""")
            if mode == "starttls":
                f.write("protocol = smtp\n")
        return self.start(tag, [self.stunnel, conf], port)

    def start_haproxy(self, tag):
        # haproxy wants 2 descriptors per connection and will not start if
        # it cannot raise RLIMIT_NOFILE that far.
        maxconn = (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100) // 2
        port = free_port()
        conf = f"{self.dir}/{tag}.cfg"
        with open(conf, "w") as f:
            f.write(f"""global
    maxconn {maxconn}
    nbthread {self.a.haproxy_threads}
defaults
    mode tcp
    timeout connect 10s
    timeout client 600s
    timeout server 600s
frontend f
    bind 127.0.0.1:{port}
    default_backend b
backend b
    server s 127.0.0.1:{self.sink_ports['implicit']} ssl verify required ca-file {self.ca} sni str(localhost) verifyhost localhost
""")
        return self.start(tag, [self.haproxy, "-db", "-f", conf], port)

    # -- load --

    def smtp_source(self, port, sessions, count, size, persistent):
        argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(count), "-l", str(size),
                "-M", "bench.local", "-f", "sender@bench.example",
                "-t", "rcpt@bench.example"]
        if persistent:
            argv.insert(1, "-d")
        argv.append(f"127.0.0.1:{port}")
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        t1 = time.monotonic()
        if r.returncode != 0:
            raise RuntimeError(f"smtp-source failed ({r.returncode}): "
                               f"{(r.stderr or r.stdout).strip()[:300]}")
        return t1 - t0

    def measure(self, proxy, port, kind):
        """One run of a load kind; returns the figures of that run."""
        a = self.a
        if kind == "sessions":
            n, s, size, pers = a.sessions, a.concurrency, 1000, False
        elif kind == "messages":
            n, s, size, pers = a.messages, 8, 1000, True
        else:
            n, s, size, pers = a.bulk, 2, BULK_SIZE, True
        pid = proxy.pid if proxy else None
        c0 = cpu_seconds(pid) if pid else 0.0
        k0 = cpu_seconds(self.sink.pid)
        secs = self.smtp_source(port, s, n, size, pers)
        c1 = cpu_seconds(pid) if pid else 0.0
        k1 = cpu_seconds(self.sink.pid)
        cpu = c1 - c0 if pid else None
        r = {"seconds": secs, "count": n, "proxy_cpu_s": cpu, "sink_cpu_s": k1 - k0}
        if kind == "sessions":
            r["sessions_per_s"] = n / secs
            r["cpu_ms_per_session"] = cpu / n * 1000 if pid else None
            r["sink_cpu_ms_per_session"] = (k1 - k0) / n * 1000
        elif kind == "messages":
            r["messages_per_s"] = n / secs
            r["cpu_ms_per_1k_messages"] = cpu / n * 1e6 if pid else None
        else:
            nbytes = n * (BULK_SIZE + 134)     # payload + smtp-source's headers
            r["mb_per_s"] = nbytes / secs / 1e6
            r["cpu_s_per_gb"] = cpu / (nbytes / 1e9) if pid else None
        return r

    # -- idle sessions --

    def idle_clients(self, port, n, held, timeout=180.0):
        """Open n more sessions to port, each with greeting and EHLO done."""
        sel = selectors.DefaultSelector()
        pending, started, done, failed = 0, 0, 0, 0
        end = time.monotonic() + timeout
        inflight_max = 64
        while (done + failed) < n and time.monotonic() < end:
            while pending < inflight_max and started < n:
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    failed += 1
                    started += 1
                    continue
                sel.register(s, selectors.EVENT_READ, {"buf": b"", "state": 0})
                pending += 1
                started += 1
            for key, _ in sel.select(timeout=1.0):
                s, st = key.fileobj, key.data
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    s.close()
                    pending -= 1
                    failed += 1
                    continue
                st["buf"] += data
                want = b"220 " if st["state"] == 0 else b"250 "
                lines = st["buf"].split(b"\r\n")
                if not any(l.startswith(want) for l in lines[:-1]):
                    continue
                st["buf"] = b""
                if st["state"] == 0:
                    st["state"] = 1
                    s.send(b"EHLO bench.local\r\n")
                    continue
                sel.unregister(s)
                held.append(s)
                pending -= 1
                done += 1
        for key in list(sel.get_map().values()):
            sel.unregister(key.fileobj)
            key.fileobj.close()
            failed += 1
        sel.close()
        return done, failed

    def idle_run(self, name, starter, warm_port_fn):
        """RSS of one fresh proxy at rest, then with N1 and N2 idle sessions."""
        p = starter()
        pid = p.pid
        res = {"proxy": name}
        held = []
        try:
            # warm up: a few complete sessions, so that one-off allocations
            # (TLS context, first handshake) are in the baseline
            self.smtp_source(p.port, 4, 20, 100, False)
            time.sleep(0.5)
            base = rss_kib(pid)
            res["rss_base_kib"] = base
            prev_n = 0
            for n in self.a.idle:
                done, failed = self.idle_clients(p.port, n - prev_n, held)
                prev_n = n
                time.sleep(1.0)
                rss = rss_kib(pid)
                total = len(held)
                res[str(n)] = {"sessions": total, "failed": failed, "rss_kib": rss,
                               "kib_per_session": (rss - base) / total if total else None,
                               "threads": threads(pid)}
                log(f"  idle {name}: {total} sessions (failed {failed}), "
                    f"VmRSS {rss} KiB, base {base} KiB")
                if total < n * 0.9:
                    break
        finally:
            for s in held:
                s.close()
            time.sleep(0.5)
            self.stop(p)
        return res


# ---- figures ---------------------------------------------------------------

def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--smtptap", default=os.path.join(top, "src/smtptap"))
    ap.add_argument("--sink", default=os.path.join(top, "tests/bench/tlssink"))
    ap.add_argument("--json", default=os.path.join(top, "tests/bench/results.json"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=1500,
                    help="sessions per run of the sessions/s test")
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--messages", type=int, default=10000,
                    help="messages per run on 8 persistent sessions")
    ap.add_argument("--bulk", type=int, default=20,
                    help="10 MB messages per run on 2 persistent sessions")
    ap.add_argument("--idle", default="1000,10000",
                    help="idle session counts (cumulative), comma-separated")
    ap.add_argument("--no-idle", action="store_true")
    ap.add_argument("--tests", default="sessions,messages,bulk,idle",
                    help="which tests to run (comma-separated)")
    ap.add_argument("--proxies", default="smtptap,smtptap-nolog,haproxy,stunnel,baseline",
                    help="which proxies to run (comma-separated)")
    ap.add_argument("--haproxy-threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true",
                    help="small counts, 1 run: to check the harness")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.sessions, a.messages, a.bulk = 1, 300, 2000, 4
        a.idle = "200,1000"
    a.idle = [int(x) for x in a.idle.split(",") if x]
    a.tests = a.tests.split(",")
    a.proxies = a.proxies.split(",")
    if "idle" not in a.tests:
        a.no_idle = True

    for path, what in ((a.smtptap, "smtptap"), (a.sink, "tlssink"),
                       (SMTP_SOURCE, "smtp-source (apt-get install postfix)")):
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {what} not found at {path}")

    # Descriptors: 2 per proxied session, plus the sink's and ours.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cap = (nofile - 100) // 2
    b = Bench(a)
    if a.idle and a.idle[-1] > cap:
        b.notes.append(f"RLIMIT_NOFILE is {nofile} here (the hard limit cannot be "
                       f"raised), so the largest idle count is {cap} instead of "
                       f"{a.idle[-1]}")
        a.idle = [min(n, cap) for n in a.idle]

    started = time.monotonic()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(), "cpus": os.cpu_count(), "kernel": platform.release(),
        "loadavg_start": loadavg(),
        "smtptap": version_of([a.smtptap, "-V"], r"smtptap \S+"),
        "stunnel": version_of([b.stunnel, "-version"], r"stunnel \S+") if b.stunnel else None,
        "haproxy": version_of([b.haproxy, "-v"], r"HAProxy version \S+") if b.haproxy else None,
        "openssl": version_of(["openssl", "version"], r"OpenSSL \S+"),
        "libevent": version_of(["pkg-config", "--modversion", "libevent"], r"\S+"),
        "smtp_source": "postfix " + (version_of(["dpkg-query", "-W", "-f", "${Version}", "postfix"], r"\S+") or "?"),
        "rlimit_nofile": nofile,
        "params": {"reps": a.reps, "sessions": a.sessions, "concurrency": a.concurrency,
                   "messages": a.messages, "messages_sessions": 8, "message_size": 1000,
                   "bulk_messages": a.bulk, "bulk_sessions": 2, "bulk_size": BULK_SIZE,
                   "haproxy_threads": a.haproxy_threads, "idle": a.idle,
                   "certificate": "ECDSA P-256, full handshake every session (sink "
                                  "sends no tickets)"},
    }
    log(f"bench: {meta['date']} on {meta['cpu']} ({meta['cpus']} CPUs), "
        f"load {meta['loadavg_start']}; temp dir {b.dir}")
    if not b.stunnel:
        b.notes.append("stunnel not installed: apt-get install stunnel4")
    if not b.haproxy:
        b.notes.append("haproxy not installed: apt-get install haproxy")

    results = {"meta": meta, "runs": {}, "median": {}, "idle": [], "notes": b.notes}
    try:
        make_pki(b.dir)
        b.start_sink()
        kinds = [k for k in ("sessions", "messages", "bulk") if k in a.tests]
        for mode in ("starttls", "implicit") if kinds else ():
            want = a.proxies
            proxies = []
            if "baseline" in want:
                proxies.append(("baseline", None, b.sink_ports["plain"]))
            if "smtptap" in want:
                p = b.start_smtptap(mode, "file", f"smtptap-{mode}-file")
                proxies.append(("smtptap", p, p.port))
            if "smtptap-nolog" in want:
                p = b.start_smtptap(mode, "null", f"smtptap-{mode}-null")
                proxies.append(("smtptap-nolog", p, p.port))
            if b.haproxy and mode == "implicit" and "haproxy" in want:
                p = b.start_haproxy(f"haproxy-{mode}")
                proxies.append(("haproxy", p, p.port))
            if b.stunnel and "stunnel" in want:
                p = b.start_stunnel(mode, f"stunnel-{mode}")
                proxies.append(("stunnel", p, p.port))
            for name, p, port in proxies:          # warm-up, not measured
                b.smtp_source(port, 4, 40, 1000, False)
            for kind in kinds:
                for rep in range(a.reps):
                    for name, p, port in proxies:
                        r = b.measure(p, port, kind)
                        results["runs"].setdefault(mode, {}).setdefault(kind, {}) \
                            .setdefault(name, []).append(r)
                    log(f"  {mode} {kind} run {rep + 1}/{a.reps}: " + ", ".join(
                        f"{n} {fmt(results['runs'][mode][kind][n][-1].get('sessions_per_s') or results['runs'][mode][kind][n][-1].get('messages_per_s') or results['runs'][mode][kind][n][-1].get('mb_per_s'))}"
                        for n, _, _ in proxies))
            for name, p, port in proxies:
                if p is not None and getattr(p, "transcript", "/dev/null") != "/dev/null":
                    results.setdefault("transcript_bytes", {})[f"{mode}"] = \
                        os.path.getsize(p.transcript)
                if p is not None:
                    b.stop(p)
        if a.idle and not a.no_idle:
            idle_plan = [
                ("smtptap (implicit)", lambda: b.start_smtptap("implicit", "file", "idle-smtptap-implicit")),
                ("smtptap (starttls)", lambda: b.start_smtptap("starttls", "file", "idle-smtptap-starttls")),
            ]
            if "smtptap" not in a.proxies:
                idle_plan = []
            if b.haproxy and "haproxy" in a.proxies:
                idle_plan.append(("haproxy (implicit)",
                                  lambda: b.start_haproxy("idle-haproxy")))
            if b.stunnel and "stunnel" in a.proxies:
                idle_plan.append(("stunnel (starttls)",
                                  lambda: b.start_stunnel("starttls", "idle-stunnel")))
            for name, starter in idle_plan:
                try:
                    results["idle"].append(b.idle_run(name, starter, None))
                except RuntimeError as e:
                    b.notes.append(f"idle {name}: {e}")
    finally:
        b.stop_all()
        meta["loadavg_end"] = loadavg()
        meta["duration_s"] = round(time.monotonic() - started, 1)

    # medians
    for mode, kinds in results["runs"].items():
        for kind, byproxy in kinds.items():
            for name, runs in byproxy.items():
                m = {k: med(runs, k) for k in runs[0] if k != "count"}
                results["median"].setdefault(mode, {}).setdefault(kind, {})[name] = m

    report(results)
    with open(a.json, "w") as f:
        json.dump(results, f, indent=2)
    log(f"bench: JSON in {a.json}; took {meta['duration_s']} s")
    if a.keep:
        log(f"bench: kept {b.dir}")
    else:
        shutil.rmtree(b.dir, ignore_errors=True)


def report(results):
    M = results["median"]
    meta = results["meta"]
    out = []
    w = out.append
    w(f"smtptap benchmark, {meta['date']}")
    w(f"  {meta['cpu']}, {meta['cpus']} CPUs, Linux {meta['kernel']}, "
      f"load average {meta['loadavg_start']} at start, {meta['loadavg_end']} at end")
    w(f"  {meta['smtptap']}, {meta['stunnel']}, {meta['haproxy']}, "
      f"{meta['openssl']}, libevent {meta['libevent']}, smtp-source from {meta['smtp_source']}")
    p = meta["params"]
    w(f"  medians of {p['reps']} runs; sessions: {p['sessions']} x 1 message of "
      f"1 kB, {p['concurrency']} in parallel; messages: {p['messages']} x 1 kB on "
      f"8 sessions; bulk: {p['bulk_messages']} x 10 MiB on 2 sessions; "
      f"haproxy nbthread {p['haproxy_threads']}")
    w(f"  smtptap writes its full transcript to a file; smtptap-nolog to /dev/null")
    w("")
    rows = [("sessions", "sessions_per_s", "sessions/s", 0),
            ("sessions", "cpu_ms_per_session", "CPU ms/session", 2),
            ("sessions", "sink_cpu_ms_per_session", "(sink ms/sess)", 2),
            ("messages", "messages_per_s", "messages/s", 0),
            ("messages", "cpu_ms_per_1k_messages", "CPU ms/1k msgs", 0),
            ("bulk", "mb_per_s", "bulk MB/s", 0),
            ("bulk", "cpu_s_per_gb", "CPU s/GB", 2)]
    for mode in ("starttls", "implicit"):
        if mode not in M:
            continue
        names = []
        for kind in M[mode]:
            names += [n for n in M[mode][kind] if n not in names]
        refs = [r for r in ("stunnel", "haproxy") if r in names]
        hdr = f"{mode.upper():<16}" + "".join(f"{n:>15}" for n in names) + \
            "".join(f"{'smtptap/' + r:>17}" for r in refs)
        w(hdr)
        for kind, key, label, digits in rows:
            if kind not in M[mode]:
                continue
            row = M[mode][kind]
            vals = [row.get(n, {}).get(key) for n in names]
            line = f"{label:<16}" + "".join(f"{fmt(v, digits):>15}" for v in vals)
            for r in refs:
                line += f"{fmt(ratio(row.get('smtptap', {}).get(key), row.get(r, {}).get(key)), 2):>17}"
            w(line)
        w("")
    if results["idle"]:
        counts = [k for k in results["idle"][0] if k.isdigit()]
        w(f"{'IDLE SESSIONS':<22}{'base RSS KiB':>14}" +
          "".join(f"{'KiB/sess @' + c:>17}" for c in counts) +
          "".join(f"{'reached @' + c:>14}" for c in counts))
        for r in results["idle"]:
            line = f"{r['proxy']:<22}{fmt(r.get('rss_base_kib')):>14}"
            line += "".join(f"{fmt((r.get(c) or {}).get('kib_per_session'), 1):>17}" for c in counts)
            line += "".join(f"{fmt((r.get(c) or {}).get('sessions')):>14}" for c in counts)
            w(line)
        w("")
    targets = evaluate(results)
    results["targets"] = targets
    w("TARGETS (issue 5)")
    for t in targets:
        w(f"  [{t['verdict']:<4}] {t['target']}: {t['measured']}")
    for n in results["notes"]:
        w(f"  note: {n}")
    print("\n".join(out), flush=True)


def evaluate(results):
    M = results["median"]
    T = []

    def get(mode, kind, name, key):
        try:
            return M[mode][kind][name][key]
        except KeyError:
            return None

    def target(desc, value, limit, higher_better, what):
        if value is None:
            T.append({"target": desc, "measured": "not measured", "verdict": "n/a"})
            return
        ok = value >= limit if higher_better else value <= limit
        T.append({"target": desc, "measured": f"{value:.2f} {what}",
                  "value": value, "verdict": "met" if ok else "MISS"})

    target("sessions/s >= 2x stunnel (STARTTLS)",
           ratio(get("starttls", "sessions", "smtptap", "sessions_per_s"),
                 get("starttls", "sessions", "stunnel", "sessions_per_s")), 2.0, True, "x stunnel")
    target("sessions/s >= 0.9x haproxy (implicit)",
           ratio(get("implicit", "sessions", "smtptap", "sessions_per_s"),
                 get("implicit", "sessions", "haproxy", "sessions_per_s")), 0.9, True, "x haproxy")
    target("CPU per session <= 1.2x haproxy (implicit)",
           ratio(get("implicit", "sessions", "smtptap", "cpu_ms_per_session"),
                 get("implicit", "sessions", "haproxy", "cpu_ms_per_session")), 1.2, False, "x haproxy")
    target("CPU per 1k messages <= 1.0x haproxy",
           ratio(get("implicit", "messages", "smtptap", "cpu_ms_per_1k_messages"),
                 get("implicit", "messages", "haproxy", "cpu_ms_per_1k_messages")), 1.0, False, "x haproxy")
    target("bulk MB/s >= 1.0x haproxy",
           ratio(get("implicit", "bulk", "smtptap", "mb_per_s"),
                 get("implicit", "bulk", "haproxy", "mb_per_s")), 1.0, True, "x haproxy")
    target("bulk CPU per GB <= 1.1x haproxy",
           ratio(get("implicit", "bulk", "smtptap", "cpu_s_per_gb"),
                 get("implicit", "bulk", "haproxy", "cpu_s_per_gb")), 1.1, False, "x haproxy")
    for r in results["idle"]:
        if not r["proxy"].startswith("smtptap"):
            continue
        counts = [k for k in r if k.isdigit()]
        per = [(c, (r.get(c) or {}).get("kib_per_session")) for c in counts]
        worst = max((v for _, v in per if v is not None), default=None)
        target(f"RSS <= 32 KiB per idle session, {r['proxy']}", worst, 32, False,
               "KiB at worst (" + ", ".join(f"{fmt(v, 1)} @{c}" for c, v in per) + ")")
        vals = [v for _, v in per if v is not None]
        if len(vals) >= 2 and vals[0]:
            target(f"RSS per idle session flat from {counts[0]} to {counts[-1]}, {r['proxy']}",
                   vals[-1] / vals[0], 1.1, False, f"x (KiB/session @{counts[-1]} / @{counts[0]})")
    # logging: the transcript file must not slow anything down (within 10%)
    worst = None
    for mode in M:
        for kind, key in (("sessions", "sessions_per_s"), ("messages", "messages_per_s"),
                          ("bulk", "mb_per_s")):
            rr = ratio(get(mode, kind, "smtptap", key), get(mode, kind, "smtptap-nolog", key))
            if rr is not None and (worst is None or rr < worst):
                worst = rr
    target("logging never the bottleneck (transcript file vs /dev/null, worst rate)",
           worst, 0.9, True, "x")
    return T


if __name__ == "__main__":
    main()
