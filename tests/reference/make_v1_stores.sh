#!/bin/bash
# Makes tests/reference/v1-stores/: whole stores of store format 1 (names in directory entry
# records, sealed object format 1), written by the OLD binaries of commit da148f8, that every
# later cofferfs must still mount (tests/fs/reference_stores_test.py).
#
#   make_v1_stores.sh BUILD OUT
#
# BUILD is a build tree of the old version (fs/cofferfs, replicator/coffer-node,
# keytool/coffer-keytool, ctl/cofferctl); OUT must not exist or be empty. Needs root (chown,
# /dev/fuse), fusermount3, mdb_copy (lmdb-utils) and python3.
#
# It creates a key file and CURVE keys, starts three coffer-node processes on 127.0.0.1 and
# mounts cofferfs on them (R=3 W=2), and separately mounts a local-only cofferfs; fills both with
# the same small Maildir tree; waits until every node holds every object; unmounts, remounts
# (old binaries again) to read back what was stored, checks it against what was written, writes
# MANIFEST, and keeps compacted copies (mdb_copy -c) of the LMDB files. The committed output is
# the reference: running this again gives other keys and other bytes.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 OLD_BUILD_DIR OUT_DIR" >&2
  exit 64
fi
BUILD=$(realpath "$1")
OUT=$2
COFFERFS=$BUILD/fs/cofferfs
NODE=$BUILD/replicator/coffer-node
KEYTOOL=$BUILD/keytool/coffer-keytool
CTL=$BUILD/ctl/cofferctl
for p in "$COFFERFS" "$NODE" "$KEYTOOL" "$CTL"; do
  [ -x "$p" ] || { echo "$0: $p is missing" >&2; exit 66; }
done
command -v mdb_copy > /dev/null || { echo "$0: mdb_copy (lmdb-utils) is missing" >&2; exit 69; }
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  echo "$0: $OUT exists and is not empty: refusing to overwrite a reference" >&2
  exit 73
fi
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
WORK=$(mktemp -d /tmp/make-v1-stores.XXXXXX)
chmod 755 "$WORK"
SELF_PY=$WORK/tree.py

# ---- cleanup: unmount what we mounted, stop what we started and did not reap yet (by PID) ----
PIDS=()
MOUNTS=()
# reap PID: waits for a child we started and forgets it; returns its exit status.
reap() {
  local rc=0 p kept=()
  wait "$1" || rc=$?
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  PIDS=("${kept[@]}")
  return "$rc"
}
cleanup() {
  local m p
  for m in "${MOUNTS[@]}"; do
    if mountpoint -q "$m"; then fusermount3 -u "$m" 2> /dev/null || umount -l "$m" || true; fi
  done
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
  local i
  for i in $(seq 200); do
    if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$1" 2> /dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "$0: nothing listens on port $1" >&2
  return 1
}

# mount_fs NAME [OPTIONS]: cofferfs WORK/state-NAME on WORK/mnt-NAME, in the foreground
# (a background child), its PID in MOUNT_PID.
mount_fs() {
  local name=$1 opts="keyfile=$OUT/key,allow_other${2:+,$2}" i
  mkdir -p "$WORK/mnt-$name"
  "$COFFERFS" "$WORK/state-$name" "$WORK/mnt-$name" -f -o "$opts" >> "$WORK/$name.log" 2>&1 &
  MOUNT_PID=$!
  PIDS+=("$MOUNT_PID")
  MOUNTS+=("$WORK/mnt-$name")
  for i in $(seq 300); do
    mountpoint -q "$WORK/mnt-$name" && return 0
    kill -0 "$MOUNT_PID" 2> /dev/null || break
    sleep 0.1
  done
  echo "$0: cofferfs $name did not mount:" >&2
  cat "$WORK/$name.log" >&2
  return 1
}

# umount_fs NAME PID: a clean unmount; the daemon must exit 0.
umount_fs() {
  local name=$1 pid=$2 rc=0
  fusermount3 -u "$WORK/mnt-$name"
  reap "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "$0: cofferfs $name exited with $rc:" >&2
    cat "$WORK/$name.log" >&2
    return 1
  fi
}

