"""coffer-pop3d against real clients from Debian: Python poplib, curl and fetchmail, over plain
POP3, STLS and implicit TLS, with a certificate made by the test. Also the run-as option."""

import os
import poplib
import pwd
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pop3d_harness as h  # noqa: E402

ALICE = "alice@example.org"


class ClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.site = h.Site()
        try:
            cls.server = h.Server(cls.site)
        except Exception:
            cls.site.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        if rc != 0:
            print(cls.server.log_text())
        cls.site.cleanup()

    def setUp(self):
        # A fresh maildrop per test for the users the test uses.
        self.expected = {}
        for user in (ALICE, "bob@example.org"):
            md = self.site.maildir(user)
            if os.path.isdir(md):
                subprocess.run(["rm", "-rf", md], check=True)
            self.expected[user] = [h.wire_form(m) for m in h.sample_messages()]
            for m in h.sample_messages():
                self.site.deliver(user, m)

    def check_poplib_session(self, p, user):
        self.assertTrue(p.getwelcome().startswith(b"+OK"))
        caps = p.capa()
        for c in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "IMPLEMENTATION"):
            self.assertIn(c, caps)
        p.user(user)
        p.pass_(h.PASSWORDS[user])
        count, size = p.stat()
        expected = self.expected[user]
        self.assertEqual(count, len(expected))
        self.assertEqual(size, sum(len(m) for m in expected))
        _, listing, _ = p.list()
        self.assertEqual([int(x.split()[1]) for x in listing], [len(m) for m in expected])
        _, uidls, _ = p.uidl()
        uids = [x.split()[1] for x in uidls]
        self.assertEqual(len(set(uids)), count)
        for i, want in enumerate(expected, 1):
            _, lines, octets = p.retr(i)
            got = b"".join(line + b"\r\n" for line in lines)
            self.assertEqual(got, want, "message %d" % i)
        _, top, _ = p.top(1, 1)
        self.assertEqual(top, [b"From: a@example.org", b"Subject: bare LF", b"", b"Hello"])
        p.dele(2)
        p.quit()
        return uids

    def test_poplib_plain(self):
        uids = self.check_poplib_session(poplib.POP3("127.0.0.1", self.server.port, timeout=30),
                                         ALICE)
        left = self.site.messages(ALICE)
        self.assertEqual(len(left), len(self.expected[ALICE]) - 1)
        self.assertNotIn(uids[1].decode(), left)
        # Retrieved messages moved to cur/ with the S flag.
        self.assertEqual(os.listdir(os.path.join(self.site.maildir(ALICE), "new")), [])
        for n in os.listdir(os.path.join(self.site.maildir(ALICE), "cur")):
            self.assertTrue(n.endswith(":2,S"), n)
        # UIDLs are stable across sessions.
        p = poplib.POP3("127.0.0.1", self.server.port, timeout=30)
        p.user(ALICE)
        p.pass_(h.PASSWORDS[ALICE])
        _, uidls, _ = p.uidl()
        self.assertEqual([x.split()[1] for x in uidls], uids[:1] + uids[2:])
        p.quit()

    def test_poplib_stls(self):
        p = poplib.POP3("127.0.0.1", self.server.port, timeout=30)
        self.assertIn("STLS", p.capa())
        p.stls(context=self.site.client_context())
        self.assertNotIn("STLS", p.capa())
        self.check_poplib_session(p, ALICE)

    def test_poplib_implicit_tls(self):
        p = poplib.POP3_SSL("127.0.0.1", self.server.tls_port, timeout=30,
                            context=self.site.client_context())
        self.check_poplib_session(p, "bob@example.org")

    def test_auth_plain_sasl(self):
        p = poplib.POP3("127.0.0.1", self.server.port, timeout=30)
        import base64
        token = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + h.PASSWORDS[ALICE].encode())
        self.assertTrue(p._shortcmd("AUTH PLAIN " + token.decode()).startswith(b"+OK"))
        self.assertEqual(p.stat()[0], len(self.expected[ALICE]))
        p.quit()

    def curl(self, url, *extra):
        user = "%s:%s" % (ALICE, h.PASSWORDS[ALICE])
        out = subprocess.run(["curl", "-sS", "--max-time", "60", "-u", user,
                              "--cacert", self.site.cert] + list(extra) + [url],
                             capture_output=True, timeout=90)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        return out.stdout

    def test_curl_plain_stls_and_pop3s(self):
        base = "pop3://127.0.0.1:%d/" % self.server.port
        listing = self.curl(base)
        self.assertEqual(listing.decode().split("\r\n")[0], "1 %d" % len(self.expected[ALICE][0]))
        self.assertEqual(self.curl(base + "1"), self.expected[ALICE][0])
        # STLS (curl upgrades with --ssl-reqd)
        self.assertEqual(self.curl(base + "5", "--ssl-reqd"), self.expected[ALICE][4])
        # implicit TLS
        tls = "pop3s://localhost:%d/" % self.server.tls_port
        self.assertEqual(self.curl(tls + "3", "--resolve",
                                   "localhost:%d:127.0.0.1" % self.server.tls_port),
                         self.expected[ALICE][2])
        # A custom command: DELE via curl, applied at QUIT.
        self.curl(base + "6", "-X", "DELE", "-I")
        self.assertEqual(len(self.site.messages(ALICE)), len(self.expected[ALICE]) - 1)

    def fetchmail(self, mode, keep=False):
        out_dir = os.path.join(self.site.dir, "fetched-" + mode)
        os.makedirs(out_dir, exist_ok=True)
        rc = os.path.join(self.site.dir, "fetchmailrc-" + mode)
        opts = {
            "plain": "sslproto ''",  # no opportunistic STLS
            "stls": "sslproto 'tls1.2+' sslcertck sslcommonname 'localhost' sslcertfile '%s'"
                    % self.site.cert,
            "ssl": "ssl sslcertck sslcommonname 'localhost' sslcertfile '%s'" % self.site.cert,
        }[mode]
        port = self.server.tls_port if mode == "ssl" else self.server.port
        with open(rc, "w") as f:
            f.write("poll localhost via 127.0.0.1 protocol pop3 port %d uidl\n"
                    "  user '%s' password '%s' is root here\n"
                    "  %s %s mda \"/bin/sh -c 'cat > %s/msg.$$'\"\n"
                    % (port, ALICE, h.PASSWORDS[ALICE], opts, "keep" if keep else "no keep",
                       out_dir))
        os.chmod(rc, 0o600)
        env = dict(os.environ, HOME=self.site.dir, FETCHMAILHOME=self.site.dir)
        # As root fetchmail keeps its pid file in /var/run unless told otherwise: a private one,
        # so that another fetchmail on the machine does not make this one refuse to run.
        out = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "--nosyslog",
                              "--pidfile", os.path.join(self.site.dir, "fetchmail.pid"),
                              "-i", os.path.join(self.site.dir, "fetchids-" + mode)],
                             capture_output=True, env=env, timeout=120)
        self.assertEqual(out.returncode, 0, out.stdout.decode() + out.stderr.decode())
        got = []
        for n in sorted(os.listdir(out_dir)):
            with open(os.path.join(out_dir, n), "rb") as f:
                got.append(f.read())
        return got

    def check_fetched(self, got):
        self.assertEqual(len(got), len(self.expected[ALICE]))
        # fetchmail adds a Received: header; every original body must be in its delivery.
        for m in h.sample_messages():
            body = m.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
            self.assertTrue(any(body.rstrip(b"\n") in g.replace(b"\r\n", b"\n") for g in got))

    def test_fetchmail_plain_deletes_after_fetch(self):
        self.check_fetched(self.fetchmail("plain"))
        self.assertEqual(self.site.messages(ALICE), {})

    def test_fetchmail_stls_keep(self):
        before = self.site.messages(ALICE)
        self.check_fetched(self.fetchmail("stls", keep=True))
        self.assertEqual(self.site.messages(ALICE), before)

    def test_fetchmail_implicit_tls(self):
        self.check_fetched(self.fetchmail("ssl"))
        self.assertEqual(self.site.messages(ALICE), {})


