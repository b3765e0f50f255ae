#!/usr/bin/env python3
"""Several access boxes mounting one store at once (suite 'mount'): what a site with two or three
boxes in front of the same storage nodes sees (DESIGN.md "Several access boxes").

Each box is a cofferfs mount with its own STATE_DIR, its own CURVE key pair on the nodes' allow
list and its own replicator.toml, the same key file and the same three coffer-node processes
(R=3, W=2), as README "Adding a box" sets one up (the box id is the one each STATE_DIR chose).

  PostfixPop3Test   Postfix virtual(8) delivers through box A while coffer-pop3d on box B
                    retrieves (RETR moves new/ -> cur/) and deletes (DELE+QUIT). Propagation
                    A->B (a delivery seen on A until B lists it and reads the right content)
                    and B->A (QUIT sent on B until A no longer lists the message), p50/p99
                    printed and p99 bounded; every message delivered and retrieved exactly once.
  StormTest         three boxes rename the same messages to different flag suffixes, move
                    new/ -> cur/ and delete some, all at once; every box converges to the same
                    tree, equal to a new box rebuilt from the nodes; every message is there
                    exactly once unless a box deleted it.
  RaceTest          the smallest races, two boxes each acting before it heard of the other:
                    a delete on A while B flags (renames) or touches the message; A unlinks
                    the tmp/ name while B moves the new/ name of the same file (Postfix on A,
                    POP3 on B); both boxes create a new user's Maildir for a first message at
                    once; A deletes a message B has open or still lists.
  CrashTest         box B is killed -9 while box A deletes many messages; B remounted on the
                    same STATE_DIR comes back as the same box (cofferctl boxes), neither
                    brings back a deleted message nor misses a delete, and its own writes
                    work afterwards.
  NodeFaultTest     both boxes deliver (tmp/ -> new/ by rename, 4 threads each) while a node is
                    killed -9 and another plays dead; no acknowledged message is lost on either
                    box or on a new box rebuilt from the nodes.
  SecondBoxTest     a second box mounts with an empty STATE_DIR while the first one is mounted
                    and delivering; both see each other's new files and moves; cofferctl
                    verify is clean on both; cofferctl boxes lists both, with mount points.

Everything on 127.0.0.1, stopped by PID. Needs root, /dev/fuse, Postfix (scripts/setup.sh).
Figures are printed as "propagation A->B ... p50=0.62s p99=1.10s max=... n=200".
Environment: COFFER_BOXES_P99_S (3.0, the bound on p99), COFFER_BOXES_MESSAGES (200, through
Postfix), COFFER_BOXES_STORM_DELETES (0.01, the share of storm steps that delete),
COFFER_BOXES_KEEP=1 (keep the temp dir of a failed test to look at).
"""
import errno
import hashlib
import os
import poplib
import random
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import (KEYTOOL, Mount, TempArea, free_port, kill_pidfile,  # noqa: E402
                            wait_port)
from nodes_mount_test import Nodes, ctl  # noqa: E402

POP3D = os.environ.get("COFFER_POP3D", "coffer-pop3d")
P99_BOUND = float(os.environ.get("COFFER_BOXES_P99_S", "3.0"))
BOXES = ("A", "B", "C", "D", "E")
MID_RE = re.compile(rb"(?mi)^Message-ID: <([^>]*)>")


def say(msg):
    print("  " + msg, flush=True)


