// Placement: see placement.h. FNV-1a for node ids and a murmur3 finaliser over the object id's
// bytes: fast, well mixed, and fixed forever.
#include "replicator/placement.h"

#include <algorithm>
#include <numeric>

namespace coffer::replicator {
namespace {

std::uint64_t Mix(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

}  // namespace

std::uint64_t Placement::HashNodeId(std::string_view node_id) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : node_id) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return Mix(h);
}

std::uint64_t Placement::Score(std::uint64_t node_hash, std::string_view object_id) {
  std::uint64_t h = node_hash;
  std::uint64_t word = 0;
  std::size_t n = 0;
  for (char c : object_id) {
    word = (word << 8) | static_cast<unsigned char>(c);
    if (++n == 8) {
      h = Mix(h ^ word);
      word = 0;
      n = 0;
    }
  }
  if (n != 0) h = Mix(h ^ word ^ (static_cast<std::uint64_t>(n) << 56));
  return Mix(h + 0x9e3779b97f4a7c15ULL);
}

Placement::Placement(std::vector<std::string> node_ids) : node_ids_(std::move(node_ids)) {
  for (const auto& id : node_ids_) node_hashes_.push_back(HashNodeId(id));
}

std::vector<std::size_t> Placement::Ranked(std::string_view object_id) const {
  std::vector<std::pair<std::uint64_t, std::size_t>> scored;
  scored.reserve(node_ids_.size());
  for (std::size_t i = 0; i < node_ids_.size(); ++i) {
    scored.emplace_back(Score(node_hashes_[i], object_id), i);
  }
  std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<std::size_t> out;
  out.reserve(scored.size());
  for (const auto& s : scored) out.push_back(s.second);
  return out;
}

std::vector<std::size_t> Placement::Replicas(std::string_view object_id, std::size_t r) const {
  auto ranked = Ranked(object_id);
  ranked.resize(std::min(r, ranked.size()));
  return ranked;
}

}  // namespace coffer::replicator
