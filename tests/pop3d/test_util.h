// Helpers shared by the coffer-pop3d unit tests: temporary Maildirs with messages in them.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "pop3d/lease.h"

namespace coffer::pop3d::testing {

// A temporary directory removed (recursively) at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "pop3d_test.XXXXXX").string();
    char* p = ::mkdtemp(templ.data());
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteText(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Creates dir/{new,cur,tmp}.
inline void MakeMaildir(const std::string& dir) {
  std::filesystem::create_directories(dir + "/new");
  std::filesystem::create_directories(dir + "/cur");
  std::filesystem::create_directories(dir + "/tmp");
}

inline std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Lease clocks that move only when told to: a wall clock and a monotonic clock together. Each
// Now() call first adds the next of `steps` (how long the I/O before it took); `skew_ms` is
// this box's wall clock error.
class FakeLeaseClock : public LeaseClock {
 public:
  static constexpr std::int64_t kWallStart = 1700000000000;
  std::int64_t WallMs() override { return kWallStart + elapsed_.count() + skew_ms; }
  std::chrono::steady_clock::time_point Now() override {
    if (!steps.empty()) {
      elapsed_ += steps.front();
      steps.pop_front();
    }
    return std::chrono::steady_clock::time_point(std::chrono::hours(1) + elapsed_);
  }
  void Advance(std::chrono::milliseconds d) { elapsed_ += d; }

  std::deque<std::chrono::milliseconds> steps;
  std::int64_t skew_ms = 0;

 private:
  std::chrono::milliseconds elapsed_{0};
};

// Puts `text` at the lease name of `maildir` the way another box does: a new file renamed over
// the name (never written into the file that is there).
inline void ReplaceLeaseFile(const std::string& maildir, const std::string& text) {
  const std::string tmp = maildir + "/.other-box.tmp";
  WriteText(tmp, text);
  std::filesystem::rename(tmp, maildir + "/" + Lease::kFileName);
}

// A lease of another holder (a racer's rename, a crashed box).
inline void WriteOtherLease(const std::string& maildir, std::int64_t expires_ms) {
  ReplaceLeaseFile(maildir,
                   FormatLease({"other-box", 99, "0123456789abcdef0123456789abcdef", expires_ms}));
}

}  // namespace coffer::pop3d::testing
