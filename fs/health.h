// The health check of an access box (GET /health on health_listen): may a load balancer,
// keepalived or DNS send users to this box? 200 when the box can serve and take mail, 503 with
// the reason when it cannot. The answer is derived from the verdict of `cofferctl status`
// (fs/status_verdict.h), not from a definition of its own:
//   - not serving there (fewer than W nodes up with degraded=fail, play-dead eio, a sticky write
//     error) is 503 here;
//   - a read-only mount (read_only=yes) is 503 here: it serves reads but takes no deliveries;
//   - healthy and degraded (a node down, changes in the outbox, degraded=queue below W) are 200:
//     the box still takes and serves mail; the reasons are in the body.
// Before the mount exists the answer is 503 "starting", once cofferfs unmounts 503 "unmounting".
//
// The status line is read on a thread of its own every interval (reading it pings the nodes, up
// to a second), so that an HTTP request never waits for the nodes, and so that the one log line
// on each change (200 -> 503 and back, with the reason) is written whether or not anything polls.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/http_server.h"
#include "fs/status_verdict.h"

namespace coffer::fs {

struct HealthAnswer {
  bool ok = false;    // 200 when true, else 503
  std::string state;  // healthy, degraded, not_serving, read_only, starting, unmounting
  // One line: "ok state=healthy nodes_up=3/3 W=2 outbox=0", or "unavailable state=not_serving
  // nodes_up=1/3 W=2 outbox=0; node n1 down; node n2 down; only 1 of W=2 nodes up: ...".
  std::string text;
};

// Pure: the answer for a mounted box from its status fields (see the file comment).
HealthAnswer JudgeHealth(const StatusFields& f);

// Keeps the current answer. Start(), Unmounting() and Stop() from one thread; Current() from any.
class HealthMonitor {
 public:
  // Returns the status line (the control socket's `status` answer); may block and may throw
  // (the answer is then 503 with the error).
  using StatusSource = std::function<std::string()>;

  explicit HealthMonitor(std::chrono::milliseconds interval = std::chrono::seconds(1));
  ~HealthMonitor() { Stop(); }
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // The mount exists: evaluates `source` at once and then every interval on a thread of its own.
  // Until the first evaluation the answer stays 503 "starting".
  void Start(StatusSource source);
  // From now on the answer is 503 "unmounting". Waits for an evaluation in progress: `source` is
  // never called once this returns (what it reads may then go away).
  void Unmounting();
  // Ends the thread; the answer stays as it is.
  void Stop();

  HealthAnswer Current() const;

 private:
  void Loop();
  void Publish(HealthAnswer answer);  // logs a change between 200 and 503

  const std::chrono::milliseconds interval_;
  StatusSource source_;  // set by Start() before the thread exists; only the thread calls it
  std::thread thread_;

  // Guards everything below. A leaf: never held while calling source_ or logging.
  mutable std::mutex mu_;
  std::condition_variable wake_;  // Stop() and Unmounting() wake the thread
  bool stop_ = false;
  bool unmounting_ = false;
  HealthAnswer answer_;
  std::optional<bool> logged_ok_;  // the last answer the log announced (none: nothing yet)
};

// The "/health" route of an http::Server, answering from `monitor` (which must outlive it).
http::Route HealthRoute(const HealthMonitor& monitor);

}  // namespace coffer::fs
