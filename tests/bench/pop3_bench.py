#!/usr/bin/env python3
"""coffer-pop3d beside Dovecot's pop3 (Debian package dovecot-pop3d), measured in the same run
on the same Maildir content: messages/s and MB/s with 8 and 32 parallel clients retrieving
every message, logins/s, and memory (PSS) per idle connection, before and after login.
Prints each figure for both servers and the ratio coffer/dovecot (for memory dovecot/coffer,
so > 1 always means coffer is better).

The load comes from pop3_bench_client (C++, one thread per client). Every client logs in as its
own user (coffer-pop3d allows one session per maildrop); all users' Maildirs hold hard links to the same message files, so both servers read the same page-cached
bytes. Both run as 'nobody', with default settings apart from the limits on processes and
connections; coffer-pop3d with 2 I/O threads.

    tests/bench/pop3_bench.py --coffer build/pop3d/coffer-pop3d \
        --client build/tests/bench/pop3_bench_client [--seconds 5] [--messages 200]

Needs root (to start Dovecot and switch both servers to 'nobody')."""

import argparse
import os
import pwd
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PASSWORD = "bench-password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(100).startswith(b"+OK"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server on port %d did not start" % port)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = bytearray()

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            chunk = self.s.recv(262144)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        return self.line()

    def login(self, user):
        assert self.line().startswith(b"+OK")
        assert self.cmd("USER " + user).startswith(b"+OK")
        r = self.cmd("PASS " + PASSWORD)
        assert r.startswith(b"+OK"), r

    def close(self):
        self.s.close()


