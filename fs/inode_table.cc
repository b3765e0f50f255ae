// The inode table (see inode_table.h).
#include "fs/inode_table.h"

#include <sys/stat.h>

#include <algorithm>
#include <functional>
#include <set>
#include <climits>
#include <cstring>

namespace coffer::fs {

namespace {

Version FromProto(const proto::Version& v) { return Version{v.hlc(), v.box_id()}; }
void ToProto(const Version& v, proto::Version* out) {
  out->set_hlc(v.hlc);
  out->set_box_id(v.box_id);
}

void ToProtoTime(const Timestamp& t, std::int64_t* ns, std::int64_t* sec, std::uint32_t* nsec) {
  // The nanosecond field too, saturated, so that a record reads sensibly either way.
  constexpr std::int64_t kMax = INT64_MAX / 1000000000 - 1;
  *ns = t.sec > kMax ? INT64_MAX : t.sec < -kMax ? INT64_MIN : t.sec * 1000000000 + t.nsec;
  *sec = t.sec;
  *nsec = t.nsec;
}

Timestamp FromProtoTime(std::int64_t ns, std::int64_t sec, std::uint32_t nsec) {
  if (sec != 0 || nsec != 0) return Timestamp{sec, std::min<std::uint32_t>(nsec, 999999999)};
  // Records before the separate fields: nanoseconds since the epoch.
  std::int64_t s = ns / 1000000000, n = ns % 1000000000;
  if (n < 0) {
    n += 1000000000;
    s -= 1;
  }
  return Timestamp{s, static_cast<std::uint32_t>(n)};
}

}  // namespace

Timestamp Timestamp::Now() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return FromTimespec(ts);
}

Timestamp Timestamp::FromTimespec(const timespec& ts) {
  std::int64_t sec = ts.tv_sec, nsec = ts.tv_nsec;
  if (nsec < 0 || nsec >= 1000000000) {
    sec += nsec / 1000000000;
    nsec %= 1000000000;
    if (nsec < 0) {
      nsec += 1000000000;
      sec -= 1;
    }
  }
  return Timestamp{sec, static_cast<std::uint32_t>(nsec)};
}

timespec Timestamp::ToTimespec() const {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(sec);
  ts.tv_nsec = static_cast<long>(nsec);
  return ts;
}

Timestamp Timestamp::Next() const {
  return nsec + 1 < 1000000000 ? Timestamp{sec, nsec + 1} : Timestamp{sec + 1, 0};
}

std::int64_t Timestamp::NsSince(const Timestamp& earlier) const {
  // Saturating: times span far more than 292 years of nanoseconds.
  const std::int64_t dn = static_cast<std::int64_t>(nsec) - static_cast<std::int64_t>(earlier.nsec);
  std::int64_t ds = 0, d = 0;
  if (__builtin_sub_overflow(static_cast<std::int64_t>(sec), static_cast<std::int64_t>(earlier.sec), &ds) ||
      __builtin_mul_overflow(ds, std::int64_t{1000000000}, &d) || __builtin_add_overflow(d, dn, &d)) {
    const bool later = sec > earlier.sec || (sec == earlier.sec && nsec > earlier.nsec);
    return later ? INT64_MAX : INT64_MIN;
  }
  return d;
}

Inode* InodeTable::Find(std::uint64_t ino) {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second.get();
}

const Inode* InodeTable::Find(std::uint64_t ino) const {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second.get();
}

Inode* InodeTable::Create(std::uint32_t mode, std::uint32_t uid, std::uint32_t gid,
                          Timestamp now, std::uint64_t preferred) {
  // Random numbers: unique across boxes that create inodes at the same time, and telling
  // nothing about the order of creation.
  std::uint64_t ino = preferred;
  while (ino <= kRootIno || inodes_.count(ino)) {
    crypto::primitives::RandomBytes(reinterpret_cast<unsigned char*>(&ino), sizeof ino);
    ino &= 0x7fffffffffffffffull;
  }
  auto inode = std::make_unique<Inode>();
  inode->ino = ino;
  inode->mode = mode;
  inode->uid = uid;
  inode->gid = gid;
  inode->atime = inode->mtime = inode->ctime = now;
  if (S_ISDIR(mode)) {
    inode->dir = std::make_unique<Dir>();
    inode->nlink = 2;
  }
  return Insert(std::move(inode));
}

