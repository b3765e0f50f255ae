// The play-dead modes of a storage node (coffer-node(8)): what ADMIN switches, as text for
// cofferctl, the node's config and its logs. Shared by the node and the tools that switch it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "replicator/wire.pb.h"

namespace coffer::replicator {

struct PlayDead {
  wire::PlayDeadMode mode = wire::PLAY_DEAD_OFF;
  std::uint32_t slow_ms = 0;
  std::uint32_t offset_ms = 0;  // forge-tombstone, rollback
  // "off", "silent", "refuse", "slow 200", "corrupt", "forge-tombstone 1000", "rollback 1000"
  std::string ToString() const;
};
inline constexpr std::uint32_t kDefaultLieOffsetMs = 1000;
inline constexpr const char* kPlayDeadModes =
    "off|silent|refuse|corrupt|slow MS|forge-tombstone [MS]|rollback [MS]";
// Parses "off", "silent", "refuse", "corrupt", "slow MS", "forge-tombstone [MS]" or
// "rollback [MS]" (MS defaults to kDefaultLieOffsetMs).
std::optional<PlayDead> ParsePlayDead(std::string_view text);

}  // namespace coffer::replicator
