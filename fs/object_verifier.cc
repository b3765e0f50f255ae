// The box's verifier of node replies (see object_verifier.h).
#include "fs/object_verifier.h"

#include "fs/records.pb.h"

namespace coffer::fs {

using replicator::Verdict;

namespace {

template <class Record>
Verdict CompareInner(const std::string& plaintext, const replicator::Version& claim) {
  Record rec;
  if (!rec.ParseFromString(plaintext)) return Verdict::kCorrupt;
  return rec.version().hlc() == claim.hlc && rec.version().box_id() == claim.box_id
             ? Verdict::kGenuine
             : Verdict::kForged;
}

}  // namespace

Verdict VerifyObject(const crypto::Keyring& keys, const replicator::Object& claimed) {
  if (claimed.sealed.empty()) return claimed.tombstone ? Verdict::kUnauthenticated : Verdict::kCorrupt;
  std::optional<crypto::Opened> opened = crypto::OpenObject(keys, claimed.id, claimed.sealed);
  if (!opened) return Verdict::kCorrupt;
  if ((opened->kind == crypto::ObjectKind::kTombstone) != claimed.tombstone) return Verdict::kForged;
  if (opened->version) {
    return opened->version->hlc == claimed.version.hlc &&
                   opened->version->box_id == claimed.version.box_id
               ? Verdict::kGenuine
               : Verdict::kForged;
  }
  switch (opened->kind) {  // format 1
    case crypto::ObjectKind::kInodeRecord:
      return CompareInner<proto::InodeRecord>(opened->plaintext, claimed.version);
    case crypto::ObjectKind::kDirEntry:
      return CompareInner<proto::DirEntry>(opened->plaintext, claimed.version);
    case crypto::ObjectKind::kStoreMeta: {
      proto::StoreMeta meta;
      if (!meta.ParseFromString(opened->plaintext)) return Verdict::kCorrupt;
      return claimed.version.hlc == 1 && claimed.version.box_id == meta.box_id()
                 ? Verdict::kGenuine
                 : Verdict::kForged;
    }
    default:
      return Verdict::kGenuine;  // a format 1 chunk: immutable content, no version inside
  }
}

replicator::Verifier MakeVerifier(std::shared_ptr<const crypto::Keyring> keys) {
  return [keys = std::move(keys)](const replicator::Object& claimed) {
    return VerifyObject(*keys, claimed);
  };
}

}  // namespace coffer::fs
