#!/usr/bin/env bash
# README command (1): set up a fresh Debian 12 machine, build coffer, and start the local demo
# under ./demo/ (nothing outside this checkout is touched besides the installed packages).
#
# What the demo runs today: a master key made with coffer-keytool (no passphrase, mode 0600),
# shown with its fingerprint, and a CURVE key pair for a storage node. Later components (storage
# nodes, the cofferfs mount, coffer-pop3d) join the demo as they land.
#   bash scripts/demo.sh          set up, build, (re)start the demo
#   bash scripts/demo.sh stop     stop whatever the demo started
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
demo="$root/demo"
build="$root/build"

if [ "${1:-}" = "stop" ]; then
  if [ -d "$demo/pids" ]; then
    for f in "$demo"/pids/*.pid; do
      [ -e "$f" ] || continue
      kill "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    done
  fi
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

keytool="$build/keytool/coffer-keytool"
mkdir -p "$demo/keys" "$demo/pids"
chmod 700 "$demo/keys"

echo
echo "== master key"
if [ ! -f "$demo/keys/coffer.key" ]; then
  "$keytool" init --keyfile "$demo/keys/coffer.key" --no-passphrase
fi
"$keytool" show --keyfile "$demo/keys/coffer.key"
"$keytool" verify --keyfile "$demo/keys/coffer.key"

echo
echo "== CURVE key pairs (storage node, access box, admin)"
for who in node1 box admin; do
  if [ ! -f "$demo/keys/$who.key" ]; then
    "$keytool" curve-keygen --out "$demo/keys/$who" >/dev/null
  fi
  printf '%-6s public key %s\n' "$who" "$(cat "$demo/keys/$who.key")"
done

echo
echo "demo ready under $demo"
echo "  try: $keytool show --keyfile $demo/keys/coffer.key"
echo "  stop: bash scripts/demo.sh stop"
