// The verifier a box gives the replicator (replicator::Verifier): decides whether a copy a
// storage node served is genuine, i.e. opens with this box's key as exactly what the node claims
// it is (DESIGN.md "Versions": a node cannot make a box believe a forged, future or older
// version).
//
//   - format 2: the version is in the AAD; the copy must open, and its authenticated version
//     and kind (tombstone or not) must be the claimed ones;
//   - format 1 (read, no longer written): inode records and directory entries carry their
//     version in the plaintext, which must be the claimed one; the store meta was written once
//     at hlc 1 by the box named inside; chunks are immutable and carry none;
//   - an unsealed tombstone (written by boxes before format 2, or made up by a node)
//     authenticates nothing.
//
// Thread safety: the returned function only reads the keyring; call it from any thread.
#pragma once

#include <memory>

#include "common/crypto.h"
#include "replicator/replicator.h"

namespace coffer::fs {

replicator::Verdict VerifyObject(const crypto::Keyring& keys, const replicator::Object& claimed);

// A replicator::Verifier over `keys` (shared: the replicator keeps the function).
replicator::Verifier MakeVerifier(std::shared_ptr<const crypto::Keyring> keys);

}  // namespace coffer::fs
