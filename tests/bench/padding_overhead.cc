// Storage overhead of the padding of sealed objects (fs/padding.h) on a mail size mix, beside
// no padding and power-of-two classes, and how many distinct message sizes share a stored size.
// Prints a table; the figures are quoted in coffer(7). Deterministic (fixed seed).
//
// The mix (100,000 messages): 70 % plain text (log-normal, median 4 KiB), 25 % HTML and
// newsletters (median 40 KiB), 5 % with attachments (median 600 KiB), capped at 25 MiB. An inode
// record is modelled as 120 bytes, plus a 60-byte Maildir name, plus 18 bytes per chunk.
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "fs/padding.h"

namespace {

using coffer::crypto::ObjectKind;

constexpr std::size_t kChunk = 64 * 1024;
constexpr std::size_t kSealOverhead = 40;  // header and tag of a sealed object (about)

std::uint64_t Pow2(std::uint64_t n) {
  std::uint64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

struct Totals {
  double plain = 0, none = 0, padme = 0, pow2 = 0;
};

}  // namespace

int main() {
  std::mt19937_64 rng(20261207);
  std::discrete_distribution<int> kind({70, 25, 5});
  std::lognormal_distribution<double> text(std::log(4096.0), 0.8), html(std::log(40960.0), 0.7),
      attach(std::log(614400.0), 1.2);
  Totals t;
  std::map<std::uint64_t, std::set<std::uint64_t>> by_class;  // stored size -> exact sizes
  std::set<std::uint64_t> exact;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const int k = kind(rng);
    double s = k == 0 ? text(rng) : k == 1 ? html(rng) : attach(rng);
    const auto size = static_cast<std::uint64_t>(std::min(std::max(s, 300.0), 25.0 * 1048576));
    exact.insert(size);
    t.plain += static_cast<double>(size);
    std::uint64_t chunks = (size + kChunk - 1) / kChunk;
    std::uint64_t last = size - (chunks - 1) * kChunk;
    const double full = static_cast<double>(chunks - 1) * (kChunk + 1 + kSealOverhead);
    t.none += full + static_cast<double>(last + 1 + kSealOverhead);
    const std::size_t padded_last = coffer::fs::PaddedSize(ObjectKind::kChunk, last);
    t.padme += full + static_cast<double>(padded_last + kSealOverhead);
    t.pow2 += full + static_cast<double>(Pow2(last) + 1 + kSealOverhead);
    const std::size_t record = 120 + 60 + 18 * chunks;
    t.none += static_cast<double>(record + 1 + kSealOverhead);
    const std::size_t padded_record = coffer::fs::PaddedSize(ObjectKind::kInodeRecord, record);
    t.padme += static_cast<double>(padded_record + kSealOverhead);
    t.pow2 += static_cast<double>(std::max<std::uint64_t>(512, Pow2(record + 1)) + kSealOverhead);
    // What a node sees of a message: its chunk count and the last chunk's stored size.
    by_class[chunks * (1ull << 32) + padded_last].insert(size);
  }
  std::size_t sum = 0, singles = 0;
  for (const auto& [c, sizes] : by_class) {
    sum += sizes.size();
    if (sizes.size() == 1) ++singles;
  }
  std::printf("padding of sealed objects, %d messages, %.1f MiB of mail\n", n, t.plain / 1048576);
  std::printf("%-34s %12s %10s\n", "scheme", "stored MiB", "overhead");
  auto row = [&](const char* name, double v) {
    std::printf("%-34s %12.1f %9.1f%%\n", name, v / 1048576, 100.0 * (v - t.plain) / t.plain);
  };
  row("no padding (sealing only)", t.none);
  row("Padme chunks, record classes", t.padme);
  row("power-of-two chunks and records", t.pow2);
  std::printf("padding alone adds %.1f%% (Padme) and %.1f%% (power of two) to what sealing stores\n",
              100.0 * (t.padme - t.none) / t.none, 100.0 * (t.pow2 - t.none) / t.none);
  std::printf("distinct message sizes %zu; what a node sees of them (chunk count, last chunk's "
              "stored size): %zu classes, %.1f sizes per class on average, %zu classes hold a "
              "single size\n",
              exact.size(), by_class.size(), static_cast<double>(sum) / by_class.size(), singles);
  return 0;
}
