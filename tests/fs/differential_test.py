#!/usr/bin/env python3
"""Differential filesystem semantics: the same operations on a plain directory and on cofferfs.

Every step of every scenario runs first in a plain directory under /tmp (a local filesystem,
ext4 or tmpfs) and then in the same place on a real cofferfs mount (local store, default
options), and the two must agree. After each step the test compares:

- the step's result: its return value (bytes read or written, offsets, the normalized stat of
  the object) or the errno it failed with;
- the whole tree of the scenario, walked after every step, and every open descriptor: the same
  paths; per object the type and permission bits of st_mode (setuid/setgid/sticky included),
  st_nlink, st_uid, st_gid, st_size (not of directories, see below), st_rdev of device nodes,
  file contents, symlink targets, and sorted directory listings with their d_type (and that
  d_ino equals the st_ino of the entry);
- inode identity: which paths and descriptors share an inode, and that each of them keeps the
  inode it had before the step (across rename, link, unlink of an open file). Raw inode numbers
  are never compared between the two trees;
- timestamps, relationally, because the clocks and their resolution differ: whether the step
  changed each object's mtime, ctime and atime; whether mtime is before, equal to or after
  ctime; and that no ctime is later than the end of the step (nobody can set a ctime). atime is
  compared in full (its order against mtime and ctime, and whether a read, readdir or readlink
  moved it as each mount's atime option says, e.g. relatime) in the atime tests and in
  test_utimensat; elsewhere a step that reads data or a listing may move atime on one side only
  (and symlink atimes, which every path lookup through a symlink moves, are not compared), while
  every other step must leave atime alone on both, so that one atime difference does not hide
  the others. The checker itself reads with O_NOATIME so that it moves no atime.

The first difference in a scenario fails its test with the step, the operation, its arguments
and both results; later steps of that scenario are not run (its trees differ from then on).

Left out because cofferfs is meant to differ (DESIGN.md, cofferfs(8)):
- st_dev; st_blksize (the chunk size, 64 KiB, DESIGN.md "Data model"); st_blocks (content is
  sealed chunks in LMDB: there is no block allocation to report);
- statfs numbers (cofferfs(8): those of the STATE_DIR's filesystem); f_namemax, the order of
  the counts and the mount flags except nosuid/nodev are compared;
- nosuid/nodev: cofferfs(8) accepts and ignores the "dev" and "suid" mount options, so a
  cofferfs mount is always nodev: device nodes are created and compared, never opened;
- extended attributes: the inode record of DESIGN.md holds none, so cofferfs must refuse them
  with ENOTSUP, as a local filesystem without them does (test_xattrs_are_unsupported).
Left out because they differ between local filesystems too (POSIX leaves them open):
- st_size of directories (ext4 counts bytes of entry blocks, tmpfs entries, cofferfs says 0);
- the offsets SEEK_DATA/SEEK_HOLE return (a filesystem may report holes as data: lseek(2));
  their contract is compared instead: the result lies in [offset, size], skips only zeros;
- lseek offsets of directories (opaque readdir cookies; only the random mode could do it).

The random mode (test_random_sequences) runs seeded sequences of steps over a small namespace on
both trees, about one step in seven as an unprivileged user. COFFER_DIFF_SEEDS=3,7 and
COFFER_DIFF_OPS=500 replay particular seeds; COFFER_DIFF_OMIT=kind,... leaves kinds of steps out
of the generator (see RandomSequence.KINDS), to look by hand at what lies behind a difference
that is already known (e.g. COFFER_DIFF_OMIT=open_trunc,mknod_dev).

Run: differential_test.py [TestClass ...] with COFFERFS and COFFER_KEYTOOL set
(tests/fs/meson.build does this; NodesDifferentialTest also needs COFFER_NODE). Needs root and
/dev/fuse.
"""
import contextlib
import ctypes
import errno
import hashlib
import os
import random
import socket
import stat
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cofferfs_mount import Mount, TempArea  # noqa: E402

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
CHUNK = 64 << 10
CHUNK_SIZES = [0, 1, 4095, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK,
               2 * CHUNK + 1, 3 * CHUNK + 17]
CLOCK_SLACK_NS = 50_000_000  # between the test's clock and a filesystem's timestamps
NONROOT = (1000, 1000)  # an unprivileged user for the permission scenarios
OTHER_GROUP, OTHER_GROUP2 = 50, 51  # groups that NONROOT is not in


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), what)


def renameat2(src, dst, flags):
    _check(libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags), src)


def _timespec(t):
    if t == "now":
        return Timespec(0, UTIME_NOW)
    if t == "omit":
        return Timespec(0, UTIME_OMIT)
    sec, nsec = divmod(t, 1_000_000_000)
    return Timespec(sec, nsec)


def utimensat(path, atime, mtime, nofollow=False):
    """atime, mtime: nanoseconds since the epoch, "now" (UTIME_NOW) or "omit" (UTIME_OMIT)."""
    ts = (Timespec * 2)(_timespec(atime), _timespec(mtime))
    _check(libc.utimensat(AT_FDCWD, os.fsencode(path), ts,
                          AT_SYMLINK_NOFOLLOW if nofollow else 0), path)


def futimens(fd, atime, mtime):
    ts = (Timespec * 2)(_timespec(atime), _timespec(mtime))
    _check(libc.futimens(fd, ts), "fd")


def link_fd(fd, path):
    """linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH): gives an open file a name."""
    _check(libc.linkat(fd, b"", AT_FDCWD, os.fsencode(path), AT_EMPTY_PATH), path)


def fallocate(fd, mode, offset, length):
    _check(libc.fallocate(fd, mode, offset, length), "fd")


KINDS = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk", stat.S_IFIFO: "fifo",
         stat.S_IFSOCK: "sock", stat.S_IFCHR: "chr", stat.S_IFBLK: "blk"}


def describe_stat(st):
    """The comparable part of a stat result, as text (no st_ino, st_dev, times, blocks)."""
    fmt = stat.S_IFMT(st.st_mode)
    s = "%s %04o nlink=%d uid=%d gid=%d" % (KINDS.get(fmt, "?%o" % fmt), stat.S_IMODE(st.st_mode),
                                            st.st_nlink, st.st_uid, st.st_gid)
    if fmt != stat.S_IFDIR:  # directory sizes are the filesystem's own (module docstring)
        s += " size=%d" % st.st_size
    if fmt in (stat.S_IFCHR, stat.S_IFBLK):
        s += " rdev=%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
    return s


OPEN_FLAGS = [("O_WRONLY", os.O_WRONLY), ("O_RDWR", os.O_RDWR), ("O_CREAT", os.O_CREAT),
              ("O_EXCL", os.O_EXCL), ("O_TRUNC", os.O_TRUNC), ("O_APPEND", os.O_APPEND),
              ("O_DIRECTORY", os.O_DIRECTORY), ("O_NOFOLLOW", os.O_NOFOLLOW),
              ("O_NONBLOCK", os.O_NONBLOCK), ("O_PATH", os.O_PATH), ("O_NOATIME", os.O_NOATIME)]


def flag_names(flags):
    names = []
    if flags & os.O_TMPFILE == os.O_TMPFILE:
        names.append("O_TMPFILE")
        flags &= ~os.O_TMPFILE
    for name, bit in OPEN_FLAGS:
        if flags & bit:
            names.append(name)
            flags &= ~bit
    if not names or not names[0].startswith(("O_WRONLY", "O_RDWR")):
        names.insert(0, "O_RDONLY")
    if flags:
        names.append("0x%x" % flags)
    return "|".join(names)


def show(value, limit=120):
    """A result for a message: long byte strings by length, digest and head."""
    if isinstance(value, (bytes, bytearray)) and len(value) > 32:
        return "<%d bytes sha256:%s head %r>" % (len(value), hashlib.sha256(value).hexdigest()[:12],
                                                 bytes(value[:16]))
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def show_result(r):
    return ("-> " + show(r[1])) if r[0] == "ok" else ("fails with " + r[1])


def first_difference(a, b):
    n = min(len(a), len(b))
    for i in range(0, n, 4096):
        if a[i:i + 4096] != b[i:i + 4096]:
            for j in range(i, min(i + 4096, n)):
                if a[j] != b[j]:
                    return j
    return n


def atime_rule(path):
    """The atime option of the mount holding `path`: (noatime|relatime|strictatime, nodiratime)."""
    path = os.path.realpath(path)
    best, opts = "", []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mp = parts[4].encode().decode("unicode_escape")
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, opts = mp, parts[5].split(",")
    mode = "noatime" if "noatime" in opts else "relatime" if "relatime" in opts else "strictatime"
    return mode, "nodiratime" in opts


def atime_update_expected(rule, is_dir, before, now_ns):
    """Whether a read (or readdir) must move atime under the mount's atime option."""
    mode, nodiratime = rule
    a, m, c = before
    if mode == "noatime" or (is_dir and nodiratime):
        return False
    if mode == "strictatime":
        return True
    return a <= m or a <= c or now_ns - a >= 24 * 3600 * 10**9


def cmp(x, y):
    return (x > y) - (x < y)


@contextlib.contextmanager
def as_user(uid, gid, groups=()):
    """Runs the body with this effective uid/gid and supplementary groups (root is restored)."""
    saved = os.getgroups()
    os.setgroups(list(groups))
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(saved)


class Entry:
    """What the checker saw of one path or descriptor."""
    __slots__ = ("attrs", "ino", "times", "kind", "content", "target", "listing", "dino_ok")

    def __init__(self, st):
        self.attrs = describe_stat(st)
        self.ino = st.st_ino
        self.times = (st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns)
        self.kind = stat.S_IFMT(st.st_mode)
        self.content = self.target = self.listing = None
        self.dino_ok = True


