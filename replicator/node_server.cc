// NodeServer: see node_server.h.
#include "replicator/node_server.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <zmq.hpp>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/fd.h"
#include "common/metrics.h"
#include "replicator/refusal_log.h"

namespace coffer::replicator {
namespace {

// A draft option in libzmq 4.3 headers; the library accepts it when built with drafts.
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
constexpr int kZapEnforceDomain = 93;
#else
constexpr int kZapEnforceDomain = ZMQ_ZAP_ENFORCE_DOMAIN;
#endif
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kZapDomain = "coffer";
constexpr const char* kMonitorEndpoint = "inproc://coffer-node-monitor";

using Clock = std::chrono::steady_clock;

}  // namespace

struct NodeServer::Impl {
  NodeServerOptions options;
  RequestHandler& handler;
  zmq::context_t ctx;
  zmq::socket_t zap;
  zmq::socket_t router;
  zmq::socket_t monitor;
  std::thread zap_thread;
  std::atomic<bool> zap_stop{false};
  RefusalLog refusals;  // ZAP thread only
  metrics::Counter& refused_total = metrics::Default().AddCounter(
      "coffer_node_refused_handshakes_total",
      "CURVE handshakes refused (key not on the allow list, or a failed handshake)");
  // Lock order: keys_mu only, never held while calling ZeroMQ or the handler.
  mutable std::mutex keys_mu;
  std::set<std::string> allowed;  // guarded by keys_mu: box keys and the admin key
  std::string admin_key;          // guarded by keys_mu

  Impl(NodeServerOptions o, RequestHandler& h) : options(std::move(o)), handler(h), ctx(1) {
    SetKeys(options.allowed_keys, options.admin_key);
  }

  void SetKeys(const std::vector<std::string>& keys, const std::string& admin) {
    std::lock_guard lock(keys_mu);
    allowed = std::set<std::string>(keys.begin(), keys.end());
    if (!admin.empty()) allowed.insert(admin);
    admin_key = admin;
  }
  bool Allowed(const std::string& key) const {
    std::lock_guard lock(keys_mu);
    return allowed.count(key) != 0;
  }
  bool IsAdmin(const std::string& key) const {
    std::lock_guard lock(keys_mu);
    return !admin_key.empty() && key == admin_key;
  }

  void LogRefusal(const std::string& address, const std::string& key, const std::string& why) {
    refused_total.Inc();
    auto suppressed = refusals.Record(address, key, RefusalLog::Clock::now());
    if (!suppressed) return;
    std::string fp = KeyFingerprint(key);
    spdlog::warn("refused CURVE handshake from {}{}: {}{}", address,
                 key.empty() ? "" : " with key " + key + " (fingerprint " + fp + ")", why,
                 *suppressed ? " (" + std::to_string(*suppressed) +
                                   " more refusals from it not logged)"
                             : "");
  }

  // A handshake that failed before the ZAP handler saw a key: with CURVE that is nearly always a
  // client that encrypted to another public key than this node's.
  void OnMonitorEvent() {
    zmq::message_t event, endpoint;
    if (!monitor.recv(event, zmq::recv_flags::dontwait)) return;
    if (event.more()) (void)monitor.recv(endpoint, zmq::recv_flags::none);
    if (event.size() < 6) return;
    std::uint16_t id;
    std::uint32_t value;
    std::memcpy(&id, event.data(), 2);
    std::memcpy(&value, static_cast<const char*>(event.data()) + 2, 4);
    if (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || id == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
      char code[16];
      std::snprintf(code, sizeof code, "0x%08x", value);
      LogRefusal("a client of " + endpoint.to_string(), "",
                 std::string("handshake failed (ZMTP/CURVE error ") + code +
                     "): does the box use this node's public key?");
    }
  }

