#!/usr/bin/env python3
"""cofferfs benchmark: Maildir delivery and POP3-style retrieval, plus postmark, on a plain
directory, gocryptfs, securefs and cofferfs, all measured in the same run; prints messages/s,
MB/s and the ratios of cofferfs to each baseline.

  fs_bench.py [--messages N] [--sizes 4096,65536,2097152] [--cofferfs PATH] [--keytool PATH]

Delivery (per message): create tmp/<unique>, write, fsync, close, link() into new/, unlink the
tmp name (Postfix and qmail style), single process. Retrieval (per message, as a POP3 server
after a session): list new/, read the whole file, rename into cur/ with ":2,S", then unlink.
Needs root, /dev/fuse, gocryptfs, securefs and postmark (scripts/setup.sh installs them); a
baseline whose tool is missing is reported as n/a.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fs"))
from cofferfs_mount import Mount  # noqa: E402


def wait_mount(path, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.ismount(path):
            return
        time.sleep(0.05)
    raise RuntimeError("no mount at " + path)


class Target:
    def __init__(self, name, setup, teardown):
        self.name, self.setup, self.teardown = name, setup, teardown


def deliver(root, size, n):
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    payload = (b"Received: bench\nSubject: x\n\n" + os.urandom(size // 2).hex().encode())[:size]
    t0 = time.perf_counter()
    for i in range(n):
        tmp = os.path.join(root, "tmp", "%d.M%dP%d.bench" % (1700000000 + i, i, os.getpid()))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
        os.link(tmp, os.path.join(root, "new", os.path.basename(tmp) + ",S=%d" % size))
        os.unlink(tmp)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--sizes", default="4096,65536,2097152")
    ap.add_argument("--cofferfs", default=os.environ.get("COFFERFS", "cofferfs"))
    ap.add_argument("--keytool", default=os.environ.get("COFFER_KEYTOOL", "coffer-keytool"))
    ap.add_argument("--cofferfs-options", default="",
                    help="extra -o options for the cofferfs mount (e.g. async)")
    args = ap.parse_args()
    os.environ["COFFERFS"], os.environ["COFFER_KEYTOOL"] = args.cofferfs, args.keytool
    import cofferfs_mount
    cofferfs_mount.COFFERFS, cofferfs_mount.KEYTOOL = args.cofferfs, args.keytool
    sizes = [int(s) for s in args.sizes.split(",")]
    work = tempfile.mkdtemp(prefix="fs-bench-")
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

    def coffer_up():
        key = os.path.join(work, "key")
        cofferfs_mount.make_key(key)
        m = Mount(os.path.join(work, "coffer-state"), os.path.join(work, "coffer"), key,
                  args.cofferfs_options).start()
        state["coffer"] = m
        return m.mnt

    def fuse_down(path):
        subprocess.run(["fusermount3", "-u", path], stderr=subprocess.DEVNULL)

    targets = [
        Target("plain", plain_up, lambda p: None),
        Target("gocryptfs", goc_up, fuse_down),
        Target("securefs", sec_up, fuse_down),
        Target("cofferfs", coffer_up, lambda p: state["coffer"].stop()),
    ]
    results = {}
    try:
        for t in targets:
            try:
                root = t.setup()
            except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
                print("%-10s n/a (%s)" % (t.name, e), flush=True)
                continue
            try:
                r = {}
                for size in sizes:
                    n = args.messages if size <= 65536 else max(10, args.messages // 10)
                    d = os.path.join(root, "Maildir-%d" % size)
                    dt = deliver(d, size, n)
                    rt = retrieve(d, size, n)
                    r[("deliver", size)] = (n / dt, n * size / dt / 1e6)
                    r[("retrieve", size)] = (n / rt, n * size / rt / 1e6)
                    print("%-10s %-8s %8d B: %9.1f msg/s %8.2f MB/s | retrieve %9.1f msg/s "
                          "%8.2f MB/s" % (t.name, "deliver", size, n / dt, n * size / dt / 1e6,
                                          n / rt, n * size / rt / 1e6), flush=True)
                pm = os.path.join(root, "postmark")
                os.makedirs(pm)
                try:
                    r[("postmark", 0)] = (postmark(pm), 0)
                    print("%-10s postmark: %.1f transactions/s" % (t.name, r[("postmark", 0)][0]),
                          flush=True)
                except (OSError, subprocess.SubprocessError) as e:
                    print("%-10s postmark n/a (%s)" % (t.name, e))
                results[t.name] = r
            finally:
                t.teardown(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if "cofferfs" not in results:
        print("cofferfs did not run")
        return 1
    print("\nratios cofferfs / baseline (messages/s; > 1 means cofferfs is faster)")
    keys = [k for k in results["cofferfs"]]
    header = "%-20s" % "phase" + "".join("%12s" % b for b in results if b != "cofferfs")
    print(header)
    for k in keys:
        label = "%s %s" % (k[0], k[1] if k[1] else "")
        row = "%-20s" % label
        for b in results:
            if b == "cofferfs":
                continue
            base = results[b].get(k)
            row += "%12s" % ("%.2f" % (results["cofferfs"][k][0] / base[0]) if base else "n/a")
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
