// "Play dead" for cofferfs (DESIGN.md): switched at run time over a Unix control socket, so tests
// can see how MTAs and POP3 servers react when the filesystem fails or crawls.
//
// Protocol (one connection, one request line, one reply line, then close; cofferctl speaks it):
//   status            -> "ok mode=<normal|eio|slow> delay_ms=<n>"
//   normal            -> "ok mode=normal"      every operation behaves normally again
//   eio               -> "ok mode=eio"         every operation (but forget/release) fails with EIO
//   slow <ms>         -> "ok mode=slow delay_ms=<ms>"  every operation first sleeps <ms> (<= 60000)
//   anything else     -> "err <reason>"
// cofferfs adds, through the `extra` handler (fs/main.cc): `status` also carries the store's
// "key=value" fields (nodes, outbox, cache, scrub), `verify` compares the tree with the nodes,
// `scrub` runs a scrub now.
// The socket is created 0600 (root only by default): only the admin may make the mount fail.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace coffer::fs {

// Read by every FUSE operation (lock-free), written by the control thread.
struct PlayDead {
  enum Mode : int { kNormal = 0, kEio = 1, kSlow = 2 };
  std::atomic<int> mode{kNormal};
  std::atomic<int> delay_ms{0};
};

// Applies one request line (without the newline) to `state`; returns the reply line (without
// the newline). Pure: no I/O, for tests.
std::string HandleControlCommand(std::string_view line, PlayDead* state);

// Sends `request` to the control socket at `path` and returns the reply line (for cofferctl and
// tests). Throws coffer::Error when the socket cannot be reached.
std::string ControlRequest(const std::string& path, std::string_view request);

// Serves the protocol on a Unix socket. Not copyable; Stop() (or the destructor) ends the thread
// and removes the socket file.
class ControlServer {
 public:
  ControlServer() = default;
  ~ControlServer() { Stop(); }
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  // Answers a request line before the play-dead commands; nullopt: not handled.
  using Extra = std::function<std::optional<std::string>(std::string_view line)>;
  // Binds `path` (replacing a stale socket file) and starts serving. Throws coffer::Error.
  void Start(const std::string& path, PlayDead* state, Extra extra = {});
  void Stop();

 private:
  void Loop();
  std::string path_;
  PlayDead* state_ = nullptr;
  Extra extra_;
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace coffer::fs
