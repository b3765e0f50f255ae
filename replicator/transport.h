// Transport: the replicator's request-reply client to a set of nodes (DESIGN.md, Replicator and
// nodes; the "Freelance" and "Lazy Pirate" patterns of the ZeroMQ guide).
//
// One DEALER socket per node, with CURVE client keys, ZMQ_IMMEDIATE (a message is never queued
// for a node that is not connected: the send fails and the call fails at once as unreachable),
// heartbeats and a bounded linger. All sockets belong to one I/O thread. Callers on any thread
// hand requests over through a mutex-guarded queue and wake the I/O thread through an eventfd
// (an inproc socket would need one socket per calling thread, since ZeroMQ sockets are not
// thread-safe). Every request gets a fresh request id; replies are matched by id, late replies
// to requests that already timed out are dropped. Every call ends exactly once: with a reply,
// a timeout, or unreachable.
//
// Thread safety: every public function may be called from any thread, including from inside a
// callback. Callbacks run on the I/O thread: they must be short and must not block on other
// calls of this Transport (sending new calls from them is fine).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "replicator/curve.h"
#include "replicator/wire.pb.h"

namespace coffer::replicator {

struct NodeAddress {
  std::string id;          // stable node id (placement)
  std::string endpoint;    // tcp://host:port
  std::string public_key;  // the node's CURVE public key (Z85)
};

struct TransportOptions {
  int heartbeat_ms = 1000;
  int linger_ms = 0;
  int reconnect_ms = 100;
  int reconnect_max_ms = 1000;
};

enum class CallStatus {
  kOk,           // a reply with error code ERROR_NONE
  kNodeError,    // a reply with an error (see reply.error())
  kTimeout,      // no reply within the timeout
  kUnreachable,  // not connected (down, refused our key, or not started)
  kBadReply,     // a reply that does not parse
  kShutdown,     // the transport was stopped
};
const char* ToString(CallStatus s);

struct CallResult {
  CallStatus status = CallStatus::kShutdown;
  wire::Reply reply;
  std::chrono::microseconds latency{0};
  // "node n1 (tcp://...): timeout after 2000 ms" and the like.
  std::string Describe(const NodeAddress& node) const;
};

using CallCallback = std::function<void(CallResult&&)>;

class Transport {
 public:
  Transport(std::vector<NodeAddress> nodes, CurveKeyPair client_keys,
            TransportOptions options = {});
  ~Transport();  // stops the I/O thread; pending calls end with kShutdown
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Sends `request` to node `node` (protocol and request_id are filled in here). `done` is
  // called exactly once, on the I/O thread.
  void Call(std::size_t node, wire::Request request, std::chrono::milliseconds timeout,
            CallCallback done);
  std::future<CallResult> Call(std::size_t node, wire::Request request,
                               std::chrono::milliseconds timeout);

  // Runs `fn` on the I/O thread after `delay` (for hedged requests). Dropped at shutdown.
  void After(std::chrono::milliseconds delay, std::function<void()> fn);

  std::size_t size() const { return nodes_.size(); }
  const std::vector<NodeAddress>& nodes() const { return nodes_; }

 private:
  struct Impl;
  std::vector<NodeAddress> nodes_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coffer::replicator
