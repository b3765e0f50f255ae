#!/usr/bin/env python3
"""coffer-pop3d for operators (suite 'net'): start-up checks of the passwd-file (malformed
lines, unknown schemes, a file the run-as user cannot read, in --check-config and at start-up),
SIGHUP reloads (log level, passwd-file, TLS certificate) that say what changed, the Prometheus
metrics listener, and --version. Real server on 127.0.0.1, stopped by PID."""
import hashlib
import os
import poplib
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pop3d_harness as h  # noqa: E402


def wait_for(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def peer_cert_sha256(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.read().decode()


def value(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


class OpsTest(unittest.TestCase):
    def setUp(self):
        self.site = h.Site()
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        self.site.cleanup()

    def run_pop3d(self, *args):
        return subprocess.run([h.BINARY] + list(args), capture_output=True, timeout=30)

    def test_version(self):
        out = self.run_pop3d("--version")
        self.assertEqual(out.returncode, 0)
        self.assertRegex(out.stdout.decode(), r"^coffer-pop3d \d+\.\d+\.\d+")

    def test_passwd_file_problems_are_reported_at_start_up(self):
        with open(self.site.passwd, "a") as f:
            f.write("broken-line-without-colon\n")
            f.write("eve@example.org:{MD4}abcdef::::::\n")
        # --check-config names both lines (and still passes: the other users can log in).
        out = self.run_pop3d("--listen", "127.0.0.1:%d" % h.free_port(), "--passwd-file",
                             self.site.passwd, "--check-config")
        err = out.stderr.decode()
        self.assertEqual(out.returncode, 0, err)
        self.assertIn("passwd:5: malformed line", err)
        self.assertIn("passwd:6: user eve@example.org: unknown password scheme {MD4}", err)
        # At start-up the same lines reach the log before any login.
        server = h.Server(self.site, tls=False)
        self.servers.append(server)
        log = server.log_text()
        self.assertIn("malformed line", log)
        self.assertIn("unknown password scheme {MD4}", log)

    def test_passwd_file_unreadable_for_the_run_as_user(self):
        os.chmod(self.site.passwd, 0o600)  # root's only; the server runs as nobody
        port = h.free_port()
        out = self.run_pop3d("--listen", "127.0.0.1:%d" % port, "--passwd-file",
                             self.site.passwd, "--user", "nobody", "--check-config")
        self.assertEqual(out.returncode, 78, out.stderr)
        self.assertIn(b"user nobody cannot read " + self.site.passwd.encode(), out.stderr)
        out = self.run_pop3d("--listen", "127.0.0.1:%d" % port, "--passwd-file",
                             self.site.passwd, "--user", "nobody")
        self.assertEqual(out.returncode, 77, out.stderr)
        self.assertIn(b"cannot read", out.stderr)
        # Readable by the user: fine.
        os.chmod(self.site.passwd, 0o644)
        out = self.run_pop3d("--listen", "127.0.0.1:%d" % port, "--passwd-file",
                             self.site.passwd, "--user", "nobody", "--check-config")
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_sighup_reloads_log_level_passwd_file_and_certificate(self):
        server = h.Server(self.site)  # the harness logs at debug
        self.servers.append(server)
        before = peer_cert_sha256(server.tls_port)
        # New certificate and key in place, a user added, the log level raised.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost2", "-keyout", self.site.key, "-out",
                        self.site.cert], check=True, capture_output=True)
        with open(self.site.passwd, "a") as f:
            f.write("zed@example.org:{SHA512-CRYPT}%s::::::\n" % h.sha512_crypt("zed-pw"))
        text = open(server.config).read().replace('level = "debug"', 'level = "info"')
        with open(server.config, "w") as f:
            f.write(text)
        os.kill(server.proc.pid, signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "reload: passwd-file" in server.log_text()),
                        server.log_text())
        log = server.log_text()
        self.assertIn("reload: log level debug -> info", log)
        self.assertIn("reload: TLS certificate %s reloaded" % self.site.cert, log)
        self.assertIn("reload: passwd-file %s: 5 users" % self.site.passwd, log)
        self.assertTrue(server.alive(), "SIGHUP must not stop the server")
        self.assertNotEqual(peer_cert_sha256(server.tls_port), before)
        # The new user logs in.
        pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
        pop.user("zed@example.org")
        self.assertTrue(pop.pass_("zed-pw").startswith(b"+OK"))
        pop.quit()
        # A broken config is refused, the server keeps running with the old settings.
        with open(server.config, "a") as f:
            f.write("[limits]\nno_such_key = 1\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "reload failed" in server.log_text()))
        self.assertTrue(server.alive())

    def test_metrics(self):
        port = h.free_port()
        server = h.Server(self.site, tls=False, args=("--metrics-listen", "127.0.0.1:%d" % port))
        self.servers.append(server)
        self.site.deliver("alice@example.org", b"Subject: x\n\n" + b"y" * 1000 + b"\n")
        pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
        pop.user("alice@example.org")
        pop.pass_(h.PASSWORDS["alice@example.org"])
        pop.retr(1)
        pop.quit()
        bad = poplib.POP3("127.0.0.1", server.port, timeout=10)
        bad.user("alice@example.org")
        with self.assertRaises(poplib.error_proto):
            bad.pass_("wrong")
        bad.close()
        self.assertTrue(wait_for(lambda: value(metrics(port), "coffer_pop3d_login_failures_total") == 1))
        text = metrics(port)
        self.assertIn("# TYPE coffer_pop3d_logins_total counter", text)
        self.assertEqual(value(text, "coffer_pop3d_logins_total"), 1)
        self.assertGreaterEqual(value(text, "coffer_pop3d_sessions_total"), 2)
        self.assertGreaterEqual(value(text, "coffer_pop3d_retrieved_bytes_total"), 1000)
        self.assertEqual(value(text, "coffer_pop3d_retrieved_messages_total"), 1)
        self.assertIn('coffer_pop3d_login_seconds_bucket{le="+Inf"} 2', text)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("needs root (run-as checks)")
        sys.exit(1)
    unittest.main(verbosity=2)