Inode* InodeTable::Insert(std::unique_ptr<Inode> inode) {
  if (S_ISDIR(inode->mode) && !inode->dir) inode->dir = std::make_unique<Dir>();
  Inode* raw = inode.get();
  inodes_[raw->ino] = std::move(inode);
  return raw;
}

void InodeTable::Erase(std::uint64_t ino) { inodes_.erase(ino); }

std::optional<std::uint64_t> InodeTable::Lookup(const Inode& dir, std::string_view name) const {
  if (!dir.dir) return std::nullopt;
  auto it = dir.dir->by_name.find(name);
  if (it == dir.dir->by_name.end()) return std::nullopt;
  return it->second.ino;
}

void InodeTable::Recount(Inode* inode) {
  if (inode->dir) {
    inode->nlink = 2 + inode->dir->subdirs;
  } else {
    inode->nlink = static_cast<std::uint32_t>(inode->links.size());
  }
}

void InodeTable::Index(Inode* dir, const InodeLink& link, std::uint64_t ino) {
  Dir& d = *dir->dir;
  Inode* child = Find(ino);
  auto it = d.by_name.find(link.name);
  if (it == d.by_name.end()) {
    const std::uint64_t cookie = d.next_cookie++;
    d.by_name.emplace(link.name, Dir::Slot{ino, cookie, link.version});
    d.by_cookie.emplace(cookie, link.name);
    if (child && child->dir) {
      ++d.subdirs;
      Recount(dir);
    }
    return;
  }
  Dir::Slot& slot = it->second;
  if (slot.ino == ino) {
    slot.version = link.version;
    return;
  }
  // Two inodes claim the name: the older link keeps it (then the lower inode number).
  const bool incoming_wins =
      link.version < slot.version || (link.version == slot.version && ino < slot.ino);
  NameConflict c{dir->ino, link.name, incoming_wins ? ino : slot.ino,
                 incoming_wins ? slot.ino : ino};
  conflicts_.push_back(c);
  auto& losers = contenders_[{dir->ino, link.name}];
  if (std::find(losers.begin(), losers.end(), c.loser) == losers.end()) losers.push_back(c.loser);
  if (!incoming_wins) return;
  Inode* old = Find(slot.ino);
  if (old && old->dir) --d.subdirs;
  if (child && child->dir) ++d.subdirs;
  slot.ino = ino;
  slot.version = link.version;
  Recount(dir);
}

void InodeTable::Unindex(Inode* dir, std::string_view name, std::uint64_t ino) {
  Dir& d = *dir->dir;
  auto it = d.by_name.find(name);
  if (it == d.by_name.end() || it->second.ino != ino) return;
  Inode* child = Find(ino);
  if (child && child->dir && d.subdirs > 0) --d.subdirs;
  d.by_cookie.erase(it->second.cookie);
  d.by_name.erase(it);
  Recount(dir);
  // Another inode that also links here (it lost a conflict) gets the name now.
  if (contenders_.empty()) return;
  auto c = contenders_.find({dir->ino, std::string(name)});
  if (c == contenders_.end()) return;
  std::vector<std::uint64_t> losers = std::move(c->second);
  contenders_.erase(c);
  for (std::uint64_t other_ino : losers) {
    Inode* other = Find(other_ino);
    if (!other) continue;
    for (const InodeLink& l : other->links) {
      if (l.parent == dir->ino && l.name == name) Index(dir, l, other_ino);
    }
  }
}

