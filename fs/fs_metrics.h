// cofferfs's Prometheus metrics: a latency histogram per FUSE operation (through the glue's
// OpObserver hook; fsync, flush, link and rename are the durable waits of the contract), and,
// read at scrape time from the running filesystem, what `cofferctl status` shows (nodes up/down
// with round-trip time and lies, outbox depth and age, cache use, under-replicated objects, last
// scrub) plus the replicator's repair, hedge, verification and hinted-handoff counters.
// Names and meanings are listed in cofferfs(8), METRICS.
#pragma once

#include <functional>
#include <string>

#include "common/metrics.h"
#include "fs/fuse_glue.h"
#include "fs/filesystem.h"

namespace coffer::fs {

// Registers the per-operation histograms in `registry` and returns the observer to give to
// SetOpObserver(). Call once.
OpObserver RegisterOpMetrics(metrics::Registry& registry);

// Adds a collector that calls `status_line()` (Filesystem::StatusLine plus the play-dead mode)
// and reads `fs` at each scrape. Both must outlive the registry's use (the metrics listener is
// stopped before they go).
void RegisterStoreMetrics(metrics::Registry& registry, std::function<std::string()> status_line,
                          Filesystem* fs);

}  // namespace coffer::fs