# ---- keys ----
"$KEYTOOL" init -k "$OUT/key" --no-passphrase > /dev/null
for who in box admin n1 n2 n3; do
  "$KEYTOOL" curve-keygen --out "$OUT/$who" > /dev/null
done
cp "$OUT/box.key" "$OUT/allowed"

# ---- templates (the test fills in @DIR@, the directory holding the copies, and the ports) ----
{
  echo '# replicator config of the box (template: @DIR@ and @PORT_nN@ are filled in by the test)'
  echo 'box_id = 1'
  echo 'secret_key_file = "@DIR@/box.key_secret"'
  echo 'replicas = 3'
  echo 'write_quorum = 2'
  echo 'write_timeout_ms = 1500'
  echo 'read_timeout_ms = 1000'
  echo 'admin_timeout_ms = 2000'
  for n in n1 n2 n3; do
    printf '\n[[node]]\nid = "%s"\nendpoint = "tcp://127.0.0.1:@PORT_%s@"\npublic_key_file = "@DIR@/%s.key"\n' \
      "$n" "$n" "$n"
  done
} > "$OUT/replicator.toml"
cat > "$OUT/node.toml" << 'EOF'
# config of storage node @NODE@ (template: @NODE@ is n1, n2 or n3; @DIR@ and @PORT@ are filled in
# by the test; the data directory is a copy of nodes/@NODE@)
node_id = "@NODE@"
data_dir = "@DIR@/nodes/@NODE@"
listen = ["tcp://127.0.0.1:@PORT@"]
secret_key_file = "@DIR@/@NODE@.key_secret"
allowed_keys_file = "@DIR@/allowed"
admin_key_file = "@DIR@/admin.key"
EOF

# fill TEMPLATE OUTFILE [NODE PORT]: the templates with the live paths and ports of this run.
fill() {
  sed -e "s|@DIR@|$WORK/live|g" -e "s|@PORT_n1@|${PORTS[n1]}|g" -e "s|@PORT_n2@|${PORTS[n2]}|g" \
    -e "s|@PORT_n3@|${PORTS[n3]}|g" -e "s|@NODE@|${3:-}|g" -e "s|@PORT@|${4:-}|g" "$1" > "$2"
}

