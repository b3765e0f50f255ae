// See health.h.
#include "fs/health.h"

#include <spdlog/spdlog.h>

#include "common/kv_line.h"

namespace coffer::fs {
namespace {

std::string Get(const StatusFields& f, const std::string& key) {
  auto it = f.find(key);
  return it == f.end() ? "" : it->second;
}

HealthAnswer Unavailable(std::string state, const std::string& why) {
  HealthAnswer a;
  a.ok = false;
  a.text = "unavailable state=" + state + "; " + why;
  a.state = std::move(state);
  return a;
}

}  // namespace

HealthAnswer JudgeHealth(const StatusFields& f) {
  const Verdict v = Judge(f);
  const bool read_only = Get(f, "read_only") == "yes";
  HealthAnswer a;
  a.ok = v.code != kStatusNotServing && !read_only;
  a.state = v.code == kStatusNotServing ? v.name() : read_only ? "read_only" : v.name();
  a.text = std::string(a.ok ? "ok" : "unavailable") + " state=" + a.state;
  if (Get(f, "replicated") == "yes") {
    a.text += " nodes_up=" + Get(f, "nodes_up") + "/" + Get(f, "nodes") + " W=" + Get(f, "W") +
              " outbox=" + Get(f, "outbox");
  } else {
    a.text += " storage=local";
  }
  if (read_only) a.text += "; read-only mount: takes no mail";
  for (const auto& r : v.reasons) a.text += "; " + r;
  return a;
}

HealthMonitor::HealthMonitor(std::chrono::milliseconds interval)
    : interval_(interval), answer_(Unavailable("starting", "not mounted yet")) {}

void HealthMonitor::Start(StatusSource source) {
  source_ = std::move(source);
  thread_ = std::thread([this] { Loop(); });
}

void HealthMonitor::Unmounting() {
  bool was_ok = false;
  {
    std::lock_guard lock(mu_);
    unmounting_ = true;
    stop_ = true;
    was_ok = answer_.ok;
    answer_ = Unavailable("unmounting", "cofferfs is unmounting");
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (was_ok) spdlog::warn("health check now answers 503: {}", Current().text);
}

void HealthMonitor::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

HealthAnswer HealthMonitor::Current() const {
  std::lock_guard lock(mu_);
  return answer_;
}

void HealthMonitor::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    HealthAnswer a;
    try {
      a = JudgeHealth(ParseKeyValueLine(source_()));
    } catch (const std::exception& e) {
      // The thread must not die: an unreadable status is an answer too.
      a = Unavailable("not_serving", std::string("cannot read the status: ") + e.what());
    }
    Publish(std::move(a));
    lock.lock();
    wake_.wait_for(lock, interval_, [&] { return stop_; });
  }
}

void HealthMonitor::Publish(HealthAnswer answer) {
  std::optional<HealthAnswer> announce;
  {
    std::lock_guard lock(mu_);
    if (unmounting_) return;  // an evaluation that began before the unmount
    if (logged_ok_ != answer.ok) {
      logged_ok_ = answer.ok;
      announce = answer;
    }
    answer_ = std::move(answer);
  }
  if (!announce) return;
  if (announce->ok) {
    spdlog::info("health check now answers 200: {}", announce->text);
  } else {
    spdlog::warn("health check now answers 503: {}", announce->text);
  }
}

http::Route HealthRoute(const HealthMonitor& monitor) {
  return {"/health", [&monitor] {
            HealthAnswer a = monitor.Current();
            return http::Reply{a.ok ? 200 : 503, "text/plain; charset=utf-8", a.text + "\n"};
          }};
}

}  // namespace coffer::fs
