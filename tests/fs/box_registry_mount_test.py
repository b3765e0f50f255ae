#!/usr/bin/env python3
"""Several boxes on one store, on real mounts and three real coffer-node processes (suite
'mount'): the kernel's caches and the box registry.

- What another box changes reaches processes here although the kernel was told to cache names
  and attributes for a minute (entry_timeout=60, attr_timeout=60): renames, deletes and
  rewrites on box A are seen on box B within a few seconds, because B invalidates what it
  applied.
- The registry: `cofferctl boxes` lists every box with its host and mount point; a mounted box
  cannot be retired without --force; a stopped one can; a retired box's STATE_DIR refuses to
  mount (exit 65) and an empty one joins as a new box.
- Deletes are collected only once every registered box has applied them: a stopped box holds a
  tombstone back until it is retired.
Everything on 127.0.0.1, stopped by PID.
"""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import Mount, TempArea  # noqa: E402
from nodes_mount_test import Nodes, ctl  # noqa: E402

FAST = "follow_interval_ms=200,heartbeat_s=1"


def wait_for(predicate, limit=10.0, step=0.05):
    deadline = time.time() + limit
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


class BoxRegistryMountTest(unittest.TestCase):
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

    def mount(self, state_name, mnt_name=None, options=FAST, timeout=60):
        opts = "replicator=" + self.nodes.config + "," + options
        m = Mount(self.area.path(state_name), self.area.path("mnt-" + (mnt_name or state_name)),
                  self.area.key, opts)
        self.mounts.append(m)
        return m.start(timeout=timeout)

    def unmount(self, m):
        self.assertEqual(m.stop(), 0, m.read_log())
        self.mounts.remove(m)

    @staticmethod
    def box_id(m):
        found = re.findall(r"box id ([0-9a-f]{16})|joins the store as box ([0-9a-f]{16})",
                           m.read_log())
        ids = [a or b for a, b in found]
        return ids[-1]

    def boxes(self, m):
        r = ctl("boxes", m.mnt)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def test_other_boxes_changes_reach_the_kernel_despite_long_cache_timeouts(self):
        a = self.mount("A")
        b = self.mount("B", options=FAST + ",entry_timeout=60,attr_timeout=60,negative_timeout=60")
        md = os.path.join(a.mnt, "alice")
        os.makedirs(os.path.join(md, "new"))
        os.makedirs(os.path.join(md, "cur"))
        with open(os.path.join(md, "new", "m1"), "w") as f:
            f.write("first version\n")
        bm = os.path.join(b.mnt, "alice")
        self.assertTrue(wait_for(lambda: read(os.path.join(bm, "new", "m1")) == "first version\n"))
        # B's kernel now holds the name, its attributes, its pages, and a miss for the new name.
        os.stat(os.path.join(bm, "new", "m1"))
        self.assertFalse(os.path.exists(os.path.join(bm, "cur", "m1:2,S")))
        started = time.time()
        os.rename(os.path.join(md, "new", "m1"), os.path.join(md, "cur", "m1:2,S"))
        self.assertTrue(wait_for(lambda: not os.path.exists(os.path.join(bm, "new", "m1")) and
                                 os.path.exists(os.path.join(bm, "cur", "m1:2,S"))),
                        "a rename on A stayed hidden behind B's kernel caches")
        self.assertLess(time.time() - started, 10)
        # A rewrite: new size and contents, although B's page cache holds the old ones.
        self.assertEqual(read(os.path.join(bm, "cur", "m1:2,S")), "first version\n")
        with open(os.path.join(md, "cur", "m1:2,S"), "w") as f:
            f.write("second, longer version\n")
        self.assertTrue(wait_for(lambda: read(os.path.join(bm, "cur", "m1:2,S")) ==
                                 "second, longer version\n"),
                        "B kept serving the old contents")
        self.assertEqual(os.stat(os.path.join(bm, "cur", "m1:2,S")).st_size, 23)
        # A delete.
        os.unlink(os.path.join(md, "cur", "m1:2,S"))
        self.assertTrue(wait_for(lambda: not os.path.exists(os.path.join(bm, "cur", "m1:2,S"))))
        self.assertEqual(os.listdir(os.path.join(bm, "cur")), [])

    def test_registry_lists_boxes_and_a_retired_box_never_mounts_again(self):
        a = self.mount("A")
        b = self.mount("B")
        a_id, b_id = self.box_id(a), self.box_id(b)
        self.assertNotEqual(a_id, b_id)
        self.assertTrue(wait_for(lambda: self.boxes(a).count("ACTIVE") == 2, limit=15),
                        self.boxes(a))
        listing = self.boxes(a)
        self.assertIn(a_id, listing)
        self.assertIn(b_id, listing)
        self.assertIn(b.mnt, listing)
        self.assertIn("(this box)", listing)
        status = ctl("status", a.mnt)
        self.assertEqual(status.returncode, 0, status.stdout)
        self.assertIn("boxes       2 known", status.stdout)
        # A mounted box is not retired by mistake.
        r = ctl("retire-box", a.mnt, b_id)
        self.assertEqual(r.returncode, 75, r.stdout + r.stderr)
        self.assertIn("unmount it first", r.stderr)
        r = ctl("retire-box", a.mnt, a_id)
        self.assertNotEqual(r.returncode, 0)
        r = ctl("retire-box", a.mnt, "nothex")
        self.assertEqual(r.returncode, 64, r.stdout + r.stderr)
        r = ctl("retire-box", a.mnt, "00000000000000ff")
        self.assertEqual(r.returncode, 66, r.stdout + r.stderr)
        with open(os.path.join(b.mnt, "from-b"), "w") as f:
            f.write("written on B\n")
        self.unmount(b)
        self.assertTrue(wait_for(lambda: "STOPPED" in self.boxes(a)), self.boxes(a))
        r = ctl("retire-box", a.mnt, b_id)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("retired", r.stdout)
        self.assertIn("RETIRED", self.boxes(a))
        # B's STATE_DIR can never be mounted again: it says why and what to do.
        again = Mount(self.area.path("B"), self.area.path("mnt-B"), self.area.key,
                      "replicator=" + self.nodes.config + "," + FAST)
        with self.assertRaises(RuntimeError) as refused:
            again.start(timeout=30)
        self.assertIn("exited with 65", str(refused.exception))
        self.assertIn("Move the STATE_DIR aside", again.read_log())
        again.stop()
        # An empty STATE_DIR joins as a new box and sees everything.
        c = self.mount("B2", "B")
        self.assertNotEqual(self.box_id(c), b_id)
        self.assertEqual(read(os.path.join(c.mnt, "from-b")), "written on B\n")
        self.assertTrue(wait_for(lambda: self.boxes(a).count("ACTIVE") == 2, limit=15),
                        self.boxes(a))

    def test_a_stopped_box_holds_deletes_back_until_it_is_retired(self):
        opts = FAST + ",tombstone_grace_s=1,scrub_interval_s=0"
        a = self.mount("A", options=opts)
        b = self.mount("B", options=opts)
        b_id = self.box_id(b)
        for i in range(5):
            with open(os.path.join(a.mnt, "m%d" % i), "w") as f:
                f.write("message %d\n" % i)
        self.assertTrue(wait_for(lambda: len(os.listdir(b.mnt)) == 5))
        self.unmount(b)
        self.assertTrue(wait_for(lambda: "STOPPED" in self.boxes(a)), self.boxes(a))
        for i in range(5):
            os.unlink(os.path.join(a.mnt, "m%d" % i))
        time.sleep(2.5)  # older than the grace
        for _ in range(2):
            r = ctl("scrub", a.mnt)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("collected 0,", r.stdout, "a delete B never saw was collected")
        r = ctl("retire-box", a.mnt, b_id)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        collected = 0
        for _ in range(3):
            r = ctl("scrub", a.mnt)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            collected += int(re.search(r"collected (\d+)", r.stdout).group(1))
        self.assertGreaterEqual(collected, 5, "tombstones stayed although no box needs them")
        self.assertEqual(os.listdir(a.mnt), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