# The live directory: the keys, configs and node data of this run.
mkdir -p "$WORK/live/nodes"
cp "$OUT"/key "$OUT"/*.key "$OUT"/*.key_secret "$OUT/allowed" "$WORK/live/"
declare -A PORTS
for n in n1 n2 n3; do PORTS[$n]=$(free_port); done
fill "$OUT/replicator.toml" "$WORK/live/replicator.toml"

# ---- the tree: written, read back and described by one Python program ----
cat > "$SELF_PY" << 'PYEOF'
"""populate ROOT EXPECTED_JSON | walk ROOT WALK_JSON | compare EXPECTED WALK |
manifest EXPECTED WALK_LOCAL WALK_NODES OUT"""
import base64
import hashlib
import json
import os
import random
import stat
import sys

ALICE, BOB, MAIL = 1000, 1001, 8


def message(i, body):
    head = ("Return-Path: <sender%d@example.org>\nDelivered-To: alice@example.com\n"
            "Message-ID: <%d.v1@example.org>\nFrom: Sender %d <sender%d@example.org>\n"
            "To: alice@example.com\nSubject: reference message %d\n"
            "Date: Tue, 14 Nov 2023 22:13:20 +0000\n\n" % (i, i, i, i, i))
    return head.encode() + body


def base64_lines(rng, n):
    raw = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(n)))
    return b"\n".join(raw[k:k + 76] for k in range(0, len(raw), 76)) + b"\n"


def populate(root, out_json):
    rng = random.Random(20231114)
    p = lambda rel: os.path.join(root, rel)
    owners, modes, times, content = {}, {}, {}, {}

    def own(rel, uid, gid, mode):
        owners[rel] = (uid, gid)
        modes[rel] = mode

    def mkdir(rel, mode=0o700, uid=ALICE, gid=ALICE):
        os.mkdir(p(rel), 0o700)
        own(rel, uid, gid, mode)

    def maildir(rel, mode=0o700, uid=ALICE, gid=ALICE):
        mkdir(rel, mode, uid, gid)
        for sub in ("tmp", "new", "cur"):
            mkdir(rel + "/" + sub, 0o700, uid, gid)

    def write(path, data):
        content[os.path.relpath(path, root)] = data
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def deliver(md, name, data, mode=0o600, uid=ALICE, gid=ALICE):
        # The classic Maildir dance: tmp/, fsync, link into new/, unlink tmp/.
        write(p(md + "/tmp/" + name), data)
        os.link(p(md + "/tmp/" + name), p(md + "/new/" + name))
        os.unlink(p(md + "/tmp/" + name))
        content[md + "/new/" + name] = content.pop(md + "/tmp/" + name)
        own(md + "/new/" + name, uid, gid, mode)
        return md + "/new/" + name

    def move(old, new):
        os.rename(p(old), p(new))
        owners[new] = owners.pop(old)
        modes[new] = modes.pop(old)
        content[new] = content.pop(old)

    os.chmod(root, 0o755)
    own(".", 0, 0, 0o755)
    maildir("alice")
    name = lambda i: "17000000%02d.M%dP%d.v1box" % (i, 100000 + i, 4000 + i)
    deliver("alice", name(1), message(1, b"A small message.\n"))
    deliver("alice", name(2), message(2, "Gr\u00fc\u00dfe, \u00e9t\u00e9, \u2603\n".encode()
                                      + "Latin-1: caf\u00e9\n".encode("latin-1")
                                      + bytes(range(256)) + b"\r\n.\r\n\x00end\n"))
    deliver("alice", name(3), message(3, base64_lines(rng, 75000)))  # > 64 KiB: 2 chunks
    m4 = message(4, b"")
    deliver("alice", name(4), m4 + b"x" * (65536 - len(m4)))  # exactly one chunk
    move(deliver("alice", name(5), message(5, b"Read.\n")), "alice/cur/" + name(5) + ":2,S")
    move(deliver("alice", name(6), message(6, b"Replied.\n"), mode=0o640),
         "alice/cur/" + name(6) + ":2,RS")
    gone = deliver("alice", name(7), message(7, b"Deleted.\n"))
    os.unlink(p(gone))
    del owners[gone], modes[gone], content[gone]
    move(deliver("alice", name(8), message(8, b"Flagged, and copied to Sent by a hard link.\n")),
         "alice/cur/" + name(8) + ":2,FS")
    # A name of 255 bytes (NAME_MAX).
    long_name = name(10) + ",S=123,W=130:2,S"
    long_name = long_name[:20] + "x" * (255 - len(long_name)) + long_name[20:]
    move(deliver("alice", name(10), message(10, b"A long name.\n")), "alice/cur/" + long_name)

    maildir("alice/.Sent")
    write(p("alice/.Sent/maildirfolder"), b"")  # the Maildir++ marker: an empty file
    own("alice/.Sent/maildirfolder", ALICE, ALICE, 0o600)
    os.link(p("alice/cur/" + name(8) + ":2,FS"), p("alice/.Sent/cur/" + name(8) + ":2,S"))
    content["alice/.Sent/cur/" + name(8) + ":2,S"] = content["alice/cur/" + name(8) + ":2,FS"]
    own("alice/.Sent/cur/" + name(8) + ":2,S", ALICE, ALICE, 0o600)
    move(deliver("alice/.Sent", name(9), message(9, b"Sent by alice.\n")),
         "alice/.Sent/cur/" + name(9) + ":2,S")
    maildir("alice/.Entw\u00fcrfe")  # a UTF-8 folder name, empty
    # A folder made and removed again, with a message deleted in it.
    maildir("alice/.Trash")
    t = deliver("alice/.Trash", name(11), message(11, b"Trash.\n"))
    os.unlink(p(t))
    del owners[t], modes[t], content[t]
    for sub in ("tmp", "new", "cur"):
        os.rmdir(p("alice/.Trash/" + sub))
        del owners["alice/.Trash/" + sub], modes["alice/.Trash/" + sub]
    os.rmdir(p("alice/.Trash"))
    del owners["alice/.Trash"], modes["alice/.Trash"]
    # Replaced by rename (the way Dovecot writes its uidlist).
    write(p("alice/dovecot-uidlist.tmp"), b"3 V1700000000 N1\n")
    os.rename(p("alice/dovecot-uidlist.tmp"), p("alice/dovecot-uidlist"))
    del content["alice/dovecot-uidlist.tmp"]
    write(p("alice/dovecot-uidlist.tmp"), b"3 V1700000000 N11\n1 :%s\n" % name(1).encode())
    os.rename(p("alice/dovecot-uidlist.tmp"), p("alice/dovecot-uidlist"))
    content["alice/dovecot-uidlist"] = content.pop("alice/dovecot-uidlist.tmp")
    own("alice/dovecot-uidlist", ALICE, ALICE, 0o600)
    os.symlink(".Sent/cur", p("alice/sent-link"))
    content["alice/sent-link"] = b".Sent/cur"
    own("alice/sent-link", ALICE, ALICE, 0o777)
    os.symlink("/var/mail/nowhere/" + "d" * 150, p("alice/dangling-link"))
    content["alice/dangling-link"] = b"/var/mail/nowhere/" + b"d" * 150
    own("alice/dangling-link", 0, 0, 0o777)
    os.mkfifo(p("alice/lda.fifo"), 0o600)
    own("alice/lda.fifo", ALICE, MAIL, 0o620)
    # Sparse: a hole of 1 MiB, 7 bytes, a hole of 128 KiB at the end (truncate).
    with open(p("alice/index.sparse"), "wb") as f:
        f.seek(1 << 20)
        f.write(b"coffer\n")
        f.truncate((1 << 20) + (128 << 10))
        os.fsync(f.fileno())
    content["alice/index.sparse"] = bytes(1 << 20) + b"coffer\n" + bytes((128 << 10) - 7)
    own("alice/index.sparse", ALICE, ALICE, 0o644)

    maildir("bob", 0o2750, BOB, MAIL)  # setgid directory
    deliver("bob", name(12), message(12, b"For bob.\n"), mode=0o400, uid=BOB, gid=MAIL)

    mkdir("shared", 0o1777, 0, MAIL)  # sticky
    write(p("shared/readme"), b"Read me.\n")
    own("shared/readme", 0, 0, 0o444)
    write(p("shared/tool"), b"#!/bin/sh\necho tool\n")
    own("shared/tool", 0, MAIL, 0o6755)  # setuid and setgid
    write(p("shared/empty"), b"")
    own("shared/empty", ALICE, BOB, 0o664)

    # Owners, then modes (chown clears setuid/setgid), then times (chmod moves ctime only).
    paths = sorted(owners)
    for rel in paths:
        os.chown(p(rel), *owners[rel], follow_symlinks=False)
    for rel in paths:
        if not os.path.islink(p(rel)):
            os.chmod(p(rel), modes[rel])
    special = {
        "shared/readme": (-31536000 * 10**9 + 250, -31536000 * 10**9 + 250),  # 1969
        "shared/empty": (1, 0),                                                 # the epoch
        "shared/tool": (7258118400 * 10**9 + 999999999, 7258118400 * 10**9 + 999999999),  # 2200
    }
    for i, rel in enumerate(paths):
        mtime = (1700000000 + 3607 * i) * 10**9 + (i * 123456789) % 10**9
        times[rel] = special.get(rel, (mtime + 86400 * 10**9 + 7, mtime))
        os.utime(p(rel), ns=times[rel], follow_symlinks=False)
    # Two names of one inode: the times set last hold for both.
    linked = {"alice/cur/" + name(8) + ":2,FS", "alice/.Sent/cur/" + name(8) + ":2,S"}
    for rel in linked:
        times[rel] = times[max(linked)]
    expected = {}
    for rel in paths:
        e = {"mode": modes[rel], "uid": owners[rel][0], "gid": owners[rel][1],
             "atime": times[rel][0], "mtime": times[rel][1]}
        if rel in content:
            e["size"] = len(content[rel])
            e["sha256"] = hashlib.sha256(content[rel]).hexdigest()
            e["nlink"] = 2 if rel in linked else 1
        expected[rel] = e
    with open(out_json, "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
         stat.S_IFIFO: "fifo"}


def walk(root, out_json):
    out = {}

    def visit(rel):
        path = os.path.join(root, rel)
        st = os.lstat(path)
        e = {"type": TYPES[stat.S_IFMT(st.st_mode)], "mode": stat.S_IMODE(st.st_mode),
             "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size, "atime": st.st_atime_ns,
             "mtime": st.st_mtime_ns, "ctime": st.st_ctime_ns, "nlink": st.st_nlink,
             "ino": st.st_ino, "sha256": "-"}
        if e["type"] == "file":
            with open(path, "rb") as f:
                e["sha256"] = hashlib.sha256(f.read()).hexdigest()
        elif e["type"] == "symlink":
            e["sha256"] = hashlib.sha256(os.fsencode(os.readlink(path))).hexdigest()
        out[rel] = e
        if e["type"] == "dir":
            for name in sorted(os.listdir(path)):
                visit(name if rel == "." else rel + "/" + name)

    visit(".")
    with open(out_json, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


def compare(expected_json, walk_json):
    expected = json.load(open(expected_json))
    got = json.load(open(walk_json))
    bad = []
    if sorted(expected) != sorted(got):
        bad.append("paths differ: only written %s, only read %s"
                   % (sorted(set(expected) - set(got)), sorted(set(got) - set(expected))))
    for rel, e in expected.items():
        for k, v in e.items():
            if rel in got and got[rel][k] != v:
                bad.append("%s: %s written %r, read %r" % (rel, k, v, got[rel][k]))
    if bad:
        sys.exit("the old cofferfs does not read back what was written:\n  " + "\n  ".join(bad))


def manifest(expected_json, local_json, nodes_json, out_path, origin=""):
    compare(expected_json, local_json)
    compare(expected_json, nodes_json)
    local = json.load(open(local_json))
    nodes = json.load(open(nodes_json))
    fields = ("type", "mode", "uid", "gid", "size", "atime", "mtime", "nlink", "sha256")
    for rel in local:
        for k in fields:
            if local[rel][k] != nodes[rel][k]:
                sys.exit("local and replicated stores differ: %s %s %r %r"
                         % (rel, k, local[rel][k], nodes[rel][k]))
    # Hard links: the paths of one non-directory inode form a group named by its first path.
    groups = {}
    for store in (local, nodes):
        by_ino = {}
        for rel in sorted(store):
            if store[rel]["type"] != "dir":
                by_ino.setdefault(store[rel]["ino"], []).append(rel)
        g = {rel: (paths[0] if len(paths) > 1 else "-")
             for paths in by_ino.values() for rel in paths}
        for rel, first in g.items():
            members = [x for x in g if g[x] == first] if first != "-" else [rel]
            if store[rel]["nlink"] != len(members):
                sys.exit("%s: nlink %d, %d names" % (rel, store[rel]["nlink"], len(members)))
        if groups and groups != g:
            sys.exit("local and replicated stores have different hard links")
        groups = g
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(
            "# The tree held by every store in tests/reference/v1-stores/ (state-local/, state-nodes/,\n"
            "# and nodes/n1..n3), read back through the old cofferfs after a remount.\n"
            "# %s by tests/reference/make_v1_stores.sh.\n"
            "# One line per path, relative to the mount point (\".\" is the root), UTF-8, fields\n"
            "# separated by one TAB:\n"
            "#   path type mode uid gid size atime_ns mtime_ns nlink sha256 link_group"
            " ctime_ns_local ctime_ns_nodes\n"
            "# type: file, dir, symlink or fifo; mode: octal permission bits (07777); sha256: of the\n"
            "# content (file) or of the target (symlink), else \"-\"; link_group: for a file with\n"
            "# several names, its first path in sort order (every name of that inode has the same\n"
            "# link_group), else \"-\"; ctime_ns_*: the change time in the local and the replicated\n"
            "# store (they were written at different moments).\n" % origin)
        for rel in sorted(local):
            e = local[rel]
            f.write("\t".join([rel, e["type"], "%04o" % e["mode"], str(e["uid"]), str(e["gid"]),
                               str(e["size"]), str(e["atime"]), str(e["mtime"]), str(e["nlink"]),
                               e["sha256"], groups.get(rel, "-"), str(e["ctime"]),
                               str(nodes[rel]["ctime"])]) + "\n")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"populate": populate, "walk": walk, "compare": compare, "manifest": manifest}[cmd](*args)
PYEOF

# ---- the replicated store: three nodes, one box ----
for n in n1 n2 n3; do
  mkdir -p "$WORK/live/nodes/$n"
  fill "$OUT/node.toml" "$WORK/live/$n.toml" "$n" "${PORTS[$n]}"
  "$NODE" --config "$WORK/live/$n.toml" >> "$WORK/$n.log" 2>&1 &
  NODE_PID[${n#n}]=$!
  PIDS+=("${NODE_PID[${n#n}]}")
done
for n in n1 n2 n3; do wait_port "${PORTS[$n]}"; done

wait_outbox_empty() {
  local i out=""
  for i in $(seq 300); do
    out=$("$CTL" status "$1" 2>&1) || true
    case "$out" in *" outbox=0 "*) return 0 ;; esac
    sleep 0.2
  done
  echo "$0: the outbox of $1 did not drain: $out" >&2
  return 1
}

mount_fs nodes "replicator=$WORK/live/replicator.toml"
PID=$MOUNT_PID
python3 "$SELF_PY" populate "$WORK/mnt-nodes" "$WORK/expected.json"
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$WORK/mnt-nodes/alice/new"
wait_outbox_empty "$WORK/mnt-nodes"
"$CTL" verify "$WORK/mnt-nodes"
umount_fs nodes "$PID"
# Every node holds every object (the third copy of a write lands after the W acks): scrub until
# nothing is left to repair.
for i in $(seq 20); do
  out=$("$CTL" scrub --config "$WORK/live/replicator.toml" --key-file "$WORK/live/key" -q)
  echo "scrub: $out"
  case "$out" in *"repaired 0, moved 0, unreachable 0, unrecoverable 0"*) break ;; esac
  [ "$i" -lt 20 ] || { echo "$0: scrub keeps repairing" >&2; exit 1; }
  sleep 0.5
done
# Read back through a remount of the old cofferfs, then through a new box rebuilt from the nodes.
mount_fs nodes "replicator=$WORK/live/replicator.toml"
PID=$MOUNT_PID
python3 "$SELF_PY" walk "$WORK/mnt-nodes" "$WORK/walk-nodes.json"
"$CTL" verify "$WORK/mnt-nodes"
umount_fs nodes "$PID"
mount_fs rebuilt "replicator=$WORK/live/replicator.toml"
PID=$MOUNT_PID
python3 "$SELF_PY" walk "$WORK/mnt-rebuilt" "$WORK/walk-rebuilt.json"
umount_fs rebuilt "$PID"
python3 "$SELF_PY" manifest "$WORK/expected.json" "$WORK/walk-nodes.json" "$WORK/walk-rebuilt.json" /dev/null
for n in 1 2 3; do
  kill "${NODE_PID[$n]}"
  reap "${NODE_PID[$n]}" || true
done

# ---- the local store (no nodes) ----
mount_fs local
PID=$MOUNT_PID
python3 "$SELF_PY" populate "$WORK/mnt-local" "$WORK/expected-local.json"
cmp "$WORK/expected.json" "$WORK/expected-local.json"
umount_fs local "$PID"
mount_fs local
PID=$MOUNT_PID
python3 "$SELF_PY" walk "$WORK/mnt-local" "$WORK/walk-local.json"
umount_fs local "$PID"

ORIGIN="Made on $(date -u +%F) with the binaries of commit $(git -C "$BUILD" rev-parse --short=12 HEAD 2> /dev/null || echo unknown)"
python3 "$SELF_PY" manifest "$WORK/expected.json" "$WORK/walk-local.json" "$WORK/walk-nodes.json" \
  "$OUT/MANIFEST" "$ORIGIN"

# ---- compacted copies of the LMDB files ----
compact() {
  mkdir -p "$2"
  mdb_copy -c "$1" "$2"
  chmod 644 "$2/data.mdb"
}
compact "$WORK/state-local" "$OUT/state-local"
compact "$WORK/state-nodes" "$OUT/state-nodes"
for n in n1 n2 n3; do compact "$WORK/live/nodes/$n" "$OUT/nodes/$n"; done
du -ab "$OUT" | sort -k2
du -sh "$OUT"