def percentile(values, p):
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(-(-p * len(s) // 1)) - 1))]


def figures(what, values):
    line = "propagation %s p50=%.2fs p99=%.2fs max=%.2fs n=%d" % (
        what, percentile(values, 0.50), percentile(values, 0.99), max(values), len(values))
    say(line)
    return line


def maildir(root, user="alice"):
    md = os.path.join(root, user)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    return md


def body_for(mid, size=600):
    """A message whose first line names it (so a file can be told apart from its name)."""
    filler = hashlib.sha256(mid.encode()).hexdigest().encode() * (size // 64 + 1)
    return b"Message-ID: <" + mid.encode() + b">\nSubject: " + mid.encode() + b"\n\n" + \
        filler[:size] + b"\n"


def deliver_link(md, name, body):
    """Postfix style: tmp/, write, fsync, close, link into new/, unlink tmp/."""
    tmp = os.path.join(md, "tmp", name)
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, os.path.join(md, "new", name))
    os.unlink(tmp)


def wait_listed(d, names, timeout=10):
    """Waits until directory `d` lists exactly `names` (it may not exist yet)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if sorted(os.listdir(d)) == sorted(names):
                return
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    raise AssertionError("%s does not list %s" % (d, sorted(names)))


def sync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot(md):
    """{folder/name: (sha256, Message-ID)} of new/ and cur/ ("unreadable: EIO", None for a file
    that is listed but cannot be read), or None when a file went away between the listing and
    the read (the tree is moving)."""
    out = {}
    for folder in ("new", "cur"):
        d = os.path.join(md, folder)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return None
        for name in names:
            try:
                with open(os.path.join(d, name), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                return None
            except OSError as e:  # listed but unreadable: a finding, reported by the callers
                out[folder + "/" + name] = ("unreadable: " + errno.errorcode.get(e.errno, "?"),
                                            None)
                continue
            m = MID_RE.search(data)
            out[folder + "/" + name] = (hashlib.sha256(data).hexdigest(),
                                        m.group(1).decode() if m else None)
    return out


def by_message(tree):
    """Message-ID -> the names it is under."""
    out = {}
    for name, (_, mid) in tree.items():
        out.setdefault(mid, []).append(name)
    return out


def describe(a, b):
    keys = sorted(set(a) | set(b))
    diff = [k for k in keys if a.get(k) != b.get(k)]
    unreadable = [k for k in diff if k in a and k in b and "unreadable" in a[k][0] + b[k][0]]
    return "%d names differ%s, e.g. %s" % (
        len(diff), " (%d of them listed on both, content unreadable on one)" % len(unreadable)
        if unreadable else "",
        ["%s: %s / %s" % (k, (a.get(k) or ("-",))[0][:8], (b.get(k) or ("-",))[0][:8])
         for k in diff[:6]])


class BoxNodes(Nodes):
    """Nodes (tests/fs/nodes_mount_test.py) with one CURVE key pair and one replicator.toml
    (box_id 1, 2, ...) per box, every box key on the nodes' allow list."""

    def __init__(self, area):
        self.allowed_extra = False
        for b in BOXES:
            subprocess.run([KEYTOOL, "curve-keygen", "--out", area.path("box" + b)], check=True,
                           stdout=subprocess.DEVNULL)
        super().__init__(area)
        with open(self.config) as f:
            text = f.read()
        self.box_configs = {}
        for i, b in enumerate(BOXES, 1):
            path = area.path("replicator-%s.toml" % b)
            t = text.replace("box_id = 1", "box_id = %d" % i).replace(
                area.path("box.key_secret"), area.path("box%s.key_secret" % b))
            with open(path, "w") as f:
                f.write(t)
            self.box_configs[b] = path

    def start(self, name):
        if not self.allowed_extra:  # Nodes.__init__ wrote the allow list just now
            with open(self.area.path("allowed"), "a") as f:
                for b in BOXES:
                    with open(self.area.path("box%s.key" % b)) as k:
                        f.write(k.read())
            self.allowed_extra = True
        super().start(name)

    def play_dead(self, name, *mode):
        r = ctl("node", name, "play-dead", *mode, "--config", self.config,
                "--key", self.area.path("admin.key_secret"), "--timeout", "3000")
        return r.returncode == 0, r.stdout + r.stderr


class BoxesTestCase(unittest.TestCase):
    def setUp(self):
        self.t0 = time.time()
        self.area = TempArea()
        self.nodes = BoxNodes(self.area)
        self.mounts = []
        self.gone = []  # unmounted or crashed (their logs are printed on failure)
        self.cleanups = []

    def tearDown(self):
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass
        for m in self.mounts:
            try:
                m.stop()
            except Exception:  # noqa: BLE001
                pass
        self.nodes.stop_all()
        if self.failed():
            for m in self.mounts + self.gone:
                sys.stderr.write("---- %s\n%s\n" % (m.log_path, m.read_log()[-2500:]))
        if self.failed() and os.environ.get("COFFER_BOXES_KEEP") == "1":
            say("kept " + self.area.dir)
        else:
            self.area.close()
        say("%s: %.1f s" % (self.id().split(".", 1)[1], time.time() - self.t0))

    def failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is not None and hasattr(result, "failures"):
            return any(t is self for t, _ in result.failures + result.errors)
        return any(exc for _, exc in getattr(outcome, "errors", []))

    # ---- boxes ----
    def mount(self, box, state=None, options="", timeout=60):
        """Box `box` (A, B, ...) on STATE_DIR `state` (default state-<box>)."""
        state = state or "state-" + box
        opts = "replicator=" + self.nodes.box_configs[box]
        if options:
            opts += "," + options
        m = Mount(self.area.path(state), self.area.path("mnt-" + state), self.area.key, opts)
        m.box = box
        self.mounts.append(m)
        return m.start(timeout=timeout)

    def unmount(self, m):
        self.assertEqual(m.stop(), 0, m.read_log())
        self.mounts.remove(m)
        self.gone.append(m)

    def crash(self, m):
        m.kill9()
        self.mounts.remove(m)
        self.gone.append(m)

    def wait_outbox_empty(self, m, limit=60):
        deadline = time.time() + limit
        out = ""
        while time.time() < deadline:
            r = ctl("status", m.mnt)
            out = r.stdout + r.stderr
            if r.returncode == 0 and " outbox=0 " in out:
                return out
            time.sleep(0.2)
        self.fail("box %s: outbox did not drain: %s" % (m.box, out))

    def converge(self, mds, limit=30, settle=2.5):
        """Waits until every Maildir in `mds` shows the same tree and it stayed so for `settle`
        seconds (longer than the feed interval and the kernel's cache timeouts); returns it."""
        deadline = time.time() + limit
        same_since, last = None, None
        trees = []
        while time.time() < deadline:
            trees = [snapshot(md) for md in mds]
            if all(t is not None for t in trees) and all(t == trees[0] for t in trees):
                if trees[0] != last:
                    same_since, last = time.time(), trees[0]
                elif time.time() - same_since >= settle:
                    return last
            else:
                same_since, last = None, None
            time.sleep(0.2)
        good = [t for t in trees if t is not None]
        self.fail("the boxes did not converge within %ds: %s" % (
            limit, describe(good[0], good[-1]) if len(good) > 1 else "tree moving"))

    def rebuilt(self, box, user="alice"):
        """What the nodes alone hold: a new box with an empty STATE_DIR."""
        fresh = self.mount(box, "fresh-%s-%d" % (box, len(self.mounts)))
        try:
            self.assertIn("rebuilt from the storage nodes", fresh.read_log())
            return snapshot(os.path.join(fresh.mnt, user))
        finally:
            self.unmount(fresh)

    def boxes(self, m):
        """`cofferctl boxes` through box m: {box id: (state, host:mount point)} and m's id."""
        r = ctl("boxes", m.mnt)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out, me = {}, None
        for ln in r.stdout.splitlines():
            f = re.match(r"\s+([0-9a-f]{16})\s+(\w+)\s+([^,]*),", ln)
            if f:
                out[f.group(1)] = (f.group(2), f.group(3))
                if "(this box)" in ln:
                    me = f.group(1)
        self.assertIsNotNone(me, r.stdout)
        return out, me

    def verify_clean(self, m):
        r = ctl("verify", m.mnt, timeout=120)
        self.assertEqual(r.returncode, 0, "verify on box %s: %s" % (m.box, r.stdout + r.stderr))
        self.assertIn("the tree matches the storage nodes", r.stdout)


# ---------------------------------------------------------------------------------------------
# 1. Postfix on A, coffer-pop3d on B

VUID = VGID = 5000
USER, DOMAIN, PASSWORD = "alice", "example.test", "pop-secret"


class Postfix:
    """A private Postfix instance on 127.0.0.1 delivering with virtual(8) into
    VMAIL/alice/Maildir/ (after tests/fs/mail_test.py), retrying deferred mail within seconds."""

    def __init__(self, area, vmail):
        self.area = area
        self.dir = area.path("postfix")
        self.spool = area.path("pfspool")
        self.log_path = area.path("postfix.log")
        self.port = free_port()
        self.started = False
        for d in (self.dir, self.spool, area.path("pfdata")):
            os.makedirs(d)
        shutil.chown(area.path("pfdata"), "postfix", "postfix")
        with open(os.path.join(self.dir, "vmailbox"), "w") as f:
            f.write("%s@%s %s/Maildir/\n" % (USER, DOMAIN, USER))
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.write("\n".join([
                "compatibility_level = 3.6",
                "queue_directory = " + self.spool,
                "data_directory = " + area.path("pfdata"),
                "mail_owner = postfix",
                "myhostname = mx.coffer.test",
                "mydomain = coffer.test",
                "mydestination =",
                "inet_interfaces = 127.0.0.1",
                "inet_protocols = ipv4",
                "mynetworks = 127.0.0.0/8",
                "smtpd_relay_restrictions = permit_mynetworks, reject",
                "virtual_mailbox_domains = " + DOMAIN,
                "virtual_mailbox_base = " + vmail,
                "virtual_mailbox_maps = texthash:" + os.path.join(self.dir, "vmailbox"),
                "virtual_uid_maps = static:%d" % VUID,
                "virtual_gid_maps = static:%d" % VGID,
                "virtual_minimum_uid = 100",
                "virtual_mailbox_limit = 0",
                "virtual_destination_concurrency_limit = 4",
                "message_size_limit = 52428800",
                "default_transport = error:no outside mail in this test",
                "relay_transport = error:no outside mail in this test",
                "smtp_dns_support_level = disabled",
                "queue_run_delay = 1s",
                "minimal_backoff_time = 1s",
                "maximal_backoff_time = 2s",
                "in_flow_delay = 0",
                "enable_long_queue_ids = yes",
                "maillog_file = " + self.log_path,
                "maillog_file_prefixes = " + area.dir,
                "smtputf8_enable = no",
                "biff = no",
                "",
            ]))
        with open("/etc/postfix/master.cf") as src, \
                open(os.path.join(self.dir, "master.cf"), "w") as f:
            have_postlog = False
            for line in src:
                have_postlog = have_postlog or line.startswith("postlog ")
                if line.startswith("smtp ") and " inet " in line:
                    line = "127.0.0.1:%d inet n - n - - smtpd\n" % self.port
                elif line.split()[:1] and line.split()[0] in ("submission", "smtps", "628"):
                    continue
                else:
                    parts = line.split()  # no chroot: the private queue is elsewhere
                    if len(parts) >= 8 and not line[0].isspace() and parts[1] in (
                            "unix", "inet", "fifo", "pass", "unix-dgram"):
                        parts[4] = "n"
                        line = " ".join(parts) + "\n"
                f.write(line)
            if not have_postlog:
                f.write("postlog unix-dgram n - n - 1 postlogd\n")

    def start(self):
        r = subprocess.run(["postfix", "-c", self.dir, "start"], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("postfix start: " + r.stdout + r.stderr)
        self.started = True
        wait_port(self.port)

    def stop(self):
        if not self.started:
            return
        subprocess.run(["postfix", "-c", self.dir, "stop"], capture_output=True, timeout=60)
        kill_pidfile(os.path.join(self.spool, "pid", "master.pid"))
        self.started = False

    def statuses(self):
        """Message-ID -> list of statuses (sent, deferred, bounced) from the log."""
        qid_mid, out = {}, {}
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    m = re.search(r": ([0-9A-Za-z]{6,}): message-id=<([^>]*)>", line)
                    if m:
                        qid_mid[m.group(1)] = m.group(2)
                        continue
                    m = re.search(r": ([0-9A-Za-z]{6,}): to=<[^>]*>.*?, status=(\w+)", line)
                    if m:
                        out.setdefault(qid_mid.get(m.group(1), "?" + m.group(1)), []).append(
                            m.group(2))
        except FileNotFoundError:
            pass
        return out

    def queue_empty(self):
        r = subprocess.run(["postqueue", "-c", self.dir, "-p"], capture_output=True, text=True,
                           timeout=60)
        return "Mail queue is empty" in r.stdout


class Pop3d:
    """coffer-pop3d serving VMAIL/%n/Maildir of one box's mount."""

    def __init__(self, area, vmail, tag):
        self.port = free_port()
        passwd = area.path("pop3d-%s.passwd" % tag)
        with open(passwd, "w") as f:
            f.write("%s@%s:{PLAIN}%s:%d:%d::::\n" % (USER, DOMAIN, PASSWORD, VUID, VGID))
        conf = area.path("pop3d-%s.toml" % tag)
        with open(conf, "w") as f:
            f.write('[listen]\nplain = ["127.0.0.1:%d"]\n[server]\nthreads = 2\n'
                    '[auth]\npasswd_file = "%s"\nmail_location = "%s/%%n/Maildir"\n'
                    'failure_delay_ms = 50\nfailure_delay_max_ms = 100\n'
                    '[pop3]\nmark_seen = true\ncreate_maildir = false\n[log]\nlevel = "info"\n'
                    % (self.port, passwd, vmail))
        self.log_path = area.path("pop3d-%s.log" % tag)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([POP3D, "-c", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("coffer-pop3d exited: " + self.read_log())
            try:
                p = poplib.POP3("127.0.0.1", self.port, timeout=5)
                p.quit()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("coffer-pop3d does not answer: " + self.read_log())

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def smtp_message(i):
    mid = "flow-%d@boxes.coffer.test" % i
    return mid, ("From: sender@example.org\nTo: %s@%s\nSubject: flow %d\n"
                 "Date: Sun, 22 Nov 2026 18:00:00 +0000\nMessage-ID: <%s>\n\n" %
                 (USER, DOMAIN, i, mid)).encode() + \
        (hashlib.sha512(mid.encode()).hexdigest().encode() + b"\n") * (4 + i % 40)


class PostfixPop3Test(BoxesTestCase):
    N = int(os.environ.get("COFFER_BOXES_MESSAGES", "200"))

    def test_postfix_on_a_pop3_on_b_propagation(self):
        a = self.mount("A")
        b = self.mount("B")
        vmail_a = os.path.join(a.mnt, "vmail")
        vmail_b = os.path.join(b.mnt, "vmail")
        md_a = os.path.join(vmail_a, USER, "Maildir")
        md_b = os.path.join(vmail_b, USER, "Maildir")
        os.chmod(a.mnt, 0o755)
        for p in (vmail_a, os.path.dirname(md_a), md_a, md_a + "/tmp", md_a + "/new",
                  md_a + "/cur"):
            os.makedirs(p, exist_ok=True)
            os.chown(p, VUID, VGID)
        # B follows: the Maildir appears there within about a second
        deadline = time.time() + 10
        while not os.path.isdir(md_b + "/cur") and time.time() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.isdir(md_b + "/cur"), "B does not see the Maildir made on A")

        postfix = Postfix(self.area, vmail_a)
        self.cleanups.append(postfix.stop)
        postfix.start()
        pop = Pop3d(self.area, vmail_b, "B")
        self.cleanups.append(pop.stop)

        sent = dict(smtp_message(i) for i in range(self.N))   # Message-ID -> bytes submitted
        lock = threading.Lock()
        seen_a = {}        # unique name -> time A first listed it in new/
        content_a = {}     # unique name -> sha256 of the file on A
        seen_b = {}        # unique name -> time B listed it and read the same content
        deleted_at = {}    # unique name -> time QUIT was sent on B after DELE
        gone_a = {}        # unique name -> time A lists it in neither new/ nor cur/
        retrieved = []     # Message-IDs retrieved over POP3 (every RETR)
        problems = []
        stop = threading.Event()

        def base(name):
            return name.split(":", 1)[0]

        def watch_a():
            while not stop.is_set():
                now = time.time()
                try:
                    new = os.listdir(md_a + "/new")
                    cur = os.listdir(md_a + "/cur")
                except OSError as e:
                    problems.append("listing on A: %s" % e)
                    return
                present = {base(n) for n in new + cur}
                for n in new:
                    if n in seen_a:
                        continue
                    try:
                        with open(os.path.join(md_a, "new", n), "rb") as f:
                            digest = hashlib.sha256(f.read()).hexdigest()
                    except FileNotFoundError:
                        digest = None  # moved on B already: B's read checks it against sent
                    with lock:
                        if n in gone_a:
                            problems.append("%s is back on A after it was deleted" % n)
                        seen_a[n] = now
                        content_a[n] = digest
                with lock:
                    for n in list(deleted_at):
                        if n not in gone_a and n not in present:
                            gone_a[n] = now
                        elif n in gone_a and n in present:
                            problems.append("%s is back on A after it was gone" % n)
                time.sleep(0.01)

        def check_content(data):
            m = MID_RE.search(data)
            mid = m.group(1).decode() if m else None
            return mid, mid in sent and data.replace(b"\r\n", b"\n").endswith(sent[mid])

        def watch_b():
            while not stop.is_set():
                for folder in ("new", "cur"):
                    try:
                        names = os.listdir(os.path.join(md_b, folder))
                    except OSError as e:
                        problems.append("listing on B: %s" % e)
                        return
                    for n in names:
                        u = base(n)
                        if u in seen_b:
                            continue
                        try:
                            with open(os.path.join(md_b, folder, n), "rb") as f:
                                data = f.read()
                        except FileNotFoundError:
                            continue
                        now = time.time()
                        mid, ok = check_content(data)
                        with lock:
                            want = content_a.get(u)
                        if not ok or (want and hashlib.sha256(data).hexdigest() != want):
                            problems.append("B read %s (%s) with the wrong content" % (n, mid))
                        seen_b[u] = now
                time.sleep(0.01)

        def pop_loop():
            while True:
                last = stop.is_set()
                try:
                    p = poplib.POP3("127.0.0.1", pop.port, timeout=30)
                    p.user("%s@%s" % (USER, DOMAIN))
                    p.pass_(PASSWORD)
                    _, listing, _ = p.uidl()
                    uids = [(int(x.split()[0]), x.split()[1].decode()) for x in listing]
                    for num, uid in uids:
                        _, lines, _ = p.retr(num)
                        data = b"\r\n".join(lines) + b"\r\n"
                        mid, ok = check_content(data)
                        if not ok:
                            problems.append("POP3 RETR of %s (%s): wrong content" % (uid, mid))
                        retrieved.append(mid)
                        p.dele(num)
                    t = time.time()
                    p.quit()
                    with lock:
                        for _, uid in uids:
                            deleted_at[uid] = t
                except (OSError, poplib.error_proto) as e:
                    problems.append("POP3 session: %s" % e)
                if last:
                    return
                time.sleep(0.3)

        threads = [threading.Thread(target=f) for f in (watch_a, watch_b)]
        popper = threading.Thread(target=pop_loop)
        for t in threads + [popper]:
            t.start()
        try:
            t_send = time.time()
            with smtplib.SMTP("127.0.0.1", postfix.port, timeout=60) as s:
                for mid, m in sent.items():
                    s.sendmail("sender@example.org", ["%s@%s" % (USER, DOMAIN)],
                               m.replace(b"\n", b"\r\n"))
                    time.sleep(0.03)
            say("%d messages submitted in %.1f s" % (self.N, time.time() - t_send))
            deadline = time.time() + 120
            while time.time() < deadline:
                st = postfix.statuses()
                if sum(1 for mid in sent if "sent" in st.get(mid, [])) == self.N and \
                        len(gone_a) >= self.N:
                    break
                time.sleep(0.2)
        finally:
            stop.set()
            popper.join(timeout=60)
            for t in threads:
                t.join(timeout=60)

        st = postfix.statuses()
        self.assertEqual(problems, [])
        bounced = [mid for mid, s in st.items() if "bounced" in s]
        self.assertEqual(bounced, [])
        self.assertEqual(sorted(mid for mid in sent if "sent" in st.get(mid, [])), sorted(sent),
                         "Postfix did not deliver everything")
        self.assertTrue(postfix.queue_empty())
        # every message was retrieved exactly once over POP3 on B
        dups = sorted({m for m in retrieved if retrieved.count(m) > 1})
        self.assertEqual(dups, [], "retrieved twice")
        self.assertEqual(sorted(retrieved), sorted(sent))
        self.assertEqual(len(seen_a), self.N, "A saw %d deliveries" % len(seen_a))
        a_to_b = [seen_b[n] - seen_a[n] for n in seen_a if n in seen_b]
        b_to_a = [gone_a[n] - deleted_at[n] for n in deleted_at if n in gone_a]
        self.assertEqual(len(a_to_b), self.N, "B saw %d of the deliveries" % len(a_to_b))
        self.assertEqual(len(b_to_a), self.N, "A saw %d of the deletes" % len(b_to_a))
        figures("A->B (Postfix on A, listed+read on B)", [max(0.0, x) for x in a_to_b])
        figures("B->A (DELE+QUIT on B, unlisted on A)", [max(0.0, x) for x in b_to_a])
        self.assertLess(percentile(a_to_b, 0.99), P99_BOUND, "A->B p99 over the bound")
        self.assertLess(percentile(b_to_a, 0.99), P99_BOUND, "B->A p99 over the bound")

        # and is gone from both boxes, tmp/ included: Postfix unlinked each tmp/ name on A
        # right after link() into new/, and B deleted the new/ (then cur/) name
        tree = self.converge([md_a, md_b])
        self.assertEqual(tree, {})
        for md, box in ((md_a, "A"), (md_b, "B")):
            left = sorted(os.listdir(md + "/tmp"))
            self.assertEqual(left, [], "%d deleted messages are still in tmp/ on %s (%s): an "
                             "unlink of the tmp/ name on A undone by B's rename of the new/ "
                             "name of the same file" % (len(left), box, ", ".join(
                                 MID_RE.search(open(os.path.join(md, "tmp", n), "rb").read())
                                 .group(1).decode() for n in left[:3])))


# ---------------------------------------------------------------------------------------------
# 2. Three boxes: rename/flag/delete storms at once

FLAGS = (":2,S", ":2,RS", ":2,FS", ":2,FRS", ":2,DS", ":2,T")


class Storm(threading.Thread):
    """Rounds over every message this box lists, in the same order as the other boxes, for
    `seconds`: move new/ -> cur/ with a flag suffix, rename cur/ to another suffix, sometimes
    delete. A short pause between operations lets the boxes see each other's changes while
    the storm goes on (each box then acts on a view that is partly current, partly stale)."""

    def __init__(self, md, box, seed, seconds, delete_share):
        super().__init__()
        self.md, self.box, self.seconds = md, box, seconds
        self.rnd = random.Random(seed)
        self.delete_share = delete_share
        self.deleted = set()   # unique names whose unlink returned 0 here
        self.renamed = 0
        self.enoent = 0
        self.errors = []

    def run(self):
        end = time.time() + self.seconds
        try:
            while time.time() < end:
                listing = [("new", n) for n in os.listdir(self.md + "/new")] + \
                          [("cur", n) for n in os.listdir(self.md + "/cur")]
                listing.sort(key=lambda x: x[1])
                for folder, name in listing:
                    self.step(folder, name)
                    time.sleep(0.01)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append("%s: %r" % (self.box, e))

    def step(self, folder, name):
        u = name.split(":", 1)[0]
        src = os.path.join(self.md, folder, name)
        try:
            if folder == "cur" and self.rnd.random() < self.delete_share:
                os.unlink(src)
                self.deleted.add(u)
                return
            flags = [f for f in FLAGS if u + f != name]
            os.rename(src, os.path.join(self.md, "cur", u + self.rnd.choice(flags)))
            self.renamed += 1
        except OSError as e:
            if e.errno != errno.ENOENT:  # another box moved it first: the local view moved on
                self.errors.append("%s %s %s: %s" % (self.box, folder, name, e))
            self.enoent += 1


class StormTest(BoxesTestCase):
    MESSAGES = 60
    DELETE_SHARE = float(os.environ.get("COFFER_BOXES_STORM_DELETES", "0.01"))

    def test_three_boxes_rename_flag_and_delete_at_once(self):
        boxes = [self.mount(b) for b in ("A", "B", "C")]
        md_a = maildir(boxes[0].mnt)
        want = {}
        for i in range(self.MESSAGES):
            mid = "storm-%d@boxes" % i
            want[mid] = body_for(mid, 300 + 97 * i)
            deliver_link(md_a, "17000%05d.M%dP1.storm" % (i, i), want[mid])
        # a third of them already read (in cur/) before the storm
        for n in sorted(os.listdir(md_a + "/new"))[: self.MESSAGES // 3]:
            os.rename(os.path.join(md_a, "new", n), os.path.join(md_a, "cur", n + ":2,S"))
        mds = [os.path.join(m.mnt, "alice") for m in boxes]
        before = self.converge(mds, settle=1.5)
        self.assertEqual(len(before), self.MESSAGES)

        storms = [Storm(md, b, seed=i, seconds=6, delete_share=self.DELETE_SHARE)
                  for i, (md, b) in enumerate(zip(mds, "ABC"))]
        t = time.time()
        for s in storms:
            s.start()
        for s in storms:
            s.join(timeout=120)
        say("storm: %.1f s; renames %s, deletes %s, ENOENT (moved by another box) %s" % (
            time.time() - t, [s.renamed for s in storms], [len(s.deleted) for s in storms],
            [s.enoent for s in storms]))
        for s in storms:
            self.assertEqual(s.errors, [])
        self.assertGreater(sum(s.renamed for s in storms), self.MESSAGES * 3)
        self.assertGreater(sum(s.enoent for s in storms), 0,
                           "no box ever acted on a message another box had moved: no contention")
        deleted = set().union(*(s.deleted for s in storms))
        if self.DELETE_SHARE > 0:
            self.assertGreater(len(deleted), 0, "the storm deleted nothing")

        for m in boxes:
            self.wait_outbox_empty(m)
        tree = self.converge(mds, limit=20)
        unreadable = sorted(k for k, (d, _) in tree.items() if d.startswith("unreadable"))
        self.assertEqual(unreadable, [], "listed on every box but unreadable (deleted by a box: "
                         "%s)" % [k.split("/", 1)[1].split(":", 1)[0] in deleted
                                  for k in unreadable])
        msgs = by_message(tree)
        doubled = {mid: names for mid, names in msgs.items() if len(names) > 1}
        self.assertEqual(doubled, {}, "messages under more than one name")
        names_by_unique = {}
        for name in tree:
            names_by_unique.setdefault(name.split("/", 1)[1].split(":", 1)[0], []).append(name)
        self.assertEqual({u: n for u, n in names_by_unique.items() if len(n) > 1}, {})
        for name, (digest, mid) in tree.items():
            self.assertEqual(digest, hashlib.sha256(want[mid]).hexdigest(), name)
        deleted_mids = {"storm-%d@boxes" % int(u.split(".M", 1)[1].split("P", 1)[0])
                        for u in deleted}
        lost = sorted(set(want) - set(msgs) - deleted_mids)
        self.assertEqual(lost, [], "messages no box deleted are gone")
        back = sorted(deleted_mids & set(msgs))
        say("deleted by some box: %d; of those still there (a concurrent rename on another "
            "box won): %d" % (len(deleted_mids), len(back)))
        self.assertEqual(os.listdir(md_a + "/tmp"), [])
        self.assertEqual(self.rebuilt("D"), tree, "a box rebuilt from the nodes differs")
        for m in boxes:
            self.verify_clean(m)


class RaceTest(BoxesTestCase):
    """Two boxes change the same thing at once, each before it heard of the other's change (a
    box follows the feeds about every second): the smallest forms of what the storm and the
    Postfix/POP3 test run into. Every outcome must be one that some order of the two
    operations gives."""

    def test_delete_on_one_box_while_another_flags_or_touches(self):
        """A deletes a message while B flags it (rename) or changes its times. Either order is
        a fine outcome; a message that stays listed but whose content is gone is not."""
        a = self.mount("A")
        b = self.mount("B")
        md_a = maildir(a.mnt)
        md_b = os.path.join(b.mnt, "alice")
        want = {}
        for n in ("flagged", "touched", "control"):
            want[n] = body_for(n + "@boxes")
            deliver_link(md_a, n, want[n])
            os.rename(os.path.join(md_a, "new", n), os.path.join(md_a, "cur", n + ":2,S"))
        self.converge([md_a, md_b], settle=1.5)
        # the control: B flags first, A deletes once it saw the flag
        os.rename(os.path.join(md_b, "cur", "control:2,S"),
                  os.path.join(md_b, "cur", "control:2,RS"))
        self.converge([md_a, md_b], settle=1.2)
        os.unlink(os.path.join(md_a, "cur", "control:2,RS"))
        # at once: delete on A, flag (rename) or touch (utime) on B
        os.unlink(os.path.join(md_a, "cur", "flagged:2,S"))
        os.rename(os.path.join(md_b, "cur", "flagged:2,S"),
                  os.path.join(md_b, "cur", "flagged:2,RS"))
        os.unlink(os.path.join(md_a, "cur", "touched:2,S"))
        os.utime(os.path.join(md_b, "cur", "touched:2,S"), (1234567890, 1234567890))
        for m in (a, b):
            self.wait_outbox_empty(m)
        tree = self.converge([md_a, md_b], limit=10)
        say("after the races: %s" % sorted(tree))
        self.assertEqual([k for k in tree if k.startswith("cur/control")], [])
        for k, (digest, _) in tree.items():
            n = k.split("/", 1)[1].split(":", 1)[0]
            self.assertEqual(digest, hashlib.sha256(want[n]).hexdigest(),
                             "%s is listed on both boxes but its content is gone" % k)
        self.assertEqual(self.rebuilt("C"), tree)

    def test_unlink_of_the_tmp_name_while_another_box_moves_the_new_name(self):
        """Postfix on A: link tmp/T -> new/X, unlink tmp/T. POP3 on B: RETR moves new/X to
        cur/X:2,S, then DELE. Both names belong to one inode; B's move must not bring back
        the tmp/ name A removed (nor keep the deleted message in tmp/ forever)."""
        a = self.mount("A")
        b = self.mount("B")
        md_a = maildir(a.mnt)
        md_b = os.path.join(b.mnt, "alice")
        self.converge([md_a, md_b], settle=1.2)
        body = body_for("linked@boxes")
        with open(os.path.join(md_a, "tmp", "T"), "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.link(os.path.join(md_a, "tmp", "T"), os.path.join(md_a, "new", "X"))
        deadline = time.time() + 10
        while not os.path.exists(os.path.join(md_b, "new", "X")) and time.time() < deadline:
            time.sleep(0.01)
        os.unlink(os.path.join(md_a, "tmp", "T"))
        os.rename(os.path.join(md_b, "new", "X"), os.path.join(md_b, "cur", "X:2,S"))
        self.converge([md_a, md_b], settle=1.5)
        for md, box in ((md_a, "A"), (md_b, "B")):
            self.assertEqual(os.listdir(os.path.join(md, "tmp")), [],
                             "box %s: the tmp/ name A unlinked is back" % box)
        os.unlink(os.path.join(md_b, "cur", "X:2,S"))
        self.assertEqual(self.converge([md_a, md_b], settle=1.5), {})
        for md, box in ((md_a, "A"), (md_b, "B")):
            self.assertEqual(os.listdir(os.path.join(md, "tmp")), [],
                             "box %s: the deleted message is still in tmp/" % box)


    def two_boxes_with_big_messages(self, names):
        a = self.mount("A")
        b = self.mount("B")
        md_a = maildir(a.mnt)
        md_b = os.path.join(b.mnt, "alice")
        big = {n: body_for(n + "@boxes", 1 << 20) for n in names}
        for n, body in big.items():
            deliver_link(md_a, n, body)
        wait_listed(os.path.join(md_b, "new"), big)  # B has read none of their content
        return md_a, md_b, big

    def test_a_message_open_on_one_box_stays_readable_when_another_deletes_it(self):
        """B reads a large message (RETR) while A deletes it (a user with clients on two boxes,
        or moved between them): as on a local filesystem the open file stays readable to the
        end."""
        md_a, md_b, big = self.two_boxes_with_big_messages(["reading"])
        with open(os.path.join(md_b, "new", "reading"), "rb") as f:
            head = f.read(4096)
            os.unlink(os.path.join(md_a, "new", "reading"))
            time.sleep(2.5)  # B has heard of the delete now
            try:
                rest = f.read()
            except OSError as e:
                self.fail("B's open file became unreadable after A deleted it: %s" % e)
        self.assertEqual(head + rest, big["reading"])

    def test_a_message_still_listed_on_one_box_after_another_deleted_it(self):
        """A message B still lists because it has not heard of A's delete yet opens whole or
        not at all (ENOENT), never with an I/O error."""
        md_a, md_b, big = self.two_boxes_with_big_messages(["listed"])
        os.unlink(os.path.join(md_a, "new", "listed"))
        time.sleep(0.3)
        try:
            with open(os.path.join(md_b, "new", "listed"), "rb") as f:
                self.assertEqual(f.read(), big["listed"])
        except FileNotFoundError:
            pass
        except OSError as e:
            self.fail("B opened a message A had deleted 0.3 s before: %s" % e)

    def test_first_mail_for_a_new_user_on_two_boxes_at_once(self):
        """Two MX boxes get the first message for a new user at the same moment: each creates
        the Maildir (mkdir -p, as Postfix virtual(8) and Dovecot do) and delivers into it.
        Both acknowledged messages must be reachable on both boxes."""
        a = self.mount("A")
        b = self.mount("B")
        time.sleep(1.2)
        errors = []

        def first_mail(m, tag):
            try:
                md = maildir(m.mnt, "bob")
                deliver_link(md, "first-from-" + tag, body_for("first-%s@boxes" % tag))
            except OSError as e:
                errors.append("%s: %s" % (tag, e))

        threads = [threading.Thread(target=first_mail, args=(m, tag)) for m, tag in
                   ((a, "A"), (b, "B"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        tree = self.converge([os.path.join(a.mnt, "bob"), os.path.join(b.mnt, "bob")])
        self.assertEqual(sorted(tree), ["new/first-from-A", "new/first-from-B"],
                         "an acknowledged first message for bob is not reachable")


# ---------------------------------------------------------------------------------------------
# 3. A box killed -9 while another deletes

class CrashTest(BoxesTestCase):
    MESSAGES = 120

    def test_killed_box_comes_back_without_resurrecting_or_missing_deletes(self):
        a = self.mount("A")
        b = self.mount("B")
        md_a = maildir(a.mnt)
        md_b = os.path.join(b.mnt, "alice")
        _, id_b = self.boxes(b)
        want = {}
        for i in range(self.MESSAGES):
            name = "17100%05d.M%dP2.crash" % (i, i)
            want[name] = body_for(name, 200 + 31 * i)
            deliver_link(md_a, name, want[name])
        self.converge([md_a, md_b], settle=1.5)
        names = sorted(want)
        doomed = names[:90]
        # B touches some of the messages A is about to delete: reads them (kernel references),
        # moves a few new/ -> cur/ (acknowledged) and changes the times of others (lazy: in
        # B's outbox, with versions older than A's deletes)
        for n in doomed[:20]:
            with open(os.path.join(md_b, "new", n), "rb") as f:
                self.assertEqual(f.read(), want[n])
        for n in doomed[20:30]:
            os.rename(os.path.join(md_b, "new", n), os.path.join(md_b, "cur", n + ":2,S"))
        for n in doomed[30:40] + names[100:105]:
            os.utime(os.path.join(md_b, "new", n), (1234567890, 1234567890))
        self.converge([md_a, md_b], settle=1.2)

        deleted = []
        errors = []

        def delete_all():
            for n in doomed:
                for folder, name in (("new", n), ("cur", n + ":2,S")):
                    try:
                        os.unlink(os.path.join(md_a, folder, name))
                        deleted.append(n)
                        break
                    except FileNotFoundError:
                        continue
                    except OSError as e:
                        errors.append("%s: %s" % (n, e))
                        break
                time.sleep(0.01)

        deleter = threading.Thread(target=delete_all)
        deleter.start()
        while len(deleted) < 30 and deleter.is_alive():
            time.sleep(0.005)
        # B's last changes (more lazy time changes) and the crash in the middle of A's deletes
        for n in doomed[60:70]:
            try:
                os.utime(os.path.join(md_b, "new", n), (1234567891, 1234567891))
            except FileNotFoundError:
                pass
        self.crash(b)
        say("B killed -9 after A deleted %d of %d" % (len(deleted), len(doomed)))
        deleter.join()
        self.assertEqual(errors, [])
        self.assertEqual(sorted(deleted), sorted(doomed))
        sync_dir(md_a + "/new")
        sync_dir(md_a + "/cur")
        self.wait_outbox_empty(a)
        survivors = {n for n in names if n not in doomed}

        b = self.mount("B")
        md_b = os.path.join(b.mnt, "alice")
        # the same box again (its STATE_DIR keeps its id), not a new one
        seen, me = self.boxes(b)
        self.assertEqual(me, id_b)
        self.assertEqual(len(seen), 2, seen)
        self.wait_outbox_empty(b)
        tree = self.converge([md_a, md_b])
        units = {k.split("/", 1)[1].split(":", 1)[0] for k in tree}
        self.assertEqual(sorted(units & set(doomed)), [], "deleted messages came back")
        self.assertEqual(sorted(survivors - units), [], "messages lost")
        # nothing comes back later either (B's outbox is replayed by now)
        time.sleep(2.0)
        self.assertEqual(snapshot(md_a), tree)
        self.assertEqual(snapshot(md_b), tree)

        # B's own writes work: deliveries, a move, a delete; A sees them
        for i in range(10):
            name = "17200%05d.M%dP3.afterb" % (i, i)
            want[name] = body_for(name)
            deliver_link(md_b, name, want[name])
        first = sorted(survivors)[0]
        src = [k for k in tree if k.split("/", 1)[1].startswith(first)][0]
        os.rename(os.path.join(md_b, src), os.path.join(md_b, "cur", first + ":2,RS"))
        last = sorted(survivors)[-1]
        src = [k for k in tree if k.split("/", 1)[1].startswith(last)][0]
        os.unlink(os.path.join(md_b, src))
        tree = self.converge([md_a, md_b])
        self.assertIn("cur/" + first + ":2,RS", tree)
        self.assertNotIn(last, {k.split("/", 1)[1].split(":", 1)[0] for k in tree})
        self.assertEqual(len(tree), len(survivors) - 1 + 10)
        self.wait_outbox_empty(b)
        self.assertEqual(self.rebuilt("C"), tree)


# ---------------------------------------------------------------------------------------------
# 4. Node faults while both boxes deliver

class Writers:
    """`threads` threads deliver into one Maildir: tmp/, write, close, rename into new/. A
    message is acknowledged when close and rename returned 0."""

    def __init__(self, md, tag, threads):
        self.md, self.tag = md, tag
        self.acked = {}
        self.failed = {}  # errno name -> count (not acknowledged: may or may not be there)
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(j,)) for j in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self, j):
        i = 0
        while not self.stopping.is_set():
            name = "%d.M%dQ%d.%s" % (1730000000 + i, i, j, self.tag)
            body = body_for(name, 200 + (i * 977) % 9000)
            tmp = os.path.join(self.md, "tmp", name)
            i += 1
            try:
                fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
                try:
                    os.write(fd, body)
                finally:
                    os.close(fd)
                os.rename(tmp, os.path.join(self.md, "new", name))
            except OSError as e:
                with self.lock:
                    if e.errno in (errno.EAGAIN, errno.ETIMEDOUT):
                        k = errno.errorcode[e.errno]
                        self.failed[k] = self.failed.get(k, 0) + 1
                    else:
                        self.errors.append("%s: %s" % (name, e))
                time.sleep(0.05)
                continue
            with self.lock:
                self.acked[name] = body

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=60)


class NodeFaultTest(BoxesTestCase):
    def test_node_killed_and_playing_dead_while_two_boxes_deliver(self):
        a = self.mount("A")
        b = self.mount("B")
        md_a = maildir(a.mnt)
        deadline = time.time() + 10
        while not os.path.isdir(os.path.join(b.mnt, "alice", "tmp")) and time.time() < deadline:
            time.sleep(0.05)
        md_b = os.path.join(b.mnt, "alice")
        wa = Writers(md_a, "boxA", 4).start()
        wb = Writers(md_b, "boxB", 4).start()
        events = []
        try:
            def at(t, what):
                time.sleep(max(0.0, t - (time.time() - t0)))
                events.append("%.1fs %s (acked so far: A %d, B %d)" % (
                    time.time() - t0, what, len(wa.acked), len(wb.acked)))
            # one node out, then two for a moment (writes cannot reach W=2: they fail with
            # EAGAIN and are rolled back), then one again, then none
            t0 = time.time()
            at(1.5, "n1 killed -9")
            self.nodes.kill("n1")
            at(3.5, "n2 plays dead (silent): two of three out")
            ok, out = self.nodes.play_dead("n2", "silent")
            self.assertTrue(ok, out)
            at(5.5, "n1 restarted")
            self.nodes.start("n1")
            at(7.5, "n2 back (play-dead off)")
            ok, out = self.nodes.play_dead("n2", "off")
            self.assertTrue(ok, out)
            at(9.5, "writers stop")
        finally:
            wa.stop()
            wb.stop()
        for e in events:
            say(e)
        say("acknowledged: A %d, B %d; not acknowledged: A %s, B %s" % (
            len(wa.acked), len(wb.acked), wa.failed, wb.failed))
        self.assertEqual(wa.errors + wb.errors, [])
        self.assertGreater(len(wa.acked), 50)
        self.assertGreater(len(wb.acked), 50)
        self.assertGreater(sum(wa.failed.values()) + sum(wb.failed.values()), 0,
                           "nothing failed while two nodes were out: the test proves nothing")
        acked = dict(wa.acked)
        acked.update(wb.acked)

        for m in (a, b):
            self.wait_outbox_empty(m)
        tree = self.converge([md_a, md_b])

        def check(tree, where):
            missing = [n for n in acked if "new/" + n not in tree]
            self.assertEqual(missing[:10], [], "%s: %d acknowledged messages missing" % (
                where, len(missing)))
            for n, body in acked.items():
                self.assertEqual(tree["new/" + n][0], hashlib.sha256(body).hexdigest(),
                                 "%s: %s" % (where, n))
            # a delivery that failed was rolled back: new/ holds exactly the acknowledged ones
            self.assertEqual(sorted(tree), sorted("new/" + n for n in acked), where)

        check(tree, "A and B")
        self.verify_clean(a)
        self.assertEqual(self.rebuilt("C"), tree, "a new box differs")
        check(tree, "rebuilt")


# ---------------------------------------------------------------------------------------------
# 5. A second box mounts (empty STATE_DIR) while the first is mounted

class SecondBoxTest(BoxesTestCase):
    def test_second_box_rebuilds_while_the_first_is_mounted(self):
        a = self.mount("A")
        md_a = maildir(a.mnt)
        want = {}

        def put(md, name):
            want[name] = body_for(name)
            deliver_link(md, name, want[name])

        for i in range(20):
            put(md_a, "before.%d" % i)
        # A goes on delivering while B mounts and rebuilds
        stop = threading.Event()
        errors = []

        def keep_delivering():
            i = 0
            while not stop.is_set():
                try:
                    put(md_a, "during.%d" % i)
                except OSError as e:
                    errors.append(str(e))
                    return
                i += 1

        t = threading.Thread(target=keep_delivering)
        t.start()
        try:
            time.sleep(0.3)
            b = self.mount("B")
            self.assertIn("rebuilt from the storage nodes", b.read_log())
            time.sleep(0.5)
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        md_b = os.path.join(b.mnt, "alice")
        for i in range(10):
            put(md_b, "fromb.%d" % i)
            put(md_a, "froma.%d" % i)
        tree = self.converge([md_a, md_b])
        self.assertEqual(sorted(tree), sorted("new/" + n for n in want))
        for n, body in want.items():
            self.assertEqual(tree["new/" + n][0], hashlib.sha256(body).hexdigest(), n)
        # a move on each box, seen on the other
        os.rename(os.path.join(md_b, "new", "before.0"), os.path.join(md_b, "cur", "before.0:2,S"))
        os.rename(os.path.join(md_a, "new", "fromb.0"), os.path.join(md_a, "cur", "fromb.0:2,S"))
        tree = self.converge([md_a, md_b])
        self.assertIn("cur/before.0:2,S", tree)
        self.assertIn("cur/fromb.0:2,S", tree)
        for m in (a, b):
            self.wait_outbox_empty(m)
        for m in (a, b):
            self.verify_clean(m)
        # both boxes are registered, each seen by the other, with its own mount point
        seen_a, id_a = self.boxes(a)
        seen_b, id_b = self.boxes(b)
        self.assertNotEqual(id_a, id_b)
        self.assertEqual(sorted(seen_a), sorted([id_a, id_b]))
        self.assertEqual(sorted(seen_b), sorted([id_a, id_b]))
        self.assertEqual(seen_a[id_b][0], "ACTIVE")
        self.assertTrue(seen_a[id_b][1].endswith(":" + b.mnt), seen_a[id_b])
        self.assertTrue(seen_b[id_a][1].endswith(":" + a.mnt), seen_b[id_a])


if __name__ == "__main__":
    os.environ["PATH"] = "/usr/sbin:/sbin:" + os.environ.get("PATH", "/usr/bin:/bin")
    if os.geteuid() != 0:
        print("needs root")
        sys.exit(1)
    # meson sends SIGTERM on timeout: unmount and stop everything on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    unittest.main(verbosity=2, warnings="ignore")
