// Version: the order of the versions of one object (DESIGN.md, Data model): a hybrid logical
// clock value first, then the id of the box that wrote it, compared lexicographically. Nodes
// keep an object only if its version is newer than the one they hold, so retries, replays and
// repairs in any order converge to the same state.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

#include "common/crypto.h"
#include "replicator/wire.pb.h"

namespace coffer::replicator {

// The wire protocol version every Request and Reply carries (wire.proto).
inline constexpr std::uint32_t kProtocolVersion = 1;

// The same type the sealed object format authenticates (crypto::ObjectVersion).
using Version = crypto::ObjectVersion;
inline bool IsZero(const Version& v) noexcept { return v.hlc == 0 && v.box_id == 0; }
std::string ToString(const Version& v);  // "hlc.box_id"

inline Version FromWire(const wire::Version& v) { return {v.hlc(), v.box_id()}; }
inline void ToWire(const Version& v, wire::Version* out) {
  out->set_hlc(v.hlc);
  out->set_box_id(v.box_id);
}

}  // namespace coffer::replicator
