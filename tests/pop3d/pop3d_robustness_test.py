"""coffer-pop3d under bad input and load: overlong lines, NUL bytes, garbage, bare LF, wrong
state, bad arguments, pipelining, 500 concurrent connections, clients that vanish in the middle
of RETR, [IN-USE], failed-login delays, connection limits, idle timeout, play-dead modes and
Dovecot UIDL compatibility. After each test the server must still serve and no message may be
lost or deleted by mistake."""

import os
import random
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pop3d_harness as h  # noqa: E402

ALICE = "alice@example.org"
BOB = "bob@example.org"


class RobustnessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.site = h.Site()
        for m in h.sample_messages():
            cls.site.deliver(ALICE, m)
        for user in ("carol@example.org", "dave@example.org"):
            cls.site.deliver(user, b"Subject: hi\n\nhello\n")
        for i in range(20):
            cls.site.deliver(BOB, b"Subject: %d\n\n" % i + os.urandom(200000).hex().encode())
        try:
            cls.server = h.Server(cls.site, "[limits]\nmax_connections = 2000\n"
                                  "max_connections_per_ip = 2000\nmax_line_length = 512\n"
                                  "max_bad_commands = 20\n[server]\nauth_threads = 4")
        except Exception:
            cls.site.cleanup()
            raise
        cls.alice_before = cls.site.messages(ALICE)
        cls.bob_before = cls.site.messages(BOB)

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        if rc != 0:
            print(cls.server.log_text())
        cls.site.cleanup()

    def tearDown(self):
        # The server is alive, still serves, and nothing was lost.
        self.assertTrue(self.server.alive(), self.server.log_text()[-3000:])
        deadline = time.time() + 10
        while True:  # sessions of vanished clients are torn down asynchronously
            try:
                c = h.Raw(self.server.port)
                c.login(ALICE, h.PASSWORDS[ALICE])
                break
            except AssertionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.assertTrue(c.cmd("STAT").startswith(b"+OK %d " % len(self.alice_before)))
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out.")
        c.close()
        self.assertEqual(self.site.messages(ALICE), self.alice_before)
        self.assertEqual(self.site.messages(BOB), self.bob_before)

    def test_overlong_line(self):
        c = h.Raw(self.server.port)
        c.line()
        self.assertEqual(c.cmd(b"USER " + b"x" * 100000 + b"\r\n"), b"-ERR Line too long.")
        self.assertTrue(c.cmd("CAPA").startswith(b"+OK"))
        c.multiline()
        self.assertEqual(c.cmd(b"NOOP " + b"y" * 600 + b"\r\n"), b"-ERR Line too long.")
        c.login  # still usable
        self.assertTrue(c.cmd("USER " + ALICE).startswith(b"+OK"))
        self.assertTrue(c.cmd("PASS " + h.PASSWORDS[ALICE]).startswith(b"+OK"))
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out.")

    def test_nul_bytes_garbage_and_bare_lf(self):
        c = h.Raw(self.server.port)
        c.line()
        self.assertTrue(c.cmd(b"US\0ER alice\r\n").startswith(b"-ERR"))
        self.assertTrue(c.cmd(b"\xff\xfe\xfd\r\n").startswith(b"-ERR"))
        self.assertTrue(c.cmd(b"\x1b[31mRED\r\n").startswith(b"-ERR"))
        self.assertEqual(c.cmd(b"USER " + ALICE.encode() + b"\n"), b"+OK")
        self.assertEqual(c.cmd(b"PASS " + h.PASSWORDS[ALICE].encode() + b"\n"),
                         b"+OK Logged in.")
        self.assertTrue(c.cmd(b"STAT\n").startswith(b"+OK"))
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out.")
        # Random garbage from many clients never brings the server down.
        rnd = random.Random(6)
        for _ in range(30):
            s = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
            s.sendall(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 3000))))
            s.close()

    def test_wrong_state_and_bad_arguments(self):
        c = h.Raw(self.server.port)
        c.line()
        self.assertEqual(c.cmd("RETR 1"), b"-ERR Not logged in.")
        self.assertEqual(c.cmd("PASS x"), b"-ERR No username given.")
        self.assertTrue(c.cmd("USER " + ALICE).startswith(b"+OK"))
        self.assertTrue(c.cmd("PASS " + h.PASSWORDS[ALICE]).startswith(b"+OK"))
        self.assertEqual(c.cmd("USER x"), b"-ERR Already logged in.")
        self.assertEqual(c.cmd("RETR 0"), b"-ERR There's no message 0.")
        self.assertEqual(c.cmd("RETR 99"), b"-ERR There's no message 99.")
        self.assertEqual(c.cmd("RETR -1"), b"-ERR Invalid message number: -1")
        self.assertEqual(c.cmd("LIST x"), b"-ERR Invalid message number: x")
        self.assertEqual(c.cmd("TOP 1 -5"), b"-ERR Invalid number of lines: -5")
        self.assertEqual(c.cmd("DELE 18446744073709551617"),
                         b"-ERR Invalid message number: 18446744073709551617")
        self.assertEqual(c.cmd("DELE 1"), b"+OK Marked to be deleted.")
        self.assertEqual(c.cmd("DELE 1"), b"-ERR Message is deleted.")
        self.assertEqual(c.cmd("RSET"), b"+OK")
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out.")

    def test_too_many_bad_commands_disconnects(self):
        c = h.Raw(self.server.port)
        c.line()
        for _ in range(19):
            self.assertTrue(c.cmd("BOGUS").startswith(b"-ERR Unknown command"))
        self.assertEqual(c.cmd("BOGUS"), b"-ERR Too many bad commands, closing connection.")
        self.assertTrue(c.closed())

    def test_pipelined_commands(self):
        c = h.Raw(self.server.port)
        c.line()
        n = len(self.alice_before)
        c.send(("CAPA\r\nUSER %s\r\nPASS %s\r\nSTAT\r\nLIST\r\nRETR 2\r\nTOP 1 0\r\nUIDL\r\n"
                "DELE 1\r\nRSET\r\nNOOP\r\nQUIT\r\n" % (ALICE, h.PASSWORDS[ALICE])).encode())
        self.assertTrue(c.line().startswith(b"+OK"))
        self.assertIn(b"PIPELINING", c.multiline())
        self.assertEqual(c.line(), b"+OK")
        self.assertEqual(c.line(), b"+OK Logged in.")
        self.assertTrue(c.line().startswith(b"+OK %d " % n))
        self.assertTrue(c.line().startswith(b"+OK"))
        self.assertEqual(len(c.multiline()), n)
        self.assertTrue(c.line().startswith(b"+OK"))
        body = c.multiline()
        self.assertEqual(body[-1], b".")  # the message's "." line, un-stuffed
        self.assertTrue(c.line().startswith(b"+OK"))
        c.multiline()
        self.assertTrue(c.line().startswith(b"+OK"))
        self.assertEqual(len(c.multiline()), n)
        self.assertEqual(c.line(), b"+OK Marked to be deleted.")
        self.assertEqual(c.line(), b"+OK")
        self.assertEqual(c.line(), b"+OK")
        self.assertEqual(c.line(), b"+OK Logging out.")
        self.assertTrue(c.closed())

    def test_stls_injection_is_discarded(self):
        # CVE-2011-0411 style: commands pipelined after STLS in plaintext must not run.
        import ssl
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        s.recv(1000)
        s.sendall(b"STLS\r\nUSER " + ALICE.encode() + b"\r\n")
        reply = s.recv(1000)
        self.assertTrue(reply.startswith(b"+OK Begin TLS"), reply)
        t = self.site.client_context().wrap_socket(s, server_hostname="localhost")
        t.sendall(b"PASS " + h.PASSWORDS[ALICE].encode() + b"\r\n")
        self.assertEqual(t.recv(1000), b"-ERR No username given.\r\n")
        t.sendall(b"QUIT\r\n")
        t.recv(1000)
        t.close()

    def test_500_concurrent_connections(self):
        socks = []
        try:
            for _ in range(500):
                socks.append(socket.create_connection(("127.0.0.1", self.server.port),
                                                      timeout=30))
            for s in socks:
                self.assertTrue(s.recv(100).startswith(b"+OK"))
            for s in socks:
                s.sendall(b"NOOP\r\n")
            for s in socks:
                self.assertEqual(s.recv(100), b"-ERR Not logged in.\r\n")
            status = self.server.ctl("status")
            open_now = int(status.split("connections=")[1].split()[0])
            self.assertGreaterEqual(open_now, 500, status)
            # Meanwhile, real sessions still work, many in parallel.
            errors = []

            def session(user):
                try:
                    c = h.Raw(self.server.port, timeout=60)
                    c.login(user, h.PASSWORDS[user])
                    c.cmd("RETR 1")
                    c.multiline()
                    c.cmd("QUIT")
                    c.close()
                except Exception as e:  # noqa: BLE001
                    errors.append(repr(e))
            threads = [threading.Thread(target=session, args=(u,))
                       for u in ("carol@example.org", "dave@example.org")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
        finally:
            for s in socks:
                s.close()

    def test_clients_vanish_during_retr(self):
        for i in range(20):
            # The previous vanished session may not be torn down yet: [IN-USE] until then.
            c = self.login_when_free(BOB)
            for n in range(1, 21):
                c.send(b"DELE %d\r\n" % n)
            c.send(b"RETR %d\r\n" % (i % 20 + 1))
            c.sock.recv(1000 + i * 3000)  # a bit of the message, then vanish
            if i % 2:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            c.close()
        # A client that stops reading (full socket buffers) is also handled.
        c = h.Raw(self.server.port)
        c.login(ALICE, h.PASSWORDS[ALICE])
        c.send(b"RETR 5\r\n")
        time.sleep(0.3)
        c.close()
        # Bob can log in again (his lock was released) and sees all 20 messages.
        c = self.login_when_free(BOB)
        self.assertTrue(c.cmd("STAT").startswith(b"+OK 20 "))
        c.cmd("QUIT")

    def login_when_free(self, user, timeout=15):
        deadline = time.time() + timeout
        while True:
            c = h.Raw(self.server.port)
            c.line()
            c.cmd("USER " + user)
            reply = c.cmd("PASS " + h.PASSWORDS[user])
            if reply == b"+OK Logged in.":
                return c
            c.close()
            self.assertTrue(reply.startswith(b"-ERR [IN-USE]"), reply)
            self.assertLess(time.time(), deadline, "maildrop still locked")
            time.sleep(0.05)

    def test_in_use(self):
        a = h.Raw(self.server.port)
        a.login(ALICE, h.PASSWORDS[ALICE])
        b = h.Raw(self.server.port)
        b.line()
        b.cmd("USER " + ALICE)
        self.assertEqual(b.cmd("PASS " + h.PASSWORDS[ALICE]),
                         b"-ERR [IN-USE] Mailbox is locked by another POP3 session.")
        a.cmd("QUIT")
        a.close()
        b.cmd("USER " + ALICE)
        self.assertEqual(b.cmd("PASS " + h.PASSWORDS[ALICE]), b"+OK Logged in.")
        b.cmd("QUIT")

    def test_failed_logins_are_delayed_then_disconnected(self):
        c = h.Raw(self.server.port)
        c.line()
        times = []
        for i in range(3):
            c.cmd("USER " + ALICE)
            start = time.time()
            reply = c.cmd("PASS wrong")
            times.append(time.time() - start)
            self.assertTrue(reply.startswith(b"-ERR [AUTH]"), reply)
        self.assertTrue(c.closed())
        self.assertGreaterEqual(times[0], 0.045)
        self.assertGreaterEqual(times[1], 0.095)
        self.assertGreaterEqual(times[2], 0.195)
        self.assertIn("login failed user=alice@example.org", self.server.log_text())

    def test_password_checks_do_not_block_others(self):
        # While several slow failing logins are in flight, a NOOP-style exchange stays fast.
        bad = []
        for _ in range(4):
            c = h.Raw(self.server.port)
            c.line()
            c.cmd("USER " + ALICE)
            c.send(b"PASS wrong\r\n")
            bad.append(c)
        start = time.time()
        d = h.Raw(self.server.port)
        d.line()
        self.assertTrue(d.cmd("CAPA").startswith(b"+OK"))
        self.assertLess(time.time() - start, 1.0)
        d.close()
        for c in bad:
            c.line()
            c.close()

    def test_logs_never_contain_content_or_passwords(self):
        log = self.server.log_text()
        self.assertNotIn(h.PASSWORDS[ALICE], log)
        self.assertNotIn("leading dot", log)
        self.assertNotIn("Subject", log)


class LimitsAndPlayDeadTest(unittest.TestCase):
    def setUp(self):
        self.site = h.Site()
        self.site.deliver(ALICE, b"Subject: x\n\ny\n")
        self.before = self.site.messages(ALICE)

    def tearDown(self):
        self.site.cleanup()

    def test_per_address_limit_and_idle_timeout(self):
        server = h.Server(self.site, "[limits]\nmax_connections_per_ip = 3\nidle_timeout = 1")
        try:
            deadline = time.time() + 10  # until the readiness probe's connection is gone
            while "connections=0 " not in server.ctl("status") and time.time() < deadline:
                time.sleep(0.05)
            conns = [h.Raw(server.port) for _ in range(3)]
            for c in conns:
                self.assertTrue(c.line().startswith(b"+OK"))
            extra = h.Raw(server.port)
            self.assertEqual(extra.line(), b"-ERR [SYS/TEMP] Too many connections.")
            self.assertTrue(extra.closed())
            # Idle connections are closed after the timeout.
            for c in conns:
                self.assertTrue(c.closed(timeout=5))
            c = h.Raw(server.port)
            self.assertTrue(c.line().startswith(b"+OK"))
            c.close()
        finally:
            server.stop()

    def test_play_dead_modes(self):
        server = h.Server(self.site)
        try:
            c = h.Raw(server.port)
            c.login(ALICE, h.PASSWORDS[ALICE])
            c.cmd("DELE 1")
            self.assertEqual(server.ctl("play-dead refuse"), "ok play-dead refuse")
            self.assertEqual(c.cmd("STAT"), b"-ERR [SYS/TEMP] Service temporarily unavailable.")
            self.assertEqual(c.cmd("QUIT"), b"-ERR [SYS/TEMP] Service temporarily unavailable.")
            self.assertTrue(c.closed())
            self.assertEqual(self.site.messages(ALICE), self.before)  # nothing deleted
            n = h.Raw(server.port)
            self.assertEqual(n.line(), b"-ERR [SYS/TEMP] Service temporarily unavailable.")
            self.assertEqual(server.ctl("play-dead slow 400"), "ok play-dead slow")
            s = h.Raw(server.port)
            start = time.time()
            s.line()
            self.assertTrue(s.cmd("CAPA").startswith(b"+OK"))
            self.assertGreaterEqual(time.time() - start, 0.75)
            s.multiline()
            self.assertEqual(server.ctl("play-dead stop"), "ok play-dead stop")
            s.send(b"NOOP\r\n")
            self.assertFalse(s.closed(timeout=0.5))  # no answer
            self.assertIn("mode=stop", server.ctl("status"))
            self.assertEqual(server.ctl("play-dead off"), "ok play-dead off")
            self.assertEqual(s.line(), b"-ERR Not logged in.")
            self.assertEqual(server.ctl("play-dead nonsense")[:5], "error")
            c = h.Raw(server.port)
            c.login(ALICE, h.PASSWORDS[ALICE])
            self.assertEqual(c.cmd("STAT"), b"+OK 1 17")
            c.cmd("QUIT")
        finally:
            server.stop()

    def test_dovecot_uidlist_compatibility(self):
        name = list(self.before)[0]
        md = self.site.maildir(ALICE)
        second = self.site.deliver(ALICE, b"Subject: new\n\nz\n")
        with open(os.path.join(md, "dovecot-uidlist"), "w") as f:
            f.write("3 V1700000000 N3 G0123\n2 :%s\n" % name)
        server = h.Server(self.site, '[pop3]\nuidl = "dovecot"\nmark_seen = false')
        try:
            c = h.Raw(server.port)
            c.login(ALICE, h.PASSWORDS[ALICE])
            self.assertTrue(c.cmd("UIDL").startswith(b"+OK"))
            self.assertEqual(c.multiline(), [b"1 000000026553F100", b"2 " + second.encode()])
            c.cmd("RETR 1")
            c.multiline()
            c.cmd("QUIT")
            self.assertEqual(os.listdir(os.path.join(md, "cur")), [])  # mark_seen = false
        finally:
            server.stop()

    def test_sigterm_exits_cleanly_and_deletes_nothing(self):
        server = h.Server(self.site)
        c = h.Raw(server.port)
        c.login(ALICE, h.PASSWORDS[ALICE])
        c.cmd("DELE 1")
        self.assertEqual(server.stop(), 0)
        self.assertEqual(self.site.messages(ALICE), self.before)


if __name__ == "__main__":
    unittest.main(verbosity=2, warnings="ignore")
