// Fixed-width integer codecs for keys and MAC inputs: big-endian, so that byte order is numeric
// order (LMDB keys sort by it). One implementation for every component.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace coffer {

// The 8 bytes of `v`, most significant first.
inline std::string BigEndian64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i) {
    s[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return s;
}

// The value of the first 8 bytes of `s` (which must have at least 8), most significant first.
inline std::uint64_t FromBigEndian64(std::string_view s) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

}  // namespace coffer
