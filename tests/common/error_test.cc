// coffer::Error carries the errno that the FUSE glue and the exit codes rely on.
#include "common/error.h"

#include <cerrno>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace coffer {
namespace {

TEST(ErrorTest, CarriesErrnoAndMessage) {
  try {
    throw Error(ENOSPC, "outbox full");
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), ENOSPC);
    EXPECT_STREQ(e.what(), "outbox full");
  }
}

TEST(ErrorTest, ThrowErrnoAppendsStrerror) {
  try {
    ThrowErrno(ENOENT, "/no/such/file");
  } catch (const Error& e) {
    EXPECT_EQ(e.err(), ENOENT);
    EXPECT_THAT(e.what(), ::testing::StartsWith("/no/such/file: "));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("No such file"));
  }
  errno = EACCES;
  EXPECT_THROW(
      {
        try {
          ThrowErrno("open x");
        } catch (const Error& e) {
          EXPECT_EQ(e.err(), EACCES);
          throw;
        }
      },
      Error);
}

TEST(ErrorTest, IsARuntimeError) {
  EXPECT_THROW(throw Error(EIO, "x"), std::runtime_error);
}

}  // namespace
}  // namespace coffer
