// Transport: see transport.h.
#include "replicator/transport.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <zmq.hpp>

#include <atomic>
#include <cerrno>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "replicator/version.h"

namespace coffer::replicator {

using Clock = std::chrono::steady_clock;

const char* ToString(CallStatus s) {
  switch (s) {
    case CallStatus::kOk: return "ok";
    case CallStatus::kNodeError: return "error reply";
    case CallStatus::kTimeout: return "timeout";
    case CallStatus::kUnreachable: return "unreachable";
    case CallStatus::kBadReply: return "malformed reply";
    case CallStatus::kShutdown: return "shut down";
  }
  return "?";
}

std::string CallResult::Describe(const NodeAddress& node) const {
  std::string s = "node " + node.id + " (" + node.endpoint + "): " + ToString(status);
  if (status == CallStatus::kNodeError) s += ": " + reply.error().message();
  // ZMQ_IMMEDIATE: "unreachable" means no CURVE session exists, which is what a refused
  // handshake looks like from this side; say so, since the node is the only one who knows.
  if (status == CallStatus::kUnreachable) {
    s += " (not connected: down, or it refused our CURVE handshake: wrong node public key or "
         "not on the node's allow list?)";
  }
  return s;
}

struct Transport::Impl {
  struct Outgoing {
    std::size_t node;
    std::uint64_t id;
    std::string bytes;
    std::chrono::milliseconds timeout;
    CallCallback done;
  };
  struct Pending {
    std::size_t node;
    Clock::time_point sent;
    Clock::time_point deadline;
    CallCallback done;
  };

  zmq::context_t ctx{1};
  std::vector<zmq::socket_t> sockets;
  int wake_fd = -1;
  std::thread thread;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> next_id{1};

  std::mutex mu;  // guards queue, timers_in
  std::deque<Outgoing> queue;
  std::vector<std::pair<Clock::time_point, std::function<void()>>> timers_in;

  // I/O thread only:
  std::unordered_map<std::uint64_t, Pending> pending;
  std::multimap<Clock::time_point, std::uint64_t> deadlines;
  std::multimap<Clock::time_point, std::function<void()>> timers;

  void Wake() {
    std::uint64_t one = 1;
    ssize_t n = write(wake_fd, &one, sizeof one);
    (void)n;
  }

  static void Finish(CallCallback& done, CallResult&& r) {
    try {
      done(std::move(r));
    } catch (const std::exception& e) {
      spdlog::error("replicator callback threw: {}", e.what());
    }
  }

  void SendQueued() {
    std::deque<Outgoing> q;
    std::vector<std::pair<Clock::time_point, std::function<void()>>> t;
    {
      std::lock_guard lock(mu);
      q.swap(queue);
      t.swap(timers_in);
    }
    for (auto& [when, fn] : t) timers.emplace(when, std::move(fn));
    for (auto& o : q) {
      bool sent = false;
      try {
        sent = sockets[o.node].send(zmq::buffer(o.bytes), zmq::send_flags::dontwait).has_value();
      } catch (const zmq::error_t& e) {
        spdlog::debug("send to node {} failed: {}", o.node, e.what());
      }
      if (!sent) {
        CallResult r;
        r.status = CallStatus::kUnreachable;
        Finish(o.done, std::move(r));
        continue;
      }
      auto now = Clock::now();
      auto deadline = now + o.timeout;
      pending.emplace(o.id, Pending{o.node, now, deadline, std::move(o.done)});
      deadlines.emplace(deadline, o.id);
    }
  }

  void Receive(std::size_t node) {
    while (true) {
      zmq::message_t msg;
      if (!sockets[node].recv(msg, zmq::recv_flags::dontwait)) return;
      while (msg.more()) {  // replies are one frame; ignore anything else
        zmq::message_t extra;
        (void)sockets[node].recv(extra, zmq::recv_flags::none);
        if (!extra.more()) break;
      }
      wire::Reply reply;
      if (!reply.ParseFromArray(msg.data(), static_cast<int>(msg.size()))) {
        spdlog::warn("malformed reply from node {}", node);
        continue;
      }
      auto it = pending.find(reply.request_id());
      if (it == pending.end() || it->second.node != node) continue;  // late or foreign
      Pending p = std::move(it->second);
      pending.erase(it);
      CallResult r;
      r.status = reply.error().code() == wire::ERROR_NONE ? CallStatus::kOk
                                                           : CallStatus::kNodeError;
      r.latency = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - p.sent);
      r.reply = std::move(reply);
      Finish(p.done, std::move(r));
    }
  }

  void Expire() {
    auto now = Clock::now();
    while (!deadlines.empty() && deadlines.begin()->first <= now) {
      auto id = deadlines.begin()->second;
      deadlines.erase(deadlines.begin());
      auto it = pending.find(id);
      if (it == pending.end()) continue;
      Pending p = std::move(it->second);
      pending.erase(it);
      CallResult r;
      r.status = CallStatus::kTimeout;
      r.latency = std::chrono::duration_cast<std::chrono::microseconds>(now - p.sent);
      Finish(p.done, std::move(r));
    }
    while (!timers.empty() && timers.begin()->first <= now) {
      auto fn = std::move(timers.begin()->second);
      timers.erase(timers.begin());
      try {
        fn();
      } catch (const std::exception& e) {
        spdlog::error("replicator timer threw: {}", e.what());
      }
    }
  }

