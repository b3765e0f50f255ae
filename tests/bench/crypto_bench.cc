// crypto_bench: throughput of the sealed object format (Seal/Open: HKDF of the per-object key,
// AES-256-GCM, protobuf framing) and of the raw AES-256-GCM primitive underneath, on 4 KiB
// (a small inode record or mail header) and 256 KiB (one content chunk). The gap between Seal
// and GcmEncrypt is our overhead; tests/bench/crypto_vs_openssl.sh puts both beside
// `openssl speed` measured in the same run.
//
// Throughput is reported as bytes_per_second (Google Benchmark, binary units) and as the counter
// MB/s (10^6 bytes per second of plaintext, CPU time), the unit openssl speed uses.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "common/crypto.h"

namespace coffer::crypto {
namespace {

void SetThroughput(benchmark::State& state, std::size_t size) {
  const double bytes = static_cast<double>(state.iterations()) * static_cast<double>(size);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["MB/s"] = benchmark::Counter(bytes / 1e6, benchmark::Counter::kIsRate);
}

struct Fixture {
  Fixture() { ring.Add(1, GenerateMasterKey()); }
  Keyring ring;
  ObjectId id = RandomObjectId();
};

void BM_Seal(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  Fixture f;
  std::string plain = primitives::RandomString(size);
  for (auto _ : state) {
    std::string sealed = Seal(f.ring, ObjectKind::kChunk, f.id, 1, {1, 1}, plain);
    benchmark::DoNotOptimize(sealed.data());
  }
  SetThroughput(state, size);
}

void BM_Open(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  Fixture f;
  std::string sealed = Seal(f.ring, ObjectKind::kChunk, f.id, 1, {1, 1}, primitives::RandomString(size));
  for (auto _ : state) {
    std::optional<std::string> plain = Open(f.ring, ObjectKind::kChunk, f.id, sealed);
    if (!plain) state.SkipWithError("Open failed");
    benchmark::DoNotOptimize(plain->data());
  }
  SetThroughput(state, size);
}

void BM_GcmEncrypt(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  std::string key = primitives::RandomString(kKeySize);
  std::string nonce = primitives::RandomString(kNonceSize);
  std::string plain = primitives::RandomString(size);
  for (auto _ : state) {
    std::string out = primitives::GcmEncrypt(key, nonce, "aad", plain);
    benchmark::DoNotOptimize(out.data());
  }
  SetThroughput(state, size);
}

void BM_GcmDecrypt(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  std::string key = primitives::RandomString(kKeySize);
  std::string nonce = primitives::RandomString(kNonceSize);
  std::string sealed = primitives::GcmEncrypt(key, nonce, "aad", primitives::RandomString(size));
  for (auto _ : state) {
    std::optional<std::string> out = primitives::GcmDecrypt(key, nonce, "aad", sealed);
    if (!out) state.SkipWithError("GcmDecrypt failed");
    benchmark::DoNotOptimize(out->data());
  }
  SetThroughput(state, size);
}

// The fixed costs inside Seal/Open: one locked allocation and one HKDF for the per-object key.
void BM_SecretBytes(benchmark::State& state) {
  for (auto _ : state) {
    SecretBytes key(kKeySize);
    benchmark::DoNotOptimize(key.data());
  }
}

void BM_Hkdf(benchmark::State& state) {
  std::string ikm = primitives::RandomString(kKeySize);
  for (auto _ : state) {
    SecretBytes key = primitives::Hkdf(ikm, {}, "coffer/v1/object0123456789abcdef", kKeySize);
    benchmark::DoNotOptimize(key.data());
  }
}

BENCHMARK(BM_SecretBytes);
BENCHMARK(BM_Hkdf);
BENCHMARK(BM_Seal)->Arg(4096)->Arg(256 << 10);
BENCHMARK(BM_Open)->Arg(4096)->Arg(256 << 10);
BENCHMARK(BM_GcmEncrypt)->Arg(4096)->Arg(256 << 10);
BENCHMARK(BM_GcmDecrypt)->Arg(4096)->Arg(256 << 10);

}  // namespace
}  // namespace coffer::crypto

BENCHMARK_MAIN();
