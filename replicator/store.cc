// ObjectStore: see store.h. Everything that touches LMDB on a node is here, so the request
// handler and its tests never see a transaction.
#include "replicator/store.h"

#include "replicator/digest.h"

#include <sodium.h>

#include <cerrno>

#include "common/bytes.h"
#include "common/error.h"

namespace coffer::replicator {
namespace {

constexpr std::string_view kCountersKey = "counters";

std::string SeqKey(std::uint64_t seq) { return BigEndian64(seq); }
std::uint64_t SeqFromKey(std::string_view key) { return FromBigEndian64(key); }

wire::StoreCounters ReadCounters(const lmdb::Txn& txn, const lmdb::Dbi& meta) {
  wire::StoreCounters counters;
  if (auto v = meta.Get(txn, kCountersKey)) {
    if (!counters.ParseFromArray(v->data(), static_cast<int>(v->size()))) {
      throw Error(EIO, "node store: corrupt counters record");
    }
  }
  return counters;
}

void ParseStored(std::string_view bytes, wire::StoredObject* out) {
  if (!out->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    throw Error(EIO, "node store: corrupt object record");
  }
}

wire::ListEntry EntryOf(std::string_view id, const wire::StoredObject& s) {
  wire::ListEntry e;
  e.set_id(std::string(id));
  *e.mutable_version() = s.version();
  e.set_tombstone(s.tombstone());
  e.set_digest(s.digest());
  e.set_size(s.sealed().size());
  e.set_seq(s.seq());
  return e;
}

// Removes the contribution of a held record from the counters.
void Uncount(const wire::StoredObject& s, wire::StoreCounters* c) {
  if (s.tombstone()) {
    c->set_tombstones(c->tombstones() - 1);
  } else {
    c->set_objects(c->objects() - 1);
    c->set_bytes(c->bytes() - s.sealed().size());
  }
}

void Count(const wire::StoredObject& s, wire::StoreCounters* c) {
  if (s.tombstone()) {
    c->set_tombstones(c->tombstones() + 1);
  } else {
    c->set_objects(c->objects() + 1);
    c->set_bytes(c->bytes() + s.sealed().size());
  }
}

}  // namespace

namespace {

lmdb::Env OpenEnv(const std::string& dir, std::size_t map_size) {
  if (sodium_init() < 0) throw Error(EIO, "libsodium initialisation failed");
  lmdb::EnvOptions options;
  options.map_size = map_size;
  options.max_dbs = 8;
  return lmdb::Env::Open(dir, options);
}

lmdb::Dbi OpenDbi(const lmdb::Env& env, const char* name) {
  auto txn = lmdb::Txn::BeginWrite(env);
  auto dbi = lmdb::Dbi::Open(txn, name, MDB_CREATE);
  txn.Commit();
  return dbi;
}

}  // namespace

ObjectStore::ObjectStore(const std::string& dir, std::size_t map_size, bool keep_first_copies)
    : env_(OpenEnv(dir, map_size)),
      objects_(OpenDbi(env_, "objects")),
      feed_(OpenDbi(env_, "feed")),
      meta_(OpenDbi(env_, "meta")),
      first_(OpenDbi(env_, "first")),
      keep_first_(keep_first_copies) {}

std::string ObjectStore::Digest(std::string_view sealed) { return replicator::Digest(sealed); }

std::vector<wire::PutResult> ObjectStore::Apply(const std::vector<const wire::Object*>& objects) {
  std::vector<wire::PutResult> results(objects.size());
  // Digests are computed outside the write transaction: it is the only serial part.
  std::vector<std::string> digests(objects.size());
  for (std::size_t i = 0; i < objects.size(); ++i) {
    if (!objects[i]->sealed().empty()) digests[i] = Digest(objects[i]->sealed());
  }
  auto txn = lmdb::Txn::BeginWrite(env_);
  wire::StoreCounters counters = ReadCounters(txn, meta_);
  bool changed = false;
  std::string value;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const wire::Object& o = *objects[i];
    const Version incoming = FromWire(o.version());
    wire::StoredObject held;
    bool have = false;
    if (auto v = objects_.Get(txn, o.id())) {
      ParseStored(*v, &held);
      have = true;
      const Version held_version = FromWire(held.version());
      const bool newer = incoming > held_version;
      const bool same_repair = o.repair() && incoming == held_version &&
                               held.tombstone() == o.tombstone() && held.digest() != digests[i];
      if (!newer && !same_repair) {
        results[i].set_status(wire::PUT_NOT_NEWER);
        *results[i].mutable_held() = held.version();
        continue;
      }
    }
    if (have) {
      Uncount(held, &counters);
      feed_.Del(txn, SeqKey(held.seq()));
      if (keep_first_ && !first_.Get(txn, o.id())) {
        held.SerializeToString(&value);  // a copy: LMDB's own bytes may move during the put
        first_.Put(txn, o.id(), value);
      }
    }
    wire::StoredObject s;
    *s.mutable_version() = o.version();
    s.set_tombstone(o.tombstone());
    counters.set_seq(counters.seq() + 1);
    s.set_seq(counters.seq());
    s.set_digest(digests[i]);
    s.set_sealed(o.sealed());
    Count(s, &counters);
    s.SerializeToString(&value);
    objects_.Put(txn, o.id(), value);
    feed_.Put(txn, SeqKey(s.seq()), o.id());
    results[i].set_status(wire::PUT_STORED);
    *results[i].mutable_held() = o.version();
    changed = true;
  }
  if (changed) {
    counters.SerializeToString(&value);
    meta_.Put(txn, kCountersKey, value);
    txn.Commit();
  }
  return results;
}

