#!/usr/bin/env python3
"""Postfix delivers into cofferfs on three storage nodes while the nodes fail (suite 'mount').

The durability contract, checked end to end with real programs: a message Postfix logs as delivered
(status=sent) is in the mailstore exactly once and byte-identical, whatever happened to the
storage nodes or to cofferfs meanwhile, and nothing ever bounces because a node was down (a write
that cannot reach W nodes fails with EAGAIN, which Postfix local(8) and virtual(8) defer).

  1. three coffer-node processes (CURVE keys, an admin key for play-dead) on 127.0.0.1, R=3, W=2;
     cofferfs mounted on them;
  2. a private Postfix instance (its own config, queue, port and log file) delivering with
     local(8) (alias -> Maildir/) and virtual(8) into Maildirs on the mount, retrying within
     seconds;
  3. defer, never bounce: with 2 of 3 nodes killed, mail is deferred and not in the Maildir; once
     they are back it is delivered exactly once;
  4. chaos: N messages (COFFER_CHAOS_MESSAGES, default 2000; some span several 64 KiB chunks) are
     submitted over SMTP while nodes are killed -9 and restarted or play dead (silent, refuse,
     slow, corrupt) at random, mostly one at a time, sometimes two;
  5. every message logged sent is there exactly once and byte-identical, none bounced, and chaos
     did cause deferrals;
  6. cofferfs itself is killed -9 in the middle of more deliveries and remounted on the same
     STATE_DIR; the same checks, and the outbox drains to 0;
  7. disaster recovery: the STATE_DIR is deleted and a fresh one rebuilt from the nodes holds
     every delivered message, byte-identical; `cofferctl verify` agrees.

Everything lives in one temp dir, binds 127.0.0.1 only and is stopped by PID. Needs root,
/dev/fuse and Postfix (scripts/setup.sh). Progress lines carry the elapsed time; on failure the
tails of the cofferfs, node and Postfix logs are printed.

Environment: COFFERFS, COFFER_KEYTOOL, COFFER_NODE, COFFERCTL (the programs);
COFFER_CHAOS_MESSAGES (2000), COFFER_CHAOS_CRASH_MESSAGES (200), COFFER_CHAOS_MAX_SECONDS (150,
the longest chaos phase), COFFER_CHAOS_SEED (printed at start: rerun a failure with it),
COFFER_CHAOS_KEEP_ON_FAILURE=1 (keep the temp dir to look at), COFFER_CHAOS_LOCAL_ONLY=1 (a
development aid: no replicator, the node steps are skipped; never used by the test suite).
"""
import base64
import os
import pwd
import random
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import KEYTOOL, Mount, TempArea, free_port, kill_pidfile, wait_port  # noqa: E402

COFFER_NODE = os.environ.get("COFFER_NODE", "coffer-node")
COFFERCTL = os.environ.get("COFFERCTL", "cofferctl")
N_MESSAGES = int(os.environ.get("COFFER_CHAOS_MESSAGES", "2000"))
CRASH_MESSAGES = int(os.environ.get("COFFER_CHAOS_CRASH_MESSAGES", "200"))
CHAOS_MAX_S = float(os.environ.get("COFFER_CHAOS_MAX_SECONDS", "150"))
SEED = int(os.environ.get("COFFER_CHAOS_SEED", str(int(time.time()))))
# Development aid only: mount without the replicator (node assertions are skipped).
LOCAL_ONLY = os.environ.get("COFFER_CHAOS_LOCAL_ONLY") == "1"

VUID = VGID = 5000
DOMAIN_V = "example.test"      # virtual(8)
DOMAIN_L = "localhost.test"    # local(8), through aliases
LOCAL_USERS = ["chaosl1", "chaosl2", "chaosl3"]
VIRTUAL_USERS = ["alice", "bob"]
T0 = time.time()


def say(msg):
    print("[%6.1fs] %s" % (time.time() - T0, msg), flush=True)


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def tail(path, n=4000):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode(errors="replace")
    except OSError as e:
        return "(%s)" % e


# ---- storage nodes ------------------------------------------------------------------------------

def ctl(*args, timeout=30):
    return subprocess.run([COFFERCTL] + list(args), capture_output=True, text=True,
                          timeout=timeout)


