#!/usr/bin/env python3
"""cofferfs mounted on three real coffer-node processes (suite 'mount').

Deterministic checks of what a sysadmin sees: `cofferctl status` by mount point and by
STATE_DIR, fsync/close/link failing with EAGAIN (and the link rolled back) while two of three
nodes are down, success once they return, `cofferctl verify`, kill -9 of cofferfs with the outbox
draining after the remount, and a new box rebuilding the tree from the nodes into an empty
STATE_DIR (and refusing to when too few nodes answer). Everything on 127.0.0.1, stopped by PID.
"""
import errno
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import COFFERFS, KEYTOOL, Mount, TempArea, free_port, wait_port  # noqa: E402

NODE = os.environ.get("COFFER_NODE", "coffer-node")
CTL = os.environ.get("COFFERCTL", "cofferctl")


class Nodes:
    def __init__(self, area, count=3):
        self.area = area
        self.procs = {}
        self.ports = {}
        for who in ["box", "admin"] + ["n%d" % i for i in range(1, count + 1)]:
            subprocess.run([KEYTOOL, "curve-keygen", "--out", area.path(who)], check=True,
                           stdout=subprocess.DEVNULL)
        with open(area.path("box.key")) as src, open(area.path("allowed"), "w") as f:
            f.write(src.read())
        lines = ['box_id = 1', 'secret_key_file = "%s"' % area.path("box.key_secret"),
                 'write_timeout_ms = 1500', 'read_timeout_ms = 1000', 'admin_timeout_ms = 2000']
        for i in range(1, count + 1):
            name = "n%d" % i
            self.ports[name] = free_port()
            os.makedirs(area.path(name + "-data"), exist_ok=True)
            with open(area.path(name + ".toml"), "w") as f:
                f.write('node_id = "%s"\ndata_dir = "%s"\nlisten = ["tcp://127.0.0.1:%d"]\n'
                        'secret_key_file = "%s"\nallowed_keys_file = "%s"\nadmin_key_file = "%s"\n'
                        % (name, area.path(name + "-data"), self.ports[name],
                           area.path(name + ".key_secret"), area.path("allowed"),
                           area.path("admin.key")))
            lines += ["", "[[node]]", 'id = "%s"' % name,
                      'endpoint = "tcp://127.0.0.1:%d"' % self.ports[name],
                      'public_key_file = "%s"' % area.path(name + ".key")]
        self.config = area.path("replicator.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        for i in range(1, count + 1):
            self.start("n%d" % i)

    def start(self, name):
        log = open(self.area.path(name + ".log"), "ab")
        self.procs[name] = subprocess.Popen([NODE, "--config", self.area.path(name + ".toml")],
                                            stdout=log, stderr=log)
        wait_port(self.ports[name], timeout=10)

    def kill(self, name):
        p = self.procs.pop(name, None)
        if p:
            p.kill()
            p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.kill(name)


def ctl(*args, timeout=60):
    return subprocess.run([CTL] + list(args), capture_output=True, text=True, timeout=timeout)


class NodesMountTest(unittest.TestCase):
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

    def mount(self, state_name, options=""):
        opts = "replicator=" + self.nodes.config
        if options:
            opts += "," + options
        m = Mount(self.area.path(state_name), self.area.path("mnt-" + state_name),
                  self.area.key, opts)
        self.mounts.append(m)
        return m.start(timeout=30)

    def wait_outbox_empty(self, target, limit=30):
        deadline = time.time() + limit
        out = ""
        while time.time() < deadline:
            r = ctl("status", target)
            out = r.stdout
            if r.returncode == 0 and " outbox=0 " in out:
                return out
            time.sleep(0.2)
        self.fail("outbox did not drain: " + out)

    def test_contract_status_verify_crash_and_rebuild(self):
        m = self.mount("state")
        md = os.path.join(m.mnt, "alice")
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(md, sub))
        sent = {}
        for i in range(20):
            body = (b"Message-ID: <%d@x>\n\n" % i) + os.urandom(100 + 9000 * (i % 9)).hex().encode()
            tmp = os.path.join(md, "tmp", "m%d" % i)
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, os.path.join(md, "new", "m%d" % i))
            os.unlink(tmp)
            sent["m%d" % i] = body

        # status by mount point and by STATE_DIR
        r = ctl("status", m.mnt)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("3 of 3 up", r.stdout)
        self.assertIn("state       healthy", r.stdout)
        r2 = ctl("status", m.state)
        self.assertEqual(r2.returncode, 0, r2.stderr)
        r = ctl("verify", m.mnt)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("the tree matches the storage nodes", r.stdout)

        # two of three nodes down: the durability points fail with EAGAIN, the link is undone
        self.nodes.kill("n1")
        self.nodes.kill("n2")
        tmp = os.path.join(md, "tmp", "late")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        os.write(fd, b"Message-ID: <late@x>\n\nlate\n")
        with self.assertRaises(OSError) as cm:
            os.fsync(fd)
        self.assertEqual(cm.exception.errno, errno.EAGAIN)
        with self.assertRaises(OSError) as cm:
            os.close(fd)
        self.assertEqual(cm.exception.errno, errno.EAGAIN)
        with self.assertRaises(OSError) as cm:
            os.link(tmp, os.path.join(md, "new", "late"))
        self.assertEqual(cm.exception.errno, errno.EAGAIN)
        self.assertFalse(os.path.exists(os.path.join(md, "new", "late")))
        r = ctl("status", m.mnt)
        self.assertIn("DEGRADED", r.stdout)
        self.assertIn("1 of 3 up", r.stdout)
        self.assertIn("DEGRADED", m.read_log())

        # the nodes return: the same delivery succeeds and the outbox drains
        self.nodes.start("n1")
        self.nodes.start("n2")
        self.wait_outbox_empty(m.mnt)
        fd = os.open(tmp, os.O_WRONLY)
        os.fsync(fd)
        os.close(fd)
        os.link(tmp, os.path.join(md, "new", "late"))
        os.unlink(tmp)
        sent["late"] = b"Message-ID: <late@x>\n\nlate\n"

        # kill -9 of cofferfs in the middle of deliveries; the remount drains the outbox
        pid_before = m.pid
        for i in range(5):
            with open(os.path.join(md, "new", "k%d" % i), "wb") as f:
                f.write(b"kill %d\n" % i)
                f.flush()
                os.fsync(f.fileno())
            sent["k%d" % i] = b"kill %d\n" % i
        m.kill9()
        m = self.mount("state")
        self.assertNotEqual(m.pid, pid_before)
        self.wait_outbox_empty(m.state)
        self.assertEqual(ctl("verify", m.state).returncode, 0)
        m.stop()

        # a new box: key, node list, empty STATE_DIR
        fresh = self.mount("fresh")
        got = {}
        for name in os.listdir(os.path.join(fresh.mnt, "alice", "new")):
            with open(os.path.join(fresh.mnt, "alice", "new", name), "rb") as f:
                got[name] = f.read()
        self.assertEqual(got, sent)
        self.assertEqual(os.listdir(os.path.join(fresh.mnt, "alice", "tmp")), [])
        self.assertIn("rebuild: index rebuilt from the storage nodes", fresh.read_log())
        self.assertEqual(ctl("verify", fresh.mnt).returncode, 0)
        fresh.stop()

        # too few nodes to be sure: refuse (exit 69), do not start an empty store
        self.nodes.kill("n2")
        self.nodes.kill("n3")
        r = subprocess.run([COFFERFS, self.area.path("fresh2"), self.area.path("mnt-fresh"), "-f",
                            "-o", "keyfile=%s,replicator=%s" % (self.area.key, self.nodes.config)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 69, r.stderr)
        self.assertIn("storage nodes", r.stderr)
        self.assertFalse(os.path.ismount(self.area.path("mnt-fresh")))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + sys.argv[1:], verbosity=2)
