// File data: how a file's bytes map onto chunks and write buffers (DESIGN.md "Chunks").
//
// A file is a list of chunk ids, chunk i covering [i * chunk_size, (i + 1) * chunk_size); a zero
// id is a hole. Writes go into per-chunk plaintext buffers of the inode (Inode::dirty) that
// become new chunks when full or at flush, fsync and close; a write that only partly covers a
// chunk with data needs that chunk's old contents first, which the caller loads without holding
// the filesystem's lock (PartlyCovered says which). Reads are planned under the lock and
// assembled after it, from buffer copies and immutable chunks.
//
// Thread safety: pure functions over an inode; the caller holds the filesystem's lock for those
// that take one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "fs/inode_table.h"

namespace coffer::fs::file_data {

inline constexpr std::uint64_t kMaxFileSize = std::uint64_t{1} << 44;  // 16 TiB

bool IsHole(const crypto::ObjectId& id);

// Chunk indices that a write of [offset, end) covers only partly, that hold data, and whose
// contents are not in a write buffer: they must be loaded into Inode::dirty first.
std::vector<std::uint64_t> PartlyCovered(const Inode& inode, std::uint32_t chunk_size,
                                         std::uint64_t offset, std::uint64_t end);

// Writes `data` at `offset` into the write buffers (PartlyCovered ones loaded) and grows the
// size. Returns the indices of buffers that are now full chunks.
std::vector<std::uint64_t> Write(Inode* inode, std::uint32_t chunk_size, std::uint64_t offset,
                                 std::string_view data);

// The chunk a truncation to `size` cuts inside, when it holds data not in a buffer (to be
// loaded first), or nullopt.
std::optional<std::uint64_t> CutChunk(const Inode& inode, std::uint32_t chunk_size,
                                      std::uint64_t size);

// Truncates (or extends with a hole) to `size` (CutChunk loaded). Returns the chunk ids the
// file no longer uses.
std::vector<crypto::ObjectId> Truncate(Inode* inode, std::uint32_t chunk_size, std::uint64_t size);

// One part of a read: `length` bytes of output from a buffer copy, a chunk (at `chunk_offset`),
// or a hole (zeros).
struct Piece {
  enum Kind { kCopy, kChunk, kHole } kind = kHole;
  std::uint64_t length = 0;
  std::string copy;               // kCopy
  crypto::ObjectId id{};          // kChunk
  std::uint64_t chunk_offset = 0; // kChunk
};
// Plans a read of up to `size` bytes at `offset` (short at end of file).
std::vector<Piece> PlanRead(const Inode& inode, std::uint32_t chunk_size, std::uint64_t offset,
                            std::size_t size);
// Assembles a planned read; `load(id)` returns a chunk's plaintext (it may fetch from the nodes:
// call without the filesystem's lock). A chunk shorter than the file says reads as zeros.
std::string Assemble(const std::vector<Piece>& pieces,
                     const std::function<std::shared_ptr<const std::string>(
                         const crypto::ObjectId&)>& load);

}  // namespace coffer::fs::file_data