std::vector<bool> ObjectStore::Drop(const std::vector<std::pair<std::string, Version>>& items) {
  std::vector<bool> dropped(items.size(), false);
  auto txn = lmdb::Txn::BeginWrite(env_);
  wire::StoreCounters counters = ReadCounters(txn, meta_);
  bool changed = false;
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto v = objects_.Get(txn, items[i].first);
    if (!v) continue;
    wire::StoredObject held;
    ParseStored(*v, &held);
    if (FromWire(held.version()) > items[i].second) continue;
    Uncount(held, &counters);
    feed_.Del(txn, SeqKey(held.seq()));
    objects_.Del(txn, items[i].first);
    dropped[i] = true;
    changed = true;
  }
  if (changed) {
    std::string value;
    counters.SerializeToString(&value);
    meta_.Put(txn, kCountersKey, value);
    txn.Commit();
  }
  return dropped;
}

std::optional<wire::Object> ObjectStore::Get(std::string_view id) const {
  auto txn = lmdb::Txn::BeginRead(env_);
  auto v = objects_.Get(txn, id);
  if (!v) return std::nullopt;
  wire::StoredObject held;
  ParseStored(*v, &held);
  wire::Object o;
  o.set_id(std::string(id));
  *o.mutable_version() = held.version();
  o.set_tombstone(held.tombstone());
  o.set_sealed(std::move(*held.mutable_sealed()));
  return o;
}

std::optional<wire::Object> ObjectStore::First(std::string_view id) const {
  auto txn = lmdb::Txn::BeginRead(env_);
  auto v = first_.Get(txn, id);
  if (!v) return std::nullopt;
  wire::StoredObject held;
  ParseStored(*v, &held);
  wire::Object o;
  o.set_id(std::string(id));
  *o.mutable_version() = held.version();
  o.set_tombstone(held.tombstone());
  o.set_sealed(std::move(*held.mutable_sealed()));
  return o;
}

std::vector<wire::ListEntry> ObjectStore::List(std::string_view after, std::size_t limit,
                                               bool* done) const {
  std::vector<wire::ListEntry> out;
  auto txn = lmdb::Txn::BeginRead(env_);
  auto cursor = lmdb::Cursor::Open(txn, objects_);
  std::string_view key = after, value;
  bool ok;
  if (after.empty()) {
    ok = cursor.Get(&key, &value, MDB_FIRST);
  } else {
    ok = cursor.Get(&key, &value, MDB_SET_RANGE);
    if (ok && key == after) ok = cursor.Get(&key, &value, MDB_NEXT);
  }
  wire::StoredObject s;
  while (ok && out.size() < limit) {
    ParseStored(value, &s);
    out.push_back(EntryOf(key, s));
    ok = cursor.Get(&key, &value, MDB_NEXT);
  }
  *done = !ok;
  return out;
}

std::vector<wire::ListEntry> ObjectStore::Feed(std::uint64_t since, std::size_t limit,
                                               bool* done) const {
  std::vector<wire::ListEntry> out;
  auto txn = lmdb::Txn::BeginRead(env_);
  auto cursor = lmdb::Cursor::Open(txn, feed_);
  const std::string start = SeqKey(since + 1);
  std::string_view key = start, id;
  bool ok = since == UINT64_MAX ? false : cursor.Get(&key, &id, MDB_SET_RANGE);
  wire::StoredObject s;
  while (ok && out.size() < limit) {
    auto v = objects_.Get(txn, id);
    if (v) {
      ParseStored(*v, &s);
      if (s.seq() == SeqFromKey(key)) out.push_back(EntryOf(id, s));
    }
    ok = cursor.Get(&key, &id, MDB_NEXT);
  }
  *done = !ok;
  return out;
}

StoreStats ObjectStore::Stats() const {
  auto txn = lmdb::Txn::BeginRead(env_);
  wire::StoreCounters c = ReadCounters(txn, meta_);
  return {c.objects(), c.tombstones(), c.bytes(), c.seq()};
}

}  // namespace coffer::replicator
