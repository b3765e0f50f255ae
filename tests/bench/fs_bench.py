#!/usr/bin/env python3
"""cofferfs benchmark: Maildir delivery and POP3-style retrieval, plus postmark, on a plain
directory, gocryptfs, securefs, local-only cofferfs and cofferfs on three storage nodes (R=3,
W=2 over loopback), all measured in the same run; then the rebuild of a box from the nodes.
Prints messages/s, MB/s and the ratios of each cofferfs to each baseline, then the target ratios
(each "name: measured (target >= X) PASS/MISS", computed from this run's figures; the
benchmark exits 0 whether they pass or not).

  fs_bench.py [--messages N] [--sizes 4096,65536,2097152] [--cofferfs PATH] [--keytool PATH]
              [--node PATH] [--ctl PATH] [--targets plain,gocryptfs,...]
              [--dir-files 10000] [--rebuild-messages 50000] [--jobs 8] [--perf DIR]

Delivery (per message): create tmp/<unique>, write, fsync, close, link() into new/, unlink the
tmp name (Postfix and qmail style), single process. "deliver xJ": the same with J threads
delivering at once into one Maildir (an MTA runs many delivery agents; cofferfs groups their
commits and round trips); "deliver xJ users": J threads, each into its own Maildir (the kernel
serialises link() into one directory, so this is what many users' mail sees). Retrieval (per message, as a POP3 server after a session): list new/, read the whole
file, rename into cur/ with ":2,S", then unlink.

10,000-file directory (--dir-files N, 0: skip): one process creates N files in one directory
(open O_CREAT|O_EXCL, write a small body, close), lists it (scandir and a stat of every entry),
then unlinks them all; reported as the total seconds (and the seconds of each step).

cofferfs-r3 runs three coffer-node processes on 127.0.0.1 (free ports, CURVE keys made with
coffer-keytool curve-keygen, as scripts/demo.sh does), started and stopped by PID, and mounts
with -o replicator=FILE (R=3, W=2). Rebuild: J threads deliver --rebuild-messages messages of
--rebuild-size bytes through a replicated mount, which is then unmounted; a new mount with an
EMPTY state directory, the same key and node list is timed until it is up, until new/ lists
every message, and until every message has been read back (content fetched lazily from the
nodes) and checked byte for byte.

--perf DIR records `perf record -g` of the cofferfs process during each phase of the cofferfs
targets into DIR/<target>-<phase>.data (perf must be installed).

Needs root, /dev/fuse, gocryptfs, securefs and postmark (scripts/setup.sh installs them); a
baseline whose tool is missing is reported as n/a. coffer-node and cofferctl are looked for next
to cofferfs in the build tree (BUILD/replicator, BUILD/ctl) unless --node/--ctl say otherwise.
"""
import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fs"))
from cofferfs_mount import Mount  # noqa: E402
import cofferfs_mount  # noqa: E402

BASELINES = ("plain", "gocryptfs", "securefs")
COFFERS = ("cofferfs", "cofferfs-r3")