namespace {

// How long a file remembers a removed name (a box away for longer must rebuild anyway), and at
// most how many.
constexpr std::uint64_t kUnlinkMemoryNs = 7ull * 24 * 3600 * 1000000000;
constexpr std::size_t kUnlinkMemoryMax = 64;

InodeLink NewLink(std::uint64_t dir, std::string_view name, const Version& v,
                  const InodeLink* from) {
  InodeLink link{dir, std::string(name), v};
  if (from) {
    link.renamed = true;
    link.from_parent = from->parent;
    link.from_name = from->name;
  }
  return link;
}

void Forget(std::vector<InodeLink>* unlinked, std::uint64_t parent, std::string_view name) {
  std::erase_if(*unlinked, [&](const InodeLink& l) { return l.parent == parent && l.name == name; });
}

// Remembers the removal of `link` at `v`, with where the name came from (the lineage of renames
// must survive the names in it).
void Remember(Inode* inode, const InodeLink& link, const Version& v) {
  if (inode->dir || v == Version{}) return;
  Forget(&inode->unlinked, link.parent, link.name);
  std::erase_if(inode->unlinked,
                [&](const InodeLink& l) { return l.version.hlc + kUnlinkMemoryNs < v.hlc; });
  if (inode->unlinked.size() >= kUnlinkMemoryMax) inode->unlinked.erase(inode->unlinked.begin());
  InodeLink removal = link;
  removal.version = v;
  inode->unlinked.push_back(std::move(removal));
}

// The names of a file as two records know them: per name, the later of its newest giving and
// its newest removal decides; of the names linked by renames (a name and the names renamed
// from it, and from those), only the latest stays, so two boxes flagging one message at once,
// or one flagging it again meanwhile, leave one name.
void MergeNames(const Inode& a, const Inode& b, std::vector<InodeLink>* links,
                std::vector<InodeLink>* unlinked) {
  using Key = std::pair<std::uint64_t, std::string>;
  std::map<Key, InodeLink> added, removed;
  auto take = [](std::map<Key, InodeLink>* m, const InodeLink& l) {
    auto [it, fresh] = m->try_emplace(Key{l.parent, l.name}, l);
    if (!fresh && it->second.version < l.version) it->second = l;
  };
  for (const Inode* x : {&a, &b}) {
    for (const InodeLink& l : x->links) take(&added, l);
    for (const InodeLink& l : x->unlinked) take(&removed, l);
  }
  std::map<Key, InodeLink> present;
  for (const auto& [k, l] : added) {
    auto r = removed.find(k);
    if (r == removed.end() || r->second.version < l.version) present.emplace(k, l);
  }
  // Lineages: a name and the names renamed from it (union-find over every giving known).
  std::map<Key, Key> up;
  std::function<Key(const Key&)> root = [&](const Key& k) -> Key {
    auto it = up.find(k);
    if (it == up.end() || it->second == k) return k;
    Key r = root(it->second);
    it->second = r;
    return r;
  };
  for (const auto* m : {&added, &removed}) {
    for (const auto& [k, l] : *m) {
      if (!l.renamed) continue;
      const Key a = root(k), b = root(Key{l.from_parent, l.from_name});
      if (a != b) up[a] = b;
    }
  }
  // In a lineage with a rename in it, only the latest name stays.
  std::map<Key, const InodeLink*> latest;
  std::set<Key> renamed_lineages;
  for (const auto& [k, l] : present) {
    const Key r = root(k);
    if (l.renamed) renamed_lineages.insert(r);
    auto [it, fresh] = latest.try_emplace(r, &l);
    if (!fresh && it->second->version < l.version) it->second = &l;
  }
  std::vector<InodeLink> gone;
  for (const auto& [k, l] : present) {
    const Key r = root(k);
    if (!renamed_lineages.count(r)) continue;
    const InodeLink* winner = latest[r];
    if (winner != &l) gone.push_back(InodeLink{l.parent, l.name, winner->version});
  }
  for (const InodeLink& g : gone) {
    present.erase(Key{g.parent, g.name});
    take(&removed, g);
  }
  links->clear();
  for (auto& [k, l] : present) links->push_back(l);
  std::sort(links->begin(), links->end(),
            [](const InodeLink& x, const InodeLink& y) { return x.version < y.version; });
  unlinked->clear();
  for (auto& [k, l] : removed) {
    if (!present.count(k)) unlinked->push_back(l);
  }
  std::sort(unlinked->begin(), unlinked->end(),
            [](const InodeLink& x, const InodeLink& y) { return x.version < y.version; });
  while (unlinked->size() > kUnlinkMemoryMax) unlinked->erase(unlinked->begin());
}

bool SameNames(std::vector<InodeLink> a, std::vector<InodeLink> b) {
  auto key = [](const InodeLink& l) { return std::make_pair(l.parent, l.name); };
  auto less = [&](const InodeLink& x, const InodeLink& y) { return key(x) < key(y); };
  std::sort(a.begin(), a.end(), less);
  std::sort(b.begin(), b.end(), less);
  return a == b;
}

}  // namespace

