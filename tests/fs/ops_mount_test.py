#!/usr/bin/env python3
"""cofferfs for operators (suite 'mount'): a non-empty mount point is refused unless -o nonempty;
-V/--version; in the background the reason a mount failed reaches the terminal and log_file=
gets every line; a passphrase file others can read is warned about; on three real nodes,
`cofferctl status` tells the truth (healthy 0 / degraded 1 with a node down / not serving 2
below W, also as --json and from any path inside the mount), `cofferctl fs PATH scrub` shows as
a manual scrub, and the metrics listener has the per-operation histograms and node gauges.
Everything on 127.0.0.1, stopped by PID, always unmounted."""
import json
import os
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import COFFERFS, KEYTOOL, Mount, TempArea, free_port  # noqa: E402
from nodes_mount_test import CTL, Nodes, ctl  # noqa: E402


def deliver(maildir, name, body):
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.link(tmp, os.path.join(maildir, "new", name))
    os.unlink(tmp)


class LocalOpsTest(unittest.TestCase):
    def setUp(self):
        self.area = TempArea()

    def tearDown(self):
        self.area.close()

    def test_version(self):
        for flag in ("-V", "--version"):
            r = subprocess.run([COFFERFS, flag], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"^cofferfs \d+\.\d+\.\d+")

    def test_non_empty_mount_point_is_refused_unless_nonempty(self):
        mnt = self.area.path("mnt")
        os.makedirs(mnt)
        with open(os.path.join(mnt, "1700000000.stray"), "w") as f:
            f.write("delivered while coffer was down\n")
        r = subprocess.run([COFFERFS, self.area.path("state"), mnt, "-f", "-o",
                            "keyfile=" + self.area.key], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 73, r.stderr)
        self.assertIn("is not empty (1700000000.stray)", r.stderr)
        self.assertFalse(os.path.ismount(mnt))
        m = Mount(self.area.path("state"), mnt, self.area.key, "nonempty").start()
        try:
            self.assertTrue(os.path.ismount(mnt))
            self.assertEqual(os.listdir(mnt), [])  # the mount hides the bare directory
        finally:
            m.stop()

    def test_background_logging(self):
        mnt = self.area.path("mnt")
        os.makedirs(mnt)
        log = self.area.path("cofferfs.log")
        # A failed mount in the background: the reason reaches whoever ran it, and the log file.
        other = self.area.path("other.key")
        subprocess.run([KEYTOOL, "init", "-k", other, "--no-passphrase"], check=True,
                       capture_output=True)
        m = Mount(self.area.path("state"), mnt, self.area.key).start()
        m.stop()
        r = subprocess.run([COFFERFS, self.area.path("state"), mnt, "-o",
                            "keyfile=%s,log_file=%s" % (other, log)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("another key", r.stderr)
        with open(log) as f:
            self.assertIn("another key", f.read())
        # A good mount in the background: lines after detaching go to log_file.
        r = subprocess.run([COFFERFS, self.area.path("state"), mnt, "-o",
                            "keyfile=%s,log_file=%s" % (self.area.key, log)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertTrue(os.path.ismount(mnt))
            with open(os.path.join(mnt, "x"), "w") as f:
                f.write("x")
        finally:
            subprocess.run(["fusermount3", "-u", mnt], check=False)
        deadline = time.time() + 30
        text = ""
        while time.time() < deadline:
            with open(log) as f:
                text = f.read()
            if "clean shutdown" in text:
                break
            time.sleep(0.1)
        self.assertIn("mounted %s on %s" % (self.area.path("state"), mnt), text)
        self.assertIn("clean shutdown, everything committed", text)

        # Without log_file: cofferfs lets go of stderr once mounted (this call returns although
        # it reads stderr to the end), and the lines go to syslog or, without /dev/log, to
        # STATE_DIR/cofferfs.log.
        r = subprocess.run([COFFERFS, self.area.path("state"), mnt, "-o",
                            "keyfile=" + self.area.key], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        subprocess.run(["fusermount3", "-u", mnt], check=False)
        if not os.path.exists("/dev/log"):
            fallback = os.path.join(self.area.path("state"), "cofferfs.log")
            self.assertIn("logging to " + fallback, r.stderr)
            deadline = time.time() + 30
            while time.time() < deadline:
                with open(fallback) as f:
                    if "clean shutdown" in f.read():
                        break
                time.sleep(0.1)
            with open(fallback) as f:
                self.assertIn("clean shutdown, everything committed", f.read())

    def test_loose_passfile_is_warned_about(self):
        pw = self.area.path("pass")
        with open(pw, "w") as f:
            f.write("a passphrase\n")
        os.chmod(pw, 0o644)
        key = self.area.path("pw.key")
        r = subprocess.run([KEYTOOL, "init", "-k", key, "--passfile", pw, "--scrypt-logn", "10"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("passfile %s is accessible to group and others" % pw, r.stderr)
        m = Mount(self.area.path("state"), self.area.path("mnt"), key, "passfile=" + pw).start()
        try:
            self.assertIn("passfile %s is accessible to group and others (mode 0644)" % pw,
                          m.read_log())
        finally:
            m.stop()


class NodesOpsTest(unittest.TestCase):
    def setUp(self):
        self.area = TempArea()
        self.nodes = Nodes(self.area)
        self.metrics_port = free_port()
        self.m = Mount(self.area.path("state"), self.area.path("mnt"), self.area.key,
                       "replicator=%s,metrics_listen=127.0.0.1:%d"
                       % (self.nodes.config, self.metrics_port))
        self.m.start(timeout=30)

    def tearDown(self):
        try:
            self.m.stop()
        finally:
            self.nodes.stop_all()
            self.area.close()

    def status(self, *args):
        return ctl("status", "--scrub-record", self.area.path("no-record"), *args)

    def test_status_exit_codes_json_manual_scrub_and_metrics(self):
        md = os.path.join(self.m.mnt, "alice", "Maildir")
        for i in range(5):
            deliver(md, "m%d" % i, b"Subject: %d\n\nbody\n" % i)
        # Healthy, from the mount point and from a path deep inside it.
        r = self.status(self.m.mnt)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("status      healthy", r.stdout)
        r = self.status("--json", os.path.join(md, "new"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["status"], "healthy")
        self.assertEqual(sorted(j["nodes"]), ["n1", "n2", "n3"])
        self.assertEqual(j["fields"]["nodes_up"], 3)

        # A scrub asked for through the mount shows as the last (manual) scrub.
        r = ctl("fs", md, "scrub")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("checked ", r.stdout)
        r = self.status(self.m.mnt)
        self.assertRegex(r.stdout, r"last scrub  \d{4}-\d\d-\d\d .* UTC \(manual\): checked \d+")

        # Metrics: FUSE operation histograms (fsync and link are durable waits) and nodes.
        text = ctl("metrics", "127.0.0.1:%d" % self.metrics_port).stdout
        self.assertIn('coffer_fs_operation_seconds_count{op="fsync"} 5', text)
        self.assertIn('coffer_fs_operation_seconds_count{op="link"} 5', text)
        self.assertIn('coffer_fs_node_up{node="n2"} 1', text)
        self.assertIn("coffer_fs_nodes_up 3", text)
        self.assertIn("coffer_fs_outbox_objects 0", text)

        # One node down: degraded (exit 1) although nothing is under-replicated yet.
        self.nodes.kill("n2")
        r = self.status(self.m.mnt)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("status      DEGRADED", r.stdout)
        self.assertIn("  - node n2 down", r.stdout)
        j = json.loads(self.status("--json", self.m.mnt).stdout)
        self.assertEqual((j["status"], j["exit_code"]), ("degraded", 1))
        self.assertIn("node n2 down", j["reasons"])
        text = ctl("metrics", "127.0.0.1:%d" % self.metrics_port).stdout
        self.assertIn('coffer_fs_node_up{node="n2"} 0', text)

        # Two down with degraded=fail: deliveries would fail: not serving (exit 2).
        self.nodes.kill("n3")
        r = self.status(self.m.mnt)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("NOT SERVING", r.stdout)
        self.nodes.start("n2")
        self.nodes.start("n3")
        deadline = time.time() + 30
        while time.time() < deadline and self.status(self.m.mnt).returncode != 0:
            time.sleep(0.3)
        self.assertEqual(self.status(self.m.mnt).returncode, 0)
        # cofferfs gone: not serving.
        self.m.stop()
        r = self.status(self.area.path("state"))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)


if __name__ == "__main__":
    os.environ["PATH"] = "/usr/sbin:/sbin:" + os.environ.get("PATH", "/usr/bin:/bin")
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("needs root and /dev/fuse")
        sys.exit(1)
    unittest.main(verbosity=2)
