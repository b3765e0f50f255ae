// File data (see file_data.h).
#include "fs/file_data.h"

#include <algorithm>
#include <cstring>

namespace coffer::fs::file_data {

bool IsHole(const crypto::ObjectId& id) {
  return std::all_of(id.begin(), id.end(), [](std::uint8_t b) { return b == 0; });
}

namespace {
bool HoldsData(const Inode& inode, std::uint64_t index) {
  return index < inode.chunks.size() && !IsHole(inode.chunks[index]);
}
}  // namespace

std::vector<std::uint64_t> PartlyCovered(const Inode& inode, std::uint32_t chunk_size,
                                         std::uint64_t offset, std::uint64_t end) {
  std::vector<std::uint64_t> out;
  if (end <= offset) return out;
  const std::uint64_t c = chunk_size;
  for (std::uint64_t idx : {offset / c, (end - 1) / c}) {
    if (!out.empty() && out.back() == idx) continue;
    if (inode.dirty.count(idx) || !HoldsData(inode, idx)) continue;
    const std::uint64_t cstart = idx * c;
    // The chunk's data reaches at most to the file size; a write covering all of that (and
    // starting at the chunk's start) needs nothing old.
    const std::uint64_t data_end = std::min(cstart + c, inode.size);
    const bool whole = offset <= cstart && end >= data_end;
    if (!whole) out.push_back(idx);
  }
  return out;
}

std::vector<std::uint64_t> Write(Inode* inode, std::uint32_t chunk_size, std::uint64_t offset,
                                 std::string_view data) {
  std::vector<std::uint64_t> full;
  if (data.empty()) return full;
  const std::uint64_t c = chunk_size;
  const std::uint64_t end = offset + data.size();
  if (inode->chunks.size() < (end + c - 1) / c) inode->chunks.resize((end + c - 1) / c);
  for (std::uint64_t idx = offset / c; idx * c < end; ++idx) {
    const std::uint64_t cstart = idx * c;
    const std::uint64_t from = std::max(offset, cstart);
    const std::uint64_t to = std::min(end, cstart + c);
    std::string& buf = inode->dirty[idx];  // a loaded partly covered chunk, or new
    // The part of the old file before `from` in a chunk that was a hole (or beyond the end)
    // reads as zeros.
    if (buf.size() < to - cstart) buf.resize(to - cstart, '\0');
    std::memcpy(buf.data() + (from - cstart), data.data() + (from - offset), to - from);
    if (buf.size() == c) full.push_back(idx);
  }
  inode->size = std::max(inode->size, end);
  return full;
}

std::optional<std::uint64_t> CutChunk(const Inode& inode, std::uint32_t chunk_size,
                                      std::uint64_t size) {
  const std::uint64_t c = chunk_size;
  if (size >= inode.size || size % c == 0) return std::nullopt;
  const std::uint64_t idx = size / c;
  if (inode.dirty.count(idx) || !HoldsData(inode, idx)) return std::nullopt;
  return idx;
}

std::vector<crypto::ObjectId> Truncate(Inode* inode, std::uint32_t chunk_size,
                                       std::uint64_t size) {
  std::vector<crypto::ObjectId> unused;
  const std::uint64_t c = chunk_size;
  const std::uint64_t keep = (size + c - 1) / c;
  if (size < inode->size) {
    for (std::uint64_t i = keep; i < inode->chunks.size(); ++i)
      if (!IsHole(inode->chunks[i])) unused.push_back(inode->chunks[i]);
    inode->dirty.erase(inode->dirty.lower_bound(keep), inode->dirty.end());
    if (inode->chunks.size() > keep) inode->chunks.resize(keep);
    if (size % c != 0) {
      // The chunk cut inside is a buffer now (loaded by the caller when it held data).
      auto it = inode->dirty.find(size / c);
      if (it != inode->dirty.end()) {
        if (it->second.size() > size % c) it->second.resize(size % c);
      } else if (size / c < inode->chunks.size() && IsHole(inode->chunks[size / c])) {
        // A hole stays a hole.
      }
    }
  }
  if (inode->chunks.size() < keep) inode->chunks.resize(keep);
  inode->size = size;
  return unused;
}

std::vector<Piece> PlanRead(const Inode& inode, std::uint32_t chunk_size, std::uint64_t offset,
                            std::size_t size) {
  std::vector<Piece> pieces;
  if (offset >= inode.size || size == 0) return pieces;
  const std::uint64_t end = std::min<std::uint64_t>(offset + size, inode.size);
  const std::uint64_t c = chunk_size;
  for (std::uint64_t idx = offset / c; idx * c < end; ++idx) {
    const std::uint64_t cstart = idx * c;
    const std::uint64_t a = std::max(offset, cstart) - cstart;
    const std::uint64_t b = std::min(end, cstart + c) - cstart;
    Piece p;
    p.length = b - a;
    if (auto it = inode.dirty.find(idx); it != inode.dirty.end()) {
      p.kind = Piece::kCopy;
      const std::string& buf = it->second;
      if (buf.size() > a) p.copy = buf.substr(a, std::min<std::uint64_t>(buf.size(), b) - a);
    } else if (HoldsData(inode, idx)) {
      p.kind = Piece::kChunk;
      p.id = inode.chunks[idx];
      p.chunk_offset = a;
    }
    pieces.push_back(std::move(p));
  }
  return pieces;
}

std::string Assemble(const std::vector<Piece>& pieces,
                     const std::function<std::shared_ptr<const std::string>(
                         const crypto::ObjectId&)>& load) {
  std::string out;
  std::size_t total = 0;
  for (const Piece& p : pieces) total += p.length;
  out.reserve(total);
  for (const Piece& p : pieces) {
    const std::size_t start = out.size();
    if (p.kind == Piece::kCopy) {
      out.append(p.copy);
    } else if (p.kind == Piece::kChunk) {
      std::shared_ptr<const std::string> data = load(p.id);
      if (data->size() > p.chunk_offset)
        out.append(*data, p.chunk_offset,
                   std::min<std::uint64_t>(p.length, data->size() - p.chunk_offset));
    }
    // Zeros for a hole and for what a short buffer or chunk does not cover.
    out.resize(start + p.length, '\0');
  }
  return out;
}

}  // namespace coffer::fs::file_data