void InodeTable::AddLink(Inode* dir, std::string_view name, Inode* child, const Version& v,
                         const InodeLink* from) {
  InodeLink link = NewLink(dir->ino, name, v, from);
  Forget(&child->unlinked, dir->ino, name);
  child->links.push_back(link);
  Index(dir, link, child->ino);
  Recount(child);
}

Inode* InodeTable::RemoveLink(Inode* dir, std::string_view name, const Version& v) {
  if (!dir->dir) return nullptr;
  auto it = dir->dir->by_name.find(name);
  if (it == dir->dir->by_name.end()) return nullptr;
  const std::uint64_t ino = it->second.ino;
  Inode* child = Find(ino);
  if (child) {
    auto l = std::find_if(child->links.begin(), child->links.end(), [&](const InodeLink& k) {
      return k.parent == dir->ino && k.name == name;
    });
    if (l != child->links.end()) {
      Remember(child, *l, v);
      child->links.erase(l);
    }
  }
  // Without the name's inode in the table the slot still goes.
  if (child) {
    Unindex(dir, name, ino);
    Recount(child);
  } else {
    dir->dir->by_cookie.erase(it->second.cookie);
    dir->dir->by_name.erase(it);
  }
  return child;
}

Inode* InodeTable::ReplaceLink(Inode* dir, std::string_view name, Inode* child,
                               const Version& v, const InodeLink* from) {
  auto it = dir->dir->by_name.find(name);
  if (it == dir->dir->by_name.end()) {
    AddLink(dir, name, child, v, from);
    return nullptr;
  }
  Dir::Slot& slot = it->second;
  Inode* old = Find(slot.ino);
  if (old) {
    auto l = std::find_if(old->links.begin(), old->links.end(), [&](const InodeLink& k) {
      return k.parent == dir->ino && k.name == name;
    });
    if (l != old->links.end()) {
      Remember(old, *l, v);
      old->links.erase(l);
    }
    if (old->dir && dir->dir->subdirs > 0) --dir->dir->subdirs;
    Recount(old);
  }
  slot.ino = child->ino;
  slot.version = v;
  if (child->dir) ++dir->dir->subdirs;
  Forget(&child->unlinked, dir->ino, name);
  child->links.push_back(NewLink(dir->ino, name, v, from));
  Recount(child);
  Recount(dir);
  return old;
}