  void Loop() {
    std::vector<zmq::pollitem_t> items(sockets.size() + 1);
    while (!stop.load()) {
      for (std::size_t i = 0; i < sockets.size(); ++i) {
        items[i] = {sockets[i].handle(), 0, ZMQ_POLLIN, 0};
      }
      items.back() = {nullptr, wake_fd, ZMQ_POLLIN, 0};
      auto timeout = std::chrono::milliseconds(200);
      auto now = Clock::now();
      auto bound = [&](Clock::time_point t) {
        auto d = std::chrono::duration_cast<std::chrono::milliseconds>(t - now) +
                 std::chrono::milliseconds(1);
        timeout = std::max(std::chrono::milliseconds(0), std::min(timeout, d));
      };
      if (!deadlines.empty()) bound(deadlines.begin()->first);
      if (!timers.empty()) bound(timers.begin()->first);
      try {
        zmq::poll(items.data(), items.size(), timeout);
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        spdlog::critical("replicator I/O poll failed: {}", e.what());
        return;
      }
      if (items.back().revents & ZMQ_POLLIN) {
        std::uint64_t v;
        ssize_t n = read(wake_fd, &v, sizeof v);
        (void)n;
      }
      SendQueued();
      for (std::size_t i = 0; i < sockets.size(); ++i) {
        if (items[i].revents & ZMQ_POLLIN) Receive(i);
      }
      Expire();
    }
    // Shutdown: every call ends exactly once.
    SendQueued();
    for (auto& [id, p] : pending) {
      CallResult r;
      r.status = CallStatus::kShutdown;
      Finish(p.done, std::move(r));
    }
    pending.clear();
  }
};

Transport::Transport(std::vector<NodeAddress> nodes, CurveKeyPair client_keys,
                     TransportOptions options)
    : nodes_(std::move(nodes)), impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s.wake_fd < 0) ThrowErrno("eventfd");
  for (const auto& n : nodes_) {
    if (!IsZ85Key(n.public_key)) {
      throw Error(EINVAL, "node " + n.id + ": bad CURVE public key");
    }
    zmq::socket_t sock(s.ctx, zmq::socket_type::dealer);
    sock.set(zmq::sockopt::immediate, 1);
    sock.set(zmq::sockopt::linger, options.linger_ms);
    sock.set(zmq::sockopt::sndhwm, 100000);
    sock.set(zmq::sockopt::rcvhwm, 100000);
    sock.set(zmq::sockopt::heartbeat_ivl, options.heartbeat_ms);
    sock.set(zmq::sockopt::heartbeat_timeout, options.heartbeat_ms * 3);
    sock.set(zmq::sockopt::heartbeat_ttl, options.heartbeat_ms * 3);
    sock.set(zmq::sockopt::reconnect_ivl, options.reconnect_ms);
    sock.set(zmq::sockopt::reconnect_ivl_max, options.reconnect_max_ms);
    sock.set(zmq::sockopt::curve_serverkey, n.public_key);
    sock.set(zmq::sockopt::curve_publickey, client_keys.public_key);
    sock.set(zmq::sockopt::curve_secretkey, client_keys.secret_key);
    try {
      sock.connect(n.endpoint);
    } catch (const zmq::error_t& e) {
      close(s.wake_fd);
      throw Error(EINVAL, "node " + n.id + ": cannot connect to " + n.endpoint + ": " + e.what());
    }
    s.sockets.push_back(std::move(sock));
  }
  s.thread = std::thread([&s] { s.Loop(); });
}

Transport::~Transport() {
  Impl& s = *impl_;
  s.stop = true;
  s.Wake();
  if (s.thread.joinable()) s.thread.join();
  for (auto& sock : s.sockets) sock.close();
  s.ctx.close();
  close(s.wake_fd);
}

void Transport::Call(std::size_t node, wire::Request request, std::chrono::milliseconds timeout,
                     CallCallback done) {
  Impl& s = *impl_;
  if (node >= nodes_.size()) throw Error(EINVAL, "no node with index " + std::to_string(node));
  const std::uint64_t id = s.next_id.fetch_add(1);
  request.set_protocol(kProtocolVersion);
  request.set_request_id(id);
  std::string bytes;
  request.SerializeToString(&bytes);
  bool stopped;
  {
    std::lock_guard lock(s.mu);
    stopped = s.stop.load();
    if (!stopped) s.queue.push_back({node, id, std::move(bytes), timeout, std::move(done)});
  }
  if (stopped) {
    CallResult r;
    r.status = CallStatus::kShutdown;
    done(std::move(r));
    return;
  }
  s.Wake();
}

std::future<CallResult> Transport::Call(std::size_t node, wire::Request request,
                                        std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<CallResult>>();
  auto future = promise->get_future();
  Call(node, std::move(request), timeout,
       [promise](CallResult&& r) { promise->set_value(std::move(r)); });
  return future;
}

void Transport::After(std::chrono::milliseconds delay, std::function<void()> fn) {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.mu);
    s.timers_in.emplace_back(Clock::now() + delay, std::move(fn));
  }
  s.Wake();
}

}  // namespace coffer::replicator
