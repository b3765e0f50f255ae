// The digest of sealed bytes that storage nodes report in LIST and FEED (BLAKE2b-128): what
// scrub and verify compare replicas by. Both sides of the wire compute it.
#pragma once

#include <string>
#include <string_view>

namespace coffer::replicator {

// 16 bytes.
std::string Digest(std::string_view sealed);

}  // namespace coffer::replicator
