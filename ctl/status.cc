// See status.h.
#include "ctl/status.h"

#include "common/kv_line.h"

#include <cstdlib>
#include <ctime>
#include <iomanip>
#include <sstream>

namespace coffer::ctl {
namespace {

std::uint64_t U(const Fields& f, const std::string& key) {
  auto it = f.find(key);
  return it == f.end() ? 0 : std::strtoull(it->second.c_str(), nullptr, 10);
}

std::string Get(const Fields& f, const std::string& key) {
  auto it = f.find(key);
  return it == f.end() ? "" : it->second;
}

std::string HumanBytes(const std::string& bytes) {
  double b = std::strtod(bytes.c_str(), nullptr);
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  std::ostringstream o;
  o << std::fixed << std::setprecision(u == 0 ? 0 : 1) << b << " " << units[u];
  return o.str();
}

std::string UtcTime(std::int64_t unix_time) {
  std::time_t t = static_cast<std::time_t>(unix_time);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::ostringstream o;
  o << std::put_time(&tm, "%Y-%m-%d %H:%M:%S UTC");
  return o.str();
}

// Node names from "node.<id>" fields, with their state ("up"/"down"), latency and lies.
struct NodeView {
  std::string state, latency;
  std::uint64_t lies = 0;
};
std::map<std::string, NodeView> Nodes(const Fields& f) {
  std::map<std::string, NodeView> out;
  for (const auto& [k, v] : f) {
    if (k.rfind("node.", 0) == 0) {
      NodeView& n = out[k.substr(5)];
      n.state = v;
      if (auto slash = v.find('/'); slash != std::string::npos) {
        n.state = v.substr(0, slash);
        n.latency = v.substr(slash + 1);
      }
    } else if (k.rfind("lies.", 0) == 0) {
      out[k.substr(5)].lies = std::strtoull(v.c_str(), nullptr, 10);
    }
  }
  return out;
}

bool IsNumber(const std::string& s) {
  if (s.empty()) return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end && *end == '\0' && s.find_first_of("xXnN") == std::string::npos;
}

std::string PercentDecode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::strtol(s.substr(i + 1, 2).c_str(), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string Age(std::int64_t seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 120) return std::to_string(seconds) + " s";
  if (seconds < 7200) return std::to_string(seconds / 60) + " min";
  if (seconds < 172800) return std::to_string(seconds / 3600) + " h";
  return std::to_string(seconds / 86400) + " days";
}

}  // namespace

std::vector<BoxView> Boxes(const Fields& f) {
  std::vector<BoxView> out;
  const std::string self = Get(f, "box");
  for (const auto& [k, v] : f) {
    if (k.rfind("box.", 0) != 0) continue;
    BoxView b;
    b.id = k.substr(4);
    b.self = b.id == self;
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (true) {
      const std::size_t comma = v.find(',', start);
      parts.push_back(v.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    parts.resize(5);
    b.state = parts[0];
    b.heartbeat_unix = std::strtoll(parts[1].c_str(), nullptr, 10);
    b.caught_up_ms = std::strtoll(parts[2].c_str(), nullptr, 10);
    b.host = PercentDecode(parts[3]);
    b.mountpoint = PercentDecode(parts[4]);
    out.push_back(std::move(b));
  }
  return out;
}

void RenderBoxes(const std::vector<BoxView>& boxes, std::int64_t now_unix, std::ostream& out) {
  for (const BoxView& b : boxes) {
    out << "  " << b.id << "  " << std::left << std::setw(8) << b.state << " " << b.host << ":"
        << b.mountpoint;
    if (b.heartbeat_unix) out << ", heartbeat " << Age(now_unix - b.heartbeat_unix) << " ago";
    if (b.caught_up_ms) {
      out << ", caught up " << Age(now_unix - b.caught_up_ms / 1000) << " ago";
    } else {
      out << ", not caught up yet";
    }
    if (b.self) out << "  (this box)";
    out << "\n";
  }
}

Fields ParseFields(const std::string& answer, std::string* rest) {
  return ParseKeyValueLine(answer, rest);
}

std::string FormatScrubRecord(const ScrubRecord& r) {
  return "unix_time=" + std::to_string(r.unix_time) + " checked=" + std::to_string(r.checked) +
         " repaired=" + std::to_string(r.repaired) + " moved=" + std::to_string(r.moved) +
         " unreachable=" + std::to_string(r.unreachable) +
         " unrecoverable=" + std::to_string(r.unrecoverable) + " config=" + r.config;
}

std::optional<ScrubRecord> ParseScrubRecord(const std::string& line) {
  Fields f = ParseFields(line);
  if (!f.count("unix_time")) return std::nullopt;
  ScrubRecord r;
  r.unix_time = std::strtoll(f["unix_time"].c_str(), nullptr, 10);
  r.checked = U(f, "checked");
  r.repaired = U(f, "repaired");
  r.moved = U(f, "moved");
  r.unreachable = U(f, "unreachable");
  r.unrecoverable = U(f, "unrecoverable");
  r.config = Get(f, "config");
  return r;
}

Verdict Judge(const Fields& f) {
  Verdict v;
  auto degrade = [&](std::string why) {
    if (v.code < kStatusDegraded) v.code = kStatusDegraded;
    v.reasons.push_back(std::move(why));
  };
  auto stop = [&](std::string why) {
    v.code = kStatusNotServing;
    v.reasons.push_back(std::move(why));
  };
  const std::string mode = Get(f, "mode");
  if (mode == "eio") stop("play-dead eio: every operation fails");
  if (mode == "slow") degrade("play-dead slow " + Get(f, "delay_ms") + " ms");
  if (Get(f, "replicated") != "yes") return v;

  const auto nodes = Nodes(f);
  std::uint64_t up = 0;
  for (const auto& [id, n] : nodes) {
    if (n.state == "up") ++up;
    if (n.state != "up") degrade("node " + id + " " + (n.state.empty() ? "unknown" : n.state));
    if (n.lies > 0) {
      degrade("node " + id + " LYING (" + std::to_string(n.lies) +
              " forged or rolled-back replies)");
    }
  }
  if (f.count("nodes_up")) up = U(f, "nodes_up");
  const std::uint64_t w = U(f, "W");
  if (w > 0 && up < w) {
    if (Get(f, "degraded") == "queue") {
      degrade("only " + std::to_string(up) + " of W=" + std::to_string(w) +
              " nodes up: changes are held on this box only (degraded=queue)");
    } else {
      stop("only " + std::to_string(up) + " of W=" + std::to_string(w) +
           " nodes up: every delivery fails with EAGAIN");
    }
  }
  if (U(f, "outbox") > 0) {
    degrade(std::to_string(U(f, "outbox")) + " changes in the outbox, not yet on W nodes (oldest " +
            Get(f, "outbox_age_s") + " s)");
  }
  if (U(f, "under_replicated") > 0) {
    degrade(std::to_string(U(f, "under_replicated")) + " objects below R");
  }
  if (U(f, "scrub_unrecoverable") > 0) {
    degrade(std::to_string(U(f, "scrub_unrecoverable")) +
            " objects with no verified copy at the last scrub");
  }
  const std::string box_state = Get(f, "box_state");
  if (box_state == "RETIRED" || box_state == "LAPSED") {
    stop("this box was marked " + box_state +
         " by another box: it writes nothing; mount with an empty STATE_DIR to rejoin");
  }
  if (Get(f, "state") != "" && Get(f, "state") != "healthy" && v.code == kStatusHealthy) {
    degrade("cofferfs reports state " + Get(f, "state"));
  }
  return v;
}

void RenderText(const Fields& f, const Verdict& v, const std::optional<ScrubRecord>& manual,
                std::ostream& out) {
  out << "status      " << v.word() << "\n";
  for (const auto& r : v.reasons) out << "  - " << r << "\n";
  out << "play-dead   " << Get(f, "mode") << "\n";
  if (Get(f, "replicated") != "yes") {
    out << "storage     local only (no storage nodes)\n";
    return;
  }
  out << "state       " << Get(f, "state")
      << (Get(f, "state") == "healthy" ? "" : "  (changes not yet on W nodes)") << "\n";
  out << "nodes       " << Get(f, "nodes_up") << " of " << Get(f, "nodes") << " up, R="
      << Get(f, "R") << " W=" << Get(f, "W") << ", degraded=" << Get(f, "degraded") << "\n";
  for (const auto& [id, n] : Nodes(f)) {
    out << "  " << std::left << std::setw(10) << id << std::setw(5) << n.state
        << (n.latency.empty() ? "" : " " + n.latency);
    if (n.lies > 0) out << "  LYING (" << n.lies << " forged or rolled-back replies)";
    out << "\n";
  }
  out << "outbox      " << Get(f, "outbox") << " objects, oldest " << Get(f, "outbox_age_s")
      << " s\n";
  out << "cache       " << HumanBytes(Get(f, "cache_bytes")) << " in " << Get(f, "cached_chunks")
      << " chunks, limit "
      << (Get(f, "cache_limit") == "0" ? std::string("none") : HumanBytes(Get(f, "cache_limit")))
      << "; " << Get(f, "evicted") << " evicted, " << Get(f, "fetched") << " fetched\n";
  out << "under-replicated " << Get(f, "under_replicated") << " objects\n";
  if (f.count("boxes")) {
    out << "boxes       " << Get(f, "boxes") << " known, this box " << Get(f, "box") << " ("
        << Get(f, "box_state") << ")\n";
    RenderBoxes(Boxes(f), static_cast<std::int64_t>(std::time(nullptr)), out);
  }
  const std::int64_t last = std::strtoll(Get(f, "last_scrub_unix").c_str(), nullptr, 10);
  if (last == 0) {
    out << "last scrub  never" << (Get(f, "scrubbing") == "yes" ? " (running)" : "") << "\n";
  } else {
    const bool manual_here = Get(f, "manual_scrub_unix") == Get(f, "last_scrub_unix");
    out << "last scrub  " << UtcTime(last) << (manual_here ? " (manual)" : " (periodic)")
        << ": checked " << Get(f, "scrub_checked") << ", repaired " << Get(f, "scrub_repaired")
        << ", collected " << Get(f, "scrub_collected") << ", unreachable "
        << Get(f, "scrub_unreachable") << ", unrecoverable " << Get(f, "scrub_unrecoverable")
        << (Get(f, "scrubbing") == "yes" ? " (another one running)" : "") << "\n";
  }
  if (manual) {
    out << "last cofferctl scrub  " << UtcTime(manual->unix_time) << " (" << manual->config
        << "): checked " << manual->checked << ", repaired " << manual->repaired
        << ", unreachable " << manual->unreachable << ", unrecoverable "
        << manual->unrecoverable << "\n";
  }
  if (!Get(f, "last_error").empty()) out << "last error  " << Get(f, "last_error") << "\n";
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

void RenderJson(const Fields& f, const Verdict& v, const std::optional<ScrubRecord>& manual,
                std::ostream& out) {
  auto value = [](const std::string& s) { return IsNumber(s) ? s : JsonString(s); };
  out << "{\"status\":" << JsonString(v.code == kStatusHealthy    ? "healthy"
                                      : v.code == kStatusDegraded ? "degraded"
                                                                  : "not_serving")
      << ",\"exit_code\":" << v.code << ",\"reasons\":[";
  for (std::size_t i = 0; i < v.reasons.size(); ++i) {
    out << (i ? "," : "") << JsonString(v.reasons[i]);
  }
  out << "],\"nodes\":{";
  bool first = true;
  for (const auto& [id, n] : Nodes(f)) {
    out << (first ? "" : ",") << JsonString(id) << ":{\"state\":" << JsonString(n.state);
    if (!n.latency.empty()) {
      std::string ms = n.latency;
      if (ms.size() > 2 && ms.substr(ms.size() - 2) == "ms") ms.resize(ms.size() - 2);
      out << ",\"rtt_ms\":" << value(ms);
    }
    out << ",\"lies\":" << n.lies << "}";
    first = false;
  }
  out << "},\"boxes\":[";
  first = true;
  for (const BoxView& b : Boxes(f)) {
    out << (first ? "" : ",") << "{\"id\":" << JsonString(b.id)
        << ",\"state\":" << JsonString(b.state) << ",\"host\":" << JsonString(b.host)
        << ",\"mountpoint\":" << JsonString(b.mountpoint)
        << ",\"heartbeat_unix\":" << b.heartbeat_unix << ",\"caught_up_ms\":" << b.caught_up_ms
        << ",\"self\":" << (b.self ? "true" : "false") << "}";
    first = false;
  }
  out << "],\"fields\":{";
  first = true;
  for (const auto& [k, val] : f) {
    out << (first ? "" : ",") << JsonString(k) << ":" << value(val);
    first = false;
  }
  out << "}";
  if (manual) {
    out << ",\"cofferctl_scrub\":{\"unix_time\":" << manual->unix_time
        << ",\"config\":" << JsonString(manual->config) << ",\"checked\":" << manual->checked
        << ",\"repaired\":" << manual->repaired << ",\"moved\":" << manual->moved
        << ",\"unreachable\":" << manual->unreachable
        << ",\"unrecoverable\":" << manual->unrecoverable << "}";
  }
  out << "}\n";
}

}  // namespace coffer::ctl
