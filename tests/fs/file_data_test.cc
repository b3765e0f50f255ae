// Unit tests of file data (fs/file_data.h): which chunks a write must load first, writes across
// chunk boundaries, truncation, and reads assembled from buffers, chunks and holes.
#include "fs/file_data.h"

#include <gtest/gtest.h>

namespace coffer::fs::file_data {
namespace {

constexpr std::uint32_t kC = 16;  // a small chunk size keeps the cases readable

TEST(FileDataTest, PartlyCoveredChunksWithDataMustBeLoaded) {
  Inode f;
  f.size = 40;
  f.chunks = {crypto::RandomObjectId(), crypto::ObjectId{}, crypto::RandomObjectId()};
  EXPECT_EQ(PartlyCovered(f, kC, 0, 16), std::vector<std::uint64_t>{});   // whole chunk 0
  EXPECT_EQ(PartlyCovered(f, kC, 2, 5), std::vector<std::uint64_t>{0});
  EXPECT_EQ(PartlyCovered(f, kC, 20, 25), std::vector<std::uint64_t>{});  // a hole
  EXPECT_EQ(PartlyCovered(f, kC, 10, 36), (std::vector<std::uint64_t>{0, 2}));
  EXPECT_EQ(PartlyCovered(f, kC, 32, 40), std::vector<std::uint64_t>{});  // all of its data
  EXPECT_EQ(PartlyCovered(f, kC, 33, 60), std::vector<std::uint64_t>{2});
  f.dirty[2] = "loaded";
  EXPECT_EQ(PartlyCovered(f, kC, 33, 60), std::vector<std::uint64_t>{});
}

TEST(FileDataTest, WritesFillBuffersAcrossChunksAndReportFullOnes) {
  Inode f;
  auto full = Write(&f, kC, 10, std::string(30, 'x'));
  EXPECT_EQ(full, (std::vector<std::uint64_t>{0, 1}));
  EXPECT_EQ(f.size, 40u);
  EXPECT_EQ(f.chunks.size(), 3u);
  EXPECT_EQ(f.dirty.at(0), std::string(10, '\0') + std::string(6, 'x'));
  EXPECT_EQ(f.dirty.at(2), std::string(8, 'x'));
}

TEST(FileDataTest, TruncateDropsChunksAndCutsTheLastBuffer) {
  Inode f;
  const auto c0 = crypto::RandomObjectId(), c1 = crypto::RandomObjectId(), c2 = crypto::RandomObjectId();
  f.chunks = {c0, c1, c2};
  f.size = 48;
  f.dirty[1] = std::string(16, 'y');  // loaded (CutChunk asked for it)
  EXPECT_EQ(CutChunk(f, kC, 20), std::nullopt);  // already a buffer
  auto unused = Truncate(&f, kC, 20);
  EXPECT_EQ(unused, std::vector<crypto::ObjectId>{c2});
  EXPECT_EQ(f.size, 20u);
  EXPECT_EQ(f.dirty.at(1), std::string(4, 'y'));
  EXPECT_EQ(f.chunks.size(), 2u);
  EXPECT_EQ(CutChunk(f, kC, 5), std::optional<std::uint64_t>(0));  // chunk 0 holds data
  // Up again: a hole, reads as zeros.
  Truncate(&f, kC, 64);
  EXPECT_EQ(f.size, 64u);
  EXPECT_EQ(f.chunks.size(), 4u);
}

TEST(FileDataTest, ReadsAssembleBuffersChunksAndHoles) {
  Inode f;
  const auto c0 = crypto::RandomObjectId();
  f.chunks = {c0, crypto::ObjectId{}, crypto::ObjectId{}};
  f.dirty[2] = "abc";  // shorter than the file says: zeros after it
  f.size = 40;
  auto pieces = PlanRead(f, kC, 10, 100);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0].kind, Piece::kChunk);
  EXPECT_EQ(pieces[1].kind, Piece::kHole);
  EXPECT_EQ(pieces[2].kind, Piece::kCopy);
  std::string out = Assemble(pieces, [&](const crypto::ObjectId& id) {
    EXPECT_EQ(id, c0);
    return std::make_shared<const std::string>("0123456789ABCD");  // short chunk
  });
  EXPECT_EQ(out.size(), 30u);
  EXPECT_EQ(out.substr(0, 4), std::string("ABCD"));
  EXPECT_EQ(out.substr(4, 18), std::string(18, '\0'));
  EXPECT_EQ(out.substr(22, 3), "abc");
  EXPECT_EQ(out.substr(25), std::string(5, '\0'));
  EXPECT_TRUE(PlanRead(f, kC, 40, 10).empty());  // at the end
}

}  // namespace
}  // namespace coffer::fs::file_data
