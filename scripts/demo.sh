#!/usr/bin/env bash
# README command (1): set up a fresh Debian 12 machine, build coffer, and start the local demo
# under ./demo/ on loopback (nothing outside this checkout is touched besides the packages):
#   - a master key made with coffer-keytool (no passphrase, mode 0600) and its fingerprint;
#   - three coffer-node storage nodes on 127.0.0.1:7411-7413 with CURVE keys and an allow list;
#   - the cofferfs mount of demo/state on demo/mnt on those three nodes (needs /dev/fuse;
#     -o replicator=demo/replicator.toml, R=3 W=2: a change returns once two nodes hold it);
#   - a Maildir for user "demo" in the mount, with one sample message delivered the Maildir way;
#   - coffer-pop3d on 127.0.0.1:1110 serving it (user demo, password demo);
#   - `cofferctl status demo/state`: the nodes, the outbox and the cache as cofferfs sees them.
# A re-run restarts everything on the same keys, nodes and state (one more sample message);
# with demo/state removed, the mount rebuilds the box from the nodes.
#   bash scripts/demo.sh          set up, build, (re)start the demo
#   bash scripts/demo.sh stop     stop what the demo started and unmount
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
demo="$root/demo"
build="$root/build-demo"
pids="$demo/pids"

# Stops one process the demo started (by the PID in $pids/NAME.pid, and only if that process
# still is ours: its command line names $demo), waiting up to 10 s before SIGKILL.
stop_pid() {
  local f="$pids/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
     tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$demo"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Order matters: coffer-pop3d holds files in the mount; cofferfs is unmounted (which ends it)
# while the nodes still answer; the nodes go last.
stop_demo() {
  stop_pid pop3d
  if mountpoint -q "$demo/mnt" 2>/dev/null; then
    fusermount3 -u "$demo/mnt" 2>/dev/null || umount "$demo/mnt" 2>/dev/null || umount -l "$demo/mnt" || true
  fi
  stop_pid cofferfs
  if mountpoint -q "$demo/mnt" 2>/dev/null; then umount -l "$demo/mnt" || true; fi
  for f in "$pids"/*.pid; do
    [ -e "$f" ] || continue
    stop_pid "$(basename "$f" .pid)"
  done
}

if [ "${1:-}" = "stop" ]; then
  stop_demo
  echo "demo stopped"
  exit 0
fi

bash scripts/setup.sh
# The programs only (no tests, no benchmarks: the demo starts sooner), in their own build
# directory so that a developer's ./build keeps its options.
options=(-Dcomponents=replicator,fs,pop3d,ctl -Dtests=false -Dbench=false)
if [ -f "$build/build.ninja" ]; then
  meson setup --reconfigure "$build" "${options[@]}" >/dev/null
else
  meson setup "$build" "${options[@]}" >/dev/null
fi
ninja -C "$build"
stop_demo  # a re-run restarts everything

bin_keytool="$build/keytool/coffer-keytool"
bin_node="$build/replicator/coffer-node"
bin_ctl="$build/ctl/cofferctl"
bin_fs="$build/fs/cofferfs"
bin_pop3d="$build/pop3d/coffer-pop3d"
mkdir -p "$demo/keys" "$pids" "$demo/logs"
chmod 700 "$demo/keys"

wait_for() {  # description, command... (up to ${tries:-50} tries, 0.1 s apart)
  local what=$1; shift
  for _ in $(seq 1 "${tries:-50}"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "demo: $what did not come up; see $demo/logs/" >&2
  return 1
}

echo
echo "== master key"
if [ ! -f "$demo/keys/coffer.key" ]; then
  "$bin_keytool" init --keyfile "$demo/keys/coffer.key" --no-passphrase
fi
"$bin_keytool" verify --keyfile "$demo/keys/coffer.key"

echo
echo "== CURVE key pairs"
for who in n1 n2 n3 box admin; do
  [ -f "$demo/keys/$who.key" ] || "$bin_keytool" curve-keygen --out "$demo/keys/$who" >/dev/null
done
cat "$demo/keys/box.key" > "$demo/keys/allowed_boxes"

if [ -x "$bin_node" ]; then
  echo
  echo "== storage nodes"
  {
    echo "# cofferfs's replicator config (format: examples/replicator.toml)"
    echo "box_id = 1"
    echo "secret_key_file = \"$demo/keys/box.key_secret\""
    echo "replicas = 3      # R"
    echo "write_quorum = 0  # W: 0 = majority of R (2)"
  } > "$demo/replicator.toml"
  for i in 1 2 3; do
    mkdir -p "$demo/nodes/n$i"
    cat > "$demo/nodes/n$i.toml" <<TOML
node_id = "n$i"
data_dir = "$demo/nodes/n$i"
listen = ["tcp://127.0.0.1:741$i"]
secret_key_file = "$demo/keys/n$i.key_secret"
allowed_keys_file = "$demo/keys/allowed_boxes"
admin_key_file = "$demo/keys/admin.key"
TOML
    nohup "$bin_node" --config "$demo/nodes/n$i.toml" >"$demo/logs/n$i.log" 2>&1 &
    echo $! > "$pids/n$i.pid"
    {
      echo
      echo "[[node]]"
      echo "id = \"n$i\""
      echo "endpoint = \"tcp://127.0.0.1:741$i\""
      echo "public_key_file = \"$demo/keys/n$i.key\""
    } >> "$demo/replicator.toml"
  done
  for i in 1 2 3; do
    wait_for "node n$i" "$bin_ctl" node "n$i" ping --config "$demo/replicator.toml"
    printf 'n%s: ' "$i"; "$bin_ctl" node "n$i" ping --config "$demo/replicator.toml" | tail -1
  done
fi

maildir=""
mounted=""
if [ -x "$bin_fs" ] && [ -e /dev/fuse ]; then
  echo
  mkdir -p "$demo/state" "$demo/mnt"
  fs_opts="keyfile=$demo/keys/coffer.key"
  if [ -x "$bin_node" ]; then
    echo "== cofferfs mount on the three nodes (R=3, W=2)"
    fs_opts="$fs_opts,replicator=$demo/replicator.toml"
  else
    echo "== cofferfs mount (local only: coffer-node was not built)"
  fi
  # -f keeps cofferfs in the foreground of its own background job, so that $! is its PID;
  # nohup (here and for the other servers) lets the demo outlive the terminal that started it.
  nohup "$bin_fs" "$demo/state" "$demo/mnt" -f -o "$fs_opts" >"$demo/logs/cofferfs.log" 2>&1 &
  echo $! > "$pids/cofferfs.pid"
  tries=300 wait_for "the mount" mountpoint -q "$demo/mnt" || { tail -5 "$demo/logs/cofferfs.log" >&2; exit 1; }
  echo "mounted $demo/state on $demo/mnt (options $fs_opts)"
  maildir_root="$demo/mnt"
  mounted=1
else
  echo
  echo "(cofferfs or /dev/fuse not available: the Maildir is a plain directory)"
  maildir_root="$demo/plain"
fi
maildir="$maildir_root/demo/Maildir"
mkdir -p "$maildir/tmp" "$maildir/new" "$maildir/cur"

echo
echo "== delivering a sample message (tmp/ write + fsync, then rename into new/)"
name="$(date +%s).M$$P$$.demo"
cat > "$maildir/tmp/$name" <<MAIL
From: coffer demo <demo@localhost>
To: demo@localhost
Subject: Hello from coffer
Date: $(date -R)
Message-ID: <$name@localhost>

This message was delivered into an encrypted coffer Maildir.
MAIL
sync "$maildir/tmp/$name"
mv "$maildir/tmp/$name" "$maildir/new/$name"
ls -l "$maildir/new"

if [ -n "$mounted" ] && [ -x "$bin_ctl" ]; then
  echo
  echo "== cofferctl status $demo/state"
  "$bin_ctl" status "$demo/state" || echo "(cofferctl status exited with $?)"
fi

if [ -x "$bin_pop3d" ]; then
  echo
  echo "== coffer-pop3d on 127.0.0.1:1110"
  hash=$(openssl passwd -6 demo)
  echo "demo:{SHA512-CRYPT}$hash:$(id -u):$(id -g)::$maildir_root/demo" > "$demo/pop3d.passwd"
  chmod 600 "$demo/pop3d.passwd"
  nohup "$bin_pop3d" --listen 127.0.0.1:1110 --passwd-file "$demo/pop3d.passwd" \
    --mail-location "$maildir_root/%n/Maildir" --control-socket "$demo/pop3d.sock" \
    >"$demo/logs/pop3d.log" 2>&1 &
  echo $! > "$pids/pop3d.pid"
  wait_for "coffer-pop3d" bash -c "exec 3<>/dev/tcp/127.0.0.1/1110"
  echo "fetch it:   curl -s pop3://127.0.0.1:1110/1 -u demo:demo"
  echo "list:       curl -s pop3://127.0.0.1:1110/ -u demo:demo"
fi

echo
echo "demo running under $demo (logs in $demo/logs)"
echo "  key:   $bin_keytool show --keyfile $demo/keys/coffer.key"
[ -x "$bin_node" ] && echo "  nodes: $bin_ctl node n1 stat --config $demo/replicator.toml"
[ -n "$mounted" ] && echo "  box:   $bin_ctl status $demo/state"
echo "  stop:  bash scripts/demo.sh stop"
