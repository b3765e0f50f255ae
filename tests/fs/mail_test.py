#!/usr/bin/env python3
"""Real mail software on a real cofferfs mount (suite 'mount').

Postfix (a private instance: its own config, queue and port on 127.0.0.1) delivers a batch of
messages with virtual(8) into a Maildir on the mount; maildrop delivers more; Dovecot POP3 (a
private instance) serves them to curl, byte-identical; DELE+QUIT removes them. Everything runs
as root in a temp dir and is stopped by PID and unmounted at the end.
"""
import base64
import os
import poplib
import random
import shutil
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import Mount, TempArea, free_port, kill_pidfile, wait_port  # noqa: E402

UID = GID = 5000
USER, PASSWORD, DOMAIN = "alice", "s3cret-pw", "example.test"


def messages():
    rnd = random.Random(7)
    out = []
    for i in range(6):
        out.append(("plain %d" % i, (
            "From: sender@example.org\nDate: Sun, 22 Nov 2026 18:00:00 +0000\nTo: %s@%s\nSubject: plain %d\nMessage-ID: <p%d@x>\n\n"
            "Hello %d.\n.leading dot line\n..two dots\n\n" % (USER, DOMAIN, i, i, i)).encode()))
    for i in range(3):
        body = ("Grüße aus Köln, ça va? — %d\n" % i) * 50
        out.append(("8bit %d" % i, (
            "From: sender@example.org\nDate: Sun, 22 Nov 2026 18:00:00 +0000\nTo: %s@%s\nSubject: 8bit %d\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
            "Message-ID: <e%d@x>\n\n" % (USER, DOMAIN, i, i)).encode() + body.encode()))
    for i, size in enumerate((1 << 20, 3 << 20)):
        blob = base64.encodebytes(bytes(rnd.getrandbits(8) for _ in range(size)))
        out.append(("attachment %d" % i, (
            "From: sender@example.org\nDate: Sun, 22 Nov 2026 18:00:00 +0000\nTo: %s@%s\nSubject: attachment %d\nMIME-Version: 1.0\n"
            "Content-Type: multipart/mixed; boundary=BOUND\nMessage-ID: <a%d@x>\n\n"
            "--BOUND\nContent-Type: text/plain\n\nsee attachment\n--BOUND\n"
            "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
            % (USER, DOMAIN, i, i)).encode() + blob + b"--BOUND--\n"))
    return out


