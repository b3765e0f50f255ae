#!/usr/bin/env python3
"""coffer-pop3d's one-session rule across two access boxes (suite 'mount').

Two cofferfs mounts (two STATE_DIRs, one key, the same three real coffer-node processes) are
two boxes; each runs its own coffer-pop3d with pop3.shared_store = true on a 127.0.0.1 port.
- A user logged in on box A holds the maildrop: a login on box B gets -ERR [IN-USE]; after
  QUIT on A, B logs in within seconds. A garbled lease file does not stop anyone.
- Two logins at the same moment, one per box, ten times: exactly one succeeds every time; the
  winner's DELE + QUIT removes exactly that message, seen from both boxes.
- A client on each box logs in, DELEs the first message and QUITs over and over: no message is
  ever acknowledged as deleted by two sessions, and what is left is exactly what nobody
  deleted.
- kill -9 of the holder's coffer-pop3d: box B gets in once the lease has ended (a short
  pop3.lease_s), not before.
- A session whose lease another box took over (its renewal finds the other lease) answers the
  next command with -ERR [IN-USE], closes, and deletes nothing.
Needs root and /dev/fuse. Everything on 127.0.0.1; every process is stopped by PID.
"""
import os
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "fs"))
import pop3d_harness as h  # noqa: E402
from cofferfs_mount import Mount, TempArea  # noqa: E402
from nodes_mount_test import Nodes, ctl  # noqa: E402

ALICE = "alice@example.org"
BOB = "bob@example.org"
LEASE_S = 12
SETTLE_MS = 3000
LEASE_FILE = ".coffer-pop3d-lease"
CONFIG = "[pop3]\nshared_store = true\nlease_s = %d\nlease_settle_ms = %d\n" % (LEASE_S,
                                                                              SETTLE_MS)


# A login that did not get the maildrop: [IN-USE], or [SYS/TEMP] when the lease file could not
# be read. cofferfs answers EIO for up to a second to a read of a file that another box has
# just replaced or removed (its chunks are gone before the name is); the server cannot tell
# then and says "try again later".
REFUSED = (b"-ERR [IN-USE]", b"-ERR [SYS/TEMP]")


def login(port, user, start=None, timeout=60):
    """Connects, waits for `start` (a threading.Barrier) if given, logs in. Returns
    (connection or None, the PASS reply)."""
    c = h.Raw(port, timeout=timeout)
    assert c.line().startswith(b"+OK")
    assert c.cmd("USER " + user).startswith(b"+OK")
    if start is not None:
        start.wait()
    reply = c.cmd("PASS " + h.PASSWORDS[user])
    if reply.startswith(b"+OK"):
        return c, reply
    c.close()
    return None, reply


def uidls(c):
    assert c.cmd("UIDL").startswith(b"+OK")
    return [line.split()[1].decode() for line in c.multiline()]


def wait_for(predicate, limit, what):
    deadline = time.time() + limit
    while time.time() < deadline:
        if predicate():
            return time.time()
        time.sleep(0.1)
    raise AssertionError("not within %d s: %s" % (limit, what))


class BoxesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.area = TempArea()
        cls.nodes = Nodes(cls.area)
        cls.mounts = []
        cls.servers = []
        cls.site = None
        try:
            cls.box_a = cls.mount("box-a", cls.nodes.config)
            # Box A's new store must be on the nodes before box B rebuilds from them.
            deadline = time.time() + 60
            while " outbox=0 " not in ctl("status", cls.box_a.mnt).stdout:
                if time.time() > deadline:
                    raise RuntimeError("box A's outbox did not drain")
                time.sleep(0.2)
            config_b = cls.area.path("replicator-b.toml")
            with open(cls.nodes.config) as src, open(config_b, "w") as dst:
                dst.write(src.read().replace("box_id = 1", "box_id = 2", 1))
            cls.box_b = cls.mount("box-b", config_b)
            cls.site = h.Site()
            cls.mail = {"a": os.path.join(cls.box_a.mnt, "mail"),
                        "b": os.path.join(cls.box_b.mnt, "mail")}
            cls.server = {"a": cls.start_server("a"), "b": cls.start_server("b")}
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            try:
                s.stop()
            except Exception:  # noqa: BLE001
                pass
        for m in cls.mounts:
            try:
                m.stop()
            except Exception:  # noqa: BLE001
                pass
        cls.nodes.stop_all()
        if cls.site:
            cls.site.cleanup()
        cls.area.close()

    @classmethod
    def mount(cls, name, replicator):
        m = Mount(cls.area.path(name), cls.area.path("mnt-" + name), cls.area.key,
                  "replicator=" + replicator)
        cls.mounts.append(m)
        return m.start(timeout=60)

    @classmethod
    def start_server(cls, box):
        cls.site.mail = cls.mail[box]
        s = h.Server(cls.site, config=CONFIG)
        cls.servers.append(s)
        return s

    def maildir(self, box, user):
        local, domain = user.split("@")
        return os.path.join(self.mail[box], domain, local, "Maildir")

    def lease_exists(self, box, user):
        return os.path.exists(os.path.join(self.maildir(box, user), LEASE_FILE))

    def names(self, box, user):
        md = self.maildir(box, user)
        return sorted(n.split(":")[0] for sub in ("new", "cur")
                      for n in os.listdir(os.path.join(md, sub)))

    def deliver(self, user, count):
        """Delivers on box A and waits until box B lists the same messages."""
        self.site.mail = self.mail["a"]
        for i in range(count):
            self.site.deliver(user, b"Subject: %d\n\nbody %d\n" % (i, i))
        want = self.names("a", user)
        wait_for(lambda: os.path.isdir(os.path.join(self.maildir("b", user), "cur")) and
                 self.names("b", user) == want, 30, "box B sees box A's deliveries")
        return want

    def lease_free(self, box, user):
        """No lease file, or one given up (by the loser of a race, whose file cofferfs may show
        once the winner's is gone)."""
        try:
            with open(os.path.join(self.maildir(box, user), LEASE_FILE), "rb") as f:
                return b"\nexpires 0\n" in f.read()
        except FileNotFoundError:
            return True
        except OSError:  # EIO while another box replaces or removes the file (see REFUSED)
            return False

    def wait_released(self, user):
        """Until neither box shows a live lease, twice 1.5 s apart (the last changes have
        settled on both boxes)."""
        def free():
            return self.lease_free("a", user) and self.lease_free("b", user)
        for _ in range(20):
            wait_for(free, 30, "no live lease on either box")
            time.sleep(1.5)
            if free():
                return
        self.fail("the lease of %s never stayed free" % user)

    def port(self, box):
        return self.server[box].port

    def test_1_a_session_on_one_box_keeps_the_other_out(self):
        self.deliver(ALICE, 3)
        a, reply = login(self.port("a"), ALICE)
        self.assertIsNotNone(a, reply)
        self.assertEqual(len(uidls(a)), 3)
        wait_for(lambda: self.lease_exists("b", ALICE), 30, "box B sees the lease")
        started = time.time()
        _, reply = login(self.port("b"), ALICE)
        self.assertTrue(reply.startswith(b"-ERR [IN-USE]"), reply)
        # Refused at the first read, without the settle time.
        self.assertLess(time.time() - started, SETTLE_MS / 1000.0, "refusal took the settle time")
        # Another user on box B is not affected.
        self.deliver(BOB, 1)
        b, reply = login(self.port("b"), BOB)
        self.assertIsNotNone(b, reply)
        self.assertEqual(b.cmd("QUIT"), b"+OK Logging out.")
        # The session on A renews its lease (every lease_s/3) and stays the holder.
        time.sleep(LEASE_S / 3.0 + 2)
        _, reply = login(self.port("b"), ALICE)
        self.assertTrue(reply.startswith(b"-ERR [IN-USE]"), reply)
        self.assertTrue(a.cmd("NOOP").startswith(b"+OK"))
        self.assertEqual(a.cmd("QUIT"), b"+OK Logging out.")
        quit_at = time.time()
        # Box B gets in within a few seconds of the QUIT.
        b = None
        while b is None and time.time() < quit_at + 15:
            b, reply = login(self.port("b"), ALICE)
            if b is None:
                self.assertTrue(reply.startswith(b"-ERR [IN-USE]"), reply)
                time.sleep(0.3)
        self.assertIsNotNone(b, "box B could not log in within 15 s of QUIT on box A")
        self.assertEqual(len(uidls(b)), 3)
        self.assertEqual(b.cmd("QUIT"), b"+OK Logging out.")
        self.wait_released(ALICE)

        # A garbled lease file (it is data on a shared store) is treated as ended.
        with open(os.path.join(self.maildir("a", ALICE), LEASE_FILE), "wb") as f:
            f.write(b"\x00garbage\xff" * 100)
        wait_for(lambda: self.lease_exists("b", ALICE), 30, "box B sees the garbled lease")
        b, reply = login(self.port("b"), ALICE)
        self.assertIsNotNone(b, reply)
        self.assertEqual(b.cmd("QUIT"), b"+OK Logging out.")
        self.assertIn("treated as an ended lease", self.server["b"].log_text())
        self.wait_released(ALICE)
        self.assertTrue(self.server["a"].alive() and self.server["b"].alive())

    def test_2_simultaneous_logins_exactly_one_wins(self):
        before = self.deliver(BOB, 12)
        deleted = []
        for round_no in range(10):
            start = threading.Barrier(2)
            results = {}

            def attempt(box):
                results[box] = login(self.port(box), BOB, start)

            threads = [threading.Thread(target=attempt, args=(box,)) for box in ("a", "b")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            winners = [box for box, (c, _) in results.items() if c is not None]
            replies = {box: r for box, (_, r) in results.items()}
            self.assertEqual(len(winners), 1, "round %d: %r" % (round_no, replies))
            loser = "b" if winners[0] == "a" else "a"
            self.assertTrue(replies[loser].startswith(REFUSED),
                            "round %d: %r" % (round_no, replies))
            c = results[winners[0]][0]
            listed = uidls(c)
            self.assertEqual(len(listed), len(before) - round_no, "round %d" % round_no)
            self.assertTrue(c.cmd("DELE 1").startswith(b"+OK"))
            self.assertEqual(c.cmd("QUIT"), b"+OK Logging out.")
            deleted.append(listed[0])
            self.wait_released(BOB)
        want = sorted(set(before) - set(deleted))
        self.assertEqual(len(set(deleted)), 10)
        self.assertEqual(self.names("a", BOB), want)
        wait_for(lambda: self.names("b", BOB) == want, 30, "box B sees the deletions")

    def test_3_racing_clients_never_delete_one_message_twice(self):
        before = self.deliver(ALICE, 30)  # plus what test_1 left
        acknowledged = []  # (box, uidl) of deletions a QUIT acknowledged
        lock = threading.Lock()
        stop_at = time.time() + 60
        errors = []

        def client(box):
            try:
                while time.time() < stop_at:
                    c, reply = login(self.port(box), ALICE)
                    if c is None:
                        if not reply.startswith(REFUSED):
                            errors.append("%s: %r" % (box, reply))
                        time.sleep(0.05)
                        continue
                    listed = uidls(c)
                    if not listed:
                        c.cmd("QUIT")
                        return
                    self.assertTrue(c.cmd("DELE 1").startswith(b"+OK"))
                    if c.cmd("QUIT") == b"+OK Logging out.":
                        with lock:
                            acknowledged.append((box, listed[0]))
                    c.close()
                    # A client that just had its turn waits a little: a box sees its own
                    # release at once, the other box a second later, so without a pause (or
                    # with a second client on the same box) one box would take every turn.
                    time.sleep(2.5)
            except Exception as e:  # noqa: BLE001
                errors.append("%s: %s" % (box, e))

        threads = [threading.Thread(target=client, args=(box,)) for box in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        uids = [u for _, u in acknowledged]
        self.assertGreater(len(uids), 3, "too few sessions to mean anything")
        self.assertEqual(len(uids), len(set(uids)),
                         "a message was deleted by two sessions: %r" % acknowledged)
        self.assertGreater(len({box for box, _ in acknowledged}), 1,
                           "only one box ever got the maildrop: %r" % acknowledged)
        self.wait_released(ALICE)
        want = sorted(set(before) - set(uids))
        self.assertEqual(self.names("a", ALICE), want)
        wait_for(lambda: self.names("b", ALICE) == want, 30, "box B sees the deletions")

    def test_4_kill9_of_the_holder_frees_the_maildrop_when_the_lease_ends(self):
        user = "carol@example.org"
        self.deliver(user, 2)
        a, reply = login(self.port("a"), user)
        self.assertIsNotNone(a, reply)
        self.assertTrue(a.cmd("DELE 1").startswith(b"+OK"))
        wait_for(lambda: self.lease_exists("b", user), 30, "box B sees the lease")
        time.sleep(2)
        server_a = self.server["a"]
        server_a.proc.kill()  # SIGKILL, by PID
        server_a.proc.wait()
        killed_at = time.time()
        a.close()
        self.assertTrue(self.lease_exists("a", user))  # a crash leaves the lease behind
        b = None
        while b is None and time.time() < killed_at + LEASE_S + 2 * SETTLE_MS / 1000.0 + 20:
            b, reply = login(self.port("b"), user)
            if b is None:
                self.assertTrue(reply.startswith(b"-ERR [IN-USE]"), reply)
                time.sleep(0.5)
        self.assertIsNotNone(b, "box B never got the maildrop of the killed holder")
        waited = time.time() - killed_at
        # The last renewal was at most lease_s/3 before the kill; the lease ends lease_s after
        # it, and is taken over settle time after that.
        self.assertGreater(waited, LEASE_S * 2 / 3.0 + SETTLE_MS / 1000.0 - 1,
                           "the lease was taken over before it ended")
        self.assertEqual(len(uidls(b)), 2)  # the killed session deleted nothing
        self.assertEqual(b.cmd("QUIT"), b"+OK Logging out.")
        self.assertIn("taking over the lease of host", self.server["b"].log_text())
        self.server["a"] = self.start_server("a")
        self.wait_released(user)

    def test_5_a_session_that_lost_its_lease_deletes_nothing(self):
        user = "dave@example.org"
        before = self.deliver(user, 3)
        a, reply = login(self.port("a"), user)
        self.assertIsNotNone(a, reply)
        self.assertTrue(a.cmd("DELE 1").startswith(b"+OK"))
        # Another session takes the lease over on box B (as after a long network cut): its
        # lease replaces the file, the way every box writes it.
        md = self.maildir("b", user)
        with open(os.path.join(md, LEASE_FILE + ".thief"), "w") as f:
            f.write("coffer-pop3d-lease 1\nhost thief\npid 7\ntoken %s\nexpires %d\n" %
                    ("ab" * 16, int((time.time() + 600) * 1000)))
        os.rename(os.path.join(md, LEASE_FILE + ".thief"), os.path.join(md, LEASE_FILE))
        # The next renewal on box A (every lease_s/3) finds it; the next command ends the
        # session without deleting.
        time.sleep(LEASE_S / 3.0 + 3)
        self.assertEqual(a.cmd("DELE 2"), b"-ERR [IN-USE] Another session took over this "
                                          b"maildrop; nothing was deleted.")
        self.assertTrue(a.closed())
        self.assertEqual(self.names("a", user), before)
        log = self.server["a"].log_text()
        self.assertIn("lease lost: the lease file names host thief pid 7", log)
        self.assertIn("lease=lost", log)
        # The thief's lease is left alone.
        with open(os.path.join(self.maildir("a", user), LEASE_FILE)) as f:
            self.assertIn("host thief", f.read())


if __name__ == "__main__":
    unittest.main(verbosity=2, warnings="ignore")
