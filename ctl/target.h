// Finding a running cofferfs's control socket from whatever the admin typed: the socket itself,
// the STATE_DIR (STATE_DIR/control.sock), the mount point, or any path inside the mount (the
// longest fuse.cofferfs mount point in /proc/self/mountinfo that contains it; cofferfs mounts
// with fsname=STATE_DIR, so the mount leads to its STATE_DIR).
#pragma once

#include <string>

namespace coffer::ctl {

// Throws coffer::Error(ENOENT) naming `target` when it leads to no cofferfs.
// `mountinfo` is the file to read (tests give their own).
std::string ResolveControlSocket(const std::string& target,
                                 const std::string& mountinfo = "/proc/self/mountinfo");

// mountinfo's octal escapes (\040 for a space, ...).
std::string UnescapeMountinfo(const std::string& s);

}  // namespace coffer::ctl
