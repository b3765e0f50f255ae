#!/usr/bin/env python3
"""Semantics that mail software relies on, each tested against a real cofferfs mount.

Run: mount_test.py [TestClass ...] with COFFERFS and COFFER_KEYTOOL set (tests/fs/meson.build
does this). Needs root and /dev/fuse. Every mount is unmounted in tearDown/tearDownClass.
"""
import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import random
import stat
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import COFFERFS, Mount, TempArea, make_key  # noqa: E402

libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE = 1


def renameat2(src, dst, flags):
    AT_FDCWD = -100
    rc = libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), src)


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


class MountCase(unittest.TestCase):
    """One mount for the whole class; each test works in its own directory."""
    OPTIONS = ""

    @classmethod
    def setUpClass(cls):
        cls.area = TempArea()
        cls.mount = Mount(cls.area.path("state"), cls.area.path("mnt"), cls.area.key,
                          cls.OPTIONS).start()
        cls.mnt = cls.area.path("mnt")

    @classmethod
    def tearDownClass(cls):
        cls.mount.stop()
        cls.area.close()

    def setUp(self):
        self.d = os.path.join(self.mnt, self.id().split(".")[-1])
        os.mkdir(self.d)

    def p(self, *names):
        return os.path.join(self.d, *names)

    def assertErrno(self, err, fn, *args):
        with self.assertRaises(OSError) as cm:
            fn(*args)
        self.assertEqual(cm.exception.errno, err, "%s: %s" % (fn.__name__, cm.exception))


