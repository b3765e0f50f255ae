// Metrics in the Prometheus text exposition format (version 0.0.4), without a client library.
//
// A Registry holds counters, gauges and histograms, each a sample of a family (one name, one
// help text, one type) with its own label set, and collectors: functions that add samples read
// at scrape time (a store's outbox depth, a node's object count), so that code whose counters
// live elsewhere needs no hooks. Render() writes every family once, in name order, with its
// # HELP and # TYPE lines. Names follow Prometheus conventions: coffer_<program>_<what>_<unit>,
// _total for counters, seconds for durations.
//
// Thread safety: the metric objects are lock-free (atomics) and may be updated from any thread;
// Add*() and Render() take the registry's mutex. Objects returned by Add*() live as long as the
// registry. Collectors run inside Render() without the registry's mutex; they must be quick and
// thread-safe (a scrape may come while the program works).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace coffer::metrics {

class Counter {
 public:
  void Inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) noexcept {
    double old = value_.load(std::memory_order_relaxed);
    while (!value_.compare_exchange_weak(old, old + d, std::memory_order_relaxed)) {
    }
  }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Cumulative buckets with upper bounds in seconds (or any unit the name says).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v) noexcept;
  // Snapshot for rendering: per-bucket (non-cumulative) counts, then +Inf; sum; count.
  struct Snapshot {
    std::vector<std::uint64_t> buckets;
    double sum = 0;
    std::uint64_t count = 0;
  };
  Snapshot Snap() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Latency buckets from 100 µs to 30 s: FUSE operations, node round trips, durable waits.
std::vector<double> LatencyBuckets();

// Adds samples at scrape time. `labels` is the inside of the braces, e.g. node="n1".
class Emitter {
 public:
  virtual ~Emitter() = default;
  virtual void Gauge(std::string_view name, std::string_view help, std::string_view labels,
                     double value) = 0;
  virtual void Counter(std::string_view name, std::string_view help, std::string_view labels,
                       double value) = 0;
};
using Collector = std::function<void(Emitter&)>;

class Registry {
 public:
  // Returns the metric of `name` with `labels` (the same object for the same pair). A name
  // registered with another type throws std::logic_error (a programming error).
  Counter& AddCounter(const std::string& name, const std::string& help,
                      const std::string& labels = "");
  Gauge& AddGauge(const std::string& name, const std::string& help,
                  const std::string& labels = "");
  Histogram& AddHistogram(const std::string& name, const std::string& help,
                          const std::string& labels = "",
                          std::vector<double> bounds = LatencyBuckets());
  void AddCollector(Collector c);

  // The whole exposition text.
  std::string Render() const;

 private:
  struct Family {
    std::string help;
    std::string type;  // counter | gauge | histogram
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  Family& FamilyFor(const std::string& name, const std::string& help, const char* type);

  mutable std::mutex mu_;  // guards families_ and collectors_ (never held around a collector)
  std::map<std::string, Family> families_;
  std::vector<Collector> collectors_;
};

// The process-wide registry that the programs expose.
Registry& Default();

// Escapes a label value ("\\", "\"", "\n") for use inside label="...".
std::string EscapeLabel(std::string_view value);

// Formats a sample value the way Prometheus reads it (integers without a fraction, +Inf, NaN).
std::string FormatValue(double v);

}  // namespace coffer::metrics
