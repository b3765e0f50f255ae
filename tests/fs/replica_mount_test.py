#!/usr/bin/env python3
"""The box as a replica of the nodes' store, on real mounts and three real coffer-node processes
(suite 'mount').

- Crash convergence: cofferfs is killed -9 while 8 writers deliver Maildir messages and a reader
  moves and deletes them. After the remount every acknowledged delivery and move is there, and
  once the outbox drained the tree equals what a new box rebuilds from the nodes alone. The
  same holds when the box's LMDB lost its last commits (STATE_DIR restored from an earlier copy:
  the box catches up from older cursors) and when the whole STATE_DIR is gone.
- The durability contract's "never waits" side: unlink with two of three nodes down succeeds,
  stays done across a remount and reaches the nodes when they return; a normal run with every
  node up logs no DEGRADED line.
- A write into a chunk evicted from the cache fetches it without holding the filesystem lock:
  while the nodes answer slowly, other operations on the mount are not held up.
- A read-only mount writes nothing to the nodes: no outbox replay, no read repair, no scrub
  writes, also when it rebuilds into an empty STATE_DIR.
Everything on 127.0.0.1, stopped by PID.
"""
import errno
import os
import re
import shutil
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import Mount, TempArea  # noqa: E402
from nodes_mount_test import Nodes, ctl  # noqa: E402

WRITERS = 8


def maildir(root, user="alice"):
    md = os.path.join(root, user)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    return md


def deliver(md, name, body):
    """Postfix style: tmp/, write, fsync, close, link into new/, unlink tmp/. Returns after the
    link, the point at which an MTA acknowledges the message."""
    tmp = os.path.join(md, "tmp", name)
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, os.path.join(md, "new", name))
    os.unlink(tmp)


def tree(md):
    """{folder/name: content} of new/ and cur/ (tmp/ may hold a crash's leftovers)."""
    out = {}
    for folder in ("new", "cur"):
        d = os.path.join(md, folder)
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                out[folder + "/" + name] = f.read()
    return out


class Traffic:
    """8 writers deliver, one reader moves new/ -> cur/ (rename: acknowledged) and deletes some
    (unlink: not waited for). Runs until stop() or until the mount goes away."""

    def __init__(self, md, tag):
        self.md, self.tag = md, tag
        self.lock = threading.Lock()
        self.delivered = {}   # name -> body, after link() returned
        self.moved = {}       # name -> cur name, after rename() returned
        self.attempted = set()  # renames started (one cut short by the crash may have happened)
        self.stopping = False
        self.errors = []
        self.threads = [threading.Thread(target=self.writer, args=(j,)) for j in range(WRITERS)]
        self.threads.append(threading.Thread(target=self.reader))

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def writer(self, j):
        i = 0
        while not self.stopping:
            name = "%s.%d.%d" % (self.tag, j, i)
            body = (b"Message-ID: <%s@x>\n\n" % name.encode()) + os.urandom(300 + 97 * i % 6000)
            try:
                deliver(self.md, name, body)
            except OSError as e:
                if e.errno not in (errno.ENOTCONN, errno.ECONNABORTED, errno.ENOENT, errno.EIO):
                    self.errors.append("deliver %s: %s" % (name, e))
                return
            with self.lock:
                self.delivered[name] = body
            i += 1

    def reader(self):
        n = 0
        while not self.stopping:
            with self.lock:
                candidates = [k for k in self.delivered if k not in self.moved]
            if not candidates:
                time.sleep(0.005)
                continue
            name = candidates[0]
            self.attempted.add(name)
            try:
                os.rename(os.path.join(self.md, "new", name),
                          os.path.join(self.md, "cur", name + ":2,S"))
                with self.lock:
                    self.moved[name] = name + ":2,S"
                n += 1
                if n % 5 == 0:
                    os.unlink(os.path.join(self.md, "cur", name + ":2,S"))
            except OSError:
                return

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(timeout=60)


