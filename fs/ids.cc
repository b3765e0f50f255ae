// Record ids and the clock (see ids.h).
#include "fs/ids.h"

#include <chrono>
#include <cstring>

#include "common/bytes.h"

namespace coffer::fs {

namespace {
constexpr std::string_view kInodeTag = "coffer inode id v1";
constexpr std::string_view kDirentTag = "coffer dirent id v1";
constexpr std::string_view kBoxTag = "coffer box id v1";
constexpr std::string_view kDirInoTag = "coffer directory inode v1";

crypto::ObjectId Join(std::string_view head, std::string_view tail) {
  crypto::ObjectId id{};
  std::memcpy(id.data(), head.data(), 8);
  std::memcpy(id.data() + 8, tail.data(), 8);
  return id;
}
}  // namespace

crypto::ObjectId RecordIds::Inode(std::uint64_t ino) const {
  const std::string be = BigEndian64(ino);
  return Join(be, crypto::KeyedHash(key_, kInodeTag, be));
}

crypto::ObjectId RecordIds::LegacyDirent(std::uint64_t parent, std::string_view name) const {
  const std::string mac = crypto::KeyedHash(key_, BigEndian64(parent), name);
  return Join(mac, crypto::KeyedHash(key_, kDirentTag, std::string_view(mac).substr(0, 8)));
}

crypto::ObjectId RecordIds::Box(std::uint64_t box_id) const {
  const std::string mac = crypto::KeyedHash(key_, kBoxTag, BigEndian64(box_id));
  return Join(mac, crypto::KeyedHash(key_, kBoxTag, std::string_view(mac).substr(0, 8)));
}

std::uint64_t RecordIds::DirIno(std::uint64_t parent, std::string_view name) const {
  const std::string mac = crypto::KeyedHash(key_, kDirInoTag, BigEndian64(parent) + std::string(name));
  return FromBigEndian64(std::string_view(mac).substr(0, 8)) & 0x7fffffffffffffffull;
}

std::uint64_t RecordIds::InoOf(const crypto::ObjectId& id) {
  return FromBigEndian64(crypto::IdBytes(id));
}

RecordIds::Kind RecordIds::Classify(const crypto::ObjectId& id) const {
  if (id == Meta()) return Kind::kMeta;
  const std::string_view bytes = crypto::IdBytes(id);
  const std::string_view head = bytes.substr(0, 8), tail = bytes.substr(8, 8);
  auto tagged = [&](std::string_view label) {
    return crypto::primitives::ConstantTimeEqual(
        std::string_view(crypto::KeyedHash(key_, label, head)).substr(0, 8), tail);
  };
  if (tagged(kInodeTag)) return Kind::kInode;
  if (tagged(kDirentTag)) return Kind::kLegacyDirent;
  if (tagged(kBoxTag)) return Kind::kBox;
  return Kind::kChunk;
}

std::int64_t WallNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::uint64_t Hlc::Tick() {
  std::uint64_t prev = last_.load(std::memory_order_relaxed);
  while (true) {
    const std::uint64_t next = std::max(prev + 1, static_cast<std::uint64_t>(WallNs()));
    if (last_.compare_exchange_weak(prev, next, std::memory_order_relaxed)) return next;
  }
}

void Hlc::Observe(std::uint64_t hlc) {
  std::uint64_t prev = last_.load(std::memory_order_relaxed);
  while (prev < hlc && !last_.compare_exchange_weak(prev, hlc, std::memory_order_relaxed)) {
  }
}

}  // namespace coffer::fs