class Side:
    """One of the two trees: its root, and the descriptors a scenario opened in it."""

    def __init__(self, name, root):
        self.name, self.root, self.fds = name, root, {}
        self.rule = atime_rule(root)

    def path(self, rel):
        return os.path.join(self.root, rel) if rel else self.root

    def fd(self, slot):
        if slot not in self.fds:
            raise OSError(errno.EBADF, "slot %s is not open" % slot)
        return self.fds[slot]

    def read_noatime(self, path):
        fd = os.open(path, os.O_RDONLY | os.O_NOATIME | os.O_NONBLOCK)
        try:
            chunks = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    return b"".join(chunks)
                chunks.append(b)
        finally:
            os.close(fd)

    @staticmethod
    def list_noatime(path):
        """[(name, "dir"|"lnk"|"other" from d_type, d_ino)] of a directory, read without moving
        its atime."""
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
        try:
            with os.scandir(dfd) as it:
                return [(x.name, "dir" if x.is_dir(follow_symlinks=False) else
                         "lnk" if x.is_symlink() else "other", x.inode()) for x in it]
        finally:
            os.close(dfd)

    def snapshot(self, read_symlinks):
        """Every path below the root (relative names, "" for the root) and every open descriptor
        ("fd:SLOT")."""
        out = {}

        def visit(rel):
            full = self.path(rel)
            e = Entry(os.lstat(full))
            if e.kind == stat.S_IFREG:
                e.content = self.read_noatime(full)
            elif e.kind == stat.S_IFLNK and read_symlinks:
                e.target = os.readlink(full)  # moves the symlink's atime on a local filesystem
            elif e.kind == stat.S_IFDIR:
                listed = self.list_noatime(full)
                e.listing = sorted((name, kind) for name, kind, _ in listed)
                out[rel] = e
                for name, _, dino in listed:
                    child = os.path.join(rel, name) if rel else name
                    visit(child)
                    if out[child].ino != dino:
                        e.dino_ok = False
                return
            out[rel] = e

        visit("")
        for slot, fd in sorted(self.fds.items()):
            e = Entry(os.fstat(fd))
            if e.kind == stat.S_IFREG:
                e.content = self.read_noatime("/proc/self/fd/%d" % fd)
            out["fd:" + slot] = e
        return out

    def close_all(self):
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()


class Differ:
    """Runs each step on both trees and compares the results and the trees after it.

    full_atime: compare atime in full (order against mtime/ctime, each mount's atime rule for
    reads); the checker then does not readlink, which would move symlink atimes on the plain
    tree. Otherwise atime is compared only for steps that read nothing (module docstring).
    """

    def __init__(self, test, plain_root, coffer_root, label, full_atime=False):
        self.test, self.label, self.full_atime = test, label, full_atime
        self.sides = [Side("plain", plain_root), Side("cofferfs", coffer_root)]
        self.step = 0
        self.history = []
        self.user = None  # (uid, gid) that steps run as by default; None: root
        self.snaps = [s.snapshot(not full_atime) for s in self.sides]

    # ---- the engine ----

    def fail(self, msg):
        recent = "".join("\n    %d: %s" % (i + 1, h) for i, h in
                         list(enumerate(self.history))[-8:])
        self.test.fail("%s, step %d: %s\n  recent steps:%s" % (self.label, self.step, msg, recent))

    def call(self, side, fn, user):
        try:
            if user:
                with as_user(*user):
                    return ("ok", fn(side))
            return ("ok", fn(side))
        except OSError as e:
            return ("err", errno.errorcode.get(e.errno, str(e.errno)))

    def run(self, desc, fn, reads=(), expect=None, user=None):
        """One step. `reads`: handles (paths or "fd:SLOT") whose data the step reads, for atime.
        `expect`: "ok" or an errno the plain tree must give (guards the scenario itself).
        `user`: (uid, gid) to run the step as (default self.user, else root)."""
        user = user or self.user
        self.step += 1
        if user:
            desc += " as uid %d" % user[0]
        self.history.append(desc)
        results = [self.call(s, fn, user) for s in self.sides]
        if expect is not None:
            want = ("ok",) if expect == "ok" else ("err", errno.errorcode[expect])
            if results[0][:len(want)] != want:
                self.fail("%s: the plain tree %s, the scenario expects %s (test assumption)"
                          % (desc, show_result(results[0]), want[-1]))
        if results[0] != results[1]:
            self.fail("%s\n  plain    %s\n  cofferfs %s" % (desc, show_result(results[0]),
                                                            show_result(results[1])))
        self.check(desc, reads, time.time_ns())
        return results[0][1] if results[0][0] == "ok" else None

    def check(self, desc, reads=(), now_ns=None):
        """Compares the trees now with each other and with the last check. now_ns: the time the
        step ended (default: now)."""
        now_ns = now_ns or time.time_ns()
        after = [s.snapshot(not self.full_atime) for s in self.sides]
        problems = self.compare(self.snaps, after, reads, now_ns)
        self.snaps = after
        if problems:
            more = len(problems) - 20
            self.fail("after %s the trees differ:\n  %s%s" % (
                desc, "\n  ".join(problems[:20]), "\n  (%d more)" % more if more > 0 else ""))

    def compare(self, before, after, reads, now_ns):
        problems = []
        pa, ca = after
        only_p, only_c = sorted(set(pa) - set(ca)), sorted(set(ca) - set(pa))
        if only_p or only_c:
            problems.append("paths only in plain: %s; only in cofferfs: %s" % (only_p, only_c))
        common = sorted(set(pa) & set(ca))
        for h in common:
            p, c = pa[h], ca[h]
            if p.attrs != c.attrs:
                problems.append("%r: plain %s, cofferfs %s" % (h, p.attrs, c.attrs))
            if p.content != c.content:
                at = first_difference(p.content or b"", c.content or b"")
                problems.append("%r: contents differ (plain %d bytes, cofferfs %d, first "
                                "difference at offset %d: plain %r, cofferfs %r)"
                                % (h, len(p.content or b""), len(c.content or b""), at,
                                   (p.content or b"")[at:at + 8], (c.content or b"")[at:at + 8]))
            if p.target != c.target:
                problems.append("%r: symlink target plain %r, cofferfs %r"
                                % (h, p.target, c.target))
            if p.listing != c.listing:
                problems.append("%r: listing plain %s, cofferfs %s" % (h, p.listing, c.listing))
            if p.dino_ok != c.dino_ok:
                problems.append("%r: readdir d_ino == lstat st_ino: plain %s, cofferfs %s"
                                % (h, p.dino_ok, c.dino_ok))
        # Identity: which handles share an inode, now and with the handles before the step.
        def groups(snap):
            by_ino = {}
            for h in common:
                by_ino.setdefault(snap[h].ino, []).append(h)
            return sorted(tuple(v) for v in by_ino.values() if len(v) > 1)

        gp, gc = groups(pa), groups(ca)
        if gp != gc:
            problems.append("names of one inode (hard links, descriptors): plain %s, cofferfs %s"
                            % (gp, gc))
        bp, bc = before
        before_common = sorted(set(bp) & set(bc))

        def previous(snap_before, snap_after, h):
            return [b for b in before_common if snap_before[b].ino == snap_after[h].ino]

        prev = {}
        for h in common:
            pp, pc = previous(bp, pa, h), previous(bc, ca, h)
            if pp != pc:
                problems.append("%r is the inode of %s before the step on plain, of %s on "
                                "cofferfs" % (h, pp or "nothing", pc or "nothing"))
            elif pp:
                prev[h] = pp[0] if h not in pp else h
        # Timestamps, relationally.
        read_inos = [{snap[h].ino for h in reads if h in snap} for snap in (pa, ca)]
        for h in common:
            p, c = pa[h], ca[h]
            # Nobody can set a ctime: it is the time of the last change, never later than now.
            for side, e in ((self.sides[0], p), (self.sides[1], c)):
                if e.times[2] > now_ns + CLOCK_SLACK_NS:
                    problems.append("%r: ctime is in the future on %s (%.3f s after the step)"
                                    % (h, side.name, (e.times[2] - now_ns) / 1e9))
            atime_ok = self.full_atime or (p.kind != stat.S_IFLNK and not reads)
            (a1, m1, c1), (a2, m2, c2) = p.times, c.times
            if cmp(m1, c1) != cmp(m2, c2):
                problems.append("%r: mtime %s ctime on plain, %s on cofferfs" % (
                    h, "<=>"[cmp(m1, c1) + 1], "<=>"[cmp(m2, c2) + 1]))
            # With the same atime option on both mounts the orders must agree; with different
            # ones (cofferfs mounts noatime, cofferfs(8)) they may part after a read, and each
            # read is checked against its own mount's rule below instead.
            if self.full_atime and self.sides[0].rule == self.sides[1].rule:
                for name, x1, x2 in (("mtime", m1, m2), ("ctime", c1, c2)):
                    if cmp(a1, x1) != cmp(a2, x2):
                        problems.append("%r: atime %s %s on plain, %s on cofferfs" % (
                            h, "<=>"[cmp(a1, x1) + 1], name, "<=>"[cmp(a2, x2) + 1]))
            if h not in prev:
                continue
            b = prev[h]
            tb = (bp[b].times, bc[b].times)
            for i, name in ((1, "mtime"), (2, "ctime"), (0, "atime")):
                changed = (p.times[i] != tb[0][i], c.times[i] != tb[1][i])
                if i == 0:
                    if not atime_ok:
                        continue
                    if self.full_atime and (p.ino in read_inos[0] or c.ino in read_inos[1]):
                        # A read: each side follows its own mount's atime option.
                        for side, ch, e, t in ((self.sides[0], changed[0], p, tb[0]),
                                               (self.sides[1], changed[1], c, tb[1])):
                            want = atime_update_expected(side.rule, e.kind == stat.S_IFDIR,
                                                         t, now_ns)
                            if ch != want:
                                problems.append(
                                    "%r: on %s the read %s atime, but the mount is %s and "
                                    "before the read atime %s mtime, atime %s ctime" % (
                                        h, side.name, "moved" if ch else "did not move",
                                        side.rule[0], "<=>"[cmp(t[0], t[1]) + 1],
                                        "<=>"[cmp(t[0], t[2]) + 1]))
                        continue
                if changed[0] != changed[1]:
                    problems.append("%r: %s %s on plain, %s on cofferfs" % (
                        h, name, "changed" if changed[0] else "unchanged",
                        "changed" if changed[1] else "unchanged"))
        return problems

    def finish(self):
        """Closes every descriptor (a step of its own) and checks the trees a last time."""
        self.run("close every descriptor", lambda s: s.close_all())

    # ---- steps ----

    def open(self, rel, flags, mode=0o644, slot="f", **kw):
        def fn(s):
            fd = os.open(s.path(rel), flags, mode)
            if slot in s.fds:
                os.close(s.fds[slot])
            s.fds[slot] = fd
            return "opened"
        return self.run("open(%r, %s, 0%o) as %s" % (rel, flag_names(flags), mode, slot), fn, **kw)

    def close(self, slot="f", **kw):
        def fn(s):
            fd = s.fd(slot)
            del s.fds[slot]
            os.close(fd)
        return self.run("close(%s)" % slot, fn, **kw)

    def write(self, slot, data, **kw):
        return self.run("write(%s, %s)" % (slot, show(data, 40)),
                        lambda s: os.write(s.fd(slot), data), **kw)

    def pwrite(self, slot, data, offset, **kw):
        return self.run("pwrite(%s, %s, %d)" % (slot, show(data, 40), offset),
                        lambda s: os.pwrite(s.fd(slot), data, offset), **kw)

    def read(self, slot, n, **kw):
        return self.run("read(%s, %d)" % (slot, n), lambda s: os.read(s.fd(slot), n),
                        reads=["fd:" + slot], **kw)

    def pread(self, slot, n, offset, **kw):
        return self.run("pread(%s, %d, %d)" % (slot, n, offset),
                        lambda s: os.pread(s.fd(slot), n, offset), reads=["fd:" + slot], **kw)

    def lseek(self, slot, offset, whence, **kw):
        name = {os.SEEK_SET: "SEEK_SET", os.SEEK_CUR: "SEEK_CUR", os.SEEK_END: "SEEK_END"}[whence]
        return self.run("lseek(%s, %d, %s)" % (slot, offset, name),
                        lambda s: os.lseek(s.fd(slot), offset, whence), **kw)

    def ftruncate(self, slot, size, **kw):
        return self.run("ftruncate(%s, %d)" % (slot, size),
                        lambda s: os.ftruncate(s.fd(slot), size), **kw)

    def truncate(self, rel, size, **kw):
        return self.run("truncate(%r, %d)" % (rel, size),
                        lambda s: os.truncate(s.path(rel), size), **kw)

    def fsync(self, slot, **kw):
        return self.run("fsync(%s)" % slot, lambda s: os.fsync(s.fd(slot)), **kw)

    def fstat(self, slot, **kw):
        return self.run("fstat(%s)" % slot, lambda s: describe_stat(os.fstat(s.fd(slot))), **kw)

    def stat(self, rel, **kw):
        return self.run("stat(%r)" % rel, lambda s: describe_stat(os.stat(s.path(rel))), **kw)

    def lstat(self, rel, **kw):
        return self.run("lstat(%r)" % rel, lambda s: describe_stat(os.lstat(s.path(rel))), **kw)

    def mkdir(self, rel, mode=0o755, **kw):
        return self.run("mkdir(%r, 0%o)" % (rel, mode), lambda s: os.mkdir(s.path(rel), mode), **kw)

    def rmdir(self, rel, **kw):
        return self.run("rmdir(%r)" % rel, lambda s: os.rmdir(s.path(rel)), **kw)

    def unlink(self, rel, **kw):
        return self.run("unlink(%r)" % rel, lambda s: os.unlink(s.path(rel)), **kw)

    def rename(self, a, b, flags=0, **kw):
        names = "|".join(n for n, bit in (("RENAME_NOREPLACE", RENAME_NOREPLACE),
                                          ("RENAME_EXCHANGE", RENAME_EXCHANGE),
                                          ("RENAME_WHITEOUT", RENAME_WHITEOUT)) if flags & bit)
        if flags:
            return self.run("renameat2(%r, %r, %s)" % (a, b, names or flags),
                            lambda s: renameat2(s.path(a), s.path(b), flags), **kw)
        return self.run("rename(%r, %r)" % (a, b), lambda s: os.rename(s.path(a), s.path(b)), **kw)

    def link(self, a, b, **kw):
        return self.run("link(%r, %r)" % (a, b), lambda s: os.link(s.path(a), s.path(b),
                                                                  follow_symlinks=False), **kw)

    def symlink(self, target, rel, **kw):
        return self.run("symlink(%r, %r)" % (target, rel),
                        lambda s: os.symlink(target, s.path(rel)), **kw)

    def readlink(self, rel, **kw):
        return self.run("readlink(%r)" % rel, lambda s: os.readlink(s.path(rel)), reads=[rel], **kw)

    def mknod(self, rel, mode, dev=0, **kw):
        return self.run("mknod(%r, %s|0%o, %d:%d)" % (rel, KINDS.get(stat.S_IFMT(mode), "0"),
                                                      stat.S_IMODE(mode), os.major(dev),
                                                      os.minor(dev)),
                        lambda s: os.mknod(s.path(rel), mode, dev), **kw)

    def chmod(self, rel, mode, **kw):
        return self.run("chmod(%r, 0%o)" % (rel, mode), lambda s: os.chmod(s.path(rel), mode), **kw)

    def chown(self, rel, uid, gid, follow=True, **kw):
        return self.run("%s(%r, %d, %d)" % ("chown" if follow else "lchown", rel, uid, gid),
                        lambda s: os.chown(s.path(rel), uid, gid, follow_symlinks=follow), **kw)

    def utimens(self, rel, atime, mtime, nofollow=False, **kw):
        return self.run("utimensat(%r, atime=%s, mtime=%s%s)" % (
            rel, atime, mtime, ", AT_SYMLINK_NOFOLLOW" if nofollow else ""),
            lambda s: utimensat(s.path(rel), atime, mtime, nofollow), **kw)

    def times(self, rel, **kw):
        """The exact atime and mtime, for steps after which both were set explicitly."""
        def fn(s):
            st = os.lstat(s.path(rel))
            return (st.st_atime_ns, st.st_mtime_ns)
        return self.run("lstat(%r) atime, mtime in ns" % rel, fn, **kw)

    def listdir(self, rel, **kw):
        return self.run("listdir(%r)" % rel, lambda s: sorted(os.listdir(s.path(rel))),
                        reads=[rel], **kw)