std::vector<NameConflict> InodeTable::Reindex() {
  // Old cookies of names that stay, so that a readdir in progress neither skips nor repeats.
  std::unordered_map<std::uint64_t, std::map<std::string, std::uint64_t, std::less<>>> cookies;
  std::unordered_map<std::uint64_t, std::uint64_t> next_cookie;
  for (auto& [ino, inode] : inodes_) {
    if (!inode->dir) continue;
    auto& c = cookies[ino];
    for (const auto& [name, slot] : inode->dir->by_name) c[name] = slot.cookie;
    next_cookie[ino] = inode->dir->next_cookie;
    inode->dir = std::make_unique<Dir>();
  }
  contenders_.clear();
  for (auto& [ino, inode] : inodes_) {
    for (const InodeLink& l : inode->links) {
      Inode* dir = Find(l.parent);
      if (!dir || !dir->dir) continue;  // a name in a directory this box does not know
      Index(dir, l, ino);
    }
  }
  for (auto& [ino, inode] : inodes_) {
    if (inode->dir) {
      // Reuse old cookies; new names get cookies after every old one.
      Dir& d = *inode->dir;
      const auto& old = cookies[ino];
      std::uint64_t next = std::max<std::uint64_t>(next_cookie[ino], 3);
      std::map<std::uint64_t, std::string> by_cookie;
      for (auto& [name, slot] : d.by_name) {
        auto o = old.find(name);
        slot.cookie = o != old.end() ? o->second : next++;
        by_cookie.emplace(slot.cookie, name);
      }
      d.by_cookie = std::move(by_cookie);
      d.next_cookie = next;
    }
    Recount(inode.get());
  }
  return TakeConflicts();
}

std::vector<NameConflict> InodeTable::TakeConflicts() {
  std::vector<NameConflict> out;
  out.swap(conflicts_);
  return out;
}

proto::InodeRecord InodeTable::ToRecord(const Inode& inode, std::uint32_t chunk_size) {
  proto::InodeRecord rec;
  rec.set_ino(inode.ino);
  rec.set_mode(inode.mode);
  rec.set_uid(inode.uid);
  rec.set_gid(inode.gid);
  rec.set_size(inode.size);
  rec.set_nlink(inode.nlink);
  std::int64_t ns, sec;
  std::uint32_t nsec;
  ToProtoTime(inode.atime, &ns, &sec, &nsec);
  rec.set_atime_ns(ns);
  rec.set_atime_sec(sec);
  rec.set_atime_nsec(nsec);
  ToProtoTime(inode.mtime, &ns, &sec, &nsec);
  rec.set_mtime_ns(ns);
  rec.set_mtime_sec(sec);
  rec.set_mtime_nsec(nsec);
  ToProtoTime(inode.ctime, &ns, &sec, &nsec);
  rec.set_ctime_ns(ns);
  rec.set_ctime_sec(sec);
  rec.set_ctime_nsec(nsec);
  rec.set_rdev(inode.rdev);
  rec.set_symlink(inode.symlink);
  rec.set_chunk_size(chunk_size);
  ToProto(inode.version, rec.mutable_version());
  for (const auto& id : inode.chunks) {
    const bool hole = std::all_of(id.begin(), id.end(), [](std::uint8_t b) { return b == 0; });
    rec.add_chunks(hole ? std::string() : std::string(crypto::IdBytes(id)));
  }
  for (const InodeLink& l : inode.links) {
    auto* out = rec.add_links();
    out->set_parent(l.parent);
    out->set_name(l.name);
    ToProto(l.version, out->mutable_version());
    if (l.renamed) {
      out->set_renamed(true);
      out->set_from_parent(l.from_parent);
      out->set_from_name(l.from_name);
    }
  }
  rec.set_names_merge(true);
  for (const InodeLink& l : inode.unlinked) {
    auto* out = rec.add_unlinked();
    out->set_parent(l.parent);
    out->set_name(l.name);
    ToProto(l.version, out->mutable_version());
    if (l.renamed) {
      out->set_renamed(true);
      out->set_from_parent(l.from_parent);
      out->set_from_name(l.from_name);
    }
  }
  return rec;
}

