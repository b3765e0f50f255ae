// Tests for pop3d/message_stream.cc: CRLF conversion, byte-stuffing, TOP, sizes, streaming.
#include "pop3d/message_stream.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include "tests/pop3d/test_util.h"

namespace coffer::pop3d {
namespace {

std::string Wire(std::string_view in, std::optional<std::uint64_t> top = std::nullopt,
                 std::size_t piece = 0) {
  WireConverter c(true, top);
  std::string out;
  if (piece == 0) {
    c.Feed(in, out);
  } else {
    for (std::size_t i = 0; i < in.size(); i += piece) c.Feed(in.substr(i, piece), out);
  }
  c.Finish(out);
  return out;
}

TEST(WireConverterTest, BareLfBecomesCrlf) {
  EXPECT_EQ(Wire("a\nb\n"), "a\r\nb\r\n");
}

TEST(WireConverterTest, CrlfIsKept) {
  EXPECT_EQ(Wire("a\r\nb\r\n"), "a\r\nb\r\n");
}

TEST(WireConverterTest, MissingFinalNewlineIsAdded) {
  EXPECT_EQ(Wire("a\nb"), "a\r\nb\r\n");
  EXPECT_EQ(Wire(""), "");
}

TEST(WireConverterTest, LeadingDotsAreStuffed) {
  EXPECT_EQ(Wire(".\n..x\na.b\n.\r\n"), "..\r\n...x\r\na.b\r\n..\r\n");
}

TEST(WireConverterTest, BareCrInsideLineIsKept) {
  EXPECT_EQ(Wire("a\rb\n"), "a\rb\r\n");
  EXPECT_EQ(Wire("a\r"), "a\r\n");
}

TEST(WireConverterTest, SplitAcrossChunksGivesSameResult) {
  std::string msg = "Subject: x\r\n\r\n.line\n\r\n..\nend\r";
  std::string whole = Wire(msg);
  for (std::size_t piece = 1; piece < 8; ++piece) EXPECT_EQ(Wire(msg, std::nullopt, piece), whole);
}

TEST(WireConverterTest, TopCutsAfterHeadersAndLines) {
  std::string msg = "H: 1\nH: 2\n\nb1\nb2\nb3\n";
  EXPECT_EQ(Wire(msg, 0), "H: 1\r\nH: 2\r\n\r\n");
  EXPECT_EQ(Wire(msg, 2), "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n");
  EXPECT_EQ(Wire(msg, 100), "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\nb3\r\n");
  for (std::size_t piece = 1; piece < 5; ++piece) {
    EXPECT_EQ(Wire(msg, 2, piece), "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n");
  }
}

TEST(WireConverterTest, TopOfMessageWithoutBody) {
  EXPECT_EQ(Wire("H: 1\n", 0), "H: 1\r\n");
}

TEST(VirtualSizeTest, MatchesUnstuffedWireSize) {
  EXPECT_EQ(VirtualSize("a\nb\n"), 6u);
  EXPECT_EQ(VirtualSize("a\r\nb\r\n"), 6u);
  EXPECT_EQ(VirtualSize("a\nb"), 6u);
  EXPECT_EQ(VirtualSize(".x\n"), 4u);  // stuffing is not counted (RFC 1939)
  EXPECT_EQ(VirtualSize(""), 0u);
}

TEST(MessageStreamTest, StreamsInChunksAndTerminates) {
  testing::TempDir dir;
  std::string path = dir.path() + "/m";
  std::string msg;
  for (int i = 0; i < 5000; ++i) msg += (i % 7 == 0 ? ".line " : "line ") + std::to_string(i) + "\n";
  testing::WriteText(path, msg);
  MessageStream stream(OpenFile(path, O_RDONLY), std::nullopt, 1024);
  std::string all, chunk;
  int pieces = 0;
  while (stream.Next(chunk)) {
    EXPECT_LE(chunk.size(), 2 * 1024u + 3);
    all += chunk;
    ++pieces;
  }
  EXPECT_GT(pieces, 10);
  EXPECT_EQ(all, Wire(msg) + ".\r\n");
  EXPECT_FALSE(stream.Next(chunk));
}

TEST(MessageStreamTest, EmptyMessage) {
  testing::TempDir dir;
  testing::WriteText(dir.path() + "/m", "");
  MessageStream stream(OpenFile(dir.path() + "/m", O_RDONLY), std::nullopt, 64);
  std::string chunk;
  ASSERT_TRUE(stream.Next(chunk));
  EXPECT_EQ(chunk, ".\r\n");
  EXPECT_FALSE(stream.Next(chunk));
}

TEST(MessageStreamTest, TopStopsReading) {
  testing::TempDir dir;
  testing::WriteText(dir.path() + "/m", "A: b\n\n1\n2\n3\n");
  MessageStream stream(OpenFile(dir.path() + "/m", O_RDONLY), 1, 2);
  std::string all, chunk;
  while (stream.Next(chunk)) all += chunk;
  EXPECT_EQ(all, "A: b\r\n\r\n1\r\n.\r\n");
}

TEST(VirtualSizeTest, FromFdMatchesFromString) {
  testing::TempDir dir;
  std::string msg(200000, 'x');
  for (std::size_t i = 0; i < msg.size(); i += 77) msg[i] = '\n';
  testing::WriteText(dir.path() + "/m", msg);
  UniqueFd fd = OpenFile(dir.path() + "/m", O_RDONLY);
  EXPECT_EQ(VirtualSizeOfFd(fd.Get()), VirtualSize(msg));
}

}  // namespace
}  // namespace coffer::pop3d
