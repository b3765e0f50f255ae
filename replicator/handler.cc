// RequestHandler: see handler.h. This is one of the three catch-all places of STYLE.md §3: any
// exception while serving a request becomes an error reply (logged), and the node carries on.
#include "replicator/handler.h"

#include <deque>
#include <exception>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <spdlog/spdlog.h>

#include "common/error.h"

namespace coffer::replicator {
namespace {

void SetError(wire::Reply* reply, wire::ErrorCode code, std::string message) {
  reply->clear_body();
  reply->mutable_error()->set_code(code);
  reply->mutable_error()->set_message(std::move(message));
}

bool ValidId(const std::string& id) { return id.size() == kIdSize; }

std::string Serialize(const wire::Reply& reply) {
  std::string out;
  reply.SerializeToString(&out);
  return out;
}

}  // namespace

bool IsWriteRequest(std::string_view bytes) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  while (true) {
    const std::uint32_t tag = in.ReadTag();
    if (tag == 0) return false;
    const int field = WireFormatLite::GetTagFieldNumber(tag);
    if (field == wire::Request::kPutFieldNumber || field == wire::Request::kDelFieldNumber ||
        field == wire::Request::kDropFieldNumber) {
      return true;
    }
    if (!WireFormatLite::SkipField(&in, tag)) return false;
  }
}

RequestHandler::RequestHandler(ObjectStore& store, std::string node_id, HandlerLimits limits)
    : store_(store), node_id_(std::move(node_id)), limits_(limits) {}

PlayDead RequestHandler::play_dead() const {
  std::lock_guard lock(mu_);
  return play_dead_;
}

void RequestHandler::set_play_dead(const PlayDead& p) {
  std::lock_guard lock(mu_);
  play_dead_ = p;
}

RequestHandler::Outcome RequestHandler::Handle(std::string_view bytes,
                                               const ClientIdentity& who) noexcept {
  return HandleBatch({Incoming{bytes, who}}).front();
}

void RequestHandler::Lie(const PlayDead& dead, wire::ListEntry* e) const {
  const std::uint64_t offset = std::uint64_t{dead.offset_ms} * 1000000;
  if (dead.mode == wire::PLAY_DEAD_FORGE_TOMBSTONE && !e->tombstone()) {
    e->set_tombstone(true);
    e->mutable_version()->set_hlc(e->version().hlc() + offset);
  } else if (dead.mode == wire::PLAY_DEAD_ROLLBACK) {
    auto first = store_.First(e->id());
    if (!first) return;
    e->set_tombstone(first->tombstone());
    e->set_digest(first->sealed().empty() ? std::string() : ObjectStore::Digest(first->sealed()));
    e->set_size(first->sealed().size());
    e->mutable_version()->set_hlc(e->version().hlc() + offset);
  }
}

void RequestHandler::Lie(const PlayDead& dead, wire::Object* o) const {
  const std::uint64_t offset = std::uint64_t{dead.offset_ms} * 1000000;
  if (dead.mode == wire::PLAY_DEAD_FORGE_TOMBSTONE && !o->tombstone()) {
    o->set_tombstone(true);  // the live bytes stay: a claim is all a liar can change
    o->mutable_version()->set_hlc(o->version().hlc() + offset);
  } else if (dead.mode == wire::PLAY_DEAD_ROLLBACK) {
    auto first = store_.First(o->id());
    if (!first) return;
    const std::uint64_t hlc = o->version().hlc() + offset;
    o->set_tombstone(first->tombstone());
    o->set_sealed(std::move(*first->mutable_sealed()));
    o->mutable_version()->set_hlc(hlc);
  }
}

void RequestHandler::FillStat(wire::StatReply* out) const {
  StoreStats s = store_.Stats();
  out->set_objects(s.objects);
  out->set_tombstones(s.tombstones);
  out->set_bytes(s.bytes);
  out->set_seq(s.seq);
  out->set_uptime_ms(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                            started_)
          .count()));
  out->set_node_id(node_id_);
  out->set_play_dead(play_dead().ToString());
  out->set_requests(requests_.load());
  out->set_errors(errors_.load());
}

