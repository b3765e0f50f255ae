#!/usr/bin/env python3
"""The current cofferfs mounts whole stores written by store format 1 (suite 'mount').

tests/reference/v1-stores/ holds what the old binaries (commit da148f8) wrote: the STATE_DIR of
a local-only box, the STATE_DIR of a box on three storage nodes and the three nodes' databases,
the keys, and MANIFEST, the tree they hold (tests/reference/make_v1_stores.sh). Each test works
on fresh copies and checks the whole tree against MANIFEST (names, types, modes, owners, sizes,
times, content, symlink targets, hard-link groups, the FIFO), and that the logs are clean:
  - the local STATE_DIR: served read-only as it is, migrated at the first writable mount, once;
    the tree survives remounts and new writes;
  - the replicated STATE_DIR on the old nodes: the same, `cofferctl verify` clean once the
    outbox has drained, `cofferctl scrub` clean before and after, the box's own scrub (with
    tombstone collection) calls no node a liar, and a new box from the migrated nodes finds no
    names of format 1 there;
  - an empty STATE_DIR on the old nodes (a box rebuilt from the nodes alone, then migrated),
    then a second new box from the same nodes;
  - two boxes upgraded one after the other: the format-1 box upgraded last must not undo what
    the first one changed after its migration.
Everything on 127.0.0.1; processes stopped by PID; mounts always unmounted.
"""
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import Mount, free_port, wait_port  # noqa: E402

NODE = os.environ.get("COFFER_NODE", "coffer-node")
CTL = os.environ.get("COFFERCTL", "cofferctl")
SOURCE_ROOT = os.environ.get(
    "COFFER_SOURCE_ROOT",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
REF = os.path.join(SOURCE_ROOT, "tests", "reference", "v1-stores")
NODE_NAMES = ("n1", "n2", "n3")
KEY_FILES = ["key", "allowed"] + ["%s.key" % w for w in ("box", "admin") + NODE_NAMES] + \
            ["%s.key_secret" % w for w in ("box", "admin") + NODE_NAMES]

FIELDS = ("path", "type", "mode", "uid", "gid", "size", "atime", "mtime", "nlink", "sha256",
          "link_group", "ctime_local", "ctime_nodes")
TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
         stat.S_IFIFO: "fifo"}

MIGRATED = re.compile(r"store migrated to format 2: (\d+) records now carry their names, "
                      r"(\d+) directory entries deleted")
REBUILT = re.compile(r"rebuild: index rebuilt from the storage nodes .*: (\d+) inodes"
                     r"(?:, (\d+) directory entries of format 1)?")
LOG_PROBLEM = re.compile(r" (warning|error|critical): ")


def load_manifest():
    """{path: {field: value}} from MANIFEST; raises on a malformed line."""
    tree = {}
    with open(os.path.join(REF, "MANIFEST"), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(FIELDS):
                raise ValueError("MANIFEST line %d has %d fields, not %d"
                                 % (n, len(parts), len(FIELDS)))
            e = dict(zip(FIELDS, parts))
            for k in ("uid", "gid", "size", "atime", "mtime", "nlink", "ctime_local",
                      "ctime_nodes"):
                e[k] = int(e[k])
            e["mode"] = int(e["mode"], 8)
            tree[e.pop("path")] = e
    return tree


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 16)
            if not block:
                return h.hexdigest()
            h.update(block)


