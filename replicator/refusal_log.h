// RefusalLog: decides which refused CURVE handshakes a node logs, so that a misconfigured box
// (wrong node public key, key not on the allow list) shows up in the node's log with its
// address and key fingerprint, while a client retrying ten times a second cannot flood the log.
//
// One line per (peer address, client key) at most every `interval`; the line after a quiet
// period says how many refusals were not logged in between. Bounded: at most `max_entries`
// peers are remembered (the oldest are forgotten first).
//
// Thread safety: none; the node's ZAP thread owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace coffer::replicator {

class RefusalLog {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RefusalLog(std::chrono::seconds interval = std::chrono::seconds(60),
                      std::size_t max_entries = 1024)
      : interval_(interval), max_entries_(max_entries) {}

  // Records a refusal; returns the number of refusals of this peer and key that were not
  // logged since its last logged line (0 or more) if this one should be logged now, nullopt
  // if it should be suppressed.
  std::optional<std::uint64_t> Record(std::string_view address, std::string_view key,
                                      Clock::time_point now);

 private:
  struct Entry {
    Clock::time_point last_logged;
    std::uint64_t suppressed = 0;
  };
  std::chrono::seconds interval_;
  std::size_t max_entries_;
  std::map<std::string, Entry> entries_;
};

// A short fingerprint of a CURVE public key given as 32 raw bytes or 40 Z85 characters:
// the first 8 bytes of BLAKE2b-256 of the raw key, as 16 hex digits ("" for neither).
std::string KeyFingerprint(std::string_view key);

}  // namespace coffer::replicator
