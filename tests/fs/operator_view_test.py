#!/usr/bin/env python3
"""The storage operator's view (suite 'mount'): messages with markers in their headers, bodies
and file names, of sizes chosen off the padding classes, are delivered through a replicated
mount; then the test plays the operator of each node: it reads the node's raw LMDB files and
its object listing (`cofferctl node N list`, which shows what a node holds: ids, versions,
sealed sizes, tombstones) and checks that
- no marker, address or file name appears in any node's files;
- every stored object's size is a padding class (fs/padding.h) plus the sealing overhead, so no
  stored size is a message's exact size plus the overhead;
- messages of different exact sizes in one class are stored alike, and records of messages with
  names of different lengths are stored alike;
- every tombstone has the same size.
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

CHUNK = 64 * 1024
# The sealing overhead (header with version and epoch, nonce, tag) lies in this window.
OVERHEAD = range(20, 81)


def padme(n):
    """Padmé, as fs/padding.cc computes it."""
    if n < 2:
        return n
    e = n.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (n + mask) & ~mask


def classes():
    """Every framed size fs/padding.h allows up to a chunk (chunks, records, tombstones)."""
    out = {64, 512, 1024, 2048, 4096}
    for n in range(1, CHUNK + 1):
        out.add(padme(n) + 1)
    return out


class OperatorViewTest(unittest.TestCase):
    def setUp(self):
        self.area = TempArea()
        self.nodes = Nodes(self.area)
        self.mount = None

    def tearDown(self):
        if self.mount:
            self.mount.stop()
        self.nodes.stop_all()
        self.area.close()

    def listing(self, node):
        r = ctl("node", node, "list", "--config", self.nodes.config)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = []
        for line in r.stdout.splitlines():
            m = re.match(r"seq=(\d+) id=([0-9a-f]+) version=(\S+) size=(\d+)( tombstone)?$", line)
            self.assertIsNotNone(m, line)
            out.append((int(m.group(1)), m.group(2), int(m.group(4)), bool(m.group(5))))
        return out

    def test_the_operator_learns_no_markers_and_no_exact_sizes(self):
        m = Mount(self.area.path("box"), self.area.path("mnt"), self.area.key,
                  "replicator=" + self.nodes.config)
        self.mount = m.start(timeout=60)
        md = os.path.join(m.mnt, "marker-user-qzx")
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(md, sub))
        # Off-class sizes: each exact size lies well inside its padding class.
        sizes = [9000, 9100, 20000, 20300, 40000, 40900, 100000]
        names = []
        for i, size in enumerate(sizes):
            head = ("From: marker-sender-qzx@example.org\nTo: marker-rcpt-qzx@example.net\n"
                    "Subject: MARKER-SUBJECT-QZX-%d\n\n" % i)
            body = ("MARKER-BODY-QZX line %d\n" % i) * (size // 24 + 1)
            data = (head + body).encode()[:size]
            # Maildir names of different lengths.
            name = "1700000000.M%dP%d.markerhost-qzx%s" % (i, 4000 + i, "x" * (i * 7))
            names.append(name)
            tmp = os.path.join(md, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(md, "new", name))
        for name in names[:2]:
            os.unlink(os.path.join(md, "new", name))
        fd = os.open(os.path.join(md, "new"), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        deadline = time.time() + 30
        while time.time() < deadline:
            r = ctl("status", m.mnt)
            if " outbox=0 " in r.stdout:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # the third replica of the last round

        allowed = classes()
        for node in ("n1", "n2", "n3"):
            # 1. Raw files: nothing readable.
            blob = b""
            data_dir = self.area.path(node + "-data")
            for root, _, files in os.walk(data_dir):
                for f in files:
                    with open(os.path.join(root, f), "rb") as fh:
                        blob += fh.read()
            self.assertGreater(len(blob), 100000)
            # Markers long enough that random ciphertext does not contain them by chance (a
            # 3-byte string turns up in a megabyte of ciphertext about once in 16 runs).
            for marker in (b"MARKER-SUBJECT-QZX", b"MARKER-BODY-QZX", b"marker-sender-qzx",
                           b"marker-rcpt-qzx", b"marker-user-qzx", b"markerhost-qzx",
                           b"example.org", b"example.net", b"1700000000.M"):
                self.assertNotIn(marker, blob, "%s found in node %s's files" % (marker, node))
            # 2. Sizes: classes only.
            objects = self.listing(node)
            live = [o for o in objects if not o[3]]
            tombs = [o for o in objects if o[3]]
            self.assertGreater(len(live), 10)
            self.assertGreater(len(tombs), 2)
            for seq, oid, size, _ in live:
                self.assertTrue(any(size - o in allowed for o in OVERHEAD),
                                "object %s of %d bytes is no padding class" % (oid, size))
            for size in sizes:
                last = size % CHUNK or CHUNK
                if padme(last) == last:
                    continue
                exact = [o for o in live if o[2] - (last + 1) in OVERHEAD]
                self.assertEqual(exact, [], "a message's exact size shows: %d" % size)
            # 3. One class, one stored size: the chunks of 40000- and 40900-byte messages
            # (delivered, not deleted) are stored with one size, and so are all records.
            chunk_sizes = {o[2] for o in live if any(o[2] - (padme(40000) + 1) == v for v in OVERHEAD)}
            self.assertEqual(len(chunk_sizes), 1, sorted(chunk_sizes))
            record_sizes = {o[2] for o in live if any(o[2] - 512 == v for v in OVERHEAD)}
            self.assertLessEqual(len(record_sizes), 3, sorted(record_sizes))  # varint lengths
            self.assertEqual(len({o[2] for o in tombs}), 1,
                             "tombstones of different sizes: %s" % sorted({o[2] for o in tombs}))


if __name__ == "__main__":
    unittest.main(verbosity=2)