def pattern(n, seed=0):
    """n bytes that differ at every offset of a 64 KiB chunk (a misplaced byte shows)."""
    block = hashlib.sha256(b"%d" % seed).digest()
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(block + i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:n])


class DifferentialBase(unittest.TestCase):
    """A plain directory and a cofferfs mount (default options) for the whole class; every
    scenario works in a fresh directory of the same name in both."""
    RANDOM_SEEDS, RANDOM_OPS = "1,2,3,4,5,6,7,8,9,10", 500  # test_random_sequences' defaults

    @classmethod
    def setUpClass(cls):
        os.umask(0o022)
        cls.area = TempArea()
        try:
            cls.plain = cls.area.path("plain")
            os.mkdir(cls.plain, 0o755)
            cls.mnt = cls.area.path("mnt")
            cls.options = cls.start_backend()
            cls.mount = cls.make_mount().start(timeout=30)
            os.chmod(cls.mnt, 0o755)
        except BaseException:
            cls.stop_backend()
            cls.area.close()
            raise

    @classmethod
    def start_backend(cls):
        """Starts what the mount needs; returns its mount options."""
        return ""

    @classmethod
    def stop_backend(cls):
        pass

    @classmethod
    def make_mount(cls):
        return Mount(cls.area.path("state"), cls.mnt, cls.area.key, cls.options)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.mount.stop()
        finally:
            cls.stop_backend()
            cls.area.close()

    def differ(self, name=None, full_atime=False):
        name = name or self.id().split(".")[-1]
        roots = [os.path.join(self.plain, name), os.path.join(self.mnt, name)]
        for r in roots:
            os.mkdir(r, 0o755)
        d = Differ(self, roots[0], roots[1], name, full_atime)
        self.addCleanup(lambda: [s.close_all() for s in d.sides])
        return d