def wait_mount(path, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.ismount(path):
            return
        time.sleep(0.05)
    raise RuntimeError("no mount at " + path)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Cluster:
    """Three coffer-node processes on 127.0.0.1 with CURVE keys and an allow list, and the
    replicator config (R=3, W=2) that a cofferfs mount uses to reach them. Stopped by PID.
    With boxes=N, N boxes each get a key pair on the allow list and a replicator config of
    their own (box_configs[i], box_id i+1; replicator_toml is the first)."""

    def __init__(self, work, node_bin, keytool, ctl, count=3, boxes=1):
        self.dir = work
        self.node_bin, self.keytool, self.ctl, self.count = node_bin, keytool, ctl, count
        self.procs = []
        self.replicator_toml = os.path.join(work, "replicator.toml")
        self.box_configs = [self.replicator_toml] + [
            os.path.join(work, "replicator-%d.toml" % (i + 1)) for i in range(1, boxes)]

    def start(self):
        keys = os.path.join(self.dir, "keys")
        os.makedirs(keys, mode=0o700)
        names = ["n%d" % (i + 1) for i in range(self.count)]
        boxes = ["box"] + ["box%d" % (i + 1) for i in range(1, len(self.box_configs))]
        for who in names + boxes + ["admin"]:
            subprocess.run([self.keytool, "curve-keygen", "--out", os.path.join(keys, who)],
                           check=True, stdout=subprocess.DEVNULL)
        allowed = os.path.join(keys, "allowed_boxes")
        with open(allowed, "w") as out:
            for b in boxes:
                with open(os.path.join(keys, b + ".key")) as k:
                    out.write(k.read())
        ports = free_ports(self.count)
        rep = ["box_id = 1", 'secret_key_file = "%s"' % os.path.join(keys, "box.key_secret"),
               "replicas = 3", "write_quorum = 2"]
        try:
            for name, port in zip(names, ports):
                data = os.path.join(self.dir, name)
                conf = os.path.join(self.dir, name + ".toml")
                with open(conf, "w") as f:
                    f.write('node_id = "%s"\ndata_dir = "%s"\nlisten = ["tcp://127.0.0.1:%d"]\n'
                            'secret_key_file = "%s"\nallowed_keys_file = "%s"\n'
                            'admin_key_file = "%s"\n'
                            % (name, data, port, os.path.join(keys, name + ".key_secret"),
                               allowed, os.path.join(keys, "admin.key")))
                log = open(os.path.join(self.dir, name + ".log"), "ab")
                self.procs.append(subprocess.Popen([self.node_bin, "--config", conf],
                                                   stdout=log, stderr=log))
                log.close()
                rep += ["", "[[node]]", 'id = "%s"' % name,
                        'endpoint = "tcp://127.0.0.1:%d"' % port,
                        'public_key_file = "%s"' % os.path.join(keys, name + ".key")]
            with open(self.replicator_toml, "w") as f:
                f.write("\n".join(rep) + "\n")
            for i, (b, conf) in enumerate(zip(boxes[1:], self.box_configs[1:]), 2):
                with open(conf, "w") as f:
                    f.write("\n".join(["box_id = %d" % i, 'secret_key_file = "%s"'
                                       % os.path.join(keys, b + ".key_secret")] + rep[2:])
                            + "\n")
            for name, port, proc in zip(names, ports, self.procs):
                self._wait_up(name, port, proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_up(self, name, port, proc, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("coffer-node %s exited with %d (log %s)"
                                   % (name, proc.returncode, os.path.join(self.dir, name + ".log")))
            if self.ctl:
                ok = subprocess.run([self.ctl, "node", name, "ping", "--config",
                                     self.replicator_toml, "--timeout", "500"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    timeout=10).returncode == 0
            else:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    ok = True
                except OSError:
                    ok = False
            if ok:
                return
            time.sleep(0.1)
        raise RuntimeError("coffer-node %s did not answer within %ds" % (name, timeout))

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def disk_mb(self):
        total = 0
        for root, _, files in os.walk(self.dir):
            for f in files:
                try:
                    total += os.stat(os.path.join(root, f)).st_blocks * 512
                except OSError:
                    pass
        return total / 1e6


class Target:
    def __init__(self, name, setup, teardown):
        self.name, self.setup, self.teardown = name, setup, teardown


def payload_for(i, size, filler):
    return (b"Received: bench\nSubject: message %d\n\n" % i + filler)[:size]


def deliver_one(root, name, data, use_link=True):
    tmp = os.path.join(root, "tmp", name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    final = os.path.join(root, "new", name + ",S=%d" % len(data))
    if use_link:
        os.link(tmp, final)
        os.unlink(tmp)
    else:
        os.rename(tmp, final)


def make_maildir(root):
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)


def deliver(root, size, n):
    make_maildir(root)
    payload = (b"Received: bench\nSubject: x\n\n" + os.urandom(size // 2).hex().encode())[:size]
    t0 = time.perf_counter()
    for i in range(n):
        deliver_one(root, "%d.M%dP%d.bench" % (1700000000 + i, i, os.getpid()), payload)
    return time.perf_counter() - t0


def run_threads(jobs, work):
    """Runs work(j) in `jobs` threads (file system calls release the GIL); re-raises the
    first failure."""
    errors = []

    def body(j):
        try:
            work(j)
        except BaseException as e:  # noqa: B902 - reported to the caller
            errors.append(e)

    threads = [threading.Thread(target=body, args=(j,)) for j in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def deliver_parallel(root, size, n, jobs, use_link=True, filler=None, progress=False,
                     spread=False):
    """Delivers messages 0..n-1 (payload_for(i)) with `jobs` threads; returns seconds. With
    `spread`, thread j delivers into its own Maildir root/user<j> (an MTA delivering to many
    users) instead of all into root."""
    roots = [os.path.join(root, "user%d" % j) if spread else root for j in range(jobs)]
    for r in set(roots):
        make_maildir(r)
    filler = filler or os.urandom(size).hex().encode()
    done = [0]
    lock = threading.Lock()

    def work(j):
        for i in range(j, n, jobs):
            deliver_one(roots[j], "%d.M%dP%dQ%d.bench" % (1700000000 + i, i, os.getpid(), j),
                        payload_for(i, size, filler), use_link)
            if progress:
                with lock:
                    done[0] += 1
                    if done[0] % 5000 == 0:
                        print("  ... %d of %d delivered (%.0f s)"
                              % (done[0], n, time.perf_counter() - t0), flush=True)

    t0 = time.perf_counter()
    run_threads(jobs, work)
    return time.perf_counter() - t0


def retrieve(root, size, n):
    t0 = time.perf_counter()
    names = os.listdir(os.path.join(root, "new"))
    got = 0
    for name in names:
        p = os.path.join(root, "new", name)
        with open(p, "rb") as f:
            got += len(f.read())
        q = os.path.join(root, "cur", name + ":2,S")
        os.rename(p, q)
        os.unlink(q)
    elapsed = time.perf_counter() - t0
    assert got == size * n and len(names) == n, (got, len(names))
    return elapsed


def many_files(root, n, body=b"Subject: small\n\nsmall body\n"):
    """Creates n files in one directory (O_CREAT|O_EXCL, a small body, close), lists it with a
    stat of every entry, unlinks them all. Returns the seconds of (all, create, list, unlink)."""
    d = os.path.join(root, "many")
    os.makedirs(d)
    names = [os.path.join(d, "%d.M%d.many" % (1700000000 + i, i)) for i in range(n)]
    t0 = time.perf_counter()
    for p in names:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
    t1 = time.perf_counter()
    count = size = 0
    with os.scandir(d) as it:
        for e in it:
            size += e.stat(follow_symlinks=False).st_size
            count += 1
    t2 = time.perf_counter()
    for p in names:
        os.unlink(p)
    t3 = time.perf_counter()
    assert count == n and size == n * len(body), (count, size)
    os.rmdir(d)
    return (t3 - t0, t1 - t0, t2 - t1, t3 - t2)


@contextlib.contextmanager
def profiled(args, target, phase, pid):
    """perf record -g of process `pid` while the block runs (with --perf DIR)."""
    if not args.perf or not pid:
        yield
        return
    os.makedirs(args.perf, exist_ok=True)
    out = os.path.join(args.perf, "%s-%s.data" % (target, phase))
    proc = subprocess.Popen(["perf", "record", "-g", "-q", "-p", str(pid), "-o", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


POSTMARK_CONF = """set location {dir}
set size 2048 262144
set number 400
set transactions 1000
set read 65536
set write 65536
set buffering false
set subdirectories 4
run
quit
"""


def postmark(root):
    conf = os.path.join(tempfile.gettempdir(), "fs_bench_postmark.%d" % os.getpid())
    with open(conf, "w") as f:
        f.write(POSTMARK_CONF.format(dir=root))
    t0 = time.perf_counter()
    subprocess.run(["postmark", conf], stdout=subprocess.DEVNULL, check=True, timeout=600)
    os.unlink(conf)
    return 1000 / (time.perf_counter() - t0)  # transactions/s (incl. create/delete phases)


def bench_target(name, root, args, sizes, pid=None):
    r = {}
    for size in sizes:
        n = args.messages if size <= 65536 else max(10, args.messages // 10)
        d = os.path.join(root, "Maildir-%d" % size)
        with profiled(args, name, "deliver-%d" % size, pid):
            dt = deliver(d, size, n)
        with profiled(args, name, "retrieve-%d" % size, pid):
            rt = retrieve(d, size, n)
        r[("deliver", size)] = (n / dt, n * size / dt / 1e6)
        r[("retrieve", size)] = (n / rt, n * size / rt / 1e6)
        print("%-12s %8d B: deliver %9.1f msg/s %8.2f MB/s | retrieve %9.1f msg/s %8.2f MB/s"
              % (name, size, n / dt, n * size / dt / 1e6, n / rt, n * size / rt / 1e6),
              flush=True)
    if args.jobs > 1:
        size, n = 4096, args.messages * 2
        d = os.path.join(root, "Maildir-par")
        with profiled(args, name, "deliver-x%d" % args.jobs, pid):
            dt = deliver_parallel(d, size, n, args.jobs)
        rt = retrieve(d, size, n)
        r[("deliver x%d" % args.jobs, size)] = (n / dt, n * size / dt / 1e6)
        print("%-12s %8d B: deliver x%d %7.1f msg/s %8.2f MB/s"
              % (name, size, args.jobs, n / dt, n * size / dt / 1e6), flush=True)
        # The same into one Maildir per writer: link() holds the kernel's lock on the target
        # directory for the whole request, so writers into one new/ take turns at it; an MTA
        # delivering to many users does not.
        d = os.path.join(root, "Maildir-spread")
        with profiled(args, name, "deliver-x%d-spread" % args.jobs, pid):
            dt = deliver_parallel(d, size, n, args.jobs, spread=True)
        r[("deliver x%d users" % args.jobs, size)] = (n / dt, n * size / dt / 1e6)
        print("%-12s %8d B: deliver x%d into %d Maildirs %7.1f msg/s %8.2f MB/s"
              % (name, size, args.jobs, args.jobs, n / dt, n * size / dt / 1e6), flush=True)
    if args.dir_files > 0:
        with profiled(args, name, "dir", pid):
            total, create, listed, unlink = many_files(root, args.dir_files)
        r[("dir", args.dir_files)] = (total, create, listed, unlink)
        print("%-12s %d-file directory: %.2f s (create %.2f s, list+stat %.2f s, unlink %.2f s)"
              % (name, args.dir_files, total, create, listed, unlink), flush=True)
    if not args.no_postmark:
        pm = os.path.join(root, "postmark")
        os.makedirs(pm)
        try:
            with profiled(args, name, "postmark", pid):
                pm_rate = postmark(pm)
            r[("postmark", 0)] = (pm_rate, 0)
            print("%-12s postmark: %.1f transactions/s" % (name, r[("postmark", 0)][0]),
                  flush=True)
        except (OSError, subprocess.SubprocessError) as e:
            print("%-12s postmark n/a (%s)" % (name, e))
    return r


def print_tables(results, jobs):
    names = [t for t in BASELINES + COFFERS if t in results]
    keys = []
    for t in names:
        for k in results[t]:
            if k not in keys:
                keys.append(k)

    def label(k):
        if k[0] == "dir":
            return "%d-file dir" % k[1]
        return "%s %s" % (k[0], k[1] if k[1] else "")

    def cell(k, v):
        if not v:
            return "n/a"
        if k[0] == "postmark":
            return "%.1f" % v[0]
        if k[0] == "dir":
            return "%.2f s" % v[0]
        return "%.1f / %.2f" % (v[0], v[1])

    print("\nabsolute (msg/s, MB/s; postmark: transactions/s; N-file dir: total seconds)")
    print("%-20s" % "phase" + "".join("%22s" % t for t in names))
    for k in keys:
        print("%-20s" % label(k) + "".join("%22s" % cell(k, results[t].get(k)) for t in names))

    pairs = [(c, b) for c in COFFERS if c in results
             for b in BASELINES + ("cofferfs",) if b in results and b != c
             and not (c == "cofferfs" and b == "cofferfs-r3")]
    if not pairs:
        return
    print("\nratios (row target's rate / baseline's rate, the same for msg/s and MB/s; N-file "
          "dir: baseline's seconds / target's; > 1 means faster than the baseline)")
    short = {"cofferfs": "local", "cofferfs-r3": "r3", "plain": "plain",
             "gocryptfs": "gocryptfs", "securefs": "securefs"}
    print("%-20s" % "phase" + "".join("%18s" % ("%s/%s" % (short[c], short[b]))
                                      for c, b in pairs))
    for k in keys:
        row = "%-20s" % label(k)
        for c, b in pairs:
            cv, bv = results[c].get(k), results[b].get(k)
            if k[0] == "dir":
                cv, bv = bv, cv  # times: the faster one has the smaller figure
            row += "%18s" % ("%.3f" % (cv[0] / bv[0]) if cv and bv and bv[0] else "n/a")
        print(row)


# The target ratios: (name, target phase, baseline, baseline phase, target; "max": the ratio
# must not exceed it, else it must reach it). Phases are keys of bench_target's results;
# "JOBS" and "DIR" stand for --jobs and --dir-files.
TARGETS = (
    ("cofferfs local deliver 4 KiB vs securefs", "cofferfs", ("deliver", 4096),
     "securefs", ("deliver", 4096), 1.2, "min"),
    ("cofferfs local retrieve 4 KiB vs securefs", "cofferfs", ("retrieve", 4096),
     "securefs", ("retrieve", 4096), 1.0, "min"),
    ("cofferfs local postmark vs securefs", "cofferfs", ("postmark", 0),
     "securefs", ("postmark", 0), 1.0, "min"),
    ("cofferfs-r3 deliver 4 KiB vs gocryptfs", "cofferfs-r3", ("deliver", 4096),
     "gocryptfs", ("deliver", 4096), 0.8, "min"),
    ("cofferfs-r3 deliver 4 KiB xJOBS vs gocryptfs xJOBS", "cofferfs-r3", ("deliver xJOBS", 4096),
     "gocryptfs", ("deliver xJOBS", 4096), 1.5, "min"),
    ("cofferfs-r3 deliver 4 KiB xJOBS into JOBS Maildirs vs gocryptfs the same", "cofferfs-r3",
     ("deliver xJOBS users", 4096), "gocryptfs", ("deliver xJOBS users", 4096), 1.5, "min"),
    ("cofferfs-r3 retrieve 4 KiB vs gocryptfs", "cofferfs-r3", ("retrieve", 4096),
     "gocryptfs", ("retrieve", 4096), 0.7, "min"),
    ("cofferfs-r3 DIR-file dir time / cofferfs local's", "cofferfs-r3", ("dir", "DIR"),
     "cofferfs", ("dir", "DIR"), 2.0, "max"),
)


def print_targets(results, args):
    """The target ratios of this run: "name: measured (target >= X) PASS/MISS"."""
    def phase(k):
        a, b = k
        a = a.replace("JOBS", str(args.jobs))
        return (a, args.dir_files if b == "DIR" else b)

    print("\ntarget ratios (this run's figures; rates: target / baseline, the N-file dir: "
          "seconds / seconds)")
    for name, t, tk, b, bk, want, kind in TARGETS:
        name = name.replace("JOBS", str(args.jobs)).replace("DIR", str(args.dir_files))
        tv = results.get(t, {}).get(phase(tk))
        bv = results.get(b, {}).get(phase(bk))
        op = "<=" if kind == "max" else ">="
        if not tv or not bv or not bv[0]:
            print("%s: n/a (target %s %.1f)" % (name, op, want))
            continue
        ratio = tv[0] / bv[0]
        ok = ratio <= want if kind == "max" else ratio >= want
        print("%s: %.2f (target %s %.1f) %s" % (name, ratio, op, want, "PASS" if ok else "MISS"))


def rebuild_bench(args, work):
    """Fills a box through a replicated mount, then times the rebuild of a new box (empty
    state directory) from the nodes and the lazy read-back of every message."""
    n, size, jobs = args.rebuild_messages, args.rebuild_size, args.jobs
    base = os.path.join(work, "rebuild")
    os.makedirs(base)
    cluster = Cluster(os.path.join(base, "nodes"), args.node, args.keytool, args.ctl)
    os.makedirs(cluster.dir)
    cluster.start()
    key = os.path.join(base, "key")
    cofferfs_mount.make_key(key)
    opts = "replicator=" + cluster.replicator_toml
    if args.cofferfs_options:
        opts += "," + args.cofferfs_options
    filler = os.urandom(size).hex().encode()
    out = {}
    try:
        print("\nrebuild: %d messages of %d B through cofferfs-r3 with %d writers"
              % (n, size, jobs), flush=True)
        first = Mount(os.path.join(base, "state1"), os.path.join(base, "mnt1"), key, opts)
        first.start(timeout=60)
        try:
            box = os.path.join(first.mnt, "user", "Maildir")
            dt = deliver_parallel(box, size, n, jobs, use_link=False, filler=filler,
                                  progress=True)
        finally:
            rc = first.stop(timeout=300)
        out["fill"] = (n / dt, n * size / dt / 1e6, dt)
        print("fill:    %.1f msg/s, %.2f MB/s (%.1f s; rename delivery, %d threads); "
              "unmount rc %s; nodes hold %.0f MB on disk"
              % (n / dt, n * size / dt / 1e6, dt, jobs, rc, cluster.disk_mb()), flush=True)

        state2 = os.path.join(base, "state2")
        os.makedirs(state2)  # empty: the new box has only the key and the node list
        second = Mount(state2, os.path.join(base, "mnt2"), key, opts)
        t0 = time.perf_counter()
        second.start(timeout=args.rebuild_timeout)
        try:
            t_mount = time.perf_counter() - t0
            new = os.path.join(second.mnt, "user", "Maildir", "new")
            count = -1
            deadline = time.perf_counter() + args.rebuild_timeout
            while time.perf_counter() < deadline:
                try:
                    count = len(os.listdir(new))
                except FileNotFoundError:
                    count = -1
                if count == n:
                    break
                time.sleep(0.1)
            t_list = time.perf_counter() - t0
            if count != n:
                raise RuntimeError("after %.0f s new/ lists %d of %d messages"
                                   % (t_list, count, n))
            out["mount"] = t_mount
            out["list"] = (n / t_list, t_list)
            print("rebuild: mount up after %.2f s, new/ lists all %d after %.2f s (%.1f msg/s)"
                  % (t_mount, n, t_list, n / t_list), flush=True)
            progress = [ln for ln in second.read_log().splitlines() if "rebuil" in ln.lower()]
            for ln in progress[-3:]:
                print("  log: " + ln.strip())

            names = sorted(os.listdir(new))
            bad = []

            def read_part(j):
                for name in names[j::jobs]:
                    i = int(name.split(".M", 1)[1].split("P", 1)[0])
                    with open(os.path.join(new, name), "rb") as f:
                        if f.read() != payload_for(i, size, filler):
                            bad.append(name)

            t1 = time.perf_counter()
            run_threads(jobs, read_part)
            t_read = time.perf_counter() - t1
            if bad:
                raise RuntimeError("%d messages read back wrong, e.g. %s" % (len(bad), bad[0]))
            out["read"] = (n / t_read, n * size / t_read / 1e6, t_read)
            print("read:    all %d messages back in %.1f s: %.1f msg/s, %.2f MB/s "
                  "(%d readers, content fetched lazily, every byte checked)"
                  % (n, t_read, n / t_read, n * size / t_read / 1e6, jobs), flush=True)
        finally:
            second.stop(timeout=300)
    finally:
        cluster.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--sizes", default="4096,65536,2097152")
    ap.add_argument("--jobs", type=int, default=8,
                    help="threads for the parallel delivery and the rebuild (1: no parallel "
                         "delivery phase)")
    ap.add_argument("--cofferfs", default=os.environ.get("COFFERFS", "cofferfs"))
    ap.add_argument("--keytool", default=os.environ.get("COFFER_KEYTOOL", "coffer-keytool"))
    ap.add_argument("--node", default=os.environ.get("COFFER_NODE", ""),
                    help="coffer-node binary (default: next to cofferfs in the build tree)")
    ap.add_argument("--ctl", default=os.environ.get("COFFERCTL", ""),
                    help="cofferctl binary (default: next to cofferfs in the build tree)")
    ap.add_argument("--cofferfs-options", default="",
                    help="extra -o options for the cofferfs mounts (e.g. async)")
    ap.add_argument("--targets", default=",".join(BASELINES + COFFERS),
                    help="comma-separated subset of " + ",".join(BASELINES + COFFERS))
    ap.add_argument("--no-postmark", action="store_true")
    ap.add_argument("--dir-files", type=int, default=10000,
                    help="files of the one-directory phase (0: skip it)")
    ap.add_argument("--perf", default="",
                    help="directory for perf record -g of cofferfs during each phase")
    ap.add_argument("--rebuild-messages", type=int, default=50000,
                    help="messages for the rebuild measurement (0: skip it)")
    ap.add_argument("--rebuild-size", type=int, default=4096)
    ap.add_argument("--rebuild-timeout", type=int, default=3600)
    args = ap.parse_args()

    build = os.path.dirname(os.path.dirname(os.path.abspath(args.cofferfs)))
    if not args.node:
        guess = os.path.join(build, "replicator", "coffer-node")
        args.node = guess if os.access(guess, os.X_OK) else (shutil.which("coffer-node") or "")
    if not args.ctl:
        guess = os.path.join(build, "ctl", "cofferctl")
        args.ctl = guess if os.access(guess, os.X_OK) else (shutil.which("cofferctl") or "")
    os.environ["COFFERFS"], os.environ["COFFER_KEYTOOL"] = args.cofferfs, args.keytool
    cofferfs_mount.COFFERFS, cofferfs_mount.KEYTOOL = args.cofferfs, args.keytool
    sizes = [int(s) for s in args.sizes.split(",")]
    wanted = args.targets.split(",")
    work = tempfile.mkdtemp(prefix="fs-bench-")
    os.chmod(work, 0o755)
    pw = os.path.join(work, "pass")
    with open(pw, "w") as f:
        f.write("bench-passphrase\n")
    state = {}

    def plain_up():
        d = os.path.join(work, "plain")
        os.makedirs(d)
        return d

    def goc_up():
        c, m = os.path.join(work, "goc-cipher"), os.path.join(work, "goc")
        os.makedirs(c)
        os.makedirs(m)
        subprocess.run(["gocryptfs", "-init", "-q", "-passfile", pw, c], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["gocryptfs", "-q", "-passfile", pw, c, m], check=True)
        wait_mount(m)
        return m

    def sec_up():
        c, m = os.path.join(work, "sec-cipher"), os.path.join(work, "sec")
        os.makedirs(c)
        os.makedirs(m)
        subprocess.run(["securefs", "create", "--pass", "bench-passphrase", c], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["securefs", "mount", "-b", "--pass", "bench-passphrase", c, m],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_mount(m)
        return m

    def coffer_up(name, replicated):
        def up():
            key = os.path.join(work, name + ".key")
            cofferfs_mount.make_key(key)
            opts = args.cofferfs_options
            if replicated:
                if not args.node:
                    raise RuntimeError("coffer-node not found (--node)")
                nodes = os.path.join(work, name + "-nodes")
                os.makedirs(nodes)
                state[name + "-cluster"] = Cluster(nodes, args.node, args.keytool,
                                                   args.ctl).start()
                rep = "replicator=" + state[name + "-cluster"].replicator_toml
                opts = rep + ("," + opts if opts else "")
            try:
                m = Mount(os.path.join(work, name + "-state"), os.path.join(work, name), key,
                          opts).start(timeout=60)
            except BaseException:
                if replicated:
                    state.pop(name + "-cluster").stop()
                raise
            state[name] = m
            return m.mnt
        return up

    def coffer_down(name):
        def down(_):
            try:
                state.pop(name).stop(timeout=120)
            finally:
                if name + "-cluster" in state:
                    state.pop(name + "-cluster").stop()
        return down

    def fuse_down(path):
        subprocess.run(["fusermount3", "-u", path], stderr=subprocess.DEVNULL)

    targets = [
        Target("plain", plain_up, lambda p: None),
        Target("gocryptfs", goc_up, fuse_down),
        Target("securefs", sec_up, fuse_down),
        Target("cofferfs", coffer_up("cofferfs", False), coffer_down("cofferfs")),
        Target("cofferfs-r3", coffer_up("cofferfs-r3", True), coffer_down("cofferfs-r3")),
    ]
    print("fs_bench: %d messages per size (2 MB: a tenth), sizes %s, %d threads for the "
          "parallel phases; cofferfs-r3 = 3 coffer-nodes on loopback, R=3 W=2"
          % (args.messages, args.sizes, args.jobs), flush=True)
    # Another process busy on the machine skews every figure: say how busy it was.
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    results = {}
    rebuild = None
    try:
        for t in targets:
            if t.name not in wanted:
                continue
            try:
                root = t.setup()
            except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
                print("%-12s n/a (%s)" % (t.name, e), flush=True)
                continue
            try:
                pid = state[t.name].pid if t.name in state else None
                results[t.name] = bench_target(t.name, root, args, sizes, pid)
            finally:
                t.teardown(root)
        if args.rebuild_messages > 0:
            if args.node:
                try:
                    rebuild = rebuild_bench(args, work)
                except (OSError, subprocess.SubprocessError, RuntimeError) as e:
                    print("rebuild failed: %s" % e, flush=True)
                    rebuild = False
            else:
                print("rebuild n/a (coffer-node not found)")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("load average at end: %.2f %.2f %.2f" % os.getloadavg())
    print_tables(results, args.jobs)
    print_targets(results, args)
    if rebuild:
        n = args.rebuild_messages
        print("\nrebuild of a box from the nodes (%d messages of %d B, %d threads)"
              % (n, args.rebuild_size, args.jobs))
        print("  fill through cofferfs-r3   %9.1f msg/s  %7.2f MB/s  %8.1f s" % rebuild["fill"])
        print("  mount up (empty state)     %31.2f s" % rebuild["mount"])
        print("  new/ lists all messages    %9.1f msg/s  %16.2f s" % rebuild["list"])
        print("  read all back (lazy fetch) %9.1f msg/s  %7.2f MB/s  %8.1f s" % rebuild["read"])
    if not any(c in results for c in COFFERS) and not rebuild:
        print("cofferfs did not run")
        return 1
    return 1 if rebuild is False else 0


if __name__ == "__main__":
    sys.exit(main())
