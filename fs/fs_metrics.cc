// See fs_metrics.h.
#include "fs/fs_metrics.h"

#include <cstdlib>
#include <string_view>
#include <unordered_map>

#include "common/kv_line.h"

namespace coffer::fs {
namespace {

// Written once by RegisterOpMetrics before the mount, then only read (by FUSE workers).
std::unordered_map<std::string_view, metrics::Histogram*>* g_ops = nullptr;

void Observe(const char* op, double seconds) {
  auto it = g_ops->find(op);
  if (it != g_ops->end()) it->second->Observe(seconds);
}

double Num(const std::map<std::string, std::string>& f, const std::string& key) {
  auto it = f.find(key);
  return it == f.end() ? 0 : std::strtod(it->second.c_str(), nullptr);
}

}  // namespace

OpObserver RegisterOpMetrics(metrics::Registry& registry) {
  static std::unordered_map<std::string_view, metrics::Histogram*> ops;
  for (const char* op :
       {"lookup", "forget", "forget_multi", "getattr", "setattr", "readlink", "mknod", "mkdir",
        "unlink", "rmdir", "symlink", "rename", "link", "create", "open", "read", "write",
        "flush", "release", "fsync", "opendir", "readdir", "readdirplus", "releasedir",
        "fsyncdir", "statfs"}) {
    ops[op] = &registry.AddHistogram(
        "coffer_fs_operation_seconds",
        "FUSE requests by operation and the time to answer them (fsync, fsyncdir, flush, link, "
        "rename, mkdir and symlink include the wait for W node acknowledgements)",
        std::string("op=\"") + op + "\"");
  }
  g_ops = &ops;
  return &Observe;
}

void RegisterStoreMetrics(metrics::Registry& registry, std::function<std::string()> status_line,
                          Filesystem* fs) {
  registry.AddCollector([status_line = std::move(status_line), fs](metrics::Emitter& e) {
    auto f = ParseKeyValueLine(status_line());
    e.Gauge("coffer_fs_play_dead", "1 when a play-dead mode is on (tests)",
            "mode=\"" + metrics::EscapeLabel(f["mode"]) + "\"", f["mode"] == "normal" ? 0 : 1);
    const PipelineStatus p = fs->pipeline().status();
    e.Counter("coffer_fs_batches_total", "batches the commit pipeline took", "",
              static_cast<double>(p.taken));
    e.Counter("coffer_fs_local_commits_total", "commits to STATE_DIR", "",
              static_cast<double>(p.local_commits));
    if (!fs->remote()) return;
    e.Counter("coffer_fs_rounds_total", "replication rounds sent to the nodes", "",
              static_cast<double>(p.rounds));
    e.Gauge("coffer_fs_outbox_failed_objects",
            "changes in the outbox whose last round failed (degraded)", "",
            static_cast<double>(p.outbox_failed));
    e.Gauge("coffer_fs_nodes", "storage nodes configured", "", Num(f, "nodes"));
    e.Gauge("coffer_fs_nodes_up", "storage nodes that answered a ping", "", Num(f, "nodes_up"));
    for (const auto& [k, v] : f) {
      if (k.rfind("node.", 0) == 0) {
        std::string label = "node=\"" + metrics::EscapeLabel(k.substr(5)) + "\"";
        const bool up = v.rfind("up", 0) == 0;
        e.Gauge("coffer_fs_node_up", "1 when the node answered a ping", label, up ? 1 : 0);
        if (auto slash = v.find('/'); up && slash != std::string::npos) {
          e.Gauge("coffer_fs_node_rtt_seconds", "ping round trip to the node", label,
                  std::strtod(v.c_str() + slash + 1, nullptr) / 1000);
        }
      } else if (k.rfind("lies.", 0) == 0) {
        e.Counter("coffer_fs_node_lies_total",
                  "replies from the node that failed authentication (forged or rolled back)",
                  "node=\"" + metrics::EscapeLabel(k.substr(5)) + "\"", Num(f, k));
      }
    }
    e.Gauge("coffer_fs_outbox_objects", "changes not yet acknowledged by W nodes", "",
            static_cast<double>(p.outbox));
    e.Gauge("coffer_fs_outbox_oldest_seconds", "age of the oldest change in the outbox", "",
            Num(f, "outbox_age_s"));
    e.Gauge("coffer_fs_cache_bytes", "sealed chunk bytes cached in STATE_DIR", "",
            static_cast<double>(fs->chunks().status().bytes));
    e.Gauge("coffer_fs_cache_limit_bytes", "the cache limit (0: none)", "", Num(f, "cache_limit"));
    e.Gauge("coffer_fs_cache_chunks", "chunks cached in STATE_DIR", "", Num(f, "cached_chunks"));
    e.Counter("coffer_fs_cache_evicted_total", "chunks evicted from the cache", "",
              Num(f, "evicted"));
    e.Counter("coffer_fs_cache_fetched_total", "chunks fetched from the nodes", "",
              Num(f, "fetched"));
    e.Gauge("coffer_fs_under_replicated_objects",
            "objects known to be on fewer than R nodes (outbox and last scrub)", "",
            Num(f, "under_replicated"));
    e.Gauge("coffer_fs_last_scrub_timestamp_seconds", "when the last scrub ended (0: never)", "",
            Num(f, "last_scrub_unix"));
    for (const char* what : {"checked", "repaired", "collected", "unreachable", "unrecoverable"}) {
      e.Gauge("coffer_fs_last_scrub_objects", "objects by outcome in the last scrub",
              std::string("result=\"") + what + "\"", Num(f, std::string("scrub_") + what));
    }
    auto st = fs->remote()->stats();
    e.Counter("coffer_fs_repairs_sent_total", "replicas rewritten by read repair and scrub", "",
              static_cast<double>(st.repairs_sent));
    e.Counter("coffer_fs_hedged_reads_total", "reads sent to a second replica after a delay", "",
              static_cast<double>(st.hedges_sent));
    e.Counter("coffer_fs_verify_failures_total", "copies from nodes that failed verification",
              "", static_cast<double>(st.verify_failures));
    e.Counter("coffer_fs_hints_stored_total", "writes handed to a fallback node", "",
              static_cast<double>(st.hints_stored));
    e.Counter("coffer_fs_hints_replayed_total", "hinted writes delivered to their owner", "",
              static_cast<double>(st.hints_replayed));
    e.Gauge("coffer_fs_hints_pending", "hinted writes not yet delivered", "",
            static_cast<double>(st.hints_pending));
  });
}

}  // namespace coffer::fs