class MailSoftwareTest(unittest.TestCase):
    def setUp(self):
        self.area = TempArea()
        self.mnt = self.area.path("mnt")
        self.mount = Mount(self.area.path("state"), self.mnt, self.area.key).start()
        self.procs = []
        self.postfix_dir = None
        self.dovecot_conf = None
        os.chmod(self.mnt, 0o755)
        self.vmail = os.path.join(self.mnt, "vmail")
        os.makedirs(self.vmail)
        os.chown(self.vmail, UID, GID)
        self.maildir = os.path.join(self.vmail, USER, "Maildir")

    def tearDown(self):
        if self.postfix_dir:
            subprocess.run(["postfix", "-c", self.postfix_dir, "stop"], capture_output=True)
            pid_file = os.path.join(self.area.path("pfspool"), "pid", "master.pid")
            kill_pidfile(pid_file)
        if self.dovecot_conf:
            kill_pidfile(self.area.path("dovecot-run", "master.pid"))
        time.sleep(0.3)
        self.mount.stop()
        self.area.close()

    # ---- Postfix ----
    def start_postfix(self):
        d = self.postfix_dir = self.area.path("postfix")
        os.makedirs(d)
        spool = self.area.path("pfspool")
        data = self.area.path("pfdata")
        os.makedirs(data)
        os.makedirs(spool)
        shutil.chown(data, "postfix", "postfix")
        self.smtp_port = free_port()
        with open(os.path.join(d, "vmailbox"), "w") as f:
            f.write("%s@%s %s/Maildir/\n" % (USER, DOMAIN, USER))
        with open(os.path.join(d, "main.cf"), "w") as f:
            f.write("\n".join([
                "compatibility_level = 3.6",
                "queue_directory = " + spool,
                "data_directory = " + data,
                "mail_owner = postfix",
                "myhostname = mx.coffer.test",
                "mydomain = coffer.test",
                "mydestination =",
                "inet_interfaces = 127.0.0.1",
                "inet_protocols = ipv4",
                "mynetworks = 127.0.0.0/8",
                "smtpd_relay_restrictions = permit_mynetworks, reject",
                "virtual_mailbox_domains = " + DOMAIN,
                "virtual_mailbox_base = " + self.vmail,
                "virtual_mailbox_maps = texthash:" + os.path.join(d, "vmailbox"),
                "virtual_uid_maps = static:%d" % UID,
                "virtual_gid_maps = static:%d" % GID,
                "virtual_minimum_uid = 100",
                "message_size_limit = 52428800",
                "virtual_mailbox_limit = 0",
                "maillog_file = " + self.area.path("postfix.log"),
                "maillog_file_prefixes = " + self.area.dir,
                "smtputf8_enable = no",
                "biff = no",
                "",
            ]))
        with open("/etc/postfix/master.cf") as src, open(os.path.join(d, "master.cf"), "w") as f:
            for line in src:
                if line.startswith("smtp ") and " inet " in line:
                    line = "127.0.0.1:%d inet n - n - - smtpd\n" % self.smtp_port
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
            f.write("postlog unix-dgram n - n - 1 postlogd\n")
        r = subprocess.run(["postfix", "-c", d, "start"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        wait_port(self.smtp_port)

    # ---- Dovecot ----
    def start_dovecot(self):
        run = self.area.path("dovecot-run")
        os.makedirs(run)
        self.pop3_port = free_port()
        passwd = self.area.path("dovecot-passwd")
        with open(passwd, "w") as f:
            f.write("%s@%s:{PLAIN}%s:%d:%d::%s::\n" % (USER, DOMAIN, PASSWORD, UID, GID,
                                                       os.path.join(self.vmail, USER)))
        conf = self.dovecot_conf = self.area.path("dovecot.conf")
        with open(conf, "w") as f:
            f.write("""
base_dir = {run}
state_dir = {run}/state
log_path = {log}
protocols = pop3
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
pop3_uidl_format = %v.%u
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
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
""".format(run=run, log=self.area.path("dovecot.log"), passwd=passwd, port=self.pop3_port))
        # No pipes: the daemon would inherit them and run() would wait for it forever.
        with open(self.area.path("dovecot.start"), "w") as out:
            r = subprocess.run(["dovecot", "-c", conf], stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=30)
        with open(self.area.path("dovecot.start")) as out:
            self.assertEqual(r.returncode, 0, out.read())
        wait_port(self.pop3_port)

    def curl(self, *args):
        r = subprocess.run(["curl", "-sS", "--max-time", os.environ.get("CURL_MAX_TIME", "60"), "-u",
                            "%s@%s:%s" % (USER, DOMAIN, PASSWORD)] + list(args),
                           capture_output=True, timeout=90)
        if r.returncode != 0 and os.path.exists(self.area.path("dovecot.log")):
            with open(self.area.path("dovecot.log"), errors="replace") as f:
                sys.stderr.write(f.read()[-3000:])
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def maildir_files(self):
        out = {}
        for sub in ("new", "cur"):
            p = os.path.join(self.maildir, sub)
            for n in os.listdir(p):
                with open(os.path.join(p, n), "rb") as f:
                    out[sub + "/" + n] = f.read()
        return out

    def test_postfix_maildrop_dovecot(self):
        self.start_postfix()
        msgs = messages()
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=60) as s:
            for _, m in msgs:
                s.sendmail("sender@example.org", ["%s@%s" % (USER, DOMAIN)],
                           m.replace(b"\n", b"\r\n"), mail_options=["BODY=8BITMIME"])
        deadline = time.time() + float(os.environ.get("DELIVERY_WAIT", "60"))
        while time.time() < deadline:
            if os.path.isdir(os.path.join(self.maildir, "new")) and \
                    len(os.listdir(os.path.join(self.maildir, "new"))) >= len(msgs):
                break
            time.sleep(0.2)
        log = ""
        if os.path.exists(self.area.path("postfix.log")):
            with open(self.area.path("postfix.log"), errors="replace") as f:
                log = f.read()
        self.assertTrue(os.path.isdir(os.path.join(self.maildir, "new")), log[-3000:])
        files = self.maildir_files()
        self.assertEqual(len(files), len(msgs), log[-3000:])
        # Each message arrived exactly once, byte-identical after Postfix's added headers.
        for subject, m in msgs:
            hits = [n for n, data in files.items() if data.endswith(m)
                    and b"Subject: " + subject.encode() in data]
            self.assertEqual(len(hits), 1, subject)
        for n in files:
            st = os.stat(os.path.join(self.maildir, n))
            self.assertEqual((st.st_uid, st.st_gid, st.st_nlink), (UID, GID, 1))

        # maildrop, as the mail user, into the same Maildir.
        filt = self.area.path("mailfilter")
        with open(filt, "w") as f:
            f.write('to "%s/"\n' % self.maildir)
        os.chmod(filt, 0o600)
        extra = b"From: x@example.org\nSubject: via maildrop\n\nmaildrop body\n"

        # (As root: maildrop wants a passwd entry for its user, and the virtual uid has none.)
        r = subprocess.run(["maildrop", filt], input=extra, capture_output=True,
                           env={"HOME": self.area.dir, "PATH": "/usr/bin:/bin"}, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        files = self.maildir_files()
        self.assertEqual(len(files), len(msgs) + 1)
        dropped = [n for n, d in files.items() if d.endswith(extra)]
        self.assertEqual(len(dropped), 1)
        # maildrop ran as root, so the file is root's 0600: hand it to the mail user (the
        # permission check that made this necessary is the mount's, as on a local filesystem).
        os.chown(os.path.join(self.maildir, dropped[0]), UID, GID)

        # Dovecot POP3 serves every message byte-identical to curl; DELE+QUIT removes them.
        self.start_dovecot()
        url = "pop3://127.0.0.1:%d/" % self.pop3_port
        listing = self.curl(url).decode().split("\r\n")
        numbers = [int(line.split()[0]) for line in listing if line.strip()]
        self.assertEqual(len(numbers), len(files))
        served = []
        for n in numbers:
            served.append(self.curl(url + str(n)).replace(b"\r\n", b"\n"))
        self.assertEqual(sorted(served), sorted(files.values()))
        # DELE of every message and QUIT in one session (numbers change between sessions).
        pop = poplib.POP3("127.0.0.1", self.pop3_port, timeout=60)
        pop.user("%s@%s" % (USER, DOMAIN))
        pop.pass_(PASSWORD)
        for n in numbers:
            pop.dele(n)
        pop.quit()
        self.assertEqual(self.curl(url).strip(), b"")
        left = [n for n in self.maildir_files()]
        self.assertEqual(left, [])


if __name__ == "__main__":
    os.environ["PATH"] = "/usr/sbin:/sbin:" + os.environ.get("PATH", "/usr/bin:/bin")
    if os.geteuid() != 0:
        print("needs root")
        sys.exit(1)
    for tool in ("postfix", "dovecot", "maildrop", "curl"):
        if not shutil.which(tool):
            print("missing " + tool + " (scripts/setup.sh installs it)")
            sys.exit(1)
    unittest.main(verbosity=2)
