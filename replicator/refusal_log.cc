// See refusal_log.h.
#include "replicator/refusal_log.h"

#include <sodium.h>
#include <zmq.h>

#include <cstdio>

namespace coffer::replicator {

std::optional<std::uint64_t> RefusalLog::Record(std::string_view address, std::string_view key,
                                                Clock::time_point now) {
  std::string id = std::string(address) + " " + std::string(key);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    if (entries_.size() >= max_entries_) {
      auto oldest = entries_.begin();
      for (auto e = entries_.begin(); e != entries_.end(); ++e) {
        if (e->second.last_logged < oldest->second.last_logged) oldest = e;
      }
      entries_.erase(oldest);
    }
    entries_.emplace(std::move(id), Entry{now, 0});
    return 0;
  }
  if (now - it->second.last_logged < interval_) {
    ++it->second.suppressed;
    return std::nullopt;
  }
  std::uint64_t suppressed = it->second.suppressed;
  it->second = Entry{now, 0};
  return suppressed;
}

std::string KeyFingerprint(std::string_view key) {
  unsigned char raw[32];
  if (key.size() == 40) {
    std::string z85(key);
    if (zmq_z85_decode(raw, z85.c_str()) == nullptr) return "";
  } else if (key.size() == 32) {
    std::copy(key.begin(), key.end(), raw);
  } else {
    return "";
  }
  unsigned char hash[32];
  crypto_generichash(hash, sizeof hash, raw, sizeof raw, nullptr, 0);
  std::string out;
  char buf[3];
  for (int i = 0; i < 8; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", hash[i]);
    out += buf;
  }
  return out;
}

}  // namespace coffer::replicator