class PlaintextPolicyTest(unittest.TestCase):
    """Plaintext login refused without TLS (loopback treated like any address here)."""

    def test_refused_without_tls_allowed_after_stls(self):
        site = h.Site()
        server = h.Server(site, "[auth]\nplaintext_on_loopback = false")
        try:
            site.deliver(ALICE, b"Subject: x\n\ny\n")
            p = poplib.POP3("127.0.0.1", server.port, timeout=30)
            caps = p.capa()
            self.assertNotIn("USER", caps)
            self.assertNotIn("SASL", caps)
            with self.assertRaises(poplib.error_proto) as e:
                p.user(ALICE)
            self.assertIn(b"[AUTH]", e.exception.args[0])
            p.stls(context=site.client_context())
            self.assertIn("USER", p.capa())
            p.user(ALICE)
            p.pass_(h.PASSWORDS[ALICE])
            self.assertEqual(p.stat()[0], 1)
            p.quit()
        finally:
            server.stop()
            site.cleanup()


class CommandLineTest(unittest.TestCase):
    """--help, the example config, exit codes and the control client."""

    def run_pop3d(self, *args):
        return subprocess.run([h.BINARY] + list(args), capture_output=True, timeout=30)

    def test_help_example_config_and_exit_codes(self):
        out = self.run_pop3d("--help")
        self.assertEqual(out.returncode, 0)
        self.assertIn(b"--passwd-file", out.stdout)
        example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                               "examples", "coffer-pop3d.toml")
        self.assertEqual(self.run_pop3d("--no-such-flag").returncode, 64)
        self.assertEqual(self.run_pop3d("-c", "/nonexistent.toml").returncode, 78)
        site = h.Site()
        try:
            # The example config is valid; --check-config also reads its passwd-file, so point
            # it at one that exists.
            out = self.run_pop3d("-c", example, "--passwd-file", site.passwd, "--check-config")
            self.assertEqual(out.returncode, 0, out.stderr)
            out = self.run_pop3d("-c", example, "--check-config")
            self.assertEqual(out.returncode, 78)
            self.assertIn(b"coffer-pop3d.passwd", out.stderr)
            bad = os.path.join(site.dir, "bad.toml")
            with open(bad, "w") as f:
                f.write("[limits]\nidle_timeot = 5\n")
            out = self.run_pop3d("-c", bad, "--check-config")
            self.assertEqual(out.returncode, 78)
            self.assertIn(b"idle_timeot", out.stderr)
            # A port in use: exit 69.
            server = h.Server(site)
            try:
                out = self.run_pop3d("--listen", "127.0.0.1:%d" % server.port, "--passwd-file",
                                     site.passwd)
                self.assertEqual(out.returncode, 69, out.stderr)
                self.assertIn(b"cannot listen on 127.0.0.1:%d" % server.port, out.stderr)
                out = self.run_pop3d("--control-socket", server.control, "--send", "status")
                self.assertEqual(out.returncode, 0)
                self.assertTrue(out.stdout.startswith(b"ok mode=off"), out.stdout)
            finally:
                server.stop()
        finally:
            site.cleanup()


