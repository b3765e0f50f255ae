// Run-time control of a running coffer-pop3d, for tests and operators: the "play dead" modes
// (DESIGN.md) and a status line.
//
// Protocol (on the Unix stream socket named by server.control_socket, mode 0600): the client
// sends one line, the server answers one line and closes.
//   play-dead off            normal service
//   play-dead refuse         new connections get "-ERR [SYS/TEMP]" and are closed; every
//                            command of existing sessions gets "-ERR [SYS/TEMP]" (QUIT closes
//                            without deleting anything)
//   play-dead slow [MS]      every reply is delayed by MS milliseconds (default 2000)
//   play-dead stop           stop accepting and stop answering (connections hang)
//   status                   "ok mode=... connections=N logins=N"
// Answers start with "ok " or "error ". SendControl() is the client side, for cofferctl.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace coffer::pop3d {

enum class PlayDead { kOff = 0, kRefuse = 1, kSlow = 2, kStop = 3 };

std::string_view PlayDeadName(PlayDead mode) noexcept;

// Shared run-time switches and counters. Thread-safe (atomics only).
class Control {
 public:
  PlayDead mode() const noexcept { return static_cast<PlayDead>(mode_.load()); }
  std::chrono::milliseconds slow_delay() const noexcept {
    return std::chrono::milliseconds(slow_ms_.load());
  }
  void SetMode(PlayDead mode, std::int64_t slow_ms = 2000) noexcept {
    slow_ms_.store(slow_ms);
    mode_.store(static_cast<int>(mode));
  }

  std::atomic<std::uint64_t> connections{0};  // open now
  std::atomic<std::uint64_t> logins{0};       // successful, since start
  std::atomic<std::uint64_t> failed_logins{0};

 private:
  std::atomic<int> mode_{0};
  std::atomic<std::int64_t> slow_ms_{2000};
};

// Executes one control line against `control`; returns the answer line (without newline).
std::string HandleControlLine(std::string_view line, Control& control);

// Connects to the control socket at `socket_path`, sends `line` and returns the answer (without
// newline). Blocking, with a 5-second timeout. Throws coffer::Error on connection failures.
std::string SendControl(const std::string& socket_path, std::string_view line);

}  // namespace coffer::pop3d
