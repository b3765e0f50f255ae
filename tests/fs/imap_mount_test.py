#!/usr/bin/env python3
"""Dovecot IMAP serving from a cofferfs mount (suite 'mount'): the setup most sites run.

A private Dovecot instance (Debian's dovecot-imapd; its own config, run dir and port on
127.0.0.1) serves a Maildir on the mount to Python's imaplib: SELECT, FETCH (byte-identical),
STORE of flags (Dovecot renames files in cur/ to ...:2,FS), EXPUNGE (the file goes), APPEND
(a new file in cur/), and IDLE, which reports a message delivered into new/ while idling (with
the polling fallback of mailbox_idle_check_interval, which a mount shared between boxes needs:
changes from another box raise no inotify event). The Dovecot settings are the ones cofferfs(8)
documents. Stopped by PID, always unmounted.
"""
import imaplib
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import Mount, TempArea, free_port, kill_pidfile, wait_port  # noqa: E402

UID = GID = 5000
USER, PASSWORD = "bob@example.test", "imap-pw"

DOVECOT_CONF = """
base_dir = {run}
state_dir = {run}/state
log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 100
# cofferfs(8): what the mount needs
mail_location = maildir:~/Maildir
mail_fsync = always
mmap_disable = yes
mail_nfs_storage = no
mail_nfs_index = no
lock_method = fcntl
# IDLE: poll as well as inotify (changes made by another box raise no inotify event here)
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def message(i):
    return ("From: sender@example.org\r\nTo: %s\r\nSubject: imap %d\r\n"
            "Message-ID: <imap%d@x>\r\n\r\nBody of message %d.\r\n" % (USER, i, i, i)).encode()


class ImapMountTest(unittest.TestCase):
    def setUp(self):
        self.area = TempArea()
        self.mnt = self.area.path("mnt")
        self.mount = Mount(self.area.path("state"), self.mnt, self.area.key).start()
        os.chmod(self.mnt, 0o755)
        self.home = os.path.join(self.mnt, "vmail", "bob")
        self.maildir = os.path.join(self.home, "Maildir")
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.maildir, sub))
        subprocess.run(["chown", "-R", "%d:%d" % (UID, GID), os.path.join(self.mnt, "vmail")],
                       check=True)
        self.dovecot = False

    def tearDown(self):
        if self.dovecot:
            kill_pidfile(self.area.path("dovecot-run", "master.pid"))
            time.sleep(0.3)
        self.mount.stop()
        self.area.close()

    def deliver(self, i):
        name = "%d.M%dP1.coffer" % (1700000000 + i, i)
        tmp = os.path.join(self.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(message(i))
            f.flush()
            os.fsync(f.fileno())
        os.chown(tmp, UID, GID)
        os.rename(tmp, os.path.join(self.maildir, "new", name))

    def start_dovecot(self):
        run = self.area.path("dovecot-run")
        os.makedirs(run)
        self.port = free_port()
        passwd = self.area.path("dovecot-passwd")
        with open(passwd, "w") as f:
            f.write("%s:{PLAIN}%s:%d:%d::%s::\n" % (USER, PASSWORD, UID, GID, self.home))
        conf = self.area.path("dovecot.conf")
        with open(conf, "w") as f:
            f.write(DOVECOT_CONF.format(run=run, log=self.area.path("dovecot.log"),
                                        passwd=passwd, port=self.port))
        with open(self.area.path("dovecot.start"), "w") as out:
            r = subprocess.run(["dovecot", "-c", conf], stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=30)
        with open(self.area.path("dovecot.start")) as out:
            self.assertEqual(r.returncode, 0, out.read())
        self.dovecot = True
        wait_port(self.port)

    def dovecot_log(self):
        try:
            with open(self.area.path("dovecot.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def files(self, sub):
        return sorted(os.listdir(os.path.join(self.maildir, sub)))

    def test_imap_on_the_mount(self):
        for i in range(3):
            self.deliver(i)
        self.start_dovecot()
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        try:
            imap.login(USER, PASSWORD)
            typ, data = imap.select("INBOX")
            self.assertEqual(typ, "OK", self.dovecot_log())
            self.assertEqual(int(data[0]), 3)
            # FETCH: byte-identical.
            for n in range(1, 4):
                typ, data = imap.fetch(str(n), "(BODY.PEEK[])")
                self.assertEqual(typ, "OK")
                self.assertEqual(data[0][1], message(n - 1))
            # Dovecot moved the messages from new/ to cur/ (renames on the mount).
            self.assertEqual(self.files("new"), [])
            self.assertEqual(len(self.files("cur")), 3)

            # STORE flags: the file in cur/ is renamed to carry them.
            typ, _ = imap.store("1", "+FLAGS", "(\\Seen \\Flagged)")
            self.assertEqual(typ, "OK")
            flagged = [n for n in self.files("cur") if n.endswith(":2,FS")]
            self.assertEqual(len(flagged), 1, self.files("cur"))
            typ, data = imap.fetch("1", "(FLAGS)")
            self.assertIn(b"\\Flagged", data[0])

            # EXPUNGE: the file goes.
            imap.store("2", "+FLAGS", "(\\Deleted)")
            typ, data = imap.expunge()
            self.assertEqual(typ, "OK")
            self.assertEqual(data, [b"2"])
            self.assertEqual(len(self.files("cur")), 2)
            self.assertFalse(any(n.startswith("1700000001.") for n in self.files("cur")))

            # APPEND: a new file in cur/ with its flags.
            appended = message(99)
            typ, _ = imap.append("INBOX", "(\\Seen)", None, appended)
            self.assertEqual(typ, "OK", self.dovecot_log())
            self.assertEqual(len(self.files("cur")), 3)
            with_seen = [n for n in self.files("cur") if n.endswith(":2,S")]
            self.assertEqual(len(with_seen), 1, self.files("cur"))
            with open(os.path.join(self.maildir, "cur", with_seen[0]), "rb") as f:
                self.assertEqual(f.read().replace(b"\r\n", b"\n"), appended.replace(b"\r\n", b"\n"))

            # IDLE: a delivery into new/ while idling is announced as EXISTS.
            imap.select("INBOX")
            tag = imap._new_tag()
            imap.send(tag + b" IDLE\r\n")
            self.assertTrue(imap.readline().startswith(b"+"), "no IDLE continuation")
            self.deliver(7)
            imap.sock.settimeout(15)
            seen = b""
            deadline = time.time() + 15
            while time.time() < deadline and b"EXISTS" not in seen:
                try:
                    seen += imap.readline()
                except (socket.timeout, TimeoutError):
                    break
            self.assertIn(b"* 4 EXISTS", seen, self.dovecot_log())
            imap.send(b"DONE\r\n")
            line = imap.readline()
            while not line.startswith(tag):
                line = imap.readline()
            self.assertIn(b"OK", line)
            typ, data = imap.fetch("4", "(BODY.PEEK[])")
            self.assertEqual(data[0][1], message(7))
            imap.logout()
        finally:
            try:
                imap.shutdown()
            except OSError:
                pass


if __name__ == "__main__":
    os.environ["PATH"] = "/usr/sbin:/sbin:" + os.environ.get("PATH", "/usr/bin:/bin")
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("needs root and /dev/fuse")
        sys.exit(1)
    if not shutil.which("dovecot") or not os.path.exists("/usr/lib/dovecot/imap"):
        print("missing dovecot-imapd (scripts/setup.sh installs it)")
        sys.exit(1)
    unittest.main(verbosity=2)
