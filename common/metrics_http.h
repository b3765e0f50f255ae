// The Prometheus endpoint of each daemon: GET /metrics (and /) answers a Registry's text, on a
// common/http_server listener (what Prometheus scrapes, and what `cofferctl metrics` fetches).
// The HTTP handling itself (limits, validation, the client) is common/http_server.h.
//
// Thread safety: construct, Start() and Stop() from one thread; Render() runs on the server's
// thread.
#pragma once

#include <string>

#include "common/http_server.h"
#include "common/metrics.h"

namespace coffer::metrics {

// The routes that serve `registry`: "/metrics" and "/". `registry` must outlive every server
// that serves them.
http::Routes Routes(const Registry& registry);

class MetricsServer {
 public:
  explicit MetricsServer(const Registry& registry) : registry_(registry) {}
  ~MetricsServer() { Stop(); }
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds `address` and starts serving. Throws coffer::Error naming the address.
  void Start(const std::string& address);
  void Stop() { server_.Stop(); }
  // "http://HOST:PORT/metrics" with the port actually bound.
  const std::string& url() const { return url_; }

 private:
  const Registry& registry_;
  http::Server server_;
  std::string url_;
};

// For the callers that fetch metrics (cofferctl, tests): see common/http_server.h.
using http::HttpGet;

}  // namespace coffer::metrics
