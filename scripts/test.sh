#!/usr/bin/env bash
# README command (2): set up a fresh Debian 12 machine, build, and run the whole test suite.
#   1. installs the packages (scripts/setup.sh),
#   2. builds with -Dwerror=true and runs every suite (unit, mount, net),
#   3. builds again with AddressSanitizer + UndefinedBehaviorSanitizer and runs the unit suite,
#      then with ThreadSanitizer and runs the unit suite again,
#   4. builds the Debian packages (lintian clean), installs them, smoke-tests the installed
#      programs with their units' command lines and purges them (scripts/package_test.py),
#   5. prints "N passed, N failed" counted from the meson test logs and the package test's
#      steps (skips count as failures: a skipped test is a promise not kept) and exits non-zero
#      on any failure.
# Build directories: build-ci/, build-asan/ and build-tsan/ (reused when present; delete them to start over);
# the packages land in build-packages/.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)

step() { printf '\n== %s\n' "$*"; }
fail_early() { echo "$*" >&2; echo "0 passed, 1 failed"; exit 1; }

step "setup"
bash scripts/setup.sh || fail_early "setup failed"

configure() {  # dir, options...
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1
  else
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1
  fi || { cat "$dir.setup.log"; return 1; }
}

step "build (werror)"
# -O2 without debug info: the same code paths, a third less compile and link time.
configure build-ci -Dwerror=true -Dtests=true -Dbench=true -Ddebug=false -Doptimization=2 ||
  fail_early "meson setup failed"
ninja -C build-ci -j "$jobs" || fail_early "build failed"

step "tests: all suites"
meson test -C build-ci --print-errorlogs --num-processes "$jobs" --timeout-multiplier 2
status_main=$?

step "build (address,undefined sanitizers)"
configure build-asan -Dwerror=true -Dtests=true -Db_sanitize=address,undefined -Db_lundef=false \
  -Dbuildtype=debug || fail_early "meson setup (asan) failed"
# Only what the unit tests run (not every program and integration test); the man page test is
# about text, not memory, and ran in the first build.
mapfile -t asan_targets < <(python3 scripts/unit_targets.py build-asan unit "man pages")
mapfile -t asan_tests < <(python3 scripts/unit_targets.py --names build-asan unit "man pages")
[ ${#asan_tests[@]} -gt 0 ] || fail_early "no unit tests found in build-asan"
ninja -C build-asan -j "$jobs" "${asan_targets[@]}" || fail_early "build (asan) failed"

step "tests: unit suite under ASan+UBSan"
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
  meson test -C build-asan --no-rebuild --print-errorlogs --num-processes "$jobs" \
  --timeout-multiplier 3 "${asan_tests[@]}"
status_asan=$?

step "build (thread sanitizer)"
# The fs core is concurrent by design (FUSE threads, committer, local writer, maintenance): the
# unit suite runs again under ThreadSanitizer. -Wno-tsan: GCC warns that the standalone Asio
# headers use atomic_thread_fence, which TSan does not model (pop3d only, not the fs core).
configure build-tsan -Dwerror=true -Dtests=true -Db_sanitize=thread -Db_lundef=false \
  -Dbuildtype=debugoptimized -Dcpp_args=-Wno-tsan || fail_early "meson setup (tsan) failed"
mapfile -t tsan_targets < <(python3 scripts/unit_targets.py build-tsan unit "man pages")
mapfile -t tsan_tests < <(python3 scripts/unit_targets.py --names build-tsan unit "man pages")
[ ${#tsan_tests[@]} -gt 0 ] || fail_early "no unit tests found in build-tsan"
ninja -C build-tsan -j "$jobs" "${tsan_targets[@]}" || fail_early "build (tsan) failed"

step "tests: unit suite under TSan"
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  meson test -C build-tsan --no-rebuild --print-errorlogs --num-processes "$jobs" \
  --timeout-multiplier 3 "${tsan_tests[@]}"
status_tsan=$?

step "Debian packages: build, install, smoke test, purge"
start=$(date +%s)
python3 scripts/package_test.py build-packages/package-test.junit.xml
status_package=$?
echo "package test took $(( $(date +%s) - start )) s"

step "summary"
python3 scripts/count_tests.py build-ci/meson-logs/testlog.junit.xml \
  build-asan/meson-logs/testlog.junit.xml build-tsan/meson-logs/testlog.junit.xml \
  build-packages/package-test.junit.xml
status_count=$?
[ $status_main -eq 0 ] && [ $status_asan -eq 0 ] && [ $status_tsan -eq 0 ] &&
  [ $status_package -eq 0 ] &&
  [ $status_count -eq 0 ]
