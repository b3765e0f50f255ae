#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 into build-fuzz/ and runs each for a while, seeded
# from the committed reference data (tests/reference/v1 and v2). Exits non-zero if a target crashes,
# leaks, trips ASan/UBSan or times out; the input that did it is left in build-fuzz/artifacts/.
#
#   scripts/fuzz.sh [seconds per target, default 30] [target...]
#
# Targets: sealed_fuzz (crypto::Inspect/Open) and keyfile_fuzz (keyfile::ReadInfo/Unlock) by
# default; name others (any tests/fuzz/<name>.cc wired in tests/fuzz/meson.build) to run them. The
# corpora grow in build-fuzz/corpus/<target>/ and are reused by the next run. The whole project
# library is compiled with -fsanitize=fuzzer-no-link so that libFuzzer sees coverage inside
# common/, not only in the target; the targets themselves add -fsanitize=fuzzer,address,undefined
# (tests/fuzz/meson.build).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=$root/build-fuzz
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sealed_fuzz keyfile_fuzz)

command -v clang++-14 >/dev/null || { echo "clang++-14 not found (scripts/setup.sh)" >&2; exit 69; }
if [ ! -f "$build/build.ninja" ]; then
  CXX=clang++-14 meson setup "$build" -Dtests=false -Dfuzzers=true -Dman=false \
    -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all" >/dev/null
fi
ninja -C "$build" -j 2 "${targets[@]/#/tests/fuzz/}"

# Seed corpora from the reference data of every format (sealed_fuzz opens with the v2 keys).
mkdir -p "$build/corpus/sealed_fuzz" "$build/corpus/keyfile_fuzz" "$build/artifacts"
for v in v1 v2; do
  ref=$root/tests/reference/$v
  # sealed_fuzz input: 16-byte object id, then the sealed object.
  python3 - "$ref" "$build/corpus/sealed_fuzz" "$v" <<'EOF'
import sys
ref, out, v = sys.argv[1], sys.argv[2], sys.argv[3]
for line in open(f"{ref}/MANIFEST"):
    f = line.split()
    if f and f[0] == "object":
        name, oid = f[1], f[4]
        sealed = open(f"{ref}/objects/{name}.sealed", "rb").read()
        open(f"{out}/seed-{v}-{name}", "wb").write(bytes.fromhex(oid) + sealed)
EOF
  for k in "$ref"/keyfile-*.key; do cp "$k" "$build/corpus/keyfile_fuzz/$v-$(basename "$k")"; done
done

export COFFER_SOURCE_ROOT=$root
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s"
  mkdir -p "$build/corpus/$target"
  if ! "$build/tests/fuzz/$target" "$build/corpus/$target" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" 2>"$build/$target.log"; then
    status=1
    echo "$target FAILED (log: $build/$target.log, input in $build/artifacts/)"
    grep -E 'ERROR|SUMMARY|Test unit written' "$build/$target.log" | head -20
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ *DONE' "$build/$target.log" |
    tr '\n' ' '
  echo
done
exit $status
