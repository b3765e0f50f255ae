// RequestHandler: a storage node's request logic, without sockets (STYLE.md §5).
//
// Takes the raw bytes of requests plus the identity the ZAP handler authenticated, returns the
// bytes of the replies. Decoding happens here, after authentication, with the size checked
// before parsing; every invalid or unknown request gets an error reply and never an exception.
// The writes of one HandleBatch() share one durable LMDB commit, made before any reply exists
// (a reply is an ack: DESIGN.md, Durability contract).
//
// Play dead (test mode, switched by ADMIN from the admin key): silent drops requests, refuse
// answers with errors, slow delays replies, corrupt flips bytes in GET replies. Two modes lie,
// to test that boxes believe nothing they cannot authenticate: forge-tombstone lists and serves
// every live object as a tombstone offset_ms newer than what it holds; rollback lists and serves
// the first copy it ever held of each object (keep_first_copies) as a version offset_ms newer.
// ADMIN requests themselves are always served, so a node can be brought back.
//
// Thread safety: HandleBatch() may run in two threads at once (the node's writer thread with the
// writes, its loop with everything else); the play-dead getters from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "replicator/play_dead.h"
#include "replicator/store.h"
#include "replicator/version.h"
#include "replicator/wire.pb.h"

namespace coffer::replicator {

struct HandlerLimits {
  std::size_t max_message_size = std::size_t{64} << 20;  // whole request, checked before parsing
  std::size_t max_object_size = std::size_t{16} << 20;   // sealed bytes of one object
  std::size_t max_batch = 1024;                          // objects or ids in one request
  std::size_t max_list = 4096;                           // entries in one LIST/FEED reply
};

struct ClientIdentity {
  std::string public_key;  // Z85 CURVE public key, as the ZAP handler saw it
  bool admin = false;
};

// True if `bytes` is a request that writes (PUT, DELETE, DROP), found by scanning the top-level
// fields without parsing the objects; false for everything else, malformed input included.
// The node serves writes from its writer thread and everything else at once.
bool IsWriteRequest(std::string_view bytes);

class RequestHandler {
 public:
  // `store` must outlive the handler.
  RequestHandler(ObjectStore& store, std::string node_id, HandlerLimits limits = {});

  struct Incoming {
    std::string_view bytes;
    ClientIdentity who;
  };
  struct Outcome {
    std::optional<std::string> reply;  // nullopt: send nothing (play dead silent)
    std::chrono::milliseconds delay{0};  // send after this delay (play dead slow)
  };

  // One outcome per incoming request, same order. Never throws.
  std::vector<Outcome> HandleBatch(const std::vector<Incoming>& batch) noexcept;
  Outcome Handle(std::string_view bytes, const ClientIdentity& who) noexcept;

  PlayDead play_dead() const;
  void set_play_dead(const PlayDead& p);

 private:
  void Dispatch(const wire::Request& req, const ClientIdentity& who, wire::Reply* reply);
  void FillStat(wire::StatReply* out) const;
  // The lying play-dead modes rewrite what LIST, FEED and GET report.
  void Lie(const PlayDead& dead, wire::ListEntry* e) const;
  void Lie(const PlayDead& dead, wire::Object* o) const;

  ObjectStore& store_;
  const std::string node_id_;
  const HandlerLimits limits_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> errors_{0};
  mutable std::mutex mu_;  // a leaf lock: never held around the store or a reply
  PlayDead play_dead_;  // guarded by mu_
};

}  // namespace coffer::replicator