class ReplicaMountTest(unittest.TestCase):
    def setUp(self):
        self.area = TempArea()
        self.nodes = Nodes(self.area)
        self.mounts = []

    def tearDown(self):
        for m in self.mounts:
            try:
                m.stop()
            except Exception:  # noqa: BLE001
                pass
        self.nodes.stop_all()
        self.area.close()

    def mount(self, state_name, options="", timeout=60):
        opts = "replicator=" + self.nodes.config
        if options:
            opts += "," + options
        m = Mount(self.area.path(state_name), self.area.path("mnt-" + state_name),
                  self.area.key, opts)
        self.mounts.append(m)
        return m.start(timeout=timeout)

    def unmount(self, m):
        self.assertEqual(m.stop(), 0, m.read_log())
        self.mounts.remove(m)

    def crash(self, m):
        m.kill9()
        self.mounts.remove(m)

    def wait_outbox_empty(self, target, limit=60):
        deadline = time.time() + limit
        out = ""
        while time.time() < deadline:
            r = ctl("status", target)
            out = r.stdout
            if " outbox=0 " in out and r.returncode == 0:
                return out
            time.sleep(0.2)
        self.fail("outbox did not drain: " + out)

    def node_seqs(self):
        seqs = {}
        for n in ("n1", "n2", "n3"):
            r = ctl("node", n, "stat", "--config", self.nodes.config)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            seqs[n] = int(re.search(r"^seq\s+(\d+)", r.stdout, re.M).group(1))
        return seqs

    def rebuilt_tree(self, name):
        """What the nodes alone hold: a new box with an empty STATE_DIR."""
        fresh = self.mount(name)
        try:
            self.assertIn("rebuilt from the storage nodes", fresh.read_log())
            return tree(os.path.join(fresh.mnt, "alice"))
        finally:
            self.unmount(fresh)

    def assert_acknowledged(self, got, traffic):
        for name, body in traffic.delivered.items():
            cur = "cur/" + name + ":2,S" if name in traffic.attempted else None
            # a moved message is under its new name; an acknowledged move cannot be undone, and
            # an unacknowledged one may or may not have happened; a deleted one may come back
            self.assertTrue(("new/" + name) in got or (cur is not None and cur in got)
                            or self.was_deleted(name, traffic),
                            "acknowledged delivery %s is gone" % name)
            if name in traffic.moved and cur not in got:
                self.assertTrue(self.was_deleted(name, traffic),
                                "acknowledged move of %s is undone" % name)
            for key in ("new/" + name, cur):
                if key in got:
                    self.assertEqual(got[key], body, key)

    @staticmethod
    def was_deleted(name, traffic):
        # the reader deletes every 5th message it moved (in move order)
        order = list(traffic.moved)
        return name in traffic.moved and (order.index(name) + 1) % 5 == 0

    def run_and_crash(self, m, tag, seconds):
        md = maildir(m.mnt)
        traffic = Traffic(md, tag).start()
        time.sleep(seconds)
        self.crash(m)
        traffic.stop()
        self.assertEqual(traffic.errors, [])
        self.assertGreater(len(traffic.delivered), 20, "too few deliveries to mean anything")
        return traffic

    def test_kill9_with_eight_writers_converges_to_the_nodes_plus_the_outbox(self):
        m = self.mount("state")
        t1 = self.run_and_crash(m, "a", 2.5)

        m = self.mount("state")
        self.wait_outbox_empty(m.mnt)
        got = tree(os.path.join(m.mnt, "alice"))
        self.assert_acknowledged(got, t1)
        r = ctl("verify", m.mnt)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.unmount(m)
        self.assertEqual(self.rebuilt_tree("fresh1"), got)

        # The local LMDB loses its last commits: an earlier copy of STATE_DIR (taken while
        # nothing runs) comes back after more deliveries were acknowledged.
        snapshot = self.area.path("state-snapshot")
        shutil.copytree(self.area.path("state"), snapshot)
        m = self.mount("state")
        t2 = self.run_and_crash(m, "b", 2.0)
        shutil.rmtree(self.area.path("state"))
        shutil.move(snapshot, self.area.path("state"))
        m = self.mount("state")
        self.wait_outbox_empty(m.mnt)
        got = tree(os.path.join(m.mnt, "alice"))
        self.assert_acknowledged(got, t1)
        self.assert_acknowledged(got, t2)
        self.assertIn("catch-up at mount", m.read_log())
        # the box goes on from there: its next changes win over what it wrote before the loss
        md = os.path.join(m.mnt, "alice")
        first = sorted(n for n in t2.delivered if "new/" + n in got)[0]
        os.rename(os.path.join(md, "new", first), os.path.join(md, "cur", first + ":2,RS"))
        deliver(md, "after-restore", b"Message-ID: <after@x>\n\nafter\n")
        got = tree(md)
        self.assertIn("cur/" + first + ":2,RS", got)
        self.assertNotIn("new/" + first, got)
        self.wait_outbox_empty(m.mnt)
        self.unmount(m)
        self.assertEqual(self.rebuilt_tree("fresh2"), got)

        # The whole STATE_DIR is gone: the same box comes back as the nodes hold it.
        shutil.rmtree(self.area.path("state"))
        m = self.mount("state")
        self.assertEqual(tree(os.path.join(m.mnt, "alice")), got)
        self.unmount(m)

    def test_unlink_never_waits_for_nodes_and_stays_done(self):
        m = self.mount("state")
        md = maildir(m.mnt)
        for i in range(6):
            deliver(md, "m%d" % i, b"body %d\n" % i)
        self.nodes.kill("n1")
        self.nodes.kill("n2")
        # unlink with one node of three: done at once, never EAGAIN
        t0 = time.time()
        for i in range(3):
            os.unlink(os.path.join(md, "new", "m%d" % i))
        self.assertLess(time.time() - t0, 1.0, "unlink waited for the nodes")
        self.assertEqual(sorted(os.listdir(os.path.join(md, "new"))), ["m3", "m4", "m5"])
        # a crash before the nodes are back, after the commit interval: the outbox holds them
        time.sleep(1.0)
        self.crash(m)
        self.nodes.start("n1")
        self.nodes.start("n2")
        m = self.mount("state")
        self.assertEqual(sorted(os.listdir(os.path.join(m.mnt, "alice", "new"))), ["m3", "m4", "m5"])
        self.wait_outbox_empty(m.mnt)
        self.unmount(m)
        self.assertEqual(sorted(self.rebuilt_tree("fresh")), ["new/m3", "new/m4", "new/m5"])

    def test_no_degraded_line_when_every_node_answers(self):
        m = self.mount("state")
        md = maildir(m.mnt)
        traffic = Traffic(md, "ok").start()
        time.sleep(2.0)
        traffic.stop()
        self.assertEqual(traffic.errors, [])
        self.assertGreater(len(traffic.delivered), 20)
        self.wait_outbox_empty(m.mnt)
        self.unmount(m)
        with open(m.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        self.assertNotIn("DEGRADED", log)

    def test_a_write_into_an_evicted_chunk_does_not_hold_up_other_operations(self):
        m = self.mount("state", "cache_limit_mb=1")
        md = maildir(m.mnt)
        big = os.urandom(8 << 20)
        with open(os.path.join(m.mnt, "big"), "wb") as f:
            f.write(big)
            f.flush()
            os.fsync(f.fileno())
        deliver(md, "small", b"small\n")
        deadline = time.time() + 20
        while time.time() < deadline:  # the maintenance thread evicts what the nodes confirm
            evicted = re.search(r" evicted=(\d+)", ctl("status", m.mnt).stdout)
            if evicted and int(evicted.group(1)) > 0:
                break
            time.sleep(0.2)
        self.assertTrue(evicted and int(evicted.group(1)) > 0, "nothing was evicted")
        for n in ("n1", "n2", "n3"):
            r = ctl("node", n, "play-dead", "slow", "700", "--config", self.nodes.config,
                    "--key", self.area.path("admin.key_secret"))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        done = {}

        def write_middle():
            t = time.time()
            try:
                with open(os.path.join(m.mnt, "big"), "r+b") as f:
                    f.seek(5 << 20)
                    f.write(b"patched")
                    f.flush()
                done["write"] = time.time() - t
            except OSError as e:
                done["error"] = str(e)

        w = threading.Thread(target=write_middle)
        w.start()
        time.sleep(0.2)  # the write is now fetching its chunk from the slow nodes
        t = time.time()
        os.stat(os.path.join(md, "new", "small"))
        os.listdir(os.path.join(md, "new"))
        with open(os.path.join(md, "new", "small"), "rb") as f:
            self.assertEqual(f.read(), b"small\n")
        others = time.time() - t
        w.join(timeout=60)
        self.assertIn("write", done, done)
        self.assertGreater(done["write"], 0.6, "the write did not fetch from the slow nodes")
        self.assertLess(others, 0.3, "stat/readdir/read waited %.2f s behind a fetch" % others)
        for n in ("n1", "n2", "n3"):
            ctl("node", n, "play-dead", "off", "--config", self.nodes.config,
                "--key", self.area.path("admin.key_secret"))
        with open(os.path.join(m.mnt, "big"), "rb") as f:
            got = f.read()
        self.assertEqual(got[:5 << 20], big[:5 << 20])
        self.assertEqual(got[5 << 20:(5 << 20) + 7], b"patched")
        self.assertEqual(got[(5 << 20) + 7:], big[(5 << 20) + 7:])

    def test_a_read_only_mount_writes_nothing_to_the_nodes(self):
        m = self.mount("state")
        md = maildir(m.mnt)
        self.nodes.kill("n3")  # n3 misses these: a read-write box would repair it
        for i in range(10):
            deliver(md, "m%d" % i, os.urandom(5000 + 3000 * i))
        want = tree(md)
        self.nodes.kill("n2")
        os.unlink(os.path.join(md, "new", "m0"))  # only in the outbox now
        del want["new/m0"]
        time.sleep(1.0)  # the commit interval: the unlink is in the local outbox
        self.crash(m)
        self.nodes.start("n2")
        self.nodes.start("n3")
        before = self.node_seqs()

        ro = self.mount("state", "ro")
        self.assertEqual(tree(os.path.join(ro.mnt, "alice")), want)
        with self.assertRaises(OSError) as cm:
            open(os.path.join(ro.mnt, "alice", "new", "x"), "wb")
        self.assertEqual(cm.exception.errno, errno.EROFS)
        r = ctl("scrub", ro.mnt)
        self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)
        time.sleep(2.0)  # a read-write box replays its outbox every 500 ms
        self.unmount(ro)
        self.assertEqual(self.node_seqs(), before, "a read-only mount wrote to the nodes")

        # a read-only rebuild into an empty STATE_DIR: what the nodes hold (n1 took the
        # tombstone of m0 although too few nodes did), and nothing written either
        ro = self.mount("rebuild", "ro")
        self.assertEqual(tree(os.path.join(ro.mnt, "alice")), want)
        time.sleep(1.5)
        self.unmount(ro)
        self.assertEqual(self.node_seqs(), before, "a read-only rebuild wrote to the nodes")

        # the read-write box then replays its outbox and repairs n3
        m = self.mount("state")
        self.wait_outbox_empty(m.mnt)
        self.unmount(m)
        after = self.node_seqs()
        self.assertGreater(after["n1"] + after["n2"] + after["n3"],
                           before["n1"] + before["n2"] + before["n3"])
        self.assertEqual(sorted(self.rebuilt_tree("fresh")), sorted(want))


if __name__ == "__main__":
    unittest.main(verbosity=2)