  // The ZAP handler (RFC 27): answers 200 only for CURVE clients whose key is allowed. The
  // user id it returns is the client's Z85 public key; the loop reads it as "User-Id".
  void ZapLoop() {
    while (!zap_stop.load()) {
      zmq::pollitem_t items[] = {{zap.handle(), 0, ZMQ_POLLIN, 0},
                                 {monitor.handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, monitor ? 2 : 1, std::chrono::milliseconds(100));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        if (e.num() == ETERM) return;
        throw;
      }
      if (monitor && (items[1].revents & ZMQ_POLLIN)) {
        try {
          OnMonitorEvent();
        } catch (const zmq::error_t& e) {
          if (e.num() == ETERM) return;
        }
      }
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> frames;
      try {
        while (true) {
          zmq::message_t m;
          if (!zap.recv(m, zmq::recv_flags::none)) break;
          bool more = m.more();
          frames.push_back(std::move(m));
          if (!more) break;
        }
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) return;
        continue;
      }
      // version, request id, domain, address, identity, mechanism, credentials...
      std::string request_id = frames.size() > 1 ? frames[1].to_string() : "";
      bool ok = false;
      std::string user;
      std::string address = frames.size() > 3 ? frames[3].to_string() : "?";
      if (frames.size() >= 7 && frames[0].to_string() == "1.0" &&
          frames[5].to_string() == "CURVE" && frames[6].size() == 32) {
        char z85[41];
        zmq_z85_encode(z85, static_cast<const std::uint8_t*>(frames[6].data()), 32);
        user = z85;
        ok = Allowed(user);
        if (!ok) LogRefusal(address, user, "key not on the allow list (allowed_keys_file)");
      } else {
        LogRefusal(address, "", "not a CURVE client");
      }
      try {
        zap.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
        zap.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
        zap.send(zmq::buffer(std::string(ok ? "200" : "400")), zmq::send_flags::sndmore);
        zap.send(zmq::buffer(std::string(ok ? "OK" : "not allowed")), zmq::send_flags::sndmore);
        zap.send(zmq::buffer(ok ? user : std::string()), zmq::send_flags::sndmore);
        zap.send(zmq::str_buffer(""), zmq::send_flags::none);
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) return;
        spdlog::error("ZAP reply failed: {}", e.what());
      }
    }
  }
};

NodeServer::NodeServer(NodeServerOptions options, RequestHandler& handler)
    : impl_(std::make_unique<Impl>(std::move(options), handler)) {
  Impl& s = *impl_;
  s.zap = zmq::socket_t(s.ctx, zmq::socket_type::rep);
  s.zap.set(zmq::sockopt::linger, 0);
  s.zap.bind(kZapEndpoint);
  s.router = zmq::socket_t(s.ctx, zmq::socket_type::router);
  if (zmq_socket_monitor(s.router.handle(), kMonitorEndpoint,
                         ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == 0) {
    s.monitor = zmq::socket_t(s.ctx, zmq::socket_type::pair);
    s.monitor.set(zmq::sockopt::linger, 0);
    s.monitor.connect(kMonitorEndpoint);
  } else {
    spdlog::debug("no socket monitor: {}", zmq_strerror(zmq_errno()));
  }
  s.zap_thread = std::thread([&s] {
    try {
      s.ZapLoop();
    } catch (const std::exception& e) {
      spdlog::critical("ZAP handler stopped: {}", e.what());
    }
  });

  s.router.set(zmq::sockopt::router_mandatory, 1);
  s.router.set(zmq::sockopt::linger, s.options.linger_ms);
  s.router.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(s.options.max_message_size));
  s.router.set(zmq::sockopt::heartbeat_ivl, s.options.heartbeat_ms);
  s.router.set(zmq::sockopt::heartbeat_timeout, s.options.heartbeat_ms * 3);
  s.router.set(zmq::sockopt::heartbeat_ttl, s.options.heartbeat_ms * 3);
  s.router.set(zmq::sockopt::sndhwm, 10000);
  s.router.set(zmq::sockopt::rcvhwm, 10000);
  s.router.set(zmq::sockopt::curve_server, 1);
  s.router.set(zmq::sockopt::curve_secretkey, s.options.server_keys.secret_key);
  s.router.set(zmq::sockopt::zap_domain, kZapDomain);
  int one = 1;
  if (zmq_setsockopt(s.router.handle(), kZapEnforceDomain, &one, sizeof one) != 0) {
    // Without draft options libzmq still calls the ZAP handler for every CURVE handshake once
    // one is bound (as here); only the domain check is implicit.
    spdlog::debug("ZMQ_ZAP_ENFORCE_DOMAIN not supported by this libzmq: {}",
                  zmq_strerror(zmq_errno()));
  }
  for (const auto& ep : s.options.listen) {
    try {
      s.router.bind(ep);
    } catch (const zmq::error_t& e) {
      RequestStop();
      s.zap_stop = true;
      s.zap_thread.join();
      throw Error(e.num(), "cannot listen on " + ep + ": " + e.what());
    }
    endpoints_.push_back(s.router.get(zmq::sockopt::last_endpoint));
  }
}

