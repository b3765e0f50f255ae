#!/usr/bin/env python3
"""cofferfs with several access boxes on one store: how soon a change on one box is seen on
another, and what delivery throughput two boxes writing at once reach beside one box, all in
the same run on the same three coffer-node processes (127.0.0.1, R=3, W=2).

  boxes_bench.py [--cofferfs PATH] [--keytool PATH] [--node PATH] [--ctl PATH]
                 [--probes 200] [--messages 2000] [--jobs 8] [--size 4096] [--rounds 1]

Boxes A and B are two cofferfs mounts with their own STATE_DIR, CURVE key and box_id, the same
key file and nodes (README "Adding a box"; B rebuilds from the nodes at mount).

Propagation, idle: --probes messages are delivered on A one at a time (tmp/, write, fsync,
close, link into new/, unlink tmp/; acknowledged when link() returns), 50 ms apart; a watcher
on B lists new/ every 5 ms and reads each new file (checked byte for byte). Delay = seen and
read on B - acknowledged on A. Then B deletes every probe (unlink; then the directory is
fsynced); delay = gone from A's listing - unlink returned on B. Printed as p50/p90/p99/max.

Throughput: J threads deliver --messages messages of --size bytes into J Maildirs (one per
thread: link() into one directory takes turns at the kernel's directory lock) through
  one box       A alone, J threads;
  two boxes     A and B at once, J threads each (2x the messages, 2x the writers);
  two boxes J/2 A and B at once, J/2 threads each (as many writers as one box);
messages/s (sum over the boxes), and the ratios to one box. During the two-box phase a probe
on A every 100 ms measures the propagation to B under that load. Then the time until both
boxes list every message (convergence after the burst).

--rounds R repeats the throughput phases R times (alternating their order) and prints medians.
Needs root and /dev/fuse; coffer-node and cofferctl are looked for next to cofferfs in the
build tree. `ninja -C BUILD boxes_bench` runs it.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fs"))
sys.path.insert(0, HERE)
from cofferfs_mount import Mount  # noqa: E402
import cofferfs_mount  # noqa: E402
from fs_bench import Cluster, deliver_one, make_maildir, payload_for, run_threads  # noqa: E402


def pct(values, p):
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(-(-p * len(s) // 1)) - 1))]


def line(what, values):
    if not values:
        return "%-44s n/a" % what
    return "%-44s p50 %6.3f s  p90 %6.3f s  p99 %6.3f s  max %6.3f s  n=%d" % (
        what, pct(values, .5), pct(values, .9), pct(values, .99), max(values), len(values))


class Watcher(threading.Thread):
    """Lists DIR every `interval` s; records when each name first appears (and, with
    `expect`, when it reads back as expect[name]) and when a name that was there is gone."""

    def __init__(self, d, interval=0.005, expect=None):
        super().__init__(daemon=True)
        self.d, self.interval, self.expect = d, interval, expect
        self.seen, self.gone = {}, {}
        self.bad = []
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            try:
                names = set(os.listdir(self.d))
            except FileNotFoundError:
                names = set()
            now = time.perf_counter()
            for n in names:
                if n in self.seen:
                    continue
                if self.expect is not None:
                    want = self.expect.get(n)
                    try:
                        with open(os.path.join(self.d, n), "rb") as f:
                            data = f.read()
                    except FileNotFoundError:
                        continue
                    now = time.perf_counter()
                    if want is not None and data != want:
                        self.bad.append(n)
                self.seen[n] = now
            for n in self.seen:
                if n not in names and n not in self.gone:
                    self.gone[n] = now
            time.sleep(self.interval)

    def stop(self):
        self.stop_event.set()
        self.join()


def propagation_idle(a_md, b_md, probes):
    """Returns (A->B delivery delays, B->A delete delays)."""
    make_maildir(a_md)
    deadline = time.time() + 20
    while not os.path.isdir(os.path.join(b_md, "new")) and time.time() < deadline:
        time.sleep(0.01)
    expect, acked = {}, {}
    w_b = Watcher(os.path.join(b_md, "new"), expect=expect)
    w_b.start()
    filler = os.urandom(2048).hex().encode()
    try:
        for i in range(probes):
            name = "%d.M%dP%d.probe" % (1700000000 + i, i, os.getpid())
            data = payload_for(i, 4096, filler)
            expect[name + ",S=%d" % len(data)] = data
            deliver_one(a_md, name, data)
            acked[name + ",S=%d" % len(data)] = time.perf_counter()
            time.sleep(0.05)
        deadline = time.time() + 30
        while len(w_b.seen) < probes and time.time() < deadline:
            time.sleep(0.05)
    finally:
        w_b.stop()
    if w_b.bad:
        raise RuntimeError("B read %d probes with the wrong content, e.g. %s"
                           % (len(w_b.bad), w_b.bad[0]))
    a_to_b = [w_b.seen[n] - acked[n] for n in acked if n in w_b.seen]
    if len(a_to_b) != probes:
        raise RuntimeError("B saw %d of %d probes within 30 s" % (len(a_to_b), probes))

    w_a = Watcher(os.path.join(a_md, "new"))
    w_a.start()
    time.sleep(0.2)  # it has listed every probe once
    deleted = {}
    try:
        for n in sorted(acked):
            os.unlink(os.path.join(b_md, "new", n))
            deleted[n] = time.perf_counter()
            time.sleep(0.02)
        fd = os.open(os.path.join(b_md, "new"), os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)
        deadline = time.time() + 30
        while len(w_a.gone) < probes and time.time() < deadline:
            time.sleep(0.05)
    finally:
        w_a.stop()
    b_to_a = [w_a.gone[n] - deleted[n] for n in deleted if n in w_a.gone]
    if len(b_to_a) != probes:
        raise RuntimeError("A still lists %d of %d probes B deleted"
                           % (probes - len(b_to_a), probes))
    return a_to_b, b_to_a


def deliver_boxes(roots, n, jobs, size, filler, tag):
    """Each root in `roots` gets n messages from `jobs` threads (one Maildir per thread),
    all boxes at once. Returns (seconds, per-box seconds)."""
    per_box = {}
    errors = []

    def box(k, root):
        try:
            t0 = time.perf_counter()
            # each box its own Maildirs: two boxes making the same directory at once is a
            # name conflict (one of them keeps the name), not what this measures
            dirs = [os.path.join(root, "%s-box%d-u%d" % (tag, k, j)) for j in range(jobs)]
            for d in dirs:
                make_maildir(d)

            def work(j):
                for i in range(j, n, jobs):
                    deliver_one(dirs[j], "%d.M%dQ%d.%s" % (1700000000 + i, i, j, tag),
                                payload_for(i, size, filler))

            run_threads(jobs, work)
            per_box[k] = time.perf_counter() - t0
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=box, args=(k, r)) for k, r in enumerate(roots)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0, per_box


def count_all(root, prefix):
    total = 0
    for d in os.listdir(root):
        if d.startswith(prefix + "-box"):
            total += len(os.listdir(os.path.join(root, d, "new")))
    return total


class Probe(threading.Thread):
    """Delivers a small message on A every `every` s into its own Maildir and watches B's view
    of it: the propagation delay under the load of the phase it runs beside."""

    def __init__(self, a_md, b_md, every=0.1):
        super().__init__(daemon=True)
        self.a_md, self.b_md, self.every = a_md, b_md, every
        self.acked = {}
        self.watch = Watcher(os.path.join(b_md, "new"), interval=0.01)
        self.stop_event = threading.Event()

    def run(self):
        make_maildir(self.a_md)
        self.watch.start()
        i = 0
        while not self.stop_event.is_set():
            name = "%d.M%d.loadprobe" % (1700000000 + i, i)
            deliver_one(self.a_md, name, b"Subject: probe\n\nprobe %d\n" % i)
            self.acked[name + ",S=%d" % len(b"Subject: probe\n\nprobe %d\n" % i)] = \
                time.perf_counter()
            i += 1
            time.sleep(self.every)

    def finish(self, wait=10):
        self.stop_event.set()
        self.join()
        deadline = time.time() + wait
        while time.time() < deadline and any(n not in self.watch.seen for n in self.acked):
            time.sleep(0.05)
        self.watch.stop()
        return [self.watch.seen[n] - t for n, t in self.acked.items() if n in self.watch.seen], \
            sum(1 for n in self.acked if n not in self.watch.seen)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cofferfs", default=os.environ.get("COFFERFS", "cofferfs"))
    ap.add_argument("--keytool", default=os.environ.get("COFFER_KEYTOOL", "coffer-keytool"))
    ap.add_argument("--node", default=os.environ.get("COFFER_NODE", ""))
    ap.add_argument("--ctl", default=os.environ.get("COFFERCTL", ""))
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--messages", type=int, default=2000, help="per box and throughput phase")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cofferfs-options", default="")
    args = ap.parse_args()

    build = os.path.dirname(os.path.dirname(os.path.abspath(args.cofferfs)))
    if not args.node:
        guess = os.path.join(build, "replicator", "coffer-node")
        args.node = guess if os.access(guess, os.X_OK) else (shutil.which("coffer-node") or "")
    if not args.ctl:
        guess = os.path.join(build, "ctl", "cofferctl")
        args.ctl = guess if os.access(guess, os.X_OK) else (shutil.which("cofferctl") or "")
    if not args.node:
        print("coffer-node not found (--node)")
        return 1
    cofferfs_mount.COFFERFS, cofferfs_mount.KEYTOOL = args.cofferfs, args.keytool

    work = tempfile.mkdtemp(prefix="boxes-bench-")
    os.chmod(work, 0o755)
    cluster = Cluster(os.path.join(work, "nodes"), args.node, args.keytool, args.ctl, boxes=2)
    os.makedirs(cluster.dir)
    key = os.path.join(work, "key")
    mounts = []
    print("boxes_bench: boxes A and B on 3 coffer-nodes (loopback, R=3 W=2); %d probes, "
          "%d messages of %d B per box and phase, %d threads per box, %d round(s)"
          % (args.probes, args.messages, args.size, args.jobs, args.rounds), flush=True)
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    try:
        cluster.start()
        cofferfs_mount.make_key(key)

        def mount(name, conf):
            opts = "replicator=" + conf
            if args.cofferfs_options:
                opts += "," + args.cofferfs_options
            m = Mount(os.path.join(work, "state-" + name), os.path.join(work, "mnt-" + name),
                      key, opts)
            mounts.append(m)
            return m.start(timeout=120)

        a = mount("A", cluster.box_configs[0])
        b = mount("B", cluster.box_configs[1])

        a_to_b, b_to_a = propagation_idle(os.path.join(a.mnt, "probe"),
                                          os.path.join(b.mnt, "probe"), args.probes)
        print(line("propagation A->B (idle: link on A -> read on B)", a_to_b), flush=True)
        print(line("propagation B->A (idle: unlink on B -> gone on A)", b_to_a), flush=True)

        filler = os.urandom(args.size).hex().encode()
        half = max(1, args.jobs // 2)
        phases = [("one box", [a.mnt], args.jobs),
                  ("two boxes", [a.mnt, b.mnt], args.jobs),
                  ("two boxes J/2", [a.mnt, b.mnt], half)]
        rates = {p[0]: [] for p in phases}
        per_box = {p[0]: [] for p in phases}
        loaded = []
        lost_probes = 0
        converge = []
        for r in range(args.rounds):
            order = phases if r % 2 == 0 else phases[::-1]
            for name, roots, jobs in order:
                tag = "r%d%s" % (r, name.replace(" ", "").replace("/", ""))
                probe = None
                if len(roots) == 2 and jobs == args.jobs:
                    probe = Probe(os.path.join(a.mnt, "lp-" + tag),
                                  os.path.join(b.mnt, "lp-" + tag))
                    probe.start()
                dt, boxes_dt = deliver_boxes(roots, args.messages, jobs, args.size, filler, tag)
                if probe:
                    delays, missing = probe.finish()
                    loaded += delays
                    lost_probes += missing
                total = args.messages * len(roots)
                rates[name].append(total / dt)
                per_box[name].append([args.messages / boxes_dt[k] for k in sorted(boxes_dt)])
                print("%-14s x%-2d threads per box: %8.1f msg/s %7.2f MB/s (%d messages in "
                      "%.1f s; per box %s msg/s)"
                      % (name, jobs, total / dt, total * args.size / dt / 1e6, total, dt,
                         " ".join("%.1f" % x for x in per_box[name][-1])), flush=True)
                if len(roots) == 2:
                    t0 = time.perf_counter()
                    want = args.messages * 2
                    while time.perf_counter() - t0 < 120:
                        if count_all(a.mnt, tag) == want and count_all(b.mnt, tag) == want:
                            break
                        time.sleep(0.1)
                    else:
                        raise RuntimeError("%s: after 120 s A lists %d and B %d of %d messages"
                                           % (name, count_all(a.mnt, tag), count_all(b.mnt, tag),
                                              want))
                    converge.append(time.perf_counter() - t0)
        print("load average at end: %.2f %.2f %.2f" % os.getloadavg())

        med = {k: statistics.median(v) for k, v in rates.items()}
        print("\nsummary (medians over %d round(s))" % args.rounds)
        print(line("propagation A->B idle", a_to_b))
        print(line("propagation B->A idle (deletes)", b_to_a))
        print(line("propagation A->B while both deliver", loaded)
              + ("" if not lost_probes else "  (%d probes never seen)" % lost_probes))
        print("both boxes list every message after the two-box burst: %s s"
              % " ".join("%.2f" % c for c in converge))
        print("delivery, %d B, msg/s:  one box x%d %.1f | two boxes x%d each %.1f | "
              "two boxes x%d each %.1f"
              % (args.size, args.jobs, med["one box"], args.jobs, med["two boxes"], half,
                 med["two boxes J/2"]))
        print("ratio two boxes x%d each / one box x%d: %.2f" % (
            args.jobs, args.jobs, med["two boxes"] / med["one box"]))
        print("ratio two boxes x%d each / one box x%d (same writers): %.2f" % (
            half, args.jobs, med["two boxes J/2"] / med["one box"]))
        return 1 if lost_probes else 0
    finally:
        for m in mounts:
            try:
                m.stop(timeout=120)
            except Exception:  # noqa: BLE001
                pass
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
