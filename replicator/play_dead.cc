// Play-dead modes as text (see play_dead.h).
#include "replicator/play_dead.h"

namespace coffer::replicator {

std::string PlayDead::ToString() const {
  switch (mode) {
    case wire::PLAY_DEAD_SILENT: return "silent";
    case wire::PLAY_DEAD_REFUSE: return "refuse";
    case wire::PLAY_DEAD_SLOW: return "slow " + std::to_string(slow_ms);
    case wire::PLAY_DEAD_CORRUPT: return "corrupt";
    case wire::PLAY_DEAD_FORGE_TOMBSTONE: return "forge-tombstone " + std::to_string(offset_ms);
    case wire::PLAY_DEAD_ROLLBACK: return "rollback " + std::to_string(offset_ms);
    default: return "off";
  }
}

namespace {
// "MS" after a mode name: digits only, at most 7 of them.
std::optional<std::uint32_t> ParseMs(std::string_view ms) {
  while (!ms.empty() && ms.front() == ' ') ms.remove_prefix(1);
  if (ms.empty() || ms.size() > 7) return std::nullopt;
  std::uint32_t v = 0;
  for (char c : ms) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  return v;
}
}  // namespace

std::optional<PlayDead> ParsePlayDead(std::string_view text) {
  PlayDead p;
  if (text == "off") return p;
  if (text == "silent") { p.mode = wire::PLAY_DEAD_SILENT; return p; }
  if (text == "refuse") { p.mode = wire::PLAY_DEAD_REFUSE; return p; }
  if (text == "corrupt") { p.mode = wire::PLAY_DEAD_CORRUPT; return p; }
  auto with_ms = [&](std::string_view name, wire::PlayDeadMode mode, bool ms_required,
                     std::uint32_t PlayDead::*field) -> std::optional<PlayDead> {
    if (text.substr(0, name.size()) != name) return std::nullopt;
    std::string_view rest = text.substr(name.size());
    if (!rest.empty() && rest.front() != ' ') return std::nullopt;
    p.mode = mode;
    if (rest.find_first_not_of(' ') == std::string_view::npos) {
      if (ms_required) return std::nullopt;
      p.*field = kDefaultLieOffsetMs;
      return p;
    }
    auto ms = ParseMs(rest);
    if (!ms) return std::nullopt;
    p.*field = *ms;
    return p;
  };
  if (auto r = with_ms("slow", wire::PLAY_DEAD_SLOW, true, &PlayDead::slow_ms)) return r;
  if (auto r = with_ms("forge-tombstone", wire::PLAY_DEAD_FORGE_TOMBSTONE, false,
                       &PlayDead::offset_ms))
    return r;
  if (auto r = with_ms("rollback", wire::PLAY_DEAD_ROLLBACK, false, &PlayDead::offset_ms))
    return r;
  return std::nullopt;
}

}  // namespace coffer::replicator
