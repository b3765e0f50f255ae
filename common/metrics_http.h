// MetricsServer: a minimal HTTP/1.0 listener that answers GET /metrics with a Registry's text
// (what Prometheus scrapes, and what `cofferctl metrics` fetches). It exists so that each daemon
// can be scraped without a client library and without exposing anything else: one thread, one
// request per connection, requests bounded to 8 KiB and 2 s, no keep-alive.
//
// Thread safety: construct, Start() and Stop() from one thread; Render() runs on the server's
// thread.
#pragma once

#include <cstdint>
#include <string>
#include <thread>

#include "common/fd.h"
#include "common/metrics.h"

namespace coffer::metrics {

// "HOST:PORT" (numeric IPv4, or [IPv6]); port 0 picks a free one. Throws coffer::Error
// (EINVAL) for anything else.
struct HttpAddress {
  std::string host;
  std::uint16_t port = 0;
};
HttpAddress ParseHttpAddress(const std::string& text);

class MetricsServer {
 public:
  explicit MetricsServer(const Registry& registry) : registry_(registry) {}
  ~MetricsServer() { Stop(); }
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds `address` and starts serving. Throws coffer::Error naming the address.
  void Start(const std::string& address);
  void Stop();
  // "http://HOST:PORT/metrics" with the port actually bound.
  const std::string& url() const { return url_; }

 private:
  void Loop();
  const Registry& registry_;
  UniqueFd listen_fd_;
  UniqueFd wake_read_, wake_write_;
  std::thread thread_;
  std::string url_;
};

// The answer to one HTTP request line (for tests): status line, headers and body.
std::string HttpResponse(std::string_view request, const Registry& registry);

// Fetches http://HOST:PORT/PATH (HTTP/1.0) and returns the body; throws coffer::Error with the
// connect errno (ECONNREFUSED...) or EPROTO for a non-200 answer. For cofferctl and tests.
std::string HttpGet(const std::string& address, const std::string& path, int timeout_ms);

}  // namespace coffer::metrics