class SemanticsTest(MountCase):
    OPTIONS = "async"  # fsync still commits durably; DurabilityTest covers the default (sync)
    def test_create_excl_write_fsync_close(self):
        fd = os.open(self.p("m"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"Subject: hi\n\nbody\n")
        os.fsync(fd)
        os.fdatasync(fd)
        os.close(fd)
        self.assertErrno(errno.EEXIST, os.open, self.p("m"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        self.assertEqual(read_file(self.p("m")), b"Subject: hi\n\nbody\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.p("m")).st_mode), 0o600)

    def test_maildir_delivery_link_unlink(self):
        for sub in ("tmp", "new", "cur"):
            os.mkdir(self.p(sub))
        write_file(self.p("tmp", "1.M1P1.host"), b"mail")
        st = os.stat(self.p("tmp", "1.M1P1.host"))
        self.assertEqual(st.st_nlink, 1)
        final = "1.M1P1V%dI%d.host,S=4" % (st.st_dev, st.st_ino)
        os.link(self.p("tmp", "1.M1P1.host"), self.p("new", final))
        st2 = os.stat(self.p("new", final))
        self.assertEqual(st2.st_ino, st.st_ino)
        self.assertEqual(st2.st_nlink, 2)
        os.unlink(self.p("tmp", "1.M1P1.host"))
        self.assertEqual(os.stat(self.p("new", final)).st_nlink, 1)
        os.rename(self.p("new", final), self.p("cur", final + ":2,S"))
        self.assertEqual(os.stat(self.p("cur", final + ":2,S")).st_ino, st.st_ino)
        self.assertEqual(read_file(self.p("cur", final + ":2,S")), b"mail")
        self.assertEqual(os.listdir(self.p("tmp")), [])
        self.assertEqual(os.listdir(self.p("new")), [])

    def test_rename_replaces_atomically_for_readers(self):
        versions = [bytes([65 + i]) * (1000 + 37 * i) for i in range(8)]
        write_file(self.p("dovecot-uidlist"), versions[0])
        stop = threading.Event()
        problems = []

        def reader():
            while not stop.is_set():
                try:
                    data = read_file(self.p("dovecot-uidlist"))
                except OSError as e:
                    problems.append("read: %s" % e)
                    return
                if data not in versions:
                    problems.append("mixed contents, %d bytes" % len(data))
                    return

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for t in readers:
            t.start()
        try:
            for i in range(300):
                tmp = self.p("dovecot-uidlist.lock%d" % i)
                write_file(tmp, versions[i % len(versions)])
                os.rename(tmp, self.p("dovecot-uidlist"))
        finally:
            stop.set()
            for t in readers:
                t.join()
        self.assertEqual(problems, [])

    def test_rename_noreplace(self):
        write_file(self.p("a"), b"a")
        write_file(self.p("b"), b"b")
        self.assertErrno(errno.EEXIST, renameat2, self.p("a"), self.p("b"), RENAME_NOREPLACE)
        renameat2(self.p("a"), self.p("c"), RENAME_NOREPLACE)
        self.assertEqual(read_file(self.p("c")), b"a")
        self.assertEqual(read_file(self.p("b")), b"b")

    def test_unlinked_open_file_stays_readable(self):
        write_file(self.p("f"), b"x" * 100000)
        with open(self.p("f"), "rb") as f:
            os.unlink(self.p("f"))
            self.assertFalse(os.path.exists(self.p("f")))
            self.assertEqual(os.fstat(f.fileno()).st_nlink, 0)
            self.assertEqual(f.read(), b"x" * 100000)

    def test_mkdir_rmdir_maildirplusplus(self):
        for folder in ("", ".Sent", ".Archive.2024"):
            for sub in ("cur", "new", "tmp"):
                os.makedirs(self.p(folder, sub) if folder else self.p(sub), exist_ok=True)
        self.assertEqual(os.stat(self.d).st_nlink, 2 + 5)
        write_file(self.p(".Sent", "cur", "m"), b"x")
        self.assertErrno(errno.ENOTEMPTY, os.rmdir, self.p(".Sent", "cur"))
        self.assertErrno(errno.EEXIST, os.mkdir, self.p(".Sent"))
        os.unlink(self.p(".Sent", "cur", "m"))
        os.rmdir(self.p(".Sent", "cur"))
        self.assertEqual(os.stat(self.p(".Sent")).st_nlink, 4)
        os.rename(self.p(".Archive.2024"), self.p(".Archive.2025"))
        self.assertEqual(sorted(os.listdir(self.p(".Archive.2025"))), ["cur", "new", "tmp"])

    def test_chmod_chown_utimens_and_stable_ino(self):
        write_file(self.p("f"), b"x")
        ino = os.stat(self.p("f")).st_ino
        os.chmod(self.p("f"), 0o640)
        os.chown(self.p("f"), 8, 12)
        os.utime(self.p("f"), ns=(1000000000123, 1234567890000000456))
        st = os.stat(self.p("f"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual((st.st_uid, st.st_gid), (8, 12))
        self.assertEqual(st.st_mtime_ns, 1234567890000000456)
        self.assertEqual(st.st_atime_ns, 1000000000123)
        self.assertEqual(st.st_ino, ino)
        time.sleep(0.05)
        self.assertEqual(os.stat(self.p("f")).st_mtime_ns, 1234567890000000456)

    def test_truncate_append_sparse_offsets(self):
        write_file(self.p("f"), b"0123456789" * 10000)
        os.truncate(self.p("f"), 50)
        self.assertEqual(read_file(self.p("f")), (b"0123456789" * 5))
        with open(self.p("f"), "r+b") as f:
            os.ftruncate(f.fileno(), 70000)
            f.seek(3_000_000)
            f.write(b"END")
            f.seek(65530)
            f.write(b"ACROSS-CHUNK")
        data = read_file(self.p("f"))
        self.assertEqual(len(data), 3_000_003)
        self.assertEqual(data[:50], b"0123456789" * 5)
        self.assertEqual(data[50:65530], b"\0" * (65530 - 50))
        self.assertEqual(data[65530:65542], b"ACROSS-CHUNK")
        self.assertEqual(data[-3:], b"END")
        self.assertEqual(data[65542:-3].count(b"\0"), len(data) - 65542 - 3)
        with open(self.p("f"), "ab") as f:
            f.write(b"+APPENDED")
        fd = os.open(self.p("f"), os.O_WRONLY | os.O_APPEND)
        os.pwrite(fd, b"!", 0)  # O_APPEND wins over the offset, as on Linux
        os.close(fd)
        self.assertEqual(read_file(self.p("f"))[-10:], b"+APPENDED!")
        with open(self.p("f"), "rb") as f:
            self.assertEqual(os.pread(f.fileno(), 6, 65530), b"ACROSS")

    def test_fsync_on_directory_and_statfs(self):
        fd = os.open(self.d, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)
        sv = os.statvfs(self.mnt)
        self.assertEqual(sv.f_namemax, 255)
        self.assertGreater(sv.f_blocks, 0)
        self.assertGreater(sv.f_bavail, 0)

    def test_symlinks(self):
        write_file(self.p("target"), b"t")
        os.symlink("target", self.p("link"))
        self.assertEqual(os.readlink(self.p("link")), "target")
        self.assertTrue(stat.S_ISLNK(os.lstat(self.p("link")).st_mode))
        self.assertEqual(read_file(self.p("link")), b"t")
        os.symlink("/nonexistent/x", self.p("dangling"))
        self.assertErrno(errno.ENOENT, os.stat, self.p("dangling"))

    def test_fcntl_and_flock_between_processes(self):
        write_file(self.p("lock"), b"")
        with open(self.p("lock"), "r+b") as f:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            code = ("import fcntl,sys\nf=open(sys.argv[1],'r+b')\nr=0\n"
                    "try:\n fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError: r|=1\n"
                    "try:\n fcntl.flock(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError: r|=2\n"
                    "sys.exit(r)\n")
            rc = subprocess.run([sys.executable, "-c", code, self.p("lock")]).returncode
            self.assertEqual(rc, 3, "both locks must be refused to another process")
        rc = subprocess.run([sys.executable, "-c", code, self.p("lock")]).returncode
        self.assertEqual(rc, 0)

    def test_mmap_read(self):
        data = bytes(random.getrandbits(8) for _ in range(200000))
        write_file(self.p("f"), data)
        with open(self.p("f"), "rb") as f:
            m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            self.assertEqual(m[:], data)
            self.assertEqual(m[131070:131080], data[131070:131080])
            m.close()

    def test_names_byte_exact_and_dtype(self):
        names = [b"1700000000.M20P3Q4.host,S=1234,W=1260:2,S", b"x" * 255,
                 b"caf\xc3\xa9-\xff\xfe-raw", b" lead and trail ", b"a:2,FRS"]
        for n in names:
            write_file(os.path.join(os.fsencode(self.d), n), n)
        os.mkdir(self.p("sub"))
        os.symlink("x", self.p("sl"))
        listed = set(os.listdir(os.fsencode(self.d)))
        self.assertEqual(listed, set(names) | {b"sub", b"sl"})
        for n in names:
            self.assertEqual(read_file(os.path.join(os.fsencode(self.d), n)), n)
        self.assertErrno(errno.ENAMETOOLONG, write_file, self.p("y" * 256), b"")
        kinds = {e.name: (e.is_dir(follow_symlinks=False), e.is_symlink())
                 for e in os.scandir(self.d)}
        self.assertEqual(kinds["sub"], (True, False))
        self.assertEqual(kinds["sl"], (False, True))
        self.assertEqual(kinds["a:2,FRS"], (False, False))
        # d_type straight from getdents64 (scandir may fall back to lstat otherwise).
        out = subprocess.run(["find", self.d, "-maxdepth", "1", "-printf", "%y %f\n"],
                             capture_output=True, check=True).stdout.decode(errors="replace")
        self.assertIn("d sub", out)
        self.assertIn("l sl", out)

    def test_errors_are_local_filesystem_errnos(self):
        write_file(self.p("f"), b"")
        os.mkdir(self.p("d"))
        self.assertErrno(errno.ENOENT, os.stat, self.p("missing"))
        self.assertErrno(errno.ENOTDIR, os.stat, self.p("f", "x"))
        self.assertErrno(errno.EISDIR, os.unlink, self.p("d"))
        self.assertErrno(errno.ENOTDIR, os.rmdir, self.p("f"))
        self.assertErrno(errno.EISDIR, os.rename, self.p("f"), self.p("d"))
        self.assertErrno(errno.ENOTDIR, os.rename, self.p("d"), self.p("f"))
        self.assertErrno(errno.EINVAL, os.rename, self.p("d"), self.p("d", "inside"))
        self.assertErrno(errno.EEXIST, os.link, self.p("f"), self.p("d"))
        self.assertErrno(errno.EPERM, os.link, self.p("d"), self.p("dl"))
        self.assertErrno(errno.ENOENT, os.unlink, self.p("missing"))
        self.assertErrno(errno.EISDIR, os.open, self.p("d"), os.O_WRONLY)

    def test_directory_mtime_changes_on_every_entry_change(self):
        os.mkdir(self.p("new"))
        last = os.stat(self.p("new")).st_mtime_ns
        ops = [lambda: write_file(self.p("new", "a"), b""),
               lambda: os.link(self.p("new", "a"), self.p("new", "b")),
               lambda: os.rename(self.p("new", "b"), self.p("new", "c")),
               lambda: os.unlink(self.p("new", "a")),
               lambda: os.mkdir(self.p("new", "sub")),
               lambda: os.rmdir(self.p("new", "sub")),
               lambda: os.rename(self.p("new", "c"), self.p("moved"))]
        for op in ops:
            op()
            now = os.stat(self.p("new")).st_mtime_ns
            self.assertGreater(now, last)
            last = now

    def test_readdir_never_skips_or_repeats_under_churn(self):
        stable = ["stable-%05d" % i for i in range(3000)]
        for n in stable:
            os.mknod(self.p(n), 0o600 | stat.S_IFREG)
        stop = threading.Event()

        def churn():
            i = 0
            while not stop.is_set():
                n = self.p("churn-%d" % i)
                os.mknod(n, 0o600 | stat.S_IFREG)
                if i >= 5:
                    os.unlink(self.p("churn-%d" % (i - 5)))
                i += 1

        t = threading.Thread(target=churn)
        t.start()
        try:
            for _ in range(5):
                seen = [n for n in os.listdir(self.d) if n.startswith("stable-")]
                self.assertEqual(len(seen), len(set(seen)), "an entry was repeated")
                self.assertEqual(set(seen), set(stable), "an entry was skipped")
        finally:
            stop.set()
            t.join()

    def test_large_file_streams(self):
        size = 100 << 20
        block = hashlib.sha256(b"seed").digest() * 4096  # 128 KiB
        h = hashlib.sha256()
        with open(self.p("big"), "wb") as f:
            for i in range(size // len(block)):
                b = i.to_bytes(4, "little") + block[4:]
                f.write(b)
                h.update(b)
            f.flush()
            os.fsync(f.fileno())
        self.assertEqual(os.stat(self.p("big")).st_size, size)
        h2 = hashlib.sha256()
        with open(self.p("big"), "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h2.update(b)
        self.assertEqual(h.hexdigest(), h2.hexdigest())
        with open("/proc/%d/status" % self.mount.pid) as s:
            hwm = [line for line in s if line.startswith("VmHWM")][0]
        kib = int(hwm.split()[1])
        self.assertLess(kib, 400 * 1024, "cofferfs held too much in memory: " + hwm)
        os.unlink(self.p("big"))


class PermissionTest(MountCase):
    OPTIONS = "async"
    def run_as(self, uid, gid, code):
        def demote():
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        # The system python: a pyenv build under /root is not reachable for other users.
        return subprocess.run(["/usr/bin/python3", "-c", code], preexec_fn=demote,
                              capture_output=True, text=True)

    def test_allow_other_and_mode_checks(self):
        os.chmod(self.mnt, 0o755)
        os.chmod(self.d, 0o755)
        os.mkdir(self.p("user"), 0o700)
        os.chown(self.p("user"), 5000, 5000)
        r = self.run_as(5000, 5000, "open(%r,'w').write('mine')" % self.p("user", "m"))
        self.assertEqual(r.returncode, 0, r.stderr)
        st = os.stat(self.p("user", "m"))
        self.assertEqual((st.st_uid, st.st_gid), (5000, 5000))
        r = self.run_as(5001, 5001, "open(%r,'w')" % self.p("user", "x"))
        self.assertIn("PermissionError", r.stderr)
        r = self.run_as(5001, 5001, "open(%r,'w')" % self.p("y"))
        self.assertIn("PermissionError", r.stderr)
        r = self.run_as(5001, 5001, "open(%r).read()" % self.p("user", "m"))
        self.assertIn("PermissionError", r.stderr)
        os.chown(self.p("user", "m"), 5001, 5001)
        os.chmod(self.p("user"), 0o711)
        r = self.run_as(5001, 5001, "print(open(%r).read())" % self.p("user", "m"))
        self.assertEqual(r.stdout.strip(), "mine", r.stderr)


class FreshMounts(unittest.TestCase):
    """Each test makes its own mounts of a fresh STATE_DIR."""

    def setUp(self):
        self.area = TempArea()
        self.state, self.mnt = self.area.path("state"), self.area.path("mnt")
        self.mounts = []

    def tearDown(self):
        for m in self.mounts:
            m.stop()
        self.area.close()

    def mount(self, options=""):
        m = Mount(self.state, self.mnt, self.area.key, options).start()
        self.mounts.append(m)
        return m


class DurabilityTest(FreshMounts):
    """Remounts, crashes, keys, the ways to mount, play dead."""

    def test_remount_keeps_everything_and_inode_numbers(self):
        m = self.mount()
        os.makedirs(os.path.join(self.mnt, "Maildir", "new"))
        p = os.path.join(self.mnt, "Maildir", "new", "msg")
        write_file(p, b"persist")
        os.link(p, p + "2")
        os.utime(p, ns=(5, 7000000000))
        st = os.stat(p)
        self.assertEqual(m.stop(), 0)
        self.mount()
        st2 = os.stat(p)
        self.assertEqual((st2.st_ino, st2.st_nlink, st2.st_mtime_ns), (st.st_ino, 2, 7000000000))
        self.assertEqual(os.stat(p + "2").st_ino, st.st_ino)
        self.assertEqual(read_file(p), b"persist")

    def test_kill9_loses_nothing_fsynced(self):
        m = self.mount()
        os.makedirs(os.path.join(self.mnt, "tmp"))
        os.makedirs(os.path.join(self.mnt, "new"))
        expect = {}
        for i in range(20):
            data = os.urandom(1000 + i * 5000)
            t = os.path.join(self.mnt, "tmp", "m%d" % i)
            write_file(t, data)  # write + fsync
            os.rename(t, os.path.join(self.mnt, "new", "m%d" % i))  # sync namespace (default)
            expect["m%d" % i] = data
        m.kill9()
        self.mount()
        got = {n: read_file(os.path.join(self.mnt, "new", n))
               for n in os.listdir(os.path.join(self.mnt, "new"))}
        self.assertEqual(got, expect)
        self.assertEqual(os.listdir(os.path.join(self.mnt, "tmp")), [])

    def test_other_key_is_refused_with_a_clear_message(self):
        m = self.mount()
        write_file(os.path.join(self.mnt, "f"), b"x")
        m.stop()
        other = self.area.path("otherkey")
        make_key(other)
        r = subprocess.run([COFFERFS, self.state, self.mnt, "-o", "keyfile=" + other],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("another key", r.stderr)
        self.assertFalse(os.path.ismount(self.mnt))

    def test_background_mount_and_fusermount_unmount(self):
        os.makedirs(self.mnt, exist_ok=True)
        r = subprocess.run([COFFERFS, self.state, self.mnt, "-o", "keyfile=" + self.area.key],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertTrue(os.path.ismount(self.mnt))
            write_file(os.path.join(self.mnt, "f"), b"bg")
        finally:
            subprocess.run(["fusermount3", "-u", self.mnt], check=True)
        # The daemon releases the STATE_DIR lock when it has committed and exited.
        deadline = time.time() + 10
        while True:
            try:
                self.mount()
                break
            except RuntimeError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.assertEqual(read_file(os.path.join(self.mnt, "f")), b"bg")

    def test_mount_t_fuse_cofferfs(self):
        """What mount(8) and fstab run: mount.fuse3 with type cofferfs, found on PATH."""
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(os.path.abspath(COFFERFS)) + ":" + env.get("PATH", "")
        os.makedirs(self.mnt, exist_ok=True)
        r = subprocess.run(["mount.fuse3", self.state, self.mnt, "-t", "cofferfs", "-o",
                            "rw,nofail,_netdev,keyfile=" + self.area.key + ",allow_other"],
                           capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertTrue(os.path.ismount(self.mnt))
            write_file(os.path.join(self.mnt, "f"), b"x")
        finally:
            subprocess.run(["umount", self.mnt], check=True)
        # mount(8) itself, with the program named in the source (as in an fstab line).
        time.sleep(0.5)
        deadline = time.time() + 10
        while True:
            r = subprocess.run(["mount", "-t", "fuse", os.path.abspath(COFFERFS) + "#" + self.state,
                                self.mnt, "-o", "keyfile=" + self.area.key],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0 or time.time() > deadline:
                break
            time.sleep(0.3)  # the previous daemon may still hold the STATE_DIR
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertEqual(read_file(os.path.join(self.mnt, "f")), b"x")
        finally:
            subprocess.run(["umount", self.mnt], check=True)

    def test_no_plaintext_in_state_dir(self):
        m = self.mount()
        os.makedirs(os.path.join(self.mnt, "SecretFolderXyz", "new"))
        body = b"Subject: PlaintextSubjectMarker\n\n" + b"PlaintextBodyMarker\n" * 5000
        write_file(os.path.join(self.mnt, "SecretFolderXyz", "new", "SecretNameMarker:2,S"), body)
        os.symlink("SecretSymlinkTarget", os.path.join(self.mnt, "SecretLinkName"))
        m.stop()
        for root, _, files in os.walk(self.state):
            for f in files:
                path = os.path.join(root, f)
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    continue
                data = read_file(path)
                for marker in (b"SecretFolderXyz", b"PlaintextSubjectMarker",
                               b"PlaintextBodyMarker", b"SecretNameMarker", b"SecretSymlinkTarget",
                               b"SecretLinkName"):
                    self.assertNotIn(marker, data, "%s in %s" % (marker, path))

    def test_play_dead_eio_and_slow(self):
        m = self.mount("control_socket=" + self.area.path("ctl.sock"))
        os.mkdir(os.path.join(self.mnt, "d"))

        def ctl(cmd):
            import socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.area.path("ctl.sock"))
            s.sendall(cmd.encode() + b"\n")
            reply = s.makefile().readline().strip()
            s.close()
            return reply

        self.assertEqual(ctl("eio"), "ok mode=eio")
        with self.assertRaises(OSError) as cm:
            os.listdir(os.path.join(self.mnt, "d"))
        self.assertEqual(cm.exception.errno, errno.EIO)
        with self.assertRaises(OSError) as cm:
            write_file(os.path.join(self.mnt, "d", "x"), b"")
        self.assertEqual(cm.exception.errno, errno.EIO)
        self.assertEqual(ctl("slow 300"), "ok mode=slow delay_ms=300")
        t = time.time()
        os.listdir(os.path.join(self.mnt, "d"))
        self.assertGreaterEqual(time.time() - t, 0.3)
        self.assertEqual(ctl("normal"), "ok mode=normal")
        t = time.time()
        write_file(os.path.join(self.mnt, "d", "y"), b"ok")
        self.assertLess(time.time() - t, 0.3)
        self.assertTrue(ctl("status").startswith("ok mode=normal delay_ms=0 "), ctl("status"))
        del m


class ManyEntriesTest(FreshMounts):
    def test_100000_entries_with_fast_lookups(self):
        m = self.mount("async")
        d = os.path.join(self.mnt, "new")
        os.mkdir(d)
        n = 100000
        t0 = time.time()
        for i in range(n):
            os.mknod(os.path.join(d, "%d.M%dP1.host,S=1000" % (1700000000 + i, i)),
                     0o600 | stat.S_IFREG)
        create_s = time.time() - t0
        self.assertEqual(m.stop(), 0)
        t0 = time.time()
        self.mount()
        mount_s = time.time() - t0
        t0 = time.time()
        self.assertEqual(len(os.listdir(d)), n)
        list_s = time.time() - t0
        sample = random.Random(4).sample(range(n), 2000)
        t0 = time.time()
        for i in sample:  # cold lookups: nothing of this mount is in the dentry cache yet
            os.stat(os.path.join(d, "%d.M%dP1.host,S=1000" % (1700000000 + i, i)))
        lookup_us = (time.time() - t0) / len(sample) * 1e6
        print("100k entries: create %.1fs, remount %.2fs, list %.2fs, lookup %.0f us" %
              (create_s, mount_s, list_s, lookup_us))
        self.assertLess(lookup_us, 2000)
        self.assertLess(mount_s, 15)


if __name__ == "__main__":
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("needs root and /dev/fuse")
        sys.exit(1)
    unittest.main(verbosity=2)