def run_clients(client, mode, port, users, seconds):
    """Runs the C++ load generator; returns (count/s, MB/s)."""
    out = subprocess.run([client, mode, str(port), str(seconds), PASSWORD] + users,
                         capture_output=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError("pop3_bench_client failed: " + out.stderr.decode()[-2000:])
    count, octets = (int(x) for x in out.stdout.split())
    return count / seconds, octets / seconds / 1e6


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def descendants(root_pid):
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [root_pid], [root_pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def idle_memory(port, root_pid, users, login):
    time.sleep(0.5)
    before = pss_kib(descendants(root_pid))
    conns = []
    for u in users:
        c = Conn(port)
        if login:
            c.login(u)
        else:
            assert c.line().startswith(b"+OK")
        conns.append(c)
    time.sleep(1.5)
    after = pss_kib(descendants(root_pid))
    for c in conns:
        try:
            c.cmd("QUIT")
        except (OSError, EOFError):
            pass
        c.close()
    time.sleep(0.5)
    return (after - before) / len(users)


def make_site(root, n_users, n_messages):
    nobody = pwd.getpwnam("nobody")
    crypt = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=PASSWORD.encode(),
                           capture_output=True, check=True).stdout.decode().strip()
    users = ["u%02d@bench.test" % i for i in range(n_users)]
    with open(os.path.join(root, "passwd"), "w") as f:
        for u in users:
            f.write("%s:{SHA512-CRYPT}%s::::::\n" % (u, crypt))
    base = os.path.join(root, "base")
    os.makedirs(base)
    rnd = random.Random(1939)
    names = []
    for i in range(n_messages):
        size = int(min(200000, max(800, rnd.lognormvariate(9.2, 1.0))))  # median ~10 KB
        body = b"".join(b"%s\n" % (b"x" * 70) for _ in range(size // 71))
        name = "%d.M%dP1.bench:2,S" % (1700000000 + i, i)
        with open(os.path.join(base, name), "wb") as f:
            f.write(b"From: a@bench.test\nTo: b@bench.test\nSubject: message %d\n\n" % i + body)
        names.append(name)
    for u in users:
        local, domain = u.split("@")
        md = os.path.join(root, "mail", domain, local, "Maildir")
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(md, sub))
        for n in names:
            os.link(os.path.join(base, n), os.path.join(md, "cur", n))
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, nobody.pw_uid, nobody.pw_gid)
        for fn in filenames:
            os.chown(os.path.join(dirpath, fn), nobody.pw_uid, nobody.pw_gid)
    os.chmod(root, 0o755)
    return users, nobody


def start_coffer(binary, root, port):
    conf = os.path.join(root, "coffer-pop3d.toml")
    with open(conf, "w") as f:
        f.write('[listen]\nplain = ["127.0.0.1:%d"]\n[server]\nuser = "nobody"\nthreads = 2\n'
                'auth_threads = 2\n[auth]\npasswd_file = "%s/passwd"\n'
                'mail_location = "%s/mail/%%d/%%n/Maildir"\n[limits]\nmax_connections = 5000\n'
                'max_connections_per_ip = 5000\n[log]\nlevel = "warn"\n' % (port, root, root))
    log = open(os.path.join(root, "coffer.log"), "wb")
    p = subprocess.Popen([binary, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    wait_port(port)
    return p


def start_dovecot(root, port, nobody):
    conf = os.path.join(root, "dovecot.conf")
    for d in ("run", "state"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    with open(conf, "w") as f:
        f.write("""
base_dir = %(r)s/run
state_dir = %(r)s/state
log_path = %(r)s/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:%(r)s/mail/%%d/%%n/Maildir
pop3_uidl_format = %%08Xu%%08Xv
default_process_limit = 1000
default_client_limit = 5000
default_vsz_limit = 1G
passdb {
  driver = passwd-file
  args = %(r)s/passwd
}
userdb {
  driver = static
  args = uid=%(uid)d gid=%(gid)d home=%(r)s/home/%%d/%%n
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %(port)d
  }
  inet_listener pop3s {
    port = 0
  }
}
""" % {"r": root, "uid": nobody.pw_uid, "gid": nobody.pw_gid, "port": port})
    p = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", conf],
                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(port)
    return p


def stop(p):
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--coffer", required=True, help="the coffer-pop3d binary")
    ap.add_argument("--client", required=True, help="the pop3_bench_client binary")
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--clients", default="8,32")
    ap.add_argument("--idle", type=int, default=100)
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/usr/sbin/dovecot"):
        print("pop3_bench: needs root and dovecot-pop3d (scripts/setup.sh)", file=sys.stderr)
        return 69
    clients = [int(x) for x in args.clients.split(",")]
    root = tempfile.mkdtemp(prefix="pop3_bench_")
    procs = []
    try:
        users, nobody = make_site(root, max(clients + [args.idle]), args.messages)
        cport, dport = free_port(), free_port()
        coffer = start_coffer(args.coffer, root, cport)
        procs.append(coffer)
        dovecot = start_dovecot(root, dport, nobody)
        procs.append(dovecot)
        servers = [("coffer", cport, coffer.pid), ("dovecot", dport, dovecot.pid)]
        rows = []
        # Memory first, on fresh servers (a heap grown by the load runs would hide it).
        for login in (False, True):
            mem = {name: idle_memory(port, pid, users[:args.idle], login)
                   for name, port, pid in servers}
            label = "KiB PSS per idle connection, %s login" % ("after" if login else "before")
            rows.append((label, mem["coffer"], mem["dovecot"]))
        # Warm up: every user's maildrop once (page cache, Dovecot's index files).
        for name, port, _ in servers:
            run_clients(args.client, "retr", port, users[:max(clients)], 2.0)
        def measure(mode, n):
            # Alternate the servers and take the median of --repeat runs: the machine may be
            # shared, and a burst of other load then hits both servers alike.
            runs = {name: [] for name, _, _ in servers}
            for i in range(args.repeat):
                order = servers if i % 2 == 0 else servers[::-1]
                for name, port, _ in order:
                    runs[name].append(run_clients(args.client, mode, port, users[:n],
                                                  args.seconds))
            return {name: (statistics.median(r[0] for r in rs),
                           statistics.median(r[1] for r in rs)) for name, rs in runs.items()}
        for n in clients:
            res = measure("retr", n)
            rows.append(("messages/s, %d clients" % n, res["coffer"][0], res["dovecot"][0]))
            rows.append(("MB/s, %d clients" % n, res["coffer"][1], res["dovecot"][1]))
        for n in (8,):
            res = measure("login", n)
            rows.append(("logins/s, %d clients" % n, res["coffer"][0], res["dovecot"][0]))
        print("%-44s %12s %12s %8s" % ("pop3_bench (median of %d x %gs)" % (args.repeat, args.seconds), "coffer",
                                       "dovecot", "ratio"))
        for label, c, d in rows:
            if label.startswith("KiB"):
                ratio = d / c if c > 0 else float("inf")
            else:
                ratio = c / d if d > 0 else float("inf")
            print("%-44s %12.1f %12.1f %7.2fx" % (label, c, d, ratio))
        print("(ratio: coffer/dovecot for rates, dovecot/coffer for memory; > 1 favours coffer)")
        return 0
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
