#!/usr/bin/env python3
"""The health check of an access box (health_listen) on a real mount (suite 'mount').

cofferfs on three real coffer-node processes (R=3, W=2): GET /health answers 200 while the box
can take mail, 503 naming the nodes within seconds of two of them being killed, 200 again once
they are back, with one log line per change; HEAD, 404, 405 and a malformed request; a
read-only mount answers 503; a local-only mount sharing its listener with the metrics answers
both; an invalid health_listen, a config file with one, and a port in use make cofferfs exit with
a clear error and its sysexits code before the STATE_DIR is touched. Everything on 127.0.0.1,
stopped by PID.
"""
import http.client
import os
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import COFFERFS, Mount, TempArea, free_port  # noqa: E402
from nodes_mount_test import Nodes, ctl  # noqa: E402


def request(port, method="GET", path="/health"):
    """(status, body) of one request to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def raw(port, data):
    """Sends bytes, returns the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out.decode(errors="replace")
            out += chunk


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


class HealthMountTest(unittest.TestCase):
    def setUp(self):
        self.area = TempArea()
        self.nodes = None
        self.mounts = []

    def tearDown(self):
        for m in self.mounts:
            try:
                m.stop()
            except Exception:  # noqa: BLE001
                pass
        if self.nodes:
            self.nodes.stop_all()
        self.area.close()

    def mount(self, state_name, options, nodes=True):
        opts = options
        if nodes:
            opts = "replicator=" + self.nodes.config + "," + options
        m = Mount(self.area.path(state_name), self.area.path("mnt-" + state_name),
                  self.area.key, opts)
        self.mounts.append(m)
        return m.start(timeout=30)

    def full_log(self, m):
        with open(m.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_count(self, m, text, n):
        """How often `text` is in the log, once it is there `n` times or 3 s passed (the line
        follows the answer's change)."""
        deadline = time.time() + 3
        while self.full_log(m).count(text) < n and time.time() < deadline:
            time.sleep(0.05)
        return self.full_log(m).count(text)

    def wait_health(self, port, status, *parts, limit=20):
        """Polls GET /health until it answers `status` with every one of `parts`."""
        deadline = time.time() + limit
        got = None
        while time.time() < deadline:
            try:
                got = request(port)
                if got[0] == status and all(p in got[1] for p in parts):
                    return got[1]
            except OSError as e:
                got = e
            time.sleep(0.2)
        self.fail("no %d %r within %d s; last answer: %r" % (status, parts, limit, got))

    def test_health_follows_the_nodes(self):
        self.nodes = Nodes(self.area)
        port = free_port()
        m = self.mount("state", "health_listen=127.0.0.1:%d" % port)
        body = self.wait_health(port, 200, "ok state=healthy")
        self.assertEqual(body, "ok state=healthy nodes_up=3/3 W=2 outbox=0\n")
        self.assertEqual(request(port, "HEAD"), (200, ""))
        self.assertEqual(request(port, "GET", "/metrics")[0], 404)  # health only here
        self.assertEqual(request(port, "POST")[0], 405)
        answer = raw(port, b"GET /health HTTP/1.0\r\nno colon\r\n\r\n")
        self.assertTrue(answer.startswith("HTTP/1.0 400 Bad Request\r\n"), answer)
        self.assertIn("malformed header line", answer)
        answer = raw(port, b"GET /health HTTP/1.0\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        self.assertTrue(answer.startswith("HTTP/1.0 400 Bad Request\r\n"), answer)
        self.assertEqual(request(port)[0], 200)
        deliver(os.path.join(m.mnt, "alice"), "m1", b"Subject: one\n\nbody\n")
        self.assertIn("health check on http://127.0.0.1:%d/health" % port, self.full_log(m))
        self.assertEqual(self.log_count(m, "health check now answers 200", 1), 1)

        # Two of three nodes down with W=2: 503 within seconds, naming them.
        self.nodes.kill("n1")
        self.nodes.kill("n2")
        start = time.time()
        body = self.wait_health(port, 503, "node n1 down", "node n2 down")
        self.assertLess(time.time() - start, 10)
        self.assertTrue(body.startswith("unavailable state=not_serving nodes_up=1/3 W=2 "), body)
        self.assertIn("only 1 of W=2 nodes up: every delivery fails with EAGAIN", body)
        self.assertEqual(request(port, "HEAD"), (503, ""))
        # cofferctl status says the same from the same facts.
        r = ctl("status", m.mnt)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        time.sleep(3)  # several evaluations: still one line for the change
        self.assertEqual(request(port)[0], 503)
        log = self.full_log(m)
        self.assertEqual(log.count("health check now answers 503"), 1, log[-3000:])
        self.assertIn("health check now answers 503: unavailable state=not_serving", log)

        # They come back: 200 again, logged once.
        self.nodes.start("n1")
        self.nodes.start("n2")
        self.wait_health(port, 200, "nodes_up=3/3", limit=30)
        self.assertEqual(self.log_count(m, "health check now answers 200", 2), 2)
        deliver(os.path.join(m.mnt, "alice"), "m2", b"Subject: two\n\nbody\n")

        # Unmounted: 503 "unmounting" in the log, then nothing listens.
        self.assertEqual(m.stop(), 0)
        log = self.full_log(m)
        self.assertIn("health check now answers 503: unavailable state=unmounting", log)
        with self.assertRaises(OSError):
            request(port)

    def test_read_only_mount_answers_503(self):
        self.nodes = Nodes(self.area)
        m = self.mount("state", "")
        deliver(os.path.join(m.mnt, "alice"), "m1", b"Subject: one\n\nbody\n")
        self.assertEqual(m.stop(), 0)
        port = free_port()
        ro = self.mount("state", "ro,health_listen=127.0.0.1:%d" % port)
        body = self.wait_health(port, 503, "state=read_only")
        self.assertEqual(body, "unavailable state=read_only nodes_up=3/3 W=2 outbox=0; "
                               "read-only mount: takes no mail\n")
        # cofferctl status: a read-only mount serves what it was asked to serve.
        r = ctl("status", ro.mnt)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(
            self.log_count(ro, "health check now answers 503: unavailable state=read_only", 1), 1)

    def test_local_mount_shares_the_metrics_listener(self):
        port = free_port()
        m = self.mount("local", "metrics_listen=127.0.0.1:%d,health_listen=127.0.0.1:%d"
                       % (port, port), nodes=False)
        body = self.wait_health(port, 200)
        self.assertEqual(body, "ok state=healthy storage=local\n")
        status, text = request(port, "GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("coffer_fs_play_dead", text)
        log = self.full_log(m)
        self.assertIn("metrics on http://127.0.0.1:%d/metrics" % port, log)
        self.assertIn("health check on http://127.0.0.1:%d/health" % port, log)
        # play-dead eio: the box fails every operation: 503, and back.
        r = ctl("fs", m.mnt, "play-dead", "eio")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.wait_health(port, 503, "play-dead eio")
        r = ctl("fs", self.area.path("local"), "play-dead", "off")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.wait_health(port, 200, "storage=local")

    def run_cofferfs(self, state, *options):
        mnt = self.area.path("mnt-bad")
        os.makedirs(mnt, exist_ok=True)
        opts = ",".join(("keyfile=" + self.area.key,) + options)
        r = subprocess.run([COFFERFS, state, mnt, "-f", "-o", opts], capture_output=True,
                           text=True, timeout=60)
        self.assertFalse(os.path.ismount(mnt))
        return r

    def test_invalid_health_listen_is_refused_before_anything_changes(self):
        state = self.area.path("never")
        for value in ("localhost:9404", "127.0.0.1", "127.0.0.1:99999", "::1:9404"):
            r = self.run_cofferfs(state, "health_listen=" + value)
            self.assertEqual(r.returncode, 64, r.stderr)  # EX_USAGE, like every bad -o option
            self.assertIn("option health_listen=%s: address" % value, r.stderr)
            self.assertIn("numeric HOST:PORT", r.stderr)
            self.assertFalse(os.path.exists(state))

        conf = self.area.path("cofferfs.toml")
        with open(conf, "w") as f:
            f.write('health_listen = "mail.example.org:80"\n')
        r = self.run_cofferfs(state, "config=" + conf)
        self.assertEqual(r.returncode, 78, r.stderr)  # EX_CONFIG
        self.assertIn("cofferfs.toml", r.stderr)
        self.assertIn("key 'health_listen'", r.stderr)
        self.assertFalse(os.path.exists(state))

        # A port in use: EX_UNAVAILABLE, said before the store is opened.
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            r = self.run_cofferfs(state, "health_listen=127.0.0.1:%d" % port)
        self.assertEqual(r.returncode, 69, r.stderr)
        self.assertIn("cannot listen for health checks on 127.0.0.1:%d" % port, r.stderr)
        self.assertIn("Address already in use", r.stderr)
        self.assertFalse(os.path.exists(state))


if __name__ == "__main__":
    os.environ["PATH"] = "/usr/sbin:/sbin:" + os.environ.get("PATH", "/usr/bin:/bin")
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("needs root and /dev/fuse")
        sys.exit(1)
    unittest.main(verbosity=2)