class Scenarios:
    """The deterministic scenarios (mixed into a DifferentialBase)."""

    # ---- open flags ----

    def test_open_wronly_trunc_truncates(self):
        d = self.differ()
        d.open("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        d.write("f", pattern(100000))
        d.close()
        d.open("f", os.O_WRONLY | os.O_TRUNC, expect="ok")  # size 0, new mtime and ctime
        d.fstat("f")
        d.write("f", b"short")
        d.close()
        d.stat("f")
        d.finish()

    def test_open_trunc_variants(self):
        d = self.differ()
        for i, flags in enumerate([os.O_RDWR | os.O_TRUNC, os.O_RDONLY | os.O_TRUNC,
                                   os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                   os.O_WRONLY | os.O_TRUNC | os.O_APPEND]):
            name = "f%d" % i
            d.open(name, os.O_WRONLY | os.O_CREAT, 0o600, slot=name)
            d.write(name, pattern(70000, i))
            d.close(name)
            d.open(name, flags, slot=name, expect="ok")
            d.fstat(name)
            if flags & (os.O_WRONLY | os.O_RDWR):
                d.write(name, b"new")
            d.close(name)
        d.open("empty", os.O_WRONLY | os.O_CREAT, 0o600, slot="e")
        d.close("e")
        d.open("empty", os.O_WRONLY | os.O_TRUNC, slot="e")  # times move even at size 0
        d.close("e")
        d.finish()

    def test_open_creat_excl(self):
        d = self.differ()
        d.open("new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640, expect="ok")
        d.write("f", b"first")
        d.close()
        d.open("new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640, expect=errno.EEXIST)
        d.open("new", os.O_RDONLY | os.O_EXCL, expect="ok")  # O_EXCL without O_CREAT: ignored
        d.read("f", 100)
        d.open("new", os.O_RDWR | os.O_CREAT, 0o600, expect="ok")  # exists: no truncation
        d.fstat("f")
        d.close()
        d.open("missing", os.O_RDONLY, expect=errno.ENOENT)
        d.open("nodir/x", os.O_WRONLY | os.O_CREAT, expect=errno.ENOENT)
        d.open("new/x", os.O_WRONLY | os.O_CREAT, expect=errno.ENOTDIR)
        d.open("new/", os.O_RDONLY, expect=errno.ENOTDIR)
        d.open("slash/", os.O_WRONLY | os.O_CREAT, expect=errno.EISDIR)
        d.mkdir("dir")
        d.open("dir", os.O_WRONLY | os.O_CREAT, expect=errno.EISDIR)
        d.open("dir", os.O_RDONLY | os.O_CREAT, expect=errno.EISDIR)
        d.symlink("target", "dangling")
        d.open("dangling", os.O_WRONLY | os.O_CREAT | os.O_EXCL, expect=errno.EEXIST)
        d.open("dangling", os.O_WRONLY | os.O_CREAT, 0o600, expect="ok")  # creates "target"
        d.write("f", b"via symlink")
        d.close()
        d.open("x" * 255, os.O_WRONLY | os.O_CREAT, 0o644, expect="ok")
        d.close()
        d.open("y" * 256, os.O_WRONLY | os.O_CREAT, 0o644, expect=errno.ENAMETOOLONG)
        d.open("x" * 256, os.O_RDONLY, expect=errno.ENAMETOOLONG)
        d.open("exec", os.O_WRONLY | os.O_CREAT, 0o4755 | 0o2000 | 0o1000, expect="ok")
        d.close()
        d.finish()

    def test_open_access_modes_and_append(self):
        d = self.differ()
        d.open("f", os.O_RDWR | os.O_CREAT, 0o644, slot="rw")
        d.write("rw", b"0123456789")
        d.open("f", os.O_RDONLY, slot="ro")
        d.write("ro", b"x", expect=errno.EBADF)
        d.read("ro", 4)
        d.open("f", os.O_WRONLY, slot="wo")
        d.read("wo", 4, expect=errno.EBADF)
        d.write("wo", b"AB")  # at offset 0 of its own descriptor
        d.read("ro", 100)
        d.open("f", os.O_WRONLY | os.O_APPEND, slot="ap")
        d.write("ap", b"+tail")
        d.pwrite("ap", b"!", 0)  # Linux: O_APPEND wins over the offset
        d.lseek("ap", 0, os.SEEK_CUR)
        d.lseek("rw", 0, os.SEEK_END)
        d.lseek("rw", -3, os.SEEK_END)
        d.read("rw", 10)
        d.lseek("rw", 5, os.SEEK_SET)
        d.write("rw", b"--")
        d.lseek("rw", 0, os.SEEK_CUR)
        d.lseek("rw", -1, os.SEEK_SET, expect=errno.EINVAL)
        d.pread("ro", 100, 0)
        d.open("f", os.O_RDONLY | os.O_APPEND, slot="ra")
        d.write("ra", b"x", expect=errno.EBADF)
        d.finish()

    def test_open_directories(self):
        d = self.differ()
        d.mkdir("dir")
        d.open("f", os.O_WRONLY | os.O_CREAT, 0o644)
        d.close()
        d.symlink("dir", "dirlink")
        d.symlink("f", "filelink")
        d.open("dir", os.O_RDONLY, slot="d", expect="ok")
        d.read("d", 10, expect=errno.EISDIR)
        d.write("d", b"x", expect=errno.EBADF)
        d.fstat("d")
        d.fsync("d")
        d.open("dir", os.O_WRONLY, slot="x", expect=errno.EISDIR)
        d.open("dir", os.O_RDWR, slot="x", expect=errno.EISDIR)
        d.open("dir", os.O_RDONLY | os.O_TRUNC, slot="x", expect=errno.EISDIR)
        d.open("dir", os.O_RDONLY | os.O_DIRECTORY, slot="x", expect="ok")
        d.open("f", os.O_RDONLY | os.O_DIRECTORY, slot="x", expect=errno.ENOTDIR)
        d.open("dirlink", os.O_RDONLY | os.O_DIRECTORY, slot="x", expect="ok")
        d.open("filelink", os.O_RDONLY | os.O_DIRECTORY, slot="x", expect=errno.ENOTDIR)
        d.open("dirlink", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, slot="x")
        d.open("newdir", os.O_RDONLY | os.O_DIRECTORY | os.O_CREAT, slot="x")
        d.open("dir/", os.O_RDONLY, slot="x", expect="ok")
        d.open("dir/.", os.O_RDONLY, slot="x", expect="ok")
        d.open("dir/..", os.O_RDONLY, slot="x", expect="ok")
        d.finish()

    def test_open_tmpfile(self):
        # A documented limit (cofferfs(8), SEMANTICS): libfuse 3.14 has no O_TMPFILE operation,
        # so the kernel answers EOPNOTSUPP for cofferfs, which callers such as glibc's tmpfile()
        # handle by falling back to a named file. Checked as that, not compared.
        d = self.differ()
        d.mkdir("dir")
        plain, coffer = (os.path.join(s.root, "dir") for s in d.sides)
        fd = os.open(plain, os.O_TMPFILE | os.O_RDWR, 0o600)
        os.close(fd)
        with self.assertRaises(OSError) as cm:
            os.close(os.open(coffer, os.O_TMPFILE | os.O_RDWR, 0o600))
        self.assertEqual(cm.exception.errno, errno.EOPNOTSUPP)
        d.finish()

    def test_open_nofollow_and_symlinks(self):
        d = self.differ()
        d.open("file", os.O_WRONLY | os.O_CREAT, 0o644)
        d.write("f", b"target data")
        d.close()
        d.mkdir("dir")
        d.symlink("file", "l1", expect="ok")
        d.symlink("dir", "ld")
        d.symlink("l1", "l2")
        d.symlink("loop", "loop")
        d.symlink("../file", "dir/up")
        d.symlink("/nonexistent/x", "abs-dangling")
        d.symlink("t" * 4095, "longtarget", expect="ok")
        d.symlink("t" * 4096, "toolong", expect=errno.ENAMETOOLONG)
        d.symlink("", "empty", expect=errno.ENOENT)
        d.symlink("file", "l1", expect=errno.EEXIST)
        d.open("l1", os.O_RDONLY | os.O_NOFOLLOW, expect=errno.ELOOP)
        d.open("l2", os.O_RDONLY, expect="ok")
        d.read("f", 100)
        d.open("loop", os.O_RDONLY, expect=errno.ELOOP)
        d.open("abs-dangling", os.O_RDONLY, expect=errno.ENOENT)
        d.open("ld/../file", os.O_RDONLY, expect="ok")
        d.open("dir/up", os.O_RDONLY | os.O_NOFOLLOW, expect=errno.ELOOP)
        d.open("l1", os.O_PATH | os.O_NOFOLLOW, slot="p", expect="ok")
        d.fstat("p")
        d.stat("l2")
        d.lstat("l2")
        d.readlink("l2")
        d.readlink("longtarget")
        d.readlink("file", expect=errno.EINVAL)
        d.readlink("missing", expect=errno.ENOENT)
        d.chmod("l1", 0o600)  # follows to "file"
        d.chown("l1", 7, 8, follow=False)
        d.utimens("l1", 1000000000123, 2000000000456, nofollow=True)
        d.link("l1", "hardlink-to-symlink")
        d.rename("l2", "dir/l2")
        d.stat("dir/l2", expect=errno.ENOENT)  # "l1" is relative to the new directory
        d.unlink("loop")
        d.finish()

    # ---- data ----

    def test_read_write_at_offsets(self):
        d = self.differ()
        data = pattern(3 * CHUNK + 100)
        d.open("f", os.O_RDWR | os.O_CREAT, 0o644)
        d.write("f", data)
        for off, n in [(0, 10), (CHUNK - 6, 12), (CHUNK, 1), (2 * CHUNK - 1, 2),
                       (3 * CHUNK + 90, 100), (3 * CHUNK + 100, 10), (10**7, 5), (5, 0)]:
            d.pread("f", n, off)
        d.pwrite("f", b"X" * 20, CHUNK - 10)
        d.pwrite("f", b"Y" * (CHUNK + 2), CHUNK - 1)  # three chunks touched
        d.pwrite("f", b"Z", 0)
        d.lseek("f", 0, os.SEEK_CUR)  # pwrite moves no offset
        d.lseek("f", 10, os.SEEK_SET)
        d.read("f", 2 * CHUNK)
        d.lseek("f", 0, os.SEEK_CUR)
        d.write("f", b"W" * 7)
        d.lseek("f", 0, os.SEEK_CUR)
        d.pwrite("f", b"", 10**6)  # an empty write at a far offset changes nothing
        d.fstat("f")
        d.open("g", os.O_WRONLY | os.O_CREAT, 0o644, slot="g")
        for i in range(40):  # many small appends crossing a chunk boundary
            d.write("g", pattern(3001, i))
        d.fsync("g")
        d.finish()

    def test_sparse_files_and_holes(self):
        d = self.differ()
        d.open("s", os.O_RDWR | os.O_CREAT, 0o644)
        d.pwrite("f", b"end", 5 * CHUNK + 7)
        d.fstat("f")
        d.pread("f", 100, 0)
        d.pread("f", 20, 5 * CHUNK)
        d.pwrite("f", b"mid", 2 * CHUNK - 1)
        d.pread("f", 8, 2 * CHUNK - 3)
        d.ftruncate("f", 9 * CHUNK)  # a trailing hole
        d.pread("f", 10, 9 * CHUNK - 5)
        d.open("t", os.O_RDWR | os.O_CREAT, 0o644, slot="t")
        d.lseek("t", 3 * CHUNK, os.SEEK_SET)
        d.write("t", b"after a hole")
        for off in (0, CHUNK, 2 * CHUNK - 1, 2 * CHUNK + 2, 5 * CHUNK + 7, 5 * CHUNK + 10,
                    8 * CHUNK, 9 * CHUNK, 10 * CHUNK):
            for whence in (os.SEEK_DATA, os.SEEK_HOLE):
                self.seek_data_hole(d, "f", off, whence)
        d.finish()

    def seek_data_hole(self, d, slot, off, whence):
        """SEEK_DATA/SEEK_HOLE may report holes as data (lseek(2)): compare the contract, not
        the offsets: the result lies in [off, size], skips only zeros (SEEK_DATA) or lands on a
        zero (SEEK_HOLE), and ENXIO means off >= size (or only zeros follow, for SEEK_DATA)."""
        name = "SEEK_DATA" if whence == os.SEEK_DATA else "SEEK_HOLE"

        def fn(s):
            fd = s.fd(slot)
            size = os.fstat(fd).st_size
            content = os.pread(fd, size, 0)
            try:
                r = os.lseek(fd, off, whence)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                ok = off >= size or (whence == os.SEEK_DATA and not content[off:].strip(b"\0"))
                return "consistent" if ok else "ENXIO although data follows"
            if not off <= r <= size or (whence == os.SEEK_DATA and r == size):
                return "%d out of range" % r
            if whence == os.SEEK_DATA and content[off:r].strip(b"\0"):
                return "skips data"
            if whence == os.SEEK_HOLE and r < size and content[r] != 0:
                return "lands on data"
            return "consistent"
        return self.assertIn(d.run("lseek(%s, %d, %s) contract" % (slot, off, name), fn,
                                   reads=["fd:" + slot]),
                             ("consistent", None))

    def test_fallocate(self):
        d = self.differ()
        d.open("f", os.O_RDWR | os.O_CREAT, 0o644)
        d.write("f", pattern(3 * CHUNK))
        d.run("posix_fallocate(f, 0, 5 chunks)",  # glibc emulates it where fallocate is missing
              lambda s: os.posix_fallocate(s.fd("f"), 0, 5 * CHUNK), expect="ok")
        d.fstat("f")
        d.run("fallocate(f, 0, 6 chunks, 1 chunk)",
              lambda s: fallocate(s.fd("f"), 0, 6 * CHUNK, CHUNK), expect="ok")
        d.fstat("f")
        d.run("fallocate(f, FALLOC_FL_KEEP_SIZE, 7 chunks, 1 chunk)",
              lambda s: fallocate(s.fd("f"), FALLOC_FL_KEEP_SIZE, 7 * CHUNK, CHUNK))
        d.fstat("f")
        d.run("fallocate(f, PUNCH_HOLE|KEEP_SIZE, chunk - 10, 20)",
              lambda s: fallocate(s.fd("f"), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                  CHUNK - 10, 20))
        d.pread("f", 40, CHUNK - 20)
        d.finish()

    def test_truncate_across_chunk_boundaries(self):
        d = self.differ()
        full = pattern(3 * CHUNK + 5)
        for size in [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, 1, 0]:
            name = "t%d" % size
            d.open(name, os.O_RDWR | os.O_CREAT, 0o644, slot=name)
            d.write(name, full)
            d.close(name)
            d.truncate(name, size)  # down: the tail is gone
            d.truncate(name, size + CHUNK + 3)  # up again: zeros, not the old bytes
            d.open(name, os.O_RDWR, slot=name)
            d.ftruncate(name, size // 2)
            d.pwrite(name, b"!", size + 10)  # a hole between size // 2 and size + 10
            d.ftruncate(name, size + 10)  # down inside the last chunk
            d.ftruncate(name, size + 10)  # the same size again
            d.close(name)
        d.open("f", os.O_RDWR | os.O_CREAT, 0o644)
        d.write("f", full)
        d.ftruncate("f", 3 * CHUNK + 5)  # same size
        d.ftruncate("f", 2 * CHUNK)
        d.write("f", b"after")  # at the old offset, past the end: a hole before it
        d.ftruncate("f", -1, expect=errno.EINVAL)
        d.open("f", os.O_RDONLY, slot="ro")
        d.ftruncate("ro", 0, expect=errno.EINVAL)
        d.mkdir("dir")
        d.truncate("dir", 0, expect=errno.EISDIR)
        d.truncate("missing", 0, expect=errno.ENOENT)
        d.mknod("fifo", stat.S_IFIFO | 0o644)
        d.truncate("fifo", 0, expect=errno.EINVAL)
        d.symlink("f", "link")
        d.truncate("link", 5)  # follows the symlink
        d.finish()

    # ---- rename ----

    def test_rename_files(self):
        d = self.differ()
        for n in ("a", "b", "c"):
            d.open(n, os.O_WRONLY | os.O_CREAT, 0o644, slot=n)
            d.write(n, n.encode() * 1000)
            d.close(n)
        d.mkdir("dir")
        d.mkdir("other")
        d.open("b", os.O_RDONLY, slot="old-b")
        d.rename("a", "b", expect="ok")  # over a file: b's inode goes when old-b closes
        d.read("old-b", 10)
        d.rename("b", "b", expect="ok")
        d.link("b", "b2")
        d.rename("b", "b2", expect="ok")  # two names of one inode: nothing happens
        d.rename("b", "dir/b")  # across directories
        d.rename("dir/b", "other/deep")
        d.rename("missing", "x", expect=errno.ENOENT)
        d.rename("c", "nodir/c", expect=errno.ENOENT)
        d.rename("c", "dir", expect=errno.EISDIR)
        d.rename("dir", "c", expect=errno.ENOTDIR)
        d.rename("c/", "d", expect=errno.ENOTDIR)
        d.rename("c", "d/", expect=errno.ENOTDIR)
        d.rename("c", "b2/x", expect=errno.ENOTDIR)
        d.rename("c", "z" * 256, expect=errno.ENAMETOOLONG)
        d.rename("c", "z" * 255, expect="ok")
        d.rename("z" * 255, "c")
        d.symlink("c", "sl")
        d.rename("sl", "moved-sl")  # the symlink itself moves
        d.rename("c", ".", expect=errno.EBUSY)
        d.finish()

    def test_rename_directories(self):
        d = self.differ()
        for p in ("a", "a/sub", "a/sub/deep", "b", "empty", "full", "full/x", "c"):
            d.mkdir(p)
        d.open("a/sub/file", os.O_WRONLY | os.O_CREAT, 0o644)
        d.close()
        d.rename("a", "empty", expect="ok")  # over an empty directory
        d.rename("empty", "full", expect=errno.ENOTEMPTY)
        d.rename("empty", "empty/sub/inside", expect=errno.EINVAL)
        d.rename("empty", "empty/sub", expect=errno.EINVAL)
        d.rename("empty", "empty")
        d.rename("empty/sub", "b/sub")  # across directories: both parents' nlink change
        d.rename("b/sub", "c/")  # a trailing slash on a directory is fine
        d.rename("c", "b/c")
        d.rename("b/c/deep", "deep-at-top")
        d.rename("full", "b", expect=errno.ENOTEMPTY)
        d.rename("full/x", "b/c/x")  # an empty directory moves to a new name
        d.rename("b", "full", expect="ok")  # a non-empty one over an empty one
        d.rename("full/c/x/..", "y", expect=errno.EBUSY)
        d.rename("full/.", "y", expect=errno.EBUSY)
        d.open("full/c", os.O_RDONLY | os.O_DIRECTORY, slot="dir")
        d.rename("full/c", "moved-open-dir")
        d.fstat("dir")
        d.finish()

    def test_renameat2_noreplace_exchange_whiteout(self):
        d = self.differ()
        for n, data in (("a", b"A"), ("b", b"BB")):
            d.open(n, os.O_WRONLY | os.O_CREAT, 0o644, slot=n)
            d.write(n, data)
            d.close(n)
        for p in ("d1", "d1/x", "d2", "d2/y", "d2/y/z"):
            d.mkdir(p)
        d.rename("a", "b", RENAME_NOREPLACE, expect=errno.EEXIST)
        d.rename("a", "c", RENAME_NOREPLACE, expect="ok")
        d.rename("c", "a", RENAME_NOREPLACE)
        d.rename("a", "b", RENAME_EXCHANGE, expect="ok")
        d.rename("a", "nothing", RENAME_EXCHANGE, expect=errno.ENOENT)
        d.rename("a", "d1", RENAME_EXCHANGE, expect="ok")  # a file and a directory swap
        d.rename("d1", "d2/y", RENAME_EXCHANGE, expect="ok")  # file <-> dir across directories
        d.rename("d1", "d1/z", RENAME_EXCHANGE, expect=errno.EINVAL)
        d.rename("d1/z", "d1", RENAME_EXCHANGE, expect=errno.EINVAL)
        d.rename("a", "b", RENAME_EXCHANGE | RENAME_NOREPLACE, expect=errno.EINVAL)
        d.rename("a", "a", RENAME_EXCHANGE)
        d.rename("b", "d1", RENAME_NOREPLACE, expect=errno.EEXIST)
        d.rename("b", "w", RENAME_WHITEOUT, expect="ok")  # leaves a 0:0 character device
        d.rename("w", "b", 8, expect=errno.EINVAL)
        d.finish()

    # ---- names ----

    def test_link_unlink_mkdir_rmdir_errnos(self):
        d = self.differ()
        d.open("f", os.O_WRONLY | os.O_CREAT, 0o644)
        d.close()
        d.mkdir("dir")
        d.mkdir("dir", expect=errno.EEXIST)
        d.mkdir("f", expect=errno.EEXIST)
        d.mkdir("missing/x", expect=errno.ENOENT)
        d.mkdir("f/x", expect=errno.ENOTDIR)
        d.mkdir("slash/", expect="ok")
        d.mkdir(".", expect=errno.EEXIST)
        d.link("f", "dir/f2", expect="ok")
        d.link("f", "dir/f2", expect=errno.EEXIST)
        d.link("f", "dir", expect=errno.EEXIST)
        d.link("dir", "dirlink", expect=errno.EPERM)
        d.link("missing", "x", expect=errno.ENOENT)
        d.link("f", "missing/x", expect=errno.ENOENT)
        d.link("f", "f/x", expect=errno.ENOTDIR)
        d.link("f/", "x", expect=errno.ENOTDIR)
        d.unlink("dir", expect=errno.EISDIR)
        d.unlink("missing", expect=errno.ENOENT)
        d.unlink("f/", expect=errno.ENOTDIR)
        d.unlink("f/x", expect=errno.ENOTDIR)
        d.rmdir("dir", expect=errno.ENOTEMPTY)
        d.rmdir("f", expect=errno.ENOTDIR)
        d.rmdir("missing", expect=errno.ENOENT)
        d.rmdir("dir/.", expect=errno.EINVAL)
        d.rmdir("dir/..", expect=errno.ENOTEMPTY)
        d.rmdir("slash/", expect="ok")
        long_ok, too_long = "n" * 255, "m" * 256
        d.mkdir(long_ok, expect="ok")
        d.mkdir(too_long, expect=errno.ENAMETOOLONG)
        d.link("f", long_ok + "/" + long_ok, expect="ok")
        d.link("f", too_long, expect=errno.ENAMETOOLONG)
        d.symlink("f", too_long, expect=errno.ENAMETOOLONG)
        d.mknod(too_long, stat.S_IFIFO | 0o600, expect=errno.ENAMETOOLONG)
        d.unlink(too_long, expect=errno.ENAMETOOLONG)
        d.rmdir(too_long, expect=errno.ENAMETOOLONG)
        d.stat(too_long, expect=errno.ENAMETOOLONG)
        d.unlink(long_ok + "/" + long_ok)
        d.rmdir(long_ok, expect="ok")
        for name in ("1700000000.M20P3Q4.host,S=1234,W=1260:2,S", " lead and trail ",
                     "caf\u00e9", "a:2,FRS", "-dash", "..."):
            d.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, expect="ok")
            d.close()
        d.run("create a name with raw bytes b'\\xff\\xfe'",
              lambda s: os.close(os.open(os.path.join(os.fsencode(s.root), b"raw\xff\xfe"),
                                         os.O_WRONLY | os.O_CREAT, 0o600)))
        d.unlink("dir/f2")
        d.rmdir("dir", expect="ok")
        d.finish()

    def test_hard_link_counts(self):
        d = self.differ()
        d.mkdir("x")
        d.mkdir("y")
        d.open("f", os.O_WRONLY | os.O_CREAT, 0o644)
        d.write("f", b"linked")
        d.close()
        for i in range(5):
            d.link("f", "x/l%d" % i)
        d.link("x/l0", "y/l0")
        d.stat("f")
        d.rename("x/l1", "y/l0")  # a name of the same inode replaced by another: rename no-ops
        d.rename("x/l1", "y/new")
        d.unlink("f")
        d.unlink("x/l2")
        d.open("x/l3", os.O_WRONLY | os.O_APPEND)
        d.write("f", b" and appended")
        d.close()
        d.open("g", os.O_WRONLY | os.O_CREAT, 0o600, slot="g")
        d.close("g")
        d.rename("g", "x/l4")  # replaces one link of the linked file
        d.symlink("x/l0", "sym")
        d.link("sym", "sym2")  # a hard link to a symlink, not to its target
        d.lstat("sym2")
        for i in (0, 3):
            d.unlink("x/l%d" % i)
        d.unlink("y/l0")
        d.finish()

    def test_unlink_open_file_and_removed_directory(self):
        d = self.differ()
        d.open("f", os.O_RDWR | os.O_CREAT, 0o644)
        d.write("f", pattern(CHUNK + 500))
        d.open("f", os.O_RDONLY, slot="r2")
        d.unlink("f", expect="ok")
        d.fstat("f")
        d.pread("f", 100, CHUNK - 50)
        d.pwrite("f", b"still writable", 10)
        d.pread("r2", 20, 5)
        d.ftruncate("f", 100)
        d.fstat("r2")
        d.run("linkat(f, '', 'back', AT_EMPTY_PATH)",
              lambda s: link_fd(s.fd("f"), s.path("back")), expect=errno.ENOENT)
        d.open("f", os.O_WRONLY | os.O_CREAT, 0o600, slot="new")  # a new file, a new inode
        d.write("new", b"new")
        d.close("f")
        d.fstat("r2")
        d.close("r2")
        d.mkdir("dir")
        d.open("dir", os.O_RDONLY | os.O_DIRECTORY, slot="dir")
        d.rmdir("dir")
        d.fstat("dir")
        d.run("listdir(removed dir via fd)", lambda s: os.listdir(s.fd("dir")),
              reads=["fd:dir"])
        d.run("openat(removed dir, 'x', O_CREAT)",
              lambda s: os.close(os.open("x", os.O_WRONLY | os.O_CREAT, dir_fd=s.fd("dir"))),
              expect=errno.ENOENT)
        d.finish()

    # ---- special files ----

    def test_mknod_fifo_socket_regular(self):
        d = self.differ()
        d.mknod("fifo", stat.S_IFIFO | 0o640, expect="ok")
        d.mknod("sock", stat.S_IFSOCK | 0o600, expect="ok")
        d.mknod("reg", stat.S_IFREG | 0o600, expect="ok")
        d.mknod("plain", 0o644, expect="ok")  # no type: a regular file
        d.mknod("fifo", stat.S_IFIFO | 0o640, expect=errno.EEXIST)
        d.mknod("dir", stat.S_IFDIR | 0o755, expect=errno.EPERM)
        d.link("fifo", "fifo2")
        d.rename("sock", "sock2")
        d.chmod("fifo", 0o600)

        def bind(s):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(s.path("bound"))
            finally:
                sock.close()
        d.run("bind(AF_UNIX, 'bound')", bind, expect="ok")
        d.open("fifo", os.O_WRONLY | os.O_NONBLOCK, slot="w", expect=errno.ENXIO)
        d.finish()

    def test_mknod_block_and_char_devices(self):
        d = self.differ()
        # Created and compared, never opened: a cofferfs mount is always nodev (docstring).
        d.mknod("null", stat.S_IFCHR | 0o666, os.makedev(1, 3), expect="ok")
        d.mknod("loop", stat.S_IFBLK | 0o660, os.makedev(7, 0), expect="ok")
        d.mknod("big", stat.S_IFCHR | 0o600, os.makedev(4095, 1048575), expect="ok")
        d.lstat("null")
        d.chown("loop", 0, 6)
        d.rename("null", "null2")
        d.link("big", "big2")
        d.unlink("loop")
        d.finish()

    def test_fifo_data_and_times(self):
        # Data through a FIFO never reaches a FUSE filesystem (the kernel's pipe code carries
        # it), so the FIFO's mtime/ctime cannot move on cofferfs (cofferfs(8), SEMANTICS). The
        # data is compared; the times are set alike on both sides within the same step.
        d = self.differ()
        d.mknod("fifo", stat.S_IFIFO | 0o644, expect="ok")
        d.open("fifo", os.O_RDONLY | os.O_NONBLOCK, slot="r", expect="ok")
        d.open("fifo", os.O_WRONLY | os.O_NONBLOCK, slot="w", expect="ok")

        def write_and_align_times(s):
            n = os.write(s.fd("w"), b"through the pipe")
            # A time in the past (clocks of different granularity would order a fresh one
            # against ctime differently on the two sides).
            os.utime(s.path("fifo"), ns=(1000000000, 1000000000))
            return n

        d.run("write(w, b'through the pipe') (times aligned)", write_and_align_times)
        d.read("r", 100)
        d.read("r", 100, expect=errno.EAGAIN)
        d.finish()

    # ---- attributes ----

    def test_chmod_chown(self):
        d = self.differ()
        d.open("f", os.O_WRONLY | os.O_CREAT, 0o644)
        d.close()
        d.mkdir("dir")
        for mode in (0, 0o7777, 0o4755, 0o2755, 0o2745, 0o1777, 0o644):
            d.chmod("f", mode)
            d.chmod("dir", mode | 0o700)
        d.chmod("missing", 0o644, expect=errno.ENOENT)
        d.chown("f", 1000, 1000, expect="ok")
        d.chown("f", -1, 50)
        d.chown("f", 7, -1)
        d.chown("f", -1, -1)  # changes nothing but ctime
        d.chmod("f", 0o6755)
        d.chown("f", 1000, 1000)  # clears setuid and setgid (group-executable)
        d.chmod("f", 0o2745)
        d.chown("f", 0, 0)  # setgid without group exec is mandatory locking: stays
        d.chmod("dir", 0o3775)
        d.chown("dir", 1000, 50)  # directories keep their bits
        d.open("f", os.O_RDONLY, slot="fd")
        d.run("fchmod(fd, 0600)", lambda s: os.fchmod(s.fd("fd"), 0o600))
        d.run("fchown(fd, 5, 6)", lambda s: os.fchown(s.fd("fd"), 5, 6))
        d.chown("f", 2**32 - 2, 2**32 - 2)  # the largest ids
        d.finish()

    def test_utimensat(self):
        d = self.differ(full_atime=True)  # no readlink by the checker: symlink atimes stay
        d.open("f", os.O_WRONLY | os.O_CREAT, 0o644)
        d.close()
        d.mkdir("dir")
        d.symlink("f", "sl")
        d.utimens("f", 1000000000123, 1234567890000000456, expect="ok")
        d.times("f")
        d.utimens("f", "now", "omit")
        d.utimens("f", "omit", 987654321)
        d.utimens("f", "omit", "omit")  # nothing at all changes, not even ctime
        d.utimens("f", "now", "now")
        d.utimens("f", -1500000000 * 10**9 + 7, 2**63 - 1)  # 1922 and the last ns of 2262
        d.times("f")
        d.utimens("dir", 5, 6)
        d.times("dir")
        d.utimens("sl", 11, 12, nofollow=True)
        d.times("sl")
        d.times("f")
        d.utimens("missing", 1, 2, expect=errno.ENOENT)
        d.open("f", os.O_RDONLY, slot="fd")
        d.run("futimens(fd, 77, now)", lambda s: futimens(s.fd("fd"), 77, "now"))
        d.run("os.utime(f) (both now)", lambda s: os.utime(s.path("f")))
        d.utimens("f", 5, 2**63)  # 2262-04-11, one ns later than the previous mtime
        d.times("f")
        d.utimens("f", 5, 13569465600 * 10**9 + 999999999)  # 2400 (ext4 goes to 2446)
        d.times("f")
        d.finish()

    def test_setgid_directories(self):
        d = self.differ()
        d.mkdir("sg", 0o2777)  # the umask keeps 02755; chmod below
        d.chown("sg", 0, OTHER_GROUP)
        d.chmod("sg", 0o2777)
        d.open("sg/f", os.O_WRONLY | os.O_CREAT, 0o2755)  # root keeps setgid
        d.close()
        d.mkdir("sg/sub")  # inherits the group and the setgid bit
        d.mkdir("sg/sub/deeper")
        d.mknod("sg/fifo", stat.S_IFIFO | 0o644)
        d.symlink("f", "sg/sl")
        d.link("sg/f", "outside")  # a link does not change the group
        d.rename("outside", "sg/renamed")
        d.chmod("sg/sub", 0o755)  # without the bit
        d.mkdir("sg/sub/plain")
        d.chmod("sg", 0o777)
        d.mkdir("sg/after")
        user = NONROOT
        d.chmod("sg", 0o2777)
        d.open("sg/u", os.O_WRONLY | os.O_CREAT, 0o2755, user=user)  # not in the group: no sgid
        d.close()
        d.mkdir("sg/udir", 0o755, user=user)
        d.open("sg/u2", os.O_WRONLY | os.O_CREAT, 0o755, user=user)
        d.close()
        d.chmod("sg/u2", 0o2755, user=user)  # not in the file's group: setgid is dropped
        d.chown("sg/u2", -1, OTHER_GROUP2, user=user, expect=errno.EPERM)
        d.chown("sg/u2", 0, -1, user=user, expect=errno.EPERM)
        d.chown("sg/u2", -1, user[1], user=user, expect="ok")
        d.chmod("sg/u2", 0o4755, user=user)
        d.open("sg/u2", os.O_WRONLY, slot="w", user=user)
        d.write("w", b"kills setuid", user=user)
        d.chmod("sg/u2", 0o4755, user=user)
        d.truncate("sg/u2", 3, user=user)  # so does truncate
        d.chmod("sg/f", 0o644, user=user, expect=errno.EPERM)
        d.utimens("sg/f", 1, 2, user=user, expect=errno.EPERM)
        d.utimens("sg/f", "now", "now", user=user, expect=errno.EACCES)
        d.unlink("sg/f", user=user, expect="ok")  # the directory is writable (no sticky bit)
        d.chmod("sg", 0o3777)
        d.unlink("sg/renamed", user=user, expect=errno.EPERM)  # sticky: not the owner
        d.rename("sg/udir", "sg/udir2", user=user, expect="ok")
        # Setgid without group execute: a write by someone outside the file's group drops it
        # (Linux since 6.0, also for truncate), as for any other setgid file.
        d.open("sg/own", os.O_WRONLY | os.O_CREAT, 0o666, slot="o", user=user)
        d.chown("sg/own", user[0], OTHER_GROUP)
        d.chmod("sg/own", 0o2666)
        d.write("o", b"drops setgid", user=user)
        d.chmod("sg/own", 0o2666)
        d.truncate("sg/own", 1, user=user)
        d.finish()

    def test_timestamps_of_every_kind_of_step(self):
        """Which steps move mtime and ctime of the file and of its directories."""
        d = self.differ()
        d.mkdir("a")
        d.mkdir("b")
        d.open("a/f", os.O_RDWR | os.O_CREAT, 0o644)
        d.write("f", b"x" * 100)
        d.pwrite("f", b"y", 50)
        d.write("f", b"")
        d.read("f", 10)
        d.pread("f", 10, 0)
        d.fsync("f")
        d.ftruncate("f", 100)
        d.ftruncate("f", 10)
        d.truncate("a/f", 10)
        d.truncate("a/f", 20)
        d.chmod("a/f", 0o600)
        d.chmod("a/f", 0o600)
        d.chown("a/f", 0, 0)
        d.link("a/f", "b/g")
        d.rename("b/g", "b/h")
        d.rename("b/h", "a/h")
        d.unlink("a/h")
        d.mkdir("a/sub")
        d.rename("a/sub", "b/sub")
        d.rmdir("b/sub")
        d.symlink("f", "a/sl")
        d.mknod("a/fifo", stat.S_IFIFO | 0o644)
        d.open("a/f", os.O_RDONLY, slot="r")
        d.close("r")
        d.stat("a/f")
        d.listdir("a")
        d.rename("a/f", "a/f", RENAME_NOREPLACE, expect=errno.EEXIST)
        d.unlink("a/missing", expect=errno.ENOENT)
        d.finish()

    # atime: reads, readdir and readlink move atime as each mount's atime option says (relatime,
    # noatime, strictatime, as /proc/self/mountinfo shows them); both trees compared in full.

    def test_directory_mtime_set_in_the_future(self):
        """A local filesystem sets mtime and ctime to the current time when an entry changes,
        even if mtime was set later than that (touch -d)."""
        d = self.differ()
        d.mkdir("dir")
        year = 365 * 24 * 3600 * 10**9

        def future(s):
            utimensat(s.path("dir"), "omit", time.time_ns() + year)
        d.run("utimensat('dir', atime=omit, mtime=now + 1 year)", future)
        d.mknod("dir/new", stat.S_IFREG | 0o644)
        d.run("mtime of 'dir' is not in the future",
              lambda s: os.stat(s.path("dir")).st_mtime_ns <= time.time_ns(), expect="ok")
        d.finish()

    def test_atime_of_file_reads(self):
        d = self.differ(full_atime=True)
        d.open("f", os.O_RDWR | os.O_CREAT, 0o644)
        d.write("f", b"atime" * 1000)
        d.close()
        d.utimens("f", 4 * 10**18, "omit")  # atime after mtime and ctime: relatime keeps it
        d.open("f", os.O_RDONLY, slot="r")
        d.read("r", 10)
        d.close("r")
        d.open("f", os.O_WRONLY | os.O_APPEND, slot="w")
        d.write("w", b"more")  # a write leaves atime alone
        d.close("w")
        d.utimens("f", 10**9, "omit")  # atime before mtime: the next read moves it
        d.open("f", os.O_RDONLY, slot="r")
        d.pread("r", 10, 100)
        d.pread("r", 10, 200)  # now atime is after mtime: relatime leaves it
        d.close("r")
        d.chmod("f", 0o600)
        d.finish()

    def test_atime_of_readdir(self):
        d = self.differ(full_atime=True)
        d.mkdir("dir")
        d.mknod("dir/entry", stat.S_IFREG | 0o644)  # dir: mtime after atime now
        d.listdir("dir")
        d.listdir("dir")
        d.utimens("dir", 10**9, "omit")
        d.listdir("dir")
        d.finish()

    def test_atime_of_readlink(self):
        d = self.differ(full_atime=True)
        d.symlink("target", "sl")
        d.utimens("sl", 10**9, "omit", nofollow=True)
        d.readlink("sl")
        d.finish()

    def test_xattrs_are_unsupported(self):
        """DESIGN.md's inode record has no extended attributes: cofferfs must refuse them the
        way a local filesystem without them does (ENOTSUP), not with another error. The local
        filesystem supports them, so only cofferfs is checked here."""
        area = os.path.join(self.mnt, "xattrs")
        os.mkdir(area)
        path = os.path.join(area, "f")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        for what, fn in (("setxattr", lambda: os.setxattr(path, "user.x", b"1")),
                         ("getxattr", lambda: os.getxattr(path, "user.x")),
                         ("removexattr", lambda: os.removexattr(path, "user.x"))):
            with self.assertRaises(OSError, msg=what) as cm:
                fn()
            self.assertEqual(cm.exception.errno, errno.EOPNOTSUPP, "%s: %s" % (what, cm.exception))
        try:
            self.assertEqual(os.listxattr(path), [])
        except OSError as e:
            self.assertEqual(e.errno, errno.EOPNOTSUPP, "listxattr: %s" % e)

    def test_statfs(self):
        d = self.differ()
        d.open("f", os.O_WRONLY | os.O_CREAT, 0o644)
        d.close()

        def basics(s):
            # Numbers differ by design (cofferfs(8): those of the STATE_DIR's filesystem); the
            # relations between them, the name limit and the mount flags do not. nosuid and nodev
            # are always set on cofferfs (cofferfs(8) ignores "dev" and "suid"), and it mounts
            # noatime (cofferfs(8): an access time would cost a replicated write per read), so
            # the atime flags are left out too (the atime tests follow each mount's own rule).
            v = os.statvfs(s.path("f"))
            w = os.statvfs(s.root)
            flags = v.f_flag & ~(os.ST_NOSUID | os.ST_NODEV | os.ST_NOATIME | os.ST_RELATIME |
                                 os.ST_NODIRATIME)
            return dict(namemax=v.f_namemax, flags=flags, same_for_dir_and_file=(
                (v.f_bsize, v.f_frsize, v.f_namemax, v.f_flag) ==
                (w.f_bsize, w.f_frsize, w.f_namemax, w.f_flag)),
                bsize_positive=v.f_bsize > 0 and v.f_frsize > 0,
                blocks_ordered=v.f_bavail <= v.f_bfree <= v.f_blocks and v.f_blocks > 0,
                files_ordered=v.f_favail <= v.f_ffree <= v.f_files)
        d.run("statvfs basics", basics, expect="ok")
        d.run("statvfs('missing')", lambda s: os.statvfs(s.path("missing")), expect=errno.ENOENT)
        d.finish()

    def test_directory_listings(self):
        d = self.differ()
        d.mkdir("m")
        for i in range(40):
            d.run("create m/%02d" % i, lambda s, i=i: os.close(os.open(
                s.path("m/%02d" % i), os.O_WRONLY | os.O_CREAT, 0o600)))
        for i in range(0, 40, 3):
            d.unlink("m/%02d" % i)
        for i in range(1, 40, 7):
            d.rename("m/%02d" % i, "m/r%02d" % i)
        d.mkdir("m/sub")
        d.symlink("01", "m/link")
        d.mknod("m/fifo", stat.S_IFIFO | 0o600)
        d.listdir("m")
        for i in range(2, 40, 3):
            d.unlink("m/%02d" % i)
        d.listdir("m")
        d.rename("m/sub", "m/00")  # a name reused by another kind of entry
        d.listdir("m")
        d.finish()

    def test_remount_keeps_the_tree(self):
        """After an unmount and a mount the cofferfs tree is exactly what it was (contents,
        attributes, inode numbers, timestamps to the nanosecond) and still matches the plain
        tree."""
        d = self.differ()
        for p in ("dir", "dir/sub", "sg"):
            d.mkdir(p)
        for i, size in enumerate(CHUNK_SIZES):
            d.open("dir/f%d" % i, os.O_WRONLY | os.O_CREAT, 0o640, slot="w")
            d.write("w", pattern(size, i))
            d.close("w")
        d.open("sparse", os.O_WRONLY | os.O_CREAT, 0o600, slot="w")
        d.pwrite("w", b"tail", 4 * CHUNK + 3)
        d.close("w")
        d.truncate("dir/f9", CHUNK + 7)
        d.link("dir/f3", "dir/sub/hard")
        d.symlink("../f1", "dir/sub/sl")
        d.mknod("fifo", stat.S_IFIFO | 0o620)
        d.mknod("sock", stat.S_IFSOCK | 0o600)
        d.chown("sg", 3, OTHER_GROUP)
        d.chmod("sg", 0o2775)
        d.mkdir("sg/inherits")
        d.chown("dir/f2", 1000, 1000)
        d.chmod("dir/f2", 0o4750)
        d.utimens("dir/f4", -10**9 + 1, 7258118400 * 10**9 + 5)  # 1969 and 2200
        d.rename("dir/f5", "dir/sub/moved")
        d.unlink("dir/f6")
        d.finish()
        before = d.sides[1].snapshot(True)
        try:
            rc = type(self).mount.stop()
        finally:
            type(self).mount = self.make_mount().start(timeout=30)
        self.assertEqual(rc, 0, "cofferfs exit status at unmount")
        after = d.sides[1].snapshot(True)
        problems = []
        for h in sorted(set(before) | set(after)):
            b, a = before.get(h), after.get(h)
            if b is None or a is None:
                problems.append("%r %s after the remount" % (h, "appeared" if b is None
                                                             else "disappeared"))
                continue
            for field in Entry.__slots__:
                if getattr(b, field) != getattr(a, field):
                    problems.append("%r: %s before %s, after %s" % (
                        h, field, show(getattr(b, field), 60), show(getattr(a, field), 60)))
        self.assertEqual(problems, [], "cofferfs changed across a remount")
        d.check("the remount")

    # ---- random sequences ----

    def test_random_sequences(self):
        seeds = [int(x) for x in os.environ.get("COFFER_DIFF_SEEDS", self.RANDOM_SEEDS).split(",")]
        ops = int(os.environ.get("COFFER_DIFF_OPS", self.RANDOM_OPS))
        omit = [x for x in os.environ.get("COFFER_DIFF_OMIT", "").split(",") if x]
        for seed in seeds:
            with self.subTest(seed=seed):
                d = self.differ("random-%d" % seed)
                RandomSequence(self, d, seed, ops, omit).play()
                d.finish()


class RandomSequence:
    """A seeded random sequence of steps over a small namespace, so that names collide, files
    are reused, and errors are about as common as successes. Arguments are drawn mostly from the
    names that exist (read from the plain tree without moving atimes), so the sequence of a seed
    is the same on every run as long as the plain filesystem behaves the same.

    FIFOs are created, renamed, linked and opened, but no data goes through them: pipe I/O is
    the kernel's pipe code, not a filesystem operation, and its one difference (the FIFO's
    mtime/ctime, which FUSE never passes on) is reported by test_fifo_data_and_times. Nor is
    lseek used on directories: their offsets are opaque readdir cookies that differ between any
    two filesystems (ext4 answers SEEK_END with 2^63-1, tmpfs with EINVAL)."""
    DIRS = ["", "p", "q", "p/r"]
    NAMES = ["a", "b", "c", "p", "q", "r"]
    SLOTS = ["s0", "s1", "s2"]
    OFFSETS = [0, 1, 100, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 3, 2 * CHUNK + 5,
               3 * CHUNK]
    SIZES = [0, 1, 7, 100, 4096, 5000, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 9]
    # kind -> weight
    KINDS = {"open": 12, "open_trunc": 3, "close": 6, "write": 8, "pwrite": 6, "read": 4,
             "pread": 3, "lseek": 2, "ftruncate": 3, "truncate": 3, "fsync": 1, "fstat": 2,
             "mkdir": 5, "rmdir": 3, "unlink": 5, "rename": 6, "renameat2": 3, "link": 4,
             "symlink": 3, "readlink": 1, "mknod": 2, "mknod_dev": 1, "chmod": 3, "chown": 2,
             "utimens": 2, "stat": 1, "listdir": 2}

    def __init__(self, test, differ, seed, ops, omit):
        unknown = set(omit) - set(self.KINDS)
        if unknown:
            raise ValueError("COFFER_DIFF_OMIT: unknown kinds %s" % sorted(unknown))
        self.test, self.d, self.seed, self.ops = test, differ, seed, ops
        self.rng = random.Random(seed)
        self.kinds = [(k, w) for k, w in self.KINDS.items() if k not in omit]
        self.open_slots = set()
        self.omit = omit

    def path(self):
        """Any path of the small namespace (it may well not exist)."""
        d, n = self.rng.choice(self.DIRS), self.rng.choice(self.NAMES)
        return d + "/" + n if d else n

    def tree(self):
        """The paths that exist now, and the directories among them (from the plain tree: the
        two trees are the same until the first difference)."""
        paths, dirs = [], [""]
        side = self.d.sides[0]

        def visit(rel):
            for name, kind, _ in sorted(side.list_noatime(side.path(rel))):
                p = os.path.join(rel, name) if rel else name
                paths.append((p, kind))
                if kind == "dir":
                    if p.count("/") < 2:
                        dirs.append(p)
                    visit(p)
        visit("")
        return paths, dirs

    def src(self, kind=None):
        """Mostly a path that exists, mostly of this kind ("dir", "lnk", "other") if given."""
        paths, _ = self.tree()
        if kind and self.rng.random() < 0.7:
            paths = [x for x in paths if x[1] == kind] or paths
        if paths and self.rng.random() < 0.85:
            return self.rng.choice(paths)[0]
        return self.path()

    def dst(self):
        """Mostly a name in a directory that exists (new or not)."""
        _, dirs = self.tree()
        if self.rng.random() < 0.85:
            d, n = self.rng.choice(dirs), self.rng.choice(self.NAMES)
            return d + "/" + n if d else n
        return self.path()

    def slot_kind(self, slot):
        return stat.S_IFMT(os.fstat(self.d.sides[0].fds[slot]).st_mode)

    def plain_kind(self, rel):
        try:
            return stat.S_IFMT(os.stat(self.d.sides[0].path(rel)).st_mode)
        except OSError:
            return None

    def play(self):
        d = self.d
        d.label = "seed %d of %d ops%s (replay: COFFER_DIFF_SEEDS=%d COFFER_DIFF_OPS=%d%s)" % (
            self.seed, self.ops, "" if not self.omit else " omitting " + ",".join(self.omit),
            self.seed, self.ops, "" if not self.omit else " COFFER_DIFF_OMIT=" + ",".join(
                self.omit))
        d.chmod("", 0o777)  # the unprivileged steps may create and remove at the top
        for i in range(self.ops):
            self.one()

    def one(self):
        r = self.rng
        # About one step in seven runs as an unprivileged user (permissions, setuid/setgid
        # clearing on write, truncate and chmod by non-owners).
        user = NONROOT if r.random() < 0.15 else None
        self.d.user = user
        try:
            self.step()
        finally:
            self.d.user = None

    def step(self):
        r, d = self.rng, self.d
        kind = r.choices([k for k, _ in self.kinds], [w for _, w in self.kinds])[0]
        free = [s for s in self.SLOTS if s not in self.open_slots]
        used = sorted(self.open_slots)
        if kind in ("open", "open_trunc"):
            if not free:
                kind = "close"
            else:
                slot = free[0]
                rel = self.src() if r.random() < 0.5 else self.dst()
                flags = os.O_NONBLOCK | r.choices([os.O_RDONLY, os.O_WRONLY, os.O_RDWR],
                                                  [1, 1, 2])[0]
                for bit, p in ((os.O_CREAT, 0.6), (os.O_EXCL, 0.15), (os.O_APPEND, 0.2),
                               (os.O_DIRECTORY, 0.05), (os.O_NOFOLLOW, 0.1)):
                    if r.random() < p:
                        flags |= bit
                if kind == "open_trunc":
                    flags |= os.O_TRUNC
                if self.plain_kind(rel) in (stat.S_IFCHR, stat.S_IFBLK):
                    return d.stat(rel)  # never opened: nodev (module docstring)
                mode = r.choice([0o644, 0o600, 0o755, 0o2755, 0o4700])
                if d.open(rel, flags, mode, slot=slot) is not None:
                    self.open_slots.add(slot)
                return
        if kind in ("close", "write", "pwrite", "read", "pread", "lseek", "ftruncate", "fsync",
                    "fstat") and not used:
            kind = "stat"
        slot = r.choice(used) if used else None
        if kind in ("write", "pwrite") and self.slot_kind(slot) == stat.S_IFIFO:
            kind = "fstat"  # pipe I/O is the kernel's (see the class docstring)
        if kind == "lseek" and self.slot_kind(slot) == stat.S_IFDIR:
            kind = "fstat"  # directory offsets are opaque cookies of each filesystem
        if kind == "close":
            self.open_slots.discard(slot)
            return d.close(slot)
        if kind == "write":
            return d.write(slot, r.randbytes(r.choice(self.SIZES)))
        if kind == "pwrite":
            return d.pwrite(slot, r.randbytes(r.choice(self.SIZES[:7])), r.choice(self.OFFSETS))
        if kind == "read":
            return d.read(slot, r.choice(self.SIZES[1:]))
        if kind == "pread":
            return d.pread(slot, r.choice(self.SIZES[1:]), r.choice(self.OFFSETS))
        if kind == "lseek":
            return d.lseek(slot, r.choice([0, 1, CHUNK, -1]),
                           r.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END]))
        if kind == "ftruncate":
            return d.ftruncate(slot, r.choice(self.OFFSETS + CHUNK_SIZES))
        if kind == "fsync":
            return d.fsync(slot)
        if kind == "fstat":
            return d.fstat(slot)
        if kind == "truncate":
            return d.truncate(self.src("other"), r.choice(self.OFFSETS + CHUNK_SIZES))
        if kind == "mkdir":
            return d.mkdir(self.dst(), r.choice([0o755, 0o700, 0o2777, 0o1777, 0o777]))
        if kind == "rmdir":
            return d.rmdir(self.src("dir"))
        if kind == "unlink":
            return d.unlink(self.src("other"))
        if kind == "rename":
            return d.rename(self.src(), self.dst() if r.random() < 0.6 else self.src())
        if kind == "renameat2":
            flags = r.choice([RENAME_NOREPLACE, RENAME_EXCHANGE])
            return d.rename(self.src(), self.src() if flags == RENAME_EXCHANGE else self.dst(),
                            flags)
        if kind == "link":
            return d.link(self.src("other"), self.dst())
        if kind == "symlink":
            return d.symlink(r.choice(self.NAMES + ["../a", "p/a", "r/b", "missing", "."]),
                             self.dst())
        if kind == "readlink":
            return d.readlink(self.src("lnk"))
        if kind == "mknod":
            return d.mknod(self.dst(), r.choice([stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFREG])
                           | r.choice([0o644, 0o600]))
        if kind == "mknod_dev":
            return d.mknod(self.dst(), r.choice([stat.S_IFCHR, stat.S_IFBLK]) | 0o600,
                           os.makedev(r.choice([1, 7, 250]), r.choice([0, 3, 70000])))
        if kind == "chmod":
            return d.chmod(self.src(), r.choice([0o644, 0o600, 0o755, 0o2755, 0o4755, 0o1777,
                                                  0o7000, 0]))
        if kind == "chown":
            return d.chown(self.src(), r.choice([0, 1000, 1001, -1]),
                           r.choice([0, 50, 1000, -1]), follow=r.random() < 0.7)
        if kind == "utimens":
            def t():
                return r.choice(["now", "omit", r.randrange(0, 2 * 10**18), r.randrange(10**9)])
            return d.utimens(self.src(), t(), t(), nofollow=r.random() < 0.3)
        if kind == "stat":
            return (d.stat if r.random() < 0.5 else d.lstat)(self.src())
        if kind == "listdir":
            return d.listdir(self.src("dir"))
        raise AssertionError("unknown kind " + kind)


class LocalDifferentialTest(Scenarios, DifferentialBase):
    """cofferfs on a local store, default options (sync)."""


class NodesDifferentialTest(DifferentialBase):
    """cofferfs on three coffer-node processes (R=3, W=2; tests/fs/nodes_mount_test.py), default
    options otherwise: the same semantics are expected when every namespace change and close
    waits for the nodes. A subset of the scenarios, and fewer random steps (each change waits
    for two nodes)."""
    RANDOM_SEEDS, RANDOM_OPS = "1,2,3", 300

    @classmethod
    def start_backend(cls):
        from nodes_mount_test import Nodes
        cls.nodes = Nodes(cls.area)
        return "replicator=" + cls.nodes.config

    @classmethod
    def stop_backend(cls):
        if getattr(cls, "nodes", None):
            cls.nodes.stop_all()


for _name in ("test_open_wronly_trunc_truncates", "test_read_write_at_offsets",
              "test_truncate_across_chunk_boundaries", "test_rename_files",
              "test_rename_directories", "test_renameat2_noreplace_exchange_whiteout",
              "test_hard_link_counts", "test_unlink_open_file_and_removed_directory",
              "test_mknod_fifo_socket_regular", "test_chmod_chown", "test_directory_listings",
              "test_remount_keeps_the_tree", "test_random_sequences"):
    setattr(NodesDifferentialTest, _name, getattr(Scenarios, _name))


if __name__ == "__main__":
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("needs root and /dev/fuse")
        sys.exit(1)
    unittest.main(verbosity=2)
