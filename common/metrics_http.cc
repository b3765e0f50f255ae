// See metrics_http.h.
#include "common/metrics_http.h"

namespace coffer::metrics {

http::Routes Routes(const Registry& registry) {
  auto render = [&registry] {
    return http::Reply{200, "text/plain; version=0.0.4; charset=utf-8", registry.Render()};
  };
  return {{"/metrics", render}, {"/", render}};
}

void MetricsServer::Start(const std::string& address) {
  server_.Start(address, Routes(registry_), "metrics");
  url_ = server_.base_url() + "/metrics";
}

}  // namespace coffer::metrics
