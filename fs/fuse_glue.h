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

}  // namespace coffer::fs