def read_tree(mnt):
    """Walks the mount: {path: attributes as in MANIFEST, plus ino and ctime}."""
    out = {}

    def visit(rel):
        path = os.path.join(mnt, rel)
        st = os.lstat(path)
        e = {"type": TYPES.get(stat.S_IFMT(st.st_mode), "mode %o" % stat.S_IFMT(st.st_mode)),
             "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
             "size": st.st_size, "atime": st.st_atime_ns, "mtime": st.st_mtime_ns,
             "ctime": st.st_ctime_ns, "nlink": st.st_nlink, "ino": st.st_ino, "sha256": "-"}
        try:
            if e["type"] == "file":
                e["sha256"] = sha256_file(path)
            elif e["type"] == "symlink":
                e["sha256"] = hashlib.sha256(os.fsencode(os.readlink(path))).hexdigest()
        except OSError as err:  # reported as a difference, with the path
            e["sha256"] = "unreadable: %s" % err
        out[rel] = e
        if e["type"] == "dir":
            for name in sorted(os.listdir(path)):
                visit(name if rel == "." else rel + "/" + name)

    visit(".")
    return out


def tree_problems(expected, got, ctime_field):
    """Every difference between MANIFEST entries and a walked tree, one line each. An expected
    value of None is not checked (set by a test that changed it)."""
    bad = []
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        bad.append("missing: %s" % missing)
    if extra:
        bad.append("unexpected: %s" % extra)
    for rel in extra:
        if got[rel]["sha256"].startswith("unreadable"):
            bad.append("%s (unexpected): %s" % (rel, got[rel]["sha256"]))
    for rel in sorted(set(expected) & set(got)):
        e, g = expected[rel], got[rel]
        checks = [(k, e[k], g[k]) for k in ("type", "mode", "uid", "gid", "size", "atime",
                                            "mtime", "nlink", "sha256")]
        checks.append(("ctime", e[ctime_field], g["ctime"]))
        for k, want, have in checks:
            if want is None or want == have:
                continue
            if k == "mode":
                want, have = "%04o" % want, "%04o" % have
            bad.append("%s: %s is %r, expected %r" % (rel, k, have, want))
    # Hard links: one inode per link group, a distinct inode for every other path.
    owner = {}
    for rel in sorted(set(expected) & set(got)):
        group = expected[rel]["link_group"]
        key = group if group != "-" else rel
        ino = got[rel]["ino"]
        if ino in owner and owner[ino] != key:
            bad.append("%s shares inode %d with %s (MANIFEST: link group %s)"
                       % (rel, ino, owner[ino], group))
        owner.setdefault(ino, key)
        first = key if key in got else None
        if group != "-" and first and got[first]["ino"] != ino:
            bad.append("%s: inode %d, but %s of its link group has inode %d"
                       % (rel, ino, first, got[first]["ino"]))
    return bad


class Nodes:
    """Three coffer-node processes on copies of the reference node databases."""

    def __init__(self, area):
        self.area = area
        self.procs = {}
        self.ports = {n: free_port() for n in NODE_NAMES}
        self.config = os.path.join(area, "replicator.toml")
        self.fill("replicator.toml", self.config)
        for n in NODE_NAMES:
            self.fill("node.toml", os.path.join(area, n + ".toml"), n)

    def fill(self, template, out, node=""):
        with open(os.path.join(REF, template)) as f:
            text = f.read()
        text = text.replace("@DIR@", self.area).replace("@NODE@", node)
        text = text.replace("@PORT@", str(self.ports.get(node, 0)))
        for n, port in self.ports.items():
            text = text.replace("@PORT_%s@" % n, str(port))
        if any("@" in line for line in text.splitlines() if not line.startswith("#")):
            raise ValueError("unfilled placeholder in %s: %s" % (template, text))
        with open(out, "w") as f:
            f.write(text)

    def copy_data(self):
        for n in NODE_NAMES:
            dst = os.path.join(self.area, "nodes", n)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(os.path.join(REF, "nodes", n), dst)

    def start(self):
        for n in NODE_NAMES:
            log = open(os.path.join(self.area, n + ".log"), "ab")
            self.procs[n] = subprocess.Popen(
                [NODE, "--config", os.path.join(self.area, n + ".toml")],
                stdout=log, stderr=log)
            log.close()
        for n in NODE_NAMES:
            try:
                wait_port(self.ports[n], timeout=15)
            except RuntimeError:
                raise RuntimeError("coffer-node %s does not listen: %s"
                                   % (n, self.log(n))) from None

    def log(self, n):
        try:
            with open(os.path.join(self.area, n + ".log"), "rb") as f:
                return f.read().decode(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self):
        for n in list(self.procs):
            p = self.procs.pop(n)
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def ctl(*args, timeout=60):
    return subprocess.run([CTL] + list(args), capture_output=True, text=True, timeout=timeout)


class ReferenceStoresTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.manifest = load_manifest()

    def setUp(self):
        self.area = tempfile.mkdtemp(prefix="cofferfs-v1-")
        os.chmod(self.area, 0o755)
        for name in KEY_FILES:  # git does not keep 0600; the key file must be 0600
            shutil.copy(os.path.join(REF, name), os.path.join(self.area, name))
            os.chmod(os.path.join(self.area, name), 0o600)
        self.key = os.path.join(self.area, "key")
        self.mounts = []
        self.nodes = None

    def tearDown(self):
        for m in self.mounts:
            try:
                m.stop()
            except Exception:  # noqa: BLE001
                pass
        if self.nodes:
            self.nodes.stop()
        shutil.rmtree(self.area, ignore_errors=True)

    # ---- helpers ----

    def path(self, *names):
        return os.path.join(self.area, *names)

    def copy_state(self, name):
        shutil.copytree(os.path.join(REF, name), self.path(name))
        os.chmod(self.path(name), 0o700)
        return self.path(name)

    def mount(self, state_name, replicated, options=""):
        """Mounts STATE_DIR area/state_name; returns (mount, the log offset before it)."""
        opts = ",".join(o for o in ("replicator=" + self.nodes.config if replicated else "",
                                    options) if o)
        m = Mount(self.path(state_name), self.path("mnt-" + state_name), self.key, opts)
        offset = os.path.getsize(m.log_path) if os.path.exists(m.log_path) else 0
        self.mounts.append(m)
        m.start(timeout=30)
        return m, offset

    def unmount(self, m):
        rc = m.stop()
        self.mounts.remove(m)
        self.assertEqual(rc, 0, "cofferfs did not exit cleanly: " + self.log_since(m, 0))

    def log_since(self, m, offset):
        with open(m.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def assertLogClean(self, log, what):
        if any(LOG_PROBLEM.search(line) for line in log.splitlines()):
            self.fail("%s logged warnings or errors:\n%s" % (what, log))

    def inodes_and_names(self, tree):
        """(number of inodes, number of names) of a MANIFEST tree."""
        groups = {e["link_group"] for e in tree.values() if e["link_group"] != "-"}
        linked = sum(1 for e in tree.values() if e["link_group"] != "-")
        return len(tree) - linked + len(groups), len(tree) - 1

    def assertMigratedOnce(self, m, offset, what):
        log = self.log_since(m, offset)
        found = MIGRATED.findall(log)
        self.assertEqual(len(found), 1, "%s: the log should say once that the store was "
                                        "migrated to format 2:\n%s" % (what, log))
        inodes, names = self.inodes_and_names(self.manifest)
        self.assertEqual((int(found[0][0]), int(found[0][1])), (inodes, names),
                         "%s: (records, directory entries) migrated" % what)
        return log

    def assertNotMigrated(self, m, offset, what):
        log = self.log_since(m, offset)
        self.assertEqual(MIGRATED.findall(log), [],
                         "%s: a migrated store was migrated again:\n%s" % (what, log))
        return log

    def assertTree(self, mnt, expected, ctime_field, what):
        got = read_tree(mnt)
        bad = tree_problems(expected, got, ctime_field)
        if bad:
            self.fail("%s: the tree differs from the expected one (MANIFEST):\n  %s"
                      % (what, "\n  ".join(bad)))
        self.assertFifo(mnt, expected, what)

    def assertFifo(self, mnt, expected, what):
        for rel, e in expected.items():
            if e["type"] != "fifo":
                continue
            path = os.path.join(mnt, rel)
            r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                w = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                try:
                    os.write(w, b"through the pipe")
                finally:
                    os.close(w)
                self.assertEqual(os.read(r, 100), b"through the pipe",
                                 "%s: %s does not work as a FIFO" % (what, rel))
            finally:
                os.close(r)

    def wait_outbox_empty(self, target, limit=30):
        deadline = time.time() + limit
        out = ""
        while time.time() < deadline:
            r = ctl("status", target)
            out = r.stdout + r.stderr
            if r.returncode == 0 and " outbox=0 " in out:
                return out
            time.sleep(0.2)
        self.fail("the outbox did not drain within %d s: %s" % (limit, out))

    def assertVerifyClean(self, m, what):
        r = ctl("verify", m.mnt)
        self.assertEqual(r.returncode, 0,
                         "%s: cofferctl verify exited %d:\n%s%s\ncofferfs log:\n%s"
                         % (what, r.returncode, r.stdout, r.stderr, m.read_log()))
        self.assertIn("the tree matches the storage nodes", r.stdout)

    def assertScrubClean(self, what):
        r = ctl("scrub", "--config", self.nodes.config, "--key-file", self.key, "-q")
        self.assertEqual(r.returncode, 0, "cofferctl scrub of %s exited %d:\n%s%s"
                         % (what, r.returncode, r.stdout, r.stderr))
        self.assertIn(" unrecoverable 0 ", r.stdout, "cofferctl scrub of " + what)
        self.assertNotIn("LYING", r.stdout, "cofferctl scrub of " + what)

    def wait_for_scrub(self, m, limit=30):
        """Waits until the mount's background scrub has run; returns its status fields."""
        deadline = time.time() + limit
        out = ""
        while time.time() < deadline:
            r = ctl("status", m.mnt)
            out = r.stdout + r.stderr
            fields = dict(re.findall(r"\b([a-z_.0-9]+)=(\S+)", r.stdout))
            if r.returncode == 0 and fields.get("last_scrub_unix", "0") != "0":
                return fields
            time.sleep(0.2)
        self.fail("no background scrub within %d s: %s" % (limit, out))

    def change_tree(self, mnt):
        """New writes on a migrated store: a delivery, a message read (new/ -> cur/), one
        deleted, one name of the hard-linked message removed. Returns the expected tree."""
        want = {rel: dict(e) for rel, e in self.manifest.items()}
        m = lambda rel: os.path.join(mnt, rel)
        new1 = next(r for r in want if r.startswith("alice/new/1700000001."))
        cur5 = next(r for r in want if r.startswith("alice/cur/1700000005."))
        sent8 = next(r for r in want if r.startswith("alice/.Sent/cur/1700000008."))
        cur8 = next(r for r in want if r.startswith("alice/cur/1700000008."))
        body = b"Message-ID: <after-migration@example.org>\n\nWritten by the current cofferfs.\n"
        tmp = m("alice/tmp/1800000000.M1P1.v2box")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, body)
        os.fsync(fd)
        os.close(fd)
        os.link(tmp, m("alice/new/1800000000.M1P1.v2box"))
        os.unlink(tmp)
        os.utime(m("alice/new/1800000000.M1P1.v2box"),
                 ns=(1800000000123456789, 1800000000987654321))
        os.rename(m(new1), m(new1.replace("/new/", "/cur/") + ":2,S"))
        os.unlink(m(cur5))
        os.unlink(m(sent8))
        for d in ("alice/new", "alice/cur", "alice/.Sent/cur"):
            fd = os.open(m(d), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        want["alice/new/1800000000.M1P1.v2box"] = {
            "type": "file", "mode": 0o600, "uid": 0, "gid": 0, "size": len(body),
            "atime": 1800000000123456789, "mtime": 1800000000987654321, "nlink": 1,
            "sha256": hashlib.sha256(body).hexdigest(), "link_group": "-",
            "ctime_local": None, "ctime_nodes": None}
        want[new1.replace("/new/", "/cur/") + ":2,S"] = dict(want.pop(new1), ctime_local=None,
                                                            ctime_nodes=None)
        del want[cur5], want[sent8]
        want[cur8].update(nlink=1, link_group="-", ctime_local=None, ctime_nodes=None)
        for d in ("alice/new", "alice/cur", "alice/.Sent/cur", "alice/tmp"):
            want[d].update(atime=None, mtime=None, ctime_local=None, ctime_nodes=None)
        return want

    # ---- the tests ----

    def test_local_state_dir_is_migrated_once(self):
        self.copy_state("state-local")
        # Read-only: the tree is served from format 1 as it is, nothing is migrated.
        m, off = self.mount("state-local", replicated=False, options="ro")
        self.assertTree(m.mnt, self.manifest, "ctime_local", "read-only mount")
        self.assertNotMigrated(m, off, "read-only mount")
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "the read-only mount")

        m, off = self.mount("state-local", replicated=False)
        self.assertTree(m.mnt, self.manifest, "ctime_local", "first mount")
        self.assertMigratedOnce(m, off, "first mount")
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "the first mount")

        m, off = self.mount("state-local", replicated=False)
        self.assertTree(m.mnt, self.manifest, "ctime_local", "second mount")
        self.assertNotMigrated(m, off, "second mount")
        want = self.change_tree(m.mnt)
        self.assertTree(m.mnt, want, "ctime_local", "after new writes")
        self.unmount(m)
        log = self.log_since(m, off)
        self.assertLogClean(log, "the second mount")

        m, off = self.mount("state-local", replicated=False)
        self.assertTree(m.mnt, want, "ctime_local", "third mount, after new writes")
        self.assertNotMigrated(m, off, "third mount")
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "the third mount")

    def test_replicated_state_dir_on_old_nodes(self):
        self.nodes = Nodes(self.area)
        self.nodes.copy_data()
        self.nodes.start()
        self.assertScrubClean("the old nodes")
        self.copy_state("state-nodes")
        m, off = self.mount("state-nodes", replicated=True)
        self.assertTree(m.mnt, self.manifest, "ctime_nodes", "first mount")
        self.assertMigratedOnce(m, off, "first mount")
        self.wait_outbox_empty(m.mnt)
        self.assertVerifyClean(m, "after the migration")
        want = self.change_tree(m.mnt)
        self.wait_outbox_empty(m.mnt)
        self.assertVerifyClean(m, "after new writes")
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "the first mount")

        m, off = self.mount("state-nodes", replicated=True)
        self.assertTree(m.mnt, want, "ctime_nodes", "second mount")
        self.assertNotMigrated(m, off, "second mount")
        self.assertVerifyClean(m, "second mount")
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "the second mount")

        # The box's own scrub, with tombstone collection, once the deletes of format 1 are
        # older than the grace period (1 s here; a week by default): honest nodes holding
        # what format 1 wrote are not liars, and nothing is unrecoverable.
        m, off = self.mount("state-nodes", replicated=True,
                            options="scrub_interval_s=1,tombstone_grace_s=1")
        fields = self.wait_for_scrub(m)
        if fields.get("liars") != "0" or fields.get("scrub_unrecoverable") != "0":
            errors = [line for line in self.log_since(m, off).splitlines()
                      if LOG_PROBLEM.search(line)]
            self.fail("the box's scrub after the migration: %s nodes called liars, %s objects "
                      "unrecoverable; first of %d errors logged:\n%s"
                      % (fields.get("liars"), fields.get("scrub_unrecoverable"), len(errors),
                         "\n".join(errors[:5])))
        self.assertTree(m.mnt, want, "ctime_nodes", "after the box's scrub")
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "the mount that scrubbed")
        self.assertScrubClean("the migrated nodes")

        # A new box from these nodes: the migration left no directory entries of format 1 there.
        m, off = self.mount("box-new", replicated=True)
        log = self.log_since(m, off)
        found = REBUILT.findall(log)
        self.assertEqual(len(found), 1, "the new box did not rebuild from the nodes:\n" + log)
        self.assertEqual(found[0][1], "", "the new box found directory entries of format 1 on "
                         "the nodes after the migration:\n" + log)
        self.assertTree(m.mnt, want, "ctime_nodes", "new box rebuilt from the migrated nodes")
        self.assertNotMigrated(m, off, "new box")
        self.assertVerifyClean(m, "new box rebuilt from the migrated nodes")
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "the new box")

    def test_rebuild_from_old_nodes_then_a_second_box(self):
        self.nodes = Nodes(self.area)
        self.nodes.copy_data()
        self.nodes.start()
        inodes, names = self.inodes_and_names(self.manifest)

        m, off = self.mount("box-b", replicated=True)  # an empty STATE_DIR
        log = self.log_since(m, off)
        found = REBUILT.findall(log)
        self.assertEqual(len(found), 1, "the first new box did not rebuild from the nodes:\n"
                         + log)
        self.assertEqual((int(found[0][0]), int(found[0][1] or 0)), (inodes, names),
                         "(inodes, directory entries of format 1) rebuilt from the nodes")
        self.assertTree(m.mnt, self.manifest, "ctime_nodes", "box rebuilt from format-1 nodes")
        self.assertMigratedOnce(m, off, "box rebuilt from format-1 nodes")
        self.wait_outbox_empty(m.mnt)
        self.assertVerifyClean(m, "box rebuilt from format-1 nodes")
        want = self.change_tree(m.mnt)
        self.wait_outbox_empty(m.mnt)
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "the box rebuilt from format-1 nodes")

        # A second new box: the nodes now hold the migrated store and the new writes.
        m, off = self.mount("box-c", replicated=True)
        log = self.log_since(m, off)
        found = REBUILT.findall(log)
        self.assertEqual(len(found), 1, "the second new box did not rebuild:\n" + log)
        self.assertEqual(found[0][1], "", "the second new box found directory entries of format 1 "
                         "on the nodes after the migration:\n" + log)
        self.assertTree(m.mnt, want, "ctime_nodes", "second box rebuilt from migrated nodes")
        self.assertNotMigrated(m, off, "second box")
        self.assertVerifyClean(m, "second box")
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "the second box")

    def test_format1_box_upgraded_after_another_box_changed_the_store(self):
        # Two boxes share the store. Box B is upgraded first: it rebuilds from the old nodes,
        # migrates them and goes on working (a delivery, a message read, deletes). Then box A,
        # whose STATE_DIR is still of format 1, is upgraded: its migration must not undo what B
        # did since (deleted messages must not return, moves must stay).
        self.nodes = Nodes(self.area)
        self.nodes.copy_data()
        self.nodes.start()
        m, off = self.mount("box-b", replicated=True)
        self.assertTree(m.mnt, self.manifest, "ctime_nodes", "box B rebuilt from format-1 nodes")
        want = self.change_tree(m.mnt)
        self.wait_outbox_empty(m.mnt)
        self.unmount(m)

        self.copy_state("state-nodes")
        m, off = self.mount("state-nodes", replicated=True)
        self.assertMigratedOnce(m, off, "box A (format 1) after box B")
        self.assertTree(m.mnt, want, "ctime_nodes", "box A (format 1) upgraded after box B "
                        "changed the store")
        self.wait_outbox_empty(m.mnt)
        self.assertVerifyClean(m, "box A")
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "box A")

        m, off = self.mount("box-c", replicated=True)
        self.assertTree(m.mnt, want, "ctime_nodes", "a new box after both upgrades")
        self.unmount(m)
        self.assertLogClean(self.log_since(m, off), "a new box after both upgrades")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + sys.argv[1:], verbosity=2)
