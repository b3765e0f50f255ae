#!/usr/bin/env bash
# Builds coffer's Debian packages from a checkout without touching it: the tracked files (plus
# any uncommitted changes) are copied to a scratch directory, where `dpkg-buildpackage -us -uc -b`
# runs, and the .deb files land in OUT_DIR (default ./packages). Then lintian checks them
# (warnings and errors fail). Tests are not built (-Dtests=false in debian/rules):
# scripts/test.sh runs them on the source tree.
#   bash scripts/package.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=$(realpath -m "${1:-$root/packages}")
version=$(dpkg-parsechangelog -S Version)
scratch=$(mktemp -d /tmp/coffer-package.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
src="$scratch/coffer-$version"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src"
cd "$src"
export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-nocheck noautodbgsym parallel=$(nproc)}"
dpkg-buildpackage -us -uc -b >"$scratch/build.log" 2>&1 || { tail -60 "$scratch/build.log"; exit 1; }
mkdir -p "$out"
rm -f "$out"/*.deb
cp "$scratch"/*.deb "$scratch"/*.changes "$scratch"/*.buildinfo "$out"/
cd "$out"
lintian --allow-root --fail-on error,warning --tag-display-limit 0 ./*.changes
ls -1 "$out"/*.deb