NodeServer::~NodeServer() {
  Impl& s = *impl_;
  if (s.monitor) zmq_socket_monitor(s.router.handle(), nullptr, 0);
  s.router.close();
  s.zap_stop = true;
  if (s.zap_thread.joinable()) s.zap_thread.join();
  s.monitor.close();
  s.zap.close();
  s.ctx.close();
}

void NodeServer::SetKeys(std::vector<std::string> allowed_keys, std::string admin_key) {
  impl_->SetKeys(allowed_keys, admin_key);
}

void NodeServer::Run() {
  Impl& s = *impl_;
  auto& registry = metrics::Default();
  const std::string kReqName = "coffer_node_requests_total";
  const std::string kReqHelp = "requests served, by kind (write: PUT, DELETE, DROP; read: the rest)";
  metrics::Counter& reads_total = registry.AddCounter(kReqName, kReqHelp, "kind=\"read\"");
  metrics::Counter& writes_total = registry.AddCounter(kReqName, kReqHelp, "kind=\"write\"");
  const std::string kBatchName = "coffer_node_batch_seconds";
  const std::string kBatchHelp =
      "time to handle one batch of requests (write batches include the durable LMDB commit)";
  metrics::Histogram& read_batch = registry.AddHistogram(kBatchName, kBatchHelp, "kind=\"read\"");
  metrics::Histogram& write_batch =
      registry.AddHistogram(kBatchName, kBatchHelp, "kind=\"write\"");
  metrics::Gauge& write_queue_bytes = registry.AddGauge(
      "coffer_node_write_queue_bytes", "bytes of write requests waiting for the writer thread");
  std::multimap<Clock::time_point, std::pair<std::string, std::string>> delayed;
  auto send = [&](const std::string& routing_id, const std::string& reply) {
    try {
      if (!s.router.send(zmq::buffer(routing_id), zmq::send_flags::sndmore | zmq::send_flags::dontwait) ||
          !s.router.send(zmq::buffer(reply), zmq::send_flags::dontwait)) {
        spdlog::debug("reply dropped: client queue full");
      }
    } catch (const zmq::error_t& e) {
      // EHOSTUNREACH: the client went away; its request timed out on its side.
      spdlog::debug("reply dropped: {}", e.what());
    }
  };
  auto deliver = [&](const std::string& routing_id, RequestHandler::Outcome& outcome) {
    if (!outcome.reply) return;
    if (outcome.delay.count() > 0) {
      delayed.emplace(Clock::now() + outcome.delay,
                      std::make_pair(routing_id, std::move(*outcome.reply)));
    } else {
      send(routing_id, *outcome.reply);
    }
  };

  // The writer thread: takes every write request queued while its previous commit ran and
  // applies them in one durable commit (group commit), while this thread goes on serving reads.
  // Replies come back through done_queue; done_fd wakes this thread's poll. Lock order: only
  // writer_mu, never held while calling the handler or a socket.
  struct Item {
    std::string routing_id;
    std::string payload;
    ClientIdentity who;
  };
  struct Done {
    std::string routing_id;
    RequestHandler::Outcome outcome;
  };
  std::mutex writer_mu;
  std::condition_variable writer_cv;
  std::deque<Item> write_queue;      // guarded by writer_mu
  std::size_t queued_bytes = 0;      // guarded by writer_mu: write_queue + in the writer
  std::vector<Done> done_queue;      // guarded by writer_mu
  bool writer_stop = false;          // guarded by writer_mu
  UniqueFd done_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!done_fd) ThrowErrno("eventfd");
  std::thread writer([&] {
    std::unique_lock lock(writer_mu);
    while (true) {
      writer_cv.wait(lock, [&] { return writer_stop || !write_queue.empty(); });
      if (write_queue.empty()) break;  // stopping and drained
      std::deque<Item> work;
      work.swap(write_queue);
      lock.unlock();
      std::vector<RequestHandler::Incoming> batch;
      std::size_t bytes = 0;
      for (const auto& it : work) {
        batch.push_back({it.payload, it.who});
        bytes += it.payload.size();
      }
      const auto started = Clock::now();
      auto outcomes = s.handler.HandleBatch(batch);
      write_batch.Observe(std::chrono::duration<double>(Clock::now() - started).count());
      writes_total.Inc(batch.size());
      lock.lock();
      queued_bytes -= bytes;
      write_queue_bytes.Set(static_cast<double>(queued_bytes));
      for (std::size_t i = 0; i < work.size(); ++i) {
        done_queue.push_back({std::move(work[i].routing_id), std::move(outcomes[i])});
      }
      std::uint64_t one = 1;
      ssize_t n = write(done_fd.Get(), &one, sizeof one);
      (void)n;
    }
  });
  auto take_done = [&] {
    std::vector<Done> done;
    {
      std::lock_guard lock(writer_mu);
      done.swap(done_queue);
    }
    for (auto& d : done) deliver(d.routing_id, d.outcome);
  };
  // Reading pauses while this much is waiting for the writer (ZeroMQ's queues then push back).
  const std::size_t max_queued = 4 * s.options.max_message_size;

  std::vector<std::string> routing_ids, payloads;
  std::vector<RequestHandler::Incoming> batch;
  while (!stop_.load()) {
    auto timeout = std::chrono::milliseconds(100);
    if (!delayed.empty()) {
      auto until = std::chrono::duration_cast<std::chrono::milliseconds>(
          delayed.begin()->first - Clock::now());
      timeout = std::max(std::chrono::milliseconds(0), std::min(timeout, until));
    }
    bool accept;
    {
      std::lock_guard lock(writer_mu);
      accept = queued_bytes < max_queued;
    }
    zmq::pollitem_t items[] = {{nullptr, done_fd.Get(), ZMQ_POLLIN, 0},
                               {s.router.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, accept ? 2 : 1, timeout);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (items[0].revents & ZMQ_POLLIN) {
      std::uint64_t v;
      ssize_t n = read(done_fd.Get(), &v, sizeof v);
      (void)n;
      take_done();
    }
    const auto now = Clock::now();
    while (!delayed.empty() && delayed.begin()->first <= now) {
      send(delayed.begin()->second.first, delayed.begin()->second.second);
      delayed.erase(delayed.begin());
    }
    if (!accept || !(items[1].revents & ZMQ_POLLIN)) continue;

    routing_ids.clear();
    payloads.clear();
    batch.clear();
    std::vector<ClientIdentity> who;
    std::vector<Item> writes;
    // Bounded by count and by bytes, so a burst of large requests cannot pile up in memory.
    std::size_t batch_bytes = 0;
    while (routing_ids.size() + writes.size() < s.options.max_group &&
           batch_bytes < s.options.max_message_size) {
      zmq::message_t id;
      try {
        if (!s.router.recv(id, zmq::recv_flags::dontwait)) break;
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) break;
        throw;
      }
      if (!id.more()) continue;  // no payload: ignore
      zmq::message_t payload;
      (void)s.router.recv(payload, zmq::recv_flags::none);
      // A request is exactly one frame: drain any further frames and treat it as malformed.
      bool malformed = false;
      for (bool more = payload.more(); more;) {
        zmq::message_t drop;
        (void)s.router.recv(drop, zmq::recv_flags::none);
        more = drop.more();
        malformed = true;
      }
      ClientIdentity identity;
      const char* user = zmq_msg_gets(payload.handle(), "User-Id");
      if (user) identity.public_key = user;
      identity.admin = s.IsAdmin(identity.public_key);
      batch_bytes += payload.size();
      std::string bytes = malformed ? std::string() : payload.to_string();
      if (IsWriteRequest(bytes)) {
        writes.push_back({id.to_string(), std::move(bytes), std::move(identity)});
      } else {
        routing_ids.push_back(id.to_string());
        payloads.push_back(std::move(bytes));
        who.push_back(std::move(identity));
      }
    }
    if (!writes.empty()) {
      {
        std::lock_guard lock(writer_mu);
        for (auto& w : writes) {
          queued_bytes += w.payload.size();
          write_queue.push_back(std::move(w));
        }
      }
      writer_cv.notify_one();
    }
    for (std::size_t i = 0; i < payloads.size(); ++i) batch.push_back({payloads[i], who[i]});
    if (!batch.empty()) {
      const auto started = Clock::now();
      auto outcomes = s.handler.HandleBatch(batch);
      read_batch.Observe(std::chrono::duration<double>(Clock::now() - started).count());
      reads_total.Inc(batch.size());
      for (std::size_t i = 0; i < outcomes.size(); ++i) deliver(routing_ids[i], outcomes[i]);
    }
  }
  // Requests in flight are answered: the writer commits what it holds, then delayed replies go.
  {
    std::lock_guard lock(writer_mu);
    writer_stop = true;
  }
  writer_cv.notify_one();
  writer.join();
  take_done();
  for (auto& [when, r] : delayed) send(r.first, r.second);
  spdlog::info("stopping: {} delayed replies flushed", delayed.size());
}

}  // namespace coffer::replicator
