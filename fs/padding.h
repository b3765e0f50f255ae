// How much a sealed object is padded (inside the AEAD, see common/crypto.h), so that what a
// storage node stores says as little as possible about a message:
//
// - A content chunk's payload is padded to its Padmé size class: at most 12 % larger, and a
//   size class holds many exact sizes (a 40,000-byte message and a 40,900-byte one are stored
//   alike). A full chunk (the chunk size, a power of two) is a class of its own and is not
//   padded.
// - Records (inode, store meta, box, directory entry) are padded to 512, 1024, 2048 or 4096
//   bytes, then to their Padmé class: names, link counts and chunk counts of ordinary messages
//   (up to about 15 chunks, 1 MiB) do not show.
// - Tombstones are padded to 64 bytes: every delete looks alike, whatever it deletes.
//
// Pure functions; the measured overhead on a mail size mix is printed by
// tests/bench/padding_overhead (and quoted in coffer(7)).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/crypto.h"

namespace coffer::fs {

// Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication with
// PURBs", 2019): `n` rounded up so that only the top bits of its binary length vary.
std::uint64_t Padme(std::uint64_t n);

// The framed size (payload, one marker byte, zeros) to seal a plaintext of `size` bytes of
// `kind` with: crypto::Seal's padded_size.
std::size_t PaddedSize(crypto::ObjectKind kind, std::size_t size);

}  // namespace coffer::fs