// Serves every request type except PUT and DELETE (which HandleBatch groups).
void RequestHandler::Dispatch(const wire::Request& req, const ClientIdentity& who,
                              wire::Reply* reply) {
  switch (req.body_case()) {
    case wire::Request::kGet: {
      const auto& ids = req.get().ids();
      if (static_cast<std::size_t>(ids.size()) > limits_.max_batch) {
        return SetError(reply, wire::ERROR_TOO_LARGE, "too many ids in GET");
      }
      auto* out = reply->mutable_get();
      for (const auto& id : ids) {
        if (!ValidId(id)) return SetError(reply, wire::ERROR_BAD_REQUEST, "GET: bad object id");
      }
      const PlayDead dead = play_dead();
      for (const auto& id : ids) {
        auto* r = out->add_results();
        if (auto o = store_.Get(id)) {
          r->set_found(true);
          Lie(dead, &*o);
          *r->mutable_object() = std::move(*o);
        }
      }
      return;
    }
    case wire::Request::kList: {
      const auto& l = req.list();
      if (!l.after().empty() && !ValidId(l.after())) {
        return SetError(reply, wire::ERROR_BAD_REQUEST, "LIST: bad cursor");
      }
      std::size_t limit = l.limit() == 0 ? limits_.max_list
                                         : std::min<std::size_t>(l.limit(), limits_.max_list);
      bool done = false;
      auto entries = store_.List(l.after(), limit, &done);
      auto* out = reply->mutable_list();
      const PlayDead dead = play_dead();
      for (auto& e : entries) {
        Lie(dead, &e);
        *out->add_entries() = std::move(e);
      }
      out->set_done(done);
      return;
    }
    case wire::Request::kFeed: {
      const auto& f = req.feed();
      std::size_t limit = f.limit() == 0 ? limits_.max_list
                                         : std::min<std::size_t>(f.limit(), limits_.max_list);
      bool done = false;
      auto entries = store_.Feed(f.since(), limit, &done);
      auto* out = reply->mutable_feed();
      const PlayDead dead = play_dead();
      for (auto& e : entries) {
        Lie(dead, &e);
        *out->add_entries() = std::move(e);
      }
      out->set_done(done);
      out->set_last_seq(store_.Stats().seq);
      return;
    }
    case wire::Request::kStat:
      return FillStat(reply->mutable_stat());
    case wire::Request::kPing:
      reply->mutable_ping()->set_node_time_ms(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count()));
      return;
    case wire::Request::kAdmin: {
      if (!who.admin) {
        return SetError(reply, wire::ERROR_DENIED, "ADMIN is allowed only from the admin key");
      }
      const auto& a = req.admin();
      if (!wire::PlayDeadMode_IsValid(a.play_dead())) {
        return SetError(reply, wire::ERROR_BAD_REQUEST, "ADMIN: unknown play-dead mode");
      }
      PlayDead p{a.play_dead(), a.slow_ms(), a.offset_ms()};
      if (p.mode == wire::PLAY_DEAD_SLOW && p.slow_ms > 600000) {
        return SetError(reply, wire::ERROR_BAD_REQUEST, "ADMIN: slow delay over 600000 ms");
      }
      if ((p.mode == wire::PLAY_DEAD_FORGE_TOMBSTONE || p.mode == wire::PLAY_DEAD_ROLLBACK) &&
          p.offset_ms == 0) {
        p.offset_ms = kDefaultLieOffsetMs;
      }
      if (p.mode == wire::PLAY_DEAD_ROLLBACK && !store_.keeps_first_copies()) {
        return SetError(reply, wire::ERROR_BAD_REQUEST,
                        "ADMIN: rollback needs keep_first_copies = true in the node's config");
      }
      set_play_dead(p);
      spdlog::warn("play dead: {} (set by admin key)", p.ToString());
      reply->mutable_admin()->set_play_dead(p.ToString());
      return;
    }
    case wire::Request::kDrop: {
      const auto& items = req.drop().items();
      if (static_cast<std::size_t>(items.size()) > limits_.max_batch) {
        return SetError(reply, wire::ERROR_TOO_LARGE, "too many items in DROP");
      }
      std::vector<std::pair<std::string, Version>> v;
      for (const auto& it : items) {
        if (!ValidId(it.id())) return SetError(reply, wire::ERROR_BAD_REQUEST, "DROP: bad id");
        v.emplace_back(it.id(), FromWire(it.version()));
      }
      auto dropped = store_.Drop(v);
      auto* out = reply->mutable_drop();
      for (bool d : dropped) out->add_dropped(d);
      return;
    }
    default:
      return SetError(reply, wire::ERROR_BAD_REQUEST, "unknown request type");
  }
}

