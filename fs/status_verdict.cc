// See status_verdict.h.
#include "fs/status_verdict.h"

#include <cstdlib>
#include <cstring>

namespace coffer::fs {
namespace {

std::uint64_t U(const StatusFields& f, const std::string& key) {
  auto it = f.find(key);
  return it == f.end() ? 0 : std::strtoull(it->second.c_str(), nullptr, 10);
}

std::string Get(const StatusFields& f, const std::string& key) {
  auto it = f.find(key);
  return it == f.end() ? "" : it->second;
}

}  // namespace

Verdict Judge(const StatusFields& f) {
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
  if (const std::uint64_t err = U(f, "sticky_error"); err > 0) {
    stop(std::string("sticky write error (") + std::strerror(static_cast<int>(err)) +
         "): every write fails until cofferfs is restarted");
  }
  if (Get(f, "replicated") != "yes") return v;

  // Node names from "node.<id>" fields (state "up/<rtt>" or "down") and "lies.<id>" counts.
  std::map<std::string, std::pair<std::string, std::uint64_t>> nodes;
  for (const auto& [k, val] : f) {
    if (k.rfind("node.", 0) == 0) {
      nodes[k.substr(5)].first = val.substr(0, val.find('/'));
    } else if (k.rfind("lies.", 0) == 0) {
      nodes[k.substr(5)].second = std::strtoull(val.c_str(), nullptr, 10);
    }
  }
  std::uint64_t up = 0;
  for (const auto& [id, n] : nodes) {
    const auto& [state, lies] = n;
    if (state == "up") ++up;
    if (state != "up") degrade("node " + id + " " + (state.empty() ? "unknown" : state));
    if (lies > 0) {
      degrade("node " + id + " LYING (" + std::to_string(lies) +
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

}  // namespace coffer::fs
