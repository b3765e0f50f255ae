#!/usr/bin/env bash
# Installs exactly the Debian 12 packages coffer needs to build and test.
# Idempotent: packages already present are left alone; runs apt-get update only when
# something is missing. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  # build
  build-essential meson ninja-build pkg-config g++
  libfuse3-dev fuse3 libcrypto++-dev libzmq3-dev cppzmq-dev liblmdb-dev lmdb-utils
  protobuf-compiler libprotobuf-dev libasio-dev libssl-dev libcli11-dev
  libtomlplusplus-dev libspdlog-dev libcrypt-dev libsodium-dev libsystemd-dev
  # mail software the mount and POP3 tests run against, and the benchmarks' baselines
  postfix maildrop dovecot-pop3d dovecot-imapd curl gocryptfs securefs postmark fetchmail
  # Debian packages (scripts/package.sh, scripts/package_test.py): build, check, unit checks
  debhelper lintian systemd
  # tests, fuzzers, benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev clang-14 libclang-rt-14-dev
  openssl python3 procps psmisc groff-base man-db bsdextrautils
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