std::vector<RequestHandler::Outcome> RequestHandler::HandleBatch(
    const std::vector<Incoming>& batch) noexcept {
  std::vector<Outcome> outcomes(batch.size());
  try {
    const PlayDead dead = play_dead();
    std::vector<wire::Request> requests(batch.size());
    std::vector<wire::Reply> replies(batch.size());
    std::vector<bool> silent(batch.size(), false);
    // Writes of the whole batch: objects to apply in one commit, and for each write request the
    // index in `writes` of each of its objects (-1: rejected before the store saw it).
    std::vector<const wire::Object*> writes;
    std::deque<wire::Object> tombstones;  // DELETE items turned into objects (stable addresses)
    std::vector<std::vector<int>> slots(batch.size());
    std::vector<bool> is_write(batch.size(), false);

    for (std::size_t i = 0; i < batch.size(); ++i) {
      ++requests_;
      wire::Reply& reply = replies[i];
      reply.set_protocol(kProtocolVersion);
      const std::string_view bytes = batch[i].bytes;
      if (bytes.size() > limits_.max_message_size) {
        SetError(&reply, wire::ERROR_TOO_LARGE, "request larger than the node's limit");
        continue;
      }
      wire::Request& req = requests[i];
      if (!req.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        SetError(&reply, wire::ERROR_BAD_REQUEST, "malformed request");
        continue;
      }
      reply.set_request_id(req.request_id());
      if (req.protocol() != kProtocolVersion) {
        SetError(&reply, wire::ERROR_BAD_REQUEST,
                 "unsupported protocol version " + std::to_string(req.protocol()));
        continue;
      }
      if (req.body_case() != wire::Request::kAdmin) {
        if (dead.mode == wire::PLAY_DEAD_SILENT) {
          silent[i] = true;
          continue;
        }
        if (dead.mode == wire::PLAY_DEAD_REFUSE) {
          SetError(&reply, wire::ERROR_UNAVAILABLE, "node is playing dead (refuse)");
          continue;
        }
      }
      if (req.body_case() == wire::Request::kPut) {
        const auto& objs = req.put().objects();
        if (static_cast<std::size_t>(objs.size()) > limits_.max_batch) {
          SetError(&reply, wire::ERROR_TOO_LARGE, "too many objects in PUT");
          continue;
        }
        is_write[i] = true;
        for (const auto& o : objs) {
          bool ok = ValidId(o.id()) && o.sealed().size() <= limits_.max_object_size &&
                    !(o.version().hlc() == 0 && o.version().box_id() == 0);
          if (ok) {
            slots[i].push_back(static_cast<int>(writes.size()));
            writes.push_back(&o);
          } else {
            slots[i].push_back(-1);
          }
        }
        continue;
      }
      if (req.body_case() == wire::Request::kDel) {
        const auto& items = req.del().items();
        if (static_cast<std::size_t>(items.size()) > limits_.max_batch) {
          SetError(&reply, wire::ERROR_TOO_LARGE, "too many items in DELETE");
          continue;
        }
        is_write[i] = true;
        for (const auto& it : items) {
          if (!ValidId(it.id()) || (it.version().hlc() == 0 && it.version().box_id() == 0)) {
            slots[i].push_back(-1);
            continue;
          }
          wire::Object& t = tombstones.emplace_back();
          t.set_id(it.id());
          *t.mutable_version() = it.version();
          t.set_tombstone(true);
          slots[i].push_back(static_cast<int>(writes.size()));
          writes.push_back(&t);
        }
        continue;
      }
      try {
        Dispatch(req, batch[i].who, &reply);
      } catch (const std::exception& e) {
        spdlog::error("request {} failed: {}", req.request_id(), e.what());
        SetError(&reply, wire::ERROR_INTERNAL, e.what());
      }
    }

    // One durable commit for every write of the batch, before any reply leaves.
    std::vector<wire::PutResult> results;
    std::string write_error;
    if (!writes.empty()) {
      try {
        results = store_.Apply(writes);
      } catch (const std::exception& e) {
        write_error = e.what();
        spdlog::error("commit of {} objects failed: {}", writes.size(), write_error);
      }
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!is_write[i]) continue;
      if (!write_error.empty()) {
        SetError(&replies[i], wire::ERROR_INTERNAL, "commit failed: " + write_error);
        continue;
      }
      wire::PutReply* out = requests[i].body_case() == wire::Request::kPut
                                ? replies[i].mutable_put()
                                : replies[i].mutable_del();
      for (int slot : slots[i]) {
        auto* r = out->add_results();
        if (slot < 0) {
          r->set_status(wire::PUT_REJECTED);
        } else {
          *r = results[static_cast<std::size_t>(slot)];
        }
      }
    }

    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (silent[i]) continue;
      wire::Reply& reply = replies[i];
      if (reply.error().code() != wire::ERROR_NONE) ++errors_;
      const bool admin = requests[i].body_case() == wire::Request::kAdmin;
      if (!admin && dead.mode == wire::PLAY_DEAD_CORRUPT && reply.has_get()) {
        for (auto& r : *reply.mutable_get()->mutable_results()) {
          std::string* s = r.mutable_object()->mutable_sealed();
          if (!s->empty()) (*s)[s->size() / 2] = static_cast<char>((*s)[s->size() / 2] ^ 0x5a);
        }
      }
      outcomes[i].reply = Serialize(reply);
      if (!admin && dead.mode == wire::PLAY_DEAD_SLOW) {
        outcomes[i].delay = std::chrono::milliseconds(dead.slow_ms);
      }
    }
  } catch (const std::exception& e) {
    // Only allocation failures can get here; answer what we can.
    spdlog::error("request batch failed: {}", e.what());
    for (auto& o : outcomes) {
      if (!o.reply) {
        wire::Reply reply;
        reply.set_protocol(kProtocolVersion);
        SetError(&reply, wire::ERROR_INTERNAL, "node failure");
        o.reply = Serialize(reply);
      }
    }
  }
  return outcomes;
}

}  // namespace coffer::replicator
