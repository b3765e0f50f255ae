#!/usr/bin/env bash
# README command (1): set up a fresh Debian 12 machine, build coffer, and start the local demo
# under ./demo/ on loopback (nothing outside this checkout is touched besides the packages):
#   - a master key made with coffer-keytool (no passphrase, mode 0600) and its fingerprint;
#   - three coffer-node storage nodes on 127.0.0.1:7411-7413 with CURVE keys and an allow list;
#   - the cofferfs mount of demo/state on demo/mnt (needs /dev/fuse; the mount is local-only
#     until the replicator is wired into cofferfs);
#   - a Maildir for user "demo" in the mount, with one sample message delivered the Maildir way;
#   - coffer-pop3d on 127.0.0.1:1110 serving it (user demo, password demo).
#   bash scripts/demo.sh          set up, build, (re)start the demo
#   bash scripts/demo.sh stop     stop what the demo started and unmount
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
demo="$root/demo"
build="$root/build"
pids="$demo/pids"

stop_demo() {
  if [ -d "$pids" ]; then
    for f in "$pids"/*.pid; do
      [ -e "$f" ] || continue
      kill "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    done
  fi
  if mountpoint -q "$demo/mnt" 2>/dev/null; then
    fusermount3 -u "$demo/mnt" 2>/dev/null || umount "$demo/mnt" 2>/dev/null || umount -l "$demo/mnt" || true
  fi
}

if [ "${1:-}" = "stop" ]; then
  stop_demo
  echo "demo stopped"
  exit 0
fi

bash scripts/setup.sh
if [ -f "$build/build.ninja" ]; then
  meson setup --reconfigure "$build" >/dev/null
else
  meson setup "$build" >/dev/null
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

wait_for() {  # description, command...
  local what=$1; shift
  for _ in $(seq 1 50); do
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
    echo "box_id = 1"
    echo "secret_key_file = \"$demo/keys/box.key_secret\""
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
    "$bin_node" --config "$demo/nodes/n$i.toml" >"$demo/logs/n$i.log" 2>&1 &
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
if [ -x "$bin_fs" ] && [ -e /dev/fuse ]; then
  echo
  echo "== cofferfs mount"
  mkdir -p "$demo/state" "$demo/mnt"
  "$bin_fs" "$demo/state" "$demo/mnt" -o "keyfile=$demo/keys/coffer.key" \
    >"$demo/logs/cofferfs.log" 2>&1
  wait_for "the mount" mountpoint -q "$demo/mnt"
  pgrep -f "cofferfs $demo/state" | head -1 > "$pids/cofferfs.pid" || true
  echo "mounted $demo/state on $demo/mnt"
  maildir_root="$demo/mnt"
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

if [ -x "$bin_pop3d" ]; then
  echo
  echo "== coffer-pop3d on 127.0.0.1:1110"
  hash=$(openssl passwd -6 demo)
  echo "demo:{SHA512-CRYPT}$hash:$(id -u):$(id -g)::$maildir_root/demo" > "$demo/pop3d.passwd"
  chmod 600 "$demo/pop3d.passwd"
  "$bin_pop3d" --listen 127.0.0.1:1110 --passwd-file "$demo/pop3d.passwd" \
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
echo "  stop:  bash scripts/demo.sh stop"