class Node:
    """One coffer-node process; kill9() and start() reuse the same data dir and port."""

    def __init__(self, area, index, rconf):
        self.id = "n%d" % index
        self.port = free_port()
        self.dir = area.path("nodes", self.id)
        self.conf = area.path("nodes", self.id + ".toml")
        self.log_path = area.path("nodes", self.id + ".log")
        self.rconf = rconf
        self.admin_key = area.path("keys", "admin.key_secret")
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)
        with open(self.conf, "w") as f:
            f.write("\n".join([
                'node_id = "%s"' % self.id,
                'data_dir = "%s"' % self.dir,
                'listen = ["tcp://127.0.0.1:%d"]' % self.port,
                'secret_key_file = "%s"' % area.path("keys", self.id + ".key_secret"),
                'allowed_keys_file = "%s"' % area.path("keys", "allowed_boxes"),
                'admin_key_file = "%s"' % area.path("keys", "admin.key"),
                "map_size_mb = 4096",
                "heartbeat_ms = 500",
                "linger_ms = 200",
                'log_level = "info"',
                "",
            ]))

    def start(self, wait=True):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([COFFER_NODE, "--config", self.conf], stdout=log,
                                     stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        if wait:
            self.wait_up()

    def wait_up(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                # The port may still be held a moment after a kill -9: try again.
                time.sleep(0.3)
                self.start(wait=False)
                continue
            r = ctl("node", self.id, "ping", "--config", self.rconf, "--timeout", "1000")
            if r.returncode == 0:
                return
        raise Failure("node %s did not come up: %s" % (self.id, tail(self.log_path, 1500)))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        self.proc = None

    def play_dead(self, mode):
        r = ctl("node", self.id, "play-dead", *mode.split(), "--config", self.rconf, "--key",
                self.admin_key, "--timeout", "3000")
        return r.returncode == 0, (r.stdout + r.stderr).strip()


def make_cluster(area):
    keys = area.path("keys")
    os.makedirs(keys)
    os.chmod(keys, 0o700)
    for who in ("n1", "n2", "n3", "box", "admin"):
        subprocess.run([KEYTOOL, "curve-keygen", "--out", os.path.join(keys, who)], check=True,
                       stdout=subprocess.DEVNULL)
    shutil.copy(os.path.join(keys, "box.key"), os.path.join(keys, "allowed_boxes"))
    rconf = area.path("replicator.toml")
    os.makedirs(area.path("nodes"))
    nodes = [Node(area, i, rconf) for i in (1, 2, 3)]
    lines = [
        "box_id = 1",
        'secret_key_file = "%s"' % os.path.join(keys, "box.key_secret"),
        "replicas = 3",
        "write_quorum = 2",
        "write_timeout_ms = 1500",
        "read_timeout_ms = 1000",
        "admin_timeout_ms = 3000",
        "heartbeat_ms = 500",
    ]
    for n in nodes:
        lines += ["", "[[node]]", 'id = "%s"' % n.id,
                  'endpoint = "tcp://127.0.0.1:%d"' % n.port,
                  'public_key_file = "%s"' % os.path.join(keys, n.id + ".key")]
    with open(rconf, "w") as f:
        f.write("\n".join(lines) + "\n")
    for n in nodes:
        n.start(wait=False)
    for n in nodes:
        n.wait_up()
    return rconf, nodes


# ---- Postfix ------------------------------------------------------------------------------------

class Postfix:
    """A private Postfix instance on 127.0.0.1 (after tests/fs/mail_test.py), with short retry
    times so deferred mail is tried again within seconds."""

    def __init__(self, area, mnt):
        self.area = area
        self.dir = area.path("postfix")
        self.spool = area.path("pfspool")
        self.log_path = area.path("postfix.log")
        self.port = free_port()
        self.started = False
        for d in (self.dir, self.spool, area.path("pfdata")):
            os.makedirs(d)
        shutil.chown(area.path("pfdata"), "postfix", "postfix")
        nobody = pwd.getpwnam("nobody")
        self.maildirs = {}  # recipient -> Maildir path on the mount
        with open(os.path.join(self.dir, "aliases"), "w") as f:
            for u in LOCAL_USERS:
                md = os.path.join(mnt, "local", u, "Maildir")
                self.maildirs["%s@%s" % (u, DOMAIN_L)] = md
                f.write("%s %s/\n" % (u, md))  # texthash: "key value", no colon
                # local(8) delivers to a file named in a root-owned alias table as default_privs.
                for sub in ("tmp", "new", "cur"):
                    os.makedirs(os.path.join(md, sub))
                for p in (os.path.dirname(md), md, md + "/tmp", md + "/new", md + "/cur"):
                    os.chown(p, nobody.pw_uid, nobody.pw_gid)
            f.write("postmaster /dev/null\nMAILER-DAEMON /dev/null\n")
        vmail = os.path.join(mnt, "vmail")
        os.makedirs(vmail)
        os.chown(vmail, VUID, VGID)
        with open(os.path.join(self.dir, "vmailbox"), "w") as f:
            for u in VIRTUAL_USERS:
                f.write("%s@%s %s/Maildir/\n" % (u, DOMAIN_V, u))
                md = os.path.join(vmail, u, "Maildir")
                self.maildirs["%s@%s" % (u, DOMAIN_V)] = md
                for sub in ("tmp", "new", "cur"):
                    os.makedirs(os.path.join(md, sub))
                for p in (os.path.dirname(md), md, md + "/tmp", md + "/new", md + "/cur"):
                    os.chown(p, VUID, VGID)
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.write("\n".join([
                "compatibility_level = 3.6",
                "queue_directory = " + self.spool,
                "data_directory = " + area.path("pfdata"),
                "mail_owner = postfix",
                "myhostname = mx.coffer.test",
                "mydomain = coffer.test",
                "myorigin = " + DOMAIN_L,
                "mydestination = " + DOMAIN_L,
                "inet_interfaces = 127.0.0.1",
                "inet_protocols = ipv4",
                "mynetworks = 127.0.0.0/8",
                "smtpd_relay_restrictions = permit_mynetworks, reject",
                "alias_maps = texthash:" + os.path.join(self.dir, "aliases"),
                "alias_database =",
                "local_recipient_maps = $alias_maps",
                "default_privs = nobody",
                "virtual_mailbox_domains = " + DOMAIN_V,
                "virtual_mailbox_base = " + vmail,
                "virtual_mailbox_maps = texthash:" + os.path.join(self.dir, "vmailbox"),
                "virtual_uid_maps = static:%d" % VUID,
                "virtual_gid_maps = static:%d" % VGID,
                "virtual_minimum_uid = 100",
                "virtual_mailbox_limit = 0",
                "mailbox_size_limit = 0",
                "virtual_destination_concurrency_limit = 8",
                "local_destination_concurrency_limit = 2",
                "message_size_limit = 52428800",
                # Nothing leaves this machine; bounce notices (there should be none) die here.
                "default_transport = error:no outside mail in this test",
                "relay_transport = error:no outside mail in this test",
                "smtp_dns_support_level = disabled",
                # Deferred mail is retried within seconds, and a delivery agent that failed is
                # used again at once.
                "queue_run_delay = 1s",
                "minimal_backoff_time = 1s",
                "maximal_backoff_time = 2s",
                "transport_retry_time = 1s",
                "in_flow_delay = 0",
                "enable_long_queue_ids = yes",
                "delay_warning_time = 0",
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
                    # No chroot: the private queue is not inside /var/spool/postfix.
                    parts = line.split()
                    if len(parts) >= 8 and not line[0].isspace() and parts[1] in (
                            "unix", "inet", "fifo", "pass", "unix-dgram"):
                        parts[4] = "n"
                        line = " ".join(parts) + "\n"
                f.write(line)
            if not have_postlog:
                f.write("postlog unix-dgram n - n - 1 postlogd\n")

    def run(self, *args):
        return subprocess.run(list(args), capture_output=True, text=True, timeout=60)

    def start(self):
        r = self.run("postfix", "-c", self.dir, "start")
        check(r.returncode == 0, "postfix start: " + r.stdout + r.stderr)
        self.started = True
        wait_port(self.port)

    def set(self, setting):
        r = self.run("postconf", "-c", self.dir, "-e", setting)
        check(r.returncode == 0, "postconf: " + r.stdout + r.stderr)
        r = self.run("postfix", "-c", self.dir, "reload")
        check(r.returncode == 0, "postfix reload: " + r.stdout + r.stderr)

    def flush(self):
        self.run("postqueue", "-c", self.dir, "-f")

    def queue_empty(self):
        r = self.run("postqueue", "-c", self.dir, "-p")
        return "Mail queue is empty" in r.stdout, r.stdout

    def stop(self):
        if not self.started:
            return
        self.run("postfix", "-c", self.dir, "stop")
        kill_pidfile(os.path.join(self.spool, "pid", "master.pid"))
        self.started = False

    def send(self, msgs):
        """Submits (recipient, bytes) pairs over one SMTP session."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=120) as s:
            for rcpt, m in msgs:
                s.sendmail("sender@example.org", [rcpt], m.replace(b"\n", b"\r\n"))


class MailLog:
    """Follows the Postfix log: queue id -> Message-ID, and each queue id's delivery results."""

    ID_RE = re.compile(r": ([0-9A-Za-z]{6,}): message-id=<([^>]*)>")
    STATUS_RE = re.compile(r": ([0-9A-Za-z]{6,}): to=<([^>]*)>.*?, status=(\w+) \((.*)\)\s*$")

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.qid_mid = {}
        self.mid_qid = {}
        self.results = {}  # qid -> list of (time, status, text)
        self.fatal = []  # "fatal:" and "panic:" lines (a broken setup: fail fast)

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        now = time.time()
        for raw in lines:
            line = raw.decode(errors="replace")
            if " fatal: " in line or " panic: " in line:
                self.fatal.append(line)
            m = self.ID_RE.search(line)
            if m:
                self.qid_mid[m.group(1)] = m.group(2)
                self.mid_qid[m.group(2)] = m.group(1)
                continue
            m = self.STATUS_RE.search(line)
            if m:
                self.results.setdefault(m.group(1), []).append((now, m.group(3), m.group(4)))

    def statuses(self, mid):
        return [s for _, s, _ in self.results.get(self.mid_qid.get(mid), [])]

    def sent(self, mid):
        return "sent" in self.statuses(mid)

    def count(self, mids, status):
        return sum(1 for mid in mids if status in self.statuses(mid))

    def all_bounced(self):
        return [(self.qid_mid.get(q, "?"), t) for q, r in self.results.items()
                for _, s, t in r if s == "bounced"]


# ---- messages and the mailstore -----------------------------------------------------------------

def make_message(rnd, tag, i, rcpt):
    """A message with a unique Message-ID whose body is random text of varying size (about one
    in ten spans several 64 KiB chunks). Starts with X-Chaos-Id so the headers Postfix prepends
    can be told apart."""
    r = rnd.random()
    if r < 0.7:
        size = rnd.randint(200, 8 << 10)
    elif r < 0.9:
        size = rnd.randint(8 << 10, 64 << 10)
    else:
        size = rnd.randint(64 << 10, 200 << 10)
    mid = "%s-%d.%d@chaos.coffer.test" % (tag, i, SEED)
    body = base64.encodebytes(rnd.randbytes(size * 3 // 4))
    if i % 7 == 0:
        body = b".a line with a leading dot\n..and two\n" + body
    head = ("X-Chaos-Id: %s-%d\nFrom: chaos <sender@example.org>\nTo: <%s>\n"
            "Subject: chaos %s %d\nDate: Sun, 22 Nov 2026 20:00:00 +0000\nMessage-ID: <%s>\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
            % (tag, i, rcpt, tag, i, mid)).encode()
    return mid, rcpt, head + body


def make_batch(rnd, tag, count, recipients):
    return [make_message(rnd, tag, i, recipients[i % len(recipients)]) for i in range(count)]


CHAOS_ID_RE = re.compile(rb"(?m)^X-Chaos-Id: ")
MID_RE = re.compile(rb"(?mi)^Message-ID: <([^>]*)>")


def scan_store(maildirs):
    """Every message file in new/ and cur/ of every Maildir: Message-ID -> list of
    (path, bytes from our first header on)."""
    found = {}
    for md in sorted(set(maildirs)):
        for sub in ("new", "cur"):
            d = os.path.join(md, sub)
            for name in os.listdir(d):
                path = os.path.join(d, name)
                with open(path, "rb") as f:
                    data = f.read()
                m = CHAOS_ID_RE.search(data)
                mid = MID_RE.search(data)
                key = mid.group(1).decode() if mid else "(no Message-ID) " + path
                found.setdefault(key, []).append((path, data[m.start():] if m else data))
    return found


def check_store(found, expected, sent, allowed_dups=(), what=""):
    """Every message in `sent` is in `found` exactly once (twice at most for `allowed_dups`)
    and byte-identical; nothing else from `expected` is there. Returns the number of duplicates
    that were allowed."""
    dups = 0
    bad = []
    for mid in sent:
        copies = found.get(mid, [])
        if len(copies) == 2 and mid in allowed_dups:
            dups += 1
        elif len(copies) != 1:
            bad.append("%s: %d copies %s" % (mid, len(copies), [p for p, _ in copies]))
            continue
        for path, data in copies:
            if data != expected[mid][1]:
                bad.append("%s: %s differs from what was submitted (%d vs %d bytes)"
                           % (mid, path, len(data), len(expected[mid][1])))
    unsent = [mid for mid in found if mid in expected and mid not in sent]
    for mid in unsent:
        bad.append("%s: in the store but never logged sent: %s" % (mid, [p for p, _ in found[mid]]))
    stray = [k for k in found if k not in expected]
    for k in stray:
        bad.append("unexpected file(s): %s" % [p for p, _ in found[k]])
    check(not bad, "%s: %d problems:\n  %s" % (what, len(bad), "\n  ".join(bad[:30])))
    return dups


def store_files(maildirs):
    """Path -> content of every file in new/ and cur/."""
    out = {}
    for md in sorted(set(maildirs)):
        for sub in ("new", "cur"):
            d = os.path.join(md, sub)
            for name in os.listdir(d):
                with open(os.path.join(d, name), "rb") as f:
                    out[os.path.join(md, sub, name)] = f.read()
    return out


def describe_difference(a, b):
    """Where two versions of a file differ (for failure messages)."""
    n = min(len(a), len(b))
    first = next((i for i in range(n) if a[i] != b[i]), n)
    zeros = b[first:first + 64] == bytes(len(b[first:first + 64]))
    return "%d bytes before, %d after, first difference at %d (chunk %d)%s" % (
        len(a), len(b), first, first // 65536, ", zeros from there" if zeros else "")


# ---- chaos --------------------------------------------------------------------------------------

class Chaos(threading.Thread):
    """Every 0.5-2 s: heals disruptions whose time is up, then disrupts a healthy node if fewer
    than the allowed number are out: kill -9 (restarted 1-4 s later) or a play-dead mode
    (switched off 1-4 s later). One node out at a time, except during short episodes that allow
    two (writes then miss their quorum: deliveries must defer, not bounce)."""

    OUT_MODES = ("silent", "refuse")
    OTHER_MODES = ("slow 200", "corrupt")

    def __init__(self, nodes, seed):
        super().__init__(daemon=True)
        self.nodes = nodes
        self.rnd = random.Random(seed)
        self.stop_event = threading.Event()
        self.state = {n.id: None for n in nodes}  # None | ("kill"|mode, until)
        self.counts = {"kill": 0, "play-dead": 0, "double": 0, "ctl-errors": 0}
        self.events = []
        self.error = None
        self.double_until = 0.0
        self.force_double_at = time.time() + 3.0

    def out(self, nid):
        s = self.state[nid]
        return s is not None and (s[0] == "kill" or s[0] in self.OUT_MODES)

    def note(self, text):
        self.events.append("%.1f %s" % (time.time() - T0, text))

    def heal(self, node):
        s = self.state[node.id]
        if s is None:
            return
        if s[0] == "kill":
            node.start(wait=False)
            self.note("%s restarted (pid %d)" % (node.id, node.proc.pid))
        else:
            ok, text = node.play_dead("off")
            if not ok:
                self.counts["ctl-errors"] += 1
                self.note("%s play-dead off failed: %s" % (node.id, text))
                return  # try again next tick
            self.note("%s play-dead off" % node.id)
        self.state[node.id] = None

    def disrupt(self, node, out_ok):
        now = time.time()
        choices = ["kill", "mode"] if out_ok else ["other"]
        kind = self.rnd.choice(choices)
        until = now + self.rnd.uniform(1.0, 4.0)
        if kind == "kill":
            pid = node.proc.pid if node.proc else 0
            node.kill9()
            self.counts["kill"] += 1
            self.state[node.id] = ("kill", until)
            self.note("%s killed -9 (pid %d)" % (node.id, pid))
            return
        mode = self.rnd.choice(self.OUT_MODES + self.OTHER_MODES if kind == "mode"
                               else self.OTHER_MODES)
        ok, text = node.play_dead(mode)
        if ok:
            self.counts["play-dead"] += 1
            self.state[node.id] = (mode, until)
            self.note("%s play-dead %s" % (node.id, mode))
        else:
            self.counts["ctl-errors"] += 1
            self.note("%s play-dead %s failed: %s" % (node.id, mode, text))

    def tick(self):
        now = time.time()
        for n in self.nodes:
            s = self.state[n.id]
            if s is not None and s[1] <= now:
                self.heal(n)
            elif s is None and not n.alive():
                n.start(wait=False)  # a restart that failed to bind: try again
        if self.force_double_at and now >= self.force_double_at or \
                (now >= self.double_until and self.rnd.random() < 0.07):
            self.force_double_at = 0
            self.double_until = now + self.rnd.uniform(2.0, 4.0)
            self.counts["double"] += 1
            self.note("two nodes may be out until +%.1fs" % (self.double_until - now))
        allowed = 2 if now < self.double_until else 1
        healthy = [n for n in self.nodes if self.state[n.id] is None and n.alive()]
        n_out = sum(1 for n in self.nodes if self.out(n.id))
        if allowed == 2 and n_out < 2:
            # A double episode: take out as many as allowed at once.
            for n in self.rnd.sample(healthy, min(len(healthy), 2 - n_out)):
                self.disrupt(n, True)
                n_out += 1
        elif healthy:
            self.disrupt(self.rnd.choice(healthy), n_out < allowed)

    def run(self):
        try:
            while not self.stop_event.wait(self.rnd.uniform(0.5, 2.0)):
                self.tick()
        except Exception as e:  # reported by the main thread
            self.error = e

    def finish(self):
        """Stops the chaos and heals every node."""
        self.stop_event.set()
        self.join()
        for n in self.nodes:
            if not n.alive():
                n.start(wait=False)
        for n in self.nodes:
            # play-dead off first: a silent node does not answer ping (ADMIN it does answer).
            deadline = time.time() + 20
            while True:
                ok, text = n.play_dead("off")
                if ok:
                    break
                check(time.time() < deadline, "play-dead off on %s: %s" % (n.id, text))
                if not n.alive():
                    n.start(wait=False)
                time.sleep(0.3)
            n.wait_up()
            self.state[n.id] = None


# ---- the test -----------------------------------------------------------------------------------

class ChaosTest:
    def __init__(self):
        self.area = TempArea()
        self.mnt = self.area.path("mnt")
        self.state = self.area.path("state")
        self.nodes = []
        self.mount = None
        self.postfix = None
        self.chaos = None
        self.expected = {}  # Message-ID -> (recipient, bytes)
        self.rnd = random.Random(SEED)

    def mount_fs(self, timeout=15):
        opts = "" if LOCAL_ONLY else "replicator=" + self.rconf
        self.mount = Mount(self.state, self.mnt, self.area.key, opts).start(timeout=timeout)
        os.chmod(self.mnt, 0o755)

    def submit(self, batch):
        for mid, rcpt, m in batch:
            self.expected[mid] = (rcpt, m)
        self.postfix.send([(rcpt, m) for _, rcpt, m in batch])

    def wait_for(self, what, cond, timeout, interval=0.5, detail=lambda: ""):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.log.poll()
            bounced = self.log.all_bounced()
            check(not bounced, "while waiting for %s: %d bounced: %s" % (what, len(bounced),
                                                                        bounced[:5]))
            if cond():
                return
            time.sleep(interval)
        self.log.poll()
        check(cond(), "timed out after %ds waiting for %s %s" % (timeout, what, detail()))

    def wait_queue_empty(self, timeout):
        deadline = time.time() + timeout
        last = ""
        while time.time() < deadline:
            empty, last = self.postfix.queue_empty()
            self.log.poll()
            if empty:
                return
            check(not self.log.fatal, "Postfix: %s" % self.log.fatal[:3])
            time.sleep(1)
        raise Failure("the Postfix queue is not empty after %ds:\n%s" % (timeout, last[-2000:]))

    def sent_mids(self):
        self.log.poll()
        return {mid for mid in self.expected if self.log.sent(mid)}

    def check_all(self, what, allowed_dups=()):
        t = time.time()
        sent = self.sent_mids()
        check(len(sent) == len(self.expected), "%s: %d of %d messages logged sent"
              % (what, len(sent), len(self.expected)))
        bounced = self.log.all_bounced()
        check(not bounced, "%s: %d bounced: %s" % (what, len(bounced), bounced[:5]))
        found = scan_store(self.postfix.maildirs.values())
        dups = check_store(found, self.expected, sent, allowed_dups, what)
        # Each message is in its own recipient's Maildir.
        for mid in sent:
            md = self.postfix.maildirs[self.expected[mid][0]]
            for path, _ in found[mid]:
                check(path.startswith(md + "/"), "%s delivered to %s" % (mid, path))
        say("%s: all %d messages exactly once%s and byte-identical (read in %.1fs)"
            % (what, len(sent), "" if not dups else " (%d crash duplicates)" % dups,
               time.time() - t))

    def outbox(self):
        r = ctl("status", self.state)
        m = re.search(r"outbox\s*=?\s*(\d+)", r.stdout)
        return r, (int(m.group(1)) if m and r.returncode == 0 else None)

    # -- steps --
    def setup(self):
        t = time.time()
        if LOCAL_ONLY:
            self.rconf = ""
        else:
            self.rconf, self.nodes = make_cluster(self.area)
            say("3 nodes up on ports %s" % [n.port for n in self.nodes])
        self.mount_fs()
        self.postfix = Postfix(self.area, self.mnt)
        self.postfix.start()
        self.log = MailLog(self.postfix.log_path)
        say("cofferfs mounted, Postfix on port %d (setup %.1fs, seed %d)"
            % (self.postfix.port, time.time() - t, SEED))

    def step_defer(self):
        t = time.time()
        batch = make_batch(self.rnd, "defer", 6, ["chaosl1@" + DOMAIN_L, "alice@" + DOMAIN_V])
        mids = [b[0] for b in batch]
        for n in self.nodes[1:]:
            n.kill9()
        say("defer: n2 and n3 killed -9; sending 3 messages to local(8), 3 to virtual(8)")
        self.submit(batch)
        self.wait_for("the deferral of all 6 messages",
                      lambda: self.log.count(mids, "deferred") == len(mids), 60,
                      detail=lambda: {m: (self.log.mid_qid.get(m), self.log.statuses(m))
                                      for m in mids})
        check(self.log.count(mids, "sent") == 0, "delivered with 2 of 3 nodes down: %s"
              % [self.log.statuses(m) for m in mids])
        check(not self.log.all_bounced(), "bounced: %s" % self.log.all_bounced())
        reasons = {t for m in mids for _, s, t in self.log.results[self.log.mid_qid[m]]}
        say("defer: all 6 deferred, none bounced; reasons: %s" % sorted(reasons)[:4])
        found = scan_store(self.postfix.maildirs.values())
        check(not any(m in found for m in mids), "deferred mail is in the Maildir")
        for n in self.nodes[1:]:
            n.start()
        self.postfix.flush()
        self.wait_for("delivery after the nodes came back",
                      lambda: self.log.count(mids, "sent") == len(mids), 60)
        self.wait_queue_empty(60)
        self.check_all("defer")
        say("defer: done in %.1fs" % (time.time() - t))

    def step_chaos(self):
        t = time.time()
        recipients = ["%s@%s" % (u, DOMAIN_L) for u in LOCAL_USERS] + \
                     ["%s@%s" % (u, DOMAIN_V) for u in VIRTUAL_USERS]
        batch = make_batch(self.rnd, "chaos", N_MESSAGES, recipients)
        mids = [b[0] for b in batch]
        size = sum(len(b[2]) for b in batch)
        say("chaos: %d messages, %.1f MiB, %d over 64 KiB; chaos starts"
            % (len(batch), size / 1048576.0, sum(1 for b in batch if len(b[2]) > 65536)))
        self.chaos = Chaos(self.nodes, SEED + 1)
        if not LOCAL_ONLY:
            self.chaos.start()
        self.submit(batch)
        say("chaos: all submitted over SMTP in %.1fs" % (time.time() - t))
        chaos_end = t + CHAOS_MAX_S
        last = 0
        while time.time() < chaos_end:
            self.log.poll()
            sent = self.log.count(mids, "sent")
            if sent == len(mids) and time.time() - t > 15:
                break
            if time.time() - last > 10:
                last = time.time()
                say("chaos: %d sent, %d deferred at least once, %s"
                    % (sent, self.log.count(mids, "deferred"), self.chaos.counts))
            if self.chaos.error:
                raise self.chaos.error
            time.sleep(0.5)
        if not LOCAL_ONLY:
            self.chaos.finish()
        if self.chaos.error:
            raise self.chaos.error
        say("chaos: stopped after %.1fs and healed: %s" % (time.time() - t, self.chaos.counts))
        self.postfix.flush()
        self.wait_queue_empty(240)
        elapsed = time.time() - t
        deferred = self.log.count(mids, "deferred")
        say("chaos: queue empty after %.1fs (%.1f messages/s); %d of %d deferred at least once"
            % (elapsed, len(mids) / elapsed, deferred, len(mids)))
        if not LOCAL_ONLY:
            check(self.chaos.counts["kill"] >= 1 and self.chaos.counts["play-dead"] >= 1,
                  "chaos did nothing: %s" % self.chaos.counts)
            check(deferred >= 1, "chaos caused no deferral (%s): the test proves nothing"
                  % self.chaos.counts)
        self.check_all("chaos")

    def step_crash(self):
        t = time.time()
        # kill -9 of a FUSE daemon makes the kernel fail every pending and later call on the
        # mount with ENOTCONN, which Postfix local(8)/virtual(8) treat as permanent (only
        # EAGAIN/ESTALE/ENOSPC defer). That is the kernel's answer, not cofferfs's, so for this
        # step Postfix defers instead of bouncing (status=SOFTBOUNCE, counted below).
        self.postfix.set("soft_bounce = yes")
        recipients = ["%s@%s" % (u, DOMAIN_L) for u in LOCAL_USERS] + \
                     ["%s@%s" % (u, DOMAIN_V) for u in VIRTUAL_USERS]
        batch = make_batch(self.rnd, "crash", CRASH_MESSAGES, recipients)
        mids = [b[0] for b in batch]
        sender = threading.Thread(target=self.submit, args=(batch,))
        sender.start()
        self.wait_for("the first deliveries of the crash batch",
                      lambda: self.log.count(mids, "sent") >= min(20, len(mids) // 4), 120,
                      interval=0.05)
        before = self.log.count(mids, "sent")
        pid = self.mount.pid
        kill_at = time.time()
        self.mount.kill9()
        say("crash: cofferfs (pid %d) killed -9 after %d of %d deliveries" % (pid, before, len(mids)))
        time.sleep(1.0)
        self.mount_fs(timeout=60)
        remount_at = time.time()
        say("crash: remounted the same STATE_DIR in %.1fs" % (remount_at - kill_at - 1.0))
        sender.join()
        self.postfix.flush()
        self.wait_queue_empty(180)
        self.log.poll()
        # Only a delivery that was in flight when cofferfs died may have been stored and still
        # reported as failed (ENOTCONN): Postfix then delivers it again, as with any Maildir.
        in_flight = set()
        soft = 0
        for mid in self.expected:
            for when, status, text in self.log.results.get(self.log.mid_qid.get(mid), []):
                # Only a call the kernel had in flight at the kill (it fails with ECONNABORTED at
                # that moment) can have been stored; calls after it fail with ENOTCONN and store
                # nothing. Postfix logs whole seconds: a 2 s margin around the kill.
                if status in ("SOFTBOUNCE", "deferred") and kill_at - 2 <= when <= kill_at + 2:
                    in_flight.add(mid)
                if status == "SOFTBOUNCE":
                    soft += 1
        say("crash: %d deliveries failed around the kill (%d soft bounces while cofferfs was dead)"
            % (len(in_flight), soft))
        self.postfix.set("soft_bounce = no")
        self.check_all("crash", allowed_dups=in_flight)
        self.allowed_dups = in_flight
        if not LOCAL_ONLY:
            deadline = time.time() + 60
            while True:
                r, n = self.outbox()
                if n == 0:
                    break
                check(time.time() < deadline, "outbox not drained within 60s: rc=%d\n%s%s"
                      % (r.returncode, r.stdout, r.stderr))
                time.sleep(1)
            say("crash: cofferctl status reports the outbox at 0")
            r = ctl("verify", self.state, timeout=300)
            check(r.returncode == 0, "cofferctl verify after the crash: rc=%d\n%s%s"
                  % (r.returncode, r.stdout[-3000:], r.stderr[-2000:]))
            say("crash: cofferctl verify: %s" % (r.stdout.strip().splitlines() or [""])[-1])
        say("crash: done in %.1fs" % (time.time() - t))

    def step_rebuild(self):
        t = time.time()
        before = store_files(self.postfix.maildirs.values())
        self.postfix.stop()
        rc = self.mount.stop()
        check(rc == 0, "cofferfs exited with %d at unmount" % rc)
        if LOCAL_ONLY:
            say("rebuild: skipped (local only)")
            return
        shutil.rmtree(self.state)
        say("rebuild: unmounted and deleted STATE_DIR; mounting a fresh one")
        self.mount_fs(timeout=300)
        say("rebuild: mounted in %.1fs" % (time.time() - t))
        after = store_files(self.postfix.maildirs.values())
        say("rebuild: read all %d files back through the nodes in %.1fs"
            % (len(after), time.time() - t))
        missing = sorted(set(before) - set(after))
        extra = sorted(set(after) - set(before))
        changed = sorted(p for p in before if p in after and before[p] != after[p])
        again = store_files(self.postfix.maildirs.values()) if changed else {}
        check(not missing and not extra and not changed,
              "rebuilt store differs: %d missing %s, %d extra %s, %d changed:\n  %s"
              % (len(missing), missing[:5], len(extra), extra[:5], len(changed),
                 "\n  ".join("%s: %s; read again: %s" % (
                     p, describe_difference(before[p], after[p]),
                     "same as before" if again.get(p) == before[p] else
                     describe_difference(before[p], again.get(p, b"")))
                     for p in changed[:10])))
        self.check_all("rebuild", allowed_dups=self.allowed_dups)
        r = ctl("verify", self.state, timeout=300)
        check(r.returncode == 0, "cofferctl verify: rc=%d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        say("rebuild: cofferctl verify: %s" % (r.stdout.strip().splitlines() or [""])[-1])
        say("rebuild: done in %.1fs" % (time.time() - t))

    def dump_logs(self):
        print("---- cofferfs log (%s) ----" % (self.state + ".log"))
        print(tail(self.state + ".log", 6000))
        for n in self.nodes:
            print("---- %s log ----" % n.id)
            print(tail(n.log_path, 2500))
        if self.postfix:
            print("---- postfix log ----")
            print(tail(self.postfix.log_path, 4000))
            bad = {q for q, r in self.log.results.items() if any(s == "bounced" for _, s, _ in r)}
            if bad:
                print("---- postfix log of the bounced messages ----")
                with open(self.postfix.log_path, errors="replace") as f:
                    for line in f:
                        if any(q in line for q in bad) or " warning: remove " in line:
                            sys.stdout.write(line)
        if self.chaos and self.chaos.events:
            print("---- chaos events (last 40) ----")
            print("\n".join(self.chaos.events[-40:]))
        sys.stdout.flush()

    def cleanup(self):
        if self.chaos and self.chaos.is_alive():
            self.chaos.stop_event.set()
            self.chaos.join()
        if self.postfix:
            self.postfix.stop()
            time.sleep(0.3)
        if self.mount:
            self.mount.stop()
        for n in self.nodes:
            n.kill9()
        if self.failed and os.environ.get("COFFER_CHAOS_KEEP_ON_FAILURE") == "1":
            say("kept " + self.area.dir)
        else:
            self.area.close()

    def run(self):
        ok = False
        self.failed = True
        try:
            self.setup()
            if not LOCAL_ONLY:
                self.step_defer()
            self.step_chaos()
            self.step_crash()
            self.step_rebuild()
            ok = True
            self.failed = False
        except (Failure, Exception) as e:
            print("FAIL: %s: %s" % (type(e).__name__, e), flush=True)
            import traceback
            traceback.print_exc()
            self.dump_logs()
        finally:
            self.cleanup()
        say("PASS" if ok else "FAILED")
        return 0 if ok else 1


def main():
    os.environ["PATH"] = "/usr/sbin:/sbin:" + os.environ.get("PATH", "/usr/bin:/bin")
    if os.geteuid() != 0:
        print("needs root")
        return 1
    for tool in ("postfix", "postconf", "postqueue", "fusermount3"):
        if not shutil.which(tool):
            print("missing " + tool + " (scripts/setup.sh installs it)")
            return 1
    # meson sends SIGTERM on timeout: clean up (unmount, stop processes) on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return ChaosTest().run()


if __name__ == "__main__":
    sys.exit(main())
