// Tests of the health check (fs/health.h): the answer derived from the status verdict for each
// state a box can be in, the monitor's phases (starting, mounted, unmounting), its one log line
// per change, and the /health route.
#include "fs/health.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/kv_line.h"

namespace coffer::fs {
namespace {

const std::string kHealthy =
    "ok mode=normal delay_ms=0 read_only=no sticky_error=0 manual_scrub_unix=0 replicated=yes "
    "nodes=3 nodes_up=3 R=3 W=2 degraded=fail state=healthy outbox=0 outbox_age_s=0 "
    "under_replicated=0 scrub_unrecoverable=0 node.n1=up/0.100ms node.n2=up/0.200ms "
    "node.n3=up/0.300ms";
const std::string kLocal = "ok mode=normal delay_ms=0 read_only=no sticky_error=0 replicated=no";

std::string With(std::string line, const std::string& from, const std::string& to) {
  auto at = line.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  line.replace(at, from.size(), to);
  return line;
}

std::string OneDown(const std::string& line) {
  return With(With(line, "node.n3=up/0.300ms", "node.n3=down"), "nodes_up=3", "nodes_up=2");
}

std::string TwoDown(const std::string& line) {
  return With(With(With(line, "node.n1=up/0.100ms", "node.n1=down"), "node.n2=up/0.200ms",
                   "node.n2=down"),
              "nodes_up=3", "nodes_up=1");
}

HealthAnswer Health(const std::string& line) { return JudgeHealth(ParseKeyValueLine(line)); }

TEST(JudgeHealthTest, HealthyBoxesAnswerOk) {
  HealthAnswer a = Health(kHealthy);
  EXPECT_TRUE(a.ok);
  EXPECT_EQ(a.state, "healthy");
  EXPECT_EQ(a.text, "ok state=healthy nodes_up=3/3 W=2 outbox=0");
  a = Health(kLocal);  // no storage nodes: healthy when writable
  EXPECT_TRUE(a.ok);
  EXPECT_EQ(a.text, "ok state=healthy storage=local");
}

TEST(JudgeHealthTest, ADegradedBoxStillTakesMailAndSaysWhy) {
  HealthAnswer a = Health(OneDown(kHealthy));
  EXPECT_TRUE(a.ok);
  EXPECT_EQ(a.state, "degraded");
  EXPECT_EQ(a.text, "ok state=degraded nodes_up=2/3 W=2 outbox=0; node n3 down");
  a = Health(With(kHealthy, "outbox=0", "outbox=4"));
  EXPECT_TRUE(a.ok);
  EXPECT_NE(a.text.find("4 changes in the outbox"), std::string::npos) << a.text;
  // degraded=queue below W: changes are held on this box; it still takes mail.
  a = Health(With(TwoDown(kHealthy), "degraded=fail", "degraded=queue"));
  EXPECT_TRUE(a.ok);
  EXPECT_EQ(a.state, "degraded");
  EXPECT_NE(a.text.find("held on this box only"), std::string::npos) << a.text;
  a = Health(With(kHealthy, "mode=normal delay_ms=0", "mode=slow delay_ms=200"));
  EXPECT_TRUE(a.ok);
}

TEST(JudgeHealthTest, FewerThanWNodesIs503NamingTheNodes) {
  HealthAnswer a = Health(TwoDown(kHealthy));
  EXPECT_FALSE(a.ok);
  EXPECT_EQ(a.state, "not_serving");
  EXPECT_EQ(a.text,
            "unavailable state=not_serving nodes_up=1/3 W=2 outbox=0; node n1 down; node n2 "
            "down; only 1 of W=2 nodes up: every delivery fails with EAGAIN");
  // The same facts make cofferctl status say "not serving".
  EXPECT_EQ(Judge(ParseKeyValueLine(TwoDown(kHealthy))).code, kStatusNotServing);
}

TEST(JudgeHealthTest, ReadOnlyStickyErrorAndPlayDeadAre503) {
  HealthAnswer a = Health(With(kHealthy, "read_only=no", "read_only=yes"));
  EXPECT_FALSE(a.ok);
  EXPECT_EQ(a.state, "read_only");
  EXPECT_EQ(a.text,
            "unavailable state=read_only nodes_up=3/3 W=2 outbox=0; read-only mount: takes no "
            "mail");
  a = Health(With(kLocal, "read_only=no", "read_only=yes"));
  EXPECT_FALSE(a.ok);
  EXPECT_EQ(a.text, "unavailable state=read_only storage=local; read-only mount: takes no mail");
  // cofferctl status still calls a read-only mount healthy: it serves what it was asked to.
  EXPECT_EQ(Judge(ParseKeyValueLine(With(kHealthy, "read_only=no", "read_only=yes"))).code,
            kStatusHealthy);

  for (const std::string& base : {kHealthy, kLocal}) {
    a = Health(With(base, "sticky_error=0", "sticky_error=5"));
    EXPECT_FALSE(a.ok);
    EXPECT_EQ(a.state, "not_serving");
    EXPECT_NE(a.text.find("; sticky write error (Input/output error): every write fails until "
                          "cofferfs is restarted"),
              std::string::npos)
        << a.text;
    a = Health(With(base, "mode=normal", "mode=eio"));
    EXPECT_FALSE(a.ok);
    EXPECT_NE(a.text.find("play-dead eio"), std::string::npos) << a.text;
  }
}

// Captures what the default logger writes while it lives ("level message" lines). The monitor
// logs from its own thread: the text is read under the sink's mutex.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()), sink_(std::make_shared<Sink>()) {
    sink_->set_pattern("%l %v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("health-test", sink_));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() { return sink_->text(); }
  std::size_t Count(const std::string& what) {
    const std::string t = text();
    std::size_t n = 0;
    for (auto at = t.find(what); at != std::string::npos; at = t.find(what, at + 1)) ++n;
    return n;
  }
  // The line is written just after the answer changes: waits a moment for `n` of `what`.
  std::size_t CountAtLeast(const std::string& what, std::size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (Count(what) < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return Count(what);
  }

 private:
  class Sink : public spdlog::sinks::base_sink<std::mutex> {
   public:
    std::string text() {
      std::lock_guard lock(mutex_);
      return text_;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
      spdlog::memory_buf_t formatted;
      formatter_->format(msg, formatted);
      text_.append(formatted.data(), formatted.size());
    }
    void flush_() override {}

   private:
    std::string text_;  // guarded by the base's mutex_
  };
  std::shared_ptr<spdlog::logger> previous_;
  std::shared_ptr<Sink> sink_;
};

// A status source the test controls, counting calls.
struct FakeStatus {
  std::mutex mu;
  std::string line = kHealthy;
  bool fail = false;
  std::atomic<int> calls{0};
  void Set(std::string l) {
    std::lock_guard lock(mu);
    line = std::move(l);
  }
  HealthMonitor::StatusSource source() {
    return [this] {
      ++calls;
      std::lock_guard lock(mu);
      if (fail) throw Error(EIO, "store closed");
      return line;
    };
  }
};

// Waits until the monitor's answer has `ok` (and `text_part` in its text).
bool WaitFor(const HealthMonitor& m, bool ok, const std::string& text_part = "") {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    HealthAnswer a = m.Current();
    if (a.ok == ok && a.text.find(text_part) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST(HealthMonitorTest, StartingMountedAndBackWithOneLogLinePerChange) {
  LogCapture log;
  FakeStatus status;
  HealthMonitor m(std::chrono::milliseconds(10));
  HealthAnswer a = m.Current();
  EXPECT_FALSE(a.ok);
  EXPECT_EQ(a.state, "starting");
  EXPECT_EQ(a.text, "unavailable state=starting; not mounted yet");
  EXPECT_EQ(status.calls, 0);

  m.Start(status.source());
  ASSERT_TRUE(WaitFor(m, true, "state=healthy"));
  EXPECT_EQ(log.CountAtLeast("health check now answers 200: ok state=healthy", 1), 1u)
      << log.text();

  // Two nodes go: 503 naming them; however many evaluations follow, one line.
  status.Set(TwoDown(kHealthy));
  ASSERT_TRUE(WaitFor(m, false, "node n1 down; node n2 down"));
  const int calls = status.calls;
  while (status.calls < calls + 5) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(log.CountAtLeast("warning health check now answers 503: unavailable "
                             "state=not_serving nodes_up=1/3 W=2 outbox=0; node n1 down; node n2 "
                             "down; only 1 of W=2",
                             1),
            1u)
      << log.text();
  EXPECT_EQ(log.Count("now answers"), 2u) << log.text();

  // A degraded box stays 200 and is not a change.
  status.Set(OneDown(kHealthy));
  ASSERT_TRUE(WaitFor(m, true, "state=degraded"));
  status.Set(kHealthy);
  ASSERT_TRUE(WaitFor(m, true, "state=healthy"));
  EXPECT_EQ(log.CountAtLeast("info health check now answers 200", 2), 2u) << log.text();
  EXPECT_EQ(log.Count("now answers"), 3u) << log.text();

  // An unreadable status is a 503 too, with the error.
  {
    std::lock_guard lock(status.mu);
    status.fail = true;
  }
  ASSERT_TRUE(WaitFor(m, false, "cannot read the status: store closed"));
  {
    std::lock_guard lock(status.mu);
    status.fail = false;
  }
  ASSERT_TRUE(WaitFor(m, true));

  // Unmounting: 503 at once, logged, and the status is never read again.
  m.Unmounting();
  const int after = status.calls;
  a = m.Current();
  EXPECT_FALSE(a.ok);
  EXPECT_EQ(a.state, "unmounting");
  EXPECT_EQ(a.text, "unavailable state=unmounting; cofferfs is unmounting");
  EXPECT_NE(log.text().find("health check now answers 503: unavailable state=unmounting"),
            std::string::npos)
      << log.text();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(status.calls, after);
  EXPECT_EQ(m.Current().state, "unmounting");
}

TEST(HealthMonitorTest, RouteAnswers503UntilMountedThen200) {
  FakeStatus status;
  HealthMonitor m(std::chrono::milliseconds(10));
  const http::Routes routes = {HealthRoute(m)};
  std::string r = http::Respond("GET /health HTTP/1.0\r\n\r\n", routes);
  EXPECT_EQ(r.rfind("HTTP/1.0 503 Service Unavailable\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("\r\n\r\nunavailable state=starting; not mounted yet\n"), std::string::npos);
  m.Start(status.source());
  ASSERT_TRUE(WaitFor(m, true));
  r = http::Respond("GET /health HTTP/1.0\r\n\r\n", routes);
  EXPECT_EQ(r.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("\r\n\r\nok state=healthy nodes_up=3/3 W=2 outbox=0\n"), std::string::npos);
  // A bad request never reaches the monitor's answer.
  EXPECT_EQ(http::Respond("GET /health HTTP/9\r\n\r\n", routes).rfind("HTTP/1.0 400", 0), 0u);
  m.Stop();
  EXPECT_TRUE(m.Current().ok);  // Stop() alone keeps the last answer
}

}  // namespace
}  // namespace coffer::fs
