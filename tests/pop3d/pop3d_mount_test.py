"""coffer-pop3d serving a Maildir that lives on a real cofferfs mount (suite 'mount'): delivery
with the Maildir dance into the mount, retrieval of every message byte for byte, seen-marking
renames, DELE applied at QUIT only, and UIDLs stable across sessions.

Needs root and /dev/fuse; $COFFERFS and $COFFER_KEYTOOL name the binaries (set by meson)."""

import os
import poplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pop3d_harness as h  # noqa: E402

COFFERFS = os.environ.get("COFFERFS", "cofferfs")
KEYTOOL = os.environ.get("COFFER_KEYTOOL", "coffer-keytool")
ALICE = "alice@example.org"


class CofferfsMount:
    def __init__(self, base):
        self.key = os.path.join(base, "coffer.key")
        self.state = os.path.join(base, "state")
        self.mnt = os.path.join(base, "mnt")
        os.makedirs(self.mnt)
        subprocess.run([KEYTOOL, "init", "-k", self.key, "--no-passphrase"], check=True,
                       capture_output=True)
        self.log = open(os.path.join(base, "cofferfs.log"), "wb")
        self.proc = subprocess.Popen([COFFERFS, self.state, self.mnt, "-f", "-o",
                                      "keyfile=" + self.key], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("cofferfs did not mount")
            time.sleep(0.05)

    def stop(self):
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
            self.proc.kill()
            self.proc.wait()
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        self.log.close()
        return self.proc.returncode


class MountTest(unittest.TestCase):
    def test_serve_maildir_on_cofferfs(self):
        site = h.Site()
        mount = CofferfsMount(site.dir)
        server = None
        try:
            site.mail = os.path.join(mount.mnt, "mail")
            msgs = h.sample_messages()
            for m in msgs:
                site.deliver(ALICE, m)
            server = h.Server(site)
            p = poplib.POP3("127.0.0.1", server.port, timeout=60)
            p.user(ALICE)
            p.pass_(h.PASSWORDS[ALICE])
            count, size = p.stat()
            self.assertEqual(count, len(msgs))
            self.assertEqual(size, sum(len(h.wire_form(m)) for m in msgs))
            for i, m in enumerate(msgs, 1):
                _, lines, _ = p.retr(i)
                self.assertEqual(b"".join(x + b"\r\n" for x in lines), h.wire_form(m))
            _, first, _ = p.uidl()
            p.dele(1)
            p.dele(3)
            p.quit()
            md = site.maildir(ALICE)
            self.assertEqual(os.listdir(os.path.join(md, "new")), [])
            cur = sorted(os.listdir(os.path.join(md, "cur")))
            self.assertEqual(len(cur), len(msgs) - 2)
            self.assertTrue(all(n.endswith(":2,S") for n in cur), cur)
            # A dropped session deletes nothing; UIDLs are the same as before.
            p = poplib.POP3("127.0.0.1", server.port, timeout=60)
            p.user(ALICE)
            p.pass_(h.PASSWORDS[ALICE])
            _, again, _ = p.uidl()
            uids = [x.split()[1] for x in first]
            self.assertEqual([x.split()[1] for x in again], uids[1:2] + uids[3:])
            p.dele(1)
            p.sock.close()
            time.sleep(0.5)
            self.assertEqual(len(site.messages(ALICE)), len(msgs) - 2)
        finally:
            if server:
                server.stop()
            self.assertEqual(mount.stop(), 0)
            site.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2, warnings="ignore")