class RunAsTest(unittest.TestCase):
    def test_run_as_nobody(self):
        site = h.Site()
        try:
            if os.geteuid() != 0:
                # Without root the switch must fail loudly (exit 77), never half-work.
                with self.assertRaises(RuntimeError):
                    h.Server(site, '[server]\nuser = "nobody"')
                return
            nobody = pwd.getpwnam("nobody")
            site.deliver(ALICE, b"Subject: x\n\ny\n")
            for root, dirs, files in os.walk(site.mail):
                os.chown(root, nobody.pw_uid, nobody.pw_gid)
                for f in files:
                    os.chown(os.path.join(root, f), nobody.pw_uid, nobody.pw_gid)
            os.chmod(site.passwd, 0o644)
            server = h.Server(site, '[server]\nuser = "nobody"')
            try:
                with open("/proc/%d/status" % server.proc.pid) as f:
                    status = f.read()
                uid_line = [x for x in status.splitlines() if x.startswith("Uid:")][0]
                self.assertEqual(set(uid_line.split()[1:]), {str(nobody.pw_uid)})
                p = poplib.POP3("127.0.0.1", server.port, timeout=30)
                p.user(ALICE)
                p.pass_(h.PASSWORDS[ALICE])
                p.retr(1)
                p.dele(1)
                p.quit()
                self.assertEqual(site.messages(ALICE), {})
            finally:
                server.stop()
        finally:
            site.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2, warnings="ignore")