std::unique_ptr<Inode> InodeTable::FromRecord(const proto::InodeRecord& rec) {
  auto inode = std::make_unique<Inode>();
  inode->ino = rec.ino();
  inode->mode = rec.mode();
  inode->uid = rec.uid();
  inode->gid = rec.gid();
  inode->rdev = rec.rdev();
  inode->size = rec.size();
  inode->atime = FromProtoTime(rec.atime_ns(), rec.atime_sec(), rec.atime_nsec());
  inode->mtime = FromProtoTime(rec.mtime_ns(), rec.mtime_sec(), rec.mtime_nsec());
  inode->ctime = FromProtoTime(rec.ctime_ns(), rec.ctime_sec(), rec.ctime_nsec());
  inode->symlink = rec.symlink();
  inode->version = FromProto(rec.version());
  inode->nlink = rec.nlink();
  for (const auto& c : rec.chunks()) inode->chunks.push_back(crypto::IdFromBytes(c).value_or(crypto::ObjectId{}));
  auto link_of = [](const proto::Link& l) {
    InodeLink link{l.parent(), l.name(), FromProto(l.version())};
    if (l.renamed()) {
      link.renamed = true;
      link.from_parent = l.from_parent();
      link.from_name = l.from_name();
    }
    return link;
  };
  for (const auto& l : rec.links()) inode->links.push_back(link_of(l));
  for (const auto& l : rec.unlinked()) inode->unlinked.push_back(link_of(l));
  if (S_ISDIR(inode->mode)) inode->dir = std::make_unique<Dir>();
  return inode;
}

Applied InodeTable::Apply(const proto::InodeRecord& record) {
  Applied out;
  const Version v = FromProto(record.version());
  Inode* local = Find(record.ino());
  if (local && !(local->version < v)) return out;
  out.changed = true;
  std::unique_ptr<Inode> incoming = FromRecord(record);
  std::vector<InodeLink> old_links;
  if (local && !local->dir && !incoming->dir && record.names_merge()) {
    // Files: names merge with what this box knows (see MergeNames); the rest is the record's.
    std::vector<InodeLink> links, unlinked;
    MergeNames(*local, *incoming, &links, &unlinked);
    out.rewrite = !SameNames(links, incoming->links);
    incoming->links = std::move(links);
    incoming->unlinked = std::move(unlinked);
  }
  if (local) {
    old_links = local->links;
    out.data = local->size != incoming->size || local->chunks != incoming->chunks;
    for (const InodeLink& l : old_links) {
      if (std::find(incoming->links.begin(), incoming->links.end(), l) != incoming->links.end())
        continue;
      if (Inode* dir = Find(l.parent); dir && dir->dir) {
        Unindex(dir, l.name, local->ino);
        out.names_gone.emplace_back(l.parent, l.name);
      }
    }
    local->mode = incoming->mode;
    local->uid = incoming->uid;
    local->gid = incoming->gid;
    local->rdev = incoming->rdev;
    local->size = incoming->size;
    local->atime = incoming->atime;
    local->mtime = incoming->mtime;
    local->ctime = incoming->ctime;
    local->chunks = std::move(incoming->chunks);
    local->symlink = std::move(incoming->symlink);
    local->links = std::move(incoming->links);
    local->unlinked = std::move(incoming->unlinked);
    local->version = v;
    local->dirty.clear();  // the newer record wins over writes not yet taken here
    if (S_ISDIR(local->mode) && !local->dir) local->dir = std::make_unique<Dir>();
  } else {
    out.data = true;
    local = Insert(std::move(incoming));
  }
  for (const InodeLink& l : local->links) {
    if (std::find(old_links.begin(), old_links.end(), l) != old_links.end()) continue;
    if (Inode* dir = Find(l.parent); dir && dir->dir) {
      Index(dir, l, local->ino);
      out.names_added.emplace_back(l.parent, l.name);
    }
  }
  Recount(local);
  return out;
}

Applied InodeTable::ApplyDelete(std::uint64_t ino, const Version& v) {
  Applied out;
  Inode* local = Find(ino);
  if (!local || !(local->version < v) || ino == kRootIno) return out;
  out.changed = true;
  for (const InodeLink& l : local->links) {
    if (Inode* dir = Find(l.parent); dir && dir->dir) {
      Unindex(dir, l.name, ino);
      out.names_gone.emplace_back(l.parent, l.name);
    }
  }
  local->links.clear();
  local->version = v;
  local->dirty.clear();
  local->nlink = 0;
  return out;
}

}  // namespace coffer::fs
