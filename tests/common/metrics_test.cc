// Tests of common/metrics (the Prometheus text format), common/metrics_http (a real listener on
// 127.0.0.1; the HTTP handling itself is tested in http_server_test.cc) and the passphrase-file
// permission warning.
#include "common/error.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/passphrase.h"
#include "common/kv_line.h"
#include "tests/support/subprocess.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

namespace coffer::metrics {
using coffer::Error;
namespace {

TEST(MetricsTest, RendersFamiliesOnceWithHelpAndType) {
  Registry r;
  r.AddCounter("t_requests_total", "requests", "kind=\"read\"").Inc(3);
  r.AddCounter("t_requests_total", "requests", "kind=\"write\"").Inc();
  r.AddCounter("t_requests_total", "requests", "kind=\"read\"").Inc();  // same object
  r.AddGauge("t_depth", "depth").Set(2.5);
  std::string text = r.Render();
  EXPECT_EQ(text,
            "# HELP t_depth depth\n# TYPE t_depth gauge\nt_depth 2.5\n"
            "# HELP t_requests_total requests\n# TYPE t_requests_total counter\n"
            "t_requests_total{kind=\"read\"} 4\nt_requests_total{kind=\"write\"} 1\n");
  EXPECT_THROW(r.AddGauge("t_requests_total", "x"), std::logic_error);
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  Histogram& h = r.AddHistogram("t_seconds", "latency", "op=\"x\"", {0.1, 1});
  h.Observe(0.05);
  h.Observe(0.5);
  h.Observe(0.5);
  h.Observe(7);
  std::string text = r.Render();
  EXPECT_NE(text.find("t_seconds_bucket{op=\"x\",le=\"0.1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{op=\"x\",le=\"1\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{op=\"x\",le=\"+Inf\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_sum{op=\"x\"} 8.05\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_count{op=\"x\"} 4\n"), std::string::npos) << text;
}

TEST(MetricsTest, CollectorsAddSamplesAtScrapeTime) {
  Registry r;
  int calls = 0;
  r.AddCollector([&](Emitter& e) {
    ++calls;
    e.Gauge("t_nodes_up", "nodes up", "node=\"" + EscapeLabel("n\"1") + "\"", calls);
  });
  EXPECT_NE(r.Render().find("t_nodes_up{node=\"n\\\"1\"} 1\n"), std::string::npos);
  EXPECT_NE(r.Render().find("t_nodes_up{node=\"n\\\"1\"} 2\n"), std::string::npos);
}

TEST(MetricsTest, HttpListenerServesMetricsAndNothingElse) {
  Registry r;
  r.AddCounter("t_hits_total", "hits").Inc(42);
  MetricsServer server(r);
  server.Start("127.0.0.1:0");
  std::string url = server.url();
  ASSERT_EQ(url.rfind("http://127.0.0.1:", 0), 0u) << url;
  std::string address = url.substr(7, url.size() - 7 - 8);  // strip http:// and /metrics
  std::string body = HttpGet(address, "/metrics", 5000);
  EXPECT_NE(body.find("t_hits_total 42\n"), std::string::npos) << body;
  try {
    HttpGet(address, "/secret", 5000);
    FAIL() << "404 expected";
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), EPROTO);
    EXPECT_NE(std::string(e.what()).find("404"), std::string::npos) << e.what();
  }
  server.Stop();
  try {
    HttpGet(address, "/metrics", 2000);
    FAIL() << "connection refused expected";
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), ECONNREFUSED) << e.what();
  }
}

TEST(MetricsTest, RoutesServeTheRegistryOnMetricsAndRootOnly) {
  Registry r;
  r.AddGauge("t_up", "up").Set(1);
  const http::Routes routes = Routes(r);
  EXPECT_EQ(http::Respond("POST /metrics HTTP/1.0\r\n\r\n", routes).rfind("HTTP/1.0 405", 0), 0u);
  std::string head = http::Respond("HEAD /metrics HTTP/1.0\r\n\r\n", routes);
  EXPECT_EQ(head.rfind("HTTP/1.0 200 OK", 0), 0u);
  EXPECT_NE(head.find("version=0.0.4"), std::string::npos);
  EXPECT_EQ(head.find("t_up 1"), std::string::npos) << head;  // HEAD: no body
  EXPECT_NE(http::Respond("GET / HTTP/1.0\r\n\r\n", routes).find("\r\n\r\n# HELP t_up up\n"),
            std::string::npos);
  EXPECT_EQ(http::Respond("GET /health HTTP/1.0\r\n\r\n", routes).rfind("HTTP/1.0 404", 0), 0u);
}

TEST(KeyValueLineTest, FieldsRestAndLastError) {
  std::string rest;
  auto f = ParseKeyValueLine("ok a=1 node.n1=up/0.2ms last_error=node n2: timeout | p1 | p2",
                             &rest);
  EXPECT_EQ(f["a"], "1");
  EXPECT_EQ(f["node.n1"], "up/0.2ms");
  EXPECT_EQ(f["last_error"], "node n2: timeout");
  EXPECT_EQ(rest, "p1 | p2");
  EXPECT_EQ(f.count("ok"), 0u);
}

TEST(PassphraseTest, WarnsAboutLoosePassfiles) {
  coffer::testing::TempDir dir;
  std::string p = dir / "pass";
  coffer::testing::WriteTextFile(p, "secret\n", 0600);
  EXPECT_FALSE(passphrase::LoosePermissions(p));
  ::chmod(p.c_str(), 0640);
  auto w = passphrase::LoosePermissions(p);
  ASSERT_TRUE(w);
  EXPECT_NE(w->find("its group (mode 0640): chmod 600 " + p), std::string::npos) << *w;
  ::chmod(p.c_str(), 0644);
  EXPECT_NE(passphrase::LoosePermissions(p)->find("group and others"), std::string::npos);
  EXPECT_FALSE(passphrase::LoosePermissions(dir / "missing"));
}

}  // namespace
}  // namespace coffer::metrics
