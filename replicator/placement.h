// Placement: rendezvous (highest random weight) hashing of object ids over node ids.
//
// Each node gets a score per object, hash(node id, object id); the R highest scores are the
// object's replicas, best first. Adding a node to N moves only the objects for which the new
// node scores in the top R (about R/(N+1) of the replica slots, 1/(N+1) of the objects for
// R = 1), and removing one moves only its own objects. The hash is fixed (part of the data
// layout: changing it moves everything), so all boxes agree without talking to each other.
// Thread-compatible: immutable after construction.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace coffer::replicator {

class Placement {
 public:
  // `node_ids` are the stable names of the nodes (not endpoints, which may change).
  explicit Placement(std::vector<std::string> node_ids);

  // Indices into node_ids of the min(r, N) replicas of `object_id`, highest score first.
  std::vector<std::size_t> Replicas(std::string_view object_id, std::size_t r) const;
  // Every node index, ordered by score for `object_id` (replicas first, then fallbacks).
  std::vector<std::size_t> Ranked(std::string_view object_id) const;

  std::size_t size() const { return node_ids_.size(); }
  const std::vector<std::string>& node_ids() const { return node_ids_; }

  static std::uint64_t Score(std::uint64_t node_hash, std::string_view object_id);
  static std::uint64_t HashNodeId(std::string_view node_id);

 private:
  std::vector<std::string> node_ids_;
  std::vector<std::uint64_t> node_hashes_;
};

}  // namespace coffer::replicator
