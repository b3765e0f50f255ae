#!/usr/bin/env bash
# Puts coffer's sealing throughput beside OpenSSL's AES-256-GCM, measured in the same run on the
# same machine, so the ratio means something even on a loaded or throttled box.
#
#   tests/bench/crypto_vs_openssl.sh [build-dir]
#
# build-dir defaults to build-bench/ (configured with -Dbench=true if it does not exist yet). Runs
# crypto_bench (Seal, Open, raw GcmEncrypt/GcmDecrypt on 4 KiB and 256 KiB) and
# `openssl speed -evp aes-256-gcm -bytes N` for both sizes, then prints MB/s (10^6 bytes of
# plaintext per second) side by side with the ratio coffer/openssl. Both tools divide by CPU time.
# `openssl speed` times encryption only; Open and GcmDecrypt are compared with that same figure
# (GCM decryption does the same work). BENCH_SECONDS (default 1) sets the time per measurement.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build-bench}
seconds=${BENCH_SECONDS:-1}
sizes=(4096 262144)

if ! command -v openssl >/dev/null; then
  echo "openssl not found (apt-get install openssl)" >&2
  exit 69
fi
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Dbench=true >/dev/null
fi
ninja -C "$build" tests/bench/crypto_bench >/dev/null
bench=$build/tests/bench/crypto_bench

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bench" --benchmark_format=json --benchmark_min_time="$seconds" \
  --benchmark_filter='^BM_(Seal|Open|GcmEncrypt|GcmDecrypt)/' >"$tmp/coffer.json"
for size in "${sizes[@]}"; do
  openssl speed -mr -seconds "$seconds" -bytes "$size" -evp aes-256-gcm \
    >"$tmp/openssl-$size.txt" 2>/dev/null
done

python3 - "$tmp" "${sizes[@]}" <<'EOF'
import json, sys

tmp, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
coffer = {}
for b in json.load(open(f"{tmp}/coffer.json"))["benchmarks"]:
    coffer[b["name"]] = b["bytes_per_second"] / 1e6
openssl = {}
for size in sizes:
    # Machine-readable result line: +F:<n>:<cipher>:<bytes per second for the one size>
    for line in open(f"{tmp}/openssl-{size}.txt"):
        if line.startswith("+F:"):
            openssl[size] = float(line.strip().split(":")[3]) / 1e6
    if size not in openssl:
        sys.exit(f"no result from openssl speed for {size} bytes")

rows = [("Seal", "BM_Seal"), ("Open", "BM_Open"),
        ("GcmEncrypt (raw)", "BM_GcmEncrypt"), ("GcmDecrypt (raw)", "BM_GcmDecrypt")]
print(f"{'operation':<18} {'size':>8} {'coffer MB/s':>12} {'openssl MB/s':>13}"
      f" {'coffer/openssl':>15}")
for size in sizes:
    for label, name in rows:
        ours = coffer[f"{name}/{size}"]
        theirs = openssl[size]
        print(f"{label:<18} {size:>8} {ours:>12.1f} {theirs:>13.1f} {ours / theirs:>15.2f}")
print("openssl: `openssl speed -evp aes-256-gcm -bytes N` (encryption); MB = 10^6 bytes, CPU time")
EOF
