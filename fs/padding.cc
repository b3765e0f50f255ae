// Padding of sealed objects (see padding.h).
#include "fs/padding.h"

#include <bit>

namespace coffer::fs {

std::uint64_t Padme(std::uint64_t n) {
  if (n < 2) return n;
  const unsigned e = std::bit_width(n) - 1;                  // floor(log2 n)
  const unsigned s = std::bit_width(std::uint64_t{e});       // floor(log2 e) + 1
  const unsigned last_bits = e - s;
  const std::uint64_t mask = (std::uint64_t{1} << last_bits) - 1;
  return (n + mask) & ~mask;
}

std::size_t PaddedSize(crypto::ObjectKind kind, std::size_t size) {
  switch (kind) {
    case crypto::ObjectKind::kChunk:
      return Padme(size) + 1;  // the payload's class, and the marker byte
    case crypto::ObjectKind::kTombstone:
      return size + 1 <= 64 ? 64 : Padme(size + 1);
    default:
      for (std::size_t c : {512, 1024, 2048, 4096})
        if (size + 1 <= c) return c;
      return Padme(size + 1);
  }
}

}  // namespace coffer::fs
