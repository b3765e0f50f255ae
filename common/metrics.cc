// See metrics.h.
#include "common/metrics.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace coffer::metrics {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double v) noexcept {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double old = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

Histogram::Snapshot Histogram::Snap() const {
  Snapshot s;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) s.buckets.push_back(counts_[i].load());
  s.sum = sum_.load();
  s.count = 0;
  for (auto b : s.buckets) s.count += b;  // consistent with the buckets, unlike count_
  return s;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10,   30};
}

std::string EscapeLabel(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.9g", v);
  }
  return buf;
}

Registry::Family& Registry::FamilyFor(const std::string& name, const std::string& help,
                                      const char* type) {
  auto [it, fresh] = families_.try_emplace(name);
  if (fresh) {
    it->second.help = help;
    it->second.type = type;
  } else if (it->second.type != type) {
    throw std::logic_error("metric " + name + " registered as " + it->second.type + " and " +
                           type);
  }
  return it->second;
}

Counter& Registry::AddCounter(const std::string& name, const std::string& help,
                              const std::string& labels) {
  std::lock_guard lock(mu_);
  auto& slot = FamilyFor(name, help, "counter").counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& Registry::AddGauge(const std::string& name, const std::string& help,
                          const std::string& labels) {
  std::lock_guard lock(mu_);
  auto& slot = FamilyFor(name, help, "gauge").gauges[labels];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& Registry::AddHistogram(const std::string& name, const std::string& help,
                                  const std::string& labels, std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  auto& slot = FamilyFor(name, help, "histogram").histograms[labels];
  if (!slot) slot = std::make_unique<Histogram>(std::move(bounds));
  return *slot;
}

void Registry::AddCollector(Collector c) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(c));
}

namespace {

struct OutFamily {
  std::string help;
  std::string type;
  std::vector<std::string> lines;
};

std::string Sample(const std::string& name, const std::string& labels, double v) {
  return name + (labels.empty() ? "" : "{" + labels + "}") + " " + FormatValue(v) + "\n";
}

class Collecting : public Emitter {
 public:
  explicit Collecting(std::map<std::string, OutFamily>* out) : out_(out) {}
  void Gauge(std::string_view name, std::string_view help, std::string_view labels,
             double value) override {
    Add(name, help, "gauge", labels, value);
  }
  void Counter(std::string_view name, std::string_view help, std::string_view labels,
               double value) override {
    Add(name, help, "counter", labels, value);
  }

 private:
  void Add(std::string_view name, std::string_view help, const char* type,
           std::string_view labels, double value) {
    auto& f = (*out_)[std::string(name)];
    if (f.type.empty()) {
      f.help = help;
      f.type = type;
    }
    f.lines.push_back(Sample(std::string(name), std::string(labels), value));
  }
  std::map<std::string, OutFamily>* out_;
};

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string Registry::Render() const {
  std::map<std::string, OutFamily> out;
  std::vector<Collector> collectors;
  {
    std::lock_guard lock(mu_);
    collectors = collectors_;
    for (const auto& [name, f] : families_) {
      OutFamily& o = out[name];
      o.help = f.help;
      o.type = f.type;
      for (const auto& [labels, c] : f.counters) o.lines.push_back(Sample(name, labels, c->value()));
      for (const auto& [labels, g] : f.gauges) o.lines.push_back(Sample(name, labels, g->value()));
      for (const auto& [labels, h] : f.histograms) {
        auto s = h->Snap();
        const std::string sep = labels.empty() ? "" : labels + ",";
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < s.buckets.size(); ++i) {
          cumulative += s.buckets[i];
          std::string le = i < h->bounds().size() ? FormatValue(h->bounds()[i]) : "+Inf";
          o.lines.push_back(Sample(name + "_bucket", sep + "le=\"" + le + "\"",
                                   static_cast<double>(cumulative)));
        }
        o.lines.push_back(Sample(name + "_sum", labels, s.sum));
        o.lines.push_back(Sample(name + "_count", labels, static_cast<double>(s.count)));
      }
    }
  }
  Collecting emitter(&out);
  for (const auto& c : collectors) c(emitter);
  std::string text;
  for (const auto& [name, f] : out) {
    text += "# HELP " + name + " " + EscapeHelp(f.help) + "\n";
    text += "# TYPE " + name + " " + f.type + "\n";
    for (const auto& l : f.lines) text += l;
  }
  return text;
}

Registry& Default() {
  static Registry registry;
  return registry;
}

}  // namespace coffer::metrics
