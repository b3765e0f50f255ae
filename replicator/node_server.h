// NodeServer: the socket glue of coffer-node (STYLE.md §5: the logic is in RequestHandler).
//
// A ROUTER socket with CURVE server keys bound to the listen endpoints, and a ZAP handler
// (inproc://zeromq.zap.01, in its own thread) that accepts only the public keys on the allow
// list and the admin key, with ZMQ_ZAP_ENFORCE_DOMAIN set where libzmq offers it. A client
// without CURVE or with another key is dropped during the handshake, before any request is
// read. Socket hygiene from DESIGN.md: ROUTER_MANDATORY, MAXMSGSIZE, heartbeats, bounded
// linger. The loop reads every request that is waiting (up to `max_group`), serves reads at
// once and hands writes (PUT, DELETE, DROP) to one writer thread, which applies everything that
// queued up during its previous commit in one durable LMDB commit (group commit) before any of
// their replies is sent; reads never wait behind an fsync.
//
// Refused handshakes are logged, rate-limited (refusal_log.h): keys that are not on the allow
// list by the ZAP handler with the peer's address and key fingerprint, and handshakes that fail
// before ZAP (a box that uses a wrong public key for this node) through a socket monitor.
// Metrics (requests by kind, batch latency, refused handshakes) go to metrics::Default().
//
// Thread safety: construct, then Run() in one thread; RequestStop() from any thread or from a
// signal handler (it only stores to an atomic); SetKeys() from any thread (a SIGHUP reload).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "replicator/curve.h"
#include "replicator/handler.h"

namespace coffer::replicator {

struct NodeServerOptions {
  std::vector<std::string> listen;   // e.g. "tcp://127.0.0.1:7401"
  CurveKeyPair server_keys;
  std::vector<std::string> allowed_keys;  // box public keys (Z85)
  std::string admin_key;                  // Z85; empty: no admin
  std::size_t max_message_size = std::size_t{64} << 20;
  std::size_t max_group = 64;             // requests handled in one batch
  int heartbeat_ms = 1000;
  int linger_ms = 1000;
};

class NodeServer {
 public:
  // Binds every endpoint; throws coffer::Error (EADDRINUSE, EINVAL...) naming the endpoint.
  // `handler` must outlive the server.
  NodeServer(NodeServerOptions options, RequestHandler& handler);
  ~NodeServer();
  NodeServer(const NodeServer&) = delete;
  NodeServer& operator=(const NodeServer&) = delete;

  // Serves until RequestStop(); then answers what it holds (delayed replies too) and returns.
  void Run();
  void RequestStop() noexcept { stop_.store(true); }

  // The endpoints actually bound (with ports resolved when the config said '*').
  const std::vector<std::string>& endpoints() const { return endpoints_; }

  // Replaces the allow list and the admin key (empty: none). New handshakes and requests use
  // them at once; connections already authenticated stay up until they reconnect.
  void SetKeys(std::vector<std::string> allowed_keys, std::string admin_key);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> stop_{false};
  std::vector<std::string> endpoints_;
};

}  // namespace coffer::replicator
