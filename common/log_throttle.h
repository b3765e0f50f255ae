// Rate-limits a recurring log line: at most one per interval, with the count of the occurrences
// held back in between, so that a storm of the same event neither floods the log nor hides.
//
// Thread safety: none; guard it with the lock of the state it reports on.
#pragma once

#include <chrono>
#include <cstdint>

namespace coffer {

class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogThrottle(Clock::duration interval) : interval_(interval) {}

  // True when a line may be logged now (the first call always may). `*held_back` (if given)
  // receives how many calls returned false since the last true, and is reset.
  bool Allow(std::uint64_t* held_back = nullptr, Clock::time_point now = Clock::now()) {
    if (logged_ && now - last_ < interval_) {
      ++held_;
      return false;
    }
    logged_ = true;
    last_ = now;
    if (held_back) *held_back = held_;
    held_ = 0;
    return true;
  }

 private:
  Clock::duration interval_;
  Clock::time_point last_{};
  bool logged_ = false;
  std::uint64_t held_ = 0;
};

}  // namespace coffer
