// The FUSE low-level glue: translates requests to Filesystem calls and replies exactly once.
#pragma once

#include <functional>

#include "fs/control.h"
#include "fs/filesystem.h"
#include "fs/options.h"

namespace coffer::fs {

// Mounts `fs` at options.mountpoint and serves it with the multi-threaded loop until unmounted
// or signalled (SIGINT/SIGTERM/SIGHUP). `on_mounted` runs once the mount exists (cofferfs uses it
// to finish going to the background). Returns 0 after a clean unmount, or throws coffer::Error
// when the mount cannot be made.
int ServeFuse(Filesystem* fs, PlayDead* play_dead, const MountOptions& options,
              const std::function<void()>& on_mounted);

// Metrics hook: called after each FUSE request was answered, with the operation's name
// ("lookup", "write", "fsync", ...) and the seconds it took. Set it before ServeFuse(); it runs
// on the FUSE worker threads and must be thread-safe and quick. nullptr (default): no timing.
using OpObserver = void (*)(const char* op, double seconds);
void SetOpObserver(OpObserver observer);

}  // namespace coffer::fs
